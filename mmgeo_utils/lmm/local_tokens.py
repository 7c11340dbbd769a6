"""Lesson 07, SliME's parts (Zhang et al., 2024, "Beyond LLaVA-HD"): resamplers, the gated global adapter
and the question-aware selector of local tokens.

A diagram's small details (a letter, a value) are lost at the global view's resolution, and encoding
high-resolution crops costs many tokens. SliME keeps both, cheaply:

* **global path**: the tower's tokens through a *mixture of two adapters*, the MLP projector and a
  perceiver-style :class:`Resampler` (learnable queries, one cross-attention, 2-D sin-cos positions) followed
  by the same MLP, mixed per token by a learned gate (:class:`GatedProjector`; the gate starts at zero, an even
  mix; ``mode`` forces one expert, as SliME's alternating training does);
* **local path**: each crop of a higher-resolution view through the same frozen tower, compressed by a
  :class:`Resampler` to a few queries that also read the question (``text=``: question-aware, as SliME's
  ``ResamplerWithText``);
* **selector** (:func:`select_local`): each compressed local token is scored by the summed cosine to the
  question's token embeddings, softmaxed, and the top-p nucleus kept in its original order (SliME: p = 1.0 in
  pre-training, 0.95 in instruction tuning, Gaussian noise of std 0.1 on the scores while training).

:mod:`~mmgeo_utils.lmm.slime` wires them into lesson 06's LMM and its stages.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .projector import Projector


def sincos_2d(height: int, width: int, dim: int) -> Tensor:
    """(height·width, dim) fixed 2-D sin-cos positions, row-major: half the channels encode the row, half the column.

    Each half is the 1-D transformer encoding ``[sin(p·ω_k), cos(p·ω_k)]`` with ``ω_k = 10000^(−k / (dim/4))``.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))

    def one_d(pos: Tensor) -> Tensor:
        angle = pos[:, None].double() * omega[None]
        return torch.cat([angle.sin(), angle.cos()], 1)

    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.cat([one_d(rows.flatten()), one_d(cols.flatten())], 1).float()


