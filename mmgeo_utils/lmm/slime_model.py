"""Lesson 07, SliME's LMM (:class:`SlimeLMM`): lesson 06's wrapper reading global tokens, a learned separator and
the local tokens of a sharper view, in the order the LM sees them::

    <image>×N_global  <sep>  <local>×4·q   Question: …  Answer:

``local`` is ``raw`` (every projected crop token), ``compressed`` (a resampler's q queries per crop) or
``selected`` (the compressor's queries also read the question, and the top-p of its tokens by their cosine to the
question is kept); ``gated`` swaps the MLP projector of the global view for SliME's mixture of the MLP and a
resampler expert. A dropped token is masked out of attention and the positions skip it, which is exactly removing
it. Saving adds the new parts (``slime_parts.safetensors``) and the layout (``slime.json``) to lesson 06's format.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .local_tokens import GatedProjector, Resampler, select_local
from .projector import Projector
from .tokenizer import image_token_id
from .vision_language_model import IGNORE_INDEX, GeometryLMM, load_lmm, save_lmm
from .vision_tower import join, token_shape

CROPS = 2  # the local view: the diagram drawn CROPS× larger, cut into CROPS × CROPS crops
COMPRESSION = 4  # a crop's tokens -> a quarter as many queries (SliME: 576 -> 144; cpu's 37 -> 9)


def queries_per_crop(n_tokens: int) -> int:
    """The compressor's queries for a crop of ``n_tokens`` tokens: SliME's 4× compression, at least one."""
    return max(1, n_tokens // COMPRESSION)


PRETRAIN_TOP_P, SFT_TOP_P, NOISE_STD = 1.0, 0.95, 0.1  # SliME's selector settings
SLIME_VERSION = 1
SLIME_FILE, PARTS_FILE = "slime.json", "slime_parts.safetensors"
LOCAL_MODES = ("raw", "compressed", "selected")


def _heads(width: int) -> int:
    """As many attention heads as keep 16 channels or more each (SliME: 1024 / 128 = 8), at most 8."""
    return next(h for h in (8, 4, 2, 1) if width % h == 0 and width // h >= 16) if width >= 16 else 1


def grid_layout(n_tokens: int, n_grid: int) -> tuple[tuple[int, int], int]:
    """((h, w), extra) of a crop's tokens: a square grid of ``n_grid`` tokens and ``n_tokens - n_grid`` others."""
    side = math.isqrt(n_grid)
    if side * side != n_grid:
        raise ValueError(f"a crop's {n_grid} grid tokens are not a square grid")
    return (side, side), n_tokens - n_grid


# ----------------------------------------------------------------------------- the model


