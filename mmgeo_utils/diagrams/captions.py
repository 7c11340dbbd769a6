"""Facts → captions in several phrasings.

A caption is *written from the facts*: an opening sentence that names the figure,
then every fact of the scene in a seed-dependent order and phrasing. Because each
sentence is generated from a typed :class:`~mmgeo_utils.diagrams.scene.Fact`, a caption
knows which facts it states (:attr:`Caption.facts`), which is what lesson 02 needs
to edit exactly one of them into a text hard negative. Phrasings mix symbols
(``∠ABC = 40°``, ``AB ∥ CD``) and words (``angle ABC measures 40 degrees``) so a
text encoder cannot tie a fact to one surface form. The questions about a scene are
:mod:`mmgeo_utils.diagrams.qa`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .families.draft import format_number
from .families.legibility import drawn_sides
from .scene import Circle, Fact, Scene, validate_scene

__all__ = ["Caption", "fact_to_text", "describe", "n_variants"]

# ----------------------------------------------------------------------------- phrasings


@dataclass(frozen=True)
class Caption:
    """A caption and the facts its text states, in the order it states them."""

    text: str
    facts: tuple[Fact, ...]


def _num(v) -> str:
    return format_number(float(v))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _shape_noun(name: str, n: int) -> str:
    """The prefix used with a polygon name in words: 'triangle', 'quadrilateral'."""
    return "triangle" if n == 3 else "quadrilateral"


def _shape_texts(f: Fact) -> list[str]:
    poly, name = "".join(f.args), str(f.value)
    out = [f"{poly} is {_article(name)} {name}", f"the figure {poly} is {_article(name)} {name}"]
    if len(f.args) == 3 and name != "triangle":
        out.append(f"△{poly} is {name.removesuffix(' triangle')}")
    else:
        out.append(f"{_shape_noun(name, len(f.args))} {poly} is {_article(name)} {name}")
    return out


def _angle_texts(f: Fact) -> list[str]:
    a, b, c = f.args
    v = _num(f.value)
    if float(f.value) == 90:
        return [f"∠{a}{b}{c} = 90°", f"angle {a}{b}{c} is a right angle", f"{b}{a} ⟂ {b}{c}"]
    return [
        f"∠{a}{b}{c} = {v}°",
        f"angle {a}{b}{c} measures {v} degrees",
        f"∠{a}{b}{c} is {v}°",
        f"the angle between {b}{a} and {b}{c} is {v}°",
    ]


def _segment_name(a: str, b: str) -> str:
    return a + b


# Each kind: functions of the args (and value) that return the phrasings.
_TEMPLATES: dict[str, Callable[[Fact], list[str]]] = {
    "length": lambda f: [
        f"{_segment_name(*f.args)} = {_num(f.value)}",
        f"{_segment_name(*f.args)} has length {_num(f.value)}",
        f"the length of {_segment_name(*f.args)} is {_num(f.value)}",
        f"{_segment_name(*f.args)} measures {_num(f.value)}",
    ],
    "angle": _angle_texts,
    "perpendicular": lambda f: [
        f"{_segment_name(*f.args[:2])} ⟂ {_segment_name(*f.args[2:])}",
        f"{_segment_name(*f.args[:2])} is perpendicular to {_segment_name(*f.args[2:])}",
        f"{_segment_name(*f.args[:2])} meets {_segment_name(*f.args[2:])} at a right angle",
    ],
    "parallel": lambda f: [
        f"{_segment_name(*f.args[:2])} ∥ {_segment_name(*f.args[2:])}",
        f"{_segment_name(*f.args[:2])} is parallel to {_segment_name(*f.args[2:])}",
        f"line {_segment_name(*f.args[:2])} runs parallel to {_segment_name(*f.args[2:])}",
    ],
    "equal_length": lambda f: [
        f"{_segment_name(*f.args[:2])} = {_segment_name(*f.args[2:])}",
        f"{_segment_name(*f.args[:2])} and {_segment_name(*f.args[2:])} are equal",
        f"{_segment_name(*f.args[:2])} is as long as {_segment_name(*f.args[2:])}",
    ],
    "midpoint": lambda f: [
        f"{f.args[0]} is the midpoint of {_segment_name(*f.args[1:])}",
        f"{f.args[0]} bisects segment {_segment_name(*f.args[1:])}",
        f"point {f.args[0]} is the midpoint of {_segment_name(*f.args[1:])}",
    ],
    "on_segment": lambda f: [
        f"{f.args[0]} lies on {_segment_name(*f.args[1:])}",
        f"{f.args[0]} is a point on segment {_segment_name(*f.args[1:])}",
        f"point {f.args[0]} is on {_segment_name(*f.args[1:])}",
    ],
    "on_circle": lambda f: [
        f"{f.args[0]} lies on circle {f.args[1]}",
        f"{f.args[0]} is on the circle centred at {f.args[1]}",
        f"point {f.args[0]} is on ⊙{f.args[1]}",
    ],
    "diameter": lambda f: [
        f"{_segment_name(*f.args[:2])} is a diameter of circle {f.args[2]}",
        f"{_segment_name(*f.args[:2])} is a diameter of the circle centred at {f.args[2]}",
        f"segment {_segment_name(*f.args[:2])} is a diameter of ⊙{f.args[2]}",
    ],
    "radius": lambda f: [
        f"{_segment_name(*f.args)} is a radius of circle {f.args[0]}",
        f"{_segment_name(*f.args)} is a radius of the circle centred at {f.args[0]}",
        f"segment {_segment_name(*f.args)} is a radius of ⊙{f.args[0]}",
    ],
    "tangent": lambda f: [
        f"{_segment_name(*f.args[:2])} is tangent to circle {f.args[2]} at {f.args[1]}",
        f"line {_segment_name(*f.args[:2])} touches the circle centred at {f.args[2]} at {f.args[1]}",
        f"{_segment_name(*f.args[:2])} is a tangent to ⊙{f.args[2]} with point of tangency {f.args[1]}",
    ],
    "secant": lambda f: [
        f"line {_segment_name(*f.args[:2])} is a secant of circle {f.args[2]} through {f.args[1]}",
        f"{_segment_name(*f.args[:2])} cuts circle {f.args[2]} at {f.args[1]} and at a second point",
        f"the secant {_segment_name(*f.args[:2])} meets ⊙{f.args[2]} at {f.args[1]}",
    ],
    "altitude": lambda f: [
        f"{_segment_name(*f.args[:2])} is the altitude from {f.args[0]} to {_segment_name(*f.args[2:])}",
        f"the altitude from {f.args[0]} meets {_segment_name(*f.args[2:])} at {f.args[1]}",
        f"{_segment_name(*f.args[:2])} is the height from {f.args[0]}, with foot {f.args[1]} on {_segment_name(*f.args[2:])}",
    ],
    "median": lambda f: [
        f"{_segment_name(*f.args[:2])} is the median from {f.args[0]} to {_segment_name(*f.args[2:])}",
        f"the median from {f.args[0]} meets {_segment_name(*f.args[2:])} at {f.args[1]}",
        f"{_segment_name(*f.args[:2])} is a median of the triangle, ending at the midpoint {f.args[1]} of {_segment_name(*f.args[2:])}",
    ],
    "bisector": lambda f: [
        f"{_segment_name(*f.args[:2])} bisects ∠{f.args[2]}{f.args[0]}{f.args[3]}",
        f"{_segment_name(*f.args[:2])} is the bisector of angle {f.args[2]}{f.args[0]}{f.args[3]}",
        f"ray {_segment_name(*f.args[:2])} splits ∠{f.args[2]}{f.args[0]}{f.args[3]} into two equal angles",
    ],
    "intersection": lambda f: [
        f"{f.args[0]} is the intersection of {_segment_name(*f.args[1:3])} and {_segment_name(*f.args[3:])}",
        f"{_segment_name(*f.args[1:3])} and {_segment_name(*f.args[3:])} meet at {f.args[0]}",
        f"lines {_segment_name(*f.args[1:3])} and {_segment_name(*f.args[3:])} intersect at {f.args[0]}",
    ],
    "shape": _shape_texts,
    "similar": lambda f: [
        f"△{''.join(f.args[:3])} ~ △{''.join(f.args[3:])}",
        f"triangle {''.join(f.args[:3])} is similar to triangle {''.join(f.args[3:])}",
        f"△{''.join(f.args[:3])} and △{''.join(f.args[3:])} are similar",
    ],
    "congruent": lambda f: [
        f"△{''.join(f.args[:3])} ≅ △{''.join(f.args[3:])}",
        f"triangle {''.join(f.args[:3])} is congruent to triangle {''.join(f.args[3:])}",
        f"△{''.join(f.args[:3])} and △{''.join(f.args[3:])} are congruent",
    ],
}


def n_variants(fact: Fact) -> int:
    """How many phrasings :func:`fact_to_text` has for this fact."""
    return len(_TEMPLATES[fact.kind](fact))


def fact_to_text(fact: Fact, variant: int = 0) -> str:
    """One phrasing of ``fact`` (``variant`` is taken modulo the number of phrasings)."""
    options = _TEMPLATES[fact.kind](fact)
    return options[variant % len(options)]


# ----------------------------------------------------------------------------- captions

_POLYGON_OPENINGS = (
    "The figure shows {a} {name} {poly}{extra}.",
    "In the diagram, {poly} is {a} {name}{extra}.",
    "Consider {a} {name} {poly}{extra}.",
    "Here we see {a} {name} {poly}{extra}.",
)
_CIRCLE_OPENINGS = (
    "The figure shows a circle with centre {o}.",
    "Circle {o} is drawn.",
    "The diagram is built around a circle centred at {o}.",
)
_LINE_OPENINGS = (
    "The figure shows {n} straight lines.",
    "The diagram is made of {n} lines.",
    "Here {n} lines are drawn.",
)
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_CONNECTORS = ("", "", "", "Also, ", "Moreover, ", "In addition, ")
MAX_FACTS_PER_SENTENCE = 3


def _centre_names(scene: Scene) -> list[str]:
    return sorted({el.center for el in scene.elements if isinstance(el, Circle)})


def _opening(scene: Scene, rng: np.random.Generator) -> tuple[str, Fact | None]:
    """The sentence naming the figure, and the shape fact it states (if any).

    It is written from the scene's own facts and strokes, so a perturbed scene
    gets an opening that matches it.
    """
    shapes = [f for f in scene.facts if f.kind == "shape"]
    centres = _centre_names(scene)
    if shapes:
        f = shapes[0]
        name = str(f.value)
        extra = f", with a circle centred at {centres[0]}" if centres else ""
        template = _POLYGON_OPENINGS[int(rng.integers(len(_POLYGON_OPENINGS)))]
        return template.format(a=_article(name), name=name, poly="".join(f.args), extra=extra), f
    if centres:
        return _CIRCLE_OPENINGS[int(rng.integers(len(_CIRCLE_OPENINGS)))].format(o=centres[0]), None
    n = len(drawn_sides(scene))
    template = _LINE_OPENINGS[int(rng.integers(len(_LINE_OPENINGS)))]
    return template.format(n=_NUMBER_WORDS.get(n, str(n))), None


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentence(parts: Sequence[str], rng: np.random.Generator) -> str:
    """Join one to three fact phrases into a sentence: 'X, Y and Z.' or 'X; Y.'"""
    if len(parts) == 1:
        body = parts[0]
    elif rng.random() < 0.7:
        body = ", ".join(parts[:-1]) + " and " + parts[-1]
    else:
        body = "; ".join(parts)
    connector = _CONNECTORS[int(rng.integers(len(_CONNECTORS)))]
    return (connector + body if connector else _capitalise(body)) + "."


def describe(scene: Scene, seed: int = 0) -> Caption:
    """A caption stating every fact of ``scene``; order and phrasing are drawn from ``seed``.

    Deterministic in ``(scene, seed)``. The opening names the figure (its shape
    fact when it has one); the other facts follow in shuffled order, one to three
    per sentence, each in a randomly chosen phrasing. A scene that fails
    :func:`~mmgeo_utils.diagrams.scene.validate_scene` is refused, not described.
    """
    validate_scene(scene)
    rng = np.random.default_rng(seed)
    opening, stated = _opening(scene, rng)
    rest = [f for f in scene.facts if f is not stated]
    order = [rest[i] for i in rng.permutation(len(rest))]
    sentences, i = [opening], 0
    while i < len(order):
        k = int(rng.integers(1, MAX_FACTS_PER_SENTENCE + 1))
        chunk = order[i : i + k]
        sentences.append(_sentence([fact_to_text(f, int(rng.integers(n_variants(f)))) for f in chunk], rng))
        i += k
    facts = ((stated,) if stated else ()) + tuple(order)
    return Caption(" ".join(sentences), facts)
