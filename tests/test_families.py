"""Problem families: every generated scene is valid, legible, drawn to scale and marked honestly.

The facts are verified here with our own measurements (plain numpy below), not only
through :func:`mmgeo_utils.diagrams.facts.check_fact`, so a bug in the checker cannot hide a
bug in a generator.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scene_cache import scene_json, scene_of

from mmgeo_utils.diagrams.facts import check_fact
from mmgeo_utils.diagrams.families import (
    FAMILIES,
    MIN_ANGLE_DEG,
    MIN_FACTS,
    MIN_SIDE_FRAC,
    drawn_sides,
    generate_scene,
    sample_scene,
)
from mmgeo_utils.diagrams.layout import label_clearances, place_labels, scene_extent
from mmgeo_utils.diagrams.scene import (
    AngleMark,
    Circle,
    EqualTicks,
    Fact,
    LengthLabel,
    ParallelArrows,
    Polygon,
    RightAngleMark,
    Scene,
    Segment,
    validate_scene,
)

SEEDS = range(20)
ANGLE_TOL = 0.5  # degrees
REL = 1e-3
CASES = [(f, s) for f in FAMILIES for s in SEEDS]


# ----------------------------------------------------------------------------- independent measurements


def xy(scene: Scene, p: str) -> np.ndarray:
    return np.array(scene.points[p], dtype=float)


def length(scene: Scene, a: str, b: str) -> float:
    return float(np.linalg.norm(xy(scene, a) - xy(scene, b)))


def angle(scene: Scene, a: str, v: str, b: str) -> float:
    u, w = xy(scene, a) - xy(scene, v), xy(scene, b) - xy(scene, v)
    return math.degrees(math.acos(np.clip(u @ w / (np.linalg.norm(u) * np.linalg.norm(w)), -1, 1)))


def line_angle(scene: Scene, a: str, b: str, c: str, d: str) -> float:
    u, w = xy(scene, b) - xy(scene, a), xy(scene, d) - xy(scene, c)
    return math.degrees(math.acos(min(1.0, abs(u @ w) / (np.linalg.norm(u) * np.linalg.norm(w)))))


def dist_to_line(scene: Scene, p: str, a: str, b: str) -> float:
    u, w = xy(scene, b) - xy(scene, a), xy(scene, p) - xy(scene, a)
    return abs(u[0] * w[1] - u[1] * w[0]) / np.linalg.norm(u)


def radius_at(scene: Scene, o: str) -> float:
    radii = [el.radius for el in scene.elements if isinstance(el, Circle) and el.center == o]
    assert radii, f"no circle drawn around {o}"
    return radii[0]


def close(x: float, y: float) -> bool:
    return abs(x - y) <= REL * max(abs(x), abs(y))


def between(scene: Scene, p: str, a: str, b: str) -> bool:
    t = (xy(scene, p) - xy(scene, a)) @ (xy(scene, b) - xy(scene, a)) / length(scene, a, b) ** 2
    return dist_to_line(scene, p, a, b) <= REL * length(scene, a, b) and -REL <= t <= 1 + REL


def sides(scene: Scene, tri) -> list[float]:
    a, b, c = tri
    return [length(scene, a, b), length(scene, b, c), length(scene, c, a)]


def verify(scene: Scene, f: Fact) -> bool:
    """Our own reading of each fact kind (see FACT_KINDS), measured with numpy."""
    a, S = f.args, scene
    k = f.kind
    if k == "length":
        return close(S.unit * length(S, *a), float(f.value))
    if k == "angle":
        return abs(angle(S, *a) - float(f.value)) <= ANGLE_TOL
    if k == "perpendicular":
        return abs(line_angle(S, *a) - 90) <= ANGLE_TOL
    if k == "parallel":
        return line_angle(S, *a) <= ANGLE_TOL and dist_to_line(S, a[2], a[0], a[1]) > REL
    if k == "equal_length":
        return close(length(S, a[0], a[1]), length(S, a[2], a[3]))
    if k == "midpoint":
        return np.linalg.norm(xy(S, a[0]) - (xy(S, a[1]) + xy(S, a[2])) / 2) <= REL * length(S, a[1], a[2])
    if k == "on_segment":
        return between(S, *a)
    if k == "on_circle":
        return close(length(S, *a), radius_at(S, a[1]))
    if k == "radius":
        return close(length(S, a[0], a[1]), radius_at(S, a[0]))
    if k == "diameter":
        r = radius_at(S, a[2])
        return (
            close(length(S, a[0], a[1]), 2 * r) and close(length(S, a[0], a[2]), r) and close(length(S, a[1], a[2]), r)
        )
    if k == "tangent":  # tangent ⟂ radius at a point of the circle
        return (
            close(length(S, a[2], a[1]), radius_at(S, a[2]))
            and abs(line_angle(S, a[0], a[1], a[2], a[1]) - 90) <= ANGLE_TOL
        )
    if k == "secant":
        return close(length(S, a[2], a[1]), radius_at(S, a[2])) and dist_to_line(S, a[2], a[0], a[1]) < radius_at(
            S, a[2]
        ) * (1 - REL)
    if k == "altitude":
        return (
            dist_to_line(S, a[1], a[2], a[3]) <= REL * length(S, a[2], a[3])
            and abs(line_angle(S, a[0], a[1], a[2], a[3]) - 90) <= ANGLE_TOL
        )
    if k == "median":
        return verify(S, Fact("midpoint", (a[1], a[2], a[3])))
    if k == "bisector":
        return (
            abs(angle(S, a[2], a[0], a[1]) - angle(S, a[1], a[0], a[3])) <= ANGLE_TOL
            and abs(angle(S, a[2], a[0], a[1]) + angle(S, a[1], a[0], a[3]) - angle(S, a[2], a[0], a[3])) <= ANGLE_TOL
        )
    if k == "intersection":
        scale = scene_extent(S)
        return dist_to_line(S, a[0], a[1], a[2]) <= REL * scale and dist_to_line(S, a[0], a[3], a[4]) <= REL * scale
    if k == "similar":
        r = [x / y for x, y in zip(sides(S, a[:3]), sides(S, a[3:]))]
        return all(close(x, r[0]) for x in r)
    if k == "congruent":
        return all(close(x, y) for x, y in zip(sides(S, a[:3]), sides(S, a[3:])))
    if k == "shape":
        return verify_shape(S, a, str(f.value))
    raise AssertionError(f"no independent check for {k}")


def verify_shape(S: Scene, vs, name: str) -> bool:
    """The defining properties of each name, most specific (a square is not a 'rectangle')."""
    n = len(vs)
    L = [length(S, vs[i], vs[(i + 1) % n]) for i in range(n)]
    angs = [angle(S, vs[i - 1], vs[i], vs[(i + 1) % n]) for i in range(n)]
    right = [abs(x - 90) <= ANGLE_TOL for x in angs]
    if n == 3:
        eq = sum(close(L[i], L[j]) for i in range(3) for j in range(i + 1, 3))
        expect = (
            "equilateral triangle"
            if eq == 3
            else "isosceles right triangle"
            if eq and any(right)
            else "right triangle"
            if any(right)
            else "isosceles triangle"
            if eq
            else "triangle"
        )
        return name == expect
    par1 = line_angle(S, vs[0], vs[1], vs[3], vs[2]) <= ANGLE_TOL
    par2 = line_angle(S, vs[1], vs[2], vs[0], vs[3]) <= ANGLE_TOL
    if par1 and par2:
        expect = {
            (True, True): "square",
            (True, False): "rectangle",
            (False, True): "rhombus",
            (False, False): "parallelogram",
        }[(right[0], close(L[0], L[1]))]
    elif par1 or par2:
        legs = (L[1], L[3]) if par1 else (L[0], L[2])
        expect = "isosceles trapezoid" if close(*legs) else "trapezoid"
    else:
        expect = "quadrilateral"
    return name == expect


# ----------------------------------------------------------------------------- every family, many seeds


def test_enough_families():
    assert len(FAMILIES) >= 8
    for name in (
        "right_triangle_altitude",
        "isosceles_median",
        "angle_bisector",
        "parallel_transversal",
        "thales_circle",
        "tangent_external",
        "quadrilateral_diagonals",
        "similar_triangles",
    ):
        assert name in FAMILIES


@pytest.mark.parametrize("family,seed", CASES)
def test_scene_is_valid_and_every_fact_holds(family, seed):
    scene = scene_of(family, seed)
    assert scene.family == family and scene.seed == seed
    validate_scene(scene)
    for f in scene.facts:
        assert check_fact(scene, f), f"check_fact rejects {f}"
        assert verify(scene, f), f"measured coordinates contradict {f}"
    assert len(scene.facts) >= MIN_FACTS
    assert len({f.kind for f in scene.facts}) >= 3, "facts should span several kinds"


@pytest.mark.parametrize("family,seed", CASES)
def test_stated_numbers_are_nice_and_to_scale(family, seed):
    scene = scene_of(family, seed)
    for f in scene.facts:
        if f.kind == "length":
            v = float(f.value)
            assert abs(v * 10 - round(v * 10)) < 1e-9, f"{f} is not an integer or one decimal"
            assert abs(scene.unit * length(scene, *f.args) - v) <= 1e-4 * v, f"{f} is not drawn to scale"
        if f.kind == "angle":
            assert float(f.value).is_integer(), f"{f} is not a whole number of degrees"


@pytest.mark.parametrize("family,seed", CASES)
def test_marks_match_facts(family, seed):
    scene = scene_of(family, seed)
    els, facts = scene.elements, scene.facts

    def right_mark_at(v: str) -> bool:
        return any(isinstance(e, RightAngleMark) and e.vertex == v for e in els)

    for e in els:  # every mark is true of the drawing
        if isinstance(e, RightAngleMark):
            assert abs(angle(scene, e.a, e.vertex, e.b) - 90) <= ANGLE_TOL, f"right-angle mark at {e.vertex}"
        if isinstance(e, AngleMark) and e.label:
            value = float(e.label.rstrip("°"))
            assert abs(angle(scene, e.a, e.vertex, e.b) - value) <= ANGLE_TOL, f"angle mark {e}"
            assert any(
                f.kind == "angle"
                and f.args[1] == e.vertex
                and {f.args[0], f.args[2]} == {e.a, e.b}
                and float(f.value) == value
                for f in facts
            ), f"labelled angle {e} has no fact"
        if isinstance(e, LengthLabel):
            assert any(f.kind == "length" and set(f.args) == {e.a, e.b} and str(f.value) == e.text for f in facts), (
                f"length label {e} has no fact"
            )
    for cls, same in (
        (EqualTicks, lambda s, t: close(length(scene, *s), length(scene, *t))),
        (ParallelArrows, lambda s, t: line_angle(scene, *s, *t) <= ANGLE_TOL),
    ):
        groups: dict[int, list[tuple[str, str]]] = {}
        for e in els:
            if isinstance(e, cls):
                groups.setdefault(e.count, []).append((e.a, e.b))
        for segs in groups.values():
            assert all(same(segs[0], s) for s in segs), f"{cls.__name__} group {segs} is not uniform"

    def count_on(cls, a: str, b: str) -> int | None:
        return next((e.count for e in els if isinstance(e, cls) and {e.a, e.b} == {a, b}), None)

    for f in facts:  # every fact is shown
        a = f.args
        if f.kind == "angle" and float(f.value) == 90:
            assert right_mark_at(a[1]), f"{f} has no right-angle mark"
        elif f.kind == "angle":
            assert any(isinstance(e, AngleMark) and e.vertex == a[1] and e.label == f"{f.value}°" for e in els), f
        if f.kind == "length":
            assert any(isinstance(e, LengthLabel) and {e.a, e.b} == set(a) for e in els), f"{f} is not labelled"
        if f.kind == "parallel":
            c1, c2 = count_on(ParallelArrows, *a[:2]), count_on(ParallelArrows, *a[2:])
            assert c1 is not None and c1 == c2, f"{f} lacks matching arrows"
        if f.kind == "equal_length":
            c1, c2 = count_on(EqualTicks, *a[:2]), count_on(EqualTicks, *a[2:])
            assert c1 is not None and c1 == c2, f"{f} lacks matching ticks"
        if f.kind == "midpoint":
            c1, c2 = count_on(EqualTicks, a[1], a[0]), count_on(EqualTicks, a[0], a[2])
            assert c1 is not None and c1 == c2, f"{f} lacks matching ticks"
        if f.kind in ("altitude", "tangent"):
            assert right_mark_at(a[1]), f"{f} has no right-angle mark at {a[1]}"
        if f.kind == "perpendicular":
            assert any(
                isinstance(e, RightAngleMark) and between(scene, e.vertex, *a[:2]) and between(scene, e.vertex, *a[2:])
                for e in els
            ), f"{f} has no right-angle mark"
        if f.kind in ("altitude", "median"):
            assert any(isinstance(e, Segment) and e.dashed and {e.a, e.b} == set(a[:2]) for e in els), (
                f"auxiliary {f.kind} {a[0]}{a[1]} should be dashed"
            )
        if f.kind == "tangent":
            assert any(isinstance(e, Segment) and e.dashed and {e.a, e.b} == {a[1], a[2]} for e in els), (
                "the radius to a tangent point should be dashed"
            )
    polygons = [e.vertices for e in els if isinstance(e, Polygon)]
    shapes = {frozenset(f.args) for f in facts if f.kind == "shape"}
    assert shapes, "every scene names a polygon"
    for vs in polygons:
        assert frozenset(vs) in shapes, f"polygon {''.join(vs)} has no shape fact"


@pytest.mark.parametrize("family,seed", CASES)
def test_figure_is_legible(family, seed):
    scene = scene_of(family, seed)
    ext = scene_extent(scene)
    for vs in [e.vertices for e in scene.elements if isinstance(e, Polygon)] + [
        f.args for f in scene.facts if f.kind == "shape"
    ]:
        n = len(vs)
        for i in range(n):
            assert angle(scene, vs[i - 1], vs[i], vs[(i + 1) % n]) >= MIN_ANGLE_DEG - 1e-6, f"sliver {''.join(vs)}"
    for a, b in drawn_sides(scene):
        assert length(scene, a, b) >= MIN_SIDE_FRAC * ext, f"side {a}{b} too short"
    for e in scene.elements:
        if isinstance(e, AngleMark):
            assert angle(scene, e.a, e.vertex, e.b) >= MIN_ANGLE_DEG - 1e-6


@pytest.mark.parametrize("family,seed", CASES)
def test_labels_are_placed_clear_of_everything(family, seed):
    scene = scene_of(family, seed)
    assert set(scene.label_offsets) == set(scene.points)
    clear = label_clearances(scene)
    assert min(clear.values()) > 0, f"labels touching lines or each other: {clear}"
    again = place_labels(scene.copy())
    assert again.label_offsets == scene.label_offsets, "label placement must be deterministic"


@pytest.mark.parametrize("family", FAMILIES)
def test_json_round_trip_and_determinism(family):
    for seed in range(3):
        scene = generate_scene(family, seed)
        back = Scene.from_json(scene.to_json())
        assert back == scene and back.to_json() == scene.to_json()
        assert generate_scene(family, seed).to_json() == scene.to_json()
    jsons = {scene_json(family, s) for s in SEEDS}
    assert len(jsons) == len(SEEDS), "different seeds must give different scenes"


@pytest.mark.parametrize("family", FAMILIES)
def test_letters_and_optional_facts_vary(family):
    """A model must not key on letters, and scenes of one family must differ in what they state."""
    scenes = [scene_of(family, s) for s in SEEDS]
    letter_sets = {frozenset(s.points) - {"O"} for s in scenes}
    assert len(letter_sets) >= 5
    kinds = {tuple(sorted(f.kind for f in s.facts)) for s in scenes}
    assert len(kinds) >= 3, "optional facts should be shown or hidden by the seed"


def test_quadrilateral_family_covers_every_type():
    names = {
        f.value for s in range(60) for f in generate_scene("quadrilateral_diagonals", s).facts if f.kind == "shape"
    }
    assert {"parallelogram", "rectangle", "rhombus", "square", "trapezoid", "isosceles trapezoid"} <= names


def test_sample_scene_is_deterministic_and_mixes_families():
    assert sample_scene(5).to_json() == sample_scene(5).to_json()
    assert len({sample_scene(s).family for s in range(30)}) >= 6
    assert {sample_scene(s, ["thales_circle", "midsegment"]).family for s in range(10)} == {
        "thales_circle",
        "midsegment",
    }


def test_unknown_family_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown family 'hexagons'.*right_triangle_altitude"):
        generate_scene("hexagons", 0)
    with pytest.raises(ValueError, match="unknown family 'hexagons'"):
        sample_scene(0, ["thales_circle", "hexagons"])


def test_a_false_fact_in_a_generated_scene_is_caught():
    from mmgeo_utils.diagrams.facts import check_scene_facts

    scene = scene_of("similar_triangles", 0)
    f = next(f for f in scene.facts if f.kind == "parallel")
    a = f.args
    scene.facts.append(Fact("parallel", (a[0], a[1], a[0], a[3]) if a[3] != a[1] else (a[0], a[1], a[2], a[0])))
    with pytest.raises(ValueError, match="false fact"):
        check_scene_facts(scene)


def test_letters_are_single_capitals():
    for family in FAMILIES:
        assert all(re.fullmatch(r"[A-Z]", p) for p in scene_of(family, 0).points)


# ----------------------------------------------------------------------------- legibility rules, one at a time


def _triangle(**extra_points) -> Scene:
    """A plainly legible triangle ABC (angles about 69°, 49° and 62°) to break one rule at a time."""
    points = {"A": (0.0, 0.0), "B": (10.0, 0.0), "C": (3.0, 8.0), **extra_points}
    return Scene("hand", points, [Polygon(("A", "B", "C"))], [])


def _with(scene: Scene, *elements) -> Scene:
    scene.elements += list(elements)
    return scene


def _value_disc_centre(scene: Scene) -> tuple[float, float]:
    """Where the (only) angle value of ``scene`` will be written."""
    from mmgeo_utils.diagrams.layout import annotation_discs

    ((_, centre, _),) = annotation_discs(scene)
    return tuple(float(x) for x in centre)


def _value_scene(**extra_points) -> Scene:
    return _with(_triangle(**extra_points), AngleMark("A", "B", "C", "69°"))


def _value_covering_a_point() -> Scene:
    return _value_scene(D=_value_disc_centre(_value_scene()))


def _value_crossed_by_a_segment() -> Scene:
    x, y = _value_disc_centre(_value_scene())
    return _with(_value_scene(D=(2.5 * x, 2.5 * y)), Segment("A", "D"))  # AD runs through the value


ILLEGIBLE = {
    "points A and D are too close": lambda: _triangle(D=(0.3, 0.3)),
    "side AD is too short": lambda: _with(_triangle(D=(0.6, 0.6)), Segment("A", "D")),
    "point D nearly touches AB": lambda: _triangle(D=(5.0, 0.2)),
    "point A nearly touches the circle at O": lambda: _with(_triangle(O=(4.0, 3.0)), Circle("O", 5.2)),
    "marked angle BAC is too small": lambda: _with(
        Scene("hand", {"A": (0.0, 0.0), "B": (10.0, 0.0), "C": (8.0, 2.68)}, [Polygon(("A", "B", "C"))], []),
        AngleMark("A", "B", "C"),
    ),
    "marked angle BAC looks like a right angle": lambda: _with(
        Scene("hand", {"A": (0.0, 0.0), "B": (10.0, 0.0), "C": (0.35, 10.0)}, [Polygon(("A", "B", "C"))], []),
        AngleMark("A", "B", "C", "88°"),
    ),
    "annotation '69°' would cover point D": _value_covering_a_point,
    "annotation '69°' would be crossed by AD": _value_crossed_by_a_segment,
    "annotations '69°' and '69°' would overlap": lambda: _with(_value_scene(), AngleMark("A", "C", "B", "69°")),
    "polygon ABC has an angle under 20.0°": lambda: Scene(
        "hand", {"A": (0.0, 0.0), "B": (10.0, 0.0), "C": (8.0, 2.68)}, [Polygon(("A", "B", "C"))], []
    ),
}


def test_a_legible_figure_passes_the_check():
    from mmgeo_utils.diagrams.families import check_legible

    for scene in (_triangle(), _value_scene()):
        assert check_legible(scene) is scene


@pytest.mark.parametrize("problem", sorted(ILLEGIBLE))
def test_check_legible_names_the_first_problem(problem):
    """Each rule on a figure that breaks only it; the message names the offending points."""
    from mmgeo_utils.diagrams.families import check_legible

    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        check_legible(ILLEGIBLE[problem]())


# ----------------------------------------------------------------------------- label placement internals


def test_best_candidate_is_the_lexicographic_maximum():
    """The vectorised choice equals ``max`` over the keys the placement is defined by (ties included)."""
    from mmgeo_utils.diagrams.layout import (
        _DIRS,
        _RING_DIR_INDEX,
        _RING_INDEX,
        N_DIRECTIONS,
        OFFSET_STEPS,
        _best_candidate,
    )

    rng = np.random.default_rng(0)
    n = N_DIRECTIONS * len(OFFSET_STEPS)
    for case in range(500):
        # coarse values make ties common, as in symmetric figures; some cases have no free spot at all
        hard = rng.integers(-3, 3 if case % 5 else 0, n) / 4
        soft = rng.choice([-0.5, 0.25, 0.5, np.inf], n)
        out = _unit(rng.choice([0.0, 1.0, -1.0], 2))  # axis and diagonal directions: outward ties
        cap, extent = 0.25, float(rng.uniform(5, 15))
        outward = np.round((_DIRS @ out) * extent / extent, 9)[_RING_DIR_INDEX]
        keys = [
            (bool(h > 0 and s > 0), bool(h > 0), -int(i) if h > 0 else float(h), float(min(h, s, cap)), float(o))
            for h, s, i, o in zip(hard, soft, _RING_INDEX, outward)
        ]
        assert _best_candidate(hard, soft, out, cap, extent) == max(range(n), key=keys.__getitem__), case


def _unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1; the zero vector points up, as a label at the figure's centre prefers."""
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else np.array([0.0, 1.0])
