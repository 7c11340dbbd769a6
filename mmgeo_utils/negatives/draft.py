"""Building the negative scene a change asks for, and checking it is an honest negative (lesson 02).

:func:`_draft` applies a :class:`~.change._Change` (points moved and rebuilt, facts replaced,
marks synced); :func:`_check_draft` and :func:`_legible` say why a draft is rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..diagrams import geometry as g
from ..diagrams.facts import check_fact, describe_fact
from ..diagrams.families import check_legible
from ..diagrams.layout import (
    LabelObstacles,
    annotation_clearances,
    label_clearances,
    layout_constants,
    place_labels,
    scene_extent,
)
from ..diagrams.scene import AngleMark, Arc, Circle, Element, Fact, Polygon, RightAngleMark, Scene, validate_scene
from .change import _Change, _element_points, _xy
from .constructions import _lost_incidence, _propagate
from .marks import _sync_marks

__all__ = ["rename_fact"]


MIN_MOVE_FRAC = 0.05  # a geometric edit moves some point by at least this fraction of the figure

COORD_DECIMALS = 6  # as the families store coordinates, so a negative survives a JSON round trip


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


def _displaced_letters(scene: Scene, obs: LabelObstacles) -> list[str]:
    """The letters that must be placed again: without an offset (a new point), or touching a stroke,
    a point, an angle value or a length label, or (both of a pair) each other."""
    missing = [k for k in scene.points if k not in scene.label_offsets]
    labels = label_clearances(scene, obstacles=obs)
    numbers = annotation_clearances(scene, obstacles=obs)
    return missing + [k for k in labels if labels[k] <= 0 or numbers.get(k, 1.0) <= 0]


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


def _legible(neg: Scene, positive: Scene) -> str | None:
    """Check the figure is readable; keep every letter the edit did not displace where the positive has it.

    The negative is laid out with the positive's constants (label radius, centroid: what the renderer's
    ``frame_of`` uses), and only the displaced letters (of new or moved points) are placed again, around the
    kept ones. A draft is rejected rather than a letter moved that the edit did not move (a new stroke
    across the letter of a point that stayed), or when the displaced letters find no free spot: a letter
    that moves for no reason is a difference a model could learn instead of the edited fact.
    """
    obs = LabelObstacles(neg, **layout_constants(positive))
    try:
        check_legible(neg, obs)
    except ValueError as e:
        return str(e)
    displaced = _displaced_letters(neg, obs)
    covered = [k for k in displaced if k in positive.points and tuple(positive.points[k]) == tuple(neg.points[k])]
    if covered:  # the letter of a point the edit did not touch would have to move: try another candidate
        return f"the edit would cover the letter {covered[0]}"
    if displaced:
        place_labels(neg, obstacles=obs, only=displaced)
        if _displaced_letters(neg, obs):
            return "no free spot for the letters the edit displaced"
    return None
