"""Rule-based text negatives: every negative is false for its image, uses the figure's letters only,
changes only the edited phrases, and can be slotted by error type."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest
from scene_cache import scene_of

from mmgeo_utils.diagrams.captions import Caption, describe
from mmgeo_utils.diagrams.facts import check_fact
from mmgeo_utils.diagrams.families import FAMILIES, format_number
from mmgeo_utils.diagrams.scene import Fact, Scene, fact_set
from mmgeo_utils.negatives.text import (
    ERROR_TYPES,
    ChangedSpan,
    TextNegative,
    changed_spans,
    edit_candidates,
    make_text_negatives,
    slot_by_type,
    verify_text_negative,
)

SEEDS = range(3)
CASES = [(f, s) for f in FAMILIES for s in SEEDS]


@functools.cache
def negatives(family: str, seed: int, k: int = 8) -> tuple[list[TextNegative], Counter]:
    scene = scene_of(family, seed)
    return make_text_negatives(scene, describe(scene, seed), k, seed=seed, caption_seed=seed)


@pytest.mark.parametrize("family,seed", CASES)
def test_every_negative_is_false_and_uses_only_the_figures_letters(family, seed):
    scene = scene_of(family, seed)
    negs, rejections = negatives(family, seed)
    assert negs, rejections
    for n in negs:
        assert n.error_type in ERROR_TYPES and 1 <= len(n.edits) <= 3
        befores = {e.before.key() for e in n.edits}
        assert len(befores) == len(n.edits), "edits are spread over distinct facts"
        for e in n.edits:
            assert e.error_type == n.error_type
            assert e.before.key() in scene.fact_keys()
            assert not check_fact(scene, e.after), f"{e.after} is true of the figure"
            assert set(e.after.args) <= set(scene.points), "a negative may not invent letters"
        expected = (scene.fact_keys() - befores) | fact_set(e.after for e in n.edits)
        assert fact_set(n.facts) == expected
        assert n.text != describe(scene, seed).text


@pytest.mark.parametrize("family,seed", CASES)
def test_label_edits_change_two_letters_into_a_different_fact(family, seed):
    for n in negatives(family, seed)[0]:
        for e in n.edits:
            if e.error_type == "label":
                assert e.after.kind == e.before.kind and e.after.value == e.before.value
                assert sum(a != b for a, b in zip(e.before.args, e.after.args)) >= 2
                assert e.after.canonical() != e.before.canonical(), "a rotation or reversal names the same fact"


def test_cyclic_and_reversed_names_are_never_label_candidates():
    scene = scene_of("quadrilateral_diagonals", 0)
    shape = next(f for f in scene.facts if f.kind == "shape")
    a = shape.args
    same = {Fact("shape", a[i:] + a[:i], shape.value).key() for i in range(4)}
    same |= {Fact("shape", tuple(reversed(a[i:] + a[:i])), shape.value).key() for i in range(4)}
    cands = edit_candidates(shape, scene, "label", np.random.default_rng(0))
    assert cands and not any(c.key() in same for c in cands)
    seg = next(f for f in scene.facts if f.kind == "length")
    assert all(
        c.args != tuple(reversed(seg.args)) for c in edit_candidates(seg, scene, "label", np.random.default_rng(0))
    )


def test_all_four_error_types_are_produced_across_families():
    seen = Counter(n.error_type for f, s in CASES for n in negatives(f, s)[0])
    assert set(seen) == set(ERROR_TYPES), seen


def test_relation_edits_include_the_drastic_flip_that_images_avoid():
    flips = [
        e
        for f, s in CASES
        for n in negatives(f, s)[0]
        for e in n.edits
        if (e.before.kind, e.after.kind) == ("parallel", "perpendicular")
    ]
    assert flips


def _isosceles_with(*kinds: str) -> Scene:
    for seed in range(60):
        scene = scene_of("isosceles_median", seed)
        if set(kinds) <= {f.kind for f in scene.facts}:
            return scene
    raise AssertionError(f"no isosceles_median scene with {kinds}")


def test_a_true_edit_is_rejected_and_counted():
    """congruent → similar is always true, and an isosceles triangle's altitude is also its median."""
    scene = _isosceles_with("congruent", "altitude")
    cap = describe(scene, 0)
    congruent = next(f for f in scene.facts if f.kind == "congruent")
    assert check_fact(scene, Fact("similar", congruent.args)), "the rule's output really is true"
    negs, rejections = make_text_negatives(scene, cap, 6, seed=0, caption_seed=0, types=("relation", "shape"))
    assert rejections["relation: true statement"] >= 1 and rejections["shape: true statement"] >= 1
    for n in negs:
        for e in n.edits:
            assert (e.before.kind, e.after.kind) not in {("congruent", "similar"), ("altitude", "median")}


def test_a_scene_with_only_true_edits_counts_a_shortfall():
    """Keep only facts whose relation edits are true (or senseless): no negative, every attempt counted."""
    scene = _isosceles_with("congruent")
    scene.facts = [f for f in scene.facts if f.kind in ("shape", "congruent", "equal_length", "length")]
    cap = describe(scene, 0)
    negs, rejections = make_text_negatives(scene, cap, 3, seed=0, caption_seed=0, types=("relation",))
    assert negs == []
    assert rejections["relation: true statement"] >= 1 and rejections["shortfall"] == 3


