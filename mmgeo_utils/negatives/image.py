"""Image hard negatives: edit the scene, re-render, and prove that exactly one fact changed.

MMGeoLM (Sun et al., arXiv 2505.20152, §2.1, App. G Figs. 12-13) builds its image hard
negatives in two LLM steps: write a negative caption (swap a shape concept, relabel
letters, change a number, swap a similar relation), then ask Gemini to edit the
positive matplotlib script until the figure matches it. The authors report that
perturbing scripts directly was "uncontrolled", and even the two-step route cannot
promise that the new figure differs from the old one in the edited fact *only*.

Our diagrams are data (:class:`~mmgeo_utils.diagrams.scene.Scene`), so a perturbation here is
a typed edit of the scene, and every negative is checked, not trusted:

* **Exactly one fact.** A perturbation declares its change: one fact replaced
  (``removed f``, ``added f′``), one removed or one added. :func:`verify_negative`
  compares the canonical fact sets (:func:`~mmgeo_utils.diagrams.scene.fact_set`) and rejects
  anything else. A relabel instead declares a renaming of ≥ 2 letters and the
  negative's facts must equal the positive's facts under it.
* **True of its own picture.** Geometric edits move points and rebuild everything
  constructed from them (midpoints, feet, intersections, points on a side), then
  every stated fact of the negative must hold in the negative's coordinates
  (:func:`~mmgeo_utils.diagrams.facts.check_fact`) and the removed fact must be *false* there,
  so the positive caption really is wrong for the negative image. Where an edit would
  also break a second stated fact (moving the midpoint of a side that a stated
  parallel uses, stretching a square whose equal sides are stated), the perturbation
  returns :class:`NotApplicable` naming that fact: it is skipped and counted, never
  faked. Marks follow facts: the ticks of a removed midpoint and the arrows of a
  removed parallel go with it, the marks of an added fact are drawn.
* **Annotation-only edits** (:data:`ANNOTATION_ONLY`: a changed length or angle value,
  a right-angle square moved to another vertex) change what the figure *says*, not
  its geometry: the edited annotation is deliberately not to scale, as in a textbook
  figure marked "not drawn to scale". For these, every other fact must still hold and
  the points must not move.
* **Visible.** The negative rendered with the positive's style must differ in pixels.

Drastic relation flips (parallel → perpendicular) are registered but ``drastic``: the
paper's caption prompt keeps them out of image negatives (Fig. 12: "avoid drastic
changes like parallel → perpendicular") because such a negative is easy and teaches
little, while its rule-based *text* negatives allow them; so :func:`make_image_negatives`
takes ``allow_drastic=False`` and lesson 02 can switch them on to see the difference.

Two registered perturbations never apply to the current families, and say why:
``similar_congruent`` (every stated pair of congruent triangles shares a vertex, so
neither triangle can be rescaled alone; and similar → congruent is never an image
negative, since congruent triangles are still similar) and ``tangent_to_secant`` (the
tangent's right triangle is always stated as a shape). They apply to scenes that state
fewer facts, which the tests construct.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..diagrams import geometry as g
from ..diagrams.captions import Caption, describe
from ..diagrams.facts import check_fact, describe_fact, shape_name
from ..diagrams.families import ALPHABET, check_legible, drawn_sides, format_number, nice_value
from ..diagrams.layout import annotation_clearances, label_clearances, place_labels, scene_extent
from ..diagrams.render import RenderStyle, default_style, fits_frame, render
from ..diagrams.scene import (
    AngleMark,
    Arc,
    Circle,
    Element,
    EqualTicks,
    Fact,
    LengthLabel,
    ParallelArrows,
    Polygon,
    RightAngleMark,
    Scene,
    Segment,
    fact_set,
    validate_scene,
)

__all__ = [
    "Perturbation",
    "ImageNegative",
    "NotApplicable",
    "PerturbationResult",
    "PERTURBATIONS",
    "CATEGORIES",
    "ANNOTATION_ONLY",
    "apply_perturbation",
    "verify_negative",
    "make_image_negatives",
    "perturbation_table",
    "rename_fact",
]

CATEGORIES = ("shape_concept", "relabel", "number", "relation", "ours")
MIN_MOVE_FRAC = 0.05  # a geometric edit moves some point by at least this fraction of the figure
INCIDENCE_TOL = 1e-4  # relative to the figure: a point "on" a side or circle in the positive
COORD_DECIMALS = 6  # as the families store coordinates, so a negative survives a JSON round trip
RELABEL_TRIES = 24
UNPARALLEL_DEG = (10.0, 15.0, 20.0)  # small turns first: the hardest negative that is still visible
OFF_CIRCLE_SCALES = (1.18, 0.82, 1.25, 0.75)
MIDPOINT_SHIFTS = (0.15, 0.2, 0.25)  # how far off the middle, as a fraction of the side
CHORD_TURN_DEG = (8.0, 12.0, 16.0)
NUMBER_MIN_CHANGE_DEG = 5
MAX_DUPLICATES = 3  # make_image_negatives drops a type after this many repeats of earlier negatives


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NotApplicable:
    """A perturbation that cannot make an honest negative of this scene, and why.

    ``kind`` is a short stable label (``"no target"``, ``"breaks a stated fact"``,
    ``"illegible"``, ...) used to count skips; ``reason`` names the facts and points.
    """

    perturbation: str
    reason: str
    kind: str = "no target"


@dataclass
class ImageNegative:
    """A verified image hard negative: the perturbed scene and exactly what changed.

    ``removed``/``added`` are the declared fact change (for a relabel: the facts whose
    names changed, before and after); ``renaming`` maps old to new letters for a
    relabel; ``caption`` describes the negative scene (:func:`~mmgeo_utils.diagrams.captions.describe`
    with ``caption_seed``: pass the positive's to keep its phrasing); ``image`` is the
    negative rendered with ``style``, the positive's style.
    """

    scene: Scene
    perturbation: str
    removed: tuple[Fact, ...]
    added: tuple[Fact, ...]
    caption: Caption
    annotation_only: bool
    style: RenderStyle
    renaming: dict[str, str] | None = None
    image: Image.Image | None = None

    def describe_change(self) -> str:
        """One line for lessons and logs: ``parallel(A,B,C,D) → perpendicular(A,B,C,D)``."""
        if self.renaming:
            return "relabel " + ", ".join(f"{a}→{b}" for a, b in sorted(self.renaming.items()))
        before = "; ".join(describe_fact(f) for f in self.removed) or "∅"
        after = "; ".join(describe_fact(f) for f in self.added) or "∅"
        return f"{before} → {after}"


PerturbationResult = ImageNegative | NotApplicable


@dataclass
class _Change:
    """What a perturbation asks for; :func:`_draft` builds the negative scene and :func:`_try_change` checks it.

    ``moved`` points get new coordinates (points constructed from them follow);
    ``new_points`` are added, ``dropped_points`` removed with the strokes through them;
    ``detach`` lists incidences the edit is allowed to break (``(point, "circle:O")``).
    Marks are not listed: they follow the removed and added facts.
    """

    removed: tuple[Fact, ...] = ()
    added: tuple[Fact, ...] = ()
    moved: dict[str, np.ndarray] = field(default_factory=dict)
    new_points: dict[str, np.ndarray] = field(default_factory=dict)
    dropped_points: tuple[str, ...] = ()
    new_elements: tuple[Element, ...] = ()
    dropped_elements: tuple[Element, ...] = ()
    detach: tuple[tuple[str, str], ...] = ()
    renaming: dict[str, str] | None = None


Proposer = Callable[[Scene, np.random.Generator], "Iterable[_Change] | NotApplicable"]


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation: its metadata and the function proposing changes.

    ``propose`` yields candidate changes, best first (smallest visible move); the
    first one that passes every check becomes the negative. ``annotation_only``
    perturbations change a stated annotation and leave the geometry alone.
    """

    name: str
    category: str
    drastic: bool
    annotation_only: bool
    summary: str
    propose: Proposer


# ----------------------------------------------------------------------------- small helpers


def _xy(scene: Scene, name: str) -> np.ndarray:
    return np.asarray(scene.points[name], dtype=float)


def _seg(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def _na(name: str, reason: str, kind: str = "no target") -> NotApplicable:
    return NotApplicable(name, reason, kind)


def _shuffled(rng: np.random.Generator, items: Sequence) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def _facts_with(scene: Scene, point: str) -> list[Fact]:
    return [f for f in scene.facts if point in f.args]


def _circle_centres(scene: Scene) -> dict[str, float]:
    return {el.center: el.radius for el in scene.elements if isinstance(el, Circle)}


def _perp(u: np.ndarray) -> np.ndarray:
    return np.array([-u[1], u[0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def rename_fact(fact: Fact, renaming: dict[str, str]) -> Fact:
    """The same fact with its point names mapped (names not in ``renaming`` stay)."""
    return Fact(fact.kind, tuple(renaming.get(a, a) for a in fact.args), fact.value)


def _rename_element(el: Element, m: dict[str, str]) -> Element:
    if isinstance(el, Polygon):
        return Polygon(tuple(m.get(v, v) for v in el.vertices))
    if isinstance(el, (Circle, Arc)):
        return dataclasses.replace(el, center=m.get(el.center, el.center))
    if isinstance(el, (RightAngleMark, AngleMark)):
        return dataclasses.replace(el, vertex=m.get(el.vertex, el.vertex), a=m.get(el.a, el.a), b=m.get(el.b, el.b))
    return dataclasses.replace(el, a=m.get(el.a, el.a), b=m.get(el.b, el.b))


def _element_points(el: Element) -> tuple[str, ...]:
    if isinstance(el, Polygon):
        return el.vertices
    if isinstance(el, (Circle, Arc)):
        return (el.center,)
    if isinstance(el, (RightAngleMark, AngleMark)):
        return (el.vertex, el.a, el.b)
    return (el.a, el.b)


# ----------------------------------------------------------------------------- marks follow facts

_MARKS = (RightAngleMark, AngleMark, EqualTicks, ParallelArrows, LengthLabel)


def _collinear(scene: Scene, v: str, x: str, a: str, b: str, tol: float = 1e-6) -> bool:
    """Whether the ray v→x lies along line ab (v on the line and x on it too)."""
    p, q = _xy(scene, a), _xy(scene, b)
    d = _unit(q - p)
    return all(abs(g.cross(d, _xy(scene, s) - p)) <= tol * max(1.0, scene_extent(scene)) for s in (v, x))


def _shows(fact: Fact, el: Element, scene: Scene) -> bool:
    """Whether mark ``el`` is (one of) the marks the families draw for ``fact``."""
    k, a = fact.kind, fact.args
    if k == "length":
        return isinstance(el, LengthLabel) and _seg(el.a, el.b) == _seg(*a)
    if k == "angle":
        cls = RightAngleMark if float(fact.value) == 90 else AngleMark  # type: ignore[arg-type]
        ok = isinstance(el, cls) and el.vertex == a[1] and {el.a, el.b} == {a[0], a[2]}
        return ok and (cls is RightAngleMark or el.label is not None)
    if k in ("parallel", "equal_length"):
        cls = ParallelArrows if k == "parallel" else EqualTicks
        return isinstance(el, cls) and _seg(el.a, el.b) in (_seg(*a[:2]), _seg(*a[2:]))
    if k == "midpoint":
        return isinstance(el, EqualTicks) and _seg(el.a, el.b) in (_seg(a[1], a[0]), _seg(a[0], a[2]))
    if k == "median":
        return isinstance(el, EqualTicks) and _seg(el.a, el.b) in (_seg(a[2], a[1]), _seg(a[1], a[3]))
    if k == "altitude":
        return isinstance(el, RightAngleMark) and el.vertex == a[1] and a[0] in (el.a, el.b)
    if k == "tangent":
        return isinstance(el, RightAngleMark) and el.vertex == a[1] and {el.a, el.b} == {a[0], a[2]}
    if k == "bisector":
        return isinstance(el, AngleMark) and el.vertex == a[0] and {el.a, el.b} in ({a[2], a[1]}, {a[1], a[3]})
    if k == "perpendicular" and isinstance(el, RightAngleMark):
        v, x, y = el.vertex, el.a, el.b
        return (_collinear(scene, v, x, a[0], a[1]) and _collinear(scene, v, y, a[2], a[3])) or (
            _collinear(scene, v, y, a[0], a[1]) and _collinear(scene, v, x, a[2], a[3])
        )
    return False


def mark_supporters(scene: Scene) -> list[list[Fact]]:
    """For each element, the facts it is a mark of (empty for strokes, and for an unexplained mark)."""
    return [[f for f in scene.facts if _shows(f, el, scene)] if isinstance(el, _MARKS) else [] for el in scene.elements]


def _mark_after_removal(el: Element, remaining: list[Fact]) -> Element | None:
    """A mark whose supporting facts lost some: keep, degrade (an arc loses its value or
    its second arc) or drop it, depending on what the remaining supporters need."""
    if not remaining:
        return None
    if isinstance(el, AngleMark):
        label = el.label if any(f.kind == "angle" for f in remaining) else None
        arcs = el.arcs if any(f.kind == "bisector" for f in remaining) else 1
        return AngleMark(el.vertex, el.a, el.b, label, arcs)
    return el


def _same_count(points: dict[str, np.ndarray], cls: type, elements: list[Element], a: str, b: str) -> int:
    """The tick (arrow) count for a new mark on ab: that of an equal (parallel) marked segment, else a new one."""
    p, q = points[a], points[b]
    counts = [el.count for el in elements if isinstance(el, cls)]
    for el in elements:
        if not isinstance(el, cls):
            continue
        r, s = points[el.a], points[el.b]
        if cls is EqualTicks and abs(g.dist(p, q) - g.dist(r, s)) <= 1e-6 * g.dist(p, q):
            return el.count
        if cls is ParallelArrows and abs(g.cross(_unit(q - p), _unit(s - r))) <= 1e-9:
            return el.count
    return max(counts, default=0) + 1


def _add_marked(elements: list[Element], new: Element) -> None:
    if new not in elements:
        elements.append(new)


def _add_angle_mark(elements: list[Element], v: str, a: str, b: str, label: str | None, arcs: int) -> None:
    """Add an arc at v, or upgrade the arc already on the same arms (one mark per angle, as the families do)."""
    for i, el in enumerate(elements):
        if isinstance(el, AngleMark) and el.vertex == v and {el.a, el.b} == {a, b}:
            elements[i] = AngleMark(v, el.a, el.b, label or el.label, max(arcs, el.arcs))
            return
    elements.append(AngleMark(v, a, b, label, arcs))


def _marks_for(fact: Fact, scene: Scene, elements: list[Element]) -> None:
    """Draw the marks the families would draw for ``fact`` (in ``scene``'s coordinates)."""
    k, a, pts = fact.kind, fact.args, {n: _xy(scene, n) for n in scene.points}
    if k == "length":
        _add_marked(elements, LengthLabel(a[0], a[1], format_number(float(fact.value))))  # type: ignore[arg-type]
    elif k == "angle" and float(fact.value) == 90:  # type: ignore[arg-type]
        _add_marked(elements, RightAngleMark(a[1], a[0], a[2]))
    elif k == "angle":
        _add_angle_mark(elements, a[1], a[0], a[2], f"{format_number(float(fact.value))}°", 1)  # type: ignore[arg-type]
    elif k in ("parallel", "equal_length", "midpoint", "median"):
        cls = ParallelArrows if k == "parallel" else EqualTicks
        segs = {"midpoint": [(a[1], a[0]), (a[0], a[2])], "median": [(a[2], a[1]), (a[1], a[3])]}.get(k, [a[:2], a[2:]])
        count = _same_count(pts, cls, elements, *segs[0])
        for s in segs:
            _add_marked(elements, cls(s[0], s[1], count))
    elif k == "altitude":
        _add_marked(elements, RightAngleMark(a[1], a[0], a[3] if a[3] != a[1] else a[2]))
    elif k == "tangent":
        _add_marked(elements, RightAngleMark(a[1], a[2], a[0]))
    elif k == "bisector":
        _add_angle_mark(elements, a[0], a[2], a[1], None, 2)
        _add_angle_mark(elements, a[0], a[1], a[3], None, 2)
    elif k == "perpendicular":
        common = [p for p in scene.points if _on_line(scene, p, a[0], a[1]) and _on_line(scene, p, a[2], a[3])]
        if common:
            v = common[0]
            x = next(p for p in a[:2] if p != v)
            y = next(p for p in a[2:] if p != v)
            _add_marked(elements, RightAngleMark(v, x, y))


def _on_line(scene: Scene, p: str, a: str, b: str) -> bool:
    pa, pb = _xy(scene, a), _xy(scene, b)
    return abs(g.cross(_unit(pb - pa), _xy(scene, p) - pa)) <= INCIDENCE_TOL * scene_extent(scene)


def _sync_marks(positive: Scene, negative: Scene, removed: Sequence[Fact], added: Sequence[Fact]) -> list[Element]:
    """The negative's elements: marks of removed facts dropped or degraded, marks of added facts drawn."""
    removed_keys = {f.key() for f in removed}
    elements: list[Element] = []
    for el, supporters in zip(positive.elements, mark_supporters(positive)):
        if el not in negative.elements:  # dropped by the change itself
            continue
        if any(f.key() in removed_keys for f in supporters):
            el = _mark_after_removal(el, [f for f in supporters if f.key() not in removed_keys])
        if el is not None:
            elements.append(el)
    elements += [el for el in negative.elements if el not in positive.elements]
    for f in added:
        _marks_for(f, negative, elements)
    return elements


# ----------------------------------------------------------------------------- rebuilding constructions


def _definitions(scene: Scene) -> list[tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray], set[str]]]:
    """How each constructed point is made from others: ``(point, make(points), parents)``.

    From the stated facts (intersections, midpoints, feet of altitudes and medians,
    bisector feet, points on a segment at their ratio) and from the drawing (a point
    lying inside a drawn side keeps its ratio along it), so that moving a vertex moves
    everything built on it the way the figure's construction would.
    """
    out = []
    for f in scene.facts:
        a = f.args
        if f.kind == "intersection":
            out.append((a[0], lambda p, a=a: g.line_intersection(p[a[1]], p[a[2]], p[a[3]], p[a[4]]), set(a[1:])))
        elif f.kind == "midpoint":
            out.append((a[0], lambda p, a=a: g.midpoint(p[a[1]], p[a[2]]), set(a[1:])))
        elif f.kind == "median":
            out.append((a[1], lambda p, a=a: g.midpoint(p[a[2]], p[a[3]]), {a[2], a[3]}))
        elif f.kind == "altitude":
            out.append((a[1], lambda p, a=a: g.foot_of_perpendicular(p[a[0]], p[a[2]], p[a[3]]), {a[0], a[2], a[3]}))
        elif f.kind == "bisector" and g.on_segment(_xy(scene, a[1]), _xy(scene, a[2]), _xy(scene, a[3]), 1e-5):
            out.append((a[1], lambda p, a=a: g.angle_bisector_point(p[a[0]], p[a[2]], p[a[3]]), {a[0], a[2], a[3]}))
    centres = _circle_centres(scene)  # circles never move, so neither do their centres
    for x, (a, b) in _side_incidences(scene):
        if x in centres:
            continue
        t = float(
            np.dot(_xy(scene, x) - _xy(scene, a), _xy(scene, b) - _xy(scene, a))
            / np.dot(_xy(scene, b) - _xy(scene, a), _xy(scene, b) - _xy(scene, a))
        )
        out.append((x, lambda p, a=a, b=b, t=t: g.lerp(p[a], p[b], t), {a, b}))
    return out


def _propagate(scene: Scene, points: dict[str, np.ndarray], moved: set[str]) -> dict[str, np.ndarray]:
    """Recompute constructed points whose parents moved; explicitly moved points stay where the edit put them.

    Each point uses its first definition (a stated construction before a drawn
    incidence); passes repeat until nothing moves, so chains (a midpoint of a side
    whose end is itself a foot) settle in any order.
    """
    points = dict(points)
    defs: dict[str, tuple] = {}
    for x, make, parents in _definitions(scene):
        if x not in moved and x in points and x not in parents:
            defs.setdefault(x, (make, parents))
    changed = set(moved)
    for _ in range(len(defs) + 1):
        progress = False
        for x, (make, parents) in defs.items():
            if parents & changed:
                new = make(points)
                if g.dist(new, points[x]) > 1e-12:
                    points[x] = new
                    changed.add(x)
                    progress = True
        if not progress:
            break
    return points


def _side_incidences(scene: Scene) -> list[tuple[str, tuple[str, str]]]:
    """Points lying strictly inside a drawn side: (point, side)."""
    tol = INCIDENCE_TOL * scene_extent(scene)
    out = []
    for a, b in drawn_sides(scene):
        for x in scene.points:
            if x not in (a, b) and g.point_segment_distance(_xy(scene, x), _xy(scene, a), _xy(scene, b)) <= tol:
                out.append((x, (a, b)))
    return out


def _circle_incidences(scene: Scene) -> list[tuple[str, str]]:
    tol = INCIDENCE_TOL * scene_extent(scene)
    return [
        (x, f"circle:{o}")
        for o, r in _circle_centres(scene).items()
        for x in scene.points
        if x != o and abs(g.dist(_xy(scene, x), _xy(scene, o)) - r) <= tol
    ]


def _lost_incidence(positive: Scene, negative: Scene, allowed: Iterable[tuple[str, str]]) -> str | None:
    """The first incidence of the positive (a point on a side or a circle) the negative breaks, if any."""
    allowed = set(allowed)
    tol = INCIDENCE_TOL * scene_extent(negative)
    for x, (a, b) in _side_incidences(positive):
        if {x, a, b} <= set(negative.points) and (x, f"{a}{b}") not in allowed:
            if g.point_segment_distance(_xy(negative, x), _xy(negative, a), _xy(negative, b)) > tol:
                return f"{x} would leave side {a}{b}"
    radii = _circle_centres(negative)
    for x, circle in _circle_incidences(positive):
        o = circle.split(":")[1]
        if x in negative.points and (x, circle) not in allowed and o in radii:
            if abs(g.dist(_xy(negative, x), _xy(negative, o)) - radii[o]) > tol:
                return f"{x} would leave the circle at {o}"
    return None


def _fixed_points(scene: Scene) -> set[str]:
    """Points fully determined by a stated construction (or a circle centre): an edit cannot move them alone."""
    fixed = set(_circle_centres(scene))
    for f in scene.facts:
        a = f.args
        if f.kind in ("intersection", "midpoint"):
            fixed.add(a[0])
        elif f.kind in ("median", "altitude", "bisector", "tangent"):
            fixed.add(a[1])
        elif f.kind == "diameter":
            fixed.update(a[:2])
    return fixed


# ----------------------------------------------------------------------------- building and checking


def _replace_facts(facts: list[Fact], removed: Sequence[Fact], added: Sequence[Fact]) -> list[Fact]:
    """A replaced fact takes the removed one's place, so the caption keeps its order and phrasing seed."""
    out = list(facts)
    for i, r in enumerate(removed):
        j = next(j for j, f in enumerate(out) if f.key() == r.key())
        if i < len(added):
            out[j] = added[i]
        else:
            del out[j]
    return out + list(added[len(removed) :])


def _rename_scene(scene: Scene, m: dict[str, str]) -> Scene:
    """The same drawing with letters permuted; each letter keeps its placed offset, so only glyphs change."""
    return Scene(
        family=scene.family,
        unit=scene.unit,
        seed=scene.seed,
        points={m.get(k, k): v for k, v in sorted(scene.points.items(), key=lambda kv: m.get(kv[0], kv[0]))},
        elements=[_rename_element(el, m) for el in scene.elements],
        facts=[rename_fact(f, m) for f in scene.facts],
        label_offsets={m.get(k, k): v for k, v in scene.label_offsets.items()},
    )


def _geometry_of(positive: Scene, change: _Change) -> dict[str, tuple[float, float]]:
    pts = {k: _xy(positive, k) for k in positive.points if k not in change.dropped_points}
    pts.update({k: np.asarray(v, dtype=float) for k, v in change.moved.items()})
    if change.moved:
        pts = _propagate(positive, pts, set(change.moved))
    pts.update({k: np.asarray(v, dtype=float) for k, v in change.new_points.items()})
    return {k: tuple(round(float(c), COORD_DECIMALS) for c in v) for k, v in sorted(pts.items())}  # type: ignore


def _draft(positive: Scene, change: _Change) -> Scene:
    """The negative scene before checks: points, facts and elements (marks follow facts)."""
    if change.renaming:
        return _rename_scene(positive, change.renaming)
    dropped = set(change.dropped_points)
    keep = [
        el for el in positive.elements if el not in change.dropped_elements and not (set(_element_points(el)) & dropped)
    ]
    neg = Scene(
        family=positive.family,
        points=_geometry_of(positive, change),
        elements=keep + list(change.new_elements),
        facts=_replace_facts(positive.facts, change.removed, change.added),
        unit=positive.unit,
        seed=positive.seed,
        label_offsets={k: v for k, v in positive.label_offsets.items() if k not in dropped},
    )
    neg.elements = _sync_marks(positive, neg, change.removed, change.added)
    return neg


def _labels_ok(scene: Scene) -> bool:
    if set(scene.label_offsets) != set(scene.points):
        return False
    return min(label_clearances(scene).values()) > 0 and min(annotation_clearances(scene).values(), default=1.0) > 0


def _check_draft(positive: Scene, neg: Scene, change: _Change, annotation_only: bool) -> str | None:
    """Why the draft is not an honest negative (None if it is): structure, truth, incidences."""
    try:
        validate_scene(neg)
    except ValueError as e:
        return f"degenerate: {e}"
    added = {f.key() for f in change.added}
    for f in neg.facts:
        if annotation_only and f.key() in added:
            continue
        if not check_fact(neg, f):
            return f"would also change the stated fact {describe_fact(f)}"
    if annotation_only or change.renaming:
        return None
    for f in change.removed:
        if set(f.args) <= set(neg.points) and check_fact(neg, f):
            return f"{describe_fact(f)} would still hold"
    moved = max((g.dist(_xy(positive, k), _xy(neg, k)) for k in neg.points if k in positive.points), default=0.0)
    if change.moved and moved < MIN_MOVE_FRAC * scene_extent(positive):
        return "the move would be too small to see"
    return _lost_incidence(positive, neg, change.detach)


def _legible(neg: Scene) -> str | None:
    """Check the figure is readable; keep each letter where it was if it still fits, else re-place all letters."""
    try:
        check_legible(neg)
    except ValueError as e:
        return str(e)
    if not _labels_ok(neg):
        place_labels(neg)
        if not _labels_ok(neg):
            return "no free spot for every letter"
    return None


# ----------------------------------------------------------------------------- verification


def _differs_in_pixels(a: Scene, b: Scene, style: RenderStyle, a_pixels: np.ndarray | None = None) -> bool:
    """Whether negative ``b``, drawn in positive ``a``'s frame, differs from ``a`` in any pixel."""
    pa = np.asarray(render(a, style).image) if a_pixels is None else a_pixels
    return not np.array_equal(pa, np.asarray(render(b, style, frame_of=a).image))


def _verify_renaming(positive: Scene, neg: ImageNegative) -> None:
    m = neg.renaming or {}
    if sorted(m) != sorted(set(m.values())) or not set(m) <= set(positive.points):
        raise ValueError(f"relabel {m} is not a permutation of the scene's letters")
    changed = [k for k, v in m.items() if k != v]
    if len(changed) < 2:
        raise ValueError(f"relabel changes {len(changed)} letter(s); at least 2 are required")
    renamed = fact_set(rename_fact(f, m) for f in positive.facts)
    if renamed != neg.scene.fact_keys():
        raise ValueError("the negative's facts are not the positive's facts under the declared renaming")
    if renamed == positive.fact_keys():
        raise ValueError(f"relabel {m} names the same figure: every stated fact is unchanged")
    if all(check_fact(neg.scene, f) for f in positive.facts):
        raise ValueError(f"relabel {m} maps the figure onto itself: the positive caption is still true")


def _verify_change(positive: Scene, neg: ImageNegative) -> None:
    pos, new = positive.fact_keys(), neg.scene.fact_keys()
    gone, came = pos - new, new - pos
    shape = (len(neg.removed), len(neg.added))
    if shape not in ((1, 1), (1, 0), (0, 1)):
        raise ValueError(f"a negative must replace, remove or add exactly one fact; declared {shape}")
    unexpected = (gone ^ fact_set(neg.removed)) | (came ^ fact_set(neg.added))
    if unexpected:
        names = sorted(describe_fact(Fact(k, a, v)) for k, a, v in unexpected)
        raise ValueError(f"facts differ from the declared change in: {', '.join(names)}")


def _verify_truth(positive: Scene, neg: ImageNegative) -> None:
    added = fact_set(neg.added)
    for f in neg.scene.facts:
        edited = neg.annotation_only and f.key() in added
        if check_fact(neg.scene, f) == edited:
            state = "holds" if edited else "is false"
            raise ValueError(f"{describe_fact(f)} {state} in the negative's own coordinates")
    if neg.annotation_only:
        if neg.scene.points != positive.points:
            raise ValueError("an annotation-only negative must not move any point")
        return
    for f in neg.removed:
        if set(f.args) <= set(neg.scene.points) and check_fact(neg.scene, f):
            raise ValueError(f"removed fact {describe_fact(f)} still holds in the negative image")


def verify_negative(
    positive: Scene,
    negative: ImageNegative,
    style: RenderStyle | None = None,
    *,
    positive_pixels: np.ndarray | None = None,
) -> None:
    """Raise ``ValueError`` naming the problem unless ``negative`` is an exact one-fact negative of ``positive``.

    Checks, independently of how the negative was made: (a) rendered with the same
    style it differs from the positive in pixels; (b) the canonical fact sets differ by
    exactly the declared change (one replaced, removed or added), or for a relabel the
    facts equal the positive's under a renaming of ≥ 2 letters that does not map the
    figure onto itself; (c) the negative's facts hold in its own coordinates, except
    the edited annotation of an annotation-only edit, which must *not* hold (it is
    the deliberately not-to-scale label) while no point moved; a removed fact no
    longer holds in the negative image.
    """
    if negative.perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {negative.perturbation!r}")
    if negative.renaming is not None:
        _verify_renaming(positive, negative)
    else:
        _verify_change(positive, negative)
        _verify_truth(positive, negative)
    if not _differs_in_pixels(positive, negative.scene, style or negative.style, positive_pixels):
        raise ValueError("the negative renders to the same pixels as the positive")


# ----------------------------------------------------------------------------- applying


def _result(
    positive: Scene, spec: Perturbation, change: _Change, neg: Scene, style: RenderStyle, caption_seed: int
) -> ImageNegative:
    if change.renaming:
        before = [f for f in positive.facts if rename_fact(f, change.renaming).key() != f.key()]
        removed = tuple(before)
        added = tuple(rename_fact(f, change.renaming) for f in before)
    else:
        removed, added = change.removed, change.added
    return ImageNegative(
        scene=neg,
        perturbation=spec.name,
        removed=removed,
        added=added,
        caption=describe(neg, caption_seed),
        annotation_only=spec.annotation_only,
        style=style,
        renaming=change.renaming,
        image=render(neg, style, frame_of=positive).image,
    )


def _try_change(
    positive: Scene,
    spec: Perturbation,
    change: _Change,
    style: RenderStyle,
    caption_seed: int,
    positive_pixels: np.ndarray | None,
) -> ImageNegative | NotApplicable:
    try:
        neg = _draft(positive, change)
    except ValueError as e:  # a construction with no solution (parallel lines no longer meet)
        return _na(spec.name, f"degenerate: {e}", "geometry")
    why = _check_draft(positive, neg, change, spec.annotation_only)
    if why:
        kind = "breaks a stated fact" if "stated fact" in why else "geometry"
        return _na(spec.name, why, kind)
    why = _legible(neg)
    if why:
        return _na(spec.name, f"illegible: {why}", "illegible")
    if not fits_frame(neg, style, frame_of=positive):  # drawn where the positive was, it must stay on the page
        return _na(spec.name, "leaves the positive's frame", "leaves the frame")
    result = _result(positive, spec, change, neg, style, caption_seed)
    try:
        verify_negative(positive, result, style, positive_pixels=positive_pixels)
    except ValueError as e:
        return _na(spec.name, f"failed verification: {e}", "failed verification")
    return result


def apply_perturbation(
    scene: Scene,
    name: str,
    rng: np.random.Generator,
    *,
    style: RenderStyle | None = None,
    caption_seed: int = 0,
    positive_pixels: np.ndarray | None = None,
) -> PerturbationResult:
    """Perturb ``scene`` with the registered perturbation ``name``: a verified negative or why not.

    Candidates are tried best first; the first that passes every check (structure,
    truth in its own coordinates, incidences, legibility, :func:`verify_negative`)
    is returned. If none does, the :class:`NotApplicable` of the first (preferred)
    candidate says why, e.g. which stated fact the edit would break.
    """
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    spec = PERTURBATIONS[name]
    style = style or default_style()
    proposals = spec.propose(scene, rng)
    if isinstance(proposals, NotApplicable):
        return proposals
    first: NotApplicable | None = None
    for change in proposals:
        out = _try_change(scene, spec, change, style, caption_seed, positive_pixels)
        if isinstance(out, ImageNegative):
            return out
        first = first or out
    return first or _na(name, "no candidate edit")


def _key(neg: ImageNegative) -> tuple:
    return (neg.scene.fact_keys(), tuple(sorted(neg.scene.points.items())))


def make_image_negatives(
    scene: Scene,
    k: int,
    seed: int,
    allow_drastic: bool = False,
    *,
    style: RenderStyle | None = None,
    caption_seed: int = 0,
) -> tuple[list[ImageNegative], Counter]:
    """``k`` verified image negatives of ``scene`` and a Counter of why others were skipped.

    Perturbation types are visited in an order drawn from ``seed``, one negative per
    type per round, so a sample gets as many *distinct* kinds of error as it allows
    before any kind repeats (the paper uses 10 negatives per positive; profiles use
    ``num_negatives``). A type that does not apply is dropped for this scene; a
    duplicate is skipped, and a type that keeps repeating itself is dropped. Skips are counted as ``"<type>: <kind>"``, and a shortfall
    below ``k`` as ``"shortfall"``. Deterministic in ``(scene, k, seed, allow_drastic, style)``.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    style = style or default_style()
    rng = np.random.default_rng(seed)
    names = [p.name for p in PERTURBATIONS.values() if allow_drastic or not p.drastic]
    order = _shuffled(rng, names)
    pixels = np.asarray(render(scene, style).image)
    negatives: list[ImageNegative] = []
    seen: set = set()
    skips: Counter = Counter()
    duplicates: Counter = Counter()
    while len(negatives) < k and order:
        for name in list(order):
            if len(negatives) == k:
                break
            out = apply_perturbation(scene, name, rng, style=style, caption_seed=caption_seed, positive_pixels=pixels)
            if isinstance(out, NotApplicable):
                skips[f"{name}: {out.kind}"] += 1
                order.remove(name)
            elif _key(out) in seen:
                skips[f"{name}: duplicate"] += 1
                duplicates[name] += 1
                if duplicates[name] >= MAX_DUPLICATES:  # its random choices are used up
                    order.remove(name)
            else:
                seen.add(_key(out))
                negatives.append(out)
    if len(negatives) < k:
        skips["shortfall"] += k - len(negatives)
    return negatives, skips


# ============================================================================= the perturbations
# Each proposer returns NotApplicable (nothing to perturb) or an iterable of candidate
# changes, best first. Candidates are cheap to propose; _try_change does the checking.

# ----------------------------------------------------------------------------- relabel


def _centres(scene: Scene) -> set[str]:
    return {el.center for el in scene.elements if isinstance(el, (Circle, Arc))}


def _relabel(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Permute 2 or 3 letters of the scene (a swap or a 3-cycle).

    Letters are permuted *within* the scene rather than replaced by fresh ones: a fresh
    letter would give the negative away (a letter the caption never mentions), and the
    paper's rules forbid new letters. Circle centres keep their letter (⊙O is a naming
    convention, not a label to confuse). A relabel that names the same figure (a
    rotation or reflection of the labels that keeps every stated fact true, like
    ABCD → CDAB on a square) is rejected by :func:`verify_negative`.
    """
    names = sorted(p for p in scene.points if p not in _centres(scene))
    if len(names) < 2:
        return _na("relabel", "fewer than two letters to permute")

    def candidates():
        for _ in range(RELABEL_TRIES):
            size = 3 if len(names) >= 3 and rng.random() < 0.5 else 2
            chosen = [str(x) for x in rng.choice(names, size=size, replace=False)]
            yield _Change(renaming={a: chosen[(i + 1) % size] for i, a in enumerate(chosen)})

    return candidates()


# ----------------------------------------------------------------------------- numbers (annotation-only)


def _new_lengths(value: float) -> list[float]:
    """Plausible wrong values for a stated length: near misses first, one decimal at most."""
    v = float(value)
    steps = (1, -1, 2, -2, 3, -3) if v >= 2 else (0.5, -0.5, 1, 1.5)
    out = [round(v + s, 1) for s in steps]
    return [x for x in out if x > 0 and abs(x - v) > 1e-9]


def _change_length(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Write a different number beside a stated length (the figure is not redrawn: "not to scale")."""
    facts = [f for f in scene.facts if f.kind == "length"]
    if not facts:
        return _na("change_length", "no stated length")
    return (
        _Change(removed=(f,), added=(Fact("length", f.args, nice_value(v)),))
        for f in _shuffled(rng, facts)
        for v in _shuffled(rng, _new_lengths(float(f.value)))[:3]
    )


def _new_angles(value: float) -> list[int]:
    """Wrong values for a stated angle: near misses, never 90 (that would need a right-angle square)."""
    v = int(round(float(value)))
    out = [v + s for s in (5, -5, 10, -10, 15, -15, 20, -20)]
    return [x for x in out if 10 <= x <= 170 and x != 90 and abs(x - v) >= NUMBER_MIN_CHANGE_DEG]


def _change_angle(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Write a different value on a marked angle (annotation-only, like a changed length)."""
    facts = [f for f in scene.facts if f.kind == "angle" and float(f.value) != 90]  # type: ignore[arg-type]
    if not facts:
        return _na("change_angle", "no stated angle other than a right angle")
    return (
        _Change(removed=(f,), added=(Fact("angle", f.args, v),))
        for f in _shuffled(rng, facts)
        for v in _shuffled(rng, _new_angles(float(f.value)))[:3]
    )


def _rays_at(scene: Scene, v: str) -> list[str]:
    """Points joined to ``v`` by a drawn side (its neighbours in the drawing)."""
    out = []
    for a, b in drawn_sides(scene):
        for p, q in ((a, b), (b, a)):
            if p == v and q not in out:
                out.append(q)
    return out


def _marked_at(scene: Scene, v: str, a: str, b: str) -> bool:
    return any(
        isinstance(el, (AngleMark, RightAngleMark)) and el.vertex == v and {el.a, el.b} == {a, b}
        for el in scene.elements
    )


def _move_right_angle_mark(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Put the right-angle square of a stated right angle at another vertex (annotation-only).

    The negative states ∠ at the new vertex = 90° while it is drawn at its true size: a
    figure whose right-angle mark sits at the wrong corner. Corners that really are
    right angles (the other corners of a rectangle) are not candidates: the moved mark
    would be true.
    """
    rights = [f for f in scene.facts if f.kind == "angle" and float(f.value) == 90]  # type: ignore[arg-type]
    if not rights:
        return _na("move_right_angle_mark", "no stated right angle")
    polys = [el.vertices for el in scene.elements if isinstance(el, Polygon)]

    def candidates():
        for f in _shuffled(rng, rights):
            owner = next((vs for vs in polys if set(f.args) <= set(vs)), None)
            corners = owner if owner else tuple(scene.points)
            for v in _shuffled(rng, [c for c in corners if c != f.args[1]]):
                arms = [p for p in (_neighbours(owner, v) if owner else _rays_at(scene, v))]
                if len(arms) != 2 or _marked_at(scene, v, *arms):
                    continue
                new = Fact("angle", (arms[0], v, arms[1]), 90)
                if new.key() not in scene.fact_keys() and not check_fact(scene, new):
                    yield _Change(removed=(f,), added=(new,))

    return candidates()


def _neighbours(vs: Sequence[str], v: str) -> list[str]:
    i = list(vs).index(v)
    return [vs[i - 1], vs[(i + 1) % len(vs)]]


# ----------------------------------------------------------------------------- shape concepts


def _shape_change(scene: Scene, f: Fact, moved: dict[str, np.ndarray]) -> _Change | None:
    """Replace shape fact ``f`` by the name the moved vertices give (None if unchanged or degenerate)."""
    pts = [moved.get(v, _xy(scene, v)) for v in f.args]
    try:
        name = shape_name(pts)
    except ValueError:
        return None
    if name == f.value:
        return None
    return _Change(removed=(f,), added=(Fact("shape", f.args, name),), moved=moved)


Locus = tuple  # ("line", point, direction) | ("circle", centre, radius) | ("point", xy)


def _triangle_loci(u: np.ndarray, w: np.ndarray, v: np.ndarray) -> list[Locus]:
    """Where vertex v could go to make triangle uvw isosceles, right-angled or equilateral."""
    mid, d = g.midpoint(u, w), _unit(w - u)
    n = _perp(d) if g.cross(d, v - u) >= 0 else -_perp(d)
    base = g.dist(u, w)
    return [
        ("line", mid, n),
        ("circle", u, base),
        ("circle", w, base),
        ("circle", mid, base / 2),
        ("line", u, n),
        ("line", w, n),
        ("point", mid + n * base * math.sqrt(3) / 2),
    ]


def _nearest_on(locus: Locus, v: np.ndarray) -> list[np.ndarray]:
    kind = locus[0]
    if kind == "point":
        return [locus[1]]
    if kind == "line":
        p, d = locus[1], locus[2]
        return [p + float(np.dot(v - p, d)) * d]
    c, r = locus[1], locus[2]
    return [c + r * _unit(v - c)] if g.dist(v, c) > 1e-9 else []


def _line_meets(p: np.ndarray, d: np.ndarray, locus: Locus) -> list[np.ndarray]:
    """Intersections of the line p + t·d with a locus."""
    if locus[0] == "point":
        q = locus[1]
        return [q] if abs(g.cross(d, q - p)) < 1e-9 else []
    if locus[0] == "line":
        try:
            return [g.line_intersection(p, p + d, locus[1], locus[1] + locus[2])]
        except ValueError:
            return []
    return _line_circle(p, d, locus[1], locus[2])


def _line_circle(p: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> list[np.ndarray]:
    d = _unit(d)
    t0 = float(np.dot(c - p, d))
    h2 = r * r - (g.dist(c, p) ** 2 - t0 * t0)
    if h2 < 0:
        return []
    h = math.sqrt(h2)
    return [p + (t0 - h) * d, p + (t0 + h) * d]


def _circle_meets(c: np.ndarray, r: float, locus: Locus) -> list[np.ndarray]:
    """Intersections of the circle (c, r) with a locus."""
    if locus[0] == "point":
        return [locus[1]] if abs(g.dist(locus[1], c) - r) < 1e-9 else []
    if locus[0] == "line":
        return _line_circle(locus[1], locus[2], c, r)
    c2, r2 = locus[1], locus[2]
    d = g.dist(c, c2)
    if d < 1e-12 or d > r + r2 or d < abs(r - r2):
        return []
    a = (r * r - r2 * r2 + d * d) / (2 * d)
    h = math.sqrt(max(r * r - a * a, 0.0))
    e = _unit(c2 - c)
    m = c + a * e
    return [m + h * _perp(e), m - h * _perp(e)]


def _constraint(scene: Scene, v: str) -> Locus | None | str:
    """What v must stay on when moved: a drawn side's line, a circle, 'free', or None (fixed)."""
    if v in _fixed_points(scene):
        return None
    sides = {frozenset(s) for x, s in _side_incidences(scene) if x == v}
    sides |= {frozenset(f.args[1:]) for f in scene.facts if f.kind == "on_segment" and f.args[0] == v}
    circles = [c.split(":")[1] for x, c in _circle_incidences(scene) if x == v]
    if len(sides) + len(circles) > 1:
        return None
    if sides:
        a, b = (_xy(scene, x) for x in sorted(next(iter(sides))))
        return ("line", a, _unit(b - a))
    if circles:
        return ("circle", _xy(scene, circles[0]), _circle_centres(scene)[circles[0]])
    return "free"


def _vertex_moves(scene: Scene, v: str, u: str, w: str) -> list[np.ndarray]:
    """Candidate positions of vertex v (others fixed): on each special locus, then small nudges off them."""
    cv, cu, cw = _xy(scene, v), _xy(scene, u), _xy(scene, w)
    con = _constraint(scene, v)
    if con is None:
        return []
    loci = _triangle_loci(cu, cw, cv)
    ext = scene_extent(scene)
    if con == "free":
        out = [q for loc in loci for q in _nearest_on(loc, cv)]
        d = _unit(cw - cu)
        out += [cv + s * ext * e for s in (0.1, -0.1, 0.15, -0.15) for e in (d, _perp(d))]
    elif con[0] == "line":
        out = [q for loc in loci for q in _line_meets(con[1], con[2], loc)]
        out += [cv + s * ext * con[2] for s in (0.1, -0.1, 0.15, -0.15)]
    else:
        out = [q for loc in loci for q in _circle_meets(con[1], con[2], loc)]
        out += [g.rotate(cv, con[1], a) for a in (12.0, -12.0, 20.0, -20.0)]
    return sorted(out, key=lambda q: g.dist(q, cv))


def _triangle_shape(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Change a triangle's shape name by moving one vertex, e.g. equilateral → isosceles,
    isosceles → scalene, scalene → right or isosceles, right → isosceles right.

    Vertices built by a construction cannot move alone; a vertex on a side or a circle
    moves along it; everything built on the vertex follows.
    """
    facts = [f for f in scene.facts if f.kind == "shape" and len(f.args) == 3]
    if not facts:
        return _na("triangle_shape", "no stated triangle shape")

    def candidates():
        for f in _shuffled(rng, facts):
            for i in rng.permutation(3):
                v, u, w = f.args[i], f.args[(i + 1) % 3], f.args[(i + 2) % 3]
                for q in _vertex_moves(scene, v, u, w):
                    change = _shape_change(scene, f, {v: q})
                    if change:
                        yield change

    return candidates()


def _quad_variants(p: list[np.ndarray], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """New (P2, P3) for quadrilateral P0..P3 with base P0P1 fixed, by the current shape name.

    square → rectangle or rhombus; rectangle → square or parallelogram; rhombus →
    square or parallelogram; parallelogram → rectangle or rhombus; trapezoid (base
    P0P1 ∥ P3P2) ↔ isosceles trapezoid.
    """
    p0, p1, p2, p3 = p
    u = _unit(p1 - p0)
    n = _perp(u) if g.cross(u, p3 - p0) >= 0 else -_perp(u)
    base, side = g.dist(p0, p1), g.dist(p0, p3)
    theta = math.degrees(math.atan2(float(np.dot(p3 - p0, n)), float(np.dot(p3 - p0, u))))

    def para(length: float, deg: float) -> tuple[np.ndarray, np.ndarray]:
        d = length * (math.cos(math.radians(deg)) * u + math.sin(math.radians(deg)) * n)
        return p1 + d, p0 + d

    if name in ("parallelogram", "rectangle", "rhombus", "square"):
        return [
            para(side, 90.0),
            para(base, theta),
            para(side * 0.75, theta),
            para(side * 1.3, theta),
            para(side, theta + 18.0),
            para(side, theta - 18.0),
        ]
    if name in ("trapezoid", "isosceles trapezoid") and g.line_angle_between(p0, p1, p3, p2) < 1e-6:
        top, h = g.dist(p3, p2) * np.sign(np.dot(p2 - p3, u)), float(np.dot(p3 - p0, n))
        sym = p0 + (base - top) / 2 * u + h * n
        return [(sym + top * u, sym)] + [(p2 + s * base * u, p3 + s * base * u) for s in (0.15, -0.15, 0.25, -0.25)]
    return []


def _quadrilateral_shape(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Change a quadrilateral's shape name by moving the two vertices off one side: the
    paper's square → rectangle and rhombus → parallelogram, and parallelogram → rectangle
    or rhombus, trapezoid ↔ isosceles trapezoid. Diagonal crossings and midpoints follow."""
    facts = [f for f in scene.facts if f.kind == "shape" and len(f.args) == 4]
    if not facts:
        return _na("quadrilateral_shape", "no stated quadrilateral shape")
    fixed = _fixed_points(scene)

    def candidates():
        for f in _shuffled(rng, facts):
            vs = list(f.args)
            bases = [vs[i:] + vs[:i] for i in range(4)] + [list(reversed(vs[i:] + vs[:i])) for i in range(4)]
            for order in _shuffled(rng, bases):
                if {order[2], order[3]} & fixed:
                    continue
                pts = [_xy(scene, v) for v in order]
                for q2, q3 in _quad_variants(pts, str(f.value)):
                    change = _shape_change(scene, f, {order[2]: q2, order[3]: q3})
                    if change:
                        yield change

    return candidates()


def _covered_on_circle(scene: Scene, x: str, o: str, skip: Fact) -> bool:
    """Whether another stated fact already says x is on circle o."""
    for f in scene.facts:
        if f is skip:
            continue
        a = f.args
        if (
            (f.kind == "on_circle" and a == (x, o))
            or (f.kind == "radius" and a == (o, x))
            or (f.kind in ("secant", "tangent") and a[1:] == (x, o))
            or (f.kind == "diameter" and x in a[:2] and a[2] == o)
        ):
            return True
    return False


def _diameter_to_chord(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Turn a diameter into a chord that misses the centre (the paper's "diameter → radius"
    concept swap, as an exact image edit): ``diameter(A,B,O)`` becomes ``on_circle`` of the
    endpoint no other fact puts on the circle. A line through an outside point P (a
    secant PAB) turns about P; otherwise B slides along the circle."""
    facts = [f for f in scene.facts if f.kind == "diameter"]
    if not facts:
        return _na("diameter_to_chord", "no stated diameter")
    radii = _circle_centres(scene)

    def candidates():
        for f in facts:
            a, b, o = f.args
            if o not in radii:
                continue
            uncovered = [x for x in (a, b) if not _covered_on_circle(scene, x, o, f)]
            if len(uncovered) > 1:
                continue
            added = (Fact("on_circle", (uncovered[0], o)),) if uncovered else ()
            # the chord's line passed through the centre: that is the fact being changed
            detach = tuple((o, f"{p}{q}") for x, (p, q) in _side_incidences(scene) if x == o)
            for moved in _chord_moves(scene, a, b, o, radii[o], rng):
                yield _Change(removed=(f,), added=added, moved=moved, detach=detach)

    return candidates()


def _chord_moves(scene: Scene, a: str, b: str, o: str, r: float, rng) -> Iterable[dict[str, np.ndarray]]:
    pa, pb, po = _xy(scene, a), _xy(scene, b), _xy(scene, o)
    anchors = [
        p for p in scene.points if p not in (a, b, o) and _on_line(scene, p, a, b) and g.dist(_xy(scene, p), po) > r
    ]
    for deg in CHORD_TURN_DEG:
        for sign in _shuffled(rng, [1.0, -1.0]):
            if anchors:
                p = _xy(scene, anchors[0])
                d = g.rotate(po, p, sign * deg) - p
                hits = _line_circle(p, d, po, r)
                if len(hits) == 2:
                    near, far = hits if g.dist(hits[0], p) < g.dist(hits[1], p) else hits[::-1]
                    a_near = g.dist(pa, p) < g.dist(pb, p)
                    yield {a: near, b: far} if a_near else {a: far, b: near}
            else:
                yield {b: g.rotate(pb, po, sign * 3 * deg)}


# ----------------------------------------------------------------------------- relations


def _triangle_scaled(scene: Scene, f: Fact, s: float) -> _Change | None:
    """congruent → similar: scale the second triangle about its centroid (None if it cannot move alone)."""
    t1, t2 = f.args[:3], f.args[3:]
    if set(t1) & set(t2) or set(t2) & _fixed_points(scene):
        return None
    p2 = [_xy(scene, x) for x in t2]
    c = np.mean(p2, axis=0)
    return _Change(removed=(f,), added=(Fact("similar", f.args),), moved={x: c + s * (p - c) for x, p in zip(t2, p2)})


def _similar_congruent(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """congruent → similar (the paper's similar ↔ congruent verb swap), as an exact image edit:
    rescale the second triangle so the two are similar but no longer congruent.

    Only this direction makes an image negative: congruent triangles are also similar,
    so a figure with △ABC ≅ △DEF still fits the caption "△ABC ~ △DEF" (the text rules
    use both directions, and check each). In every current family the two triangles
    share a vertex (△ABM ≅ △ACM, △OTP ≅ △OSP), so one cannot be rescaled alone: this
    perturbation says so instead of faking it.
    """
    facts = [f for f in scene.facts if f.kind in ("similar", "congruent")]
    if not facts:
        return _na("similar_congruent", "no stated similar or congruent triangles")
    congruent = [f for f in facts if f.kind == "congruent"]
    if not congruent:
        return _na(
            "similar_congruent",
            "only similar triangles: congruent ones would still be similar, "
            "so the positive caption would fit the negative",
        )
    changes = [c for f in congruent for s in (0.75, 1.3) if (c := _triangle_scaled(scene, f, s))]
    if not changes:
        a = congruent[0].args
        return _na(
            "similar_congruent",
            f"△{''.join(a[:3])} and △{''.join(a[3:])} share a vertex or a "
            "constructed point: neither can be rescaled alone",
            "breaks a stated fact",
        )
    return changes


def _line_points(scene: Scene, a: str, b: str) -> list[str]:
    """Named points on the drawn sides that lie along line ab."""
    out = []
    for p, q in drawn_sides(scene):
        if _on_line(scene, p, a, b) and _on_line(scene, q, a, b):
            out += [p, q] + [x for x, s in _side_incidences(scene) if s == (p, q)]
    return list(dict.fromkeys(out))


def _crossing_side(scene: Scene, x: str, line: list[str]) -> tuple[str, str] | None:
    """A drawn side through x that is not along the line being turned (x is kept on it)."""
    for p, q in drawn_sides(scene):
        if x in (p, q) or (x, (p, q)) in _side_incidences(scene):
            if not (p in line and q in line):
                return p, q
    return None


def _turn_line(scene: Scene, line: list[str], pivot: str, deg: float) -> dict[str, np.ndarray]:
    """Turn the line through ``line``'s points about ``pivot``; points on another side slide along it."""
    c = _xy(scene, pivot)
    far = next(x for x in line if x != pivot)
    d = g.rotate(_xy(scene, far), c, deg) - c
    moved = {}
    for x in line:
        if x == pivot:
            continue
        side = _crossing_side(scene, x, line)
        if side is None:
            moved[x] = g.rotate(_xy(scene, x), c, deg)
        else:
            try:
                moved[x] = g.line_intersection(c, c + d, _xy(scene, side[0]), _xy(scene, side[1]))
            except ValueError:
                return {}
    return moved


def _parallel_turns(
    scene: Scene, rng, name: str, degrees: Callable[[float], list[float]], added: Callable[[Fact], tuple[Fact, ...]]
) -> Iterable[_Change] | NotApplicable:
    facts = [f for f in scene.facts if f.kind == "parallel"]
    if not facts:
        return _na(name, "no stated parallel lines")

    def candidates():
        for f in _shuffled(rng, facts):
            for a, b in _shuffled(rng, [f.args[:2], f.args[2:]]):
                line = _line_points(scene, a, b)
                pivots = [x for x in line if _crossing_side(scene, x, line)]
                for pivot in _shuffled(rng, pivots):
                    for deg in degrees(g.line_angle_between(*(_xy(scene, x) for x in f.args))):
                        moved = _turn_line(scene, line, pivot, deg)
                        if moved:
                            yield _Change(removed=(f,), added=added(f), moved=moved)

    return candidates()


def _unparallel(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Make two stated parallel lines non-parallel: turn one of them by 10-20° about a
    point where another stroke crosses it (points on it slide along their other strokes)."""
    signs = [1.0, -1.0] if rng.random() < 0.5 else [-1.0, 1.0]
    return _parallel_turns(
        scene, rng, "unparallel", lambda _: [s * d for d in UNPARALLEL_DEG for s in signs], lambda f: ()
    )


def _parallel_to_perpendicular(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """parallel → perpendicular (drastic: the paper keeps it out of image negatives)."""
    return _parallel_turns(
        scene, rng, "parallel_to_perpendicular", lambda _: [90.0, -90.0], lambda f: (Fact("perpendicular", f.args),)
    )


def _tangent_to_secant(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Turn the tangent PT about P into the circle so it cuts it: T slides to the nearer crossing."""
    facts = [f for f in scene.facts if f.kind == "tangent"]
    radii = _circle_centres(scene)
    if not facts:
        return _na("tangent_to_secant", "no stated tangent")

    def candidates():
        for f in _shuffled(rng, facts):
            p, t, o = f.args
            if o not in radii:
                continue
            pp, pt, po = _xy(scene, p), _xy(scene, t), _xy(scene, o)
            half = math.degrees(math.asin(min(1.0, radii[o] / g.dist(pp, po))))
            sign = 1.0 if g.cross(pt - pp, po - pp) > 0 else -1.0  # turn towards the centre
            for frac in (0.35, 0.5, 0.65):
                d = g.rotate(pt, pp, sign * frac * half) - pp
                hits = _line_circle(pp, d, po, radii[o])
                if len(hits) == 2:
                    yield _Change(removed=(f,), added=(Fact("secant", f.args),), moved={t: hits[0]})

    return candidates()


def _move_off_circle(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Move a point stated to lie on a circle radially off it (the fact is removed)."""
    facts = [f for f in scene.facts if f.kind == "on_circle" and f.args[1] in _circle_centres(scene)]
    if not facts:
        return _na("move_off_circle", "no stated point on a drawn circle")
    fixed = _fixed_points(scene)

    def candidates():
        for f in _shuffled(rng, facts):
            p, o = f.args
            if p in fixed:
                continue
            pp, po = _xy(scene, p), _xy(scene, o)
            for s in OFF_CIRCLE_SCALES:
                yield _Change(removed=(f,), moved={p: po + s * (pp - po)}, detach=((p, f"circle:{o}"),))

    return candidates()


def _move_midpoint(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Slide a stated midpoint along its side: ``midpoint(M,A,B)`` becomes ``on_segment(M,A,B)``
    and its equal ticks go with it (they are the midpoint's own marks, not another fact)."""
    facts = [f for f in scene.facts if f.kind == "midpoint"]
    if not facts:
        return _na("move_midpoint", "no stated midpoint")

    def candidates():
        for f in _shuffled(rng, facts):
            m, a, b = f.args
            on = Fact("on_segment", f.args)
            added = () if on.key() in scene.fact_keys() else (on,)
            for s in MIDPOINT_SHIFTS:
                for sign in _shuffled(rng, [1.0, -1.0]):
                    yield _Change(
                        removed=(f,), added=added, moved={m: g.lerp(_xy(scene, a), _xy(scene, b), 0.5 + sign * s)}
                    )

    return candidates()


# ----------------------------------------------------------------------------- auxiliary segments

CEVIANS = ("altitude", "median", "bisector")


def _cevian_foot(kind: str, v: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Where the altitude, median or bisector from v meets side pq."""
    if kind == "altitude":
        return g.foot_of_perpendicular(v, p, q)
    if kind == "median":
        return g.midpoint(p, q)
    return g.angle_bisector_point(v, p, q)


def _cevian_swap(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Turn an altitude into a median or bisector (and so on) by sliding its foot along the side."""
    facts = [f for f in scene.facts if f.kind in CEVIANS]
    if not facts:
        return _na("cevian_swap", "no stated altitude, median or bisector")

    def candidates():
        for f in _shuffled(rng, facts):
            v, foot, p, q = f.args
            for kind in _shuffled(rng, [k for k in CEVIANS if k != f.kind]):
                new = _cevian_foot(kind, _xy(scene, v), _xy(scene, p), _xy(scene, q))
                yield _Change(removed=(f,), added=(Fact(kind, f.args),), moved={foot: new})

    return candidates()


def _remove_auxiliary(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Erase an auxiliary segment (altitude, median, bisector) with its foot and marks.

    Only when the foot appears in no other stated fact and carries no other stroke:
    otherwise erasing it would remove a second fact."""
    facts = [f for f in scene.facts if f.kind in CEVIANS]
    if not facts:
        return _na("remove_auxiliary", "no stated altitude, median or bisector")
    out, reasons = [], []
    for f in facts:
        v, foot = f.args[:2]
        others = [x for x in _facts_with(scene, foot) if x is not f]
        strokes = [el for el in scene.elements if foot in _element_points(el) and not isinstance(el, _MARKS)]
        if others:
            reasons.append(f"its foot {foot} is also in {describe_fact(others[0])}")
        elif any(not (isinstance(el, Segment) and set(_element_points(el)) == {v, foot}) for el in strokes):
            reasons.append(f"{foot} carries other strokes")
        else:
            out.append(_Change(removed=(f,), dropped_points=(foot,), dropped_elements=tuple(strokes)))
    return _shuffled(rng, out) if out else _na("remove_auxiliary", reasons[0], "breaks a stated fact")


def _fresh_letter(scene: Scene, preferred: str) -> str:
    used = set(scene.points)
    if preferred not in used:
        return preferred
    return next(c for c in ALPHABET if c not in used)


def _add_auxiliary(scene: Scene, rng: np.random.Generator) -> Iterable[_Change] | NotApplicable:
    """Draw a new altitude, median or bisector in a triangle (dashed, with its marks and a new foot).

    The one place a negative gets a new letter: the new foot must be named for the
    added fact to be stated. The paper notes its negative figures sometimes gain marks
    the original lacked; this is that edit, exactly."""
    tris = [el.vertices for el in scene.elements if isinstance(el, Polygon) and len(el.vertices) == 3]
    if not tris:
        return _na("add_auxiliary", "no triangle drawn")
    preferred = {"altitude": "H", "median": "M", "bisector": "D"}

    def candidates():
        for vs in _shuffled(rng, tris):
            for i in rng.permutation(3):
                v, p, q = vs[i], vs[(i + 1) % 3], vs[(i + 2) % 3]
                inside = {x for x, s in _side_incidences(scene) if set(s) == {p, q}}
                if inside & set(_rays_at(scene, v)):
                    continue  # v already has a segment to a point of side pq
                for kind in _shuffled(rng, list(CEVIANS)):
                    foot = _cevian_foot(kind, _xy(scene, v), _xy(scene, p), _xy(scene, q))
                    name = _fresh_letter(scene, preferred[kind])
                    yield _Change(
                        added=(Fact(kind, (v, name, p, q)),),
                        new_points={name: foot},
                        new_elements=(Segment(v, name, dashed=True),),
                    )

    return candidates()


# ----------------------------------------------------------------------------- registry

PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            "relabel",
            "relabel",
            False,
            False,
            "permute 2-3 letters within the scene; never a relabel that keeps the figure's facts",
            _relabel,
        ),
        Perturbation(
            "change_length", "number", False, True, "write a different value beside a stated length", _change_length
        ),
        Perturbation("change_angle", "number", False, True, "write a different value on a marked angle", _change_angle),
        Perturbation(
            "triangle_shape",
            "shape_concept",
            False,
            False,
            "equilateral → isosceles, isosceles → scalene, scalene → right/isosceles, ... (move one vertex)",
            _triangle_shape,
        ),
        Perturbation(
            "quadrilateral_shape",
            "shape_concept",
            False,
            False,
            "square → rectangle, rhombus → parallelogram, parallelogram → rectangle/rhombus, trapezoid ↔ "
            "isosceles trapezoid",
            _quadrilateral_shape,
        ),
        Perturbation(
            "diameter_to_chord",
            "shape_concept",
            False,
            False,
            "a diameter becomes a chord that misses the centre",
            _diameter_to_chord,
        ),
        Perturbation(
            "similar_congruent",
            "relation",
            False,
            False,
            "congruent → similar (rescale one triangle)",
            _similar_congruent,
        ),
        Perturbation(
            "parallel_to_perpendicular",
            "relation",
            True,
            False,
            "turn one of two parallel lines perpendicular (drastic)",
            _parallel_to_perpendicular,
        ),
        Perturbation("unparallel", "ours", False, False, "turn one of two parallel lines by 10-20°", _unparallel),
        Perturbation(
            "move_right_angle_mark",
            "ours",
            False,
            True,
            "move a right-angle square to another corner (annotation-only)",
            _move_right_angle_mark,
        ),
        Perturbation("tangent_to_secant", "ours", False, False, "turn a tangent into a secant", _tangent_to_secant),
        Perturbation("move_off_circle", "ours", False, False, "move a point off its circle", _move_off_circle),
        Perturbation("move_midpoint", "ours", False, False, "slide a midpoint off the middle", _move_midpoint),
        Perturbation(
            "cevian_swap", "ours", False, False, "altitude ↔ median ↔ bisector (slide the foot)", _cevian_swap
        ),
        Perturbation(
            "remove_auxiliary", "ours", False, False, "erase an altitude, median or bisector", _remove_auxiliary
        ),
        Perturbation("add_auxiliary", "ours", False, False, "draw a new altitude, median or bisector", _add_auxiliary),
    )
}
ANNOTATION_ONLY = frozenset(p.name for p in PERTURBATIONS.values() if p.annotation_only)
assert all(p.category in CATEGORIES for p in PERTURBATIONS.values())


def perturbation_table() -> list[dict[str, object]]:
    """The registry as rows (name, category, drastic, annotation_only, summary), for lessons and docs."""
    return [
        {
            "name": p.name,
            "category": p.category,
            "drastic": p.drastic,
            "annotation_only": p.annotation_only,
            "summary": p.summary,
        }
        for p in PERTURBATIONS.values()
    ]