class Resampler(nn.Module):
    """``n_queries`` learnable queries read the tokens through one cross-attention (a perceiver resampler).

    ``grid=(h, w)`` adds 2-D sin-cos positions to the tokens (the keys and values), so the queries know where
    each token sits; without it the output does not depend on the tokens' order. ``extra`` tokens after the
    grid's h·w (the pooled token of ``layer3+pooled``) get no position. ``text`` (B, T, width) joins the keys
    and values, so the queries also read the question (``text_mask`` (B, T), True where a token is real).
    """

    def __init__(self, width: int, n_queries: int, heads: int = 1, grid: tuple[int, int] | None = None, extra: int = 0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        if extra and grid is None:
            raise ValueError("extra tokens follow a grid: give grid=(h, w) too")
        self.queries = nn.Parameter(torch.randn(n_queries, width) / math.sqrt(width))
        self.ln_q, self.ln_kv = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.grid = grid
        pos = torch.cat([sincos_2d(*grid, width), torch.zeros(extra, width)]) if grid else None
        self.register_buffer("pos", pos, persistent=False)

    def forward(self, tokens: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        b, n, _ = tokens.shape
        kv = self.ln_kv(tokens)
        if self.pos is not None:
            if self.pos.shape[0] != n:
                raise ValueError(f"the resampler's grid {self.grid} holds {self.pos.shape[0]} tokens, got {n}")
            kv = kv + self.pos
        padding = None
        if text is not None:
            kv = torch.cat([kv, self.ln_kv(text)], 1)
            real = torch.ones(b, n, dtype=torch.bool, device=tokens.device)
            mask = (
                torch.ones(text.shape[:2], dtype=torch.bool, device=tokens.device) if text_mask is None else text_mask
            )
            padding = ~torch.cat([real, mask.bool()], 1)  # True where a key is ignored
        q = self.ln_q(self.queries).expand(b, -1, -1)
        out, _ = self.attn(q, kv, kv, key_padding_mask=padding, need_weights=False)
        return out + self.queries  # the queries' residual, as a perceiver block


class GatedProjector(nn.Module):
    """SliME's global adapter: the MLP projector and a resampler → MLP, mixed per token by a learned gate.

    ``mode``: ``-1`` the learned mix (the gate is zero-initialised: an even mix at the start), ``0`` the MLP
    expert alone, ``1`` the resampler expert alone: SliME's alternating stages train one expert at a time.
    The resampler has as many queries as the tower has tokens, so the two experts mix token by token.
    ``owns_projector=False``: the projector belongs to a model that holds this adapter too (lesson 07's
    LMM), so it is referenced, not registered: its weights are saved and moved once, by that model.
    """

    def __init__(self, projector: Projector, resampler: Resampler, owns_projector: bool = True):
        super().__init__()
        if owns_projector:
            self.projector = projector
        else:
            object.__setattr__(self, "projector", projector)  # not a submodule: the owner registers it
        self.resampler = resampler
        self.gate = nn.Linear(projector.vision_dim, 2, bias=False)
        nn.init.zeros_(self.gate.weight)

    def forward(self, tokens: Tensor, mode: int = -1) -> Tensor:
        if mode not in (-1, 0, 1):
            raise ValueError(f"mode must be -1 (mixed), 0 (MLP expert) or 1 (resampler expert), got {mode}")
        if mode == 0:
            return self.projector(tokens)
        resampled = self.projector(self.resampler(tokens))
        if mode == 1:
            return resampled
        if resampled.shape[1] != tokens.shape[1]:
            raise ValueError(
                f"the resampler gives {resampled.shape[1]} tokens for {tokens.shape[1]}: mixing needs as many"
            )
        w = self.gate(tokens).softmax(-1)  # (B, N, 2)
        return w[..., :1] * self.projector(tokens) + w[..., 1:] * resampled


def selector_scores(local: Tensor, question: Tensor, question_mask: Tensor | None = None) -> Tensor:
    """(B, L): each local token's cosine to every real question token, summed over the question."""
    cos = F.normalize(local.float(), dim=-1) @ F.normalize(question.float(), dim=-1).transpose(1, 2)  # (B, L, T)
    if question_mask is not None:
        cos = cos * question_mask[:, None, :].float()
    return cos.sum(-1)


def select_local(
    local: Tensor,
    question: Tensor,
    question_mask: Tensor | None = None,
    *,
    top_p: float = 0.95,
    temperature: float = 1.0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    return_probs: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """(B, L) bool: the local tokens in the top-``top_p`` nucleus of the softmaxed selector scores
    (and the (B, L) probabilities with ``return_probs``).

    The nucleus is the smallest set of the highest-scoring tokens whose probabilities sum to at least
    ``top_p`` (the best token is always kept; ``top_p = 1`` keeps all). ``noise_std`` adds Gaussian noise to
    the scores before the softmax (SliME: 0.1 while training, none at inference). The mask keeps the tokens'
    original order: :func:`keep_in_order` gathers them.
    """
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    scores = selector_scores(local, question, question_mask)
    if noise_std:
        scores = scores + noise_std * torch.randn(scores.shape, generator=generator, device=scores.device)
    probs = (scores / temperature).softmax(-1)
    sorted_p, order = probs.sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # the mass of the tokens ranked above each one
    keep_sorted = before < top_p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return (keep, probs) if return_probs else keep


def keep_in_order(tokens: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The kept tokens of each row in their original order, right-padded with zeros: ``(B, K, D)`` and the
    ``(B, K)`` mask of real ones (K: the most any row keeps)."""
    counts = keep.sum(-1)
    k = int(counts.max()) if keep.numel() else 0
    out = tokens.new_zeros(tokens.shape[0], k, tokens.shape[-1])
    valid = torch.arange(k, device=tokens.device)[None] < counts[:, None]
    out[valid] = tokens[keep]
    return out, valid
