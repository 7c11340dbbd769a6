"""Legibility checks: a generated figure is redrawn when it would be hard to read (lesson 01).

:func:`check_legible` rejects slivers, crowded points, near-touches and crossed numbers, all
relative to the figure's extent; :func:`_check_labels` places the letters and rejects a
figure whose letters find no free spot.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import geometry as g
from ..layout import LabelObstacles, annotation_clearances, label_clearances, place_labels
from ..scene import AngleMark, Circle, Polygon, Scene, Segment

MIN_ANGLE_DEG = 20.0  # smallest polygon angle or marked angle: slivers are unreadable at 128 px
MIN_SIDE_FRAC = 0.1  # shortest drawn side, as a fraction of the figure's extent
MIN_POINT_GAP_FRAC = 0.08  # two labelled points closer than this crowd their letters
MIN_POINT_LINE_GAP_FRAC = 0.04  # a point this close to a line it is not on looks like it is on it
ANNOTATION_GAP = 1.2  # angle values and length labels keep this factor of their radii apart
TEXT_STROKE_GAP = 0.75  # a stroke may pass no closer to a number's centre than this many of its radii
NEAR_RIGHT_DEG = 4  # a labelled angle this close to 90° would pass for a right angle in the picture


def check_legible(scene: Scene, obstacles: LabelObstacles | None = None) -> Scene:
    """Raise ``ValueError`` naming the problem if the figure would be hard to read.

    Sizes are relative to the figure's extent (:func:`~mmgeo_utils.diagrams.layout.scene_extent`),
    so the rules hold however the figure is later scaled for drawing. ``obstacles``
    (a :class:`~mmgeo_utils.diagrams.layout.LabelObstacles` of this scene at the default label
    radius) saves deriving the extent and the annotation discs again.

    Every rule is measured for all points (or sides) at once with numpy; the loops
    that remain only find the first offender, so the message names the same problem
    a point-by-point scan would.
    """
    obs = obstacles if obstacles is not None else LabelObstacles(scene)
    ext = obs.extent
    names = list(scene.points)
    xy = np.array([scene.points[k] for k in names], dtype=float).reshape(-1, 2)
    pts = dict(zip(names, xy))
    sides = drawn_sides(scene)
    _check_point_gaps(names, xy, ext)
    _check_sides(names, xy, pts, sides, ext)
    _check_circles_and_angles(scene, names, xy, pts, ext)
    _check_annotations(scene, names, xy, pts, sides, obs.annotations)
    polygons = [el.vertices for el in scene.elements if isinstance(el, Polygon)]
    polygons += [f.args for f in scene.facts if f.kind == "shape"]
    for vs in dict.fromkeys(polygons):  # a polygon and its shape fact often name the same vertices
        if g.min_polygon_angle([pts[v] for v in vs]) < MIN_ANGLE_DEG:
            raise ValueError(f"polygon {''.join(vs)} has an angle under {MIN_ANGLE_DEG}°")
    return scene


def _hypot_to(xy: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distance from each of ``xy`` (n, 2) to the point ``c``, as :func:`geometry.dist` computes it."""
    return np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1])


def _side_gaps(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`geometry.point_segment_distance` from every point of ``p`` (K, 2) to every side a→b (N, 2), (K, N).

    The same formula, elementwise (the dot products as ``x * x' + y * y'``, where the
    scalar version calls ``np.dot``); the rules only compare it with thresholds.
    """
    d = b - a
    L2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    short = L2 < g.EPS  # a side of (almost) zero length is its end point
    rx, ry = p[:, None, 0] - a[None, :, 0], p[:, None, 1] - a[None, :, 1]
    t = (rx * d[None, :, 0] + ry * d[None, :, 1]) / np.where(short, 1.0, L2)
    t = np.minimum(1.0, np.maximum(0.0, t))
    gap = np.hypot(
        p[:, None, 0] - (a[None, :, 0] + t * d[None, :, 0]), p[:, None, 1] - (a[None, :, 1] + t * d[None, :, 1])
    )
    return np.where(short, np.hypot(rx, ry), gap)


@functools.cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` of ``n`` items, in the order a nested loop visits them (cached: scenes reuse a few n)."""
    return np.triu_indices(n, k=1)


def _check_point_gaps(names: list[str], xy: np.ndarray, ext: float) -> None:
    """Two labelled points too close together crowd their letters."""
    i, j = _pairs(len(names))
    close = np.flatnonzero(np.hypot(xy[i, 0] - xy[j, 0], xy[i, 1] - xy[j, 1]) < MIN_POINT_GAP_FRAC * ext)
    if len(close):
        raise ValueError(f"points {names[i[close[0]]]} and {names[j[close[0]]]} are too close")


def _check_sides(names: list[str], xy: np.ndarray, pts: dict, sides: list[tuple[str, str]], ext: float) -> None:
    """No drawn side too short, and no point off a side but nearly on it."""
    if not sides:
        return
    a = np.array([pts[s] for s, _ in sides])
    b = np.array([pts[t] for _, t in sides])
    lengths = np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1])
    gaps = _side_gaps(xy, a, b)
    near = (1e-6 * ext < gaps) & (gaps < MIN_POINT_LINE_GAP_FRAC * ext)
    for k, (s, t) in enumerate(sides):
        if lengths[k] < MIN_SIDE_FRAC * ext:
            raise ValueError(f"side {s}{t} is too short")
        for i in np.flatnonzero(near[:, k]):
            if names[i] not in (s, t):
                raise ValueError(f"point {names[i]} nearly touches {s}{t}")


