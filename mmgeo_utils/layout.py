"""Where each point's letter goes: label placement without collisions.

A letter drawn across a line or on top of another letter makes a diagram
ambiguous ("is that B or 8?"), and because hard negatives are re-rendered from a
perturbed scene, a layout that depends on the renderer's style would let a model
tell positive from negative by where the letters sit. So labels are placed here,
in scene units, from the geometry alone: each label is approximated by a disc of
``label_radius`` and put, greedily and in a fixed order (most crowded point first),
at the candidate spot around its point that keeps the disc clear of every drawn
stroke (segments, lines, circles, polygon edges), every point and every label
already placed. Marks (angle arcs, right-angle squares, length labels) are soft
obstacles: avoided when possible, never at the price of touching a stroke.
"""

from __future__ import annotations

import math

import numpy as np

from .scene import (AngleMark, Arc, Circle, LengthLabel, Line, Polygon, Ray, RightAngleMark, Scene, Segment)

__all__ = ["place_labels", "label_clearances", "annotation_clearances", "scene_extent", "annotation_discs",
           "DEFAULT_LABEL_RADIUS_FRAC"]

DEFAULT_LABEL_RADIUS_FRAC = 0.055  # a letter's half-size relative to the figure (≈ 5 px of a 128 px image)
OFFSET_STEPS = (1.6, 2.1, 2.7, 3.4)  # label distance from its point, in label radii, nearest first
N_DIRECTIONS = 24  # candidate directions around a point, every 15°
MARK_REACH = 2.2  # how far (in label radii) an angle's arc reaches from its vertex
TEXT_WIDTH_PER_CHAR = 0.7  # a length label's half-width per character, in label radii
LINE_REACH = 3.0  # infinite lines and rays are clipped this many extents from the figure
OFFSET_DECIMALS = 6  # offsets are stored rounded, as Scene.to_json writes them
TIE_DECIMALS = 9  # candidate scores are compared at this precision (relative to the extent)
TIE_EPS = 1e-9


def scene_extent(scene: Scene) -> float:
    """The larger side of the figure's bounding box, circles included: the unit for relative sizes."""
    pts = np.array(list(scene.points.values()), dtype=float)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    for el in scene.elements:
        if isinstance(el, (Circle, Arc)):
            c = np.asarray(scene.points[el.center], dtype=float)
            lo, hi = np.minimum(lo, c - el.radius), np.maximum(hi, c + el.radius)
    ext = float(max(hi - lo))
    return ext if ext > 0 else 1.0


# ----------------------------------------------------------------------------- obstacles


def _stroke_segments(scene: Scene, extent: float) -> np.ndarray:
    """Every straight stroke as an (N, 2, 2) array; lines and rays clipped far outside the figure."""
    xy = {k: np.asarray(v, dtype=float) for k, v in scene.points.items()}
    segs = []
    for el in scene.elements:
        if isinstance(el, Segment):
            segs.append((xy[el.a], xy[el.b]))
        elif isinstance(el, (Line, Ray)):
            a, b = xy[el.a], xy[el.b]
            u = (b - a) / np.linalg.norm(b - a)
            far = LINE_REACH * extent
            segs.append((a - far * u if isinstance(el, Line) else a, a + far * u))
        elif isinstance(el, Polygon):
            vs = el.vertices
            segs += [(xy[p], xy[q]) for p, q in zip(vs, vs[1:] + vs[:1])]
    return np.array(segs, dtype=float).reshape(-1, 2, 2)


def _circles(scene: Scene) -> np.ndarray:
    """Circles (and arcs, conservatively as whole circles) as (M, 3): centre x, y, radius."""
    rows = [(*scene.points[el.center], el.radius) for el in scene.elements if isinstance(el, (Circle, Arc))]
    return np.array(rows, dtype=float).reshape(-1, 3)


def _owner_centre(scene: Scene, a: str, b: str, fallback: np.ndarray) -> np.ndarray:
    """The centre of the polygon that has AB as a side, else of the figure (length labels go outside it)."""
    for el in scene.elements:
        if isinstance(el, Polygon):
            vs = el.vertices
            if {a, b} in [{p, q} for p, q in zip(vs, vs[1:] + vs[:1])]:
                return np.mean([scene.points[v] for v in vs], axis=0)
    return fallback


