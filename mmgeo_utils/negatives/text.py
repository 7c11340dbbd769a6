"""Rule-based text hard negatives: edit the caption through its facts, and prove each edit false.

MMGeoLM (Sun et al., arXiv 2505.20152, §2.2 and App. G Fig. 15) asks GLM-4 to apply
rules derived from an error analysis of LMMs on MM-Math, four error types, 1-4 edits
per negative caption, 10 negatives per caption:

1. **label** – element order and letter labels: change at least two letters
   ("AB ∥ CD" → "AD ∥ CB"), never into a cyclic rotation or reversal that names the
   same thing (ABCD → CDAB, AC → CA), and no letters the figure does not have;
2. **shape** – shape attributes: square → rectangle, diameter → radius,
   equilateral → isosceles;
3. **relation** – geometric relations: parallel ↔ perpendicular (allowed here, unlike
   in image negatives), similar ↔ congruent, equal → parallel;
4. **number** – numerical values.

An LLM applying such rules cannot promise the edited statement is false (turning
"congruent" into "similar" yields a true caption). Here a rule edits a typed
:class:`~mmgeo_utils.diagrams.scene.Fact`, and the edited fact is checked against the scene's
coordinates (:func:`~mmgeo_utils.diagrams.facts.check_fact`): an edit that happens to be true
is rejected and counted, so every negative is false for its image. The negative
caption is the scene's caption re-rendered from the edited fact list with the *same*
phrasing seed, so only the edited phrases change (:func:`changed_spans` finds them
for lesson 02's highlighting).

Each negative carries one primary ``error_type`` and all its edits are of that type,
so a training step can put one kind of error in each negative column
(:func:`slot_by_type`): CE-CLIP's rank loss keeps one adaptive threshold per negative
type, which only makes sense if column k holds the same type for every sample.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..diagrams.captions import Caption, describe
from ..diagrams.facts import check_fact, describe_fact
from ..diagrams.families import nice_value
from ..diagrams.scene import Fact, Scene, fact_set, validate_scene

__all__ = [
    "ERROR_TYPES",
    "Edit",
    "TextNegative",
    "ChangedSpan",
    "make_text_negatives",
    "edit_candidates",
    "verify_text_negative",
    "slot_by_type",
    "changed_spans",
    "SHAPE_SWAPS",
    "RELATION_SWAPS",
]

ERROR_TYPES = ("label", "shape", "relation", "number")
LABEL_REPLACEMENTS = 24  # random two-letter replacements tried per fact, besides the swaps
MAX_TRIES_PER_NEGATIVE = 4  # a duplicate negative is redrawn at most this often before the type is dropped

# Confusable shape names (most specific names: facts.shape_name). Generalisations such
# as square → rectangle are false under that reading, as in the paper's examples.
SHAPE_SWAPS: dict[str, tuple[str, ...]] = {
    "square": ("rectangle", "rhombus"),
    "rectangle": ("square", "parallelogram"),
    "rhombus": ("square", "parallelogram"),
    "parallelogram": ("rectangle", "rhombus"),
    "trapezoid": ("isosceles trapezoid", "parallelogram"),
    "isosceles trapezoid": ("trapezoid", "rectangle"),
    "quadrilateral": ("trapezoid", "parallelogram"),
    "equilateral triangle": ("isosceles triangle",),
    "isosceles triangle": ("equilateral triangle", "right triangle"),
    "right triangle": ("isosceles right triangle", "isosceles triangle"),
    "isosceles right triangle": ("right triangle", "isosceles triangle"),
    "triangle": ("isosceles triangle", "right triangle"),
}
# Roles of a segment with the same arguments (vertex, foot, end, end) or (P, T, O).
ROLE_SWAPS: dict[str, tuple[str, ...]] = {
    "altitude": ("median", "bisector"),
    "median": ("altitude", "bisector"),
    "bisector": ("altitude", "median"),
    "tangent": ("secant",),
    "secant": ("tangent",),
}
# Relations over the same points. congruent → similar is always true and is kept on
# purpose: it is the rule an LLM would happily apply, and the checker rejects it.
RELATION_SWAPS: dict[str, tuple[str, ...]] = {
    "parallel": ("perpendicular", "equal_length"),
    "perpendicular": ("parallel",),
    "equal_length": ("parallel",),
    "similar": ("congruent",),
    "congruent": ("similar",),
    "on_segment": ("midpoint",),
}
# Argument positions naming a circle's centre: a label edit leaves them alone (⊙O is a convention).
CENTRE_POSITIONS = {"on_circle": (1,), "diameter": (2,), "radius": (0,), "tangent": (2,), "secant": (2,)}


@dataclass(frozen=True)
class Edit:
    """One rule applied to one fact: ``before`` (true, stated) became ``after`` (false)."""

    error_type: str
    before: Fact
    after: Fact


@dataclass(frozen=True)
class TextNegative:
    """A negative caption, the facts it states, and the edits that made it (all of ``error_type``)."""

    text: str
    facts: tuple[Fact, ...]
    edits: tuple[Edit, ...]
    error_type: str


# ----------------------------------------------------------------------------- the rules


def _well_formed(scene: Scene, fact: Fact) -> bool:
    """Whether the fact names existing points with no letter repeated where it must not be."""
    try:
        validate_scene(Scene(scene.family, dict(scene.points), [], [fact], unit=scene.unit))
    except ValueError:
        return False
    return True


# kinds whose first point is *defined by* the others: it cannot also be one of them
DEFINED_POINT_KINDS = ("midpoint", "on_segment", "intersection", "altitude", "median")


def _sensible(fact: Fact) -> bool:
    """Rules out statements false by their form alone, which teach nothing about the picture.

    Two lines through one point called parallel; a point called the intersection
    (midpoint, foot, ...) of lines through itself, e.g. "E is the intersection of EB and AB".
    """
    if fact.kind == "parallel" and len(set(fact.args)) < 4:
        return False
    return not (fact.kind in DEFINED_POINT_KINDS and fact.args[0] in fact.args[1:])


def _letters_changed(a: Fact, b: Fact) -> int:
    return sum(x != y for x, y in zip(a.args, b.args))


def _label_candidates(fact: Fact, scene: Scene, rng: np.random.Generator) -> list[Fact]:
    """Change ≥ 2 letters of a fact: swap two of its letters, or replace two with other letters of the scene.

    A candidate must be a *different* fact (its canonical form differs, so ABCD → CDAB or
    AC → CA never pass) and use only the scene's letters; circle centres keep their letter.
    """
    args = fact.args
    pos = [i for i in range(len(args)) if i not in CENTRE_POSITIONS.get(fact.kind, ())]
    letters = sorted(scene.points)
    out = []
    for i, j in combinations(pos, 2):
        if args[i] != args[j]:
            new = list(args)
            new[i], new[j] = new[j], new[i]
            out.append(tuple(new))
    for _ in range(LABEL_REPLACEMENTS if len(pos) >= 2 else 0):
        i, j = (int(x) for x in rng.choice(pos, size=2, replace=False))
        new = list(args)
        new[i], new[j] = (str(x) for x in rng.choice(letters, size=2))
        out.append(tuple(new))
    facts = []
    for a in dict.fromkeys(out):
        f = Fact(fact.kind, a, fact.value)
        if _letters_changed(fact, f) >= 2 and f.key() != fact.key() and _sensible(f) and _well_formed(scene, f):
            facts.append(f)
    return facts


def _shape_candidates(fact: Fact, scene: Scene, rng: np.random.Generator) -> list[Fact]:
    """Swap a shape name for a confusable one, or a segment's role (altitude ↔ median, tangent ↔ secant)."""
    if fact.kind == "shape":
        return [Fact("shape", fact.args, name) for name in SHAPE_SWAPS.get(str(fact.value), ())]
    return [Fact(kind, fact.args) for kind in ROLE_SWAPS.get(fact.kind, ())]


