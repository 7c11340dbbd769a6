"""Lesson 01's diagrams: geometry problems as data, with exact facts, captions, questions and pictures.

A scene is data (points, drawn elements, typed facts), so every later stage can read, check and
perturb it; the image is drawn from it last.

==================  ==============================================================================
module              what it holds
==================  ==============================================================================
``geometry``        pure plane-geometry constructions (feet, midpoints, tangents, bisectors)
``scene``           the scene language: points, elements, marks, typed facts; JSON; validation
``facts``           checking facts against the coordinates
``families``        the problem families (a package): random but valid scenes, and their registry
``layout``          letter placement clear of strokes, letters and numbers
``captions``        facts → captions in several phrasings
``parse``           captions → facts (the inverse), and a caption's fact precision / recall (lesson 07)
``qa``              question–answer pairs measured from the coordinates (lesson 06's questions)
``style``           how a scene is drawn: :class:`RenderStyle`, default and seeded random styles
``frame``           scene coordinates → image pixels
``glyphs``          text as cached glyph outlines
``plan``            a scene as strokes, marks and texts in pixels (no matplotlib)
``render``          the reused Agg canvas and the entry points ``render``, ``render_scene``
==================  ==============================================================================

The function ``render`` is not re-exported here: the name would hide the module
``mmgeo_utils.diagrams.render``; import it from there.
"""

from .captions import Caption, describe, fact_to_text
from .facts import check_fact, check_scene_facts, describe_fact, shape_name
from .families import FAMILIES, check_legible, drawn_sides, format_number, generate_scene, nice_value, sample_scene
from .layout import place_labels
from .parse import ParsedCaption, caption_fact_scores, parse_caption
from .qa import QA, make_qa
from .render import DiagramRenderer, RenderResult, render_scene
from .scene import Fact, Scene, fact_set, validate_scene
from .style import RenderStyle, default_style, sample_style

__all__ = [
    "ParsedCaption",
    "caption_fact_scores",
    "parse_caption",
    "FAMILIES",
    "QA",
    "Caption",
    "DiagramRenderer",
    "Fact",
    "RenderResult",
    "RenderStyle",
    "Scene",
    "check_fact",
    "check_legible",
    "check_scene_facts",
    "default_style",
    "describe",
    "describe_fact",
    "drawn_sides",
    "fact_set",
    "fact_to_text",
    "format_number",
    "generate_scene",
    "make_qa",
    "nice_value",
    "place_labels",
    "render_scene",
    "sample_scene",
    "sample_style",
    "shape_name",
    "validate_scene",
]
