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
``train``                      the stages ``lm`` → ``align`` → ``sft``, resumable
``evaluate``                   greedy decoding, exact match per question kind, facts re-checked
=============================  ==============================================================
"""

from .projector import Projector
from .tokenizer import IMAGE_TOKEN, load_tokenizer, train_tokenizer
from .vision_language_model import GeometryLMM, expand_image_tokens, load_lmm, save_lmm
from .vision_tower import VisionTower, load_vision_tower

__all__ = [
    "GeometryLMM",
    "IMAGE_TOKEN",
    "Projector",
    "VisionTower",
    "expand_image_tokens",
    "load_lmm",
    "load_tokenizer",
    "load_vision_tower",
    "save_lmm",
    "train_tokenizer",
]
