"""CE-CLIP's intra-modal contrast (IMC) and cross-modal rank loss (CMR), and the training loss that combines them.

``imc_loss``                       CE-CLIP's intra-modal contrast (captions vs. hard captions)
``cmr_threshold`` / ``cmr_loss``   CE-CLIP's cross-modal rank loss with its adaptive margin
``HardNegativeLoss``               a contrastive loss of :mod:`~mmgeo_utils.clip.losses` + IMC + CMR, the
                                   combination used for training, with the thresholds' state

Conventions (L2-normalised embeddings, exponentiated ``logit_scale``, ``(B, K, D)`` negatives with a
``(B, K)`` validity mask) are those of :mod:`~mmgeo_utils.clip.losses`. Paper: CE-CLIP (Zhang, Awal
and Agrawal, CVPR 2024); written from the formulas, not copied from the authors' repository. Lessons
03 and 04.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import (
    _check_mask,
    _check_negatives,
    _check_pair,
    _masked,
    _own_logits,
    _scale,
    hard_negative_clip_loss,
    per_anchor_hard_negative_loss,
)

__all__ = ["imc_loss", "cmr_logits", "cmr_threshold", "cmr_loss", "HardNegativeLoss"]


# --------------------------------------------------------------------------------------------
# CE-CLIP: intra-modal contrast and cross-modal rank with an adaptive threshold
# --------------------------------------------------------------------------------------------


def imc_loss(
    image_features: Tensor,
    text_features: Tensor,
    text_negative_features: Tensor,
    logit_scale: Tensor | float,
    negative_mask: Tensor | None = None,
) -> Tensor:
    r"""CE-CLIP's intra-modal contrastive loss (Zhang et al., CVPR 2024), the paper-era form.

    For each caption T_i, one row of logits: the image-text positive, then the *text-text*
    similarity between T_i and every hard-negative caption of the batch (all B·K of them)::

        L = -1/B Σ_i log  e^{s(I_i,T_i)} / ( e^{s(I_i,T_i)} + Σ_{j,k} e^{s(T_i, T_jk⁻)} )

    Cross-entropy with target 0 makes a caption's similarity to its own image beat its
    similarity to any hard caption, which pushes the hard captions away from the true one *in
    text space*: the text tower must encode the one word that changed.

    Note on provenance: a later revision of the authors' code drops the s(I_i, T_i) column and
    applies target 0 to the text-text matrix alone, which makes the first hard negative of the
    batch the "target" for every row; that looks like a regression, and we follow the paper-era
    form. Invalid negatives (``negative_mask`` False) are masked out of every row.
    """
    batch, dim = _check_pair("image_features", image_features, "text_features", text_features)
    k = _check_negatives("text_negative_features", text_negative_features, batch, dim)
    mask = _check_mask("negative_mask", negative_mask, batch, k, of="text_negative_features")
    scaled_text = _scale(logit_scale, text_features) * text_features
    pos = (scaled_text * image_features).sum(dim=-1)  # (B,)
    text_text = scaled_text @ text_negative_features.reshape(batch * k, dim).T  # (B, B·K)
    if mask is not None:
        text_text = _masked(text_text, mask.reshape(1, batch * k).expand(batch, -1))
    logits = torch.cat([pos[:, None], text_text], dim=1)
    return F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=logits.device))


def cmr_logits(
    image_features: Tensor, text_features: Tensor, text_negative_features: Tensor, logit_scale: Tensor | float
) -> tuple[Tensor, Tensor]:
    """``(s(I_i, T_i) of shape (B,), s(I_i, T_ik⁻) of shape (B, K))``: what CMR compares."""
    batch, dim = _check_pair("image_features", image_features, "text_features", text_features)
    _check_negatives("text_negative_features", text_negative_features, batch, dim)
    scaled = _scale(logit_scale, image_features) * image_features
    return (scaled * text_features).sum(dim=-1), _own_logits(scaled, text_negative_features)


def cmr_threshold(
    pos_logits: Tensor,
    neg_logits: Tensor,
    mask: Tensor | None = None,
    upper: float = 10.0,
    previous: Tensor | None = None,
) -> Tensor:
    r"""CE-CLIP's adaptive margin ("mean" rule): one threshold per negative type k::

        θ_k = clamp( mean_i s(I_i, T_i) − mean_{i: valid} s(I_i, T_ik⁻),  0, upper )

    i.e. the margin the rank loss demands is the gap the model *currently* achieves on average,
    recomputed from every batch (not accumulated) and used at the next step. As training
    separates positives from negatives the gap grows, so the margin grows: a curriculum that
    starts gentle and tightens, separately per type, so the hardest type (the smallest gap) is
    never asked for more than it can do. Detached: a threshold is a target, not a path for
    gradients. ``upper`` (10 in the authors' scripts) bounds it in logit units.

    ``pos_logits`` (B,), ``neg_logits`` (B, K), ``mask`` (B, K) True = valid. A type with no
    valid negative in the batch keeps ``previous[k]`` (or 0 without ``previous``).
    """
    if pos_logits.dim() != 1 or neg_logits.dim() != 2 or neg_logits.shape[0] != pos_logits.shape[0]:
        raise ValueError(
            f"pos_logits must be (B,) and neg_logits (B, K), got "
            f"{tuple(pos_logits.shape)} and {tuple(neg_logits.shape)}"
        )
    if upper < 0:
        raise ValueError(f"upper must be >= 0, got {upper}")
    batch, k = neg_logits.shape
    mask = _check_mask("mask", mask, batch, k, of="neg_logits")
    pos, neg = pos_logits.detach(), neg_logits.detach()
    valid = torch.ones_like(neg) if mask is None else mask.to(neg.dtype)
    count = valid.sum(dim=0)
    neg_mean = (neg * valid).sum(dim=0) / count.clamp_min(1)
    theta = (pos.mean() - neg_mean).clamp(0.0, upper)
    fallback = torch.zeros_like(theta) if previous is None else previous.detach().to(theta)
    if fallback.shape != theta.shape:
        raise ValueError(f"previous must have shape (K,) = ({k},), got {tuple(fallback.shape)}")
    return torch.where(count > 0, theta, fallback)


def cmr_loss(
    image_features: Tensor,
    text_features: Tensor,
    text_negative_features: Tensor,
    logit_scale: Tensor | float,
    thresholds: Tensor | float,
    negative_mask: Tensor | None = None,
) -> Tensor:
    r"""CE-CLIP's cross-modal rank loss: each image must prefer its caption by a margin θ_k::

        L = mean_{(i,k) valid}  max(0, θ_k + s(I_i, T_ik⁻) − s(I_i, T_i))

    Unlike the softmax losses, a hinge stops pushing once the margin is met, and the margin is
    per negative *type*: column k of ``text_negative_features`` must hold the same kind of edit
    for every sample (e.g. relation, value, label swap). ``thresholds`` is (K,) or a float,
    usually from :func:`cmr_threshold` at the previous step. We average over valid entries
    (the authors' code averages over all B·K entries with invalid ones zeroed, a smaller
    number when negatives are missing). No valid entry gives 0.
    """
    pos, neg = cmr_logits(image_features, text_features, text_negative_features, logit_scale)
    return _cmr_hinge_mean(pos, neg, thresholds, negative_mask)


def _cmr_hinge_mean(pos: Tensor, neg: Tensor, thresholds: Tensor | float, mask: Tensor | None) -> Tensor:
    batch, k = neg.shape
    mask = _check_mask("negative_mask", mask, batch, k, of="text_negative_features")
    theta = torch.as_tensor(thresholds, dtype=neg.dtype, device=neg.device)
    if theta.dim() > 1 or (theta.dim() == 1 and theta.shape[0] != k):
        raise ValueError(f"thresholds must be a float or (K,) = ({k},), got {tuple(theta.shape)}")
    hinge = F.relu(theta + neg - pos[:, None])
    if mask is None:
        return hinge.mean()
    valid = mask.to(hinge.dtype)
    return (hinge * valid).sum() / valid.sum().clamp_min(1)


# --------------------------------------------------------------------------------------------
# the training objective
# --------------------------------------------------------------------------------------------


class HardNegativeLoss(nn.Module):
    r"""Hard-negative contrastive loss + ``imc_weight`` · IMC + ``cmr_weight`` · CMR.

    ``L = L_contrastive + 0.3 · L_IMC + 0.2 · L_CMR`` with the defaults, the weights of
    CE-CLIP's training scripts (their class defaults are 0.2/0.2). Set a weight to 0 to drop a
    term (MMCLIP itself uses only the contrastive part).

    ``contrastive``:
      * ``"in_batch"``: :func:`hard_negative_clip_loss` (in-batch CLIP + own hard negatives;
        with ``share_negatives=True`` the NegCLIP / CE-CLIP shared-column layout).
      * ``"per_anchor"``: the MMCLIP paper's loss, :func:`per_anchor_hard_negative_loss`,
        image anchor vs. text negatives (softmax) and caption anchor vs. image negatives
        (``image_negative_form``: "softmax", or "sigmoid" as in the released code), averaged
        over the kinds of negatives given.

    State: the CMR thresholds θ (buffer ``cmr_thresholds``, one per text-negative type, created
    at the first call). Each training-mode call computes CMR with the current θ and then
    replaces θ by this batch's clamped mean gap (:func:`cmr_threshold`), as CE-CLIP does; in
    ``eval()`` mode θ is left alone. The buffer is in ``state_dict()``, so save the loss module
    with the model and a resumed run continues the curriculum where it stopped.

    ``forward`` returns a dict: ``"loss"`` (the weighted total, to backpropagate),
    ``"contrastive_loss"``, ``"imc_loss"``, ``"cmr_loss"`` (those computed) and
    ``"cmr_thresholds"`` (the θ this step's CMR used).
    """

    def __init__(
        self,
        *,
        contrastive: Literal["in_batch", "per_anchor"] = "in_batch",
        imc_weight: float = 0.3,
        cmr_weight: float = 0.2,
        cmr_upper: float = 10.0,
        image_negative_form: Literal["softmax", "sigmoid"] = "softmax",
        share_negatives: bool = False,
    ):
        super().__init__()
        if contrastive not in ("in_batch", "per_anchor"):
            raise ValueError(f"contrastive must be 'in_batch' or 'per_anchor', got {contrastive!r}")
        if image_negative_form not in ("softmax", "sigmoid"):
            raise ValueError(f"image_negative_form must be 'softmax' or 'sigmoid', got {image_negative_form!r}")
        if imc_weight < 0 or cmr_weight < 0 or cmr_upper < 0:
            raise ValueError(
                f"imc_weight, cmr_weight and cmr_upper must be >= 0, got {imc_weight}, {cmr_weight}, {cmr_upper}"
            )
        self.contrastive = contrastive
        self.imc_weight = float(imc_weight)
        self.cmr_weight = float(cmr_weight)
        self.cmr_upper = float(cmr_upper)
        self.image_negative_form = image_negative_form
        self.share_negatives = share_negatives
        self.register_buffer("cmr_thresholds", torch.zeros(0))  # sized at the first CMR call

    def extra_repr(self) -> str:
        return (
            f"contrastive={self.contrastive!r}, imc_weight={self.imc_weight}, "
            f"cmr_weight={self.cmr_weight}, cmr_upper={self.cmr_upper}, "
            f"image_negative_form={self.image_negative_form!r}, share_negatives={self.share_negatives}"
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the thresholds' size is known only after the first step: adopt the saved one
        saved = state_dict.get(prefix + "cmr_thresholds")
        if saved is not None and saved.shape != self.cmr_thresholds.shape and self.cmr_thresholds.numel() == 0:
            self.cmr_thresholds = torch.zeros_like(saved, device=self.cmr_thresholds.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor | float,
        *,
        text_negative_features: Tensor | None = None,
        image_negative_features: Tensor | None = None,
        text_negative_mask: Tensor | None = None,
        image_negative_mask: Tensor | None = None,
        logit_bias: Tensor | float | None = None,
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.contrastive == "in_batch":
            out["contrastive_loss"] = hard_negative_clip_loss(
                image_features,
                text_features,
                logit_scale,
                image_negative_features,
                text_negative_features,
                text_negative_mask=text_negative_mask,
                image_negative_mask=image_negative_mask,
                share_negatives=self.share_negatives,
            )
        else:
            parts = []
            if text_negative_features is not None:
                parts.append(
                    per_anchor_hard_negative_loss(
                        image_features,
                        text_features,
                        text_negative_features,
                        logit_scale,
                        negative_mask=text_negative_mask,
                    )
                )
            if image_negative_features is not None:
                parts.append(
                    per_anchor_hard_negative_loss(
                        text_features,
                        image_features,
                        image_negative_features,
                        logit_scale,
                        form=self.image_negative_form,
                        logit_bias=logit_bias,
                        negative_mask=image_negative_mask,
                    )
                )
            if not parts:
                raise ValueError(
                    "contrastive='per_anchor' needs text_negative_features and/or "
                    "image_negative_features: it has no in-batch negatives"
                )
            out["contrastive_loss"] = torch.stack(parts).mean()
        total = out["contrastive_loss"]

        for name, weight in (("imc_weight", self.imc_weight), ("cmr_weight", self.cmr_weight)):
            if weight > 0 and text_negative_features is None:
                raise ValueError(f"{name}={weight} needs text_negative_features (set {name}=0 to train without it)")
        if self.imc_weight > 0:
            out["imc_loss"] = imc_loss(
                image_features, text_features, text_negative_features, logit_scale, negative_mask=text_negative_mask
            )
            total = total + self.imc_weight * out["imc_loss"]
        if self.cmr_weight > 0:
            pos, neg = cmr_logits(image_features, text_features, text_negative_features, logit_scale)
            k = neg.shape[1]
            if self.cmr_thresholds.numel() == 0:
                self.cmr_thresholds = torch.zeros(k, dtype=torch.float32, device=neg.device)
            if self.cmr_thresholds.shape[0] != k:
                raise ValueError(
                    f"text_negative_features has K={k} negative types but the CMR "
                    f"thresholds were built for K={self.cmr_thresholds.shape[0]}: "
                    "CMR needs the same negative types in the same columns every step"
                )
            theta = self.cmr_thresholds.clone()
            out["cmr_loss"] = _cmr_hinge_mean(pos, neg, theta, text_negative_mask)
            out["cmr_thresholds"] = theta
            total = total + self.cmr_weight * out["cmr_loss"]
            if self.training:
                # kept in float32 whatever the autocast dtype of the logits
                self.cmr_thresholds = cmr_threshold(
                    pos.float(), neg.float(), text_negative_mask, self.cmr_upper, previous=self.cmr_thresholds
                )
        out["loss"] = total
        return out
