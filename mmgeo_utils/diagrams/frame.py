"""Scene coordinates → image pixels: centre, rotate and scale a scene into the free frame (lesson 01).

A hard negative is drawn in its positive's frame (:func:`fits_frame` says whether it stays on the page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scene import Arc, Circle, Scene
from .style import RenderStyle

__all__ = ["fit_frame", "fits_frame"]


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


def fits_frame(scene: Scene, style: RenderStyle, frame_of: Scene) -> bool:
    """Whether ``scene`` drawn in ``frame_of``'s frame stays inside the image (points, circles, labels)."""
    frame = fit_frame(frame_of, style)
    px = frame.apply(_scene_extent_points(scene, np.eye(2)))  # the frame applies the rotation
    return bool(np.all(px >= 0) and np.all(px <= style.image_size))
