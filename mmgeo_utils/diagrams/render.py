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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from .scene import (
    AngleMark,
    Arc,
    Circle,
    EqualTicks,
    LengthLabel,
    Line,
    ParallelArrows,
    Polygon,
    Ray,
    RightAngleMark,
    Scene,
    Segment,
    validate_scene,
)

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels, y down
XY = tuple[float, float]

# fonts shipped inside matplotlib, so every machine draws the same glyphs
FONT_FAMILIES = ("DejaVu Sans", "DejaVu Serif")
FONT_STYLES = ("normal", "italic")
REFERENCE_SIZE = 128  # the image size the pixel defaults below are tuned for


# ----------------------------------------------------------------------------- style


@dataclass(frozen=True)
class RenderStyle:
    """How a scene is drawn. Sizes are in pixels of the output image.

    Varying the style (rotation, scale, stroke and font sizes, font) from sample to
    sample keeps a contrastive model from keying on pixel positions: a negative that
    differs in one fact must be told apart by geometry, not by a fixed layout.
    """

    image_size: int = REFERENCE_SIZE
    line_width: float = 1.4  # main strokes
    font_size: float = 11.0  # em size of letters and values
    font_family: str = "DejaVu Sans"
    font_style: str = "italic"  # textbooks set point names in italics
    rotation_deg: float = 0.0  # counter-clockwise rotation of the whole scene
    scale: float = 0.95  # fraction of the free frame the scene fills
    point_size: float = 3.5  # diameter of point dots
    margin: float = 0.07  # fraction of the image kept free on each side (labels go there)
    mark_size: float = 9.0  # right-angle square side, angle-arc radius, tick length
    ink: float = 0.0  # grey level of the ink: 0 is black

    def __post_init__(self) -> None:
        if not (isinstance(self.image_size, int) and 16 <= self.image_size <= 4096):
            raise ValueError(f"image_size must be an int in [16, 4096], got {self.image_size!r}")
        if self.font_family not in FONT_FAMILIES:
            raise ValueError(f"font_family {self.font_family!r} is not one of {FONT_FAMILIES}")
        if self.font_style not in FONT_STYLES:
            raise ValueError(f"font_style {self.font_style!r} is not one of {FONT_STYLES}")
        if not 0.0 <= self.margin < 0.4:
            raise ValueError(f"margin must be in [0, 0.4), got {self.margin}")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"scale must be in (0, 1], got {self.scale}")
        if not 0.0 <= self.ink <= 0.5:
            raise ValueError(f"ink must be a grey level in [0, 0.5] (dark on white), got {self.ink}")
        for name in ("line_width", "font_size", "point_size", "mark_size"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RenderStyle:
        return cls(**d)


def default_style(image_size: int = REFERENCE_SIZE) -> RenderStyle:
    """The canonical style, with pixel sizes scaled from the 128 px reference."""
    k = image_size / REFERENCE_SIZE
    ref = RenderStyle()
    return RenderStyle(
        image_size=image_size,
        line_width=round(ref.line_width * k, 3),
        font_size=round(ref.font_size * k, 3),
        point_size=round(ref.point_size * k, 3),
        mark_size=round(ref.mark_size * k, 3),
    )


# The ranges sample_style draws from. Pixel sizes are for a 128 px image and scale with it.
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "line_width": (1.1, 1.8),
    "font_size": (10.0, 12.5),
    "rotation_deg": (-15.0, 15.0),
    "scale": (0.85, 1.0),
    "point_size": (2.8, 4.2),
    "margin": (0.05, 0.09),
    "mark_size": (7.5, 10.5),
    "ink": (0.0, 0.2),
}
_PIXEL_FIELDS = ("line_width", "font_size", "point_size", "mark_size")


