"""The quadrilateral family: a parallelogram, rectangle, rhombus, square or trapezoid with its
diagonals, and the facts each kind has (lesson 01).
"""

from __future__ import annotations

import numpy as np

from .. import geometry as g
from .draft import _Draft, _letters, _pick, _Reject, _subset, _triple

QUAD_TYPES = ("parallelogram", "rectangle", "rhombus", "square", "trapezoid", "isosceles trapezoid")
MIN_DIAGONAL_ANGLE = 35.0  # diagonals crossing at a sharper angle leave no room for the centre's label


def quadrilateral_diagonals(rng: np.random.Generator) -> _Draft:
    """Parallelogram, rectangle, rhombus, square or trapezoid with its diagonals and their crossing."""
    d = _Draft("quadrilateral_diagonals")
    *corners, E = _letters(rng, 5)
    shift = int(rng.integers(4))  # which corner gets the first letter
    A, B, C, D = corners[shift:] + corners[:shift]
    if rng.random() < 0.4:
        E = "O"
    kind = _pick(rng, QUAD_TYPES)
    xys = _quad_corners(rng, kind)
    for name, xy in zip((A, B, C, D), xys):
        d.pt(name, xy)
    d.pt(E, g.line_intersection(*xys[0::2], *xys[1::2]))
    if g.line_angle_between(*xys[0::2], *xys[1::2]) < MIN_DIAGONAL_ANGLE:
        raise _Reject("diagonals too close to parallel")
    d.poly(A, B, C, D)
    dashed = rng.random() < 0.5
    d.seg(A, C, dashed)
    d.seg(B, D, dashed)
    d.shape(A, B, C, D)
    d.fact("intersection", E, A, C, B, D)
    _QUAD_FACTS[kind](d, rng, (A, B, C, D, E))
    return d


def _quad_corners(rng: np.random.Generator, kind: str) -> list[np.ndarray]:
    """Corners A, B, C, D (counter-clockwise) of the requested kind with nice sides."""
    if kind in ("parallelogram", "rhombus") and (kind == "parallelogram" or rng.random() < 0.5):
        a = float(rng.integers(4, 11))
        b = a if kind == "rhombus" else float(rng.integers(3, 9))
        if kind == "parallelogram" and b == a:
            raise _Reject("equal sides make a rhombus")
        theta = float(2 * rng.integers(20, 41) if kind == "rhombus" else rng.integers(40, 81))  # halves whole
        dv = g.polar((0, 0), b, theta)
        return [g.P(0, 0), g.P(a, 0), g.P(a, 0) + dv, dv]
    if kind == "rhombus":  # from half-diagonals that form a Pythagorean triple
        p, q, _ = _triple(rng)
        return [g.P(-p, 0), g.P(0, -q), g.P(p, 0), g.P(0, q)]
    if kind in ("rectangle", "square"):
        a, b, _ = _triple(rng)
        if kind == "square":
            a = b = float(rng.integers(3, 13))
        return [g.P(0, 0), g.P(a, 0), g.P(a, b), g.P(0, b)]
    base = float(rng.integers(7, 15))
    if kind == "isosceles trapezoid":
        x1, h, _ = _triple(rng)
        x2 = x1
    else:
        h = float(rng.integers(3, 8))
        x1, x2 = float(rng.integers(0, 5)), float(rng.integers(-1, 5))
        if x1 == x2:
            raise _Reject("equal offsets make an isosceles trapezoid")
    if base - x1 - x2 < 2:
        raise _Reject("top base too short")
    return [g.P(0, 0), g.P(base, 0), g.P(base - x2, h), g.P(x1, h)]


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


def _parallelogram_facts(d: _Draft, rng, names) -> None:
    A, B, C, D, E = names
    d.parallel(A, B, D, C)
    d.parallel(A, D, B, C)
    if rng.random() < 0.6:
        d.midpoint(E, A, C)
        d.midpoint(E, B, D)
    for s in _subset(rng, [(A, B), (A, D)], 1, 2):
        d.length(*s)
    if rng.random() < 0.6:
        d.angle(D, A, B)


def _rectangle_facts(d: _Draft, rng, names) -> None:
    A, B, C, D, E = names
    d.angle(D, A, B)
    if rng.random() < 0.5:
        d.parallel(A, B, D, C)
    if rng.random() < 0.5:
        d.midpoint(E, A, C)
        d.midpoint(E, B, D)
    for s in _subset(rng, [(A, B), (B, C), (A, C)], 2, 2):
        d.length(*s)


def _rhombus_facts(d: _Draft, rng, names) -> None:
    A, B, C, D, E = names
    d.equal(A, B, B, C)
    d.equal(B, C, C, D)
    d.equal(C, D, D, A)
    if rng.random() < 0.7:
        d.perpendicular(A, C, B, D, at=E, arms=(C, D))
    if _whole(g.angle_at(d.xy(A), d.xy(B), d.xy(C))) and rng.random() < 0.7:
        d.angle(B, A, C)  # the diagonal bisects ∠DAB, so the value of ∠DAB would sit on it
        if rng.random() < 0.5:
            d.length(A, B)
    else:
        for s in _subset(rng, [s for s in [(A, B), (A, C), (B, D)] if d.nice(*s)], 1, 2):
            d.length(*s)


def _square_facts(d: _Draft, rng, names) -> None:
    A, B, C, D, E = names
    d.angle(D, A, B)
    d.equal(A, B, B, C)
    d.equal(B, C, C, D)
    if rng.random() < 0.5:
        d.equal(C, D, D, A)
    d.perpendicular(A, C, B, D, at=E, arms=(C, D))
    d.length(A, B)


def _trapezoid_facts(d: _Draft, rng, names) -> None:
    A, B, C, D, E = names
    d.parallel(A, B, D, C)
    if _shape_of(d) == "isosceles trapezoid":
        d.equal(A, D, B, C)
    right = abs(g.angle_at(d.xy(A), d.xy(B), d.xy(D)) - 90) < 1e-9
    if right:
        d.angle(D, A, B)
    lengths = [(A, B), (D, C)] + [s for s in [(A, D), (B, C)] if d.nice(*s)]
    for s in _subset(rng, lengths, 2, 3):
        d.length(*s)
    if rng.random() < 0.5:
        d.fact("similar", E, A, B, E, C, D)


def _shape_of(d: _Draft) -> str:
    return next(str(f.value) for f in d.facts if f.kind == "shape")


_QUAD_FACTS = {
    "parallelogram": _parallelogram_facts,
    "rectangle": _rectangle_facts,
    "rhombus": _rhombus_facts,
    "square": _square_facts,
    "trapezoid": _trapezoid_facts,
    "isosceles trapezoid": _trapezoid_facts,
}
