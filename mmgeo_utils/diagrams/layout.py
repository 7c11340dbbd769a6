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

import functools
import math
from collections.abc import Collection

import numpy as np

from .scene import AngleMark, Arc, Circle, LengthLabel, Line, Polygon, Ray, RightAngleMark, Scene, Segment

__all__ = [
    "place_labels",
    "label_clearances",
    "annotation_clearances",
    "scene_extent",
    "annotation_discs",
    "layout_centroid",
    "layout_constants",
    "length_label_normal",
    "LabelObstacles",
    "DEFAULT_LABEL_RADIUS_FRAC",
]

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


def layout_centroid(scene: Scene) -> np.ndarray:
    """The mean of all points, summed in name order: what a length label on a side of no polygon moves away from.

    A hard negative is laid out with its *positive's* centroid (``centroid=`` of :class:`LabelObstacles`,
    :func:`annotation_discs` and the renderer's ``frame_of``): a point the edit adds or moves must not
    turn an untouched length label to the other side of its segment.
    """
    xy = scene.points
    return np.mean([np.asarray(xy[k], dtype=float) for k in sorted(xy)], axis=0)


def length_label_normal(scene: Scene, a: str, b: str, centroid: np.ndarray, extent: float) -> np.ndarray:
    """The unit normal of segment AB (scene units) on whose side its length label is written.

    Away from the centre of the polygon that has AB as a side, else from ``centroid``. When that centre
    lies on the segment's line (a diagonal through the centroid), the side would be decided by float
    noise, which differs with the order points are summed in and between CPUs: then the normal that
    points up (then right) is taken, a rule that does not depend on point names.
    """
    pa, pb = np.asarray(scene.points[a], dtype=float), np.asarray(scene.points[b], dtype=float)
    u = (pb - pa) / _norm(pb - pa)
    n = np.array([-u[1], u[0]])
    side = float(np.dot((pa + pb) / 2 - _owner_centre(scene, a, b, centroid), n))
    if abs(side) <= TIE_EPS * extent:
        return n if (n[1], n[0]) > (0.0, 0.0) else -n
    return n if side > 0 else -n


def _marks(
    scene: Scene, radius: float, centroid: np.ndarray | None = None, extent: float | None = None
) -> list[tuple[str | None, np.ndarray, float]]:
    """Marks as discs ``(text, centre, radius)``: angle arcs with their values, right-angle squares,
    length labels (``text`` is None for a mark without one). ``centroid``: see :func:`layout_centroid`;
    it and ``extent`` (:func:`scene_extent`) are computed here only if a length label needs them."""
    xy = {k: np.asarray(v, dtype=float) for k, v in scene.points.items()}
    out: list[tuple[str | None, np.ndarray, float]] = []
    for el in scene.elements:
        if isinstance(el, (AngleMark, RightAngleMark)):
            v = xy[el.vertex]
            u1, u2 = (xy[el.a] - v), (xy[el.b] - v)
            bis = u1 / _norm(u1) + u2 / _norm(u2)
            n = _norm(bis)
            if n > 1e-9:
                label = el.label if isinstance(el, AngleMark) else None
                out.append((label, *_angle_text_disc(v, bis / n, _angle_between(u1, u2), label, radius)))
        elif isinstance(el, LengthLabel):
            if centroid is None:
                centroid = layout_centroid(scene)
            if extent is None:
                extent = scene_extent(scene)
            n = length_label_normal(scene, el.a, el.b, centroid, extent)
            tr = _text_radius(el.text, radius)
            out.append((el.text, (xy[el.a] + xy[el.b]) / 2 + (radius + tr) * n, tr))
    return out


def _norm(v: np.ndarray) -> float:
    """``np.linalg.norm`` of a 1-D vector, bit for bit (it computes ``sqrt(v.dot(v))``), without its overhead."""
    return math.sqrt(v.dot(v))


def _angle_between(u: np.ndarray, w: np.ndarray) -> float:
    c = float(np.dot(u, w) / (_norm(u) * _norm(w)))
    return math.acos(max(-1.0, min(1.0, c)))


