"""Fast matplotlib rendering of scenes to PIL images.

A contrastive dataset needs tens of thousands of diagrams, and every hard negative
is one more diagram, so rendering speed decides how big a dataset a laptop can make.
The naive loop (``plt.figure()``, draw, ``savefig``, close) spends most of its time
building and tearing down figures and laying out text: about 65 diagrams/s on one
core of our 2-core test machine, at 128 or 224 px.
:class:`DiagramRenderer` instead keeps **one** Agg figure per image size with a
fixed set of artists and only swaps their data between calls:

* all strokes of a diagram go into two :class:`~matplotlib.collections.LineCollection`
  objects (solid lines and thinner marks; dashed auxiliary lines), one draw call each;
* point dots, letters and values are filled paths in one
  :class:`~matplotlib.collections.PathCollection`; text is drawn as glyph outlines
  (:class:`~matplotlib.textpath.TextPath`, cached per string and font), which skips
  matplotlib's per-call text layout, the slowest part of a naive render, and gives
  exact ink boxes for the label-overlap checks;
* coordinates are transformed to pixels with numpy once (centre, rotate, scale to
  the frame), so artists use the identity transform and no axes are needed.

Everything a drawing depends on is set on every call, so nothing leaks from one
diagram to the next: the same scene and style always give the same pixels.

This module holds the canvas and the entry points; the style is :mod:`~mmgeo_utils.diagrams.style`'s,
the frame :mod:`~mmgeo_utils.diagrams.frame`'s, the text outlines :mod:`~mmgeo_utils.diagrams.glyphs`'
and the drawing plan :mod:`~mmgeo_utils.diagrams.plan`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from .glyphs import _glyphs
from .plan import _Ctx, _Plan, plan_scene
from .scene import Scene, validate_scene
from .style import REFERENCE_SIZE, RenderStyle, default_style

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels, y down
XY = tuple[float, float]


# ----------------------------------------------------------------------------- result


@dataclass
class RenderResult:
    """A rendered diagram and where things ended up, in pixels (x right, y down).

    ``pixel_points`` lets tests and lessons check the geometry *as drawn* (a right
    angle is still 90° after rotation and scaling); ``label_boxes`` are the ink
    boxes of the point letters; ``annotation_boxes`` those of angle values and
    lengths, as ``(text, box)``. ``affine`` maps scene coordinates to pixels:
    ``pixel = affine[:, :2] @ xy + affine[:, 2]``. ``marks`` are the drawn mark polylines
    (right-angle squares, angle arcs, ticks, arrowheads) as ``(tag, (N, 2) pixels)``,
    e.g. ``("right_angle:BAC", square)``, so tests can measure the marks themselves.
    """

    image: Image.Image
    pixel_points: dict[str, XY]
    label_boxes: dict[str, Box]
    annotation_boxes: list[tuple[str, Box]]
    affine: np.ndarray
    style: RenderStyle
    marks: list[tuple[str, np.ndarray]] = field(default_factory=list)


# ----------------------------------------------------------------------------- renderer


class _Canvas:
    """One Agg figure of a fixed pixel size and the artists reused on every draw."""

    def __init__(self, size: int):
        # local: matplotlib takes ~0.4 s to import; only a process that draws pays it (see glyphs._outline)
        import matplotlib.style
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection, PathCollection
        from matplotlib.figure import Figure
        from matplotlib.path import Path
        from matplotlib.transforms import IdentityTransform

        self.size = size
        self.pt = 72.0 / size  # points per pixel: the figure is 1 inch at `size` dpi
        self.unit_circle = Path.unit_circle()
        ident = IdentityTransform()
        # artists read some defaults (sketch, dash scaling) from rcParams when created:
        # a notebook's seaborn or xkcd style must not change the dataset's pixels
        with matplotlib.style.context("default"):
            self.fig = Figure(figsize=(1, 1), dpi=size, facecolor="white")
            self.canvas = FigureCanvasAgg(self.fig)
            common = dict(transform=ident, capstyle="round", joinstyle="round", antialiaseds=True)
            self.solid = LineCollection([], **common)  # main strokes and (thinner) marks
            self.dashed = LineCollection([], linestyles=[(0, (3.0, 2.2))], **common)
            # point dots and glyph outlines: filled paths, one draw call for all of them
            self.fills = PathCollection([], transform=ident, edgecolors="none", linewidths=0, antialiaseds=True)
        self.artists = (self.solid, self.dashed, self.fills)
        for a in self.artists:
            # no pixel snapping: Agg would move level and upright strokes by up to half a
            # pixel to look crisp, and the drawing must sit exactly where the geometry is
            a.set_snap(False)
            self.fig.add_artist(a)
        self.canvas.draw()  # create the renderer once
        w, h = self.canvas.get_width_height()
        if (w, h) != (size, size):
            raise RuntimeError(f"Agg canvas is {w}x{h}, expected {size}x{size}")

    def draw(self, plan: _Plan, style: RenderStyle) -> Image.Image:
        from matplotlib.path import Path  # local: as in __init__

        ink = (style.ink, style.ink, style.ink, 1.0)
        lw = style.line_width * self.pt
        solid = plan.main + plan.marks
        self.solid.set_segments(solid)
        self.solid.set_linewidth([lw] * len(plan.main) + [0.75 * lw] * len(plan.marks))
        self.dashed.set_segments(plan.dashed)
        self.dashed.set_linewidth(0.8 * lw)
        for artist in (self.solid, self.dashed):
            artist.set_color(ink)
        r = style.point_size / 2
        circle = self.unit_circle
        paths = [Path(circle.vertices * r + p, circle.codes) for p in plan.dots]
        for text, anchor, _, _ in plan.texts:
            g = _glyphs(text, style.font_size, style.font_family, style.font_style)
            paths.append(Path(g.vertices + anchor, g.codes))
        self.fills.set_paths(paths)
        self.fills.set_facecolor(ink)

        renderer = self.canvas.get_renderer()
        renderer.clear()
        self.fig.patch.draw(renderer)
        for artist, items in ((self.solid, solid), (self.dashed, plan.dashed), (self.fills, paths)):
            if items:  # an empty collection still costs a draw call
                artist.draw(renderer)
        buf = self.canvas.buffer_rgba()
        return Image.frombuffer("RGBA", (self.size, self.size), buf, "raw", "RGBA", 0, 1).convert("RGB")


class DiagramRenderer:
    """Renders scenes to RGB PIL images, reusing one figure per image size.

    Not thread-safe (matplotlib figures are not); use one renderer per process,
    e.g. :func:`render_scene`'s cached one.
    """

    def __init__(self) -> None:
        self._canvases: dict[int, _Canvas] = {}

    def _canvas(self, size: int) -> _Canvas:
        if size not in self._canvases:
            self._canvases[size] = _Canvas(size)
        return self._canvases[size]

    def render(self, scene: Scene, style: RenderStyle | None = None, frame_of: Scene | None = None) -> RenderResult:
        """Draw ``scene`` with ``style`` (default: :func:`default_style` at 128 px), in ``frame_of``'s frame if given."""
        style = style or default_style()
        plan, ctx = plan_scene(scene, style, frame_of)
        plan.texts = [(t, _clamp_text(t, a, style), k, key) for t, a, k, key in plan.texts]
        image = self._canvas(style.image_size).draw(plan, style)
        return _result(image, plan, ctx, style)