def _marks(scene: Scene, radius: float) -> list[tuple[str | None, np.ndarray, float]]:
    """Marks as discs ``(text, centre, radius)``: angle arcs with their values, right-angle squares,
    length labels (``text`` is None for a mark without one)."""
    xy = {k: np.asarray(v, dtype=float) for k, v in scene.points.items()}
    centroid = np.mean([xy[k] for k in sorted(xy)], axis=0)
    out: list[tuple[str | None, np.ndarray, float]] = []
    for el in scene.elements:
        if isinstance(el, (AngleMark, RightAngleMark)):
            v = xy[el.vertex]
            u1, u2 = (xy[el.a] - v), (xy[el.b] - v)
            bis = u1 / np.linalg.norm(u1) + u2 / np.linalg.norm(u2)
            n = np.linalg.norm(bis)
            if n > 1e-9:
                label = el.label if isinstance(el, AngleMark) else None
                out.append((label, *_angle_text_disc(v, bis / n, _angle_between(u1, u2), label, radius)))
        elif isinstance(el, LengthLabel):
            a, b = xy[el.a], xy[el.b]
            mid, u = (a + b) / 2, (b - a) / np.linalg.norm(b - a)
            n = np.array([-u[1], u[0]])
            if np.dot(mid - _owner_centre(scene, el.a, el.b, centroid), n) < 0:
                n = -n
            tr = _text_radius(el.text, radius)
            out.append((el.text, mid + (radius + tr) * n, tr))
    return out


def _angle_between(u: np.ndarray, w: np.ndarray) -> float:
    c = float(np.dot(u, w) / (np.linalg.norm(u) * np.linalg.norm(w)))
    return math.acos(max(-1.0, min(1.0, c)))


def _text_radius(text: str, radius: float) -> float:
    return radius * max(1.0, TEXT_WIDTH_PER_CHAR * len(text))


def _angle_text_disc(v: np.ndarray, bis: np.ndarray, angle: float, label: str | None,
                     radius: float) -> tuple[np.ndarray, float]:
    """Where a mark's arc and value sit: out along the bisector, further for a narrow angle.

    Mirrors how textbooks (and our renderer) place an angle's value: past the arc,
    and far enough from the vertex to fit between the arms.
    """
    if not label:
        return v + MARK_REACH * radius * bis, radius
    tr = _text_radius(label, radius)
    reach = max(MARK_REACH * radius + tr, tr / math.sin(max(angle / 2, 1e-3)))
    return v + reach * bis, tr


def annotation_discs(scene: Scene, label_radius: float | None = None) -> list[tuple[str, np.ndarray, float]]:
    """Where angle values and length labels will be written: ``(text, centre, radius)`` each.

    Generators use this to reject figures whose annotations would overlap each other.
    """
    return [m for m in _marks(scene, _default_radius(scene, label_radius)) if m[0]]


def _mark_discs(scene: Scene, radius: float) -> np.ndarray:
    """Soft obstacles as a (K, 3) array: centre x, y and radius of every mark."""
    return np.array([(*c, rad) for _, c, rad in _marks(scene, radius)], dtype=float).reshape(-1, 3)


def _soft_clearance(p: np.ndarray, discs: np.ndarray, r: float) -> np.ndarray:
    """Gap between label discs centred at ``p`` (K, 2) and the nearest mark disc, (K,)."""
    if len(discs) == 0:
        return np.full(len(p), np.inf)
    d = np.linalg.norm(p[:, None, :] - discs[None, :, :2], axis=2) - discs[None, :, 2] - r
    return d.min(axis=1)


