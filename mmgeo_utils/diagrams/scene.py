"""The scene language: a geometry diagram as plain, JSON-serialisable data.

A :class:`Scene` is the "diagram generation code" of the course. It holds

* ``points``   – labelled points with coordinates (abstract units, y up),
* ``elements`` – what is drawn: segments, lines, rays, polygons, circles, arcs and
  the marks a textbook uses (right-angle squares, angle arcs with values,
  equal-length ticks, parallel arrows, length labels, dashed auxiliary lines),
* ``facts``    – typed symbolic facts that are true of the drawing (lengths, angle
  sizes, parallel, perpendicular, point on circle, midpoint, tangent, ...).

Because a scene is data, lesson 02 can perturb it (change one fact, re-render) and
know *exactly* what changed; the MMGeoLM paper had to ask an LLM to edit matplotlib
scripts and found that hard to control (MMGeoLM §2.1).

Facts are canonicalised (:meth:`Fact.canonical`) so that "AB ∥ CD" and "DC ∥ BA"
compare equal: fact *sets* are how we check that a negative differs from the
positive in exactly one fact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

# ----------------------------------------------------------------------------- elements


@dataclass(frozen=True)
class Segment:
    """Segment AB. ``dashed`` marks an auxiliary line (drawn dashed, as in textbooks)."""

    a: str
    b: str
    dashed: bool = False
    type: ClassVar[str] = "segment"


@dataclass(frozen=True)
class Line:
    """The infinite line through A and B, drawn clipped to the diagram's frame."""

    a: str
    b: str
    dashed: bool = False
    type: ClassVar[str] = "line"


@dataclass(frozen=True)
class Ray:
    """The ray from A through B, drawn to the frame."""

    a: str
    b: str
    dashed: bool = False
    type: ClassVar[str] = "ray"


@dataclass(frozen=True)
class Polygon:
    """Closed polygon through the named vertices in order."""

    vertices: tuple[str, ...]
    type: ClassVar[str] = "polygon"


@dataclass(frozen=True)
class Circle:
    """Circle with the named centre and a radius in coordinate units."""

    center: str
    radius: float
    dashed: bool = False
    type: ClassVar[str] = "circle"


@dataclass(frozen=True)
class Arc:
    """Arc of the circle (center, radius) from ``start_deg`` counter-clockwise to ``end_deg``."""

    center: str
    radius: float
    start_deg: float
    end_deg: float
    type: ClassVar[str] = "arc"


@dataclass(frozen=True)
class RightAngleMark:
    """The small square at ``vertex`` between rays vertex→a and vertex→b."""

    vertex: str
    a: str
    b: str
    type: ClassVar[str] = "right_angle_mark"


@dataclass(frozen=True)
class AngleMark:
    """An angle arc at ``vertex`` between rays vertex→a and vertex→b, optionally labelled."""

    vertex: str
    a: str
    b: str
    label: str | None = None
    arcs: int = 1
    type: ClassVar[str] = "angle_mark"


@dataclass(frozen=True)
class EqualTicks:
    """``count`` tick marks across segment AB; segments with the same count are equal."""

    a: str
    b: str
    count: int = 1
    type: ClassVar[str] = "equal_ticks"


@dataclass(frozen=True)
class ParallelArrows:
    """``count`` arrowheads on segment AB; segments with the same count are parallel."""

    a: str
    b: str
    count: int = 1
    type: ClassVar[str] = "parallel_arrows"


@dataclass(frozen=True)
class LengthLabel:
    """A length written beside segment AB (e.g. ``"6"``)."""

    a: str
    b: str
    text: str
    type: ClassVar[str] = "length_label"


Element = (
    Segment
    | Line
    | Ray
    | Polygon
    | Circle
    | Arc
    | RightAngleMark
    | AngleMark
    | EqualTicks
    | ParallelArrows
    | LengthLabel
)
ELEMENT_TYPES: dict[str, type] = {cls.type: cls for cls in Element.__args__}  # type: ignore[attr-defined]


