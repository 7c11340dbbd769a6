"""Relation perturbations: congruent → similar, parallels turned, a tangent made a secant, a point moved
off its circle, a midpoint slid off the middle (lesson 02).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from ..diagrams import geometry as g
from ..diagrams.families import drawn_sides
from ..diagrams.scene import Fact, Scene
from .change import NotApplicable, _Change, _circle_radii, _na, _shuffled, _xy
from .constructions import _fixed_points, _on_line, _side_incidences
from .edits_shapes import _line_circle

UNPARALLEL_DEG = (10.0, 15.0, 20.0)  # small turns first: the hardest negative that is still visible

OFF_CIRCLE_SCALES = (1.18, 0.82, 1.25, 0.75)

MIDPOINT_SHIFTS = (0.15, 0.2, 0.25)  # how far off the middle, as a fraction of the side


def _triangle_scaled(scene: Scene, f: Fact, s: float) -> _Change | None:
    """congruent → similar: scale the second triangle about its centroid (None if it cannot move alone)."""
    t1, t2 = f.args[:3], f.args[3:]
    if set(t1) & set(t2) or set(t2) & _fixed_points(scene):
        return None
    p2 = [_xy(scene, x) for x in t2]
    c = np.mean(p2, axis=0)
    return _Change(removed=(f,), added=(Fact("similar", f.args),), moved={x: c + s * (p - c) for x, p in zip(t2, p2)})


def _similar_congruent(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """congruent → similar (the paper's similar ↔ congruent verb swap), as an exact image edit:
    rescale the second triangle so the two are similar but no longer congruent.

    Only this direction makes an image negative: congruent triangles are also similar,
    so a figure with △ABC ≅ △DEF still fits the caption "△ABC ~ △DEF" (the text rules
    use both directions, and check each). In every current family the two triangles
    share a vertex (△ABM ≅ △ACM, △OTP ≅ △OSP), so one cannot be rescaled alone: this
    perturbation says so instead of faking it.
    """
    facts = [f for f in scene.facts if f.kind in ("similar", "congruent")]
    if not facts:
        return _na("similar_congruent", "no stated similar or congruent triangles")
    congruent = [f for f in facts if f.kind == "congruent"]
    if not congruent:
        return _na(
            "similar_congruent",
            "only similar triangles: congruent ones would still be similar, "
            "so the positive caption would fit the negative",
        )
    changes = [c for f in congruent for s in (0.75, 1.3) if (c := _triangle_scaled(scene, f, s))]
    if not changes:
        a = congruent[0].args
        return _na(
            "similar_congruent",
            f"△{''.join(a[:3])} and △{''.join(a[3:])} share a vertex or a "
            "constructed point: neither can be rescaled alone",
            "breaks a stated fact",
        )
    return changes


def _line_points(scene: Scene, a: str, b: str) -> list[str]:
    """Named points on the drawn sides that lie along line ab."""
    out = []
    for p, q in drawn_sides(scene):
        if _on_line(scene, p, a, b) and _on_line(scene, q, a, b):
            out += [p, q] + [x for x, s in _side_incidences(scene) if s == (p, q)]
    return list(dict.fromkeys(out))


def _crossing_side(scene: Scene, x: str, line: list[str]) -> tuple[str, str] | None:
    """A drawn side through x that is not along the line being turned (x is kept on it)."""
    for p, q in drawn_sides(scene):
        if x in (p, q) or (x, (p, q)) in _side_incidences(scene):
            if not (p in line and q in line):
                return p, q
    return None


def _turn_line(scene: Scene, line: list[str], pivot: str, deg: float) -> dict[str, np.ndarray]:
    """Turn the line through ``line``'s points about ``pivot``; points on another side slide along it."""
    c = _xy(scene, pivot)
    far = next(x for x in line if x != pivot)
    d = g.rotate(_xy(scene, far), c, deg) - c
    moved = {}
    for x in line:
        if x == pivot:
            continue
        side = _crossing_side(scene, x, line)
        if side is None:
            moved[x] = g.rotate(_xy(scene, x), c, deg)
        else:
            try:
                moved[x] = g.line_intersection(c, c + d, _xy(scene, side[0]), _xy(scene, side[1]))
            except ValueError:
                return {}
    return moved


def _parallel_turns(
    scene: Scene, rng, name: str, degrees: Callable[[float], list[float]], added: Callable[[Fact], tuple[Fact, ...]]
) -> Iterable[_Change] | NotApplicable:
    facts = [f for f in scene.facts if f.kind == "parallel"]
    if not facts:
        return _na(name, "no stated parallel lines")

    def candidates():
        for f in _shuffled(rng, facts):
            for a, b in _shuffled(rng, [f.args[:2], f.args[2:]]):
                line = _line_points(scene, a, b)
                pivots = [x for x in line if _crossing_side(scene, x, line)]
                for pivot in _shuffled(rng, pivots):
                    for deg in degrees(g.line_angle_between(*(_xy(scene, x) for x in f.args))):
                        moved = _turn_line(scene, line, pivot, deg)
                        if moved:
                            yield _Change(removed=(f,), added=added(f), moved=moved)

    return candidates()


def _unparallel(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Make two stated parallel lines non-parallel: turn one of them by 10-20° about a
    point where another stroke crosses it (points on it slide along their other strokes)."""
    signs = [1.0, -1.0] if rng.random() < 0.5 else [-1.0, 1.0]
    return _parallel_turns(
        scene, rng, "unparallel", lambda _: [s * d for d in UNPARALLEL_DEG for s in signs], lambda f: ()
    )


def _parallel_to_perpendicular(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """parallel → perpendicular (drastic: the paper keeps it out of image negatives)."""
    return _parallel_turns(
        scene, rng, "parallel_to_perpendicular", lambda _: [90.0, -90.0], lambda f: (Fact("perpendicular", f.args),)
    )


def _tangent_to_secant(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Turn the tangent PT about P into the circle so it cuts it: T slides to the nearer crossing."""
    facts = [f for f in scene.facts if f.kind == "tangent"]
    radii = _circle_radii(scene)
    if not facts:
        return _na("tangent_to_secant", "no stated tangent")

    def candidates():
        for f in _shuffled(rng, facts):
            p, t, o = f.args
            if o not in radii:
                continue
            pp, pt, po = _xy(scene, p), _xy(scene, t), _xy(scene, o)
            half = math.degrees(math.asin(min(1.0, radii[o] / g.dist(pp, po))))
            sign = 1.0 if g.cross(pt - pp, po - pp) > 0 else -1.0  # turn towards the centre
            for frac in (0.35, 0.5, 0.65):
                d = g.rotate(pt, pp, sign * frac * half) - pp
                hits = _line_circle(pp, d, po, radii[o])
                if len(hits) == 2:
                    yield _Change(removed=(f,), added=(Fact("secant", f.args),), moved={t: hits[0]})

    return candidates()


def _move_off_circle(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Move a point stated to lie on a circle radially off it (the fact is removed)."""
    facts = [f for f in scene.facts if f.kind == "on_circle" and f.args[1] in _circle_radii(scene)]
    if not facts:
        return _na("move_off_circle", "no stated point on a drawn circle")
    fixed = _fixed_points(scene)

    def candidates():
        for f in _shuffled(rng, facts):
            p, o = f.args
            if p in fixed:
                continue
            pp, po = _xy(scene, p), _xy(scene, o)
            for s in OFF_CIRCLE_SCALES:
                yield _Change(removed=(f,), moved={p: po + s * (pp - po)}, detach=((p, f"circle:{o}"),))

    return candidates()


def _move_midpoint(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Slide a stated midpoint along its side: ``midpoint(M,A,B)`` becomes ``on_segment(M,A,B)``
    and its equal ticks go with it (they are the midpoint's own marks, not another fact)."""
    facts = [f for f in scene.facts if f.kind == "midpoint"]
    if not facts:
        return _na("move_midpoint", "no stated midpoint")

    def candidates():
        for f in _shuffled(rng, facts):
            m, a, b = f.args
            on = Fact("on_segment", f.args)
            added = () if on.key() in scene.fact_keys() else (on,)
            for s in MIDPOINT_SHIFTS:
                for sign in _shuffled(rng, [1.0, -1.0]):
                    yield _Change(
                        removed=(f,), added=added, moved={m: g.lerp(_xy(scene, a), _xy(scene, b), 0.5 + sign * s)}
                    )

    return candidates()