class SlimeLMM(GeometryLMM):
    """Lesson 06's LMM reading global tokens, a learned separator, and local tokens of the 2 × 2 crops.

    ``n_global`` tokens of width ``projector.vision_dim`` per image (and per crop); ``grid``/``extra``: how
    they are laid out (:func:`grid_layout`), for the resamplers' positions. ``global_mode`` picks SliME's
    global expert (−1 mixed, 0 MLP, 1 resampler); ``top_p`` and ``noise_std`` set the selector (noise only
    in training). ``kept_log``, when a list, receives each forward's number of local tokens kept per row.
    """

    def __init__(
        self,
        lm: nn.Module,
        projector: Projector,
        image_token_id: int,
        token_grid: str,
        *,
        local: str | None,
        gated: bool,
        n_global: int,
        grid: tuple[int, int],
        extra: int,
        queries: int | None = None,
        crops: int = CROPS,
        tower=None,
    ):
        super().__init__(lm, projector, image_token_id, token_grid, tower)
        if local is not None and local not in LOCAL_MODES:
            raise ValueError(f"unknown local mode {local!r}; modes: {', '.join(LOCAL_MODES)}")
        width, dim = projector.vision_dim, projector.lm_dim
        self.local, self.gated, self.n_global, self.crops = local, gated, n_global, crops
        self.queries = queries_per_crop(n_global) if queries is None else queries
        self.grid, self.extra = tuple(grid), extra
        self.global_adapter = (
            GatedProjector(projector, Resampler(width, n_global, _heads(width), grid, extra), owns_projector=False)
            if gated
            else None
        )
        self.separator = nn.Parameter(torch.randn(dim) * 0.02) if local else None
        self.compressor = (
            Resampler(dim, self.queries, _heads(dim), grid, extra) if local in ("compressed", "selected") else None
        )
        self.global_mode, self.top_p, self.noise_std = -1, SFT_TOP_P, NOISE_STD
        self.kept_log: list[torch.Tensor] | None = None

    @property
    def n_local(self) -> int:
        per_crop = self.n_global if self.local == "raw" else self.queries
        return 0 if self.local is None else self.crops**2 * per_crop

    @property
    def n_image_tokens(self) -> int:
        """The ``<image>`` slots a prompt holds: global, then separator and local tokens."""
        return self.n_global + (1 + self.n_local if self.local else 0)

    def global_tokens(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = join(features, self.token_grid)
        return self.projector(x) if self.global_adapter is None else self.global_adapter(x, self.global_mode)

    def local_tokens(
        self, features: dict[str, torch.Tensor], text: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(local tokens (B, L, D), kept (B, L) or None, selector probabilities (B, L) or None)``."""
        grid, pooled = features["local_grid"].float(), features["local_pooled"].float()
        b, v = grid.shape[:2]
        x = self.projector(join({"grid": grid.flatten(0, 1), "pooled": pooled.flatten(0, 1)}, self.token_grid))
        if self.local == "raw":
            return x.reshape(b, -1, x.shape[-1]), None, None
        aware = self.local == "selected"
        z = self.compressor(
            x,
            text.repeat_interleave(v, 0) if aware else None,
            text_mask.repeat_interleave(v, 0) if aware else None,
        ).reshape(b, v * self.queries, -1)
        if not aware:
            return z, None, None
        noise = self.noise_std if self.training else 0.0
        keep, probs = select_local(z, text, text_mask, top_p=self.top_p, noise_std=noise, return_probs=True)
        return z, keep, probs

    def question_mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) True at the prompt's tokens after the image (the question, or stage 1's instruction).

        The answer is never part of it: where ``labels`` are given, tokens with a target are excluded.
        """
        slots = input_ids == self.image_token_id
        after = (slots.long().cumsum(1) == self.n_image_tokens) & ~slots & attention_mask.bool()
        return after if labels is None else after & (labels == IGNORE_INDEX)

    def selection(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept (B, L), probabilities (B, L))`` of the selector for these prompts (lesson 07's heat map)."""
        if self.local != "selected":
            raise ValueError(f"only the 'selected' local mode has a selector; this model's is {self.local!r}")
        embeds = self.lm.get_input_embeddings()(input_ids)
        _, keep, probs = self.local_tokens(features, embeds, self.question_mask(input_ids, attention_mask))
        return keep, probs

    def inputs(self, input_ids, attention_mask, features, labels=None):
        if features is None:
            raise ValueError("a SliME LMM reads an image: no features were given")
        embeds = self.lm.get_input_embeddings()(input_ids)
        slots = input_ids == self.image_token_id
        per_row = slots.sum(1)
        if not bool((per_row == self.n_image_tokens).all()):
            raise ValueError(
                f"each prompt needs {self.n_image_tokens} <image> tokens (expand_image_tokens), found {per_row.tolist()}"
            )
        parts, keep = [self.global_tokens(features)], None
        if self.local:
            question = self.question_mask(input_ids, attention_mask, labels)
            local, keep, _ = self.local_tokens(features, embeds, question)
            parts += [self.separator.expand(input_ids.shape[0], 1, -1), local]
        embeds = embeds.masked_scatter(slots[..., None], torch.cat(parts, 1).to(embeds.dtype))
        if keep is None:
            return embeds, attention_mask, None
        if self.kept_log is not None:
            self.kept_log.append(keep.sum(1).detach().cpu())
        kept_slots = torch.cat([keep.new_ones(keep.shape[0], self.n_image_tokens - keep.shape[1]), keep], 1)
        visible = torch.ones_like(slots)
        visible[slots] = kept_slots.flatten()
        mask = attention_mask * visible.to(attention_mask.dtype)
        return embeds, mask, (mask.long().cumsum(1) - 1).clamp(min=0)

    def spec(self) -> dict[str, Any]:
        """What :func:`load_slime` needs to rebuild the model around lesson 06's saved parts."""
        return {
            "local": self.local,
            "gated": self.gated,
            "n_global": self.n_global,
            "grid": list(self.grid),
            "extra": self.extra,
            "queries": self.queries,
            "crops": self.crops,
            "top_p": self.top_p,
            "slime_version": SLIME_VERSION,
        }

    def parts_state(self) -> dict[str, torch.Tensor]:
        """The new parts' weights: the gated adapter's resampler and gate, the compressor, the separator."""
        return {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if k.startswith(("global_adapter.", "compressor.", "separator"))
        }

    def load_parts(self, path: Path | str, *, allow_missing: bool = False) -> None:
        """Load :meth:`parts_state` saved by an earlier stage; ``allow_missing``: parts that stage did not have."""
        have = load_file(str(path))
        want = self.parts_state()
        unexpected = sorted(set(have) - set(want))
        missing = sorted(set(want) - set(have))
        if unexpected or (missing and not allow_missing):
            raise ValueError(
                f"{path} does not fit this SliME model: "
                + "; ".join(
                    f"{name} {', '.join(keys[:4])}"
                    for name, keys in (("unexpected", unexpected), ("missing", missing))
                    if keys
                )
            )
        self.load_state_dict(have, strict=False)


def build_slime_model(
    local: str | None,
    gated: bool,
    lm: nn.Module,
    projector: Projector,
    tok,
    token_grid: str,
    shapes: dict[str, tuple],
    tower=None,
) -> SlimeLMM:
    """A :class:`SlimeLMM` on a tower whose features have ``shapes`` (``grid``: (G, C), ``pooled``: (C,))."""
    n_tok, _ = token_shape(shapes, token_grid)
    n_grid = shapes["grid"][0] if token_grid != "pooled" else 1
    grid, extra = grid_layout(n_tok, min(n_grid, n_tok))
    return SlimeLMM(
        lm,
        projector,
        image_token_id(tok),
        token_grid,
        local=local,
        gated=gated,
        n_global=n_tok,
        grid=grid,
        extra=extra,
        tower=tower,
    )


def save_slime(model: SlimeLMM, folder: Path | str, tok, info: dict[str, Any]) -> Path:
    """Lesson 06's format (:func:`~mmgeo_utils.lmm.vision_language_model.save_lmm`) + the new parts + ``slime.json``."""
    folder = Path(folder)
    save_lmm(model, folder, tok, {**info, "image_tokens": model.n_image_tokens})
    save_file(model.parts_state(), str(folder / PARTS_FILE))
    (folder / SLIME_FILE).write_text(json.dumps(model.spec(), indent=2) + "\n")
    return folder


def load_slime(folder: Path | str) -> tuple[SlimeLMM, Any, dict]:
    """``(model, tokenizer, info)`` of a folder written by :func:`save_slime`, in eval mode on the CPU."""
    folder = Path(folder)
    if not (folder / SLIME_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no SliME LMM ({SLIME_FILE} missing): train one with mmgeo train-slime")
    base, tok, info = load_lmm(folder)
    spec = json.loads((folder / SLIME_FILE).read_text())
    model = SlimeLMM(
        base.lm,
        base.projector,
        base.image_token_id,
        base.token_grid,
        local=spec["local"],
        gated=spec["gated"],
        n_global=spec["n_global"],
        grid=tuple(spec["grid"]),
        extra=spec["extra"],
        queries=spec["queries"],
        crops=spec["crops"],
        tower=base.tower,
    )
    model.load_parts(folder / PARTS_FILE)
    model.top_p = spec["top_p"]
    return model.eval(), tok, {**info, "slime": spec}
