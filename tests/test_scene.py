"""The scene data model and the fact checker, on hand-built scenes with known answers.

Every fact kind is checked both ways: a true instance must pass and a deliberately
false one must fail, otherwise a perturbation claiming to change a fact could
silently leave it true.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmgeo_utils.diagrams.facts import check_fact, check_scene_facts, shape_name
from mmgeo_utils.diagrams.geometry import angle_bisector_point, foot_of_perpendicular, midpoint
from mmgeo_utils.diagrams.scene import (
    FACT_KINDS,
    SHAPE_NAMES,
    Circle,
    Fact,
    Polygon,
    Scene,
    Segment,
    fact_set,
    validate_scene,
)

# ----------------------------------------------------------------------------- a scene with everything


def reference_scene() -> Scene:
    """Right triangle ABC (right angle at A, AB = 4, AC = 3) with its circumcircle and classic points.

    E, F, M are the midpoints of AB, AC, BC; H the foot of the altitude from A;
    D the foot of the bisector from A; P a point on the tangent at A; the circle is
    centred at M (Thales) with radius 2.5.
    """
    a, b, c = np.array([0.0, 0.0]), np.array([4.0, 0.0]), np.array([0.0, 3.0])
    m = midpoint(b, c)
    tangent_dir = np.array([-(a - m)[1], (a - m)[0]])  # perpendicular to the radius MA
    pts = {
        "A": a,
        "B": b,
        "C": c,
        "M": m,
        "E": midpoint(a, b),
        "F": midpoint(a, c),
        "H": foot_of_perpendicular(a, b, c),
        "D": angle_bisector_point(a, b, c),
        "P": a + tangent_dir / np.linalg.norm(tangent_dir) * 2.0,
    }
    return Scene(
        "hand",
        {k: tuple(map(float, v)) for k, v in pts.items()},
        [Polygon(("A", "B", "C")), Circle("M", 2.5), Segment("A", "H"), Segment("E", "F")],
        [],
    )


TRUE_AND_FALSE: dict[str, tuple[Fact, list[Fact]]] = {
    "length": (Fact("length", ("A", "B"), 4), [Fact("length", ("A", "B"), 5), Fact("length", ("B", "C"), 4)]),
    "angle": (
        Fact("angle", ("B", "A", "C"), 90),
        [Fact("angle", ("A", "B", "C"), 40), Fact("angle", ("B", "A", "C"), 89)],
    ),
    "perpendicular": (Fact("perpendicular", ("A", "B", "A", "C")), [Fact("perpendicular", ("A", "B", "B", "C"))]),
    "parallel": (
        Fact("parallel", ("E", "F", "B", "C")),
        [Fact("parallel", ("A", "B", "B", "C")), Fact("parallel", ("A", "B", "A", "E"))],
    ),  # same line
    "equal_length": (Fact("equal_length", ("M", "B", "M", "C")), [Fact("equal_length", ("A", "B", "A", "C"))]),
    "midpoint": (Fact("midpoint", ("M", "B", "C")), [Fact("midpoint", ("H", "B", "C"))]),
    "on_segment": (Fact("on_segment", ("H", "B", "C")), [Fact("on_segment", ("E", "B", "C"))]),
    "on_circle": (
        Fact("on_circle", ("A", "M")),
        [Fact("on_circle", ("E", "M")), Fact("on_circle", ("A", "B"))],
    ),  # no circle at B
    "diameter": (Fact("diameter", ("B", "C", "M")), [Fact("diameter", ("A", "B", "M"))]),
    "radius": (Fact("radius", ("M", "A")), [Fact("radius", ("M", "E"))]),
    "tangent": (Fact("tangent", ("P", "A", "M")), [Fact("tangent", ("B", "A", "M")), Fact("tangent", ("P", "E", "M"))]),
    "secant": (Fact("secant", ("H", "B", "M")), [Fact("secant", ("P", "A", "M"))]),  # a tangent is no secant
    "altitude": (Fact("altitude", ("A", "H", "B", "C")), [Fact("altitude", ("A", "M", "B", "C"))]),
    "median": (Fact("median", ("A", "M", "B", "C")), [Fact("median", ("A", "H", "B", "C"))]),
    "bisector": (Fact("bisector", ("A", "D", "B", "C")), [Fact("bisector", ("A", "M", "B", "C"))]),
    "intersection": (
        Fact("intersection", ("M", "B", "C", "A", "M")),
        [Fact("intersection", ("E", "B", "C", "A", "M")), Fact("intersection", ("M", "E", "F", "B", "C"))],
    ),  # parallel lines never meet
    "shape": (
        Fact("shape", ("A", "B", "C"), "right triangle"),
        [Fact("shape", ("A", "B", "C"), "triangle"), Fact("shape", ("A", "B", "C"), "isosceles right triangle")],
    ),
    "similar": (
        Fact("similar", ("A", "B", "C", "H", "A", "C")),
        [Fact("similar", ("A", "B", "C", "A", "B", "M")), Fact("similar", ("A", "B", "C", "H", "C", "A"))],
    ),
    "congruent": (
        Fact("congruent", ("A", "E", "F", "E", "B", "M")),
        [Fact("congruent", ("A", "B", "C", "A", "E", "F")), Fact("congruent", ("A", "E", "F", "E", "M", "B"))],
    ),
}


def test_every_fact_kind_is_covered():
    assert set(TRUE_AND_FALSE) == set(FACT_KINDS)


@pytest.mark.parametrize("kind", sorted(FACT_KINDS))
def test_check_fact_true_and_false(kind):
    scene = reference_scene()
    true_fact, false_facts = TRUE_AND_FALSE[kind]
    assert check_fact(scene, true_fact), f"{true_fact} should hold"
    for f in false_facts:
        assert not check_fact(scene, f), f"{f} should be false"


def test_check_fact_is_invariant_under_argument_order():
    """Facts are canonicalised for comparison; the checker must agree on equivalent forms."""
    scene = reference_scene()
    for f in (
        Fact("parallel", ("C", "B", "F", "E")),
        Fact("length", ("B", "A"), 4),
        Fact("angle", ("C", "A", "B"), 90),
        Fact("shape", ("C", "B", "A"), "right triangle"),
        Fact("similar", ("B", "A", "C", "A", "H", "C")),
    ):
        assert check_fact(scene, f)
        assert check_fact(scene, f.canonical())


def test_lengths_use_the_scene_unit():
    scene = reference_scene()
    scene.unit = 2.5
    assert check_fact(scene, Fact("length", ("A", "B"), 10))
    assert not check_fact(scene, Fact("length", ("A", "B"), 4))


def test_check_fact_names_a_missing_point():
    with pytest.raises(ValueError, match="missing point 'Z'"):
        check_fact(reference_scene(), Fact("length", ("A", "Z"), 3))


def test_check_scene_facts_names_the_false_fact():
    scene = reference_scene()
    scene.facts = [TRUE_AND_FALSE["median"][0], Fact("parallel", ("A", "B", "B", "C"))]
    with pytest.raises(ValueError, match=r"false fact .*parallel\(A,B,B,C\)"):
        check_scene_facts(scene)
    scene.facts = [f for f, _ in TRUE_AND_FALSE.values()]
    assert check_scene_facts(scene) is scene


# ----------------------------------------------------------------------------- shapes

SHAPES = {
    "triangle": [(0, 0), (6, 0), (1, 3)],
    "right triangle": [(0, 0), (4, 0), (0, 3)],
    "isosceles triangle": [(0, 0), (4, 0), (2, 5)],
    "equilateral triangle": [(0, 0), (2, 0), (1, math.sqrt(3))],
    "isosceles right triangle": [(0, 0), (3, 0), (0, 3)],
    "quadrilateral": [(0, 0), (5, 0), (4, 3), (1, 2)],
    "parallelogram": [(0, 0), (5, 0), (6, 2), (1, 2)],
    "rectangle": [(0, 0), (5, 0), (5, 2), (0, 2)],
    "rhombus": [(0, 0), (5, 0), (8, 4), (3, 4)],
    "square": [(0, 0), (3, 0), (3, 3), (0, 3)],
    "trapezoid": [(0, 0), (6, 0), (4, 2), (1, 2)],
    "isosceles trapezoid": [(0, 0), (6, 0), (5, 2), (1, 2)],
}


def test_every_shape_name_is_covered():
    assert set(SHAPES) == set(SHAPE_NAMES)


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shape_name_is_the_most_specific(name):
    pts = [np.array(p, dtype=float) for p in SHAPES[name]]
    assert shape_name(pts) == name
    assert shape_name(pts[::-1]) == name  # orientation does not matter
    assert shape_name(pts[1:] + pts[:1]) == name  # nor the starting vertex


@pytest.mark.parametrize(
    "specific,general",
    [
        ("square", "rectangle"),
        ("square", "rhombus"),
        ("rectangle", "parallelogram"),
        ("rhombus", "parallelogram"),
        ("equilateral triangle", "isosceles triangle"),
        ("isosceles right triangle", "right triangle"),
        ("isosceles trapezoid", "trapezoid"),
        ("right triangle", "triangle"),
    ],
)
def test_a_shape_fact_with_a_less_specific_name_is_false(specific, general):
    """The documented choice: a square is not stated as 'rectangle', so that swap is a hard negative."""
    names = [chr(ord("A") + i) for i in range(len(SHAPES[specific]))]
    scene = Scene(
        "shapes", {n: tuple(map(float, p)) for n, p in zip(names, SHAPES[specific])}, [Polygon(tuple(names))], []
    )
    assert check_fact(scene, Fact("shape", tuple(names), specific))
    assert not check_fact(scene, Fact("shape", tuple(names), general))


def test_shape_name_rejects_degenerate_and_unnamed_polygons():
    with pytest.raises(ValueError, match="degenerate"):
        shape_name([(0, 0), (1, 1), (2, 2)])
    with pytest.raises(ValueError, match="self-intersecting"):
        shape_name([(0, 0), (2, 2), (2, 0), (0, 2)])
    with pytest.raises(ValueError, match="5 vertices"):
        shape_name([(0, 0), (2, 0), (3, 1), (1, 3), (-1, 1)])


# ----------------------------------------------------------------------------- the data model


def test_fact_canonical_forms_compare_equal():
    assert Fact("parallel", ("A", "B", "C", "D")).key() == Fact("parallel", ("D", "C", "B", "A")).key()
    assert Fact("length", ("B", "A"), 6.0).key() == Fact("length", ("A", "B"), 6).key()
    assert Fact("shape", ("A", "B", "C", "D"), "square").key() == Fact("shape", ("C", "B", "A", "D"), "square").key()
    assert fact_set([Fact("angle", ("A", "B", "C"), 40)]) != fact_set([Fact("angle", ("A", "B", "C"), 41)])


@pytest.mark.parametrize(
    "kind,args,value,match",
    [
        ("no_such_kind", ("A", "B"), None, "unknown fact kind"),
        ("length", ("A",), 3, "takes 2 points"),
        ("length", ("A", "B"), None, "numeric value"),
        ("shape", ("A", "B", "C"), "hexagon", "unknown shape"),
        ("parallel", ("A", "B", "C", "D"), 3, "takes no value"),
    ],
)
def test_malformed_facts_are_rejected(kind, args, value, match):
    with pytest.raises(ValueError, match=match):
        Fact(kind, args, value)


def test_validate_scene_names_the_problem():
    good = reference_scene()
    assert validate_scene(good) is good
    zero = reference_scene()
    zero.points["Q"] = zero.points["A"]
    with pytest.raises(ValueError, match="coincide"):
        validate_scene(zero)
    side = reference_scene()
    side.elements.append(Segment("A", "A"))
    with pytest.raises(ValueError, match="zero-length side AA"):
        validate_scene(side)
    missing = reference_scene()
    missing.facts.append(Fact("on_circle", ("Z", "M")))
    with pytest.raises(ValueError, match=r"missing point\(s\) \['Z'\]"):
        validate_scene(missing)
    twice = reference_scene()
    twice.facts.append(Fact("midpoint", ("M", "B", "B")))
    with pytest.raises(ValueError, match="twice"):
        validate_scene(twice)


def test_facts_about_two_segments_may_share_a_point():
    """'AB = AC' and 'AB ⟂ AC' are ordinary facts, not a label used twice."""
    scene = reference_scene()
    scene.facts = [Fact("equal_length", ("M", "B", "M", "C")), Fact("perpendicular", ("A", "B", "A", "C"))]
    assert validate_scene(scene) is scene


def test_a_label_used_twice_in_json_is_an_error():
    text = reference_scene().to_json()
    dup = text.replace('"points":{', '"points":{"A":[9.0,9.0],', 1)
    with pytest.raises(ValueError, match="label 'A' is used twice"):
        Scene.from_json(dup)


def test_json_round_trip():
    scene = reference_scene()
    scene.facts = [f for f, _ in TRUE_AND_FALSE.values()]
    back = Scene.from_json(scene.to_json())
    assert back.to_json() == scene.to_json()
    assert back.fact_keys() == scene.fact_keys()
