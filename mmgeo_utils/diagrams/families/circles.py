"""Circle families: Thales' circle, tangents from an external point, a chord with the
perpendicular from the centre, inscribed and central angles (lesson 01).
"""

from __future__ import annotations

import math

import numpy as np

from .. import geometry as g
from .draft import _Draft, _letters, _pick, _shuffled, _subset, _triple


def thales_circle(rng: np.random.Generator) -> _Draft:
    """Circle with a diameter and an inscribed angle on it: Thales' right angle."""
    d = _Draft("thales_circle")
    A, B, C = _shuffled(rng, _letters(rng, 3))
    O = "O"
    if rng.random() < 0.5:
        leg_a, leg_b, hyp = _triple(rng)  # BC, AC, AB
        alpha, mode = math.degrees(math.atan2(leg_a, leg_b)), "lengths"
    else:
        alpha, hyp, mode = float(rng.integers(25, 66)), float(rng.integers(6, 15)), "angles"
    r = hyp / 2
    d.pt(O, (0, 0))
    d.pt(A, (-r, 0))
    d.pt(B, (r, 0))
    d.pt(C, g.polar((0, 0), r, 2 * alpha))
    d.circle(O, r)
    d.poly(A, B, C)
    d.shape(A, B, C)
    d.fact("diameter", A, B, O)
    d.fact("on_circle", C, O)
    d.angle(A, C, B)
    radius_drawn = rng.random() < 0.5
    if radius_drawn:
        d.seg(O, C, dashed=True)
        d.fact("radius", O, C)
        d.equal(O, A, O, C)
    if mode == "lengths":
        options = [(A, C), (B, C), (A, B)] + ([(O, C)] if radius_drawn else [(O, A)])
        for s in _subset(rng, [s for s in options if d.nice(*s)], 2, 3):
            d.length(*s)
    else:
        options = [(C, A, B), (C, B, A)] + ([(A, O, C), (C, O, B)] if radius_drawn else [])
        d.angle(*_pick(rng, options))
        if rng.random() < 0.5:
            d.length(A, B)
    return d


def tangent_external(rng: np.random.Generator) -> _Draft:
    """Tangents from an external point: tangent ⟂ radius, equal tangents, tangent–secant."""
    d = _Draft("tangent_external")
    P, T, *spare = _letters(rng, 5)
    spare = iter(spare)  # letters for the second tangent point and the secant, in order of use
    O = "O"
    if rng.random() < 0.5:
        r, t, dist_op = _triple(rng)
        mode = "lengths"
    else:
        beta = float(rng.integers(22, 51))  # ∠OPT
        r, mode = float(rng.integers(3, 9)), "angles"
        dist_op = r / math.sin(math.radians(beta))
    d.pt(O, (0, 0))
    d.pt(P, (dist_op, 0))
    t1, t2 = g.tangent_points(d.xy(P), d.xy(O), r)
    d.pt(T, t1)
    d.circle(O, r)
    d.seg(P, T)
    d.seg(O, T, dashed=True)
    d.tangent(P, T, O)
    if rng.random() < 0.5:
        d.fact("radius", O, T)
    else:
        d.fact("on_circle", T, O)
    two = rng.random() < 0.5
    secant = rng.random() < 0.5
    if two:
        S = next(spare)
        d.pt(S, t2)
        d.seg(P, S)
        d.seg(O, S, dashed=True)
        d.tangent(P, S, O)
        d.equal(P, T, P, S)
        if rng.random() < 0.4:
            d.fact("congruent", O, T, P, O, S, P)
    if secant:  # the secant through the centre: PA·PB = PT²
        A, B = next(spare), next(spare)
        d.pt(A, (r, 0))
        d.pt(B, (-r, 0))
        d.seg(P, B)
        d.fact("secant", P, A, O)
        d.fact("diameter", A, B, O)
    else:
        d.seg(O, P, dashed=True)
    d.shape(O, T, P)
    if mode == "lengths":
        options = [(O, T), (P, T), (O, P)] + ([(P, A)] if secant else [])
        for s in _subset(rng, options, 2, 2):
            d.length(*s)
    else:
        options = [(O, P, T), (T, O, P)] + ([(T, P, S)] if two else [])
        d.angle(*_pick(rng, options))
        d.length(O, T)
    return d


def chord_perpendicular(rng: np.random.Generator) -> _Draft:
    """Circle with a chord and the perpendicular from the centre, which bisects the chord."""
    d = _Draft("chord_perpendicular")
    A, B, M = _letters(rng, 3, {2: "M"})
    O = "O"
    if rng.random() < 0.5:
        half, depth, r = _triple(rng)
        mode = "lengths"
    else:
        phi = float(rng.integers(25, 69))  # half the central angle
        r, mode = float(rng.integers(3, 11)), "angles"
        half, depth = r * math.sin(math.radians(phi)), r * math.cos(math.radians(phi))
    d.pt(O, (0, 0))
    d.pt(A, (-half, -depth))
    d.pt(B, (half, -depth))
    d.pt(M, (0, -depth))
    d.circle(O, r)
    d.seg(A, B)
    d.seg(O, M, dashed=True)
    d.seg(O, A, dashed=rng.random() < 0.5)
    d.seg(O, B, dashed=rng.random() < 0.5)
    d.perpendicular(O, M, A, B, at=M, arms=(O, B))
    d.fact("on_circle", A, O)
    d.fact("on_circle", B, O)
    if rng.random() < 0.6:
        d.midpoint(M, A, B)
    if rng.random() < 0.5:
        d.equal(O, A, O, B)
    d.shape(O, A, B)
    if mode == "lengths":
        for s in _subset(rng, [(O, A), (O, M), (A, B), (A, M)], 2, 2):
            d.length(*s)
    else:
        d.angle(*_pick(rng, [(O, A, B), (A, O, M)]))  # ∠AOB's value would sit on OM
        d.length(O, A)
    return d


def inscribed_angle(rng: np.random.Generator) -> _Draft:
    """Inscribed and central angles on the same arc: the central angle is twice the inscribed one."""
    d = _Draft("inscribed_angle")
    A, B, C = _shuffled(rng, _letters(rng, 3))
    O = "O"
    theta = int(rng.integers(25, 71))  # the inscribed angle ∠ACB
    r = float(rng.integers(3, 11))
    start = 270.0 - theta  # arc AB centred on the bottom of the circle
    d.pt(O, (0, 0))
    d.pt(A, g.polar((0, 0), r, start))
    d.pt(B, g.polar((0, 0), r, start + 2 * theta))
    d.pt(C, g.polar((0, 0), r, float(rng.uniform(start + 2 * theta + 40, start + 320))))
    d.circle(O, r)
    d.seg(C, A)
    d.seg(C, B)
    d.seg(O, A, dashed=True)
    d.seg(O, B, dashed=True)
    for v in (A, B, C):
        d.fact("on_circle", v, O)
    d.shape(O, A, B)
    if rng.random() < 0.5:
        d.equal(O, A, O, B)
    for ang in _subset(rng, [(A, C, B), (A, O, B), (O, A, B)], 1, 2):
        d.angle(*ang)
    if rng.random() < 0.6:
        d.length(O, A)
    return d