def sample_style(image_size: int, seed: int) -> RenderStyle:
    """A seeded random style from :data:`STYLE_RANGES`: same ``(image_size, seed)``, same style.

    Values are rounded so that the style stored in a dataset row re-renders the
    stored image exactly.
    """
    rng = np.random.default_rng(seed)
    k = image_size / REFERENCE_SIZE
    values: dict = {}
    for name, (lo, hi) in STYLE_RANGES.items():
        f = k if name in _PIXEL_FIELDS else 1.0
        values[name] = round(float(rng.uniform(lo * f, hi * f)), 2 if name == "rotation_deg" else 3)
    values["font_family"] = FONT_FAMILIES[int(rng.integers(len(FONT_FAMILIES)))]
    values["font_style"] = FONT_STYLES[int(rng.integers(len(FONT_STYLES)))]
    return RenderStyle(image_size=image_size, **values)


def max_em_fraction() -> float:
    """The largest letter (em) size as a fraction of the scene's extent, over sampled styles.

    Label layout works in scene units and cannot know the style a scene will be drawn
    with; this bound (largest font, widest margin, smallest scale, most rotation, which
    grows the rotated bounding box by up to cos θ + sin θ) tells it how big a letter can get.
    """
    font_hi = STYLE_RANGES["font_size"][1] / REFERENCE_SIZE
    margin_hi = STYLE_RANGES["margin"][1]
    scale_lo = STYLE_RANGES["scale"][0]
    t = math.radians(max(abs(v) for v in STYLE_RANGES["rotation_deg"]))
    return font_hi / ((1 - 2 * margin_hi) * scale_lo) * (math.cos(t) + math.sin(t))


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


# ----------------------------------------------------------------------------- frame


@dataclass(frozen=True)
class _Frame:
    """Scene coordinates → display pixels (matplotlib's: origin bottom-left, y up)."""

    matrix: np.ndarray  # 2x2: rotation times scale
    offset: np.ndarray  # (2,)
    size: int

    def apply(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.matrix.T + self.offset

    @property
    def scale(self) -> float:
        return float(math.hypot(self.matrix[0, 0], self.matrix[1, 0]))

    def pixel_affine(self) -> np.ndarray:
        """The same map with y pointing down (image rows), as a 2x3 matrix."""
        flip = np.array([[1.0, 0.0], [0.0, -1.0]])
        m = flip @ self.matrix
        t = flip @ self.offset + np.array([0.0, self.size])
        return np.column_stack([m, t])


def _rotation(deg: float) -> np.ndarray:
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s], [s, c]])


def _scene_extent_points(scene: Scene, rot: np.ndarray) -> np.ndarray:
    """Rotated points that must fit in the frame: points, circles, label anchors."""
    pts = [np.array(list(scene.points.values()), dtype=float) @ rot.T]
    for el in scene.elements:
        if isinstance(el, Circle):
            c = np.asarray(scene.points[el.center], dtype=float) @ rot.T
            r = el.radius
            pts.append(c + np.array([[r, r], [-r, -r]]))
        elif isinstance(el, Arc):
            sweep = (el.end_deg - el.start_deg) % 360.0 or 360.0
            t = np.radians(el.start_deg + np.linspace(0.0, sweep, 25))
            arc = np.asarray(scene.points[el.center], dtype=float) + el.radius * np.column_stack([np.cos(t), np.sin(t)])
            pts.append(arc @ rot.T)
    offs = [
        (scene.points[k][0] + dx, scene.points[k][1] + dy)
        for k, (dx, dy) in scene.label_offsets.items()
        if k in scene.points
    ]
    if offs:
        pts.append(np.array(offs, dtype=float) @ rot.T)
    return np.concatenate(pts)


def fit_frame(scene: Scene, style: RenderStyle) -> _Frame:
    """Centre, rotate and scale the scene so it fills ``style.scale`` of the free frame.

    The scene is scaled uniformly (equal aspect), so angles, parallels and ratios
    in pixels are those of the scene.
    """
    rot = _rotation(style.rotation_deg)
    ext = _scene_extent_points(scene, rot)
    lo, hi = ext.min(axis=0), ext.max(axis=0)
    span = float(max(hi - lo))
    size = style.image_size
    free = size * (1.0 - 2.0 * style.margin)
    s = style.scale * free / span if span > 0 else 1.0
    offset = size / 2.0 - s * (lo + hi) / 2.0
    return _Frame(matrix=s * rot, offset=offset, size=size)