def _text_radius(text: str, radius: float) -> float:
    return radius * max(1.0, TEXT_WIDTH_PER_CHAR * len(text))


def _angle_text_disc(
    v: np.ndarray, bis: np.ndarray, angle: float, label: str | None, radius: float
) -> tuple[np.ndarray, float]:
    """Where a mark's arc and value sit: out along the bisector, further for a narrow angle.

    Mirrors how textbooks (and our renderer) place an angle's value: past the arc,
    and far enough from the vertex to fit between the arms.
    """
    if not label:
        return v + MARK_REACH * radius * bis, radius
    tr = _text_radius(label, radius)
    reach = max(MARK_REACH * radius + tr, tr / math.sin(max(angle / 2, 1e-3)))
    return v + reach * bis, tr


def annotation_discs(
    scene: Scene, label_radius: float | None = None, centroid: np.ndarray | None = None
) -> list[tuple[str, np.ndarray, float]]:
    """Where angle values and length labels will be written: ``(text, centre, radius)`` each.

    Generators use this to reject figures whose annotations would overlap each other. A hard negative
    passes its positive's ``label_radius`` and ``centroid`` (:func:`layout_constants`).
    """
    return [m for m in _marks(scene, _default_radius(scene, label_radius), centroid) if m[0]]


def _discs(marks: list[tuple[str | None, np.ndarray, float]]) -> np.ndarray:
    """Marks as a (K, 3) array: centre x, y and radius of each."""
    return np.array([(*c, rad) for _, c, rad in marks], dtype=float).reshape(-1, 3)


class LabelObstacles:
    """Everything a scene's letters must keep clear of, derived once per scene (scene units).

    Checking a figure's legibility, placing its labels and measuring their clearances
    all need the same strokes, points and mark discs; deriving them once and passing
    this object along, instead of once per call, is most of what makes scene
    generation fast. Each part is computed on first use and then kept, so a figure
    rejected early (say, for crowded annotations) never pays for the rest. The parts
    depend only on the points and elements, not on the label offsets: make a new
    object if the geometry changes.

    A hard negative is laid out with its positive's constants, ``label_radius`` and ``centroid``
    (:func:`layout_constants` of the positive), so that what the edit did not touch stays where it was;
    ``extent`` stays the scene's own (the legibility rules measure the figure that is drawn).
    """

    def __init__(self, scene: Scene, label_radius: float | None = None, centroid: np.ndarray | None = None):
        self.scene = scene
        self.extent = scene_extent(scene)
        self.radius = DEFAULT_LABEL_RADIUS_FRAC * self.extent if label_radius is None else float(label_radius)
        self.centroid = centroid

    @functools.cached_property
    def marks(self) -> list[tuple[str | None, np.ndarray, float]]:
        """``(text or None, centre, radius)`` of every mark, in element order (see :func:`_marks`)."""
        return _marks(self.scene, self.radius, self.centroid, self.extent)

    @property
    def annotations(self) -> list[tuple[str, np.ndarray, float]]:
        """The marks that carry a number, as :func:`annotation_discs` returns them."""
        return [m for m in self.marks if m[0]]

    @functools.cached_property
    def segments(self) -> np.ndarray:
        """(N, 2, 2) straight strokes, lines and rays clipped."""
        return _stroke_segments(self.scene, self.extent)

    @functools.cached_property
    def circles(self) -> np.ndarray:
        """(M, 3) centre x, y and radius of every circle or arc."""
        return _circles(self.scene)

    @functools.cached_property
    def points(self) -> np.ndarray:
        """(P, 2) every point, sorted by name (order-free)."""
        return np.array([self.scene.points[k] for k in sorted(self.scene.points)], dtype=float).reshape(-1, 2)

    @functools.cached_property
    def mark_discs(self) -> np.ndarray:
        """(K, 3) every mark: the soft obstacles."""
        return _discs(self.marks)

    @functools.cached_property
    def text_discs(self) -> np.ndarray:
        """(T, 3) the marks that carry a number."""
        return _discs(self.annotations)


