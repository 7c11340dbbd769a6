"""The LLaVA recipe, adapted to an LM trained from scratch: three stages, each resumable.

=========  ====================================  ===============================  =========================
stage      data                                  trains                           why
=========  ====================================  ===============================  =========================
``lm``     captions + questions + answers        the whole LM (and its BPE)       no hub weights on smoke /
           (no images)                                                            cpu / gpu: the LM must
                                                                                  first read geometry text
``align``  image → caption                       the projector only, lr 1e-3      LLaVA stage 1: image
                                                                                  tokens in the LM's space
``sft``    image + question → answer             LoRA on the LM's linear layers   LLaVA stage 2
                                                 + the projector (``--full``:
                                                 the whole LM)
=========  ====================================  ===============================  =========================

Runs live under ``runs/<profile>/lmm/``: ``lm-qa2-s<seed>/`` (stage 0, shared by every tower of that
seed: blind, random, CLIP and MMCLIP differ from stage 1 on; ``qa2``: the questions' version,
:data:`~mmgeo_utils.lmm.balance.QA_VERSION`), then
``<tower>-<grid>-s<seed>/align/`` and ``.../sft-lora<r>/`` (or ``sft-full/``), the last one a
complete LMM (:func:`~mmgeo_utils.lmm.vision_language_model.save_lmm`). The blind LMM has no
projector, so its ``align`` stage is empty and its sft trains LoRA alone.

Every stage uses :func:`~mmgeo_utils.lmm.loop._fit`: batches are a pure function of (seed, step)
(:class:`~mmgeo_utils.data.contrastive.StepBatchSampler`), the LM has no dropout, and checkpoints
hold weights, AdamW, scheduler and RNG state (:mod:`mmgeo_utils.clip.checkpoint`), so ``resume=True``
ends at the same weights, bit for bit, as an uninterrupted run. A finished stage is reused, never
retrained; a stage folder trained with another config refuses ``--resume`` and names the difference.

Every stage reads the training scenes' questions with yes/no balanced per relation
(:func:`~mmgeo_utils.lmm.balance.balanced_rows`, seeded by ``data_seed``): stage 0's text and stage
2's answers alike, so no stage teaches that a relation's wording predicts its answer. The lm and sft
summaries record what the selection left out (``yes_no_selection``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ..clip import load_config
from ..clip.distributed import barrier
from ..data import DatasetConfig, build_dataset, load_split
from ..profiles import get_profile
from ..repro import cpu_threads, seed_everything
from . import data as D
from .balance import YesNoSelection, balanced_rows
from .config import STAGES, LMMConfig, lmm_root, stage_dir
from .language_model import build_lm, load_lm, quiet
from .loop import SUMMARY_FILE, _begin, _dist, _finish, _fit, _is_main
from .projector import Projector
from .tokenizer import image_token_id, load_tokenizer, train_tokenizer
from .vision_language_model import GeometryLMM, save_lmm
from .vision_tower import check_vision, load_vision_tower, resolve_run, token_shape

log = logging.getLogger(__name__)


def dataset_rows(cfg: LMMConfig, split: str, data_root: Path | str | None = None) -> tuple[Path, list[dict]]:
    """The dataset folder and the split's rows (train: the first ``train_scenes``), yes/no balanced."""
    root, rows, _ = selected_rows(cfg, split, data_root)
    return root, rows


def dataset_root(cfg: LMMConfig, data_root: Path | str | None = None) -> Path:
    """The dataset folder a stage reads: ``data_root``, or the profile's positives-only build (made if missing)."""

    if data_root:
        return Path(data_root)
    # the positives-only build: the same diagrams, captions and questions as the encoders' dataset (a
    # sample is a function of (seed, split, index) alone), without the hard negatives the LMM never reads
    return build_dataset(DatasetConfig.from_profile(cfg.profile, seed=cfg.data_seed, negatives=False), progress=False)


def selected_rows(
    cfg: LMMConfig, split: str, data_root: Path | str | None = None
) -> tuple[Path, list[dict], YesNoSelection]:
    """:func:`dataset_rows` and the yes/no selection that cut its questions (what was dropped, per relation)."""

    root = dataset_root(cfg, data_root)
    rows = load_split(root, split)
    rows, selection = balanced_rows(rows[: cfg.resolved().train_scenes] if split == "train" else rows, cfg.data_seed)
    return root, rows, selection


# ----------------------------------------------------------------------------- the stages


