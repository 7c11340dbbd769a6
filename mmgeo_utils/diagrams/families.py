"""Problem families: random but valid geometry diagrams with exact facts.

Each family is a small program that draws a few integers (a Pythagorean triple, an
angle in whole degrees, a ratio) and *constructs* every other point with
:mod:`mmgeo_utils.diagrams.geometry` (feet of perpendiculars, midpoints, tangent points,
bisector feet), so that every fact it states is true of the coordinates, not
approximately true. Three choices make the data useful for contrastive learning:

* **Nice numbers, drawn to scale.** A stated length is an integer or has one
  decimal and equals ``scene.unit × |AB|``; a stated angle is a whole number of
  degrees and is the angle you would measure. Which of the true facts are *shown*
  (a length label, an angle value, a similarity) is drawn from the seed, so two
  scenes of one family differ in many facts and the hidden ones become questions.
* **Legible figures.** A draw that would give a sliver triangle, a side shorter
  than :data:`MIN_SIDE_FRAC` of the figure or two points on top of each other is
  rejected and redrawn from the same generator, so a seed always gives one
  well-formed scene (:func:`check_legible`).
* **Letters carry no signal.** Letters come from a random stretch of the alphabet
  and roles are permuted, so a model cannot learn that "C" is the right angle.

Marks follow the facts (:class:`_Draft` adds both at once): a right-angle square
for every right angle, a labelled arc for every stated angle, matching tick marks
for equal segments, matching arrows for parallels, a length label for every stated
length, dashed strokes for auxiliary lines.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import geometry as g
from .facts import check_scene_facts, shape_name
from .layout import LabelObstacles, annotation_clearances, label_clearances, place_labels
from .scene import (
    AngleMark,
    Circle,
    EqualTicks,
    Fact,
    LengthLabel,
    ParallelArrows,
    Polygon,
    RightAngleMark,
    Scene,
    Segment,
    validate_scene,
)

__all__ = [
    "FAMILIES",
    "generate_scene",
    "sample_scene",
    "check_legible",
    "MIN_ANGLE_DEG",
    "MIN_SIDE_FRAC",
    "MIN_POINT_GAP_FRAC",
    "MIN_POINT_LINE_GAP_FRAC",
    "SCENE_SIZE",
]

# ----------------------------------------------------------------------------- constants

MIN_ANGLE_DEG = 20.0  # smallest polygon angle or marked angle: slivers are unreadable at 128 px
MIN_SIDE_FRAC = 0.1  # shortest drawn side, as a fraction of the figure's extent
MIN_POINT_GAP_FRAC = 0.08  # two labelled points closer than this crowd their letters
MIN_POINT_LINE_GAP_FRAC = 0.04  # a point this close to a line it is not on looks like it is on it
SCENE_SIZE = 10.0  # coordinates are scaled so the figure's extent is this many units
MAX_DRAWS = 200  # a family that cannot draw a legible figure this often has a bug
MIN_FACTS = 5  # a caption must state several facts, so that negatives can differ in one of them
NICE_TOL = 1e-6  # a length within this of one decimal is "nice" (constructions are exact)
ROTATE_P = 0.5  # how often a figure is turned by a random angle (else its base is level)
CONVENTIONAL_P = 0.4  # how often a foot/midpoint takes its textbook letter (H, M)
BISECTOR_ARCS = 2  # equal halves of a bisected angle carry double arcs
ANNOTATION_GAP = 1.2  # angle values and length labels keep this factor of their radii apart
TEXT_STROKE_GAP = 0.75  # a stroke may pass no closer to a number's centre than this many of its radii
NEAR_RIGHT_DEG = 4  # a labelled angle this close to 90° would pass for a right angle in the picture

# Letters: no I (reads as 1 or l) and no O (reserved for circle centres).
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"
CLASSIC_STARTS = ("A", "A", "P", "K", "D")  # weighted: textbooks start at A most often
CLASSIC_START_P = 0.5

# Pythagorean triples and the scales they are drawn at: right angles with nice sides.
TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (20, 21, 29))
TRIPLE_SCALES = {(3, 4, 5): (0.5, 1, 1.5, 2, 3), (5, 12, 13): (0.5, 1, 2), (8, 15, 17): (0.5, 1), (20, 21, 29): (0.5,)}
RATIOS = ((1, 2), (1, 3), (2, 3), (2, 5), (3, 5), (3, 4), (1, 4))  # DE ∥ BC division ratios AD:AB


class _Reject(Exception):
    """The random draw gave a degenerate or illegible figure: draw again."""


# ----------------------------------------------------------------------------- numbers and letters


def is_nice(value: float, tol: float = NICE_TOL) -> bool:
    """An integer or a number with one decimal (what a textbook would print), within ``tol``."""
    return abs(value * 10 - round(value * 10)) <= tol * 10


def nice_value(value: float) -> int | float:
    """The printed form of a nice number: ``6`` rather than ``6.0``."""
    v = round(value, 1)
    return int(v) if float(v).is_integer() else v


def _letters(rng: np.random.Generator, n: int, conventional: dict[int, str] | None = None) -> list[str]:
    """``n`` distinct letters: a consecutive stretch of :data:`ALPHABET` from a random start.

    ``conventional`` maps a role index to its textbook letter (H for a foot, M for a
    midpoint), used now and then when that letter is free.
    """
    if rng.random() < CLASSIC_START_P:
        start = ALPHABET.index(CLASSIC_STARTS[int(rng.integers(len(CLASSIC_STARTS)))])
        start = min(start, len(ALPHABET) - n)
    else:
        start = int(rng.integers(0, len(ALPHABET) - n + 1))
    block = list(ALPHABET[start : start + n])
    for i, letter in (conventional or {}).items():
        if letter not in block and rng.random() < CONVENTIONAL_P:
            block[i] = letter
    return block


def _shuffled(rng: np.random.Generator, names: Sequence[str]) -> list[str]:
    """The same letters in a random role order, so no role is tied to a letter."""
    return [names[i] for i in rng.permutation(len(names))]


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _triple(rng: np.random.Generator) -> tuple[float, float, float]:
    """A scaled Pythagorean triple (leg, leg, hypotenuse), legs in random order."""
    t = _pick(rng, TRIPLES)
    k = _pick(rng, TRIPLE_SCALES[t])
    a, b, c = (k * x for x in t)
    return (a, b, c) if rng.random() < 0.5 else (b, a, c)


def _subset(rng: np.random.Generator, items: Sequence, lo: int, hi: int) -> list:
    """Between ``lo`` and ``hi`` of ``items`` (in their order): which optional facts are shown."""
    hi = min(hi, len(items))
    k = int(rng.integers(min(lo, hi), hi + 1))
    idx = sorted(rng.choice(len(items), size=k, replace=False).tolist())
    return [items[i] for i in idx]


# ----------------------------------------------------------------------------- the draft


def _segment_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass
class _Draft:
    """A scene under construction in *true* units (coordinates equal the stated lengths).

    Each fact method also adds the marks that show the fact, so facts and marks
    cannot drift apart. :meth:`finish` poses the figure (rotation, mirror, scale)
    and numbers the tick and arrow groups.
    """

    family: str
    points: dict[str, np.ndarray] = field(default_factory=dict)
    elements: list = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    ticks: list[tuple[str, str]] = field(default_factory=list)
    arrows: list[tuple[str, str]] = field(default_factory=list)
    circles: list[tuple[str, float]] = field(default_factory=list)
    fact_keys: set[tuple] = field(default_factory=set)  # canonical keys of ``facts``, for O(1) duplicate checks

    # -- points and strokes --------------------------------------------------
    def pt(self, name: str, xy) -> str:
        if name in self.points:
            raise RuntimeError(f"{self.family}: label {name!r} used twice")
        self.points[name] = g.as_vec(xy)
        return name

    def xy(self, name: str) -> np.ndarray:
        return self.points[name]

    def seg(self, a: str, b: str, dashed: bool = False) -> None:
        self.elements.append(Segment(a, b, dashed))

    def poly(self, *vertices: str) -> None:
        self.elements.append(Polygon(tuple(vertices)))

    def circle(self, center: str, radius: float) -> None:
        self.circles.append((center, float(radius)))

    def dist(self, a: str, b: str) -> float:
        return g.dist(self.points[a], self.points[b])

    def nice(self, a: str, b: str) -> bool:
        return is_nice(self.dist(a, b))

    # -- facts with their marks ---------------------------------------------
    def fact(self, kind: str, *args: str, value=None) -> None:
        f = Fact(kind, tuple(args), value)
        key = f.key()
        if key not in self.fact_keys:
            self.fact_keys.add(key)
            self.facts.append(f)

    def length(self, a: str, b: str) -> None:
        """State |AB| and write it on the figure; only nice lengths may be stated."""
        v = self.dist(a, b)
        if not is_nice(v):
            raise RuntimeError(f"{self.family}: |{a}{b}| = {v!r} is not a nice length")
        value = nice_value(v)
        self.fact("length", a, b, value=value)
        self.elements.append(LengthLabel(a, b, format_number(value)))

    def angle(self, a: str, vertex: str, b: str) -> None:
        """State ∠a-vertex-b (a whole number of degrees by construction) and mark it."""
        m = g.angle_at(self.xy(vertex), self.xy(a), self.xy(b))
        value = int(round(m))
        if abs(m - value) > 1e-6:
            raise RuntimeError(f"{self.family}: ∠{a}{vertex}{b} = {m!r}° is not a whole number")
        self.fact("angle", a, vertex, b, value=value)
        if value == 90:
            self.right_mark(vertex, a, b)
        else:
            self._angle_mark(vertex, a, b, label=f"{value}°")

    def _angle_mark(self, vertex: str, a: str, b: str, label: str | None = None, arcs: int = 1) -> None:
        """Add (or label) the arc at ``vertex``: one mark per angle, a value upgrades an unlabelled arc."""
        for i, el in enumerate(self.elements):
            if isinstance(el, AngleMark) and el.vertex == vertex and {el.a, el.b} == {a, b}:
                self.elements[i] = AngleMark(vertex, el.a, el.b, label or el.label, max(arcs, el.arcs))
                return
        self.elements.append(AngleMark(vertex, a, b, label, arcs))

    def right_mark(self, vertex: str, a: str, b: str) -> None:
        for el in self.elements:
            if isinstance(el, RightAngleMark) and el.vertex == vertex and {el.a, el.b} == {a, b}:
                return
        self.elements.append(RightAngleMark(vertex, a, b))

    def parallel(self, a: str, b: str, c: str, d: str) -> None:
        self.fact("parallel", a, b, c, d)
        self.arrows += [(a, b), (c, d)]

    def equal(self, a: str, b: str, c: str, d: str) -> None:
        self.fact("equal_length", a, b, c, d)
        self.ticks += [(a, b), (c, d)]

    def midpoint(self, m: str, a: str, b: str) -> None:
        self.fact("midpoint", m, a, b)
        self.ticks += [(a, m), (m, b)]

    def median(self, a: str, m: str, b: str, c: str) -> None:
        self.fact("median", a, m, b, c)
        self.ticks += [(b, m), (m, c)]

    def altitude(self, c: str, h: str, a: str, b: str) -> None:
        self.fact("altitude", c, h, a, b)
        self.right_mark(h, c, b if b != h else a)

    def perpendicular(self, a: str, b: str, c: str, d: str, *, at: str, arms: tuple[str, str]) -> None:
        """AB ⟂ CD, marked at their common point ``at`` between rays to ``arms``."""
        self.fact("perpendicular", a, b, c, d)
        self.right_mark(at, *arms)

    def tangent(self, p: str, t: str, o: str) -> None:
        self.fact("tangent", p, t, o)
        self.right_mark(t, o, p)

    def bisector(self, b: str, d: str, a: str, c: str) -> None:
        self.fact("bisector", b, d, a, c)
        self._angle_mark(b, a, d, arcs=BISECTOR_ARCS)
        self._angle_mark(b, d, c, arcs=BISECTOR_ARCS)

    def shape(self, *vertices: str) -> None:
        self.fact("shape", *vertices, value=shape_name([self.xy(v) for v in vertices]))

    # -- posing ---------------------------------------------------------------
    def finish(self, rng: np.random.Generator) -> Scene:
        """Turn, maybe mirror, centre and scale the figure; number tick and arrow groups."""
        turn = float(rng.integers(0, 360)) if rng.random() < ROTATE_P else 0.0
        mirror = rng.random() < 0.5
        origin, rot = g.as_vec((0.0, 0.0)), _rotation(turn)
        pts = {}
        for k, p in self.points.items():  # points are float (2,) arrays (see pt)
            q = np.array([-p[0], p[1]]) if mirror else p
            pts[k] = origin + rot @ (q - origin)  # g.rotate(q, origin, turn), its matrix built once
        circles = [(c, r) for c, r in self.circles]
        lo, hi = _bbox(pts, circles)
        scale = SCENE_SIZE / float(max(hi - lo))
        centre = (lo + hi) / 2
        # sorted, as Scene.to_json writes them: a scene read back from JSON is the same scene
        names = sorted(pts)
        posed = ((np.array([pts[k] for k in names]) - centre) * scale).tolist()  # one array op for all points
        points = {k: (round(x, 6), round(y, 6)) for k, (x, y) in zip(names, posed)}
        elements = [Circle(c, round(r * scale, 6)) for c, r in circles] + list(self.elements)
        elements += _numbered(self.ticks, self.points, EqualTicks, _same_length)
        elements += _numbered(self.arrows, self.points, ParallelArrows, _same_direction)
        return Scene(self.family, points, elements, list(self.facts), unit=1.0 / scale)


def _rotation(angle_deg: float) -> np.ndarray:
    """The matrix :func:`geometry.rotate` turns by, entry for entry."""
    t = math.radians(angle_deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def _bbox(pts: dict[str, np.ndarray], circles: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.array(list(pts.values()))
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    for c, r in circles:
        lo, hi = np.minimum(lo, pts[c] - r), np.maximum(hi, pts[c] + r)
    return lo, hi


def _same_length(p: dict, s: tuple[str, str], t: tuple[str, str]) -> bool:
    a, b = g.dist(p[s[0]], p[s[1]]), g.dist(p[t[0]], p[t[1]])
    return abs(a - b) <= 1e-6 * max(a, b)


def _same_direction(p: dict, s: tuple[str, str], t: tuple[str, str]) -> bool:
    """Parallel up to rounding; the sine of the angle, since acos loses precision near 0°."""
    u, v = p[s[1]] - p[s[0]], p[t[1]] - p[t[0]]
    return abs(g.cross(u, v)) <= 1e-9 * np.linalg.norm(u) * np.linalg.norm(v)


def _numbered(requests: list[tuple[str, str]], pts: dict, cls, same: Callable) -> list:
    """One mark per requested segment; segments in the same class (equal, parallel) share a count.

    Counting by measured class rather than by request keeps the picture honest:
    two groups that happen to be equal never carry different tick counts.
    """
    segs: list[tuple[str, str]] = []
    for s in requests:
        if _segment_key(*s) not in {_segment_key(*x) for x in segs}:
            segs.append(s)
    classes: list[list[tuple[str, str]]] = []
    for s in segs:
        for cl in classes:
            if same(pts, cl[0], s):
                cl.append(s)
                break
        else:
            classes.append([s])
    return [cls(a, b, i + 1) for i, cl in enumerate(classes) for a, b in cl]


# ----------------------------------------------------------------------------- triangles


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


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


def _integer_sides(rng: np.random.Generator, lo: int = 4, hi: int = 12) -> tuple[int, int, int]:
    a, b, c = (int(x) for x in rng.integers(lo, hi + 1, size=3))
    if not (a < b + c and b < a + c and c < a + b):
        raise _Reject("sides violate the triangle inequality")
    return a, b, c


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


def similar_triangles(rng: np.random.Generator) -> _Draft:
    """Triangle cut by a parallel to one side: DE ∥ BC gives △ADE ~ △ABC."""
    d = _Draft("similar_triangles")
    *corners, D, E = _letters(rng, 5)
    A, B, C = _shuffled(rng, corners)  # D on AB, E on AC
    p, q = _pick(rng, RATIOS)
    k = p / q
    if rng.random() < 0.5:
        bc, ca, ab = _integer_sides(rng, 4, 15)
        if any((10 * p * x) % q for x in (bc, ca, ab)):
            raise _Reject("the cut would give ugly lengths")
        a, b, c = _triangle_from_sides(bc, ca, ab)
        mode = "lengths"
    else:
        _, beta, gamma = _integer_angles(rng, 30, 100)
        a, b, c = _triangle_from_angles(float(rng.integers(6, 13)), beta, gamma)
        mode = "angles"
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
    if rng.random() < 0.5:
        a, b, c = _triangle_from_sides(*(float(x) for x in _integer_sides(rng, 4, 14)))
        mode = "lengths"
    else:
        _, beta, gamma = _integer_angles(rng, 30, 100)
        a, b, c = _triangle_from_angles(float(rng.integers(5, 15)), beta, gamma)
        mode = "angles"
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


# ----------------------------------------------------------------------------- registry and checks

_BUILDERS: dict[str, Callable[[np.random.Generator], _Draft]] = {
    f.__name__: f
    for f in (
        right_triangle_altitude,
        isosceles_median,
        angle_bisector,
        parallel_transversal,
        thales_circle,
        tangent_external,
        quadrilateral_diagonals,
        similar_triangles,
        midsegment,
        equilateral_triangle,
        chord_perpendicular,
        inscribed_angle,
    )
}


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


def _resampling(name: str, build: Callable[[np.random.Generator], _Draft]) -> Callable[[np.random.Generator], Scene]:
    """Wrap a builder so it redraws (from the same generator) until the figure is legible.

    The scene it returns has its labels placed (the legibility check places them).
    """

    def generate(rng: np.random.Generator) -> Scene:
        reasons: list[str] = []
        for _ in range(MAX_DRAWS):
            try:
                draft = build(rng)
                if len(draft.facts) < MIN_FACTS:
                    raise _Reject(f"only {len(draft.facts)} facts")
                scene = draft.finish(rng)
                obstacles = LabelObstacles(scene)  # built once, shared by both checks and the placement
                return _check_labels(check_legible(scene, obstacles), obstacles)
            except (_Reject, ValueError) as e:
                reasons.append(str(e))
        raise RuntimeError(f"family {name!r} found no legible figure in {MAX_DRAWS} draws; last: {reasons[-3:]}")

    generate.__name__ = name
    generate.__doc__ = build.__doc__
    return generate


FAMILIES: dict[str, Callable[[np.random.Generator], Scene]] = {
    name: _resampling(name, build) for name, build in _BUILDERS.items()
}


def generate_scene(family: str, seed: int) -> Scene:
    """The scene of ``family`` for ``seed``: validated, facts checked, labels placed.

    Deterministic in ``(family, seed)``: the same arguments give the same JSON in
    any process.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid families: {', '.join(FAMILIES)}")
    scene = FAMILIES[family](np.random.default_rng(seed))  # labels already placed by its legibility check
    scene.seed = int(seed)
    validate_scene(scene)
    check_scene_facts(scene)
    return scene


def sample_scene(seed: int, families: Sequence[str] | None = None) -> Scene:
    """A scene from a family chosen by the seed (uniformly among ``families``, default all)."""
    names = list(families) if families else list(FAMILIES)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown family {unknown[0]!r}; valid families: {', '.join(FAMILIES)}")
    pick = np.random.default_rng([seed, len(names)]).integers(len(names))
    return generate_scene(names[int(pick)], seed)


def format_number(value: float) -> str:
    """``6`` or ``4.5``: how lengths are printed on figures and in captions (one decimal at most)."""
    return str(nice_value(float(value)))
