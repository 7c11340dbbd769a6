"""Captions and question–answer pairs: deterministic, faithful to the facts, answers true of the figure."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest

from mmgeo_utils.diagrams.captions import Caption, describe, fact_to_text, n_variants
from mmgeo_utils.diagrams.facts import check_fact, shape_name
from mmgeo_utils.diagrams.families import FAMILIES, generate_scene
from mmgeo_utils.diagrams.qa import QA, make_qa
from mmgeo_utils.diagrams.scene import FACT_KINDS, Fact, Scene

SEEDS = range(8)
CASES = [(f, s) for f in FAMILIES for s in SEEDS]
# Upper-case runs that are not the start of a word ("The", "Also"): these must be point names.
LETTER_RUN = re.compile(r"(?<![A-Za-z])[A-Z]+(?![a-z])")


@functools.cache
def _json(family: str, seed: int) -> str:
    return generate_scene(family, seed).to_json()


def scene_of(family: str, seed: int) -> Scene:
    return Scene.from_json(_json(family, seed))


# ----------------------------------------------------------------------------- phrasings

EXAMPLES = {
    "length": Fact("length", ("A", "B"), 6),
    "angle": Fact("angle", ("A", "B", "C"), 40),
    "perpendicular": Fact("perpendicular", ("A", "B", "C", "D")),
    "parallel": Fact("parallel", ("A", "B", "C", "D")),
    "equal_length": Fact("equal_length", ("A", "B", "A", "C")),
    "midpoint": Fact("midpoint", ("M", "A", "B")),
    "on_segment": Fact("on_segment", ("P", "A", "B")),
    "on_circle": Fact("on_circle", ("P", "O")),
    "diameter": Fact("diameter", ("A", "B", "O")),
    "radius": Fact("radius", ("O", "A")),
    "tangent": Fact("tangent", ("P", "T", "O")),
    "secant": Fact("secant", ("P", "A", "O")),
    "altitude": Fact("altitude", ("C", "H", "A", "B")),
    "median": Fact("median", ("A", "M", "B", "C")),
    "bisector": Fact("bisector", ("B", "D", "A", "C")),
    "intersection": Fact("intersection", ("E", "A", "C", "B", "D")),
    "shape": Fact("shape", ("A", "B", "C", "D"), "rhombus"),
    "similar": Fact("similar", ("A", "D", "E", "A", "B", "C")),
    "congruent": Fact("congruent", ("A", "B", "M", "A", "C", "M")),
}


def test_every_kind_has_several_phrasings():
    assert set(EXAMPLES) == set(FACT_KINDS)
    for kind, f in EXAMPLES.items():
        texts = {fact_to_text(f, v) for v in range(n_variants(f))}
        assert len(texts) >= 2, f"{kind} has one phrasing"
        for t in texts:
            for run in LETTER_RUN.findall(t):
                assert set(run) <= set(f.args), f"{t!r} names {run} which is not in {f.args}"
            for p in f.args:
                assert p in t, f"{t!r} does not name {p}"
        assert fact_to_text(f, n_variants(f)) == fact_to_text(f, 0), "variants wrap around"


def test_symbols_and_words_both_appear():
    par = {fact_to_text(EXAMPLES["parallel"], v) for v in range(3)}
    assert "AB ∥ CD" in par and "AB is parallel to CD" in par
    ang = {fact_to_text(EXAMPLES["angle"], v) for v in range(4)}
    assert "∠ABC = 40°" in ang and "angle ABC measures 40 degrees" in ang


@pytest.mark.parametrize("value,text", [(6, "6"), (6.0, "6"), (4.5, "4.5"), (12.0, "12"), (0.5, "0.5")])
def test_numbers_print_without_trailing_zero(value, text):
    assert fact_to_text(Fact("length", ("A", "B"), value)) == f"AB = {text}"


# ----------------------------------------------------------------------------- captions


@pytest.mark.parametrize("family,seed", CASES)
def test_caption_states_every_fact_with_scene_letters(family, seed):
    scene = scene_of(family, seed)
    cap = describe(scene, seed)
    assert isinstance(cap, Caption)
    assert scene.fact_keys() == {f.key() for f in cap.facts}, "the caption must state every fact"
    assert len(cap.facts) == len(scene.facts)
    for f in cap.facts:
        for p in f.args:
            assert p in cap.text, f"{f} is stated but {p} is not in the text"
        if f.kind == "angle" and float(f.value) == 90:
            assert any(s in cap.text for s in ("90°", "right angle", "⟂")), f"right angle {f} missing"
        elif f.value is not None and f.kind != "shape":
            assert re.search(rf"(?<![\d.]){re.escape(str(f.value))}(?!\.?\d)", cap.text), f"value of {f} missing"
        if f.kind == "shape":
            assert str(f.value) in cap.text or str(f.value).removesuffix(" triangle") in cap.text
    for run in LETTER_RUN.findall(cap.text):
        assert set(run) <= set(scene.points), f"caption uses letters {run!r} that are not points of the scene"
    assert cap.text.endswith(".") and cap.text[0].isupper()


@pytest.mark.parametrize("family", FAMILIES)
def test_captions_are_deterministic_and_vary_with_the_seed(family):
    scene = scene_of(family, 0)
    assert describe(scene, 3) == describe(scene, 3)
    assert describe(Scene.from_json(scene.to_json()), 3) == describe(scene, 3)
    texts = {describe(scene, s).text for s in range(6)}
    assert len(texts) >= 5, "different caption seeds should give different phrasings"
    orders = {tuple(f.key() for f in describe(scene, s).facts) for s in range(6)}
    assert len(orders) >= 2, "the order of facts should depend on the seed"


def test_different_scenes_give_different_captions():
    texts = {describe(scene_of(f, s), 0).text for f, s in CASES}
    assert len(texts) == len(CASES)


# ----------------------------------------------------------------------------- questions


def measured_length(scene: Scene, a: str, b: str) -> float:
    return scene.unit * float(np.hypot(*(np.subtract(scene.points[a], scene.points[b]))))


def measured_angle(scene: Scene, a: str, v: str, b: str) -> float:
    u, w = np.subtract(scene.points[a], scene.points[v]), np.subtract(scene.points[b], scene.points[v])
    return math.degrees(math.acos(np.clip(u @ w / np.linalg.norm(u) / np.linalg.norm(w), -1, 1)))


def verify_answer(scene: Scene, qa: QA) -> None:
    f = qa.fact
    assert f is not None and all(p in scene.points for p in f.args)
    for p in f.args:  # a which-question names its answer's points only in the answer
        assert p in qa.question or (qa.kind == "which" and p in qa.answer), f"{qa.question!r} does not name {p}"
    if qa.kind == "length":
        true = measured_length(scene, *f.args)
        assert abs(true - float(qa.value)) <= 0.05 + 1e-6, f"{qa.question} answered {qa.answer}, measured {true}"
        assert float(qa.answer) == float(qa.value)
        if "decimal" not in qa.question:  # an exact answer
            assert abs(true - float(qa.value)) <= 1e-3 * true
    elif qa.kind == "angle":
        true = measured_angle(scene, *f.args)
        assert abs(true - float(qa.value)) <= 1e-3, f"{qa.question} answered {qa.answer}, measured {true}"
        assert qa.answer == f"{int(qa.value)}°"
    elif qa.kind == "yes_no":
        assert qa.answer in ("yes", "no") and qa.value == qa.answer
        assert check_fact(scene, f) == (qa.answer == "yes"), f"{qa.question} -> {qa.answer} but {f}"
    elif qa.kind == "which":
        assert check_fact(scene, f) and qa.answer == f.args[0] + f.args[1]
    elif qa.kind == "shape":
        assert qa.answer == shape_name([scene.points[p] for p in f.args]) == qa.value
    else:
        raise AssertionError(f"unknown QA kind {qa.kind}")


@pytest.mark.parametrize("family,seed", CASES)
def test_qa_answers_are_true_of_the_figure(family, seed):
    scene = scene_of(family, seed)
    qas = make_qa(scene, seed)
    assert len(qas) >= 3
    assert len({q.question for q in qas}) == len(qas), "no question twice"
    for qa in qas:
        verify_answer(scene, qa)
        for run in LETTER_RUN.findall(qa.question):
            assert set(run) <= set(scene.points)


def test_qa_covers_kinds_and_both_yes_no_answers():
    qas = [q for f, s in CASES for q in make_qa(scene_of(f, s), s)]
    kinds = {q.kind for q in qas}
    assert {"length", "angle", "yes_no", "which", "shape"} <= kinds
    answers = {q.answer for q in qas if q.kind == "yes_no"}
    assert answers == {"yes", "no"}
    exact = [q for q in qas if q.kind == "length" and "decimal" not in q.question]
    assert len(exact) >= len(FAMILIES), "most scenes should get an exactly derivable length"


def test_qa_is_deterministic():
    scene = scene_of("tangent_external", 1)
    assert make_qa(scene, 4) == make_qa(scene, 4)
    assert any(make_qa(scene, 4) != make_qa(scene, s) for s in range(5, 10))


def test_hidden_values_are_asked():
    """A classic: hypotenuse from a Pythagorean triple, or Thales' right angle, must be answerable."""
    found = False
    for s in range(40):
        scene = generate_scene("right_triangle_altitude", s)
        stated = {frozenset(f.args) for f in scene.facts if f.kind == "length"}
        for qa in make_qa(scene, 0):
            if qa.kind == "length" and "decimal" not in qa.question and frozenset(qa.fact.args) not in stated:
                found = True
    assert found