def _relation_candidates(fact: Fact, scene: Scene, rng: np.random.Generator) -> list[Fact]:
    """Swap the relation between the same points: ∥ ↔ ⟂, = → ∥, ~ ↔ ≅, on → midpoint."""
    out = [Fact(kind, fact.args) for kind in RELATION_SWAPS.get(fact.kind, ())]
    return [f for f in out if _sensible(f) and _well_formed(scene, f)]


def _number_candidates(fact: Fact, scene: Scene, rng: np.random.Generator) -> list[Fact]:
    """Change a stated length (near misses, doubled, halved) or angle (±5-20°, supplement, complement)."""
    if fact.kind == "length":
        v = float(fact.value)  # type: ignore[arg-type]
        values = [v + 1, v - 1, v + 2, v - 2, 2 * v, v / 2]
    elif fact.kind == "angle":
        v = float(fact.value)  # type: ignore[arg-type]
        values = [v + 5, v - 5, v + 10, v - 10, v + 20, v - 20, 180 - v, 90 - v]
        values = [x for x in values if 0 < x < 180]
    else:
        return []
    values = [nice_value(x) for x in values if x > 0]
    return [Fact(fact.kind, fact.args, x) for x in dict.fromkeys(values) if abs(float(x) - v) > 1e-9]