# ----------------------------------------------------------------------------- text


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


# ----------------------------------------------------------------------------- drawing plan


@dataclass
class _Plan:
    """What to draw, in display pixels; filled by the element handlers below."""

    main: list[np.ndarray] = field(default_factory=list)
    dashed: list[np.ndarray] = field(default_factory=list)
    marks: list[np.ndarray] = field(default_factory=list)
    mark_tags: list[str] = field(default_factory=list)  # which element each mark polyline draws
    # (text, anchor centre, kind, key): kind "point" keys by point name
    texts: list[tuple[str, np.ndarray, str, str]] = field(default_factory=list)
    dots: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def mark(self, tag: str, polyline: np.ndarray) -> None:
        self.marks.append(polyline)
        self.mark_tags.append(tag)


class _Ctx:
    """Per-call state shared by the element handlers: the scene in pixels and the style."""

    def __init__(self, scene: Scene, style: RenderStyle, frame: _Frame):
        self.scene, self.style, self.frame = scene, style, frame
        names = list(scene.points)
        xy = frame.apply(np.array([scene.points[n] for n in names], dtype=float))
        self.px: dict[str, np.ndarray] = dict(zip(names, xy))
        self.centroid = xy.mean(axis=0)
        size = style.image_size
        inset = style.margin * size * 0.5
        self.clip_box = (inset, inset, size - inset, size - inset)
        self.ticks_on = {_seg_key(e.a, e.b) for e in scene.elements if isinstance(e, EqualTicks)}
        self.arrows_on = {_seg_key(e.a, e.b) for e in scene.elements if isinstance(e, ParallelArrows)}
        self.polygons = [e.vertices for e in scene.elements if isinstance(e, Polygon)]
        self.hints = _layout_hints(scene, frame)

    def p(self, name: str, el) -> np.ndarray:
        try:
            return self.px[name]
        except KeyError:
            raise ValueError(f"{el.type} refers to missing point {name!r}; points: {', '.join(self.px)}") from None

    def glyphs(self, text: str) -> _Glyphs:
        s = self.style
        return _glyphs(text, s.font_size, s.font_family, s.font_style)


def _layout_hints(scene: Scene, frame: _Frame) -> dict[int, float]:
    """How far out (pixels) the label layout expects each angle value and length label.

    :func:`mmgeo_utils.diagrams.layout.place_labels` keeps point letters clear of where
    :func:`~mmgeo_utils.diagrams.layout.annotation_discs` says values will be written, so the
    renderer writes them at least that far out (further only when the text would
    otherwise touch an arc or an arm). Keyed by ``id(element)``; empty when the
    labels were not placed by the layout or its list does not match the scene's.
    """
    if not scene.label_offsets:
        return {}
    from .layout import annotation_discs

    annotated = [e for e in scene.elements if (isinstance(e, AngleMark) and e.label) or isinstance(e, LengthLabel)]
    discs = annotation_discs(scene)
    texts = [e.label if isinstance(e, AngleMark) else e.text for e in annotated]
    if texts != [d[0] for d in discs]:
        return {}
    hints = {}
    for el, (_, centre, _) in zip(annotated, discs):
        base = (
            scene.points[el.vertex]
            if isinstance(el, AngleMark)
            else (np.asarray(scene.points[el.a]) + np.asarray(scene.points[el.b])) / 2
        )
        hints[id(el)] = float(np.hypot(*(np.asarray(centre) - base))) * frame.scale
    return hints


def _seg_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = math.hypot(v[0], v[1])
    if n < 1e-9:
        raise ValueError(f"degenerate scene: {what} has zero length in the drawing")
    return v / n


def _perp(u: np.ndarray) -> np.ndarray:
    return np.array([-u[1], u[0]])