def train_lm_stage(
    cfg: LMMConfig,
    *,
    resume: bool = False,
    data_root: Path | str | None = None,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
) -> dict[str, Any]:
    """Stage 0: a BPE and a Qwen2 LM trained on geometry text (``lm/``, ``tokenizer/``)."""
    c = cfg.resolved()
    run_dir, done = _begin(cfg, "lm", resume, dataset_root(c, data_root))
    if done is not None:
        return done
    root, rows, selection = selected_rows(c, "train", data_root)
    if c.lm:  # a hub LM or local folder: no pre-training, its own tokenizer
        tok = load_tokenizer(c.lm)
        lm = load_lm(c.lm, tok)
        if _is_main():
            tok.save_pretrained(str(run_dir / "tokenizer"))
            with quiet():
                lm.save_pretrained(str(run_dir / "lm"))
        return _finish(run_dir, cfg, {"steps": 0, "wall_time_s": 0.0}, lm_parameters=_count(lm))
    seed_everything(c.seed)

    info, _ = _dist()
    if info.is_main:  # one BPE, trained once; every process reads the same files
        train_tokenizer(D.corpus(rows), c.sizes.vocab_size, run_dir / "tokenizer")
    barrier(info)
    tok = load_tokenizer(run_dir / "tokenizer")
    lm = build_lm(c.sizes, tok)
    model = GeometryLMM(lm, None, image_token_id(tok), "none")
    examples = D.lm_examples(tok, rows, c.sizes.context_length)
    summary = _fit(
        model,
        list(lm.parameters()),
        examples,
        None,
        steps=c.lm_steps,
        lr=c.sizes.lm_lr,
        cfg=c,  # type: ignore[arg-type]
        run_dir=run_dir,
        resume=resume,
        pad_id=tok.pad_token_id,
        callbacks=callbacks,
    )
    if _is_main():
        with quiet():
            lm.save_pretrained(str(run_dir / "lm"))
    return _finish(
        run_dir, cfg, summary, lm_parameters=_count(lm), vocab_size=len(tok), yes_no_selection=selection.to_dict()
    )


def _count(m: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)


def _tower_and_features(cfg: LMMConfig, root: Path, rows: list[dict], split: str = "train", progress: bool = False):
    c = cfg.resolved()
    tower = load_vision_tower(c.vision, c.profile, token_grid=c.token_grid, seed=c.seed)
    if tower is None:
        return None, None, (0, 0), None

    info, _ = _dist()
    if not info.is_main:  # the main process computes and caches; the others then read the cache
        barrier(info)
    feats, hit = D.cached_features(tower, root, split, len(rows), lmm_root(c.profile) / "features", progress=progress)
    if info.is_main:
        barrier(info)
    n, width = token_shape({k: tuple(v.shape[1:]) for k, v in feats.items()}, tower.token_grid)
    return tower, feats, (n, width), hit


def _require_finished(cfg: LMMConfig, stage: str, before: str) -> Path:
    """Stage ``before``'s folder, which stage ``stage`` starts from; refused, named, when unfinished."""
    d = stage_dir(cfg, before)
    if not (d / SUMMARY_FILE).exists():
        raise FileNotFoundError(f"stage {stage} needs the finished stage {before} in {d}: run --stage {before} first")
    return d


def train_align_stage(
    cfg: LMMConfig,
    *,
    resume: bool = False,
    data_root: Path | str | None = None,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
) -> dict[str, Any]:
    """Stage 1: image → caption with the LM and tower frozen; only the projector learns."""
    c = cfg.resolved()
    lm_dir = _require_finished(cfg, "align", "lm")
    run_dir, done = _begin(cfg, "align", resume, dataset_root(c, data_root))
    if done is not None:
        return done
    root, rows = dataset_rows(c, "train", data_root)
    tower, feats, (n_tok, width), hit = _tower_and_features(c, root, rows)
    if tower is None:
        return _finish(run_dir, cfg, {"steps": 0, "wall_time_s": 0.0}, note="blind: no projector to align")
    tok = load_tokenizer(lm_dir / "tokenizer")
    lm = load_lm(lm_dir / "lm", tok).requires_grad_(False)
    seed_everything(c.seed)
    projector = Projector(width, lm.get_input_embeddings().embedding_dim)
    model = GeometryLMM(lm, projector, image_token_id(tok), tower.token_grid)
    examples = D.align_examples(tok, rows, n_image_tokens=n_tok, context_length=c.sizes.context_length)
    summary = _fit(
        model,
        list(projector.parameters()),
        examples,
        feats,
        steps=c.align_steps,
        lr=c.sizes.align_lr,  # type: ignore[arg-type]
        cfg=c,
        run_dir=run_dir,
        resume=resume,
        pad_id=tok.pad_token_id,
        callbacks=callbacks,
    )

    if _is_main():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in projector.state_dict().items()},
            str(run_dir / "projector.safetensors"),
        )
    return _finish(
        run_dir, cfg, summary, feature_cache_hit=hit, image_tokens=n_tok, token_width=width, token_grid=tower.token_grid
    )


def add_lora(lm: nn.Module, r: int, trainable_token_indices: list[int] | None = None) -> nn.Module:
    """peft LoRA on every linear layer of the LM (q, k, v, o and the MLP's; not the tied output head).

    ``trainable_token_indices`` also trains those rows of the embedding table (lesson 07's ``<emb>``)."""
    from peft import LoraConfig, get_peft_model  # local: peft is imported only where an adapter is built or loaded

    extra = {"trainable_token_indices": trainable_token_indices} if trainable_token_indices else {}
    config = LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM", **extra
    )
    with quiet():
        return get_peft_model(lm, config)