def element_points(el: Element) -> tuple[str, ...]:
    """The point names an element refers to (used to validate scenes)."""
    if isinstance(el, Polygon):
        return tuple(el.vertices)
    if isinstance(el, (Circle, Arc)):
        return (el.center,)
    if isinstance(el, (RightAngleMark, AngleMark)):
        return (el.vertex, el.a, el.b)
    return (el.a, el.b)  # segment-like


def element_to_dict(el: Element) -> dict[str, Any]:
    d = {"type": el.type, **asdict(el)}
    if isinstance(el, Polygon):
        d["vertices"] = list(el.vertices)
    return d


def element_from_dict(d: dict[str, Any]) -> Element:
    d = dict(d)
    kind = d.pop("type", None)
    if kind not in ELEMENT_TYPES:
        raise ValueError(f"unknown element type {kind!r}; known: {', '.join(ELEMENT_TYPES)}")
    cls = ELEMENT_TYPES[kind]
    known = {f.name for f in fields(cls)}
    extra = set(d) - known
    if extra:
        raise ValueError(f"element {kind!r} has unknown fields {sorted(extra)}")
    if cls is Polygon:
        d["vertices"] = tuple(d["vertices"])
    return cls(**d)


# ----------------------------------------------------------------------------- facts

# Each fact kind: its arity (None = any number ≥ 3, for shapes), the type of its value,
# and a one-line meaning. ``args`` are point names.
FACT_KINDS: dict[str, tuple[int | None, str, str]] = {
    "length": (2, "number", "segment A B has the stated length `value`"),
    "angle": (3, "number", "angle A-B-C (vertex B) measures `value` degrees"),
    "perpendicular": (4, "none", "line AB is perpendicular to line CD"),
    "parallel": (4, "none", "line AB is parallel to line CD"),
    "equal_length": (4, "none", "segment AB equals segment CD"),
    "midpoint": (3, "none", "M (first) is the midpoint of segment AB"),
    "on_segment": (3, "none", "P (first) lies on segment AB"),
    "on_circle": (2, "none", "P (first) lies on the circle centred at O (second)"),
    "diameter": (3, "none", "AB is a diameter of the circle centred at O (third)"),
    "radius": (2, "none", "OA is a radius of the circle centred at O (first)"),
    "tangent": (3, "none", "line PT is tangent at T (second) to the circle centred at O (third)"),
    "secant": (3, "none", "line PA cuts the circle centred at O (third) in two points, A one of them"),
    "altitude": (4, "none", "CD is the altitude from C (first) to line AB, D (second) its foot"),
    "median": (4, "none", "AM is the median from A (first) to side BC, M (second) its midpoint"),
    "bisector": (4, "none", "BD bisects angle A-B-C: args (B, D, A, C)"),
    "intersection": (5, "none", "P (first) is the intersection of lines AB and CD"),
    "shape": (None, "name", "the polygon through the args, in order, is a `value` (e.g. 'rhombus')"),
    "similar": (6, "none", "triangle ABC is similar to triangle DEF, vertices in correspondence"),
    "congruent": (6, "none", "triangle ABC is congruent to triangle DEF, vertices in correspondence"),
}

SHAPE_NAMES = (
    "triangle",
    "right triangle",
    "isosceles triangle",
    "equilateral triangle",
    "isosceles right triangle",
    "quadrilateral",
    "parallelogram",
    "rectangle",
    "rhombus",
    "square",
    "trapezoid",
    "isosceles trapezoid",
)


def _segment_key(a: str, b: str) -> tuple[str, str]:
    """A segment's key: its end points in sorted order, so AB and BA are one segment."""
    return (a, b) if a <= b else (b, a)


def _polygon_canonical(vs: tuple[str, ...]) -> tuple[str, ...]:
    """Smallest rotation of the cycle in either direction: ABCD == BCDA == DCBA."""
    n = len(vs)
    cands = []
    for seq in (vs, tuple(reversed(vs))):
        for i in range(n):
            cands.append(seq[i:] + seq[:i])
    return min(cands)


