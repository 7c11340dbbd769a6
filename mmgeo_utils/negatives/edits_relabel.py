"""The relabel perturbation: permute 2 or 3 letters of the scene (lesson 02)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..diagrams.scene import Arc, Circle, Scene
from .change import NotApplicable, _Change, _na

RELABEL_TRIES = 24


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
