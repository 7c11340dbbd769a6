"""Shape-concept perturbations: move vertices so a triangle or quadrilateral gets another shape name,
or a diameter becomes a chord (lesson 02).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..diagrams import geometry as g
from ..diagrams.facts import shape_name
from ..diagrams.layout import scene_extent
from ..diagrams.scene import Fact, Scene
from .change import NotApplicable, _Change, _circle_radii, _na, _perp, _shuffled, _unit, _xy
from .constructions import _circle_incidences, _fixed_points, _on_line, _side_incidences

CHORD_TURN_DEG = (8.0, 12.0, 16.0)


def _shape_change(scene: Scene, f: Fact, moved: dict[str, np.ndarray]) -> _Change | None:
    """Replace shape fact ``f`` by the name the moved vertices give (None if unchanged or degenerate)."""
    pts = [moved.get(v, _xy(scene, v)) for v in f.args]
    try:
        name = shape_name(pts)
    except ValueError:
        return None
    if name == f.value:
        return None
    return _Change(removed=(f,), added=(Fact("shape", f.args, name),), moved=moved)


Locus = tuple  # ("line", point, direction) | ("circle", centre, radius) | ("point", xy)


def _triangle_loci(u: np.ndarray, w: np.ndarray, v: np.ndarray) -> list[Locus]:
    """Where vertex v could go to make triangle uvw isosceles, right-angled or equilateral."""
    mid, d = g.midpoint(u, w), _unit(w - u)
    n = _perp(d) if g.cross(d, v - u) >= 0 else -_perp(d)
    base = g.dist(u, w)
    return [
        ("line", mid, n),
        ("circle", u, base),
        ("circle", w, base),
        ("circle", mid, base / 2),
        ("line", u, n),
        ("line", w, n),
        ("point", mid + n * base * math.sqrt(3) / 2),
    ]


def _nearest_on(locus: Locus, v: np.ndarray) -> list[np.ndarray]:
    kind = locus[0]
    if kind == "point":
        return [locus[1]]
    if kind == "line":
        p, d = locus[1], locus[2]
        return [p + float(np.dot(v - p, d)) * d]
    c, r = locus[1], locus[2]
    return [c + r * _unit(v - c)] if g.dist(v, c) > 1e-9 else []


def _line_meets(p: np.ndarray, d: np.ndarray, locus: Locus) -> list[np.ndarray]:
    """Intersections of the line p + t·d with a locus."""
    if locus[0] == "point":
        q = locus[1]
        return [q] if abs(g.cross(d, q - p)) < 1e-9 else []
    if locus[0] == "line":
        try:
            return [g.line_intersection(p, p + d, locus[1], locus[1] + locus[2])]
        except ValueError:
            return []
    return _line_circle(p, d, locus[1], locus[2])


def _line_circle(p: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> list[np.ndarray]:
    d = _unit(d)
    t0 = float(np.dot(c - p, d))
    h2 = r * r - (g.dist(c, p) ** 2 - t0 * t0)
    if h2 < 0:
        return []
    h = math.sqrt(h2)
    return [p + (t0 - h) * d, p + (t0 + h) * d]


def _circle_meets(c: np.ndarray, r: float, locus: Locus) -> list[np.ndarray]:
    """Intersections of the circle (c, r) with a locus."""
    if locus[0] == "point":
        return [locus[1]] if abs(g.dist(locus[1], c) - r) < 1e-9 else []
    if locus[0] == "line":
        return _line_circle(locus[1], locus[2], c, r)
    c2, r2 = locus[1], locus[2]
    d = g.dist(c, c2)
    if d < 1e-12 or d > r + r2 or d < abs(r - r2):
        return []
    a = (r * r - r2 * r2 + d * d) / (2 * d)
    h = math.sqrt(max(r * r - a * a, 0.0))
    e = _unit(c2 - c)
    m = c + a * e
    return [m + h * _perp(e), m - h * _perp(e)]


def _constraint(scene: Scene, v: str) -> Locus | None | str:
    """What v must stay on when moved: a drawn side's line, a circle, 'free', or None (fixed)."""
    if v in _fixed_points(scene):
        return None
    sides = {frozenset(s) for x, s in _side_incidences(scene) if x == v}
    sides |= {frozenset(f.args[1:]) for f in scene.facts if f.kind == "on_segment" and f.args[0] == v}
    circles = [c.split(":")[1] for x, c in _circle_incidences(scene) if x == v]
    if len(sides) + len(circles) > 1:
        return None
    if sides:
        a, b = (_xy(scene, x) for x in sorted(next(iter(sides))))
        return ("line", a, _unit(b - a))
    if circles:
        return ("circle", _xy(scene, circles[0]), _circle_radii(scene)[circles[0]])
    return "free"