RULES: dict[str, Callable[[Fact, Scene, np.random.Generator], list[Fact]]] = {
    "label": _label_candidates,
    "shape": _shape_candidates,
    "relation": _relation_candidates,
    "number": _number_candidates,
}


def edit_candidates(fact: Fact, scene: Scene, error_type: str, rng: np.random.Generator) -> list[Fact]:
    """What the rule for ``error_type`` could turn ``fact`` into, before the truth check (in random order)."""
    if error_type not in RULES:
        raise ValueError(f"unknown error type {error_type!r}; known: {', '.join(ERROR_TYPES)}")
    cands = RULES[error_type](fact, scene, rng)
    return [cands[i] for i in rng.permutation(len(cands))]


def _false_edit(
    fact: Fact, scene: Scene, error_type: str, rng: np.random.Generator, rejections: Counter
) -> Edit | None:
    """The first candidate that is false of the scene; each true candidate is rejected and counted."""
    cands = edit_candidates(fact, scene, error_type, rng)
    for new in cands:
        if new.key() in scene.fact_keys() or check_fact(scene, new):
            rejections[f"{error_type}: true statement"] += 1
            continue
        return Edit(error_type, fact, new)
    if cands:
        rejections[f"{error_type}: no false edit of {fact.kind}"] += 1
    return None


# ----------------------------------------------------------------------------- negatives


def _phrasing_seed(scene: Scene, caption: Caption, caption_seed: int | None) -> int:
    """The seed ``describe`` used for ``caption``: re-rendering with it changes only edited phrases."""
    seed = caption_seed if caption_seed is not None else getattr(caption, "seed", None)
    if seed is None:
        raise ValueError("pass caption_seed: the seed describe(scene, seed) wrote the caption with")
    if describe(scene, int(seed)).text != caption.text:
        raise ValueError(f"the caption was not written by describe(scene, {seed}); pass its caption_seed")
    if fact_set(caption.facts) != scene.fact_keys():
        raise ValueError("the caption's facts are not the scene's facts")
    return int(seed)


def _negative(scene: Scene, edits: list[tuple[int, Edit]], error_type: str, seed: int) -> TextNegative:
    facts = list(scene.facts)
    for i, e in edits:
        facts[i] = e.after
    edited = Scene(scene.family, scene.points, scene.elements, facts, unit=scene.unit, seed=scene.seed)
    cap = describe(edited, seed)
    return TextNegative(cap.text, cap.facts, tuple(e for _, e in edits), error_type)


def _draw_negative(
    scene: Scene, error_type: str, n_edits: int, rng: np.random.Generator, rejections: Counter, seed: int
) -> TextNegative | None:
    """Up to ``n_edits`` false edits of one type on distinct facts (spread over the caption)."""
    edits: list[tuple[int, Edit]] = []
    for i in rng.permutation(len(scene.facts)):
        if len(edits) == n_edits:
            break
        e = _false_edit(scene.facts[int(i)], scene, error_type, rng, rejections)
        if e:
            edits.append((int(i), e))
    return _negative(scene, sorted(edits, key=lambda x: x[0]), error_type, seed) if edits else None


def verify_text_negative(scene: Scene, caption: Caption, neg: TextNegative) -> None:
    """Raise ``ValueError`` naming the problem unless ``neg`` is an honest rule negative of ``caption``.

    Every edited fact is false of the scene (and not one of its stated facts), names
    only the scene's letters, is of the negative's type; a label edit changes ≥ 2
    letters into a different fact; the negative states exactly the caption's facts
    with the edits applied; and its text differs from the caption.
    """
    if not neg.edits:
        raise ValueError("a negative needs at least one edit")
    expected = (scene.fact_keys() - fact_set(e.before for e in neg.edits)) | fact_set(e.after for e in neg.edits)
    if fact_set(neg.facts) != expected:
        raise ValueError("the negative's facts are not the caption's facts with the edits applied")
    for e in neg.edits:
        if e.error_type != neg.error_type:
            raise ValueError(f"edit of type {e.error_type!r} in a {neg.error_type!r} negative")
        new = set(e.after.args) - set(scene.points)
        if new:
            raise ValueError(f"edit {describe_fact(e.after)} uses letters the figure lacks: {sorted(new)}")
        if e.after.key() in scene.fact_keys() or check_fact(scene, e.after):
            raise ValueError(f"edit {describe_fact(e.before)} → {describe_fact(e.after)} is true of the figure")
        if e.error_type == "label" and (_letters_changed(e.before, e.after) < 2 or e.after.key() == e.before.key()):
            raise ValueError(
                f"label edit {describe_fact(e.before)} → {describe_fact(e.after)} names the same fact "
                "or changes fewer than 2 letters"
            )
    if neg.text == caption.text:
        raise ValueError("the negative caption reads the same as the positive")


