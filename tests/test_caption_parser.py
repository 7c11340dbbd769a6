"""The caption parser (lesson 07): every phrasing and every family round-trips, and generated text is scored."""

from __future__ import annotations

import pytest
from scene_cache import scene_of

from mmgeo_utils.diagrams.captions import describe, fact_to_text, n_variants
from mmgeo_utils.diagrams.families import FAMILIES
from mmgeo_utils.diagrams.parse import caption_fact_scores, fact_match_key, parse_caption
from mmgeo_utils.diagrams.scene import Fact

FIRST_FAMILY = next(iter(FAMILIES))

EXAMPLES = [
    Fact("length", ("A", "B"), 6),
    Fact("length", ("P", "Q"), 4.5),
    Fact("angle", ("A", "B", "C"), 40),
    Fact("angle", ("A", "B", "C"), 90),
    Fact("perpendicular", ("A", "B", "C", "D")),
    Fact("parallel", ("A", "B", "C", "D")),
    Fact("equal_length", ("A", "B", "A", "C")),
    Fact("midpoint", ("M", "A", "B")),
    Fact("on_segment", ("P", "A", "B")),
    Fact("on_circle", ("P", "O")),
    Fact("diameter", ("A", "B", "O")),
    Fact("radius", ("O", "A")),
    Fact("tangent", ("P", "T", "O")),
    Fact("secant", ("P", "A", "O")),
    Fact("altitude", ("C", "H", "A", "B")),
    Fact("median", ("A", "M", "B", "C")),
    Fact("bisector", ("B", "D", "A", "C")),
    Fact("intersection", ("E", "A", "C", "B", "D")),
    Fact("shape", ("A", "B", "C", "D"), "rhombus"),
    Fact("shape", ("A", "B", "C"), "isosceles right triangle"),
    Fact("similar", ("A", "D", "E", "A", "B", "C")),
    Fact("congruent", ("A", "B", "M", "A", "C", "M")),
]


def _sentence(phrase: str) -> str:
    return phrase[0].upper() + phrase[1:] + "."


@pytest.mark.parametrize("fact", EXAMPLES, ids=lambda f: f"{f.kind}-{f.value}")
def test_every_phrasing_of_every_kind_reads_back(fact):
    for v in range(n_variants(fact)):
        text = fact_to_text(fact, v)
        for sentence in (_sentence(text), "Moreover, " + text + "."):
            parsed = parse_caption(sentence)
            assert parsed.unparsed == (), (sentence, parsed)
            assert [fact_match_key(f) for f in parsed.facts] == [fact_match_key(fact)], sentence


def test_phrases_joined_by_and_are_split_where_a_phrase_contains_and():
    a = Fact("equal_length", ("A", "B", "C", "D"))
    b = Fact("similar", ("A", "B", "C", "D", "E", "F"))
    c = Fact("length", ("A", "B"), 4.5)
    text = f"{fact_to_text(a, 1)}, {fact_to_text(b, 2)} and {fact_to_text(c, 0)}."  # "AB and CD are equal, ..."
    assert [f.key() for f in parse_caption(text).facts] == [
        a.key(),
        b.key(),
        c.key(),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_round_trips_over_many_phrasings(family):
    for seed in range(6):
        scene = scene_of(family, seed)
        for caption_seed in range(8):
            caption = describe(scene, caption_seed)
            parsed = parse_caption(caption.text)
            assert parsed.unparsed == (), (caption.text, parsed.unparsed)
            assert [fact_match_key(f) for f in parsed.facts] == [fact_match_key(f) for f in caption.facts], caption.text
            scores = caption_fact_scores(scene, caption.text)
            assert (scores["precision"], scores["recall"], scores["wrong"], scores["missing"]) == (1.0, 1.0, [], [])


def test_a_wrong_value_a_missing_fact_and_gibberish_are_scored():
    scene = scene_of(FIRST_FAMILY, 0)
    caption = describe(scene, 0)
    numeric = next((f for f in caption.facts if f.kind in ("length", "angle") and f.value != 90), None)
    assert numeric is not None, "the first family should state a length or an angle"
    wrong = Fact(numeric.kind, numeric.args, float(numeric.value) + 7)
    kept = [f for f in caption.facts if f is not numeric]
    text = " ".join(_sentence(fact_to_text(f)) for f in [*kept[:-1], wrong]) + " Blue banana sings."
    s = caption_fact_scores(scene, text)
    n_claims = len(kept) - 1 + 1 + 1  # the kept facts but the last, the wrong one, the unreadable sentence
    assert s["unparsed"] == 1 and s["stated"] == len(kept)
    assert s["precision"] == pytest.approx((len(kept) - 1) / n_claims)
    assert s["recall"] == pytest.approx((len(kept) - 1) / len(scene.facts))
    assert len(s["wrong"]) == 1 and str(wrong.args[0]) in s["wrong"][0]
    assert len(s["missing"]) == len(scene.facts) - (len(kept) - 1)


def test_a_fact_about_a_point_the_scene_lacks_is_not_confirmed():
    scene = scene_of(FIRST_FAMILY, 0)
    absent = next(c for c in "ZYXW" if c not in scene.points)
    s = caption_fact_scores(scene, f"{absent}A = 3.")
    assert s["stated"] == 1 and s["confirmed"] == 0 and s["precision"] == 0.0


def test_empty_and_non_text_captions():
    scene = scene_of(FIRST_FAMILY, 0)
    assert caption_fact_scores(scene, "")["f1"] == 0.0
    with pytest.raises(TypeError, match="caption's text"):
        parse_caption(None)  # type: ignore[arg-type]
