"""The loss a run trains with, chosen by ``TrainConfig.loss``: in-batch CLIP, NegCLIP-style or MMCLIP (lesson 04).

It puts together the losses of :mod:`~mmgeo_utils.clip.losses` on the features of every process.
"""

from __future__ import annotations

from torch import Tensor, nn

from .ce_clip_losses import HardNegativeLoss
from .config import LOSSES
from .losses import clip_loss


class ContrastiveObjective(nn.Module):
    """The loss selected by ``TrainConfig.loss``, on features gathered from every process.

    Returns a dict with ``"loss"`` (to backpropagate) and its parts. The CMR thresholds of
    ``mmclip+imc_cmr`` live in the submodule's buffer, so they are checkpointed with the run.
    ``hard_weight`` scales the whole hard-negative term of the ``mmclip`` losses (IMC and CMR
    included) against in-batch CLIP: ``loss = clip_loss + hard_weight * hard``.
    """

    def __init__(self, loss: str, hard_weight: float = 1.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        if hard_weight <= 0 or (hard_weight != 1.0 and not loss.startswith("mmclip")):
            raise ValueError(f"hard_weight={hard_weight} needs an mmclip loss and a positive value")
        self.loss = loss
        self.hard_weight = float(hard_weight)
        self.hard: HardNegativeLoss | None = None
        if loss == "negclip":
            self.hard = HardNegativeLoss(contrastive="in_batch", imc_weight=0.0, cmr_weight=0.0)
        elif loss == "mmclip":
            self.hard = HardNegativeLoss(contrastive="per_anchor", imc_weight=0.0, cmr_weight=0.0)
        elif loss == "mmclip+imc_cmr":
            self.hard = HardNegativeLoss(contrastive="per_anchor")  # CE-CLIP's weights 0.3 / 0.2

    def forward(
        self,
        image: Tensor,
        text: Tensor,
        logit_scale: Tensor,
        *,
        image_negatives: Tensor | None = None,
        image_negative_mask: Tensor | None = None,
        text_negatives: Tensor | None = None,
        text_negative_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        if self.hard is None:
            value = clip_loss(image, text, logit_scale)
            return {"loss": value, "clip_loss": value}
        out = self.hard(
            image,
            text,
            logit_scale,
            image_negative_features=image_negatives,
            image_negative_mask=image_negative_mask,
            text_negative_features=text_negatives,
            text_negative_mask=text_negative_mask,
        )
        theta = out.pop("cmr_thresholds", None)
        if theta is not None:  # CE-CLIP's adaptive margins θ_k, one per text-negative slot, logged as scalars
            out.update({f"cmr_theta_{k}": t for k, t in enumerate(theta.detach())})
        if self.loss.startswith("mmclip"):  # "IB+MM": the per-anchor loss is added to in-batch CLIP
            out["clip_loss"] = clip_loss(image, text, logit_scale)
            out["loss"] = out["clip_loss"] + self.hard_weight * out["loss"]
        return out
