"""Plane-geometry constructions as small pure functions on 2-D points.

Scenes are built from these constructions (midpoint, foot of a perpendicular,
intersection, tangent point, ...), so every coordinate in a diagram is *derived*
from a few random choices and the facts hold exactly, not approximately.
Points are ``numpy`` arrays of shape (2,) or plain ``(x, y)`` tuples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EPS = 1e-9
Vec = np.ndarray


def P(x: float, y: float) -> Vec:
    return np.array([float(x), float(y)])


def as_vec(p: Sequence[float]) -> Vec:
    return np.asarray(p, dtype=float).reshape(2)


def dist(a, b) -> float:
    return float(np.hypot(*(as_vec(a) - as_vec(b))))


def midpoint(a, b) -> Vec:
    return (as_vec(a) + as_vec(b)) / 2.0


def lerp(a, b, t: float) -> Vec:
    """The point a + t·(b − a): t=0 gives a, t=1 gives b."""
    a = as_vec(a)
    return a + t * (as_vec(b) - a)


def polar(center, radius: float, angle_deg: float) -> Vec:
    t = math.radians(angle_deg)
    return as_vec(center) + radius * np.array([math.cos(t), math.sin(t)])


def angle_at(vertex, a, b) -> float:
    """The (unsigned) angle a–vertex–b in degrees, in [0, 180]."""
    u, v = as_vec(a) - as_vec(vertex), as_vec(b) - as_vec(vertex)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < EPS or nv < EPS:
        raise ValueError("angle is undefined: an arm has zero length")
    c = float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))
    return math.degrees(math.acos(c))


def direction_deg(a, b) -> float:
    d = as_vec(b) - as_vec(a)
    return math.degrees(math.atan2(d[1], d[0]))


def cross(u, v) -> float:
    u, v = as_vec(u), as_vec(v)
    return float(u[0] * v[1] - u[1] * v[0])


def line_angle_between(a, b, c, d) -> float:
    """Angle in degrees, in [0, 90], between line AB and line CD."""
    u, v = as_vec(b) - as_vec(a), as_vec(d) - as_vec(c)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < EPS or nv < EPS:
        raise ValueError("line is undefined: its two points coincide")
    c_ = abs(float(np.dot(u, v))) / (nu * nv)
    return math.degrees(math.acos(min(1.0, c_)))


def foot_of_perpendicular(p, a, b) -> Vec:
    """The foot of the perpendicular from P to line AB."""
    a, b, p = as_vec(a), as_vec(b), as_vec(p)
    d = b - a
    t = float(np.dot(p - a, d) / np.dot(d, d))
    return a + t * d


def line_intersection(a, b, c, d) -> Vec:
    """The intersection of lines AB and CD; parallel lines are an error."""
    a, b, c, d = map(as_vec, (a, b, c, d))
    r, s = b - a, d - c
    den = cross(r, s)
    if abs(den) < EPS * max(1.0, np.linalg.norm(r) * np.linalg.norm(s)):
        raise ValueError("lines are parallel: no intersection")
    t = cross(c - a, s) / den
    return a + t * r


def rotate(p, center, angle_deg: float) -> Vec:
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return as_vec(center) + rot @ (as_vec(p) - as_vec(center))


def reflect(p, a, b) -> Vec:
    """Mirror image of P in line AB."""
    f = foot_of_perpendicular(p, a, b)
    return 2 * f - as_vec(p)


def tangent_points(p, center, radius: float) -> tuple[Vec, Vec]:
    """The two points where tangents from an external point P touch the circle."""
    p, o = as_vec(p), as_vec(center)
    d = dist(p, o)
    if d <= radius + EPS:
        raise ValueError("point is not outside the circle: no tangent")
    base = direction_deg(o, p)
    half = math.degrees(math.acos(radius / d))
    return polar(o, radius, base + half), polar(o, radius, base - half)


def angle_bisector_point(vertex, a, b) -> Vec:
    """Where the bisector of angle a–vertex–b meets segment ab (angle-bisector theorem)."""
    v, a, b = map(as_vec, (vertex, a, b))
    la, lb = dist(v, a), dist(v, b)
    return a + (la / (la + lb)) * (b - a)


def point_segment_distance(p, a, b) -> float:
    a, b, p = as_vec(a), as_vec(b), as_vec(p)
    d = b - a
    L2 = float(np.dot(d, d))
    if L2 < EPS:
        return dist(p, a)
    t = min(1.0, max(0.0, float(np.dot(p - a, d) / L2)))
    return dist(p, a + t * d)


def on_segment(p, a, b, tol: float = 1e-6) -> bool:
    scale = max(1.0, dist(a, b))
    return point_segment_distance(p, a, b) <= tol * scale


def polygon_is_convex(pts: Sequence) -> bool:
    pts = [as_vec(p) for p in pts]
    n = len(pts)
    signs = {np.sign(cross(pts[(i + 1) % n] - pts[i], pts[(i + 2) % n] - pts[(i + 1) % n])) for i in range(n)}
    signs.discard(0.0)
    return len(signs) == 1


def min_polygon_angle(pts: Sequence) -> float:
    n = len(pts)
    return min(angle_at(pts[i], pts[i - 1], pts[(i + 1) % n]) for i in range(n))