def _dist_to_segments(p: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Distance from each of ``p`` (K, 2) to the nearest segment of ``segs`` (N, 2, 2), (K,)."""
    if len(segs) == 0:
        return np.full(len(p), np.inf)
    a, d = segs[None, :, 0], (segs[:, 1] - segs[:, 0])[None]
    L2 = np.maximum((d * d).sum(axis=2), 1e-18)
    t = np.clip(((p[:, None] - a) * d).sum(axis=2) / L2, 0.0, 1.0)
    return np.linalg.norm(a + t[..., None] * d - p[:, None], axis=2).min(axis=1)


def _dist_to_circles(p: np.ndarray, circles: np.ndarray) -> np.ndarray:
    if len(circles) == 0:
        return np.full(len(p), np.inf)
    return np.abs(np.linalg.norm(p[:, None] - circles[None, :, :2], axis=2) - circles[None, :, 2]).min(axis=1)


def _dist_to_points(p: np.ndarray, pts: np.ndarray) -> np.ndarray:
    if len(pts) == 0:
        return np.full(len(p), np.inf)
    return np.linalg.norm(p[:, None] - pts[None], axis=2).min(axis=1)


def _hard_clearance(p: np.ndarray, segs, circles, points, labels, r: float) -> np.ndarray:
    """Gap between label discs at ``p`` (K, 2) and the nearest stroke, point or placed label (>0: no overlap)."""
    return np.minimum.reduce([_dist_to_segments(p, segs) - r, _dist_to_circles(p, circles) - r,
                              _dist_to_points(p, points) - r, _dist_to_points(p, labels) - 2 * r])


# ----------------------------------------------------------------------------- placement


def _default_radius(scene: Scene, label_radius: float | None) -> float:
    return DEFAULT_LABEL_RADIUS_FRAC * scene_extent(scene) if label_radius is None else float(label_radius)


def _crowding_order(scene: Scene, segs: np.ndarray) -> list[str]:
    """Most crowded points first (they have the fewest free directions), ties by name."""
    def degree(name: str) -> int:
        p = np.asarray(scene.points[name], dtype=float)
        ends = np.concatenate([segs[:, 0], segs[:, 1]]) if len(segs) else np.zeros((0, 2))
        return int(np.sum(np.hypot(*(ends - p).T) < 1e-9))
    return sorted(scene.points, key=lambda n: (-degree(n), n))


def place_labels(scene: Scene, *, label_radius: float | None = None) -> Scene:
    """Fill ``scene.label_offsets`` (label centre minus point, scene units) for every point.

    Greedy and deterministic: the same scene always gets the same offsets. Each
    label takes the nearest ring of candidates where its disc touches nothing (the
    roomiest spot on that ring, ties broken towards the outside of the figure); if no
    spot is free of strokes, the spot with the largest clearance.
    """
    r = _default_radius(scene, label_radius)
    extent = scene_extent(scene)
    segs, circles = _stroke_segments(scene, extent), _circles(scene)
    points = np.array([scene.points[k] for k in sorted(scene.points)], dtype=float)  # order-free
    marks = _mark_discs(scene, r)
    centre = points.mean(axis=0)
    angles = 2 * math.pi * np.arange(N_DIRECTIONS) / N_DIRECTIONS
    dirs = np.column_stack([np.cos(angles), np.sin(angles)])
    placed: list[np.ndarray] = []
    offsets: dict[str, tuple[float, float]] = {}
    for name in _crowding_order(scene, segs):
        p = np.asarray(scene.points[name], dtype=float)
        out = p - centre  # "outside the figure"; a point at the centre has no outside: prefer up
        out = out / np.linalg.norm(out) if np.linalg.norm(out) > TIE_EPS * extent else np.array([0.0, 1.0])
        labels = np.array(placed).reshape(-1, 2)
        steps = np.repeat(np.arange(len(OFFSET_STEPS)), N_DIRECTIONS)
        cand = p + r * np.asarray(OFFSET_STEPS)[steps, None] * np.tile(dirs, (len(OFFSET_STEPS), 1))
        hard = _hard_clearance(cand, segs, circles, points, labels, r)
        soft = _soft_clearance(cand, marks, r)
        outward = np.tile(dirs @ out, len(OFFSET_STEPS))
        # rounding makes ties (symmetric figures) break the same way whatever the float noise
        hard, soft, outward = (np.round(x / extent, TIE_DECIMALS) for x in (hard, soft, outward * extent))
        keys = [(bool(h > 0 and s > 0), bool(h > 0), -int(i) if h > 0 else float(h), float(min(h, s, r / extent)),
                 float(o)) for h, s, i, o in zip(hard, soft, steps, outward)]
        best = cand[max(range(len(keys)), key=keys.__getitem__)]
        placed.append(best)
        off = best - p
        offsets[name] = (round(float(off[0]), OFFSET_DECIMALS), round(float(off[1]), OFFSET_DECIMALS))
    scene.label_offsets = {k: offsets[k] for k in scene.points}
    return scene


def label_clearances(scene: Scene, label_radius: float | None = None) -> dict[str, float]:
    """For each placed label, the gap between its disc and the nearest stroke, point or other label.

    Positive everywhere means no letter touches a line, a dot or another letter
    (under the disc approximation). Points without a placed label are skipped.
    """
    r = _default_radius(scene, label_radius)
    extent = scene_extent(scene)
    segs, circles = _stroke_segments(scene, extent), _circles(scene)
    points = np.array([scene.points[k] for k in sorted(scene.points)], dtype=float)  # order-free
    centres = {k: np.asarray(scene.points[k], dtype=float) + np.asarray(off, dtype=float)
               for k, off in scene.label_offsets.items() if k in scene.points}
    out = {}
    for name, c in centres.items():
        others = np.array([v for k, v in centres.items() if k != name]).reshape(-1, 2)
        out[name] = float(_hard_clearance(c[None], segs, circles, points, others, r)[0])
    return out


def annotation_clearances(scene: Scene, label_radius: float | None = None) -> dict[str, float]:
    """For each placed label, the gap between its disc and the nearest angle value or length label.

    Negative means a point's letter would be printed over a number: the figure
    generators redraw such scenes.
    """
    r = _default_radius(scene, label_radius)
    texts = np.array([(*c, rad) for _, c, rad in annotation_discs(scene, r)], dtype=float).reshape(-1, 3)
    return {k: float(_soft_clearance((np.asarray(scene.points[k], dtype=float) + np.asarray(off))[None], texts, r)[0])
            for k, off in scene.label_offsets.items() if k in scene.points}
