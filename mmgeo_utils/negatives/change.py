"""What an image perturbation proposes, or why it cannot; the small scene helpers the image negatives share (lesson 02).

A proposer (:mod:`.perturbations`) yields :class:`_Change` candidates or returns :class:`NotApplicable`;
:mod:`.draft` turns a change into a negative scene and checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..diagrams.scene import AngleMark, Arc, Circle, Element, Fact, Polygon, RightAngleMark, Scene

__all__ = ["NotApplicable"]


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


# ----------------------------------------------------------------------------- small helpers


def _xy(scene: Scene, name: str) -> np.ndarray:
    return np.asarray(scene.points[name], dtype=float)


def _na(name: str, reason: str, kind: str = "no target") -> NotApplicable:
    return NotApplicable(name, reason, kind)


def _shuffled(rng: np.random.Generator, items: Sequence) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def _circle_radii(scene: Scene) -> dict[str, float]:
    return {el.center: el.radius for el in scene.elements if isinstance(el, Circle)}


def _perp(u: np.ndarray) -> np.ndarray:
    return np.array([-u[1], u[0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _element_points(el: Element) -> tuple[str, ...]:
    if isinstance(el, Polygon):
        return el.vertices
    if isinstance(el, (Circle, Arc)):
        return (el.center,)
    if isinstance(el, (RightAngleMark, AngleMark)):
        return (el.vertex, el.a, el.b)
    return (el.a, el.b)
