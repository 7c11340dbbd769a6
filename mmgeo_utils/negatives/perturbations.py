"""The registry of image perturbations: :data:`PERTURBATIONS`, their categories and metadata (lesson 02).

Each proposer returns :class:`~.change.NotApplicable` (nothing to perturb) or an iterable of
candidate changes, best first. Candidates are cheap to propose; :func:`~.image.apply_perturbation`
does the checking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..diagrams.scene import Scene
from .change import NotApplicable, _Change
from .edits_auxiliary import _add_auxiliary, _cevian_swap, _remove_auxiliary
from .edits_numbers import _change_angle, _change_length, _move_right_angle_mark
from .edits_relabel import _relabel
from .edits_relations import (
    _move_midpoint,
    _move_off_circle,
    _parallel_to_perpendicular,
    _similar_congruent,
    _tangent_to_secant,
    _unparallel,
)
from .edits_shapes import _diameter_to_chord, _quadrilateral_shape, _triangle_shape

__all__ = ["ANNOTATION_ONLY", "CATEGORIES", "PERTURBATIONS", "Perturbation", "perturbation_table"]


CATEGORIES = ("shape_concept", "relabel", "number", "relation", "ours")

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
