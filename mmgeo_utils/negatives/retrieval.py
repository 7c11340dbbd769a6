"""Retrieval-based text hard negatives: nearest captions by sentence embedding.

MMGeoLM (§2.2, Table 8) builds one of its three kinds of hard negatives by *retrieval*:
every caption of the corpus is embedded with a dense retriever, and the captions most
similar to a positive caption (top-100 kept as candidates; 10 to 50 used in training,
30 in the main run) become its negatives. They are "hard" because they are written in
the same words about the same kind of figure and differ in a letter, a number or a
relation; a model that only matches topics cannot tell them apart.

Retrieval alone has a flaw the paper works around by choosing a corpus with one
caption per image: a nearby caption can be *true of the image* too (another phrasing
of the same scene, or a scene that shares the stated facts). Trained as a negative,
such a caption teaches the model a falsehood — a *false negative*. Our captions come
with exact facts (:mod:`mmgeo_utils.diagrams.scene`), so we can do better than the paper: a
candidate is kept only if at least one of its facts is false of the positive's image
(or names a point the image does not have). Every rejection is counted with its
reason, and a caption that runs out of candidates reports its shortfall instead of
being padded with made-up negatives.

The pieces, in the order lesson 02 uses them:

* :func:`~.sentence_encoder.load_sentence_encoder` — the shipped all-MiniLM-L6-v2 (offline),
  a local directory, or a hub name (paper profile, with internet);
* :func:`~.sentence_encoder.embed_captions` — L2-normalised float32 embeddings;
* :func:`~.topk.topk_neighbours` — exact cosine top-k in chunks, never the N×N matrix;
* :func:`mine_retrieval_negatives` (this module) — candidates, fact-checked, into :class:`RetrievalNegatives`.

The time and memory of the top-k at corpus scale are measured by
:func:`mmgeo_utils.experiments.bench_retrieval.bench_retrieval`.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..diagrams.facts import check_fact
from ..diagrams.scene import Fact, Scene
from ..profiles import Profile, get_profile
from .sentence_encoder import _encoder_name, embed_captions, load_sentence_encoder
from .topk import topk_neighbours

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    from sentence_transformers import SentenceTransformer

__all__ = ["STATUS_NAMES", "RetrievalNegatives", "mine_retrieval_negatives"]


#: what happened to each candidate of each caption (codes in ``RetrievalNegatives.status``)
STATUS_NAMES = (
    "unexamined",  # not looked at: K negatives were found before it
    "accepted_names_missing_point",  # a fact names a point the image lacks: false of the image
    "accepted_fact_false",  # a fact is false of the image
    "rejected_duplicate_text",  # same text as the positive caption
    "rejected_true_of_image",  # every fact holds in the image: a false negative
    "rejected_no_facts",  # states no checkable fact: cannot be shown false
    "no_candidate",  # retrieval had fewer admissible neighbours than candidates
)
_S = {name: code for code, name in enumerate(STATUS_NAMES)}
ACCEPTED = ("accepted_names_missing_point", "accepted_fact_false")
REJECTED = ("rejected_duplicate_text", "rejected_true_of_image", "rejected_no_facts")


@dataclass
class RetrievalNegatives:
    """Retrieval negatives of N captions, with the audit trail of every candidate.

    ``negatives[i]`` are the caption indices used as negatives of caption ``i``, most
    similar first, padded with ``-1`` where fewer than ``num_negatives`` survived
    (``shortfall[i]`` says how many); ``similarities`` are their cosines (NaN in the
    padding). ``candidates``/``candidate_scores`` are the raw top-``num_candidates``
    neighbours and ``status[i, c]`` (a code into :data:`STATUS_NAMES`) says what
    happened to each of them, so every rejection is visible and countable.
    """

    negatives: np.ndarray  # (N, K) int64, -1 padded
    similarities: np.ndarray  # (N, K) float32, NaN padded
    candidates: np.ndarray  # (N, C) int64, -1 where retrieval ran out
    candidate_scores: np.ndarray  # (N, C) float32
    status: np.ndarray  # (N, C) int8 codes into STATUS_NAMES
    num_negatives: int
    num_candidates: int
    encoder: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.negatives)

    @property
    def num_accepted(self) -> np.ndarray:
        """(N,) negatives found per caption."""
        return (self.negatives >= 0).sum(axis=1)

    @property
    def shortfall(self) -> np.ndarray:
        """(N,) how many of the K negatives could not be found among the candidates."""
        return self.num_negatives - self.num_accepted

    def counts(self) -> dict[str, np.ndarray]:
        """Per caption, how many candidates ended in each status: ``{status: (N,) int}``."""
        return {name: (self.status == code).sum(axis=1) for code, name in enumerate(STATUS_NAMES)}

    def totals(self) -> dict[str, int]:
        """Corpus-wide counts of each status, plus shortfall totals."""
        out = {name: int(v.sum()) for name, v in self.counts().items()}
        out["accepted"] = sum(out[name] for name in ACCEPTED)
        out["rejected"] = sum(out[name] for name in REJECTED)
        out["negatives_found"] = int(self.num_accepted.sum())
        out["shortfall_total"] = int(self.shortfall.sum())
        out["captions_short"] = int((self.shortfall > 0).sum())
        return out

    def negatives_of(self, i: int) -> list[int]:
        """The negatives of caption ``i`` without padding."""
        row = self.negatives[i]
        return [int(j) for j in row[row >= 0]]

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers for :func:`mmgeo_utils.repro.write_results`."""
        found = self.similarities[self.negatives >= 0]
        return {
            "captions": len(self),
            "num_negatives": self.num_negatives,
            "num_candidates": self.num_candidates,
            "encoder": self.encoder,
            **self.totals(),
            "mean_negative_similarity": float(found.mean()) if found.size else None,
            **self.meta,
        }


