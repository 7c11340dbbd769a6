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

Every stage uses :func:`_fit`: batches are a pure function of (seed, step)
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

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..clip.checkpoint import CheckpointError, load_training_state, save_training_state
from ..profiles import LMMSizes, get_lmm_sizes, get_profile
from ..repro import atomic_write_text, cpu_threads, provenance, seed_everything
from . import data as D
from .balance import QA_VERSION, YesNoSelection, balanced_rows
from .language_model import build_lm, load_lm, quiet
from .projector import Projector
from .tokenizer import image_token_id, load_tokenizer, train_tokenizer
from .vision_language_model import GeometryLMM, save_lmm
from .vision_tower import TOKEN_GRIDS, check_vision, load_vision_tower, resolve_run, token_shape

log = logging.getLogger(__name__)

STAGES = ("lm", "align", "sft")
STATE_FILE, SUMMARY_FILE, CONFIG_FILE, LOG_FILE = "state.safetensors", "summary.json", "config.json", "train_log.csv"


@dataclass(frozen=True)
class LMMConfig:
    """One LMM of lesson 06. ``None`` sizes take the profile's (:data:`~mmgeo_utils.profiles.LMM_SIZES`)."""

    profile: str = "cpu"
    vision: str = "none"  # a run of mmgeo train-clip (name under runs/<profile>/ or folder), random, none
    lora_r: int | None = None
    full: bool = False  # full fine-tuning of the LM in sft instead of LoRA
    seed: int = 0  # LM init, projector init, random tower, batch order
    data_seed: int = 0
    token_grid: str | None = None
    lm: str | None = None  # hub name or LM folder (default: the profile's; None builds one from config)
    lm_steps: int | None = None
    align_steps: int | None = None
    sft_steps: int | None = None
    batch_size: int | None = None
    train_scenes: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        get_profile(self.profile)
        if self.token_grid is not None and self.token_grid not in TOKEN_GRIDS:
            raise ValueError(f"unknown token grid {self.token_grid!r}; known: {', '.join(TOKEN_GRIDS)}")
        if self.full and self.lora_r is not None:
            raise ValueError("--full fine-tunes the whole LM; --lora-r sets a LoRA rank: give one of them")
        for name in ("lora_r", "lm_steps", "align_steps", "sft_steps", "batch_size", "train_scenes", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (0 if name.endswith("_steps") else 1)):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.vision:
            raise ValueError("vision must name a run of mmgeo train-clip, 'random' or 'none'")

    @property
    def sizes(self) -> LMMSizes:
        return get_lmm_sizes(self.profile)

    def resolved(self) -> LMMConfig:
        s = self.sizes
        return dataclasses.replace(
            self,
            lora_r=None if self.full else (self.lora_r or s.lora_r),
            lm=self.lm or s.lm,
            token_grid=self.token_grid or s.token_grid,
            lm_steps=s.lm_steps if self.lm_steps is None else self.lm_steps,
            align_steps=s.align_steps if self.align_steps is None else self.align_steps,
            sft_steps=s.sft_steps if self.sft_steps is None else self.sft_steps,
            batch_size=self.batch_size or s.batch_size,
            train_scenes=min(self.train_scenes or s.train_scenes, get_profile(self.profile).n_train),
            threads=self.threads or get_profile(self.profile).train_threads,
        )

    @property
    def blind(self) -> bool:
        return self.vision == "none"

    def tower_name(self) -> str:
        if self.vision in ("none", "random"):
            return {"none": "blind", "random": "random"}[self.vision]
        return resolve_run(self.vision, self.profile).name

    def stage_config(self, stage: str) -> dict[str, Any]:
        """What a stage's result depends on: compared on ``--resume``."""
        c = self.resolved()
        common = {
            "profile": c.profile,
            "seed": c.seed,
            "data_seed": c.data_seed,
            "qa_version": QA_VERSION,
            "lm": c.lm,
            "train_scenes": c.train_scenes,
            "batch_size": c.batch_size,
            "lm_steps": c.lm_steps,
        }
        if stage == "lm":
            return common
        common.update(vision=c.vision, tower=self.tower_name(), token_grid=c.token_grid, align_steps=c.align_steps)
        if stage == "align":
            return common
        return {**common, "sft_steps": c.sft_steps, "lora_r": c.lora_r, "full": c.full}


def lmm_root(profile: str) -> Path:
    from ..clip import runs_root

    return runs_root() / get_profile(profile).name / "lmm"