def test_negatives_are_deterministic_and_depend_on_the_seed():
    scene = scene_of("parallel_transversal", 1)
    cap = describe(scene, 5)
    a = make_text_negatives(scene, cap, 6, seed=3, caption_seed=5)
    b = make_text_negatives(scene, cap, 6, seed=3, caption_seed=5)
    c = make_text_negatives(scene, cap, 6, seed=4, caption_seed=5)
    assert [n.text for n in a[0]] == [n.text for n in b[0]] and a[1] == b[1]
    assert [n.text for n in a[0]] != [n.text for n in c[0]]


def test_only_the_edited_phrases_change():
    """Re-rendered with the caption's phrasing seed: a one-number edit changes exactly that number."""
    checked = 0
    for family, seed in CASES:
        scene = scene_of(family, seed)
        cap = describe(scene, seed)
        for n in negatives(family, seed)[0]:
            if n.error_type == "number" and len(n.edits) == 1:
                (e,) = n.edits
                if 90 in (e.before.value, e.after.value):
                    continue  # "is a right angle" → "measures 70 degrees" rephrases the fact
                spans = changed_spans(cap.text, n.text)
                assert [(s.before, s.after) for s in spans] == [
                    (format_number(e.before.value), format_number(e.after.value))
                ], n.text
                checked += 1
            for s in changed_spans(cap.text, n.text):  # spans index the texts they quote
                assert cap.text[s.pos_start : s.pos_end] == s.before and n.text[s.neg_start : s.neg_end] == s.after
    assert checked >= 3


def test_changed_spans_on_a_known_pair():
    spans = changed_spans("AB ∥ CD and AB = 6.5.", "AB ⟂ CD and AB = 7.5.")
    assert [(s.before, s.after) for s in spans] == [("∥", "⟂"), ("6.5", "7.5")]
    assert spans[0] == ChangedSpan(3, 4, 3, 4, "∥", "⟂")
    assert changed_spans("same text", "same text") == []


def test_slot_by_type_gives_a_fixed_layout():
    scene = scene_of("similar_triangles", 0)
    negs, _ = negatives("similar_triangles", 0)
    slots = slot_by_type(negs)
    assert len(slots) == 4
    for t, n in zip(ERROR_TYPES, slots):
        assert n is None or n.error_type == t
        assert (n is None) == (t not in {x.error_type for x in negs})
    two = slot_by_type(negs, per_type=2)
    assert len(two) == 8 and all(n is None or n.error_type == ERROR_TYPES[i // 2] for i, n in enumerate(two))
    only_numbers = [n for n in negs if n.error_type == "number"][:1]
    assert slot_by_type(only_numbers, ("label", "number")) == [None, only_numbers[0]]
    assert scene.facts  # the scene itself is untouched by negative generation
    assert describe(scene, 0).facts


def test_bad_arguments_are_named():
    scene = scene_of("midsegment", 0)
    cap = describe(scene, 1)
    with pytest.raises(ValueError, match="caption_seed"):
        make_text_negatives(scene, cap, 2, seed=0, caption_seed=2)
    with pytest.raises(ValueError, match="caption_seed"):
        make_text_negatives(scene, cap, 2, seed=0)
    with pytest.raises(ValueError, match="min_edits"):
        make_text_negatives(scene, cap, 2, seed=0, caption_seed=1, max_edits=0)
    with pytest.raises(ValueError, match="unknown error type"):
        make_text_negatives(scene, cap, 2, seed=0, caption_seed=1, types=("colour",))


def test_verify_text_negative_rejects_a_true_edit():
    scene = scene_of("midsegment", 0)
    cap = describe(scene, 0)
    negs, _ = make_text_negatives(scene, cap, 4, seed=0, caption_seed=0)
    n = negs[0]
    e = n.edits[0]
    honest = type(e)(e.error_type, e.before, e.before)  # "edited" into itself: still true
    with pytest.raises(ValueError, match="true of the figure"):
        verify_text_negative(scene, cap, TextNegative(n.text, tuple(scene.facts), (honest,), n.error_type))
    with pytest.raises(ValueError, match="reads the same"):
        verify_text_negative(scene, Caption(n.text, cap.facts), n)


def test_no_negative_is_false_by_form_alone():
    """A point is never called the midpoint/foot/intersection of lines through itself."""
    from mmgeo_utils.diagrams.captions import describe
    from mmgeo_utils.diagrams.families import FAMILIES, generate_scene
    from mmgeo_utils.negatives.text import DEFINED_POINT_KINDS, make_text_negatives

    seen = 0
    for family in sorted(FAMILIES):
        for seed in range(4):
            scene = generate_scene(family, seed)
            negs, _ = make_text_negatives(scene, describe(scene, seed), k=6, seed=seed, caption_seed=seed)
            for neg in negs:
                for edit in neg.edits:
                    f = edit.after
                    if f.kind in DEFINED_POINT_KINDS:
                        seen += 1
                        assert f.args[0] not in f.args[1:], (family, seed, f)
    assert seen > 0  # the rule was exercised
