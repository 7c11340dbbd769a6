"""Incidences and constructions of a scene, so an image edit moves what is built on the moved points (lesson 02).

:func:`_propagate` rebuilds midpoints, feet, intersections and points on a side after a move;
:func:`_lost_incidence` names the first point that an edit would take off its side or circle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..diagrams import geometry as g
from ..diagrams.families import drawn_sides
from ..diagrams.layout import scene_extent
from ..diagrams.scene import Scene
from .change import _circle_radii, _unit, _xy

INCIDENCE_TOL = 1e-4  # relative to the figure: a point "on" a side or circle in the positive


def _on_line(scene: Scene, p: str, a: str, b: str) -> bool:
    pa, pb = _xy(scene, a), _xy(scene, b)
    return abs(g.cross(_unit(pb - pa), _xy(scene, p) - pa)) <= INCIDENCE_TOL * scene_extent(scene)


def _definitions(scene: Scene) -> list[tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray], set[str]]]:
    """How each constructed point is made from others: ``(point, make(points), parents)``.

    From the stated facts (intersections, midpoints, feet of altitudes and medians,
    bisector feet, points on a segment at their ratio) and from the drawing (a point
    lying inside a drawn side keeps its ratio along it), so that moving a vertex moves
    everything built on it the way the figure's construction would.
    """
    out = []
    for f in scene.facts:
        a = f.args
        if f.kind == "intersection":
            out.append((a[0], lambda p, a=a: g.line_intersection(p[a[1]], p[a[2]], p[a[3]], p[a[4]]), set(a[1:])))
        elif f.kind == "midpoint":
            out.append((a[0], lambda p, a=a: g.midpoint(p[a[1]], p[a[2]]), set(a[1:])))
        elif f.kind == "median":
            out.append((a[1], lambda p, a=a: g.midpoint(p[a[2]], p[a[3]]), {a[2], a[3]}))
        elif f.kind == "altitude":
            out.append((a[1], lambda p, a=a: g.foot_of_perpendicular(p[a[0]], p[a[2]], p[a[3]]), {a[0], a[2], a[3]}))
        elif f.kind == "bisector" and g.on_segment(_xy(scene, a[1]), _xy(scene, a[2]), _xy(scene, a[3]), 1e-5):
            out.append((a[1], lambda p, a=a: g.angle_bisector_point(p[a[0]], p[a[2]], p[a[3]]), {a[0], a[2], a[3]}))
    centres = _circle_radii(scene)  # circles never move, so neither do their centres
    for x, (a, b) in _side_incidences(scene):
        if x in centres:
            continue
        t = float(
            np.dot(_xy(scene, x) - _xy(scene, a), _xy(scene, b) - _xy(scene, a))
            / np.dot(_xy(scene, b) - _xy(scene, a), _xy(scene, b) - _xy(scene, a))
        )
        out.append((x, lambda p, a=a, b=b, t=t: g.lerp(p[a], p[b], t), {a, b}))
    return out


def _propagate(scene: Scene, points: dict[str, np.ndarray], moved: set[str]) -> dict[str, np.ndarray]:
    """Recompute constructed points whose parents moved; explicitly moved points stay where the edit put them.

    Each point uses its first definition (a stated construction before a drawn
    incidence); passes repeat until nothing moves, so chains (a midpoint of a side
    whose end is itself a foot) settle in any order.
    """
    points = dict(points)
    defs: dict[str, tuple] = {}
    for x, make, parents in _definitions(scene):
        if x not in moved and x in points and x not in parents:
            defs.setdefault(x, (make, parents))
    changed = set(moved)
    for _ in range(len(defs) + 1):
        progress = False
        for x, (make, parents) in defs.items():
            if parents & changed:
                new = make(points)
                if g.dist(new, points[x]) > 1e-12:
                    points[x] = new
                    changed.add(x)
                    progress = True
        if not progress:
            break
    return points


def _side_incidences(scene: Scene) -> list[tuple[str, tuple[str, str]]]:
    """Points lying strictly inside a drawn side: (point, side)."""
    tol = INCIDENCE_TOL * scene_extent(scene)
    out = []
    for a, b in drawn_sides(scene):
        for x in scene.points:
            if x not in (a, b) and g.point_segment_distance(_xy(scene, x), _xy(scene, a), _xy(scene, b)) <= tol:
                out.append((x, (a, b)))
    return out


def _circle_incidences(scene: Scene) -> list[tuple[str, str]]:
    tol = INCIDENCE_TOL * scene_extent(scene)
    return [
        (x, f"circle:{o}")
        for o, r in _circle_radii(scene).items()
        for x in scene.points
        if x != o and abs(g.dist(_xy(scene, x), _xy(scene, o)) - r) <= tol
    ]


def _lost_incidence(positive: Scene, negative: Scene, allowed: Iterable[tuple[str, str]]) -> str | None:
    """The first incidence of the positive (a point on a side or a circle) the negative breaks, if any."""
    allowed = set(allowed)
    tol = INCIDENCE_TOL * scene_extent(negative)
    for x, (a, b) in _side_incidences(positive):
        if {x, a, b} <= set(negative.points) and (x, f"{a}{b}") not in allowed:
            if g.point_segment_distance(_xy(negative, x), _xy(negative, a), _xy(negative, b)) > tol:
                return f"{x} would leave side {a}{b}"
    radii = _circle_radii(negative)
    for x, circle in _circle_incidences(positive):
        o = circle.split(":")[1]
        if x in negative.points and (x, circle) not in allowed and o in radii:
            if abs(g.dist(_xy(negative, x), _xy(negative, o)) - radii[o]) > tol:
                return f"{x} would leave the circle at {o}"
    return None


def _fixed_points(scene: Scene) -> set[str]:
    """Points fully determined by a stated construction (or a circle centre): an edit cannot move them alone."""
    fixed = set(_circle_radii(scene))
    for f in scene.facts:
        a = f.args
        if f.kind in ("intersection", "midpoint"):
            fixed.add(a[0])
        elif f.kind in ("median", "altitude", "bisector", "tangent"):
            fixed.add(a[1])
        elif f.kind == "diameter":
            fixed.update(a[:2])
    return fixed