def _triangle_pair_canonical(args: tuple[str, ...]) -> tuple[str, ...]:
    """△ABC ~ △DEF with correspondence: the same permutation on both, and swapping sides."""
    t1, t2 = args[:3], args[3:]
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    cands = []
    for x, y in ((t1, t2), (t2, t1)):
        for p in perms:
            cands.append(tuple(x[i] for i in p) + tuple(y[i] for i in p))
    return min(cands)


@dataclass(frozen=True)
class Fact:
    """One symbolic fact about a scene: ``kind`` from :data:`FACT_KINDS`, point ``args``, ``value``."""

    kind: str
    args: tuple[str, ...]
    value: float | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        if self.kind not in FACT_KINDS:
            raise ValueError(f"unknown fact kind {self.kind!r}; known: {', '.join(FACT_KINDS)}")
        arity, vtype, _ = FACT_KINDS[self.kind]
        if arity is not None and len(self.args) != arity:
            raise ValueError(f"fact {self.kind!r} takes {arity} points, got {len(self.args)}: {self.args}")
        if arity is None and len(self.args) < 3:
            raise ValueError(f"fact {self.kind!r} needs at least 3 points, got {self.args}")
        if vtype == "number" and not isinstance(self.value, (int, float)):
            raise ValueError(f"fact {self.kind!r} {self.args} needs a numeric value, got {self.value!r}")
        if vtype == "number" and not math.isfinite(float(self.value)):  # type: ignore[arg-type]
            raise ValueError(f"fact {self.kind!r} {self.args} has a non-finite value {self.value!r}")
        if vtype == "none" and self.value is not None:
            raise ValueError(f"fact {self.kind!r} takes no value, got {self.value!r}")
        if vtype == "name" and self.value not in SHAPE_NAMES:
            raise ValueError(f"unknown shape {self.value!r}; known: {', '.join(SHAPE_NAMES)}")

    def canonical(self) -> Fact:
        """The same fact in a normal form, so that equal facts compare equal."""
        k, a = self.kind, self.args
        if k == "length":
            args = _segment_key(*a)
        elif k == "angle":
            args = (min(a[0], a[2]), a[1], max(a[0], a[2]))
        elif k in ("perpendicular", "parallel", "equal_length"):
            args = tuple(x for s in sorted((_segment_key(a[0], a[1]), _segment_key(a[2], a[3]))) for x in s)
        elif k in ("midpoint", "on_segment"):
            args = (a[0], *_segment_key(a[1], a[2]))
        elif k == "diameter":
            args = (*_segment_key(a[0], a[1]), a[2])
        elif k == "altitude":
            args = (a[0], a[1], *_segment_key(a[2], a[3]))
        elif k == "median":
            args = (a[0], a[1], *_segment_key(a[2], a[3]))
        elif k == "bisector":
            args = (a[0], a[1], *sorted(a[2:]))
        elif k == "intersection":
            s1, s2 = sorted((_segment_key(a[1], a[2]), _segment_key(a[3], a[4])))
            args = (a[0], *s1, *s2)
        elif k == "shape":
            args = _polygon_canonical(a)
        elif k in ("similar", "congruent"):
            args = _triangle_pair_canonical(a)
        else:
            args = a
        value = self.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return Fact(k, tuple(args), value)

    def key(self) -> tuple:
        c = self.canonical()
        return (c.kind, c.args, c.value)

    def to_dict(self) -> dict[str, Any]:
        """``{kind, args, value, value_text}``: a number in ``value``, a name (a shape) in ``value_text``.

        Every field keeps one JSON type in every row (Arrow, and so Hugging Face ``datasets``, needs
        that to read the metadata as a table), so a value is never a number here and a string there.
        """
        return {"kind": self.kind, "args": list(self.args), **typed_value(self.value)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fact:
        return cls(d["kind"], tuple(d["args"]), untyped_value(d))


def typed_value(value: float | int | str | None) -> dict[str, Any]:
    """A fact's or answer's value as two typed fields: ``value`` (a float or null), ``value_text``
    (a string or null)."""
    if value is None or isinstance(value, str):
        return {"value": None, "value_text": value}
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"a value is a number or a string, not {type(value).__name__} ({value!r})")
    return {"value": float(value), "value_text": None}  # always a float: 90 and 4.5 share one column type


