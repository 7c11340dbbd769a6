"""How a scene is drawn: :class:`RenderStyle`, its canonical and seeded random values (lessons 01, 02).

A dataset row stores its style, so the renderer can draw the same pixels again; the
ranges :func:`sample_style` draws from also bound the letter size the label layout allows for.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "FONT_FAMILIES",
    "FONT_STYLES",
    "REFERENCE_SIZE",
    "STYLE_RANGES",
    "RenderStyle",
    "default_style",
    "max_em_fraction",
    "sample_style",
]

# fonts shipped inside matplotlib, so every machine draws the same glyphs
FONT_FAMILIES = ("DejaVu Sans", "DejaVu Serif")
FONT_STYLES = ("normal", "italic")
REFERENCE_SIZE = 128  # the image size the pixel defaults below are tuned for


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
    numeric_marks: bool = True  # draw length labels and angle values; False: letters only (MMGeoLM Table 5)

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
        """The style's fields; ``numeric_marks`` only when off, so rows of builds with marks keep their bytes."""
        d = asdict(self)
        if d["numeric_marks"]:
            del d["numeric_marks"]
        return d

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


def enlarged(style: RenderStyle, factor: int) -> RenderStyle:
    """The same style at ``factor`` times the resolution: the image and every pixel size scaled, the rest kept.

    What lesson 07's local view draws: the same diagram, sharper, for crops that each cover part of it.
    """
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    sizes = {name: getattr(style, name) * factor for name in _PIXEL_FIELDS}
    return dataclasses.replace(style, image_size=style.image_size * factor, **sizes)


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
