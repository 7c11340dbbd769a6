"""Captions → facts: the inverse of :mod:`~mmgeo_utils.diagrams.captions`, and a caption's fact score.

A caption is written from templates (:func:`~mmgeo_utils.diagrams.captions.fact_to_text` and the
openings of :func:`~mmgeo_utils.diagrams.captions.describe`), so it can be read back exactly. The
parser does not keep a second copy of the phrasings: it renders every template once with placeholder
points and a placeholder number, and turns each rendering into a regular expression. A phrasing added
to ``captions.py`` is parsed the day it is added, and the round-trip test over every family and
phrasing (``tests/test_caption_parser.py``) says so.

A sentence is an optional connector (``Also, …``), then one to three fact phrases joined by ``, ``,
`` and `` or ``; ``. Phrases themselves contain `` and `` ("AB and CD are equal"), so a sentence is
split by backtracking over whole-phrase matches, never by splitting on the separators first.

Lesson 07 scores a *generated* caption with :func:`caption_fact_scores`:

* **precision**: of the facts the caption states, the share :func:`~mmgeo_utils.diagrams.facts.check_fact`
  confirms in the scene; a sentence the parser cannot read counts as one statement that is not
  confirmed (an unreadable caption must not score well by saying nothing the parser sees);
* **recall**: of the scene's facts, the share the caption states, compared in normal form
  (:meth:`~mmgeo_utils.diagrams.scene.Fact.key`, values as printed, one decimal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from .captions import _CIRCLE_OPENINGS, _CONNECTORS, _LINE_OPENINGS, _NUMBER_WORDS, _POLYGON_OPENINGS, _TEMPLATES
from .captions import _article as article
from .facts import check_fact
from .families.draft import nice_value
from .scene import FACT_KINDS, SHAPE_NAMES, Fact, Scene

__all__ = ["ParsedCaption", "parse_caption", "caption_fact_scores", "fact_match_key"]

POINT = "[A-Z]"  # point names are single capital letters (families.draft.ALPHABET)
NUMBER = r"\d+(?:\.\d+)?"
_PLACEHOLDER_POINTS = tuple(chr(0xE000 + i) for i in range(8))  # private-use characters: never in a caption
_PLACEHOLDER_VALUE = 987.6  # printed "987.6"; no template prints it otherwise
_SEPARATORS = (", ", " and ", "; ")
_POLYGON_SIZES = (3, 4)  # the families draw triangles and quadrilaterals


@dataclass(frozen=True)
class ParsedCaption:
    """What a caption states: its facts in order, and the sentences the parser could not read."""

    facts: tuple[Fact, ...]
    unparsed: tuple[str, ...]


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    kind: str | None  # None: a sentence that states no fact (an opening such as "Circle O is drawn")
    n_points: int
    value: float | str | None  # a constant value (a shape's name, a right angle); None: read it or none


def _regex(text: str, n_points: int) -> str:
    """A rendering with placeholders → a regex: each placeholder a group (later uses back-references)."""
    out, seen = [], set()
    value_text = re.escape(str(nice_value(_PLACEHOLDER_VALUE)))
    escaped = re.escape(text).replace(value_text, f"(?P<v>{NUMBER})")
    for ch in escaped:
        if ch in _PLACEHOLDER_POINTS[:n_points]:
            i = _PLACEHOLDER_POINTS.index(ch)
            out.append(f"(?P=p{i})" if i in seen else f"(?P<p{i}>{POINT})")
            seen.add(i)
        else:
            out.append(ch)
    body = "".join(out)
    if body[:1].isalpha() and body[:1].islower():  # a sentence's first phrase is capitalised
        body = f"[{body[0]}{body[0].upper()}]" + body[1:]
    return body


def _fact_patterns() -> list[_Pattern]:
    pts = _PLACEHOLDER_POINTS
    out: list[_Pattern] = []
    for kind, template in _TEMPLATES.items():
        arity, vtype, _ = FACT_KINDS[kind]
        sizes = _POLYGON_SIZES if arity is None else (arity,)
        values: list[Any] = {"number": [_PLACEHOLDER_VALUE], "name": list(SHAPE_NAMES), "none": [None]}[vtype]
        if kind == "angle":
            values.append(90)  # a right angle has its own phrasings
        for n in sizes:
            for value in values:
                if kind == "shape" and (n == 3) != value.endswith("triangle"):
                    continue
                for text in template(Fact(kind, pts[:n], value)):
                    constant = None if value == _PLACEHOLDER_VALUE else value
                    out.append(_Pattern(re.compile(_regex(text, n)), kind, n, constant))
    return out


def _opening_patterns() -> list[_Pattern]:
    pts, out = _PLACEHOLDER_POINTS, []
    for n in _POLYGON_SIZES:
        poly = "".join(pts[:n])
        for name in SHAPE_NAMES:
            if (n == 3) != name.endswith("triangle"):
                continue
            for template in _POLYGON_OPENINGS:
                for extra in ("", f", with a circle centred at {pts[n]}"):
                    text = template.format(a=article(name), name=name, poly=poly, extra=extra).rstrip(".")
                    out.append(_Pattern(re.compile(_regex(text, n + bool(extra))), "shape", n, name))
    for template in _CIRCLE_OPENINGS:
        out.append(_Pattern(re.compile(_regex(template.format(o=pts[0]).rstrip("."), 1)), None, 0, None))
    for count in (*_NUMBER_WORDS.values(), NUMBER):
        for template in _LINE_OPENINGS:
            text = re.escape(template.format(n="\x00").rstrip(".")).replace("\x00", count)
            out.append(_Pattern(re.compile(text), None, 0, None))
    return out


@cache
def _patterns() -> tuple[tuple[_Pattern, ...], tuple[_Pattern, ...]]:
    return tuple(_fact_patterns()), tuple(_opening_patterns())


def _fact(p: _Pattern, m: re.Match[str]) -> Fact | None:
    if p.kind is None:
        return None
    args = tuple(m.group(f"p{i}") for i in range(p.n_points))
    value: Any = p.value
    if value is None and FACT_KINDS[p.kind][1] == "number":
        value = nice_value(float(m.group("v")))
    return Fact(p.kind, args, value)


def _phrases(body: str, start: int, patterns: tuple[_Pattern, ...]) -> list[Fact] | None:
    """Facts of ``body[start:]`` read as phrases joined by separators (backtracking), or None."""
    for p in patterns:
        m = p.regex.match(body, start)
        if m is None:
            continue
        end, fact = m.end(), _fact(p, m)
        if end == len(body):
            return [fact] if fact else []
        for sep in _SEPARATORS:
            if body.startswith(sep, end):
                rest = _phrases(body, end + len(sep), patterns)
                if rest is not None:
                    return ([fact] if fact else []) + rest
    return None


def _sentences(text: str) -> list[str]:
    """Split at a full stop followed by a space or the end ("4.5" keeps its point)."""
    return [s.strip() for s in re.split(r"\.(?=\s|$)", text.strip()) if s.strip()]


def _strip_connector(sentence: str) -> str:
    for c in sorted({c for c in _CONNECTORS if c}, key=len, reverse=True):
        if sentence.startswith(c):
            return sentence[len(c) :]
    return sentence


def parse_caption(text: str) -> ParsedCaption:
    """The facts ``text`` states, in order, and the sentences no template reads.

    ``parse_caption(describe(scene, seed).text).facts`` equals the caption's own facts, for every family
    and phrasing (the tests check it); a generated caption is read the same way, sentence by sentence.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_caption takes the caption's text, got {type(text).__name__}")
    facts_p, openings = _patterns()
    facts: list[Fact] = []
    unparsed: list[str] = []
    for i, sentence in enumerate(_sentences(text)):
        body = _strip_connector(sentence)
        read = _phrases(body, 0, openings) if i == 0 else None
        if read is None:
            read = _phrases(body, 0, facts_p)
        if read is None:
            unparsed.append(sentence)
        else:
            facts.extend(read)
    return ParsedCaption(tuple(facts), tuple(unparsed))


