"""Checking symbolic facts against coordinates.

A scene is only useful as training data if its facts are *true of the picture*:
a caption that says "AB ∥ CD" next to a drawing where they are not parallel is
noise, and a hard negative that claims to change one fact must really change it.
:func:`check_fact` measures each fact kind of :data:`mmgeo_utils.diagrams.scene.FACT_KINDS`
on the coordinates, with explicit tolerances, so generators, perturbations and
tests share one notion of truth.

Shape names are *most specific*: :func:`shape_name` returns the single most
specific entry of :data:`~mmgeo_utils.diagrams.scene.SHAPE_NAMES` (a square is named
"square", never "rectangle" or "rhombus"; an equilateral triangle is never
"isosceles triangle"; "trapezoid" means exactly one pair of parallel sides), and a
``shape`` fact is true only when its value is that name. Geometrically a square
*is* a rectangle, but a caption that calls a square "a rectangle" is the kind of
under-specified statement a fine-grained model must learn to reject, so the
swap square → rectangle is a verifiably false hard negative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .geometry import (
    angle_at,
    cross,
    dist,
    foot_of_perpendicular,
    line_angle_between,
    midpoint,
    point_segment_distance,
    polygon_is_convex,
)
from .scene import FACT_KINDS, Arc, Circle, Fact, Scene

ANGLE_TOL_DEG = 0.5  # angles are stated in whole degrees and constructed exactly
REL_TOL = 1e-3  # lengths and incidences, relative to the segment or scene size involved

__all__ = ["ANGLE_TOL_DEG", "REL_TOL", "check_fact", "check_scene_facts", "shape_name", "circle_radii"]


# ----------------------------------------------------------------------------- helpers


def _xy(scene: Scene, name: str) -> np.ndarray:
    """A point's coordinates; a fact naming a missing point is an error, not a false fact."""
    if name not in scene.points:
        raise ValueError(f"fact names missing point {name!r}; points: {', '.join(scene.points)}")
    return np.asarray(scene.points[name], dtype=float)


def _close(x: float, y: float, rel_tol: float) -> bool:
    return abs(x - y) <= rel_tol * max(abs(x), abs(y), 1e-12)


def _extent(scene: Scene) -> float:
    coords = np.array(list(scene.points.values()), dtype=float)
    return float(np.ptp(coords, axis=0).max()) if len(coords) > 1 else 1.0


def circle_radii(scene: Scene, center: str) -> list[float]:
    """Radii of the circles (and arcs) drawn around ``center``: a point is 'on circle O' only if one is drawn."""
    return [el.radius for el in scene.elements if isinstance(el, (Circle, Arc)) and el.center == center]


def _on_circle(scene: Scene, p: np.ndarray, center: str, rel_tol: float) -> bool:
    o = _xy(scene, center)
    return any(_close(dist(p, o), r, rel_tol) for r in circle_radii(scene, center))


def _pair_dists(pts: Sequence[np.ndarray]) -> dict[tuple[int, int], float]:
    """``dist`` between every two vertices, keyed ``(i, j)`` with ``i < j`` (computed once, used twice)."""
    n = len(pts)
    return {(i, j): dist(pts[i], pts[j]) for i in range(n) for j in range(i + 1, n)}


def _is_degenerate(
    pts: Sequence[np.ndarray], rel_tol: float, pair_dists: dict[tuple[int, int], float] | None = None
) -> bool:
    """Collinear or coincident vertices: no shape name applies."""
    n = len(pts)
    d = pair_dists if pair_dists is not None else _pair_dists(pts)
    scale = max(d.values())
    if scale <= 0:
        return True
    for i in range(n):
        a, b, c = pts[i - 1], pts[i], pts[(i + 1) % n]
        h = (i - 1) % n
        if d[min(h, i), max(h, i)] <= rel_tol * scale:  # |ab|
            return True
        if abs(cross(b - a, c - b)) <= rel_tol * scale * scale:
            return True
    return False


def _segments_cross(a, b, c, d) -> bool:
    """Proper intersection of segments ab and cd (used to reject self-intersecting quadrilaterals)."""
    d1, d2 = cross(b - a, c - a), cross(b - a, d - a)
    d3, d4 = cross(d - c, a - c), cross(d - c, b - c)
    return d1 * d2 < 0 and d3 * d4 < 0


# ----------------------------------------------------------------------------- shapes