def _support(n: np.ndarray, g: _Glyphs) -> float:
    """How far a text box reaches in direction ``n`` from its centre."""
    return abs(n[0]) * g.half_w + abs(n[1]) * g.half_h


def _clip(p: np.ndarray, d: np.ndarray, box: tuple[float, float, float, float], t_min: float) -> np.ndarray | None:
    """Liang–Barsky: the part of p + t·d (t ≥ t_min) inside the box, or None."""
    lo_t, hi_t = t_min, math.inf
    for pi, di, lo, hi in ((p[0], d[0], box[0], box[2]), (p[1], d[1], box[1], box[3])):
        if abs(di) < 1e-12:
            if pi < lo or pi > hi:
                return None
            continue
        t0, t1 = (lo - pi) / di, (hi - pi) / di
        if t0 > t1:
            t0, t1 = t1, t0
        lo_t, hi_t = max(lo_t, t0), min(hi_t, t1)
    if not math.isfinite(hi_t) or lo_t > hi_t:
        return None
    return np.array([p + lo_t * d, p + hi_t * d])


def _arc_points(c: np.ndarray, r: float, a0: float, sweep: float) -> np.ndarray:
    """Polyline of an arc (radians, display frame), about 2 px per chord."""
    n = max(8, int(math.ceil(abs(sweep) * r / 2.0)) + 1)
    t = a0 + np.linspace(0.0, sweep, n)
    return np.column_stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)])


def _bucket(plan: _Plan, dashed: bool) -> list[np.ndarray]:
    return plan.dashed if dashed else plan.main


def _draw_segment(el: Segment, ctx: _Ctx, plan: _Plan) -> None:
    a, b = ctx.p(el.a, el), ctx.p(el.b, el)
    _unit(b - a, f"segment {el.a}{el.b}")
    _bucket(plan, el.dashed).append(np.array([a, b]))


def _draw_line(el: Line | Ray, ctx: _Ctx, plan: _Plan) -> None:
    a, b = ctx.p(el.a, el), ctx.p(el.b, el)
    d = _unit(b - a, f"{el.type} {el.a}{el.b}")
    seg = _clip(a, d, ctx.clip_box, -math.inf if isinstance(el, Line) else 0.0)
    if seg is None:  # the ray starts outside the frame: draw at least A→B
        seg = np.array([a, b])
    _bucket(plan, el.dashed).append(seg)


def _draw_polygon(el: Polygon, ctx: _Ctx, plan: _Plan) -> None:
    pts = [ctx.p(v, el) for v in el.vertices]
    plan.main.append(np.array(pts + pts[:1]))


def _draw_circle(el: Circle | Arc, ctx: _Ctx, plan: _Plan) -> None:
    c = ctx.p(el.center, el)
    r = el.radius * ctx.frame.scale
    if isinstance(el, Circle):
        _bucket(plan, el.dashed).append(_arc_points(c, r, 0.0, 2 * math.pi))
        return
    rot = math.radians(ctx.style.rotation_deg)
    sweep = (el.end_deg - el.start_deg) % 360.0 or 360.0
    plan.main.append(_arc_points(c, r, math.radians(el.start_deg) + rot, math.radians(sweep)))