def _point_names(scene: Scene) -> frozenset[str]:
    return frozenset(scene.points)


def _facts_per_caption(
    caption_facts: Sequence[Sequence[Fact]], scenes: Sequence[Scene], n: int, num_candidates: int, num_negatives: int
) -> list[tuple[Fact, ...]]:
    """Check the mining inputs (one facts list and one scene per caption, sane counts); the facts as tuples."""
    if len(caption_facts) != n or len(scenes) != n:
        raise ValueError(
            f"captions ({n}), caption_facts ({len(caption_facts)}) and scenes "
            f"({len(scenes)}) must have one entry per caption"
        )
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got {num_negatives}")
    if num_candidates < num_negatives:
        raise ValueError(
            f"num_candidates ({num_candidates}) must be at least num_negatives "
            f"({num_negatives}): negatives are chosen among the candidates"
        )
    if n < 2:
        raise ValueError(f"retrieval needs at least 2 captions, got {n}")
    facts_per_caption: list[tuple[Fact, ...]] = []
    for j, fs in enumerate(caption_facts):
        fs = tuple(fs)
        for f in fs:
            if not isinstance(f, Fact):
                raise TypeError(f"caption_facts[{j}] holds a {type(f).__name__}, not a Fact")
        facts_per_caption.append(fs)
    for i, s in enumerate(scenes):
        if not isinstance(s, Scene):
            raise TypeError(f"scenes[{i}] is a {type(s).__name__}, not a Scene")
    return facts_per_caption


def _caption_embeddings(
    captions: list[str],
    encoder: SentenceTransformer | str | None,
    embeddings: np.ndarray | None,
    prof: Profile,
    batch_size: int,
    show_progress: bool,
) -> tuple[np.ndarray, str | None]:
    """The captions' embeddings (given, or computed with ``encoder``, else the profile's) and the encoder's name."""
    n = len(captions)
    encoder_name = None
    if embeddings is None:
        if encoder is None:
            encoder = prof.sentence_encoder
        if isinstance(encoder, (str, os.PathLike)):
            encoder_name = str(encoder)
            encoder = load_sentence_encoder(encoder_name)
        embeddings = embed_captions(captions, encoder, batch_size=batch_size, show_progress=show_progress)
    elif len(embeddings) != n:
        raise ValueError(f"embeddings has {len(embeddings)} rows for {n} captions")
    if encoder_name is None and encoder is not None:
        encoder_name = _encoder_name(encoder)
    return embeddings, encoder_name


def _candidate_verdict(
    facts: tuple[Fact, ...],
    scene: Scene,
    have: frozenset[str],
    truth: dict[Fact, bool],
    fact_checker: Callable[[Scene, Fact], bool],
    i: int,
    j: int,
) -> str:
    """Whether caption ``j`` (stating ``facts``) is false of image ``i``: its status name.

    ``truth`` caches the facts already checked against ``scene`` (image ``i``).
    """
    if any(p not in have for f in facts for p in f.args):
        return "accepted_names_missing_point"
    verdict = "rejected_true_of_image"
    for f in facts:
        fk = f.canonical()
        if fk not in truth:
            try:
                truth[fk] = bool(fact_checker(scene, f))
            except ValueError as err:
                raise ValueError(
                    f"checking fact {f.kind}{f.args} of caption {j} against the scene of caption {i}: {err}"
                ) from err
        if not truth[fk]:
            verdict = "accepted_fact_false"
            break
    return verdict