def load_aligned_projector(cfg: LMMConfig, width: int, lm_dim: int) -> Projector:
    """Stage 1's projector of ``cfg`` (its ``align`` folder), as lessons 06-08 start from it."""
    projector = Projector(width, lm_dim)
    projector.load_state_dict(load_file(str(stage_dir(cfg, "align") / "projector.safetensors")))
    return projector


def build_sft_model(cfg: LMMConfig, tok, n_tok: int, width: int, grid: str) -> tuple[GeometryLMM, list[nn.Parameter]]:
    """The stage-2 model from stages 0-1, and what trains: LoRA (or the LM with ``full``) + the projector."""

    c = cfg.resolved()
    lm = load_lm(stage_dir(cfg, "lm") / "lm", tok)
    if c.full:
        lm.requires_grad_(True)
    else:
        lm = add_lora(lm, c.lora_r)  # type: ignore[arg-type]  # freezes the base LM
    projector = None
    if not c.blind:
        projector = load_aligned_projector(cfg, width, lm.get_input_embeddings().embedding_dim)
        projector.requires_grad_(True)
    model = GeometryLMM(lm, projector, image_token_id(tok), grid)
    return model, [p for p in model.parameters() if p.requires_grad]


def train_sft_stage(
    cfg: LMMConfig,
    *,
    resume: bool = False,
    data_root: Path | str | None = None,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
) -> dict[str, Any]:
    """Stage 2: image + question → answer; LoRA + projector (or the whole LM) learn. Saves the LMM."""
    c = cfg.resolved()
    _require_finished(cfg, "sft", "align")
    run_dir, done = _begin(cfg, "sft", resume, dataset_root(c, data_root))
    if done is not None:
        return done
    root, rows, selection = selected_rows(c, "train", data_root)
    tower, feats, (n_tok, width), hit = _tower_and_features(c, root, rows)
    tok = load_tokenizer(stage_dir(cfg, "lm") / "tokenizer")
    seed_everything(c.seed)
    model, params = build_sft_model(c, tok, n_tok, width, tower.token_grid if tower else "none")
    examples = D.sft_examples(tok, rows, n_image_tokens=n_tok, context_length=c.sizes.context_length)
    summary = _fit(
        model,
        params,
        examples,
        feats,
        steps=c.sft_steps,
        lr=c.sizes.sft_lr,
        cfg=c,
        run_dir=run_dir,  # type: ignore[arg-type]
        resume=resume,
        pad_id=tok.pad_token_id,
        callbacks=callbacks,
    )
    model.tower = tower
    if _is_main():
        save_lmm(model.cpu(), run_dir / "model", tok, saved_info(cfg, image_tokens=n_tok))
    return _finish(
        run_dir,
        cfg,
        summary,
        feature_cache_hit=hit,
        image_tokens=n_tok,
        yes_no_selection=selection.to_dict(),
        trainable_parameters=len(params) and sum(p.numel() for p in params),
        total_parameters=sum(p.numel() for p in model.lm.parameters())
        + (sum(p.numel() for p in model.projector.parameters()) if model.projector else 0),
    )


def saved_info(cfg: LMMConfig, *, image_tokens: int | None = None, **extra: Any) -> dict[str, Any]:
    """What a saved LMM's ``lmm.json`` says it was built from: the tower, its image size, the profile and seed.

    The record every trained LMM of lessons 06–07 carries (:func:`train_sft_stage`, ``lmm.gem.save_gem``,
    ``lmm.slime``), so a fresh process rebuilds the tower it was trained on.
    """
    c = cfg.resolved()
    info: dict[str, Any] = {
        "vision": c.vision,
        "tower": cfg.tower_name(),
        "image_size": get_profile(c.profile).image_size,
        "clip_model": _clip_model(c),
    }
    if image_tokens is not None:
        info["image_tokens"] = image_tokens
    return {**info, "profile": c.profile, "seed": c.seed, **extra}


def _clip_model(c: LMMConfig) -> str | None:

    if c.vision == "none":
        return None
    if c.vision == "random":
        return get_profile(c.profile).clip_model
    return load_config(resolve_run(c.vision, c.profile)).model


def train_lmm(
    cfg: LMMConfig,
    stage: str = "all",
    *,
    resume: bool = False,
    data_root: Path | str | None = None,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
) -> dict[str, dict[str, Any]]:
    """Run ``stage`` (``lm``, ``align``, ``sft`` or ``all``) of ``cfg``; return each stage's summary."""
    if stage not in (*STAGES, "all"):
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}, all")
    fns = {"lm": train_lm_stage, "align": train_align_stage, "sft": train_sft_stage}
    todo = STAGES if stage == "all" else (stage,)
    if todo != ("lm",):
        check_vision(cfg.vision, cfg.profile)  # an unknown run or one of another image size: before stage 0 trains
    out = {}
    with cpu_threads(cfg.resolved().threads):
        for s in todo:
            out[s] = fns[s](cfg, resume=resume, data_root=data_root, callbacks=callbacks)
    return out
