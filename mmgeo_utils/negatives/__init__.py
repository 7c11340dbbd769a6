"""Lesson 02: hard negatives of three kinds, each checked against the scene's exact facts.

=====================  ==============================================================
module                 what it holds
=====================  ==============================================================
``image``              image negatives: :func:`apply_perturbation`, :func:`make_image_negatives`,
                       :func:`verify_negative` and :class:`ImageNegative`
``perturbations``      the registry :data:`PERTURBATIONS` (name, category, drastic,
                       annotation-only) and :func:`perturbation_table`
``change``             what a perturbation proposes (``_Change``) or why not
                       (:class:`NotApplicable`); small scene helpers
``draft``              building the negative scene from a change, and checking it
``constructions``      incidences, and rebuilding constructed points after a move
``marks``              marks follow facts: which marks show which fact
``edits_relabel``      the perturbations: permute letters
``edits_numbers``      ... a changed length or angle value, a moved right-angle square
``edits_shapes``       ... another triangle or quadrilateral shape, diameter → chord
``edits_relations``    ... congruent → similar, parallels turned, tangent → secant,
                       off the circle, off the middle
``edits_auxiliary``    ... altitude ↔ median ↔ bisector, one erased or drawn
``text``               rule-based text negatives: caption edits through typed facts
``sentence_encoder``   load a sentence encoder (shipped, local, hub); embed captions
``topk``               exact cosine top-k neighbours, a chunk of rows at a time
``retrieval``          retrieval negatives: nearest captions, false negatives rejected
=====================  ==============================================================

The corpus-scale retrieval benchmark is :mod:`mmgeo_utils.experiments.bench_retrieval`.
"""

from .change import NotApplicable
from .draft import rename_fact
from .image import ImageNegative, PerturbationResult, apply_perturbation, make_image_negatives, verify_negative
from .marks import mark_supporters
from .perturbations import ANNOTATION_ONLY, CATEGORIES, PERTURBATIONS, Perturbation, perturbation_table
from .retrieval import STATUS_NAMES, RetrievalNegatives, mine_retrieval_negatives
from .sentence_encoder import (
    SHIPPED_ENCODER_ALIASES,
    EncoderUnavailableError,
    clear_encoder_cache,
    embed_captions,
    load_sentence_encoder,
    resolve_sentence_encoder,
)
from .text import ERROR_TYPES, TextNegative, changed_spans, edit_candidates, make_text_negatives, verify_text_negative
from .topk import topk_neighbours

__all__ = [
    "ANNOTATION_ONLY",
    "CATEGORIES",
    "ERROR_TYPES",
    "PERTURBATIONS",
    "SHIPPED_ENCODER_ALIASES",
    "STATUS_NAMES",
    "EncoderUnavailableError",
    "ImageNegative",
    "NotApplicable",
    "Perturbation",
    "PerturbationResult",
    "RetrievalNegatives",
    "TextNegative",
    "apply_perturbation",
    "changed_spans",
    "clear_encoder_cache",
    "edit_candidates",
    "embed_captions",
    "load_sentence_encoder",
    "make_image_negatives",
    "make_text_negatives",
    "mark_supporters",
    "mine_retrieval_negatives",
    "perturbation_table",
    "rename_fact",
    "resolve_sentence_encoder",
    "topk_neighbours",
    "verify_negative",
    "verify_text_negative",
]