def make_text_negatives(
    scene: Scene,
    caption: Caption,
    k: int,
    seed: int,
    max_edits: int = 3,
    *,
    caption_seed: int | None = None,
    min_edits: int = 1,
    types: Sequence[str] = ERROR_TYPES,
) -> tuple[list[TextNegative], Counter]:
    """``k`` verified rule negatives of ``caption`` and a Counter of rejected edits.

    Error types are dealt round-robin in an order drawn from ``seed`` (so K ≥ 4 gives
    every available type), each negative has ``min_edits``..``max_edits`` edits of its
    type on distinct facts, and the text is ``describe`` of the edited facts with the
    caption's phrasing seed ``caption_seed``. A rule edit that is true of the figure
    is rejected and counted (``"<type>: true statement"``); a type with no false
    edit left is dropped; a shortfall below ``k`` is counted as ``"shortfall"``.
    Deterministic in all arguments.
    """
    if not 1 <= min_edits <= max_edits:
        raise ValueError(f"need 1 <= min_edits <= max_edits, got {min_edits}, {max_edits}")
    unknown = [t for t in types if t not in RULES]
    if unknown:
        raise ValueError(f"unknown error type {unknown[0]!r}; known: {', '.join(ERROR_TYPES)}")
    phrasing = _phrasing_seed(scene, caption, caption_seed)
    rng = np.random.default_rng(seed)
    rejections: Counter = Counter()
    order = [types[i] for i in rng.permutation(len(types))]
    negatives: list[TextNegative] = []
    seen = {caption.text}
    turn = 0
    while len(negatives) < k and order:
        t = order[turn % len(order)]
        neg = None
        for _ in range(MAX_TRIES_PER_NEGATIVE):
            neg = _draw_negative(scene, t, int(rng.integers(min_edits, max_edits + 1)), rng, rejections, phrasing)
            if neg is None or neg.text not in seen:
                break
            rejections[f"{t}: duplicate"] += 1
            neg = None
        if neg is None:
            order.remove(t)
            continue
        verify_text_negative(scene, caption, neg)
        seen.add(neg.text)
        negatives.append(neg)
        turn += 1
    if len(negatives) < k:
        rejections["shortfall"] += k - len(negatives)
    return negatives, rejections


def slot_by_type(
    negs: Sequence[TextNegative], types: Sequence[str] = ERROR_TYPES, per_type: int = 1
) -> list[TextNegative | None]:
    """A fixed layout: ``per_type`` columns per error type, in ``types`` order, None where a type is missing.

    Column k then holds the same kind of error for every sample, which is what a rank
    loss with one adaptive threshold per negative type (CE-CLIP's CMR) needs.
    """
    out: list[TextNegative | None] = []
    for t in types:
        of_type = [n for n in negs if n.error_type == t][:per_type]
        out += of_type + [None] * (per_type - len(of_type))
    return out


# ----------------------------------------------------------------------------- word diff

_TOKEN = re.compile(r"\d+(?:\.\d+)?|\w+|[^\w\s]")  # 6.5 is one token, ∠ and ° are their own


@dataclass(frozen=True)
class ChangedSpan:
    """A stretch that differs between two captions: character spans in each, and the words."""

    pos_start: int
    pos_end: int
    neg_start: int
    neg_end: int
    before: str
    after: str


def changed_spans(positive_text: str, negative_text: str) -> list[ChangedSpan]:
    """Where the negative caption differs from the positive, token by token (words, numbers, symbols).

    Because a negative is re-rendered with the caption's phrasing seed, the spans are
    exactly the edited facts' words: what lesson 02 highlights.
    """
    a = list(_TOKEN.finditer(positive_text))
    b = list(_TOKEN.finditer(negative_text))
    matcher = difflib.SequenceMatcher(a=[m.group() for m in a], b=[m.group() for m in b], autojunk=False)
    out = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        ps, pe = (a[i1].start(), a[i2 - 1].end()) if i2 > i1 else (_at(a, i1, positive_text),) * 2
        ns, ne = (b[j1].start(), b[j2 - 1].end()) if j2 > j1 else (_at(b, j1, negative_text),) * 2
        out.append(ChangedSpan(ps, pe, ns, ne, positive_text[ps:pe], negative_text[ns:ne]))
    return out


def _at(tokens: list[re.Match], i: int, text: str) -> int:
    """The character offset where token ``i`` would start (for pure insertions and deletions)."""
    return tokens[i].start() if i < len(tokens) else len(text)