def _arms(el: RightAngleMark | AngleMark, ctx: _Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    v = ctx.p(el.vertex, el)
    da, db = ctx.p(el.a, el) - v, ctx.p(el.b, el) - v
    what = f"an arm of the angle at {el.vertex}"
    shortest = min(math.hypot(*da), math.hypot(*db))
    return v, _unit(da, what), _unit(db, what), shortest


def _draw_right_angle(el: RightAngleMark, ctx: _Ctx, plan: _Plan) -> None:
    v, u, w, shortest = _arms(el, ctx)
    m = min(ctx.style.mark_size * 0.8, 0.4 * shortest)
    plan.mark(f"right_angle:{el.a}{el.vertex}{el.b}", np.array([v + m * u, v + m * (u + w), v + m * w]))


def _draw_angle(el: AngleMark, ctx: _Ctx, plan: _Plan) -> None:
    v, u, w, shortest = _arms(el, ctx)
    a0 = math.atan2(u[1], u[0])
    sweep = (math.atan2(w[1], w[0]) - a0 + math.pi) % (2 * math.pi) - math.pi  # the inner angle
    r = min(ctx.style.mark_size * 1.1, 0.45 * shortest)
    gap = max(1.6 * ctx.style.line_width, 0.2 * r)
    radii = [r + i * gap for i in range(max(1, el.arcs))]
    for ri in radii:
        plan.mark(f"angle:{el.a}{el.vertex}{el.b}", _arc_points(v, ri, a0, sweep))
    if el.label:
        bis = np.array([math.cos(a0 + sweep / 2), math.sin(a0 + sweep / 2)])
        g = ctx.glyphs(el.label)
        pad = 0.2 * ctx.style.font_size
        half = abs(sweep) / 2
        # far enough out to clear the arcs, and to fit between the arms of a narrow angle
        d = radii[-1] + pad + _support(bis, g)
        if half > 1e-3:
            arm_clear = max(_support(_perp(u), g), _support(_perp(w), g)) + pad
            d = max(d, arm_clear / math.sin(min(half, math.pi / 2)))
        d = max(d, ctx.hints.get(id(el), 0.0))
        plan.texts.append((el.label, v + d * bis, "angle", f"{el.a}{el.vertex}{el.b}"))


def _mark_centre(a: np.ndarray, u: np.ndarray, length: float, key: tuple[str, str], ctx: _Ctx, kind: str) -> np.ndarray:
    """Midpoint of the segment; ticks and arrows on one segment step aside for each other."""
    mid = a + u * length / 2
    if key in ctx.ticks_on and key in ctx.arrows_on:
        shift = 0.7 * ctx.style.mark_size
        return mid + (-shift if kind == "ticks" else shift) * u
    return mid


def _segment_mark_frame(
    el: EqualTicks | ParallelArrows, ctx: _Ctx, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Where a mark on segment AB goes: its centre, the unit direction u, the normal n, and the mark size."""
    a, b = ctx.p(el.a, el), ctx.p(el.b, el)
    u = _unit(b - a, f"segment {el.a}{el.b}")
    centre = _mark_centre(a, u, math.hypot(*(b - a)), _seg_key(el.a, el.b), ctx, kind)
    return centre, u, _perp(u), ctx.style.mark_size


def _draw_ticks(el: EqualTicks, ctx: _Ctx, plan: _Plan) -> None:
    centre, u, n, m = _segment_mark_frame(el, ctx, "ticks")
    half, step = 0.45 * m, 0.3 * m
    for i in range(max(1, el.count)):
        c = centre + (i - (el.count - 1) / 2) * step * u
        plan.mark(f"ticks:{el.a}{el.b}", np.array([c - half * n, c + half * n]))


def _draw_arrows(el: ParallelArrows, ctx: _Ctx, plan: _Plan) -> None:
    centre, u, n, m = _segment_mark_frame(el, ctx, "arrows")
    h, w, step = 0.45 * m, 0.35 * m, 0.35 * m
    for i in range(max(1, el.count)):
        tip = centre + ((i - (el.count - 1) / 2) * step + h / 2) * u
        plan.mark(f"arrows:{el.a}{el.b}", np.array([tip - h * u + w * n, tip, tip - h * u - w * n]))


def _outside_reference(el: LengthLabel, ctx: _Ctx) -> np.ndarray:
    """A point the length label should move away from: the polygon owning the side, else the centroid."""
    for verts in ctx.polygons:
        sides = {_seg_key(p, q) for p, q in zip(verts, verts[1:] + verts[:1])}
        if _seg_key(el.a, el.b) in sides:
            return np.mean([ctx.px[v] for v in verts], axis=0)
    return ctx.centroid


def _draw_length(el: LengthLabel, ctx: _Ctx, plan: _Plan) -> None:
    a, b = ctx.p(el.a, el), ctx.p(el.b, el)
    u = _unit(b - a, f"segment {el.a}{el.b}")
    mid = (a + b) / 2
    n = _perp(u)
    if np.dot(mid - _outside_reference(el, ctx), n) < 0:
        n = -n
    g = ctx.glyphs(el.text)
    key = _seg_key(el.a, el.b)
    clear = 0.45 * ctx.style.mark_size if (key in ctx.ticks_on or key in ctx.arrows_on) else 0.0
    d = clear + 0.25 * ctx.style.font_size + ctx.style.line_width / 2 + _support(n, g)
    d = max(d, ctx.hints.get(id(el), 0.0))
    plan.texts.append((el.text, mid + d * n, "length", f"{el.a}{el.b}"))


_HANDLERS = {
    Segment: _draw_segment,
    Line: _draw_line,
    Ray: _draw_line,
    Polygon: _draw_polygon,
    Circle: _draw_circle,
    Arc: _draw_circle,
    RightAngleMark: _draw_right_angle,
    AngleMark: _draw_angle,
    EqualTicks: _draw_ticks,
    ParallelArrows: _draw_arrows,
    LengthLabel: _draw_length,
}


def _point_labels(ctx: _Ctx, plan: _Plan) -> None:
    """Each point's letter at point + its placed offset, else pushed away from the centroid."""
    scene, frame = ctx.scene, ctx.frame
    for name, p in ctx.px.items():
        off = scene.label_offsets.get(name)
        if off is not None:
            anchor = p + frame.matrix @ np.asarray(off, dtype=float)
        else:
            away = p - ctx.centroid
            nrm = math.hypot(*away)
            direction = away / nrm if nrm > 1e-6 else np.array([0.70710678, 0.70710678])
            g = ctx.glyphs(name)
            d = 0.5 * ctx.style.point_size + 0.2 * ctx.style.font_size + _support(direction, g)
            anchor = p + d * direction
        plan.texts.append((name, anchor, "point", name))


def plan_scene(scene: Scene, style: RenderStyle, frame_of: Scene | None = None) -> tuple[_Plan, _Ctx]:
    """Turn a scene into strokes and texts in display pixels (no matplotlib involved).

    ``frame_of`` draws the scene in another scene's frame: a hard negative is drawn
    where its positive was, so only the perturbed detail moves on the page.
    """
    if not scene.points:
        raise ValueError("cannot render a scene without points")
    frame = fit_frame(frame_of if frame_of is not None else scene, style)
    ctx = _Ctx(scene, style, frame)
    plan = _Plan()
    for el in scene.elements:
        handler = _HANDLERS.get(type(el))
        if handler is None:
            raise ValueError(f"the renderer cannot draw element type {type(el).__name__}")
        handler(el, ctx, plan)
    _point_labels(ctx, plan)
    plan.dots = np.array(list(ctx.px.values()))
    return plan, ctx


# ----------------------------------------------------------------------------- renderer


class _Canvas:
    """One Agg figure of a fixed pixel size and the artists reused on every draw."""

    def __init__(self, size: int):
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
        from matplotlib.path import Path

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


def fits_frame(scene: Scene, style: RenderStyle, frame_of: Scene) -> bool:
    """Whether ``scene`` drawn in ``frame_of``'s frame stays inside the image (points, circles, labels)."""
    frame = fit_frame(frame_of, style)
    px = frame.apply(_scene_extent_points(scene, np.eye(2)))  # the frame applies the rotation
    return bool(np.all(px >= 0) and np.all(px <= style.image_size))


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
    "RenderStyle",
    "RenderResult",
    "DiagramRenderer",
    "STYLE_RANGES",
    "FONT_FAMILIES",
    "default_style",
    "sample_style",
    "max_em_fraction",
    "fit_frame",
    "fits_frame",
    "plan_scene",
    "render",
    "render_scene",
    "boxes_overlap",
    "overlapping_labels",
]
