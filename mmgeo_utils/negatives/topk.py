"""Exact cosine top-k neighbours of every caption embedding, a chunk of rows at a time (lesson 02).

Never the N×N matrix; ties broken by column index, so the result equals a brute-force sort.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = ["topk_neighbours"]


def _default_device() -> str:
    import torch  # local: building a dataset imports this module without torch; only the top-k needs it

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
    import torch  # local: building a dataset imports this module without torch; only the top-k needs it

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
    import torch  # local: building a dataset imports this module without torch; only the top-k needs it

    k = vals.shape[1]
    for r in rows:
        row = S[r]
        cand = torch.nonzero(row >= vals[r, k - 1]).flatten()  # ascending column order
        cv, order = torch.sort(row[cand], descending=True, stable=True)
        vals[r], idx[r] = cv[:k], cand[order[:k]]


def _checked_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """``embeddings`` as an array, once it is shown to be 2-D, finite and L2-normalised."""
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
    return emb


def _chunk_topk(E, r0: int, r1: int, k: int, take: int, gcodes, exclude_self: bool, device: str):
    """Top-``k`` of rows ``r0:r1`` against every row of ``E``: ``(indices, scores)`` as numpy arrays.

    The chunk's scores ``S`` are the only large allocation and are freed when this returns.
    Same-group columns (``gcodes``, else the row itself when ``exclude_self``) score ``-inf``;
    their places come back as index ``-1``.
    """
    import torch  # local: building a dataset imports this module without torch; only the top-k needs it

    neg_inf = float("-inf")
    rows = torch.arange(r0, r1, device=device)
    S = E[r0:r1] @ E.T  # (chunk, N): the only large allocation
    if gcodes is not None:
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
    return idx_np, vals_np


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
    import torch  # local: building a dataset imports this module without torch; only the top-k needs it

    emb = _checked_embeddings(embeddings)
    n = emb.shape[0]
    k = int(k)
    available = n - 1 if (exclude_self or groups is not None) else n
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > available:
        raise ValueError(f"k={k} neighbours requested but each of the {n} rows has only {available} others; lower k")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    gcodes = None
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
    starts: Any = range(0, n, chunk_size)
    if show_progress:
        starts = tqdm(starts, desc=f"top-{k} neighbours", unit="chunk")
    for r0 in starts:
        r1 = min(r0 + chunk_size, n)
        out_idx[r0:r1], out_val[r0:r1] = _chunk_topk(E, r0, r1, k, take, gcodes, exclude_self, device)
    return out_idx, out_val