def fact_match_key(fact: Fact) -> tuple:
    """A fact's normal form for matching stated against true facts.

    :meth:`Fact.key` plus two readings a caption cannot tell apart: a value as printed (one decimal),
    and a perpendicular pair of segments from one point (``BA ⟂ BC``), which is the right angle ABC.
    """
    k, a, v = fact.kind, fact.args, fact.value
    if k == "perpendicular":
        shared = set(a[:2]) & set(a[2:])
        if len(shared) == 1 and len(set(a)) == 3:
            (b,) = shared
            ends = [x for x in a if x != b]
            fact, k, v = Fact("angle", (ends[0], b, ends[1]), 90), "angle", 90
    if isinstance(v, (int, float)):
        fact = Fact(k, fact.args, nice_value(float(v)))
    return fact.key()


def _confirmed(scene: Scene, fact: Fact) -> bool:
    try:
        return check_fact(scene, fact)
    except ValueError:  # the caption names a point the scene does not have: not confirmed
        return False


def caption_fact_scores(scene: Scene, text: str) -> dict[str, Any]:
    """Fact precision, recall and F1 of ``text`` as a caption of ``scene`` (see the module docstring).

    Also returns ``stated``, ``confirmed``, ``unparsed`` (sentence count), and ``wrong`` / ``missing``:
    the stated facts the scene refutes and the scene's facts the caption leaves out, as
    ``describe_fact`` strings, so a lesson can show what a captioner gets wrong.
    """
    from .facts import describe_fact  # local: only the report strings need it

    parsed = parse_caption(text)
    confirmed = [f for f in parsed.facts if _confirmed(scene, f)]
    wrong = [describe_fact(f) for f in parsed.facts if f not in confirmed]
    stated_keys = {fact_match_key(f) for f in parsed.facts}
    truth = list(scene.facts)
    found = [f for f in truth if fact_match_key(f) in stated_keys]
    claims = len(parsed.facts) + len(parsed.unparsed)
    precision = len(confirmed) / claims if claims else 0.0
    recall = len(found) / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "stated": len(parsed.facts),
        "confirmed": len(confirmed),
        "unparsed": len(parsed.unparsed),
        "wrong": wrong,
        "missing": [describe_fact(f) for f in truth if f not in found],
    }
