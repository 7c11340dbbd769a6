"""Number perturbations, annotation-only: a changed length or angle value, a right-angle square moved (lesson 02).

The figure is not redrawn: the edited annotation is deliberately not to scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..diagrams.facts import check_fact
from ..diagrams.families import drawn_sides, nice_value
from ..diagrams.scene import AngleMark, Fact, Polygon, RightAngleMark, Scene
from .change import NotApplicable, _Change, _na, _shuffled

NUMBER_MIN_CHANGE_DEG = 5


def _new_lengths(value: float) -> list[float]:
    """Plausible wrong values for a stated length: near misses first, one decimal at most."""
    v = float(value)
    steps = (1, -1, 2, -2, 3, -3) if v >= 2 else (0.5, -0.5, 1, 1.5)
    out = [round(v + s, 1) for s in steps]
    return [x for x in out if x > 0 and abs(x - v) > 1e-9]


def _change_length(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Write a different number beside a stated length (the figure is not redrawn: "not to scale")."""
    facts = [f for f in scene.facts if f.kind == "length"]
    if not facts:
        return _na("change_length", "no stated length")
    return (
        _Change(removed=(f,), added=(Fact("length", f.args, nice_value(v)),))
        for f in _shuffled(rng, facts)
        for v in _shuffled(rng, _new_lengths(float(f.value)))[:3]
    )


def _new_angles(value: float) -> list[int]:
    """Wrong values for a stated angle: near misses, never 90 (that would need a right-angle square)."""
    v = int(round(float(value)))
    out = [v + s for s in (5, -5, 10, -10, 15, -15, 20, -20)]
    return [x for x in out if 10 <= x <= 170 and x != 90 and abs(x - v) >= NUMBER_MIN_CHANGE_DEG]


def _change_angle(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Write a different value on a marked angle (annotation-only, like a changed length)."""
    facts = [f for f in scene.facts if f.kind == "angle" and float(f.value) != 90]  # type: ignore[arg-type]
    if not facts:
        return _na("change_angle", "no stated angle other than a right angle")
    return (
        _Change(removed=(f,), added=(Fact("angle", f.args, v),))
        for f in _shuffled(rng, facts)
        for v in _shuffled(rng, _new_angles(float(f.value)))[:3]
    )


def _rays_at(scene: Scene, v: str) -> list[str]:
    """Points joined to ``v`` by a drawn side (its neighbours in the drawing)."""
    out = []
    for a, b in drawn_sides(scene):
        for p, q in ((a, b), (b, a)):
            if p == v and q not in out:
                out.append(q)
    return out


def _marked_at(scene: Scene, v: str, a: str, b: str) -> bool:
    return any(
        isinstance(el, (AngleMark, RightAngleMark)) and el.vertex == v and {el.a, el.b} == {a, b}
        for el in scene.elements
    )


def _move_right_angle_mark(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Put the right-angle square of a stated right angle at another vertex (annotation-only).

    The negative states ∠ at the new vertex = 90° while it is drawn at its true size: a
    figure whose right-angle mark sits at the wrong corner. Corners that really are
    right angles (the other corners of a rectangle) are not candidates: the moved mark
    would be true.
    """
    rights = [f for f in scene.facts if f.kind == "angle" and float(f.value) == 90]  # type: ignore[arg-type]
    if not rights:
        return _na("move_right_angle_mark", "no stated right angle")
    polys = [el.vertices for el in scene.elements if isinstance(el, Polygon)]

    def candidates():
        for f in _shuffled(rng, rights):
            owner = next((vs for vs in polys if set(f.args) <= set(vs)), None)
            corners = owner if owner else tuple(scene.points)
            for v in _shuffled(rng, [c for c in corners if c != f.args[1]]):
                arms = [p for p in (_neighbours(owner, v) if owner else _rays_at(scene, v))]
                if len(arms) != 2 or _marked_at(scene, v, *arms):
                    continue
                new = Fact("angle", (arms[0], v, arms[1]), 90)
                if new.key() not in scene.fact_keys() and not check_fact(scene, new):
                    yield _Change(removed=(f,), added=(new,))

    return candidates()


def _neighbours(vs: Sequence[str], v: str) -> list[str]:
    i = list(vs).index(v)
    return [vs[i - 1], vs[(i + 1) % len(vs)]]
