"""Lesson 07, SliME (Zhang et al., 2024, "Beyond LLaVA-HD"): lesson 06's LMM with a local, sharper view of the
diagram, compressed, and chosen by the question.

The image the LMM reads (:class:`SlimeLMM`), in the order the LM sees it::

    <image>×N_global  <sep>  <local>×4·q   Question: …  Answer:

* **global**: lesson 06's tokens of the diagram (``layer3+pooled``: 37 at 96 px) through the MLP projector, or
  through SliME's mixture of the MLP and a resampler expert (:class:`~mmgeo_utils.lmm.local_tokens.GatedProjector`);
* **local**: the same scene drawn at twice the size (:func:`local_crops`) and cut into 2 × 2 crops of the
  profile's image size, each encoded by the same frozen tower: a letter covers four times the pixels. Each
  crop's projected tokens are either kept (``raw``: 4 × 37) or compressed by a resampler to q = 9 queries
  (``compressed``; SliME compresses 576 → 144, the same 4×), which in ``selected`` also read the question;
* **selector** (``selected``): the question picks the local tokens it needs, top-p over their cosine to the
  question's token embeddings (:func:`~mmgeo_utils.lmm.local_tokens.select_local`). A dropped token is
  masked out of attention and the positions skip it, which is exactly removing it.

The arms of the comparison (:data:`ARMS`), all on lesson 06's stage 0 (LM) and stage 1 (MLP projector), and
all with lesson 06's ``sft_steps`` of instruction tuning:

===============  ==============================================  ============================================
arm              image tokens                                    stages after lesson 06's ``align``
===============  ==============================================  ============================================
``global``       lesson 06's                                     lesson 06's ``sft`` (reused as it is)
``raw``          + ``<sep>`` + 148 projected crop tokens         ``local`` (the separator), ``sft``
``compressed``   + ``<sep>`` + 36 resampled crop tokens          ``local`` (compressor, separator), ``sft``
``selected``     + ``<sep>`` + the question's top-p of 36        ``local`` (question-aware compressor), ``sft``
``slime``        ``selected`` with the gated global adapter      ``expert`` (the resampler expert alone),
                                                                 ``local``, ``sft``: SliME's alternation
``slime-joint``  the same model                                  ``joint`` (every new part at once, for the
                                                                 steps of ``expert`` + ``local``), ``sft``
===============  ==============================================  ============================================

The caption stages (``expert``, ``local``, ``joint``) train on image → caption with the LM and the projector
frozen, keep every local token (SliME's top-p 1.0 in pre-training) and take ``align_steps`` each; ``sft``
trains LoRA, the projector and every new part on image + question → answer, top-p 0.95 with N(0, 0.1) noise
on the selector's scores. Runs live beside lesson 06's stages: ``<tower folder>/slime-<arm>/<stage>/``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import load_split
from ..data.samples import decode_row
from ..diagrams.render import render
from ..diagrams.scene import Scene
from ..diagrams.style import RenderStyle, enlarged
from ..profiles import get_profile
from ..repro import cpu_threads, seed_everything
from . import data as D
from .balance import balanced_questions
from .config import LMMConfig, lmm_root, stage_dir
from .evaluate import answer_questions, majority_answers, summarize
from .language_model import load_lm
from .local_tokens import GatedProjector, Resampler, select_local
from .loop import SUMMARY_FILE, _begin, _finish, _fit, _is_main
from .projector import Projector
from .tokenizer import image_token_id, load_tokenizer
from .train import (
    _clip_model,
    _tower_and_features,
    add_lora,
    dataset_root,
    load_aligned_projector,
    selected_rows,
    train_lmm,
)
from .vision_language_model import IGNORE_INDEX, GeometryLMM, load_lmm, save_lmm
from .vision_tower import join, token_shape

CROPS = 2  # the local view: the diagram drawn CROPS× larger, cut into CROPS × CROPS crops
QUERIES_PER_CROP = 9  # a crop's 37 tokens -> 9 (SliME: 576 -> 144, the same 4× compression)
PRETRAIN_TOP_P, SFT_TOP_P, NOISE_STD = 1.0, 0.95, 0.1  # SliME's selector settings
SLIME_VERSION = 1
SLIME_FILE, PARTS_FILE = "slime.json", "slime_parts.safetensors"
LOCAL_MODES = ("raw", "compressed", "selected")
SMALL_TEXT_KINDS = ("length", "angle", "which")  # the answers read off a label or a letter


@dataclass(frozen=True)
class SlimeArm:
    local: str | None  # None (global only), or one of LOCAL_MODES
    gated: bool = False  # SliME's mixture of two global adapters instead of the MLP alone
    schedule: str = "alternating"  # or "joint": every new part trained at once

    def stages(self) -> tuple[str, ...]:
        if self.local is None:
            return ("sft",)
        if not self.gated:
            return ("local", "sft")
        return ("expert", "local", "sft") if self.schedule == "alternating" else ("joint", "sft")


ARMS: dict[str, SlimeArm] = {
    "global": SlimeArm(None),
    "raw": SlimeArm("raw"),
    "compressed": SlimeArm("compressed"),
    "selected": SlimeArm("selected"),
    "slime": SlimeArm("selected", gated=True),
    "slime-joint": SlimeArm("selected", gated=True, schedule="joint"),
}


def check_arm(arm: str) -> SlimeArm:
    if arm not in ARMS:
        raise ValueError(f"unknown SliME arm {arm!r}; arms: {', '.join(ARMS)}")
    return ARMS[arm]


# ----------------------------------------------------------------------------- the local view


def local_crops(root: Path | str, row: dict, crops: int = CROPS) -> list:
    """The row's diagram drawn ``crops``× larger with its own style, cut into crops × crops images of the
    stored size, row-major (top-left first). Root is unused: the scene and style are in the row."""
    style = RenderStyle.from_dict(row["style"])
    scene = Scene.from_dict(decode_row(row)["scene"])
    big = render(scene, enlarged(style, crops)).image
    s = style.image_size
    return [big.crop((c * s, r * s, (c + 1) * s, (r + 1) * s)) for r in range(crops) for c in range(crops)]


LOCAL_VIEW: D.ImageView = ("local", local_crops)


def local_features(tower, root: Path | str, split: str, n: int, cache_dir: Path | str, progress: bool = False):
    """``({"local_grid": (n, 4, G, C), "local_pooled": (n, 4, C)}, hit)``, cached like lesson 06's features."""
    return D.cached_features(tower, root, split, n, cache_dir, progress=progress, view=LOCAL_VIEW)


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
        queries: int = QUERIES_PER_CROP,
        crops: int = CROPS,
        tower=None,
    ):
        super().__init__(lm, projector, image_token_id, token_grid, tower)
        if local is not None and local not in LOCAL_MODES:
            raise ValueError(f"unknown local mode {local!r}; modes: {', '.join(LOCAL_MODES)}")
        width, dim = projector.vision_dim, projector.lm_dim
        self.local, self.gated, self.n_global, self.crops, self.queries = local, gated, n_global, crops, queries
        self.grid, self.extra = tuple(grid), extra
        self.global_adapter = (
            GatedProjector(projector, Resampler(width, n_global, _heads(width), grid, extra), owns_projector=False)
            if gated
            else None
        )
        self.separator = nn.Parameter(torch.randn(dim) * 0.02) if local else None
        self.compressor = (
            Resampler(dim, queries, _heads(dim), grid, extra) if local in ("compressed", "selected") else None
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
    arm: SlimeArm, lm: nn.Module, projector: Projector, tok, token_grid: str, shapes: dict[str, tuple], tower=None
) -> SlimeLMM:
    """A :class:`SlimeLMM` for ``arm`` on a tower whose features have ``shapes`` (``grid``: (G, C), ``pooled``)."""
    n_tok, _ = token_shape(shapes, token_grid)
    n_grid = shapes["grid"][0] if token_grid != "pooled" else 1
    grid, extra = grid_layout(n_tok, min(n_grid, n_tok))
    return SlimeLMM(
        lm,
        projector,
        image_token_id(tok),
        token_grid,
        local=arm.local,
        gated=arm.gated,
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


# ----------------------------------------------------------------------------- training


def slime_dir(cfg: LMMConfig, arm: str) -> Path:
    """``<tower folder>/slime-<arm>``, beside lesson 06's ``align`` and ``sft`` of that tower."""
    check_arm(arm)
    return stage_dir(cfg, "align").parent / f"slime-{arm}"


def model_dir(cfg: LMMConfig, arm: str) -> Path:
    """The trained LMM of an arm: lesson 06's own for ``global``, else the arm's ``sft/model``."""
    if check_arm(arm).local is None:
        return stage_dir(cfg, "sft") / "model"
    return slime_dir(cfg, arm) / "sft" / "model"


def context_length(cfg: LMMConfig, model: SlimeLMM) -> int:
    """Lesson 06's context, grown by the separator and local tokens (the question's room is unchanged)."""
    return cfg.sizes.context_length + model.n_image_tokens - model.n_global


def _stage_params(model: SlimeLMM, stage: str) -> list[nn.Parameter]:
    """What a caption stage trains (``sft`` is built apart: LoRA, the projector and every new part)."""
    new = []
    if model.global_adapter is not None and stage in ("expert", "joint"):
        new += list(model.global_adapter.resampler.parameters())
        if stage == "joint":
            new += list(model.global_adapter.gate.parameters())
    if stage in ("local", "joint"):
        new += [model.separator] if model.separator is not None else []
        new += list(model.compressor.parameters()) if model.compressor is not None else []
    return new


def train_slime(
    cfg: LMMConfig,
    arm: str = "slime",
    *,
    resume: bool = False,
    data_root: Path | str | None = None,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train every stage of ``arm`` on ``cfg``'s tower (lesson 06's stages 0-1 trained or reused first)."""
    spec = check_arm(arm)
    if cfg.vision == "none":
        raise ValueError("SliME reads the diagram at two resolutions: --vision none has no image")
    if spec.local is None:  # global only: lesson 06's LMM, stage for stage
        return {"sft": train_lmm(cfg, "all", resume=resume, data_root=data_root, callbacks=callbacks)["sft"]}
    for stage in ("lm", "align"):
        train_lmm(cfg, stage, data_root=data_root)
    root = dataset_root(cfg.resolved(), data_root)
    out = {}
    with cpu_threads(cfg.resolved().threads):
        previous = None
        for stage in spec.stages():
            out[stage] = _train_stage(cfg, arm, stage, previous, root, resume, callbacks, progress)
            previous = stage
    return out


def _train_stage(
    cfg: LMMConfig,
    arm: str,
    stage: str,
    previous: str | None,
    root: Path,
    resume: bool,
    callbacks: Iterable[Callable[[int, dict], None]],
    progress: bool,
) -> dict[str, Any]:
    c, spec = cfg.resolved(), ARMS[arm]
    steps = {"expert": c.align_steps, "local": c.align_steps, "joint": 2 * c.align_steps, "sft": c.sft_steps}[stage]
    extra = {
        "slime_arm": arm,
        "slime_stage": stage,
        "slime_steps": steps,
        "local": spec.local,
        "gated": spec.gated,
        "schedule": spec.schedule,
        "queries": QUERIES_PER_CROP,
        "crops": CROPS,
        "slime_version": SLIME_VERSION,
    }
    run_dir, done = _begin(
        cfg,
        "sft" if stage == "sft" else "align",
        resume,
        root,
        run_dir=slime_dir(cfg, arm) / stage,
        extra=extra,
        label=f"slime-{arm} {stage}",
    )
    if done is not None:
        return done
    before = slime_dir(cfg, arm) / previous if previous else None
    if before is not None and not (before / SUMMARY_FILE).exists():
        raise FileNotFoundError(f"stage {stage} of slime-{arm} needs its finished stage {previous} in {before}")
    _, rows, selection = selected_rows(c, "train", root)
    tower, feats, _, hit = _tower_and_features(c, root, rows, progress=progress)
    cache = lmm_root(c.profile) / "features"
    local, local_hit = local_features(tower, root, "train", len(rows), cache, progress=progress)
    tok = load_tokenizer(stage_dir(cfg, "lm") / "tokenizer")
    seed_everything(c.seed)
    lm = load_lm(stage_dir(cfg, "lm") / "lm", tok).requires_grad_(False)
    shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
    width = token_shape(shapes, tower.token_grid)[1]
    projector = load_aligned_projector(cfg, width, lm.get_input_embeddings().embedding_dim)
    # the expert stage is SliME's "global only, resampler expert": no local path yet
    stage_arm = SlimeArm(None, True) if stage == "expert" else spec
    model = build_slime_model(stage_arm, lm, projector, tok, tower.token_grid, shapes)
    if before is not None:
        model.load_parts(before / PARTS_FILE, allow_missing=True)
    if stage == "sft":
        model.lm = add_lora(lm, c.lora_r)  # type: ignore[arg-type]
        params = [p for p in model.parameters() if p.requires_grad]
        model.top_p, lr = SFT_TOP_P, c.sizes.sft_lr
        examples = D.sft_examples(
            tok, rows, n_image_tokens=model.n_image_tokens, context_length=context_length(c, model)
        )
    else:
        model.requires_grad_(False)
        params = _stage_params(model, stage)
        for p in params:
            p.requires_grad_(True)
        model.global_mode = 1 if stage == "expert" else -1
        model.top_p, lr = PRETRAIN_TOP_P, c.sizes.align_lr
        examples = D.align_examples(
            tok, rows, n_image_tokens=model.n_image_tokens, context_length=context_length(c, model)
        )
    summary = _fit(
        model,
        params,
        examples,
        {**feats, **local},
        steps=steps,
        lr=lr,
        cfg=c,
        run_dir=run_dir,
        resume=resume,
        pad_id=tok.pad_token_id,
        callbacks=callbacks,
    )
    model.global_mode = -1
    if _is_main():
        save_file(model.parts_state(), str(run_dir / PARTS_FILE))
        if stage == "sft":
            model.tower = tower
            info = {
                "vision": c.vision,
                "tower": cfg.tower_name(),
                "image_size": get_profile(c.profile).image_size,
                "clip_model": _clip_model(c),
                "profile": c.profile,
                "seed": c.seed,
                "slime_arm": arm,
            }
            save_slime(model.cpu(), run_dir / "model", tok, info)
    return _finish(
        run_dir,
        cfg,
        summary,
        feature_cache_hit=hit,
        local_feature_cache_hit=local_hit,
        image_tokens=model.n_image_tokens,
        local_tokens=model.n_local,
        trainable_parameters=sum(p.numel() for p in params),
        **({"yes_no_selection": selection.to_dict()} if stage == "sft" else {}),
        **extra,
    )


# ----------------------------------------------------------------------------- scoring


def evaluate_slime(
    cfg: LMMConfig,
    arm: str,
    root: Path | str,
    *,
    split: str = "test",
    limit: int | None = None,
    top_p: float | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Exact match per kind (lesson 06's scoring), the local tokens the LM read, and the seconds per question.

    ``top_p`` overrides the selector's (the curve of accuracy against local tokens kept).
    """
    c, spec = cfg.resolved(), check_arm(arm)
    folder = model_dir(cfg, arm)
    if not (folder / "lmm.json").is_file():
        raise FileNotFoundError(f"no trained LMM for slime arm {arm!r} in {folder}: train it with mmgeo train-slime")
    if spec.local is None:
        model, tok, info = load_lmm(folder)
    else:
        model, tok, info = load_slime(folder)
        if top_p is not None:
            model.top_p = top_p
    rows = load_split(root, split)
    qs, selection = balanced_questions(rows, limit or c.sizes.eval_questions, c.data_seed)
    needed = max(i for i, _, _ in qs) + 1
    cache = lmm_root(c.profile) / "features"
    feats, _ = D.cached_features(model.tower, root, split, needed, cache)
    ctx = c.sizes.context_length
    if spec.local is not None:
        local, _ = local_features(model.tower, root, split, needed, cache)
        feats, ctx = {**feats, **local}, context_length(c, model)
        model.kept_log = []
    _, train_rows, _ = selected_rows(c, "train", root)
    t0 = time.perf_counter()
    records = answer_questions(
        model,
        tok,
        rows,
        qs,
        feats,
        n_image_tokens=info["image_tokens"],
        batch_size=batch_size,
        max_new_tokens=c.sizes.max_answer_tokens,
        context_length=ctx,
    )
    seconds = time.perf_counter() - t0
    result = {**summarize(records, majority_answers(train_rows, c.data_seed)), "yes_no_selection": selection.to_dict()}
    small = [r for r in records if r["kind"] in SMALL_TEXT_KINDS]
    n_local = getattr(model, "n_local", 0)
    kept = float(torch.cat(model.kept_log).float().mean()) if getattr(model, "kept_log", None) else float(n_local)
    return {
        **result,
        "small_text": sum(r["correct"] for r in small) / max(len(small), 1),
        "image_tokens": info["image_tokens"],
        "local_tokens": n_local,
        "local_tokens_kept": kept,
        "top_p": getattr(model, "top_p", None) if spec.local == "selected" else None,
        "seconds_per_question": seconds / len(records),
    }
