"""The lines-and-angles family: two parallels cut by a transversal, closing a triangle (lesson 01)."""

from __future__ import annotations

import math

import numpy as np

from .. import geometry as g
from .draft import _Draft, _letters, _Reject, _subset
from .legibility import MIN_ANGLE_DEG, NEAR_RIGHT_DEG

MIN_LINE_GAP = 3.5  # distance between the parallels, in the units of their half-widths (3 to 6)
MIN_GAP_RATIO = 0.3  # ... and at least this fraction of the lines' drawn length


def parallel_transversal(rng: np.random.Generator) -> _Draft:
    """Two parallel lines cut by a transversal, and a second segment EK closing triangle EFK.

    Corresponding, alternate and co-interior angles; EK is either the bisector of
    ∠BEF (then FE = FK, an isosceles triangle) or a segment at a whole-degree angle.
    """
    d = _Draft("parallel_transversal")
    A, B, C, D, E, F, G, H, K = _letters(rng, 9)
    theta = int(rng.integers(40, 146))  # ∠BEF
    if abs(theta - 90) < 10:
        raise _Reject("near-perpendicular transversal: the angle values would be ambiguous")
    bisect = theta % 2 == 0 and rng.random() < 0.5
    phi = theta // 2 if bisect else int(rng.integers(MIN_ANGLE_DEG, theta - MIN_ANGLE_DEG + 1))  # ∠BEK
    if abs(phi - 90) < NEAR_RIGHT_DEG:
        raise _Reject("triangle EFK would look right-angled")
    u = g.polar((0, 0), 1, theta)
    ef = float(rng.integers(4, 10))
    e = g.P(0, 0)
    f = e + ef * u
    height = f[1]
    if height < MIN_LINE_GAP:
        raise _Reject("parallel lines too close for their angle marks")
    k = g.P(height / math.tan(math.radians(phi)), height)
    d.pt(A, (-float(rng.uniform(3, 6)), 0))
    d.pt(B, (float(rng.uniform(3, 6)), 0))
    d.pt(E, e)
    d.pt(F, f)
    d.pt(G, e - float(rng.uniform(2, 3)) * u)
    d.pt(H, f + float(rng.uniform(2, 3)) * u)
    d.pt(K, k)
    d.pt(C, (f[0] - float(rng.uniform(3, 6)), height))
    d.pt(D, (k[0] + float(rng.uniform(2, 5)), height))
    xs = [p[0] for p in d.points.values()]
    if height < MIN_GAP_RATIO * (max(xs) - min(xs)):
        raise _Reject("parallels too close for their length: the angle marks would crowd")
    for s in ((A, B), (C, D), (G, H)):
        d.seg(*s)
    d.seg(E, K, dashed=rng.random() < 0.5)
    d.parallel(A, B, C, D)
    d.fact("intersection", E, A, B, G, H)
    d.fact("intersection", F, C, D, G, H)
    d.shape(E, F, K)
    angles = [(B, E, F), (A, E, F), (A, E, G), (G, E, B), (E, F, C), (E, F, D), (D, F, H), (C, F, H)]
    if not bisect:
        angles += [(B, E, K), (E, K, F)]
    for ang in _subset(rng, angles, 2, 3):
        d.angle(*ang)
    if bisect:
        d.bisector(E, K, B, F)
    if rng.random() < 0.4:
        d.length(E, F)
    if rng.random() < 0.3:
        d.fact("on_segment", K, C, D)
    return d
