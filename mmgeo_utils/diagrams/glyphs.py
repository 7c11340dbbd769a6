"""Text as glyph outlines, cached per string and font: the renderer's letters and values (lesson 01).

Drawing a :class:`~matplotlib.textpath.TextPath` as a filled path skips matplotlib's
per-call text layout and gives the exact ink box the label checks need.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class _Glyphs:
    """A string's outline, centred on its ink box, and that box's half sizes."""

    vertices: np.ndarray
    codes: np.ndarray | None
    half_w: float
    half_h: float


_OUTLINE_SIZE = 100.0  # outlines are cached at this size and scaled: unhinted outlines scale exactly


@lru_cache(maxsize=4096)
def _outline(text: str, family: str, style: str) -> _Glyphs:
    """Outline a string once per font: styles vary the size continuously, so cache size-free."""
    # local: matplotlib takes ~0.4 s to import, and a process that never draws (the package's
    # __init__ re-exports the renderer) should not pay it
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path
    from matplotlib.textpath import TextPath

    tp = TextPath((0, 0), text.replace("$", r"\$"), size=_OUTLINE_SIZE, prop=FontProperties(family=family, style=style))
    # the ink box from the flattened outline (Agg's C flattening, within 0.1 % of the
    # exact Bézier extents and ~20x faster than Path.get_extents)
    ink = np.concatenate(Path(tp.vertices, tp.codes).to_polygons(closed_only=False))
    lo, hi = ink.min(axis=0), ink.max(axis=0)
    verts = (np.array(tp.vertices, dtype=float) - (lo + hi) / 2) / _OUTLINE_SIZE
    verts.setflags(write=False)
    codes = None if tp.codes is None else np.array(tp.codes)
    half_w, half_h = (hi - lo) / 2 / _OUTLINE_SIZE
    return _Glyphs(verts, codes, float(half_w), float(half_h))


@lru_cache(maxsize=256)  # sizes vary continuously: this only serves repeats within a render
def _glyphs(text: str, size: float, family: str, style: str) -> _Glyphs:
    """The outline of ``text`` at ``size`` pixels, centred on its ink box."""
    g = _outline(text, family, style)
    verts = g.vertices * size
    verts.setflags(write=False)
    return _Glyphs(verts, g.codes, g.half_w * size, g.half_h * size)