def stage_dir(cfg: LMMConfig, stage: str) -> Path:
    """Where a stage of ``cfg`` lives (sizes that differ from the profile's go into the name)."""
    c, s = cfg.resolved(), cfg.sizes
    size = "".join(
        f"-{k}{v}"
        for k, v, d in (
            ("steps", c.lm_steps, s.lm_steps),
            ("n", c.train_scenes, s.train_scenes),
            ("b", c.batch_size, s.batch_size),
            ("data", c.data_seed, 0),
        )
        if v != d and not (k == "n" and v == get_profile(c.profile).n_train and d > v)
    )
    qa = f"-qa{QA_VERSION}"  # another selection of questions trains other weights: another folder
    lm_name = f"lm{size}{qa}-s{c.seed}" if not c.lm else f"hub-{Path(c.lm).name}{size}{qa}-s{c.seed}"
    if stage == "lm":
        return lmm_root(c.profile) / lm_name
    grid = "" if c.blind else f"-{c.token_grid}"
    extra = "".join(
        f"-{k}{v}" for k, v, d in (("align", c.align_steps, s.align_steps), ("sft", c.sft_steps, s.sft_steps)) if v != d
    )
    cond = lmm_root(c.profile) / lm_name / f"{cfg.tower_name()}{grid}{extra}"
    return cond / ("align" if stage == "align" else ("sft-full" if c.full else f"sft-lora{c.lora_r}"))


# ----------------------------------------------------------------------------- one loop for every stage


def _dist():
    """This process's place under torchrun (one process without it) and its device."""
    from ..clip.distributed import init_distributed
    from ..repro import detect_device

    device_type = "cuda" if detect_device() == "cuda" else "cpu"
    info = init_distributed(device_type)
    return info, torch.device(f"cuda:{info.local_rank}" if device_type == "cuda" else "cpu")


def _fit(
    model: GeometryLMM,
    params: list[nn.Parameter],
    examples: list[D.Example],
    features: dict[str, torch.Tensor] | None,
    *,
    steps: int,
    lr: float,
    cfg: LMMConfig,
    run_dir: Path,
    resume: bool,
    pad_id: int,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
) -> dict[str, Any]:
    """AdamW with warm-up and cosine decay over ``steps`` batches of ``examples``; checkpointed.

    Under torchrun each process takes its slice of the global batch and DDP averages gradients. The
    loss is the *sum* of answer-token cross-entropies over the global batch divided by the global
    number of answer tokens (transformers' ``num_items_in_batch``), so N processes compute the loss one
    process computes on the whole batch, not a mean of per-process means over unequal token counts.
    """
    import torch.distributed as dist

    from ..clip import CsvLog, cosine_with_warmup
    from ..clip.distributed import barrier
    from ..data.contrastive import StepBatchSampler

    c = cfg.resolved()
    info, dev = _dist()
    model.to(dev)
    state_path = run_dir / STATE_FILE
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = cosine_with_warmup(optimizer, max(1, steps // 20), max(1, steps))
    start = 0
    if resume and state_path.exists():
        start = load_training_state(state_path, model=model, optimizer=optimizer, scheduler=scheduler)["step"]
    batch_size = min(c.batch_size, len(examples))  # type: ignore[type-var]
    batch_size -= batch_size % info.world_size
    sampler = StepBatchSampler(
        len(examples), batch_size, steps, seed=c.seed, start=start, rank=info.rank, world_size=info.world_size
    )
    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if dev.type == "cuda" else None
        )
    logf = (
        CsvLog(
            run_dir / LOG_FILE,
            ("step", "loss", "lr", "samples_per_s", "tokens_per_s", "elapsed_s"),
            keep_until=start if start else None,
        )
        if info.is_main
        else None
    )

    def checkpoint(at: int) -> None:
        if info.is_main:
            save_training_state(state_path, model=model, optimizer=optimizer, scheduler=scheduler, step=at)
        barrier(info)

    every = max(1, steps // 5)
    model.train()
    step, t0, tokens, samples = start, time.perf_counter(), 0, 0
    try:
        for idx in sampler:
            t1 = time.perf_counter()
            batch = D.collate([examples[i] for i in idx], pad_id, features)
            ids, mask, labels = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels"))
            feats = None if batch["features"] is None else {k: v.to(dev) for k, v in batch["features"].items()}
            n_items = (labels[:, 1:] != D.IGNORE_INDEX).sum()
            if info.enabled:
                dist.all_reduce(n_items)
            out = train_model(ids, mask, labels, feats, num_items_in_batch=n_items)
            (out.loss * info.world_size).backward()  # DDP averages over processes; the loss is a global sum
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            loss = out.loss.detach()
            if info.enabled:
                dist.all_reduce(loss)
            n_tok = int(mask.sum()) * info.world_size
            tokens, samples = tokens + n_tok, samples + len(idx) * info.world_size
            dt = max(time.perf_counter() - t1, 1e-9)
            record = {
                "step": step,
                "loss": float(loss),
                "lr": optimizer.param_groups[0]["lr"],
                "samples_per_s": len(idx) * info.world_size / dt,
                "tokens_per_s": n_tok / dt,
                "elapsed_s": time.perf_counter() - t0,
            }
            if logf is not None:
                logf.write(record)
            for cb in callbacks:
                cb(step, record)
            if step % every == 0 and step < steps:
                checkpoint(step)
    except KeyboardInterrupt:
        if step > start and info.is_main:
            save_training_state(state_path, model=model, optimizer=optimizer, scheduler=scheduler, step=step)
        raise
    wall = time.perf_counter() - t0
    checkpoint(step)
    return {
        "steps": step,
        "resumed_from": start,
        "examples": len(examples),
        "world_size": info.world_size,
        "samples_per_s": samples / max(wall, 1e-9),
        "tokens_per_s": tokens / max(wall, 1e-9),
        "wall_time_s": wall,
    }


def _begin(cfg: LMMConfig, stage: str, resume: bool) -> tuple[Path, dict | None]:
    """The stage folder, and its summary when the stage is already finished (then it is reused)."""
    run_dir = stage_dir(cfg, stage)
    want = cfg.stage_config(stage)
    saved = run_dir / CONFIG_FILE
    if saved.exists():
        have = json.loads(saved.read_text())
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            raise CheckpointError(
                f"cannot resume {run_dir}: its config differs in "
                + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items())
            )
        if (run_dir / SUMMARY_FILE).exists():
            return run_dir, json.loads((run_dir / SUMMARY_FILE).read_text())
        if (run_dir / STATE_FILE).exists() and not resume:
            raise FileExistsError(f"{run_dir} holds an unfinished {stage} stage; pass --resume to continue it")
    info, _ = _dist()
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(want, indent=2) + "\n")
    return run_dir, None


