"""Marks follow facts: which marks show which stated fact, and the marks of an image negative (lesson 02).

:func:`_sync_marks` drops or degrades the marks of a removed fact and draws those of an added
one, the way the families draw them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..diagrams import geometry as g
from ..diagrams.families import format_number
from ..diagrams.layout import scene_extent
from ..diagrams.scene import AngleMark, Element, EqualTicks, Fact, LengthLabel, ParallelArrows, RightAngleMark, Scene
from .change import _unit, _xy
from .constructions import _on_line

__all__ = ["mark_supporters"]


_MARKS = (RightAngleMark, AngleMark, EqualTicks, ParallelArrows, LengthLabel)


def _segment_set(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def _collinear(scene: Scene, v: str, x: str, a: str, b: str, tol: float = 1e-6) -> bool:
    """Whether the ray v→x lies along line ab (v on the line and x on it too)."""
    p, q = _xy(scene, a), _xy(scene, b)
    d = _unit(q - p)
    return all(abs(g.cross(d, _xy(scene, s) - p)) <= tol * max(1.0, scene_extent(scene)) for s in (v, x))


def _shows(fact: Fact, el: Element, scene: Scene) -> bool:
    """Whether mark ``el`` is (one of) the marks the families draw for ``fact``."""
    k, a = fact.kind, fact.args
    if k == "length":
        return isinstance(el, LengthLabel) and _segment_set(el.a, el.b) == _segment_set(*a)
    if k == "angle":
        cls = RightAngleMark if float(fact.value) == 90 else AngleMark  # type: ignore[arg-type]
        ok = isinstance(el, cls) and el.vertex == a[1] and {el.a, el.b} == {a[0], a[2]}
        return ok and (cls is RightAngleMark or el.label is not None)
    if k in ("parallel", "equal_length"):
        cls = ParallelArrows if k == "parallel" else EqualTicks
        return isinstance(el, cls) and _segment_set(el.a, el.b) in (_segment_set(*a[:2]), _segment_set(*a[2:]))
    if k == "midpoint":
        return isinstance(el, EqualTicks) and _segment_set(el.a, el.b) in (
            _segment_set(a[1], a[0]),
            _segment_set(a[0], a[2]),
        )
    if k == "median":
        return isinstance(el, EqualTicks) and _segment_set(el.a, el.b) in (
            _segment_set(a[2], a[1]),
            _segment_set(a[1], a[3]),
        )
    if k == "altitude":
        return isinstance(el, RightAngleMark) and el.vertex == a[1] and a[0] in (el.a, el.b)
    if k == "tangent":
        return isinstance(el, RightAngleMark) and el.vertex == a[1] and {el.a, el.b} == {a[0], a[2]}
    if k == "bisector":
        return isinstance(el, AngleMark) and el.vertex == a[0] and {el.a, el.b} in ({a[2], a[1]}, {a[1], a[3]})
    if k == "perpendicular" and isinstance(el, RightAngleMark):
        v, x, y = el.vertex, el.a, el.b
        return (_collinear(scene, v, x, a[0], a[1]) and _collinear(scene, v, y, a[2], a[3])) or (
            _collinear(scene, v, y, a[0], a[1]) and _collinear(scene, v, x, a[2], a[3])
        )
    return False


def mark_supporters(scene: Scene) -> list[list[Fact]]:
    """For each element, the facts it is a mark of (empty for strokes, and for an unexplained mark)."""
    return [[f for f in scene.facts if _shows(f, el, scene)] if isinstance(el, _MARKS) else [] for el in scene.elements]


def _mark_after_removal(el: Element, remaining: list[Fact]) -> Element | None:
    """A mark whose supporting facts lost some: keep, degrade (an arc loses its value or
    its second arc) or drop it, depending on what the remaining supporters need."""
    if not remaining:
        return None
    if isinstance(el, AngleMark):
        label = el.label if any(f.kind == "angle" for f in remaining) else None
        arcs = el.arcs if any(f.kind == "bisector" for f in remaining) else 1
        return AngleMark(el.vertex, el.a, el.b, label, arcs)
    return el


def _same_count(points: dict[str, np.ndarray], cls: type, elements: list[Element], a: str, b: str) -> int:
    """The tick (arrow) count for a new mark on ab: that of an equal (parallel) marked segment, else a new one."""
    p, q = points[a], points[b]
    counts = [el.count for el in elements if isinstance(el, cls)]
    for el in elements:
        if not isinstance(el, cls):
            continue
        r, s = points[el.a], points[el.b]
        if cls is EqualTicks and abs(g.dist(p, q) - g.dist(r, s)) <= 1e-6 * g.dist(p, q):
            return el.count
        if cls is ParallelArrows and abs(g.cross(_unit(q - p), _unit(s - r))) <= 1e-9:
            return el.count
    return max(counts, default=0) + 1


def _add_marked(elements: list[Element], new: Element) -> None:
    if new not in elements:
        elements.append(new)


def _add_angle_mark(elements: list[Element], v: str, a: str, b: str, label: str | None, arcs: int) -> None:
    """Add an arc at v, or upgrade the arc already on the same arms (one mark per angle, as the families do)."""
    for i, el in enumerate(elements):
        if isinstance(el, AngleMark) and el.vertex == v and {el.a, el.b} == {a, b}:
            elements[i] = AngleMark(v, el.a, el.b, label or el.label, max(arcs, el.arcs))
            return
    elements.append(AngleMark(v, a, b, label, arcs))


def _marks_for(fact: Fact, scene: Scene, elements: list[Element]) -> None:
    """Draw the marks the families would draw for ``fact`` (in ``scene``'s coordinates)."""
    k, a, pts = fact.kind, fact.args, {n: _xy(scene, n) for n in scene.points}
    if k == "length":
        _add_marked(elements, LengthLabel(a[0], a[1], format_number(float(fact.value))))  # type: ignore[arg-type]
    elif k == "angle" and float(fact.value) == 90:  # type: ignore[arg-type]
        _add_marked(elements, RightAngleMark(a[1], a[0], a[2]))
    elif k == "angle":
        _add_angle_mark(elements, a[1], a[0], a[2], f"{format_number(float(fact.value))}°", 1)  # type: ignore[arg-type]
    elif k in ("parallel", "equal_length", "midpoint", "median"):
        cls = ParallelArrows if k == "parallel" else EqualTicks
        segs = {"midpoint": [(a[1], a[0]), (a[0], a[2])], "median": [(a[2], a[1]), (a[1], a[3])]}.get(k, [a[:2], a[2:]])
        count = _same_count(pts, cls, elements, *segs[0])
        for s in segs:
            _add_marked(elements, cls(s[0], s[1], count))
    elif k == "altitude":
        _add_marked(elements, RightAngleMark(a[1], a[0], a[3] if a[3] != a[1] else a[2]))
    elif k == "tangent":
        _add_marked(elements, RightAngleMark(a[1], a[2], a[0]))
    elif k == "bisector":
        _add_angle_mark(elements, a[0], a[2], a[1], None, 2)
        _add_angle_mark(elements, a[0], a[1], a[3], None, 2)
    elif k == "perpendicular":
        common = [p for p in scene.points if _on_line(scene, p, a[0], a[1]) and _on_line(scene, p, a[2], a[3])]
        if common:
            v = common[0]
            x = next(p for p in a[:2] if p != v)
            y = next(p for p in a[2:] if p != v)
            _add_marked(elements, RightAngleMark(v, x, y))


def _sync_marks(positive: Scene, negative: Scene, removed: Sequence[Fact], added: Sequence[Fact]) -> list[Element]:
    """The negative's elements: marks of removed facts dropped or degraded, marks of added facts drawn."""
    removed_keys = {f.key() for f in removed}
    elements: list[Element] = []
    for el, supporters in zip(positive.elements, mark_supporters(positive)):
        if el not in negative.elements:  # dropped by the change itself
            continue
        if any(f.key() in removed_keys for f in supporters):
            el = _mark_after_removal(el, [f for f in supporters if f.key() not in removed_keys])
        if el is not None:
            elements.append(el)
    elements += [el for el in negative.elements if el not in positive.elements]
    for f in added:
        _marks_for(f, negative, elements)
    return elements
