"""The renderer, checked in the coordinates it draws in.

A diagram is only useful for contrastive learning if the picture shows the facts:
a marked right angle must look right, a tangent must touch, parallel arrows must sit
on parallel segments. These tests measure that in pixel coordinates (after the
style's rotation and scaling) and check that the pixels are really there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmgeo_utils.diagrams.geometry import angle_at, foot_of_perpendicular, line_angle_between, polar
from mmgeo_utils.diagrams.render import DiagramRenderer, boxes_overlap, overlapping_labels, render, render_scene
from mmgeo_utils.diagrams.scene import (
    AngleMark,
    Arc,
    Circle,
    EqualTicks,
    Fact,
    LengthLabel,
    Line,
    ParallelArrows,
    Polygon,
    Ray,
    RightAngleMark,
    Scene,
    Segment,
)
from mmgeo_utils.diagrams.style import RenderStyle, default_style, sample_style

# ----------------------------------------------------------------------------- hand-made scenes


def right_triangle_with_altitude() -> Scene:
    a, b, c = (0.0, 0.0), (4.0, 0.0), (0.0, 3.0)
    d = tuple(foot_of_perpendicular(a, b, c))
    return Scene(
        "hand_right_triangle_altitude",
        {"A": a, "B": b, "C": c, "D": d},
        [
            Polygon(("A", "B", "C")),
            Segment("A", "D", dashed=True),
            RightAngleMark("A", "B", "C"),
            RightAngleMark("D", "A", "B"),
            AngleMark("B", "A", "C", label="37°"),
            LengthLabel("A", "B", "4"),
            LengthLabel("A", "C", "3"),
        ],
        [
            Fact("angle", ("B", "A", "C"), 90),
            Fact("altitude", ("A", "D", "B", "C")),
            Fact("length", ("A", "B"), 4),
            Fact("length", ("A", "C"), 3),
        ],
    )


def circle_with_tangent() -> Scene:
    o, r = (0.0, 0.0), 2.0
    t = polar(o, r, 57.0)
    u = (t - np.asarray(o)) / r
    p = t + 3.0 * np.array([-u[1], u[0]])
    return Scene(
        "hand_tangent",
        {"O": o, "T": tuple(t), "P": tuple(p)},
        [Circle("O", r), Segment("O", "T"), Line("P", "T"), RightAngleMark("T", "O", "P")],
        [Fact("tangent", ("P", "T", "O")), Fact("radius", ("O", "T"))],
    )


def parallel_lines_with_midpoint() -> Scene:
    pts = {"A": (0.0, 0.0), "B": (5.0, 1.0), "C": (1.0, 3.0), "D": (4.0, 3.6), "M": (2.5, 0.5)}
    return Scene(
        "hand_parallel",
        pts,
        [
            Segment("A", "B"),
            Segment("C", "D"),
            ParallelArrows("A", "B", 2),
            ParallelArrows("C", "D", 2),
            Segment("A", "C"),
            Ray("B", "D"),
            EqualTicks("A", "M", 1),
            EqualTicks("M", "B", 1),
            Arc("A", 1.0, 0.0, 36.0),
        ],
        [Fact("parallel", ("A", "B", "C", "D")), Fact("midpoint", ("M", "A", "B"))],
    )


HAND_SCENES = [right_triangle_with_altitude, circle_with_tangent, parallel_lines_with_midpoint]


def _styles(size: int = 128) -> list[RenderStyle]:
    rotated = RenderStyle(**{**default_style(size).to_dict(), "rotation_deg": 15.0, "scale": 0.85})
    return [default_style(size), rotated] + [sample_style(size, s) for s in range(4)]


# ----------------------------------------------------------------------------- geometric checks


def _px(result, name: str) -> np.ndarray:
    return np.asarray(result.pixel_points[name])


def check_rendered_geometry(scene: Scene, result) -> None:
    """Every mark and fact that a picture must show, measured in pixels."""
    drawn = dict(result.marks)
    for el in scene.elements:
        if isinstance(el, RightAngleMark):
            v = _px(result, el.vertex)
            ang = angle_at(v, _px(result, el.a), _px(result, el.b))
            assert abs(ang - 90.0) <= 1.0, f"right-angle mark at {el.vertex} measures {ang:.2f}°"
            # the square itself: a right corner, its sides along the two arms
            p0, corner, p2 = drawn[f"right_angle:{el.a}{el.vertex}{el.b}"]
            assert abs(angle_at(corner, p0, p2) - 90.0) <= 1.0, f"the square at {el.vertex} is not square"
            assert angle_at(v, p0, _px(result, el.a)) <= 1.0 and angle_at(v, p2, _px(result, el.b)) <= 1.0, (
                f"the square at {el.vertex} does not sit on the arms"
            )
    arrows: dict[int, list[ParallelArrows]] = {}
    for el in scene.elements:
        if isinstance(el, ParallelArrows):
            arrows.setdefault(el.count, []).append(el)
    for group in arrows.values():
        first = group[0]
        for other in group[1:]:
            ang = line_angle_between(
                _px(result, first.a), _px(result, first.b), _px(result, other.a), _px(result, other.b)
            )
            assert ang <= 1.0, (
                f"segments {first.a}{first.b} and {other.a}{other.b} marked parallel differ by {ang:.2f}°"
            )
    for f in scene.facts:
        a = f.args
        if f.kind == "tangent":  # line P–T is perpendicular to radius O–T
            ang = line_angle_between(_px(result, a[0]), _px(result, a[1]), _px(result, a[2]), _px(result, a[1]))
            assert abs(ang - 90.0) <= 1.0, f"tangent {a[0]}{a[1]} makes {ang:.2f}° with its radius"
        elif f.kind == "midpoint":
            m, p, q = (_px(result, x) for x in a)
            assert np.hypot(*(m - (p + q) / 2)) <= 0.5, f"{a[0]} is not drawn at the midpoint of {a[1]}{a[2]}"
        elif f.kind == "parallel":
            ang = line_angle_between(*(_px(result, x) for x in a))
            assert ang <= 1.0, f"{a[0]}{a[1]} ∥ {a[2]}{a[3]} is drawn {ang:.2f}° apart"
        elif f.kind == "perpendicular":
            ang = line_angle_between(*(_px(result, x) for x in a))
            assert abs(ang - 90.0) <= 1.0, f"{a[0]}{a[1]} ⊥ {a[2]}{a[3]} is drawn at {ang:.2f}°"


def _darkness(img: np.ndarray, xy: np.ndarray, radius: int = 1) -> float:
    """How dark the image is around a pixel position (0 white, 1 black), the darkest nearby pixel."""
    x, y = int(math.floor(xy[0])), int(math.floor(xy[1]))
    h, w = img.shape
    patch = img[max(0, y - radius) : min(h, y + radius + 1), max(0, x - radius) : min(w, x + radius + 1)]
    return float(1.0 - patch.min() / 255.0)


def check_pixels_match(scene: Scene, result) -> None:
    """The image really has ink at the reported points and along drawn segments."""
    gray = np.asarray(result.image.convert("L"), dtype=float)
    for name, xy in result.pixel_points.items():
        assert _darkness(gray, np.asarray(xy)) > 0.5, f"no dot drawn at point {name} {xy}"
    for el in scene.elements:
        if isinstance(el, Segment):
            a, b = _px(result, el.a), _px(result, el.b)
            ts = np.linspace(0.2, 0.8, 25)
            inked = np.mean([_darkness(gray, a + t * (b - a), radius=0) > 0.3 for t in ts])
            if el.dashed:  # ink and gaps alternate
                assert 0.2 <= inked <= 0.9, f"dashed segment {el.a}{el.b}: {inked:.0%} of it is inked"
            else:
                assert inked == 1.0, f"segment {el.a}{el.b}: only {inked:.0%} of it is inked"


def check_labels(result) -> None:
    size = result.style.image_size
    assert overlapping_labels(result) == [], "point letters overlap"
    for name, (x0, y0, x1, y1) in result.label_boxes.items():
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size, f"label {name} is cut off: {(x0, y0, x1, y1)}"


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("make", HAND_SCENES)
def test_hand_scenes_show_their_facts_in_pixels(make):
    scene = make()
    renderer = DiagramRenderer()
    for style in _styles():
        result = renderer.render(scene, style)
        check_rendered_geometry(scene, result)
        check_pixels_match(scene, result)
        check_labels(result)


def test_image_is_rgb_of_the_requested_size_and_not_blank():
    for size in (64, 128, 224):
        img = render_scene(right_triangle_with_altitude(), image_size=size)
        assert img.mode == "RGB" and img.size == (size, size)
        gray = np.asarray(img.convert("L"))
        ink = (gray < 128).mean()
        assert 0.005 < ink < 0.5, f"{ink:.3%} dark pixels at {size}px"
        assert gray.max() == 255, "background is not white"


def test_rotation_and_scale_are_applied():
    scene = right_triangle_with_altitude()  # AB is horizontal in the scene
    flat = render(scene, default_style())
    rot = render(scene, RenderStyle(**{**default_style().to_dict(), "rotation_deg": 12.0}))
    d = _px(rot, "B") - _px(rot, "A")
    assert math.degrees(math.atan2(-d[1], d[0])) == pytest.approx(12.0, abs=0.01)  # y down in pixels
    d0 = _px(flat, "B") - _px(flat, "A")
    assert abs(d0[1]) < 1e-6
    half = default_style().scale / 2
    small = render(scene, RenderStyle(**{**default_style().to_dict(), "scale": half}))
    assert np.hypot(*(_px(small, "B") - _px(small, "A"))) == pytest.approx(0.5 * np.hypot(*d0), rel=1e-9)


def test_affine_maps_scene_to_pixels():
    scene = parallel_lines_with_midpoint()
    result = render(scene, sample_style(128, 3))
    for name, xy in scene.points.items():
        mapped = result.affine[:, :2] @ np.asarray(xy) + result.affine[:, 2]
        np.testing.assert_allclose(mapped, result.pixel_points[name], atol=1e-9)


def test_different_scenes_give_different_images():
    style = default_style()
    images = [np.asarray(render(make(), style).image) for make in HAND_SCENES]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])
    # one changed fact (a different angle label) changes pixels too
    scene = right_triangle_with_altitude()
    scene.elements[4] = AngleMark("B", "A", "C", label="53°")
    assert not np.array_equal(np.asarray(render(scene, style).image), images[0])


def test_same_scene_and_style_give_identical_pixels_without_leaks():
    """Artists are reused: nothing from one diagram may survive into the next."""
    renderer = DiagramRenderer()
    style = sample_style(128, 11)
    target = right_triangle_with_altitude()
    first = renderer.render(target, style)
    for make in HAND_SCENES[1:]:  # draw other scenes, other styles, other sizes in between
        renderer.render(make(), sample_style(128, 5))
        renderer.render(make(), default_style(96))
    again = renderer.render(target, style)
    fresh = DiagramRenderer().render(target, style)
    assert first.image.tobytes() == again.image.tobytes() == fresh.image.tobytes()
    assert first.label_boxes == again.label_boxes


def test_style_is_seeded_and_serialisable():
    assert sample_style(128, 4) == sample_style(128, 4)
    assert sample_style(128, 4) != sample_style(128, 5)
    s = sample_style(224, 9)
    assert RenderStyle.from_dict(s.to_dict()) == s
    assert -15 <= s.rotation_deg <= 15 and 0.85 <= s.scale <= 1.0


def test_bad_style_and_scene_are_clear_errors():
    with pytest.raises(ValueError, match="font_family"):
        RenderStyle(font_family="Comic Sans")
    with pytest.raises(ValueError, match="scale"):
        RenderStyle(scale=1.5)
    scene = right_triangle_with_altitude()
    scene.elements.append(Segment("A", "Z"))
    with pytest.raises(ValueError, match="missing point 'Z'"):
        render(scene)


def test_label_offsets_are_used_when_placed():
    scene = right_triangle_with_altitude()
    base = render(scene, default_style())
    scene.label_offsets = {name: (0.0, -0.5) for name in scene.points}  # every letter below its point
    placed = render(scene, default_style())
    for name in scene.points:
        (_, y0, _, _), p = placed.label_boxes[name], placed.pixel_points[name]
        assert y0 > p[1] - 1, f"label {name} should sit below its point"
    assert base.image.tobytes() != placed.image.tobytes()


def test_boxes_overlap_helper():
    assert boxes_overlap((0, 0, 2, 2), (1, 1, 3, 3))
    assert not boxes_overlap((0, 0, 1, 1), (2, 2, 3, 3))
    assert boxes_overlap((0, 0, 1, 1), (1.5, 0, 2, 1), pad=0.6)
    assert not boxes_overlap((0, 0, 1, 1), (1.5, 0, 2, 1), pad=0.4)


# ----------------------------------------------------------------------------- every family

from mmgeo_utils.diagrams.families import FAMILIES, generate_scene  # noqa: E402


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_shows_its_facts_in_pixels(family):
    renderer = DiagramRenderer()
    for seed in range(3):
        scene = generate_scene(family, seed)
        for style in (default_style(128), sample_style(128, seed), sample_style(224, 100 + seed)):
            result = renderer.render(scene, style)
            check_rendered_geometry(scene, result)
            check_pixels_match(scene, result)
            check_labels(result)