def _finish(run_dir: Path, cfg: LMMConfig, summary: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Write the stage's summary (the main process; the others wait for its files)."""
    from ..clip.distributed import barrier

    c = cfg.resolved()
    info, _ = _dist()
    summary = {**summary, **extra, **provenance(c.profile, c.seed, summary.get("wall_time_s"))}
    if info.is_main:
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    barrier(info)
    return summary


def _is_main() -> bool:
    return _dist()[0].is_main


def dataset_rows(cfg: LMMConfig, split: str, data_root: Path | str | None = None) -> tuple[Path, list[dict]]:
    """The dataset folder and the split's rows (train: the first ``train_scenes``), yes/no balanced."""
    root, rows, _ = selected_rows(cfg, split, data_root)
    return root, rows


def selected_rows(
    cfg: LMMConfig, split: str, data_root: Path | str | None = None
) -> tuple[Path, list[dict], YesNoSelection]:
    """:func:`dataset_rows` and the yes/no selection that cut its questions (what was dropped, per relation)."""
    from ..data import DatasetConfig, build_dataset, load_split

    # the positives-only build: the same diagrams, captions and questions as the encoders' dataset (a
    # sample is a function of (seed, split, index) alone), without the hard negatives the LMM never reads
    config = DatasetConfig.from_profile(cfg.profile, seed=cfg.data_seed, negatives=False)
    root = Path(data_root) if data_root else build_dataset(config, progress=False)
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
    run_dir, done = _begin(cfg, "lm", resume)
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
    from ..clip.distributed import barrier

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
    from ..clip.distributed import barrier

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
    run_dir, done = _begin(cfg, "align", resume)
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
    from safetensors.torch import save_file

    if _is_main():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in projector.state_dict().items()},
            str(run_dir / "projector.safetensors"),
        )
    return _finish(
        run_dir, cfg, summary, feature_cache_hit=hit, image_tokens=n_tok, token_width=width, token_grid=tower.token_grid
    )


def add_lora(lm: nn.Module, r: int) -> nn.Module:
    """peft LoRA on every linear layer of the LM (q, k, v, o and the MLP's; not the tied output head)."""
    from peft import LoraConfig, get_peft_model

    with quiet():
        return get_peft_model(
            lm, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        )


def build_sft_model(cfg: LMMConfig, tok, n_tok: int, width: int, grid: str) -> tuple[GeometryLMM, list[nn.Parameter]]:
    """The stage-2 model from stages 0-1, and what trains: LoRA (or the LM with ``full``) + the projector."""
    from safetensors.torch import load_file

    c = cfg.resolved()
    lm = load_lm(stage_dir(cfg, "lm") / "lm", tok)
    if c.full:
        lm.requires_grad_(True)
    else:
        lm = add_lora(lm, c.lora_r)  # type: ignore[arg-type]  # freezes the base LM
    projector = None
    if not c.blind:
        projector = Projector(width, lm.get_input_embeddings().embedding_dim)
        projector.load_state_dict(load_file(str(stage_dir(cfg, "align") / "projector.safetensors")))
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
    run_dir, done = _begin(cfg, "sft", resume)
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
    info = {
        "vision": c.vision,
        "tower": cfg.tower_name(),
        "image_size": get_profile(c.profile).image_size,
        "clip_model": _clip_model(c),
        "image_tokens": n_tok,
        "profile": c.profile,
        "seed": c.seed,
    }
    if _is_main():
        save_lmm(model.cpu(), run_dir / "model", tok, info)
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


def _clip_model(c: LMMConfig) -> str | None:
    from ..clip import load_config

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