def _check_circles_and_angles(scene: Scene, names: list[str], xy: np.ndarray, pts: dict, ext: float) -> None:
    """No point nearly on a circle it is not on; no marked angle too small or almost right."""
    for el in scene.elements:
        if isinstance(el, Circle):
            gap = np.abs(_hypot_to(xy, pts[el.center]) - el.radius)
            near = np.flatnonzero((1e-6 * ext < gap) & (gap < MIN_POINT_LINE_GAP_FRAC * ext))
            if len(near):
                raise ValueError(f"point {names[near[0]]} nearly touches the circle at {el.center}")
        if isinstance(el, AngleMark):
            measure = g.angle_at(pts[el.vertex], pts[el.a], pts[el.b])
            if measure < MIN_ANGLE_DEG:
                raise ValueError(f"marked angle {el.a}{el.vertex}{el.b} is too small")
            if el.label and abs(measure - 90) < NEAR_RIGHT_DEG:
                raise ValueError(f"marked angle {el.a}{el.vertex}{el.b} looks like a right angle")


def _check_annotations(
    scene: Scene,
    names: list[str],
    xy: np.ndarray,
    pts: dict,
    sides: list[tuple[str, str]],
    texts: list[tuple[str, np.ndarray, float]],
) -> None:
    """Angle values and length labels cover no point, cross no stroke and keep apart from each other."""
    if not texts:
        return
    circles = [(pts[el.center], el.radius) for el in scene.elements if isinstance(el, Circle)]
    centres = np.array([c for _, c, _ in texts], dtype=float)
    a = np.array([pts[s] for s, _ in sides]).reshape(-1, 2)
    b = np.array([pts[t] for _, t in sides]).reshape(-1, 2)
    side_gaps = _side_gaps(centres, a, b)  # (texts, sides)
    for k, (t, c, rad) in enumerate(texts):
        covered = np.flatnonzero(_hypot_to(xy, c) < rad)
        if len(covered):
            raise ValueError(f"annotation {t!r} would cover point {names[covered[0]]}")
        crossed = np.flatnonzero(side_gaps[k] < TEXT_STROKE_GAP * rad)
        if len(crossed):
            s1, s2 = sides[crossed[0]]
            raise ValueError(f"annotation {t!r} would be crossed by {s1}{s2}")
        for o, r in circles:
            if abs(g.dist(c, o) - r) < TEXT_STROKE_GAP * rad:
                raise ValueError(f"annotation {t!r} would be crossed by a circle")
    for i, (t1, c1, r1) in enumerate(texts):
        for t2, c2, r2 in texts[i + 1 :]:
            if g.dist(c1, c2) < ANNOTATION_GAP * (r1 + r2):
                raise ValueError(f"annotations {t1!r} and {t2!r} would overlap")


def _check_labels(scene: Scene, obstacles: LabelObstacles | None = None) -> Scene:
    """Place the letters, and reject a figure whose letters cannot all sit clear of strokes, letters and numbers.

    The offsets are placed on ``scene`` itself: a scene that passes keeps them, so
    :func:`generate_scene` need not place its labels a second time.
    """
    obs = obstacles if obstacles is not None else LabelObstacles(scene)
    place_labels(scene, obstacles=obs)
    clear, texts = label_clearances(scene, obstacles=obs), annotation_clearances(scene, obstacles=obs)
    worst = min(clear, key=clear.get)
    if clear[worst] <= 0:
        raise ValueError(f"no free spot for the label of {worst}")
    worst = min(texts, key=texts.get)
    if texts[worst] <= 0:
        raise ValueError(f"the label of {worst} would cover a number")
    return scene


def drawn_sides(scene: Scene) -> list[tuple[str, str]]:
    """Every drawn straight stroke between two named points: segments and polygon edges."""
    sides = [(el.a, el.b) for el in scene.elements if isinstance(el, Segment)]
    for el in scene.elements:
        if isinstance(el, Polygon):
            vs = el.vertices
            sides += list(zip(vs, vs[1:] + vs[:1]))
    return sides
