"""The drawing plan: a scene's strokes, marks and texts in display pixels, without matplotlib (lesson 01).

:func:`plan_scene` runs one handler per element type; the renderer draws the plan, and
tests compare the plans of a positive and its hard negative.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .frame import _Frame, fit_frame
from .glyphs import _Glyphs, _glyphs
from .layout import annotation_discs, layout_constants, length_label_normal, scene_extent
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
    _segment_key,
)
from .style import RenderStyle

__all__ = ["plan_scene"]


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
    """Per-call state shared by the element handlers: the scene in pixels and the style.

    ``reference`` is the scene whose layout constants (label radius, centroid) place the annotations:
    the scene itself, or a hard negative's positive, so that what the edit did not touch is drawn
    where the positive has it.
    """

    def __init__(self, scene: Scene, style: RenderStyle, frame: _Frame, reference: Scene | None = None):
        self.scene, self.style, self.frame = scene, style, frame
        ref = scene if reference is None else reference
        names = list(scene.points)
        xy = frame.apply(np.array([scene.points[n] for n in names], dtype=float))
        self.px: dict[str, np.ndarray] = dict(zip(names, xy))
        self.centroid = (
            xy.mean(axis=0) if ref is scene else frame.apply(np.array(list(ref.points.values()))).mean(axis=0)
        )
        self.reference = ref
        size = style.image_size
        inset = style.margin * size * 0.5
        self.clip_box = (inset, inset, size - inset, size - inset)
        self.ticks_on = {_segment_key(e.a, e.b) for e in scene.elements if isinstance(e, EqualTicks)}
        self.arrows_on = {_segment_key(e.a, e.b) for e in scene.elements if isinstance(e, ParallelArrows)}
        self.hints = _layout_hints(scene, frame, None if reference is None else self.layout)

    @functools.cached_property
    def layout(self) -> dict:
        """The reference's layout constants (scene units: label radius, centroid), computed on first use."""
        return layout_constants(self.reference)

    @functools.cached_property
    def extent(self) -> float:
        return scene_extent(self.scene)

    def p(self, name: str, el) -> np.ndarray:
        try:
            return self.px[name]
        except KeyError:
            raise ValueError(f"{el.type} refers to missing point {name!r}; points: {', '.join(self.px)}") from None

    def glyphs(self, text: str) -> _Glyphs:
        s = self.style
        return _glyphs(text, s.font_size, s.font_family, s.font_style)


def _layout_hints(scene: Scene, frame: _Frame, layout: dict | None = None) -> dict[int, float]:
    """How far out (pixels) the label layout expects each angle value and length label.

    :func:`mmgeo_utils.diagrams.layout.place_labels` keeps point letters clear of where
    :func:`~mmgeo_utils.diagrams.layout.annotation_discs` says values will be written, so the
    renderer writes them at least that far out (further only when the text would
    otherwise touch an arc or an arm). Keyed by ``id(element)``; empty when the
    labels were not placed by the layout or its list does not match the scene's. ``layout``: the
    constants of :func:`~mmgeo_utils.diagrams.layout.layout_constants` (default: the scene's own).
    """
    if not scene.label_offsets:
        return {}
    annotated = [e for e in scene.elements if (isinstance(e, AngleMark) and e.label) or isinstance(e, LengthLabel)]
    discs = annotation_discs(scene, **(layout or {}))
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
    if el.label and ctx.style.numeric_marks:
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
    centre = _mark_centre(a, u, math.hypot(*(b - a)), _segment_key(el.a, el.b), ctx, kind)
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


def _draw_length(el: LengthLabel, ctx: _Ctx, plan: _Plan) -> None:
    if not ctx.style.numeric_marks:  # letters only: the value is stated in the caption, not drawn
        return
    a, b = ctx.p(el.a, el), ctx.p(el.b, el)
    u = _unit(b - a, f"segment {el.a}{el.b}")
    mid = (a + b) / 2
    n = _perp(u)
    # the side is decided in scene units, as the layout decides it (the frame only rotates and scales)
    side = ctx.frame.matrix @ length_label_normal(ctx.scene, el.a, el.b, ctx.layout["centroid"], ctx.extent)
    if np.dot(n, side) < 0:
        n = -n
    g = ctx.glyphs(el.text)
    key = _segment_key(el.a, el.b)
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
    where its positive was, with its positive's layout constants (label radius, centroid),
    so only the perturbed detail moves on the page.
    """
    if not scene.points:
        raise ValueError("cannot render a scene without points")
    frame = fit_frame(frame_of if frame_of is not None else scene, style)
    ctx = _Ctx(scene, style, frame, reference=frame_of)
    plan = _Plan()
    for el in scene.elements:
        handler = _HANDLERS.get(type(el))
        if handler is None:
            raise ValueError(f"the renderer cannot draw element type {type(el).__name__}")
        handler(el, ctx, plan)
    _point_labels(ctx, plan)
    plan.dots = np.array(list(ctx.px.values()))
    return plan, ctx