def untyped_value(d: dict[str, Any]) -> float | int | str | None:
    """The inverse of :func:`typed_value` (a row of generator version 4, with one mixed ``value``, reads too)."""
    if d.get("value_text") is not None:
        return d["value_text"]
    value = d.get("value")
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a whole number reads back as the int it was written from (5, not 5.0)
    return value


def fact_set(facts: Iterable[Fact]) -> frozenset[tuple]:
    """Facts as a set of canonical keys: compare two scenes' facts with ``==`` and ``-``."""
    return frozenset(f.key() for f in facts)


# ----------------------------------------------------------------------------- scene


@dataclass
class Scene:
    """A diagram as data: points, drawn elements, facts, and where it came from.

    ``unit`` converts coordinate lengths to stated lengths: a ``length`` fact's value is
    ``unit × |AB|`` for every stated length of the scene, so the drawing is to scale.
    ``label_offsets`` (filled by :func:`mmgeo_utils.diagrams.layout.place_labels`) says where each
    point's letter goes, in coordinate units relative to the point.
    """

    family: str
    points: dict[str, tuple[float, float]]
    elements: list[Element]
    facts: list[Fact]
    unit: float = 1.0
    seed: int | None = None
    label_offsets: dict[str, tuple[float, float]] = field(default_factory=dict)

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "seed": self.seed,
            "unit": self.unit,
            "points": {k: [round(float(x), 6), round(float(y), 6)] for k, (x, y) in self.points.items()},
            "elements": [element_to_dict(e) for e in self.elements],
            "facts": [f.to_dict() for f in self.facts],
            "label_offsets": {k: [round(float(x), 6), round(float(y), 6)] for k, (x, y) in self.label_offsets.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        """The scene of :meth:`to_dict`'s dict; ``points`` may also be a list of ``[label, [x, y]]`` pairs.

        A label given twice (possible in the pair list; JSON text goes through :meth:`from_json`,
        which refuses it, because ``json.loads`` keeps only the last) and a coordinate that is not a
        finite number are errors naming the point, not a scene with a silently dropped or NaN point.
        """
        scene = cls(
            family=d["family"],
            points=_points_from(d["points"]),
            elements=[element_from_dict(e) for e in d["elements"]],
            facts=[Fact.from_dict(f) for f in d["facts"]],
            unit=float(d.get("unit", 1.0)),
            seed=d.get("seed"),
            label_offsets={k: (float(v[0]), float(v[1])) for k, v in d.get("label_offsets", {}).items()},
        )
        return scene

    @classmethod
    def from_json(cls, s: str) -> Scene:
        return cls.from_dict(json.loads(s, object_pairs_hook=_no_duplicate_keys))

    # -- convenience ---------------------------------------------------------
    def xy(self, name: str):
        """Coordinates of a point as a numpy array."""
        if name not in self.points:
            raise KeyError(f"scene has no point {name!r}; points: {', '.join(self.points)}")
        return np.asarray(self.points[name], dtype=float)

    def fact_keys(self) -> frozenset[tuple]:
        return fact_set(self.facts)

    def copy(self) -> Scene:
        return Scene.from_dict(self.to_dict())


def _points_from(points: Any) -> dict[str, tuple[float, float]]:
    pairs = list(points.items()) if isinstance(points, dict) else list(points)
    out: dict[str, tuple[float, float]] = {}
    for label, xy in pairs:
        if label in out:
            raise ValueError(f"label {label!r} is used twice in the scene")
        try:
            x, y = (float(c) for c in xy)
        except (TypeError, ValueError):
            raise ValueError(f"point {label!r} has coordinates {xy!r}, not two numbers") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"point {label!r} has non-finite coordinates ({x}, {y})")
        out[label] = (x, y)
    return out


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects silently keep the last of two equal keys; a label used twice is an error."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"label {k!r} is used twice in the scene")
        out[k] = v
    return out