def _check_candidates(
    cand: np.ndarray,
    cand_scores: np.ndarray,
    captions: list[str],
    facts_per_caption: list[tuple[Fact, ...]],
    scenes: Sequence[Scene],
    num_negatives: int,
    fact_checker: Callable[[Scene, Fact], bool],
    show_progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examine each caption's candidates in order: ``(negatives, similarities, status)`` of the first accepted."""
    n, num_candidates = cand.shape
    norm_text = [re.sub(r"\s+", " ", c).strip() for c in captions]
    points = [_point_names(s) for s in scenes]
    status = np.full(cand.shape, _S["unexamined"], dtype=np.int8)
    status[cand < 0] = _S["no_candidate"]
    negatives = np.full((n, num_negatives), -1, dtype=np.int64)
    sims = np.full((n, num_negatives), np.nan, dtype=np.float32)

    rows: Any = range(n)
    if show_progress:
        rows = tqdm(rows, desc="checking retrieval negatives", unit="caption")
    for i in rows:
        scene, have = scenes[i], points[i]
        truth: dict[Fact, bool] = {}  # facts already checked against scene i
        found = 0
        for c in range(num_candidates):
            j = int(cand[i, c])
            if j < 0:
                break
            if norm_text[j] == norm_text[i]:
                status[i, c] = _S["rejected_duplicate_text"]
                continue
            fs = facts_per_caption[j]
            if not fs:
                status[i, c] = _S["rejected_no_facts"]
                continue
            verdict = _candidate_verdict(fs, scene, have, truth, fact_checker, i, j)
            status[i, c] = _S[verdict]
            if verdict.startswith("accepted"):
                negatives[i, found], sims[i, found] = j, cand_scores[i, c]
                found += 1
                if found == num_negatives:
                    break
    return negatives, sims, status


def mine_retrieval_negatives(
    captions: Sequence[str],
    caption_facts: Sequence[Sequence[Fact]],
    scenes: Sequence[Scene],
    encoder: SentenceTransformer | str | None = None,
    num_candidates: int | None = None,
    num_negatives: int | None = None,
    *,
    embeddings: np.ndarray | None = None,
    groups: Sequence[Hashable] | None = None,
    profile: Profile | str | None = None,
    chunk_size: int = 4096,
    fact_checker: Callable[[Scene, Fact], bool] | None = None,
    batch_size: int = 256,
    show_progress: bool = True,
) -> RetrievalNegatives:
    """Mine ``num_negatives`` retrieval negatives per caption, rejecting false negatives.

    Caption ``i`` describes image ``scenes[i]`` and states the facts ``caption_facts[i]``.
    Its ``num_candidates`` nearest captions ``j ≠ i`` (cosine of sentence embeddings,
    as MMGeoLM's top-100 from a dense retriever) are examined in order of similarity:

    * an exact duplicate of caption ``i``'s text (whitespace aside) is rejected;
    * a caption with no facts is rejected: nothing shows it is false of image ``i``;
    * if any fact of caption ``j`` names a point image ``i`` does not have, or is false
      in image ``i`` (``check_fact``), ``j`` is a true negative and is **accepted**;
    * otherwise every fact of ``j`` holds in image ``i``: ``j`` is a correct caption of
      image ``i`` and is **rejected** — training against it would teach a falsehood.

    The first ``num_negatives`` accepted are kept. If the candidates run out first, the
    row is padded with ``-1`` and the shortfall is recorded (never filled with worse
    or made-up negatives). Defaults come from the profile (``retrieval_candidates``,
    ``num_negatives``, ``sentence_encoder``). Pass ``embeddings`` to reuse embeddings
    already computed, ``groups`` to keep captions of the same scene out of the candidates
    altogether, and ``fact_checker`` to replace :func:`mmgeo_utils.diagrams.facts.check_fact`.
    """
    prof = get_profile(profile)
    num_candidates = prof.retrieval_candidates if num_candidates is None else int(num_candidates)
    num_negatives = prof.num_negatives if num_negatives is None else int(num_negatives)
    captions = list(captions)
    n = len(captions)
    facts_per_caption = _facts_per_caption(caption_facts, scenes, n, num_candidates, num_negatives)
    if fact_checker is None:
        fact_checker = check_fact  # the checker of record
    embeddings, encoder_name = _caption_embeddings(captions, encoder, embeddings, prof, batch_size, show_progress)

    if num_candidates > n - 1:
        warnings.warn(
            f"num_candidates={num_candidates} but only {n - 1} other captions exist; "
            f"using {n - 1} (shortfalls are recorded)",
            stacklevel=2,
        )
        num_candidates = n - 1
    t0 = time.perf_counter()
    cand, cand_scores = topk_neighbours(
        embeddings, num_candidates, chunk_size=chunk_size, exclude_self=True, groups=groups, show_progress=show_progress
    )
    t_topk = time.perf_counter() - t0
    t0 = time.perf_counter()
    negatives, sims, status = _check_candidates(
        cand, cand_scores, captions, facts_per_caption, scenes, num_negatives, fact_checker, show_progress
    )
    t_check = time.perf_counter() - t0
    return RetrievalNegatives(
        negatives=negatives,
        similarities=sims,
        candidates=cand,
        candidate_scores=cand_scores,
        status=status,
        num_negatives=num_negatives,
        num_candidates=num_candidates,
        encoder=encoder_name,
        meta={"topk_seconds": round(t_topk, 3), "check_seconds": round(t_check, 3)},
    )
