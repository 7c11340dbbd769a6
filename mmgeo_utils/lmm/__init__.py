"""Lesson 06: a LLaVA-style geometry LMM on the course's CLIP encoders.

One file per part, each readable alone (the shape of nanoVLM's ``models/``):

=============================  ==============================================================
module                         part
=============================  ==============================================================
``vision_tower``               a frozen open_clip tower of a course run (or random, or none)
                               yielding a grid of tokens
``projector``                  LLaVA-1.5's Linear → GELU → Linear
``tokenizer``                  a small byte-level BPE trained on the course's text
``language_model``             any ``AutoModelForCausalLM``: a small Qwen2 built from a config,
                               or a hub model / local folder on ``paper``
``vision_language_model``      the wrapper: splice image tokens into ``inputs_embeds``; save/load
``data``                       each stage's token sequences and labels; the feature cache
``balance``                    yes/no questions balanced per relation (the wording gives nothing away)
``config``                     ``LMMConfig``, the stages, and where each stage's folder lives
``loop``                       one resumable training loop for every stage (``_fit``)
``train``                      the stages ``lm`` → ``align`` → ``sft``, and ``train_lmm``
``evaluate``                   greedy decoding, exact match per question kind, facts re-checked
``embedding``                  lesson 07, MM-GEM: the ``<emb>`` token, the two heads, the losses
``gem``                        lesson 07: train one LM to embed and caption; score it at both
``local_tokens``               lesson 07, SliME's parts: resamplers, the gated global adapter, the
                               question-aware top-p selector of local tokens
``slime_model``                lesson 07, SliME's LMM: global, separator and local tokens; saving
``slime``                      lesson 07, SliME's arms: the 2× local view in crops, the stages, scoring
=============================  ==============================================================

The comparisons over towers, objectives, local tokens and seeds, and the LMM benchmark, are runners:
:mod:`mmgeo_utils.experiments.lmm_comparison`, :mod:`~mmgeo_utils.experiments.gem_comparison`,
:mod:`~mmgeo_utils.experiments.slime_comparison` and :mod:`mmgeo_utils.experiments.bench_lmm`.
"""

from .balance import balanced_questions, balanced_rows
from .config import STAGES, LMMConfig, stage_dir
from .embedding import EMB_TOKEN, OBJECTIVES, GeometryEmbedder, add_embedding_token
from .evaluate import answer, claimed_fact, evaluate_lmm, exact_match, majority_answers, normalize
from .gem import evaluate_gem, gem_dir, load_gem, train_gem
from .language_model import build_lm, load_lm
from .projector import Projector
from .slime import evaluate_slime, slime_dir, train_slime
from .slime_model import SlimeLMM, load_slime
from .tokenizer import IMAGE_TOKEN, load_tokenizer, train_tokenizer
from .train import train_lmm
from .vision_language_model import IGNORE_INDEX, GeometryLMM, expand_image_tokens, load_lmm, save_lmm
from .vision_tower import VisionTower, join, load_vision_tower, token_shape

__all__ = [
    "EMB_TOKEN",
    "GeometryEmbedder",
    "OBJECTIVES",
    "add_embedding_token",
    "evaluate_gem",
    "gem_dir",
    "load_gem",
    "train_gem",
    "GeometryLMM",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "LMMConfig",
    "Projector",
    "SlimeLMM",
    "STAGES",
    "VisionTower",
    "answer",
    "balanced_questions",
    "balanced_rows",
    "build_lm",
    "claimed_fact",
    "evaluate_lmm",
    "evaluate_slime",
    "exact_match",
    "expand_image_tokens",
    "join",
    "load_lm",
    "load_lmm",
    "load_slime",
    "load_tokenizer",
    "load_vision_tower",
    "majority_answers",
    "normalize",
    "save_lmm",
    "slime_dir",
    "stage_dir",
    "token_shape",
    "train_lmm",
    "train_slime",
    "train_tokenizer",
]