# The distance helpers below lay arrays out obstacle-major, (obstacles, candidates), and
# reduce over axis 0: numpy's min over a short *last* axis is about ten times slower than
# this elementwise minimum down the rows. Ufuncs are called directly, since on arrays this
# small the Python wrappers of ``np.clip`` or ``ndarray.min`` cost more than the work.
# ``sqrt(dx * dx + dy * dy)`` is bit for bit what ``np.linalg.norm(..., axis=-1)``
# computes for 2-vectors (the squares, summed, then sqrt), so offsets do not change.


def _dists(p: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Distance from every centre (N, 2+) to every point of ``p`` (K, 2), as an (N, K) array."""
    dx = p[:, 0] - centres[:, 0:1]
    dy = p[:, 1] - centres[:, 1:2]
    return np.sqrt(dx * dx + dy * dy)


def _soft_clearance(p: np.ndarray, discs: np.ndarray, r: float) -> np.ndarray:
    """Gap between label discs centred at ``p`` (K, 2) and the nearest mark disc, (K,)."""
    if len(discs) == 0:
        return np.full(len(p), np.inf)
    return np.minimum.reduce(_dists(p, discs) - discs[:, 2:3] - r, axis=0)


def _dist_to_segments(p: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Distance from each of ``p`` (K, 2) to the nearest segment of ``segs`` (N, 2, 2), (K,)."""
    if len(segs) == 0:
        return np.full(len(p), np.inf)
    px, py = p[:, 0], p[:, 1]
    ax, ay = segs[:, 0, 0:1], segs[:, 0, 1:2]  # (N, 1): one row per segment
    dx, dy = segs[:, 1, 0:1] - ax, segs[:, 1, 1:2] - ay
    L2 = np.maximum(dx * dx + dy * dy, 1e-18)
    t = np.minimum(np.maximum(((px - ax) * dx + (py - ay) * dy) / L2, 0.0), 1.0)  # nearest point on each, 0..1
    ex, ey = ax + t * dx - px, ay + t * dy - py
    return np.minimum.reduce(np.sqrt(ex * ex + ey * ey), axis=0)


def _dist_to_circles(p: np.ndarray, circles: np.ndarray) -> np.ndarray:
    if len(circles) == 0:
        return np.full(len(p), np.inf)
    return np.minimum.reduce(np.abs(_dists(p, circles) - circles[:, 2:3]), axis=0)


def _dist_to_points(p: np.ndarray, pts: np.ndarray) -> np.ndarray:
    if len(pts) == 0:
        return np.full(len(p), np.inf)
    return np.minimum.reduce(_dists(p, pts), axis=0)


def _fixed_clearance(p: np.ndarray, obs: LabelObstacles) -> np.ndarray:
    """Gap between label discs at ``p`` (K, 2) and the nearest stroke or point (>0: no overlap), (K,).

    The part of the hard clearance that does not depend on where other labels went,
    so it is measured for every candidate of every point in one batch.
    """
    r = obs.radius
    return np.minimum(
        np.minimum(_dist_to_segments(p, obs.segments) - r, _dist_to_circles(p, obs.circles) - r),
        _dist_to_points(p, obs.points) - r,
    )


# ----------------------------------------------------------------------------- placement


def _default_radius(scene: Scene, label_radius: float | None) -> float:
    return DEFAULT_LABEL_RADIUS_FRAC * scene_extent(scene) if label_radius is None else float(label_radius)


def layout_constants(scene: Scene) -> dict[str, object]:
    """The constants a scene's layout was made with, as keywords of :class:`LabelObstacles` and
    :func:`annotation_discs`: its label radius and its :func:`layout_centroid`. A hard negative is laid
    out with its positive's, so an edit moves only what it edits."""
    return {"label_radius": _default_radius(scene, None), "centroid": layout_centroid(scene)}


# The candidate ring, the same for every point: OFFSET_STEPS × N_DIRECTIONS spots, nearest ring first.
_ANGLES = 2 * math.pi * np.arange(N_DIRECTIONS) / N_DIRECTIONS
_DIRS = np.column_stack([np.cos(_ANGLES), np.sin(_ANGLES)])  # (N_DIRECTIONS, 2) unit vectors
_RING_INDEX = np.repeat(np.arange(len(OFFSET_STEPS)), N_DIRECTIONS)  # which ring each candidate is on
_RING_STEPS = np.asarray(OFFSET_STEPS)[_RING_INDEX, None]  # (C, 1), in label radii
_RING_DIR_INDEX = np.tile(np.arange(N_DIRECTIONS), len(OFFSET_STEPS))  # which direction each candidate takes
_RING_DIRS = _DIRS[_RING_DIR_INDEX]  # (C, 2)


def _crowding_order(scene: Scene, segs: np.ndarray) -> list[str]:
    """Most crowded points first (they have the fewest free directions), ties by name.

    A point's crowding is how many stroke ends sit on it, counted for all points at once.
    """
    names = list(scene.points)
    pts = np.array([scene.points[n] for n in names], dtype=float).reshape(-1, 2)
    ends = segs.reshape(-1, 2)
    near = np.hypot(ends[None, :, 0] - pts[:, None, 0], ends[None, :, 1] - pts[:, None, 1]) < 1e-9
    degree = dict(zip(names, near.sum(axis=1).tolist()))
    return sorted(names, key=lambda n: (-degree[n], n))


def _best_candidate(hard: np.ndarray, soft: np.ndarray, out: np.ndarray, cap: float, extent: float) -> int:
    """Index of the best candidate, the first with the largest key; ``hard``, ``soft`` rounded, (C,).

    Keys, compared in order: free of everything; free of strokes; nearest ring (when
    free of strokes) or largest stroke clearance (when not); roomiest, up to ``cap``;
    most outward (along the unit vector ``out``). This is ``max(range(C), key=keys)``
    without building C Python tuples: the first three keys only pick a pool (the
    nearest ring with a free spot, else the spots of largest clearance), and the last
    two are compared within the pool, keeping ties, until one candidate is left.
    """
    free = hard > 0
    for pool in (free & (soft > 0), free):
        if pool.any():
            idx = pool.nonzero()[0]  # candidates are ordered ring by ring, nearest first
            idx = idx[_RING_INDEX[idx] == _RING_INDEX[idx[0]]]
            break
    else:
        idx = (hard == hard.max()).nonzero()[0]
    if len(idx) > 1:
        roomy = np.minimum(np.minimum(hard[idx], soft[idx]), cap)
        idx = idx[roomy == roomy.max()]
    if len(idx) > 1:  # rounded like the clearances (× extent / extent keeps the historical arithmetic)
        outward = ((_DIRS @ out) * extent / extent).round(TIE_DECIMALS)[_RING_DIR_INDEX[idx]]
        idx = idx[outward == outward.max()]
    return int(idx[0])


def place_labels(
    scene: Scene,
    *,
    label_radius: float | None = None,
    obstacles: LabelObstacles | None = None,
    only: Collection[str] | None = None,
) -> Scene:
    """Fill ``scene.label_offsets`` (label centre minus point, scene units) for every point.

    Greedy and deterministic: the same scene always gets the same offsets. Each
    label takes the nearest ring of candidates where its disc touches nothing (the
    roomiest spot on that ring, ties broken towards the outside of the figure); if no
    spot is free of strokes, the spot with the largest clearance. ``obstacles``
    (a :class:`LabelObstacles` of this scene) saves deriving them again.

    ``only`` places just those letters and keeps every other letter at its stored offset, as an
    obstacle the placed ones avoid: a hard negative moves only the letters its edit displaced.
    """
    obs = obstacles if obstacles is not None else LabelObstacles(scene, label_radius)
    r, extent = obs.radius, obs.extent
    order = _crowding_order(scene, obs.segments)
    if only is not None:
        kept = [k for k in scene.points if k not in only]
        missing = [k for k in kept if k not in scene.label_offsets]
        if missing:
            raise ValueError(f"cannot keep the letters {', '.join(missing)}: they have no placed offset")
        order = [k for k in order if k in only]
    else:
        kept = []
    anchors = np.array([scene.points[k] for k in order], dtype=float).reshape(-1, 2)
    # Every candidate of every point at once, (n, C, 2); only the clearance to labels placed
    # earlier depends on the greedy order, so strokes, points and marks are measured in one batch.
    cands = anchors[:, None, :] + (r * _RING_STEPS) * _RING_DIRS
    flat = cands.reshape(-1, 2)
    fixed = _fixed_clearance(flat, obs).reshape(len(order), -1)
    # rounding makes ties (symmetric figures) break the same way whatever the float noise
    soft = (_soft_clearance(flat, obs.mark_discs, r) / extent).round(TIE_DECIMALS).reshape(len(order), -1)
    centre = obs.points.mean(axis=0)
    # label centres: the kept ones, then the placed ones in placement order
    placed = np.empty((len(kept) + len(order), 2))
    for i, k in enumerate(kept):
        placed[i] = np.asarray(scene.points[k], dtype=float) + scene.label_offsets[k]
    offsets: dict[str, tuple[float, float]] = {}
    for i, (name, p, cand, fixed_p, soft_p) in enumerate(zip(order, anchors, cands, fixed, soft), start=len(kept)):
        out = p - centre  # "outside the figure"; a point at the centre has no outside: prefer up
        norm = _norm(out)
        out = out / norm if norm > TIE_EPS * extent else np.array([0.0, 1.0])
        hard = (np.minimum(fixed_p, _dist_to_points(cand, placed[:i]) - 2 * r) / extent).round(TIE_DECIMALS)
        best = cand[_best_candidate(hard, soft_p, out, r / extent, extent)]
        placed[i] = best
        off = best - p
        offsets[name] = (round(float(off[0]), OFFSET_DECIMALS), round(float(off[1]), OFFSET_DECIMALS))
    scene.label_offsets = {k: offsets[k] if k in offsets else scene.label_offsets[k] for k in scene.points}
    return scene


def _label_centres(scene: Scene) -> tuple[list[str], np.ndarray]:
    """Names of the placed labels and their centres (point + stored offset), (n, 2)."""
    names = [k for k in scene.label_offsets if k in scene.points]
    centres = [
        np.asarray(scene.points[k], dtype=float) + np.asarray(scene.label_offsets[k], dtype=float) for k in names
    ]
    return names, np.array(centres, dtype=float).reshape(-1, 2)


def label_clearances(
    scene: Scene, label_radius: float | None = None, *, obstacles: LabelObstacles | None = None
) -> dict[str, float]:
    """For each placed label, the gap between its disc and the nearest stroke, point or other label.

    Positive everywhere means no letter touches a line, a dot or another letter
    (under the disc approximation). Points without a placed label are skipped.
    """
    obs = obstacles if obstacles is not None else LabelObstacles(scene, label_radius)
    names, centres = _label_centres(scene)
    if not names:
        return {}
    pair = _dists(centres, centres)  # label to label, all pairs at once
    np.fill_diagonal(pair, np.inf)  # a label is not its own obstacle
    clear = np.minimum(_fixed_clearance(centres, obs), np.minimum.reduce(pair, axis=0) - 2 * obs.radius)
    return dict(zip(names, clear.tolist()))


def annotation_clearances(
    scene: Scene, label_radius: float | None = None, *, obstacles: LabelObstacles | None = None
) -> dict[str, float]:
    """For each placed label, the gap between its disc and the nearest angle value or length label.

    Negative means a point's letter would be printed over a number: the figure
    generators redraw such scenes.
    """
    obs = obstacles if obstacles is not None else LabelObstacles(scene, label_radius)
    names, centres = _label_centres(scene)
    return dict(zip(names, _soft_clearance(centres, obs.text_discs, obs.radius).tolist()))
