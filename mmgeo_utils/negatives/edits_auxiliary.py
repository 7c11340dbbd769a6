"""Auxiliary-segment perturbations: swap, erase or draw an altitude, median or bisector (lesson 02)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..diagrams import geometry as g
from ..diagrams.facts import describe_fact
from ..diagrams.families import ALPHABET
from ..diagrams.scene import Fact, Polygon, Scene, Segment
from .change import NotApplicable, _Change, _element_points, _na, _shuffled, _xy
from .constructions import _side_incidences
from .edits_numbers import _rays_at
from .marks import _MARKS

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


def _facts_with(scene: Scene, point: str) -> list[Fact]:
    return [f for f in scene.facts if point in f.args]


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
