"""Triangle families: the right triangle's altitude, the isosceles median, the angle bisector,
the parallel cut (similar triangles), the midsegment and the equilateral triangle (lesson 01).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import geometry as g
from .draft import _Draft, _letters, _pick, _Reject, _shuffled, _subset, _triple
from .legibility import MIN_ANGLE_DEG

RATIOS = ((1, 2), (1, 3), (2, 3), (2, 5), (3, 5), (3, 4), (1, 4))  # DE ∥ BC division ratios AD:AB

# ----------------------------------------------------------------------------- constructions


def _triangle_from_sides(a: float, b: float, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (A, B, C) with BC = a, CA = b, AB = c: B at the origin, C on the x-axis."""
    x = (a * a + c * c - b * b) / (2 * a)
    y2 = c * c - x * x
    if y2 <= 0:
        raise _Reject("sides violate the triangle inequality")
    return g.P(x, math.sqrt(y2)), g.P(0, 0), g.P(a, 0)


def _triangle_from_angles(base: float, beta: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (A, B, C) with BC = base, ∠B = beta, ∠C = gamma (degrees)."""
    b, c = g.P(0, 0), g.P(base, 0)
    a = g.line_intersection(b, g.polar(b, 1, beta), c, g.polar(c, 1, 180 - gamma))
    return a, b, c


def _integer_angles(rng: np.random.Generator, lo: int = 30, hi: int = 110) -> tuple[int, int, int]:
    """Three whole-degree triangle angles (A, B, C), each between ``lo`` and ``hi``."""
    b, c = (int(x) for x in rng.integers(lo, hi + 1, size=2))
    a = 180 - b - c
    if not lo <= a <= hi:
        raise _Reject("angles out of range")
    return a, b, c


def _integer_sides(rng: np.random.Generator, lo: int = 4, hi: int = 12) -> tuple[int, int, int]:
    a, b, c = (int(x) for x in rng.integers(lo, hi + 1, size=3))
    if not (a < b + c and b < a + c and c < a + b):
        raise _Reject("sides violate the triangle inequality")
    return a, b, c


def _no_check(bc: int, ca: int, ab: int) -> None:
    """Accept any whole sides (the default of :func:`_triangle_by_mode`)."""


def _triangle_by_mode(
    rng: np.random.Generator,
    max_side: int,
    base: tuple[int, int],
    check_sides: Callable[[int, int, int], None] = _no_check,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Vertices (A, B, C) and the mode they were drawn in, each half the time.

    ``"lengths"``: whole sides BC, CA, AB in 4..``max_side``, which ``check_sides`` may
    reject (raising :class:`_Reject`) before they are built; ``"angles"``: whole angles
    of 30° to 100° at B and C on a whole base BC drawn from ``rng.integers(*base)``.
    """
    if rng.random() < 0.5:
        bc, ca, ab = _integer_sides(rng, 4, max_side)
        check_sides(bc, ca, ab)
        return (*_triangle_from_sides(bc, ca, ab), "lengths")
    _, beta, gamma = _integer_angles(rng, 30, 100)
    return (*_triangle_from_angles(float(rng.integers(*base)), beta, gamma), "angles")


# ----------------------------------------------------------------------------- families


def right_triangle_altitude(rng: np.random.Generator) -> _Draft:
    """Right triangle with the altitude to the hypotenuse (similar triangles, Euclid's relations)."""
    d = _Draft("right_triangle_altitude")
    *corners, H = _letters(rng, 4, {3: "H"})
    A, B, C = _shuffled(rng, corners)  # C is the right angle
    if rng.random() < 0.5:  # sides from a Pythagorean triple
        leg_a, leg_b, hyp = _triple(rng)  # BC, AC, AB
        alpha = math.degrees(math.atan2(leg_a, leg_b))
        mode = "lengths"
    else:
        alpha = float(rng.integers(25, 66))
        hyp, mode = float(rng.integers(5, 16)), "angles"
        leg_b = hyp * math.cos(math.radians(alpha))
    d.pt(A, (0, 0))
    d.pt(B, (hyp, 0))
    d.pt(C, g.polar(d.xy(A), leg_b, alpha))
    d.pt(H, g.foot_of_perpendicular(d.xy(C), d.xy(A), d.xy(B)))
    d.poly(A, B, C)
    d.seg(C, H, dashed=True)
    d.shape(A, B, C)
    d.angle(A, C, B)
    d.altitude(C, H, A, B)
    if mode == "lengths":
        sides = _subset(rng, [(A, C), (B, C), (A, B)], 2, 3)
        extra = [s for s in [(C, H), (A, H), (H, B)] if d.nice(*s)]
        for s in sides + _subset(rng, extra, 0, 1):
            d.length(*s)
    else:
        d.angle(*_pick(rng, [(C, A, B), (C, B, A), (A, C, H), (B, C, H)]))
        if rng.random() < 0.6:
            d.length(A, B)
    if rng.random() < 0.5:
        d.fact("similar", *_pick(rng, [(A, B, C, A, C, H), (A, B, C, C, B, H), (A, C, H, C, B, H)]))
    if rng.random() < 0.4:
        d.fact("on_segment", H, A, B)
    return d


def isosceles_median(rng: np.random.Generator) -> _Draft:
    """Isosceles triangle with the segment from the apex to the base midpoint (median = altitude = bisector)."""
    d = _Draft("isosceles_median")
    *corners, M = _letters(rng, 4, {3: "M"})
    A, B, C = _shuffled(rng, corners)  # A is the apex
    if rng.random() < 0.5:
        half, height, leg = _triple(rng)
        mode = "lengths"
    else:
        apex = int(rng.integers(15, 66)) * 2  # even, so the base angles are whole degrees
        if apex == 60:
            raise _Reject("equilateral is its own family")
        leg, mode = float(rng.integers(5, 13)), "angles"
        half, height = leg * math.sin(math.radians(apex / 2)), leg * math.cos(math.radians(apex / 2))
    d.pt(A, (0, height))
    d.pt(B, (-half, 0))
    d.pt(C, (half, 0))
    d.pt(M, (0, 0))
    d.poly(A, B, C)
    d.seg(A, M, dashed=True)
    d.shape(A, B, C)
    d.equal(A, B, A, C)
    roles = _pick(rng, [("median",), ("altitude",), ("median", "altitude"), ("bisector",), ("median", "bisector")])
    if "median" in roles:
        d.median(A, M, B, C)
    if "altitude" in roles:
        d.altitude(A, M, B, C)
    if "bisector" in roles:
        d.bisector(A, M, B, C)
    if mode == "lengths":
        for s in _subset(rng, [(A, B), (B, C), (A, M)], 2, 2):
            d.length(*s)
    else:
        d.angle(*_pick(rng, [(B, A, M), (A, B, C)]))  # the apex value would sit on the median: give half
        if rng.random() < 0.5:
            d.length(A, B)
    if rng.random() < 0.4:
        d.fact("congruent", A, B, M, A, C, M)
    return d


def angle_bisector(rng: np.random.Generator) -> _Draft:
    """Triangle with the bisector of one angle (angle sums, or the angle-bisector theorem)."""
    d = _Draft("angle_bisector")
    *corners, D = _letters(rng, 4)
    A, B, C = _shuffled(rng, corners)  # the bisector leaves A
    if rng.random() < 0.5:
        apex, beta, gamma = _integer_angles(rng, 25, 110)
        if apex % 2 or apex < 2 * MIN_ANGLE_DEG:
            raise _Reject("the half angles must be whole and readable")
        a, b, c = _triangle_from_angles(float(rng.integers(6, 13)), beta, gamma)
        mode = "angles"
    else:
        bc, ca, ab = _integer_sides(rng)
        if (10 * bc * ab) % (ca + ab):
            raise _Reject("the bisector would cut BC at an ugly length")
        a, b, c = _triangle_from_sides(bc, ca, ab)
        mode = "lengths"
    d.pt(A, a)
    d.pt(B, b)
    d.pt(C, c)
    d.pt(D, g.angle_bisector_point(a, b, c))
    d.poly(A, B, C)
    d.seg(A, D, dashed=rng.random() < 0.5)
    d.shape(A, B, C)
    d.bisector(A, D, B, C)
    if mode == "angles":
        for ang in _subset(rng, [(B, A, D), (A, B, C), (A, C, B), (A, D, B)], 2, 2):
            d.angle(*ang)
        if rng.random() < 0.4:
            d.length(B, C)
    else:
        for s in _subset(rng, [(A, B), (A, C)], 1, 2) + _subset(rng, [(B, C), (B, D), (D, C)], 1, 2):
            d.length(*s)
    if rng.random() < 0.5:
        d.fact("on_segment", D, B, C)
    return d


def similar_triangles(rng: np.random.Generator) -> _Draft:
    """Triangle cut by a parallel to one side: DE ∥ BC gives △ADE ~ △ABC."""
    d = _Draft("similar_triangles")
    *corners, D, E = _letters(rng, 5)
    A, B, C = _shuffled(rng, corners)  # D on AB, E on AC
    p, q = _pick(rng, RATIOS)
    k = p / q

    def nice_cut(*sides: int) -> None:
        if any((10 * p * x) % q for x in sides):
            raise _Reject("the cut would give ugly lengths")

    a, b, c, mode = _triangle_by_mode(rng, 15, (6, 13), nice_cut)
    d.pt(A, a)
    d.pt(B, b)
    d.pt(C, c)
    d.pt(D, g.lerp(a, b, k))
    d.pt(E, g.lerp(a, c, k))
    d.poly(A, B, C)
    d.seg(D, E)
    d.shape(A, B, C)
    d.parallel(D, E, B, C)
    d.fact("on_segment", D, A, B)
    d.fact("on_segment", E, A, C)
    if rng.random() < 0.6:
        d.fact("similar", A, D, E, A, B, C)
    if mode == "lengths":
        side_ab = _pick(rng, [[(A, D), (D, B)], [(A, D), (A, B)], [(D, B), (A, B)]])
        for s in side_ab + [_pick(rng, [(D, E), (B, C)])] + _subset(rng, [(A, E), (E, C)], 0, 1):
            d.length(*s)
    else:
        for ang in _subset(rng, [(A, B, C), (A, C, B), (B, A, C), (A, D, E)], 2, 2):
            d.angle(*ang)
        if rng.random() < 0.5:
            d.length(B, C)
    return d


def midsegment(rng: np.random.Generator) -> _Draft:
    """Triangle with the segment joining two side midpoints: parallel to the third side and half of it."""
    d = _Draft("midsegment")
    *corners, M, N = _letters(rng, 5, {3: "M", 4: "N"})
    A, B, C = _shuffled(rng, corners)
    a, b, c, mode = _triangle_by_mode(rng, 14, (5, 15))
    d.pt(A, a)
    d.pt(B, b)
    d.pt(C, c)
    d.pt(M, g.midpoint(a, b))
    d.pt(N, g.midpoint(a, c))
    d.poly(A, B, C)
    d.seg(M, N, dashed=rng.random() < 0.3)
    d.shape(A, B, C)
    d.midpoint(M, A, B)
    d.midpoint(N, A, C)
    if rng.random() < 0.7:
        d.parallel(M, N, B, C)
    if rng.random() < 0.4:
        d.fact("similar", A, M, N, A, B, C)
    if mode == "lengths":
        for s in [_pick(rng, [(B, C), (M, N)])] + _subset(rng, [(A, B), (A, C), (A, M), (N, C)], 0, 2):
            d.length(*s)
    else:
        for ang in _subset(rng, [(A, B, C), (A, C, B), (B, A, C), (A, M, N)], 1, 2):
            d.angle(*ang)
        if d.nice(B, C) and rng.random() < 0.6:
            d.length(B, C)
    return d


def equilateral_triangle(rng: np.random.Generator) -> _Draft:
    """Equilateral triangle with an altitude (which is also a median), optionally its circumcircle."""
    d = _Draft("equilateral_triangle")
    letters = _letters(rng, 4, {3: "H"})
    A, B, C = _shuffled(rng, letters[:3])
    H = letters[3]
    s = float(rng.integers(4, 13))
    d.pt(B, (0, 0))
    d.pt(C, (s, 0))
    d.pt(A, (s / 2, s * math.sqrt(3) / 2))
    d.pt(H, (s / 2, 0))
    d.poly(A, B, C)
    d.seg(A, H, dashed=True)
    d.shape(A, B, C)
    d.equal(A, B, B, C)
    d.equal(B, C, C, A)
    d.altitude(A, H, B, C)
    if rng.random() < 0.6:
        d.midpoint(H, B, C)
    if rng.random() < 0.6:
        d.angle(*_pick(rng, [(A, B, C), (B, C, A)]))  # the value at A would sit on the altitude
    if rng.random() < 0.7:
        d.length(*_pick(rng, [(A, B), (B, C), (C, A)]))
    if rng.random() < 0.3:
        d.bisector(A, H, B, C)
    if rng.random() < 0.3:  # the centre of the circumscribed circle lies on the altitude
        d.pt("O", (s / 2, s / (2 * math.sqrt(3))))
        d.circle("O", s / math.sqrt(3))
        for v in (A, B, C):
            d.fact("on_circle", v, "O")
    return d
