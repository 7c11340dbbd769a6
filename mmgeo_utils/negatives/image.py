"""Image hard negatives: edit the scene, re-render, and prove that exactly one fact changed.

MMGeoLM (Sun et al., arXiv 2505.20152, §2.1, App. G Figs. 12-13) builds its image hard
negatives in two LLM steps: write a negative caption (swap a shape concept, relabel
letters, change a number, swap a similar relation), then ask Gemini to edit the
positive matplotlib script until the figure matches it. The authors report that
perturbing scripts directly was "uncontrolled", and even the two-step route cannot
promise that the new figure differs from the old one in the edited fact *only*.

Our diagrams are data (:class:`~mmgeo_utils.diagrams.scene.Scene`), so a perturbation here is
a typed edit of the scene, and every negative is checked, not trusted:

* **Exactly one fact.** A perturbation declares its change: one fact replaced
  (``removed f``, ``added f′``), one removed or one added. :func:`verify_negative`
  compares the canonical fact sets (:func:`~mmgeo_utils.diagrams.scene.fact_set`) and rejects
  anything else. A relabel instead declares a renaming of ≥ 2 letters and the
  negative's facts must equal the positive's facts under it.
* **True of its own picture.** Geometric edits move points and rebuild everything
  constructed from them (midpoints, feet, intersections, points on a side), then
  every stated fact of the negative must hold in the negative's coordinates
  (:func:`~mmgeo_utils.diagrams.facts.check_fact`) and the removed fact must be *false* there,
  so the positive caption really is wrong for the negative image. Where an edit would
  also break a second stated fact (moving the midpoint of a side that a stated
  parallel uses, stretching a square whose equal sides are stated), the perturbation
  returns :class:`NotApplicable` naming that fact: it is skipped and counted, never
  faked. Marks follow facts: the ticks of a removed midpoint and the arrows of a
  removed parallel go with it, the marks of an added fact are drawn.
* **Annotation-only edits** (:data:`ANNOTATION_ONLY`: a changed length or angle value,
  a right-angle square moved to another vertex) change what the figure *says*, not
  its geometry: the edited annotation is deliberately not to scale, as in a textbook
  figure marked "not drawn to scale". For these, every other fact must still hold and
  the points must not move.
* **Visible.** The negative rendered with the positive's style must differ in pixels.

Drastic relation flips (parallel → perpendicular) are registered but ``drastic``: the
paper's caption prompt keeps them out of image negatives (Fig. 12: "avoid drastic
changes like parallel → perpendicular") because such a negative is easy and teaches
little, while its rule-based *text* negatives allow them; so :func:`make_image_negatives`
takes ``allow_drastic=False`` and lesson 02 can switch them on to see the difference.

Two registered perturbations never apply to the current families, and say why:
``similar_congruent`` (every stated pair of congruent triangles shares a vertex, so
neither triangle can be rescaled alone; and similar → congruent is never an image
negative, since congruent triangles are still similar) and ``tangent_to_secant`` (the
tangent's right triangle is always stated as a shape). They apply to scenes that state
fewer facts, which the tests construct.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..diagrams.captions import Caption, describe
from ..diagrams.facts import check_fact, describe_fact
from ..diagrams.frame import fits_frame
from ..diagrams.render import render
from ..diagrams.scene import Fact, Scene, fact_set
from ..diagrams.style import RenderStyle, default_style
from .change import NotApplicable, _Change, _na, _shuffled
from .draft import _check_draft, _draft, _legible, rename_fact
from .perturbations import PERTURBATIONS, Perturbation

__all__ = [
    "ImageNegative",
    "PerturbationResult",
    "apply_perturbation",
    "make_image_negatives",
    "verify_negative",
]


MAX_DUPLICATES = 3  # make_image_negatives drops a type after this many repeats of earlier negatives


# ----------------------------------------------------------------------------- results


@dataclass
class ImageNegative:
    """A verified image hard negative: the perturbed scene and exactly what changed.

    ``removed``/``added`` are the declared fact change (for a relabel: the facts whose
    names changed, before and after); ``renaming`` maps old to new letters for a
    relabel; ``caption`` describes the negative scene (:func:`~mmgeo_utils.diagrams.captions.describe`
    with ``caption_seed``: pass the positive's to keep its phrasing); ``image`` is the
    negative rendered with ``style``, the positive's style.
    """

    scene: Scene
    perturbation: str
    removed: tuple[Fact, ...]
    added: tuple[Fact, ...]
    caption: Caption
    annotation_only: bool
    style: RenderStyle
    renaming: dict[str, str] | None = None
    image: Image.Image | None = None

    def describe_change(self) -> str:
        """One line for lessons and logs: ``parallel(A,B,C,D) → perpendicular(A,B,C,D)``."""
        if self.renaming:
            return "relabel " + ", ".join(f"{a}→{b}" for a, b in sorted(self.renaming.items()))
        before = "; ".join(describe_fact(f) for f in self.removed) or "∅"
        after = "; ".join(describe_fact(f) for f in self.added) or "∅"
        return f"{before} → {after}"


PerturbationResult = ImageNegative | NotApplicable


# ----------------------------------------------------------------------------- verification


def _differs_in_pixels(a: Scene, b: Scene, style: RenderStyle, a_pixels: np.ndarray | None = None) -> bool:
    """Whether negative ``b``, drawn in positive ``a``'s frame, differs from ``a`` in any pixel."""
    pa = np.asarray(render(a, style).image) if a_pixels is None else a_pixels
    return not np.array_equal(pa, np.asarray(render(b, style, frame_of=a).image))


def _verify_renaming(positive: Scene, neg: ImageNegative) -> None:
    m = neg.renaming or {}
    if sorted(m) != sorted(set(m.values())) or not set(m) <= set(positive.points):
        raise ValueError(f"relabel {m} is not a permutation of the scene's letters")
    changed = [k for k, v in m.items() if k != v]
    if len(changed) < 2:
        raise ValueError(f"relabel changes {len(changed)} letter(s); at least 2 are required")
    renamed = fact_set(rename_fact(f, m) for f in positive.facts)
    if renamed != neg.scene.fact_keys():
        raise ValueError("the negative's facts are not the positive's facts under the declared renaming")
    if renamed == positive.fact_keys():
        raise ValueError(f"relabel {m} names the same figure: every stated fact is unchanged")
    if all(check_fact(neg.scene, f) for f in positive.facts):
        raise ValueError(f"relabel {m} maps the figure onto itself: the positive caption is still true")


def _verify_change(positive: Scene, neg: ImageNegative) -> None:
    pos, new = positive.fact_keys(), neg.scene.fact_keys()
    gone, came = pos - new, new - pos
    shape = (len(neg.removed), len(neg.added))
    if shape not in ((1, 1), (1, 0), (0, 1)):
        raise ValueError(f"a negative must replace, remove or add exactly one fact; declared {shape}")
    unexpected = (gone ^ fact_set(neg.removed)) | (came ^ fact_set(neg.added))
    if unexpected:
        names = sorted(describe_fact(Fact(k, a, v)) for k, a, v in unexpected)
        raise ValueError(f"facts differ from the declared change in: {', '.join(names)}")


def _verify_truth(positive: Scene, neg: ImageNegative) -> None:
    added = fact_set(neg.added)
    for f in neg.scene.facts:
        edited = neg.annotation_only and f.key() in added
        if check_fact(neg.scene, f) == edited:
            state = "holds" if edited else "is false"
            raise ValueError(f"{describe_fact(f)} {state} in the negative's own coordinates")
    if neg.annotation_only:
        if neg.scene.points != positive.points:
            raise ValueError("an annotation-only negative must not move any point")
        return
    for f in neg.removed:
        if set(f.args) <= set(neg.scene.points) and check_fact(neg.scene, f):
            raise ValueError(f"removed fact {describe_fact(f)} still holds in the negative image")


def verify_negative(
    positive: Scene,
    negative: ImageNegative,
    style: RenderStyle | None = None,
    *,
    positive_pixels: np.ndarray | None = None,
) -> None:
    """Raise ``ValueError`` naming the problem unless ``negative`` is an exact one-fact negative of ``positive``.

    Checks, independently of how the negative was made: (a) rendered with the same
    style it differs from the positive in pixels; (b) the canonical fact sets differ by
    exactly the declared change (one replaced, removed or added), or for a relabel the
    facts equal the positive's under a renaming of ≥ 2 letters that does not map the
    figure onto itself; (c) the negative's facts hold in its own coordinates, except
    the edited annotation of an annotation-only edit, which must *not* hold (it is
    the deliberately not-to-scale label) while no point moved; a removed fact no
    longer holds in the negative image.
    """
    if negative.perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {negative.perturbation!r}")
    if negative.renaming is not None:
        _verify_renaming(positive, negative)
    else:
        _verify_change(positive, negative)
        _verify_truth(positive, negative)
    if not _differs_in_pixels(positive, negative.scene, style or negative.style, positive_pixels):
        raise ValueError("the negative renders to the same pixels as the positive")


# ----------------------------------------------------------------------------- applying


def _result(
    positive: Scene, spec: Perturbation, change: _Change, neg: Scene, style: RenderStyle, caption_seed: int
) -> ImageNegative:
    if change.renaming:
        before = [f for f in positive.facts if rename_fact(f, change.renaming).key() != f.key()]
        removed = tuple(before)
        added = tuple(rename_fact(f, change.renaming) for f in before)
    else:
        removed, added = change.removed, change.added
    return ImageNegative(
        scene=neg,
        perturbation=spec.name,
        removed=removed,
        added=added,
        caption=describe(neg, caption_seed),
        annotation_only=spec.annotation_only,
        style=style,
        renaming=change.renaming,
        image=render(neg, style, frame_of=positive).image,
    )


def _try_change(
    positive: Scene,
    spec: Perturbation,
    change: _Change,
    style: RenderStyle,
    caption_seed: int,
    positive_pixels: np.ndarray | None,
) -> ImageNegative | NotApplicable:
    try:
        neg = _draft(positive, change)
    except ValueError as e:  # a construction with no solution (parallel lines no longer meet)
        return _na(spec.name, f"degenerate: {e}", "geometry")
    why = _check_draft(positive, neg, change, spec.annotation_only)
    if why:
        kind = "breaks a stated fact" if "stated fact" in why else "geometry"
        return _na(spec.name, why, kind)
    why = _legible(neg, positive)
    if why:
        return _na(spec.name, f"illegible: {why}", "illegible")
    if not fits_frame(neg, style, frame_of=positive):  # drawn where the positive was, it must stay on the page
        return _na(spec.name, "leaves the positive's frame", "leaves the frame")
    result = _result(positive, spec, change, neg, style, caption_seed)
    try:
        verify_negative(positive, result, style, positive_pixels=positive_pixels)
    except ValueError as e:
        return _na(spec.name, f"failed verification: {e}", "failed verification")
    return result


def apply_perturbation(
    scene: Scene,
    name: str,
    rng: np.random.Generator,
    *,
    style: RenderStyle | None = None,
    caption_seed: int = 0,
    positive_pixels: np.ndarray | None = None,
) -> PerturbationResult:
    """Perturb ``scene`` with the registered perturbation ``name``: a verified negative or why not.

    Candidates are tried best first; the first that passes every check (structure,
    truth in its own coordinates, incidences, legibility, :func:`verify_negative`)
    is returned. If none does, the :class:`NotApplicable` of the first (preferred)
    candidate says why, e.g. which stated fact the edit would break.
    """
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    spec = PERTURBATIONS[name]
    style = style or default_style()
    proposals = spec.propose(scene, rng)
    if isinstance(proposals, NotApplicable):
        return proposals
    first: NotApplicable | None = None
    for change in proposals:
        out = _try_change(scene, spec, change, style, caption_seed, positive_pixels)
        if isinstance(out, ImageNegative):
            return out
        first = first or out
    return first or _na(name, "no candidate edit")


def _key(neg: ImageNegative) -> tuple:
    return (neg.scene.fact_keys(), tuple(sorted(neg.scene.points.items())))


def make_image_negatives(
    scene: Scene,
    k: int,
    seed: int,
    allow_drastic: bool = False,
    *,
    style: RenderStyle | None = None,
    caption_seed: int = 0,
) -> tuple[list[ImageNegative], Counter]:
    """``k`` verified image negatives of ``scene`` and a Counter of why others were skipped.

    Perturbation types are visited in an order drawn from ``seed``, one negative per
    type per round, so a sample gets as many *distinct* kinds of error as it allows
    before any kind repeats (the paper uses 10 negatives per positive; profiles use
    ``num_negatives``). A type that does not apply is dropped for this scene; a
    duplicate is skipped, and a type that keeps repeating itself is dropped. Skips are counted as ``"<type>: <kind>"``, and a shortfall
    below ``k`` as ``"shortfall"``. Deterministic in ``(scene, k, seed, allow_drastic, style)``.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    style = style or default_style()
    rng = np.random.default_rng(seed)
    names = [p.name for p in PERTURBATIONS.values() if allow_drastic or not p.drastic]
    order = _shuffled(rng, names)
    pixels = np.asarray(render(scene, style).image)
    negatives: list[ImageNegative] = []
    seen: set = set()
    skips: Counter = Counter()
    duplicates: Counter = Counter()
    while len(negatives) < k and order:
        for name in list(order):
            if len(negatives) == k:
                break
            out = apply_perturbation(scene, name, rng, style=style, caption_seed=caption_seed, positive_pixels=pixels)
            if isinstance(out, NotApplicable):
                skips[f"{name}: {out.kind}"] += 1
                order.remove(name)
            elif _key(out) in seen:
                skips[f"{name}: duplicate"] += 1
                duplicates[name] += 1
                if duplicates[name] >= MAX_DUPLICATES:  # its random choices are used up
                    order.remove(name)
            else:
                seen.add(_key(out))
                negatives.append(out)
    if len(negatives) < k:
        skips["shortfall"] += k - len(negatives)
    return negatives, skips