def _triangle_name(
    pts: Sequence[np.ndarray], angle_tol: float, rel_tol: float, pair_dists: dict[tuple[int, int], float] | None = None
) -> str:
    a, b, c = pts
    d = pair_dists if pair_dists is not None else _pair_dists(pts)
    sides = sorted([d[0, 1], d[1, 2], d[0, 2]])
    equal_pairs = sum(_close(sides[i], sides[j], rel_tol) for i in range(3) for j in range(i + 1, 3))
    if equal_pairs == 3:
        return "equilateral triangle"
    # angles measured only as far as needed: the first right one settles it (no arm has zero
    # length here, since shape_name rejected degenerate vertices first, so none can raise)
    right = any(abs(angle_at(v, p, q) - 90.0) <= angle_tol for v, p, q in ((b, a, c), (a, b, c), (c, a, b)))
    if right and equal_pairs:
        return "isosceles right triangle"
    if right:
        return "right triangle"
    if equal_pairs:
        return "isosceles triangle"
    return "triangle"


def _quadrilateral_name(pts: Sequence[np.ndarray], angle_tol: float, rel_tol: float) -> str:
    a, b, c, d = pts
    if _segments_cross(a, b, c, d) or _segments_cross(b, c, d, a):
        raise ValueError("self-intersecting quadrilateral has no shape name")
    if not polygon_is_convex(pts):
        return "quadrilateral"
    par1 = line_angle_between(a, b, d, c) <= angle_tol  # AB ∥ DC
    par2 = line_angle_between(b, c, a, d) <= angle_tol  # BC ∥ AD
    sides = [dist(a, b), dist(b, c), dist(c, d), dist(d, a)]
    if par1 and par2:
        right = abs(angle_at(a, b, d) - 90.0) <= angle_tol
        rhombic = _close(sides[0], sides[1], rel_tol)
        if right and rhombic:
            return "square"
        if right:
            return "rectangle"
        if rhombic:
            return "rhombus"
        return "parallelogram"
    if par1 or par2:
        legs = (sides[1], sides[3]) if par1 else (sides[0], sides[2])
        return "isosceles trapezoid" if _close(*legs, rel_tol) else "trapezoid"
    return "quadrilateral"


def shape_name(points: Sequence, *, angle_tol_deg: float = ANGLE_TOL_DEG, rel_tol: float = REL_TOL) -> str:
    """The most specific :data:`~mmgeo_utils.diagrams.scene.SHAPE_NAMES` entry for the polygon through ``points``.

    Raises ``ValueError`` for a degenerate polygon (collinear or coincident
    vertices, self-intersection) or a polygon with more than four vertices,
    for which the scene language has no names.
    """
    pts = [np.asarray(p, dtype=float).reshape(2) for p in points]
    if len(pts) not in (3, 4):
        raise ValueError(f"no shape names for a polygon with {len(pts)} vertices (only 3 or 4)")
    pair_dists = _pair_dists(pts)
    if _is_degenerate(pts, rel_tol, pair_dists):
        raise ValueError("degenerate polygon: collinear or coincident vertices")
    if len(pts) == 3:
        return _triangle_name(pts, angle_tol_deg, rel_tol, pair_dists)
    return _quadrilateral_name(pts, angle_tol_deg, rel_tol)


# ----------------------------------------------------------------------------- fact checkers

Checker = Callable[[Scene, Fact, list, float, float], bool]


def _length(scene, f, p, at, rt):
    return _close(scene.unit * dist(p[0], p[1]), float(f.value), rt)


def _angle(scene, f, p, at, rt):
    return abs(angle_at(p[1], p[0], p[2]) - float(f.value)) <= at


def _perpendicular(scene, f, p, at, rt):
    return abs(line_angle_between(*p) - 90.0) <= at


def _parallel(scene, f, p, at, rt):
    """Parallel and *distinct*: a line is not called parallel to itself in a caption."""
    if line_angle_between(*p) > at:
        return False
    return dist(p[2], foot_of_perpendicular(p[2], p[0], p[1])) > rt * _extent(scene)


def _equal_length(scene, f, p, at, rt):
    return _close(dist(p[0], p[1]), dist(p[2], p[3]), rt)


def _midpoint(scene, f, p, at, rt):
    return dist(p[0], midpoint(p[1], p[2])) <= rt * dist(p[1], p[2])


def _on_segment(scene, f, p, at, rt):
    return point_segment_distance(p[0], p[1], p[2]) <= rt * dist(p[1], p[2])


def _on_circle_fact(scene, f, p, at, rt):
    return _on_circle(scene, p[0], f.args[1], rt)


def _diameter(scene, f, p, at, rt):
    a, b, o = p
    return (
        _on_circle(scene, a, f.args[2], rt)
        and _on_circle(scene, b, f.args[2], rt)
        and dist(o, midpoint(a, b)) <= rt * dist(a, b)
    )


def _radius(scene, f, p, at, rt):
    return _on_circle(scene, p[1], f.args[0], rt)


