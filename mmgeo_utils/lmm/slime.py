"""Lesson 07, SliME (Zhang et al., 2024, "Beyond LLaVA-HD"): lesson 06's LMM with a local, sharper view of the
diagram, compressed, and chosen by the question.

The image the LMM reads (:class:`SlimeLMM`), in the order the LM sees it::

    <image>×N_global  <sep>  <local>×4·q   Question: …  Answer:

* **global**: lesson 06's tokens of the diagram (``layer3+pooled``: 37 at 96 px) through the MLP projector, or
  through SliME's mixture of the MLP and a resampler expert (:class:`~mmgeo_utils.lmm.local_tokens.GatedProjector`);
* **local**: the same scene drawn at twice the size (:func:`local_crops`) and cut into 2 × 2 crops of the
  profile's image size, each encoded by the same frozen tower: a letter covers four times the pixels. Each
  crop's projected tokens are either kept (``raw``: 4 × 37) or compressed by a resampler to a quarter as many
  queries (``compressed``: 37 → 9 at ``cpu``; SliME compresses 576 → 144, the same 4×), which in ``selected`` also read the question;
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

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..data import load_split
from ..data.samples import decode_row
from ..diagrams.render import render
from ..diagrams.scene import Scene
from ..diagrams.style import RenderStyle, enlarged
from ..repro import cpu_threads, seed_everything
from . import data as D
from .config import LMMConfig, lmm_root, stage_dir
from .evaluate import score, scored_questions
from .language_model import load_lm
from .loop import SUMMARY_FILE, _begin, _finish, _fit, _is_main
from .slime_model import (
    COMPRESSION,
    CROPS,
    PARTS_FILE,
    PRETRAIN_TOP_P,
    SFT_TOP_P,
    SLIME_VERSION,
    SlimeLMM,
    build_slime_model,
    load_slime,
    save_slime,
)
from .tokenizer import load_tokenizer
from .train import (
    _tower_and_features,
    add_lora,
    dataset_root,
    load_aligned_projector,
    saved_info,
    selected_rows,
    train_lmm,
)
from .vision_language_model import load_lmm
from .vision_tower import token_shape

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


def prepare_features(cfg: LMMConfig, data_root: Path | str | None = None, progress: bool = False) -> None:
    """Compute (or find cached) the tower's global and local features of ``cfg``'s training scenes, once, so
    arms trained side by side in other processes read the cache instead of each encoding every crop."""
    if cfg.vision == "none":
        return
    c = cfg.resolved()
    root = dataset_root(c, data_root)
    _, rows, _ = selected_rows(c, "train", root)
    tower, _, _, _ = _tower_and_features(c, root, rows, progress=progress)
    local_features(tower, root, "train", len(rows), lmm_root(c.profile) / "features", progress=progress)


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
        "compression": COMPRESSION,
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
    model = build_slime_model(stage_arm.local, stage_arm.gated, lm, projector, tok, tower.token_grid, shapes)
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
            save_slime(model.cpu(), run_dir / "model", tok, saved_info(cfg, slime_arm=arm))
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
    qs, selection = scored_questions(rows, split, limit or c.sizes.eval_questions, c.data_seed)
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
    result = score(
        model,
        tok,
        rows,
        qs,
        selection,
        feats,
        train_rows,
        seed=c.data_seed,
        n_image_tokens=info["image_tokens"],
        batch_size=batch_size,
        max_new_tokens=c.sizes.max_answer_tokens,
        context_length=ctx,
    )
    seconds = time.perf_counter() - t0
    records = result["answers"]
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
