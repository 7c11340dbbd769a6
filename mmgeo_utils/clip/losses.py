"""Contrastive losses with hard negatives: CLIP, NegCLIP-style, MMCLIP, and CE-CLIP's IMC + CMR.

Everything here works on *embeddings* that the caller has already L2-normalised, so a dot
product is a cosine, and on ``logit_scale``, the already-exponentiated inverse temperature
(``model.logit_scale.exp()`` in open_clip; 1/0.07 ≈ 14.3 at initialisation, up to 100 after
training). Throughout, ``s(a, b) = logit_scale · cos(a, b)`` is a *logit*.

The losses, from the most familiar to the most specialised:

``clip_loss``                      symmetric InfoNCE; equals ``open_clip.loss.ClipLoss``
``hard_negative_clip_loss``        in-batch CLIP + each sample's own hard negatives as extra
                                   candidates (the NegCLIP / CE-CLIP idea)
``per_anchor_hard_negative_loss``  MMCLIP (MMGeoLM §3.3): one positive against *only* its own
                                   hard negatives; softmax, or the released code's sigmoid form
``per_anchor_gradient_weights``    the analytic gradient of the per-anchor loss w.r.t. its logits

CE-CLIP's IMC and CMR, and ``HardNegativeLoss``, the combination used for training, are in
:mod:`~mmgeo_utils.clip.ce_clip_losses`; the input checks and helpers below are shared with it.

Hard negatives are passed as ``(B, K, D)`` tensors: row ``i`` holds the ``K`` negatives built
for sample ``i``. A sample with fewer than ``K`` valid negatives pads its row and marks the
padding ``False`` in a boolean ``(B, K)`` mask (``True`` = a valid negative); masked logits
become ``-inf``, so they take no part in any softmax and receive no gradient.

Papers: MMGeoLM (Sun et al., 2025, §3.3) for the per-anchor MMCLIP loss; CE-CLIP (Zhang, Awal
and Agrawal, CVPR 2024) for IMC, CMR and the adaptive threshold; NegCLIP (Yuksekgonul et al.,
ICLR 2023) for hard captions as extra softmax columns. All code here is written from the
formulas, not copied from the authors' repositories.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "clip_loss",
    "hard_negative_clip_loss",
    "per_anchor_hard_negative_loss",
    "per_anchor_gradient_weights",
    "GradientWeights",
]


# --------------------------------------------------------------------------------------------
# input checks: bad shapes and masks get an error that names the tensor and the expected shape
# --------------------------------------------------------------------------------------------


def _check_features(name: str, x: Tensor) -> tuple[int, int]:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be (B, D) with B >= 1, got {tuple(x.shape)}")
    return x.shape[0], x.shape[1]


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> tuple[int, int]:
    shape = _check_features(name_a, a)
    _check_features(name_b, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same (B, D) shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return shape


def _check_negatives(name: str, neg: Tensor, batch: int, dim: int) -> int:
    if not isinstance(neg, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(neg).__name__}")
    if neg.dim() != 3 or neg.shape[0] != batch or neg.shape[2] != dim:
        raise ValueError(f"{name} must be (B, K, D) = ({batch}, K, {dim}), got {tuple(neg.shape)}")
    return neg.shape[1]


def _check_mask(name: str, mask: Tensor | None, batch: int, k: int, of: str) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor (True = valid negative), got {kind}")
    if tuple(mask.shape) != (batch, k):
        raise ValueError(f"{name} must be (B, K) = ({batch}, {k}) to match {of}, got {tuple(mask.shape)}")
    return mask


def _scale(logit_scale: Tensor | float, like: Tensor) -> Tensor:
    """The logit scale as a 0-d tensor on ``like``'s device (a learnable tensor keeps its grad)."""
    if isinstance(logit_scale, Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")
        return logit_scale.reshape(())
    return torch.as_tensor(float(logit_scale), dtype=like.dtype, device=like.device)


def _masked(logits: Tensor, mask: Tensor | None) -> Tensor:
    return logits if mask is None else logits.masked_fill(~mask, float("-inf"))


def _own_logits(scaled_anchor: Tensor, negatives: Tensor) -> Tensor:
    """``(B, D) x (B, K, D) -> (B, K)``: each anchor against its own K candidates."""
    return torch.einsum("bd,bkd->bk", scaled_anchor, negatives)


# --------------------------------------------------------------------------------------------
# CLIP and in-batch + hard negatives
# --------------------------------------------------------------------------------------------


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float) -> Tensor:
    r"""Symmetric InfoNCE, the CLIP loss (Radford et al., 2021), as open_clip's ``ClipLoss``.

    With logits ``S = logit_scale · I Tᵀ`` (``S_ij = s(I_i, T_j)``, a B×B matrix whose
    diagonal holds the matching pairs)::

        L_i2t = -1/B Σ_i log( e^{S_ii} / Σ_j e^{S_ij} )      (each image picks its caption)
        L_t2i = -1/B Σ_i log( e^{S_ii} / Σ_j e^{S_ji} )      (each caption picks its image)
        L     = (L_i2t + L_t2i) / 2

    i.e. softmax cross-entropy with target ``i`` on every row and every column of ``S``: the
    other B-1 items of the batch are the negatives. Features must be L2-normalised by the
    caller; ``logit_scale`` is the exponentiated scale (``model.logit_scale.exp()``).
    Agrees with ``open_clip.loss.ClipLoss()(image_features, text_features, logit_scale)``
    (single process) to float rounding; a test checks 1e-6.
    """
    return hard_negative_clip_loss(image_features, text_features, logit_scale)


