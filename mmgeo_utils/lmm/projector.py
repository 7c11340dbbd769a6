"""The projector: LLaVA-1.5's two-layer MLP from vision-token width to the LM's embedding width.

LLaVA-1 used one Linear; LLaVA-1.5 found Linear → GELU → Linear better at the same cost, and
TinyLLaVA Factory and nanoVLM keep it. It is the only part stage 1 (alignment) trains: with the
tower and the LM frozen, it learns to write image tokens in the LM's own embedding space.
"""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """``Linear(vision_dim → lm_dim) → GELU → Linear(lm_dim → lm_dim)``, applied to every image token."""

    def __init__(self, vision_dim: int, lm_dim: int):
        super().__init__()
        self.vision_dim, self.lm_dim = vision_dim, lm_dim
        self.linear_1 = nn.Linear(vision_dim, lm_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(lm_dim, lm_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.vision_dim:
            raise ValueError(
                f"image tokens of width {tokens.shape[-1]} do not fit a projector built for "
                f"{self.vision_dim} (another tower or token grid?)"
            )
        return self.linear_2(self.act(self.linear_1(tokens)))