def _vertex_moves(scene: Scene, v: str, u: str, w: str) -> list[np.ndarray]:
    """Candidate positions of vertex v (others fixed): on each special locus, then small nudges off them."""
    cv, cu, cw = _xy(scene, v), _xy(scene, u), _xy(scene, w)
    con = _constraint(scene, v)
    if con is None:
        return []
    loci = _triangle_loci(cu, cw, cv)
    ext = scene_extent(scene)
    if con == "free":
        out = [q for loc in loci for q in _nearest_on(loc, cv)]
        d = _unit(cw - cu)
        out += [cv + s * ext * e for s in (0.1, -0.1, 0.15, -0.15) for e in (d, _perp(d))]
    elif con[0] == "line":
        out = [q for loc in loci for q in _line_meets(con[1], con[2], loc)]
        out += [cv + s * ext * con[2] for s in (0.1, -0.1, 0.15, -0.15)]
    else:
        out = [q for loc in loci for q in _circle_meets(con[1], con[2], loc)]
        out += [g.rotate(cv, con[1], a) for a in (12.0, -12.0, 20.0, -20.0)]
    return sorted(out, key=lambda q: g.dist(q, cv))


def _triangle_shape(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Change a triangle's shape name by moving one vertex, e.g. equilateral → isosceles,
    isosceles → scalene, scalene → right or isosceles, right → isosceles right.

    Vertices built by a construction cannot move alone; a vertex on a side or a circle
    moves along it; everything built on the vertex follows.
    """
    facts = [f for f in scene.facts if f.kind == "shape" and len(f.args) == 3]
    if not facts:
        return _na("triangle_shape", "no stated triangle shape")

    def candidates():
        for f in _shuffled(rng, facts):
            for i in rng.permutation(3):
                v, u, w = f.args[i], f.args[(i + 1) % 3], f.args[(i + 2) % 3]
                for q in _vertex_moves(scene, v, u, w):
                    change = _shape_change(scene, f, {v: q})
                    if change:
                        yield change

    return candidates()


def _quad_variants(p: list[np.ndarray], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """New (P2, P3) for quadrilateral P0..P3 with base P0P1 fixed, by the current shape name.

    square → rectangle or rhombus; rectangle → square or parallelogram; rhombus →
    square or parallelogram; parallelogram → rectangle or rhombus; trapezoid (base
    P0P1 ∥ P3P2) ↔ isosceles trapezoid.
    """
    p0, p1, p2, p3 = p
    u = _unit(p1 - p0)
    n = _perp(u) if g.cross(u, p3 - p0) >= 0 else -_perp(u)
    base, side = g.dist(p0, p1), g.dist(p0, p3)
    theta = math.degrees(math.atan2(float(np.dot(p3 - p0, n)), float(np.dot(p3 - p0, u))))

    def para(length: float, deg: float) -> tuple[np.ndarray, np.ndarray]:
        d = length * (math.cos(math.radians(deg)) * u + math.sin(math.radians(deg)) * n)
        return p1 + d, p0 + d

    if name in ("parallelogram", "rectangle", "rhombus", "square"):
        return [
            para(side, 90.0),
            para(base, theta),
            para(side * 0.75, theta),
            para(side * 1.3, theta),
            para(side, theta + 18.0),
            para(side, theta - 18.0),
        ]
    if name in ("trapezoid", "isosceles trapezoid") and g.line_angle_between(p0, p1, p3, p2) < 1e-6:
        top, h = g.dist(p3, p2) * np.sign(np.dot(p2 - p3, u)), float(np.dot(p3 - p0, n))
        sym = p0 + (base - top) / 2 * u + h * n
        return [(sym + top * u, sym)] + [(p2 + s * base * u, p3 + s * base * u) for s in (0.15, -0.15, 0.25, -0.25)]
    return []


def _quadrilateral_shape(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Change a quadrilateral's shape name by moving the two vertices off one side: the
    paper's square → rectangle and rhombus → parallelogram, and parallelogram → rectangle
    or rhombus, trapezoid ↔ isosceles trapezoid. Diagonal crossings and midpoints follow."""
    facts = [f for f in scene.facts if f.kind == "shape" and len(f.args) == 4]
    if not facts:
        return _na("quadrilateral_shape", "no stated quadrilateral shape")
    fixed = _fixed_points(scene)

    def candidates():
        for f in _shuffled(rng, facts):
            vs = list(f.args)
            bases = [vs[i:] + vs[:i] for i in range(4)] + [list(reversed(vs[i:] + vs[:i])) for i in range(4)]
            for order in _shuffled(rng, bases):
                if {order[2], order[3]} & fixed:
                    continue
                pts = [_xy(scene, v) for v in order]
                for q2, q3 in _quad_variants(pts, str(f.value)):
                    change = _shape_change(scene, f, {order[2]: q2, order[3]: q3})
                    if change:
                        yield change

    return candidates()


def _covered_on_circle(scene: Scene, x: str, o: str, skip: Fact) -> bool:
    """Whether another stated fact already says x is on circle o."""
    for f in scene.facts:
        if f is skip:
            continue
        a = f.args
        if (
            (f.kind == "on_circle" and a == (x, o))
            or (f.kind == "radius" and a == (o, x))
            or (f.kind in ("secant", "tangent") and a[1:] == (x, o))
            or (f.kind == "diameter" and x in a[:2] and a[2] == o)
        ):
            return True
    return False


def _diameter_to_chord(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Turn a diameter into a chord that misses the centre (the paper's "diameter → radius"
    concept swap, as an exact image edit): ``diameter(A,B,O)`` becomes ``on_circle`` of the
    endpoint no other fact puts on the circle. A line through an outside point P (a
    secant PAB) turns about P; otherwise B slides along the circle."""
    facts = [f for f in scene.facts if f.kind == "diameter"]
    if not facts:
        return _na("diameter_to_chord", "no stated diameter")
    radii = _circle_radii(scene)

    def candidates():
        for f in facts:
            a, b, o = f.args
            if o not in radii:
                continue
            uncovered = [x for x in (a, b) if not _covered_on_circle(scene, x, o, f)]
            if len(uncovered) > 1:
                continue
            added = (Fact("on_circle", (uncovered[0], o)),) if uncovered else ()
            # the chord's line passed through the centre: that is the fact being changed
            detach = tuple((o, f"{p}{q}") for x, (p, q) in _side_incidences(scene) if x == o)
            for moved in _chord_moves(scene, a, b, o, radii[o], rng):
                yield _Change(removed=(f,), added=added, moved=moved, detach=detach)

    return candidates()


def _chord_moves(scene: Scene, a: str, b: str, o: str, r: float, rng) -> Iterable[dict[str, np.ndarray]]:
    pa, pb, po = _xy(scene, a), _xy(scene, b), _xy(scene, o)
    anchors = [
        p for p in scene.points if p not in (a, b, o) and _on_line(scene, p, a, b) and g.dist(_xy(scene, p), po) > r
    ]
    for deg in CHORD_TURN_DEG:
        for sign in _shuffled(rng, [1.0, -1.0]):
            if anchors:
                p = _xy(scene, anchors[0])
                d = g.rotate(po, p, sign * deg) - p
                hits = _line_circle(p, d, po, r)
                if len(hits) == 2:
                    near, far = hits if g.dist(hits[0], p) < g.dist(hits[1], p) else hits[::-1]
                    a_near = g.dist(pa, p) < g.dist(pb, p)
                    yield {a: near, b: far} if a_near else {a: far, b: near}
            else:
                yield {b: g.rotate(pb, po, sign * 3 * deg)}