def hard_negative_clip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    image_negative_features: Tensor | None = None,
    text_negative_features: Tensor | None = None,
    *,
    text_negative_mask: Tensor | None = None,
    image_negative_mask: Tensor | None = None,
    share_negatives: bool = False,
) -> Tensor:
    r"""In-batch CLIP with each sample's own hard negatives as extra softmax candidates.

    Shapes: ``image_features``/``text_features`` (B, D); ``text_negative_features`` (B, K_t, D),
    row i = the K_t false captions of image i (rule edits + retrieved captions);
    ``image_negative_features`` (B, K_i, D), row i = the K_i perturbed diagrams of caption i's
    image. With ``s`` the scaled cosine::

        L_i2t = -1/B Σ_i log  e^{s(I_i,T_i)} / ( Σ_j e^{s(I_i,T_j)} + Σ_k e^{s(I_i,T_ik⁻)} )
        L_t2i = -1/B Σ_i log  e^{s(T_i,I_i)} / ( Σ_j e^{s(T_i,I_j)} + Σ_k e^{s(T_i,I_ik⁻)} )
        L     = (L_i2t + L_t2i) / 2

    The hard negatives only *add terms to the denominators*, so the loss can only grow (the
    log-sum-exp of a longer list is larger), and without negatives this is exactly
    ``clip_loss``. A direction without negatives (``None``) is plain in-batch softmax; e.g.
    CE-CLIP uses text negatives only, so its text→image term is B×B.

    ``share_negatives=True`` gives the NegCLIP / CE-CLIP batch layout instead: every sample's
    negatives are appended as *shared* columns that every anchor sees (B×(B+B·K) logits, as
    when hard captions are concatenated to the text batch). The default, ``False``, gives each
    anchor only its own negatives, so the extra terms are exactly the hard ones built for it.

    Masks (B, K) mark valid negatives with ``True``; invalid ones get logit ``-inf``. A row
    that is entirely masked reduces to the in-batch term.
    """
    batch, dim = _check_pair("image_features", image_features, "text_features", text_features)
    scale = _scale(logit_scale, image_features)

    def one_direction(anchor, candidates, neg, neg_name, mask, mask_name):
        # (scale · anchor) @ candidatesᵀ, the same operation order as open_clip's ClipLoss
        scaled = scale * anchor
        logits = scaled @ candidates.T
        if neg is None:
            if mask is not None:
                raise ValueError(f"{mask_name} given without {neg_name}")
            return F.cross_entropy(logits, torch.arange(batch, device=logits.device))
        k = _check_negatives(neg_name, neg, batch, dim)
        mask = _check_mask(mask_name, mask, batch, k, of=neg_name)
        if share_negatives:
            extra = scaled @ neg.reshape(batch * k, dim).T  # (B, B·K), every anchor, every negative
            if mask is not None:
                extra = _masked(extra, mask.reshape(1, batch * k).expand(batch, -1))
        else:
            extra = _masked(_own_logits(scaled, neg), mask)  # (B, K), own negatives only
        logits = torch.cat([logits, extra], dim=1)
        return F.cross_entropy(logits, torch.arange(batch, device=logits.device))

    loss_i2t = one_direction(
        image_features,
        text_features,
        text_negative_features,
        "text_negative_features",
        text_negative_mask,
        "text_negative_mask",
    )
    loss_t2i = one_direction(
        text_features,
        image_features,
        image_negative_features,
        "image_negative_features",
        image_negative_mask,
        "image_negative_mask",
    )
    return (loss_i2t + loss_t2i) / 2


# --------------------------------------------------------------------------------------------
# MMCLIP: one positive against its own hard negatives only
# --------------------------------------------------------------------------------------------