def _clamp_text(text: str, anchor: np.ndarray, style: RenderStyle) -> np.ndarray:
    """Keep every text fully inside the image: a cut-off letter is a wrong label."""
    g = _glyphs(text, style.font_size, style.font_family, style.font_style)
    size = style.image_size
    lo_x, lo_y = g.half_w + 1, g.half_h + 1
    x = min(max(anchor[0], lo_x), size - lo_x)
    y = min(max(anchor[1], lo_y), size - lo_y)
    return np.array([x, y])


def _to_pixel_box(text: str, anchor: np.ndarray, style: RenderStyle) -> Box:
    g = _glyphs(text, style.font_size, style.font_family, style.font_style)
    size = style.image_size
    x, y, hw, hh = float(anchor[0]), float(size - anchor[1]), float(g.half_w), float(g.half_h)
    return (x - hw, y - hh, x + hw, y + hh)


def _result(image: Image.Image, plan: _Plan, ctx: _Ctx, style: RenderStyle) -> RenderResult:
    size = style.image_size
    pixel_points = {k: (float(v[0]), float(size - v[1])) for k, v in ctx.px.items()}
    label_boxes: dict[str, Box] = {}
    annotations: list[tuple[str, Box]] = []
    for text, anchor, kind, key in plan.texts:
        box = _to_pixel_box(text, anchor, style)
        if kind == "point":
            label_boxes[key] = box
        else:
            annotations.append((text, box))
    flip = np.array([1.0, -1.0])
    marks = [(tag, line * flip + (0.0, size)) for tag, line in zip(plan.mark_tags, plan.marks)]
    return RenderResult(
        image=image,
        pixel_points=pixel_points,
        label_boxes=label_boxes,
        annotation_boxes=annotations,
        affine=ctx.frame.pixel_affine(),
        style=style,
        marks=marks,
    )


@lru_cache(maxsize=1)
def _process_renderer() -> DiagramRenderer:
    return DiagramRenderer()


def render(scene: Scene, style: RenderStyle | None = None, frame_of: Scene | None = None) -> RenderResult:
    """Render with this process's cached :class:`DiagramRenderer` (in ``frame_of``'s frame if given).

    A scene that fails :func:`~mmgeo_utils.diagrams.scene.validate_scene` (a NaN coordinate, a missing
    point, a zero-length side) is refused with its problem named, not drawn as a broken picture.
    """
    return _process_renderer().render(validate_scene(scene), style, frame_of)


def render_scene(scene: Scene, style: RenderStyle | None = None, image_size: int = REFERENCE_SIZE) -> Image.Image:
    """The diagram as a PIL image: the one-liner for notebooks."""
    return render(scene, style or default_style(image_size)).image


def boxes_overlap(a: Box, b: Box, pad: float = 0.0) -> bool:
    """Whether two pixel boxes come closer than ``pad`` pixels (0: whether they intersect)."""
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def overlapping_labels(result: RenderResult, pad: float = 0.0) -> list[tuple[str, str]]:
    """Pairs of point letters whose ink boxes overlap in a rendered diagram."""
    items: Sequence[tuple[str, Box]] = list(result.label_boxes.items())
    return [(a, b) for i, (a, ba) in enumerate(items) for b, bb in items[i + 1 :] if boxes_overlap(ba, bb, pad)]


__all__ = [
    "DiagramRenderer",
    "RenderResult",
    "boxes_overlap",
    "overlapping_labels",
    "render",
    "render_scene",
]
