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

==================  ==================================================================
module              what it holds
==================  ==================================================================
``draft``           :class:`_Draft`, the builder every family uses; nice numbers, letters
``triangles``       right-triangle altitude, isosceles median, angle bisector, similar
                    triangles, midsegment, equilateral triangle
``lines``           parallels cut by a transversal
``circles``         Thales' circle, external tangents, chord perpendicular, inscribed angle
``quadrilaterals``  a quadrilateral of a random kind with its diagonals
``legibility``      :func:`check_legible` and the letter-placement check
==================  ==================================================================

This module assembles the registry :data:`FAMILIES` (its order decides which family a
seed draws in :func:`sample_scene`, so it is part of every dataset's bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..facts import check_scene_facts
from ..layout import LabelObstacles
from ..scene import Scene, validate_scene
from .circles import chord_perpendicular, inscribed_angle, tangent_external, thales_circle
from .draft import ALPHABET, SCENE_SIZE, _Draft, _Reject, format_number, is_nice, nice_value
from .legibility import (
    MIN_ANGLE_DEG,
    MIN_POINT_GAP_FRAC,
    MIN_POINT_LINE_GAP_FRAC,
    MIN_SIDE_FRAC,
    _check_labels,
    check_legible,
    drawn_sides,
)
from .lines import parallel_transversal
from .quadrilaterals import quadrilateral_diagonals
from .triangles import (
    angle_bisector,
    equilateral_triangle,
    isosceles_median,
    midsegment,
    right_triangle_altitude,
    similar_triangles,
)

__all__ = [
    "ALPHABET",
    "FAMILIES",
    "MAX_DRAWS",
    "MIN_ANGLE_DEG",
    "MIN_FACTS",
    "MIN_POINT_GAP_FRAC",
    "MIN_POINT_LINE_GAP_FRAC",
    "MIN_SIDE_FRAC",
    "SCENE_SIZE",
    "check_legible",
    "drawn_sides",
    "format_number",
    "generate_scene",
    "is_nice",
    "nice_value",
    "sample_scene",
]

MAX_DRAWS = 200  # a family that cannot draw a legible figure this often has a bug
MIN_FACTS = 5  # a caption must state several facts, so that negatives can differ in one of them

# ----------------------------------------------------------------------------- registry

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