def _tangent(scene, f, p, at, rt):
    pt, t, o = p
    return _on_circle(scene, t, f.args[2], rt) and abs(line_angle_between(pt, t, o, t) - 90.0) <= at


def _secant(scene, f, p, at, rt):
    """Line PA meets the circle at A and passes strictly inside it, so it cuts it twice."""
    pt, a, o = p
    if not _on_circle(scene, a, f.args[2], rt):
        return False
    foot = foot_of_perpendicular(o, pt, a)
    r = dist(o, a)
    return dist(o, foot) < r * (1.0 - rt)


def _altitude(scene, f, p, at, rt):
    c, d, a, b = p
    return dist(d, foot_of_perpendicular(c, a, b)) <= rt * dist(a, b)


def _median(scene, f, p, at, rt):
    a, m, b, c = p
    return dist(m, midpoint(b, c)) <= rt * dist(b, c)


def _bisector(scene, f, p, at, rt):
    b, d, a, c = p
    half = angle_at(b, a, c) / 2.0
    return abs(angle_at(b, a, d) - half) <= at and abs(angle_at(b, d, c) - half) <= at


def _intersection(scene, f, p, at, rt):
    x, a, b, c, d = p
    if line_angle_between(a, b, c, d) <= at:
        return False
    scale = _extent(scene)
    return (
        dist(x, foot_of_perpendicular(x, a, b)) <= rt * scale and dist(x, foot_of_perpendicular(x, c, d)) <= rt * scale
    )


def _shape(scene, f, p, at, rt):
    try:
        return shape_name(p, angle_tol_deg=at, rel_tol=rt) == f.value
    except ValueError:
        return False


def _sides(tri: Sequence[np.ndarray]) -> list[float]:
    a, b, c = tri
    return [dist(a, b), dist(b, c), dist(c, a)]


def _similar(scene, f, p, at, rt):
    s1, s2 = _sides(p[:3]), _sides(p[3:])
    if min(s1) <= 0 or min(s2) <= 0 or _is_degenerate(p[:3], rt) or _is_degenerate(p[3:], rt):
        return False
    ratios = [x / y for x, y in zip(s1, s2)]
    return all(_close(r, ratios[0], rt) for r in ratios)


def _congruent(scene, f, p, at, rt):
    if _is_degenerate(p[:3], rt):
        return False
    return all(_close(x, y, rt) for x, y in zip(_sides(p[:3]), _sides(p[3:])))


_CHECKERS: dict[str, Checker] = {
    "length": _length,
    "angle": _angle,
    "perpendicular": _perpendicular,
    "parallel": _parallel,
    "equal_length": _equal_length,
    "midpoint": _midpoint,
    "on_segment": _on_segment,
    "on_circle": _on_circle_fact,
    "diameter": _diameter,
    "radius": _radius,
    "tangent": _tangent,
    "secant": _secant,
    "altitude": _altitude,
    "median": _median,
    "bisector": _bisector,
    "intersection": _intersection,
    "shape": _shape,
    "similar": _similar,
    "congruent": _congruent,
}
assert set(_CHECKERS) == set(FACT_KINDS), "every fact kind needs a checker"


def check_fact(scene: Scene, fact: Fact, *, angle_tol_deg: float = ANGLE_TOL_DEG, rel_tol: float = REL_TOL) -> bool:
    """Whether ``fact`` is true of ``scene``'s coordinates (see the module docstring for shapes).

    Lengths compare ``scene.unit × |AB|`` with the stated value; circle facts use the
    radius of a :class:`~mmgeo_utils.diagrams.scene.Circle` (or Arc) drawn around the named
    centre, so a fact about a circle that is not drawn is false. Degenerate
    configurations (an angle with a zero arm) are false, not errors; a fact naming a
    point the scene does not have raises ``ValueError`` naming the point.
    """
    pts = [_xy(scene, name) for name in fact.args]
    try:
        return bool(_CHECKERS[fact.kind](scene, fact, pts, angle_tol_deg, rel_tol))
    except ValueError as e:  # zero-length arm or line: the stated relation cannot hold
        if "undefined" in str(e):
            return False
        raise


def describe_fact(fact: Fact) -> str:
    """A compact, unambiguous rendering used in error messages: ``parallel(A,B,C,D)``."""
    value = "" if fact.value is None else f" = {fact.value}"
    return f"{fact.kind}({','.join(fact.args)}){value}"


def check_scene_facts(scene: Scene, **tol) -> Scene:
    """Raise ``ValueError`` naming the first false fact of ``scene``; return the scene otherwise."""
    for f in scene.facts:
        if not check_fact(scene, f, **tol):
            raise ValueError(f"false fact in scene {scene.family!r}: {describe_fact(f)}")
    return scene
