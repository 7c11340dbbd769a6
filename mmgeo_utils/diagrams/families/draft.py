"""The shared builder of the problem families: :class:`_Draft`, and the numbers and letters they draw.

A family states a fact through a :class:`_Draft` method, which adds the marks that show it (lesson 01);
:meth:`_Draft.finish` poses the figure. The helpers draw nice numbers (:func:`is_nice`, Pythagorean
triples) and letters that carry no signal (:func:`_letters`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import geometry as g
from ..facts import shape_name
from ..scene import (
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
    _segment_key,
)

# ----------------------------------------------------------------------------- constants

SCENE_SIZE = 10.0  # coordinates are scaled so the figure's extent is this many units
NICE_TOL = 1e-6  # a length within this of one decimal is "nice" (constructions are exact)
ROTATE_P = 0.5  # how often a figure is turned by a random angle (else its base is level)
CONVENTIONAL_P = 0.4  # how often a foot/midpoint takes its textbook letter (H, M)
BISECTOR_ARCS = 2  # equal halves of a bisected angle carry double arcs

# Letters: no I (reads as 1 or l) and no O (reserved for circle centres).
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"
CLASSIC_STARTS = ("A", "A", "P", "K", "D")  # weighted: textbooks start at A most often
CLASSIC_START_P = 0.5

# Pythagorean triples and the scales they are drawn at: right angles with nice sides.
TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (20, 21, 29))
TRIPLE_SCALES = {(3, 4, 5): (0.5, 1, 1.5, 2, 3), (5, 12, 13): (0.5, 1, 2), (8, 15, 17): (0.5, 1), (20, 21, 29): (0.5,)}


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


def format_number(value: float) -> str:
    """``6`` or ``4.5``: how lengths are printed on figures and in captions (one decimal at most)."""
    return str(nice_value(float(value)))


# ----------------------------------------------------------------------------- the draft


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