# ----------------------------------------------------------------------------- validation

# Facts about two segments (or two lines, two triangles) may share a point, as in
# "AB = AC" or "AB ⟂ AC"; within one segment, line or triangle the points must differ.
_PAIR_KINDS = ("perpendicular", "parallel", "equal_length")


def _distinct_groups(f: Fact) -> list[tuple[str, ...]]:
    """The groups of a fact's arguments that must name distinct points."""
    a = f.args
    if f.kind in _PAIR_KINDS:
        return [a[:2], a[2:]]
    if f.kind == "intersection":
        return [a[1:3], a[3:]]
    if f.kind in ("similar", "congruent"):
        return [a[:3], a[3:]]
    return [a]


MIN_SIDE = 1e-3  # relative to the scene's extent: anything shorter is a degenerate side


def validate_scene(scene: Scene) -> Scene:
    """Raise ``ValueError`` naming the problem if the scene is malformed; return it otherwise.

    Structural checks live here (labels, references, zero-length sides); whether the
    facts are *true* of the coordinates is :func:`mmgeo_utils.diagrams.facts.check_scene_facts`.
    """
    if not scene.points:
        raise ValueError("scene has no points")
    for name in scene.points:
        if not isinstance(name, str) or not name or not name[0].isalpha():
            raise ValueError(f"bad point label {name!r}: labels are letters such as 'A' or 'O1'")
    coords = np.array(list(scene.points.values()), dtype=float)
    if not np.all(np.isfinite(coords)):
        bad = [k for k, v in scene.points.items() if not np.all(np.isfinite(v))]
        raise ValueError(f"point(s) {bad} have non-finite coordinates")
    extent = float(np.ptp(coords, axis=0).max()) if len(coords) > 1 else 1.0
    if extent <= 0:
        raise ValueError("degenerate scene: all points coincide")

    # two labels at the same place are the same point named twice
    names = list(scene.points)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if np.hypot(*(coords[i] - coords[names.index(b)])) < MIN_SIDE * extent:
                raise ValueError(f"degenerate scene: points {a} and {b} coincide")

    for el in scene.elements:
        for p in element_points(el):
            if p not in scene.points:
                raise ValueError(f"{el.type} refers to missing point {p!r}")
        if isinstance(el, (Circle, Arc)) and not (el.radius > MIN_SIDE * extent):
            raise ValueError(f"degenerate {el.type} at {el.center}: radius {el.radius}")
        if isinstance(el, Polygon):
            if len(el.vertices) < 3:
                raise ValueError(f"polygon {''.join(el.vertices)} needs at least 3 vertices")
            if len(set(el.vertices)) != len(el.vertices):
                raise ValueError(f"polygon {''.join(el.vertices)} uses a vertex label twice")
            sides = list(zip(el.vertices, el.vertices[1:] + el.vertices[:1]))
        elif isinstance(el, (Segment, Line, Ray, EqualTicks, ParallelArrows, LengthLabel)):
            sides = [(el.a, el.b)]
        else:
            sides = []
        for a, b in sides:
            if a == b or np.hypot(*(scene.xy(a) - scene.xy(b))) < MIN_SIDE * extent:
                raise ValueError(f"degenerate scene: zero-length side {a}{b} in a {el.type}")

    for f in scene.facts:
        missing = [p for p in f.args if p not in scene.points]
        if missing:
            raise ValueError(f"fact {f.kind}{f.args} names missing point(s) {missing}")
        for group in _distinct_groups(f):
            if len(set(group)) != len(group):
                raise ValueError(f"fact {f.kind}{f.args} uses a point label twice in {''.join(group)}")
    if not (scene.unit > 0 and math.isfinite(scene.unit)):
        raise ValueError(f"scene unit must be a positive number, got {scene.unit}")
    return scene