def per_anchor_hard_negative_loss(
    anchor_features: Tensor,
    positive_features: Tensor,
    negative_features: Tensor,
    logit_scale: Tensor | float,
    *,
    form: Literal["softmax", "sigmoid"] = "softmax",
    logit_bias: Tensor | float | None = None,
    negative_mask: Tensor | None = None,
) -> Tensor:
    r"""The MMCLIP loss (MMGeoLM §3.3): each anchor against its positive and its *own* negatives.

    Anchor a_b (B, D), positive p_b (B, D), negatives n_bi (B, K, D); no other batch item is a
    candidate. With s⁺ = s(a, p) and s_i⁻ = s(a, n_i), ``form="softmax"`` (the paper)::

        L = -1/B Σ_b log( e^{s⁺} / (e^{s⁺} + Σ_i e^{s_i⁻}) )

    For text negatives the anchor is the image and the candidates are captions; for image
    negatives the anchor is the caption and the candidates are diagrams. A softmax is
    shift-invariant, so ``logit_bias`` has no effect on this form.

    ``form="sigmoid"`` is our reading of the released image-negative training script: logits
    z = s + b with a learnable bias b (SigLIP, Zhai et al. 2023), label +1 for the positive and
    -1 for each negative, log-sigmoid summed over the candidates, mean over the batch::

        L = -1/B Σ_b [ log σ(s⁺ + b) + Σ_i log σ(-(s_i⁻ + b)) ]

    (Each candidate is judged on its own, not against the others.) The released *text*-negative
    script computes such a sigmoid loss too but then overwrites it with softmax cross-entropy
    over the candidates, so text negatives effectively train with the softmax form.

    ``negative_mask`` (B, K) marks valid negatives; masked ones drop out of the sum (softmax:
    logit -inf; sigmoid: their term is removed). A row with every negative masked has loss 0
    under softmax and -log σ(s⁺ + b) under sigmoid.
    """
    batch, dim = _check_pair("anchor_features", anchor_features, "positive_features", positive_features)
    k = _check_negatives("negative_features", negative_features, batch, dim)
    mask = _check_mask("negative_mask", negative_mask, batch, k, of="negative_features")
    scaled = _scale(logit_scale, anchor_features) * anchor_features
    pos = (scaled * positive_features).sum(dim=-1)  # (B,)
    neg = _own_logits(scaled, negative_features)  # (B, K)
    if logit_bias is not None:
        bias = _scale(logit_bias, anchor_features)
        pos, neg = pos + bias, neg + bias
    if form == "softmax":
        logits = torch.cat([pos[:, None], _masked(neg, mask)], dim=1)
        return F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=logits.device))
    if form == "sigmoid":
        neg_terms = F.logsigmoid(-neg)
        if mask is not None:
            neg_terms = neg_terms * mask.to(neg_terms.dtype)
        return -(F.logsigmoid(pos) + neg_terms.sum(dim=1)).mean()
    raise ValueError(f"form must be 'softmax' or 'sigmoid', got {form!r}")


class GradientWeights(NamedTuple):
    """∂L/∂s⁺ (shape ``(...)``) and ∂L/∂s_i⁻ (shape ``(..., K)``) of one per-anchor loss."""

    positive: Tensor
    negatives: Tensor


def per_anchor_gradient_weights(pos_logit: Tensor | float, neg_logits: Tensor | list) -> GradientWeights:
    r"""The analytic gradient of L = -log( e^{s⁺} / Z ), Z = e^{s⁺} + Σ_i e^{s_i⁻}::

        ∂L/∂s⁺   = -Σ_i e^{s_i⁻} / Z   (= p⁺ - 1: pull the positive up, less when it already wins)
        ∂L/∂s_i⁻ =  e^{s_i⁻} / Z       (= p_i: push each negative down, in proportion to its softmax)

    Why hard negatives matter: a negative's weight grows *exponentially* with its similarity, so
    a near-duplicate caption gets almost all of the push, an easy one almost none; and the
    weights of the negatives sum to exactly the positive's pull.

    ``pos_logit`` has shape ``(...)`` and ``neg_logits`` ``(..., K)``; floats and lists are
    accepted. Computed with a softmax, so large logits do not overflow.
    """
    neg = (
        torch.as_tensor(neg_logits, dtype=torch.get_default_dtype())
        if not isinstance(neg_logits, Tensor)
        else neg_logits
    )
    pos = (
        torch.as_tensor(pos_logit, dtype=neg.dtype, device=neg.device)
        if not isinstance(pos_logit, Tensor)
        else pos_logit
    )
    if neg.dim() < 1 or tuple(neg.shape[:-1]) != tuple(pos.shape):
        raise ValueError(
            f"neg_logits must be (..., K) with ... = pos_logit's shape {tuple(pos.shape)}, got {tuple(neg.shape)}"
        )
    probs = torch.softmax(torch.cat([pos[..., None], neg], dim=-1), dim=-1)
    return GradientWeights(positive=probs[..., 0] - 1, negatives=probs[..., 1:])
