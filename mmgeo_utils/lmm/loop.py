"""One training loop for every stage of the LMM (``_fit``): seeded batches, AdamW with warm-up, checkpoints that
resume bit for bit, one process or torchrun; and how a stage's folder is begun and finished."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..clip import CsvLog, cosine_with_warmup
from ..clip.checkpoint import CheckpointError, load_training_state, save_training_state
from ..clip.distributed import barrier, init_distributed
from ..clip.loop import autocast_context
from ..data import split_fingerprint
from ..data.contrastive import StepBatchSampler
from ..repro import atomic_write_text, detect_device, provenance
from . import data as D
from .config import LMMConfig, stage_dir

STATE_FILE, SUMMARY_FILE, CONFIG_FILE, LOG_FILE = "state.safetensors", "summary.json", "config.json", "train_log.csv"


def _dist():
    """This process's place under torchrun (one process without it) and its device."""
    device_type = "cuda" if detect_device() == "cuda" else "cpu"
    info = init_distributed(device_type)
    return info, torch.device(f"cuda:{info.local_rank}" if device_type == "cuda" else "cpu")


def lm_step_loss(model: nn.Module, batch: dict, dev: torch.device, info) -> tuple[torch.Tensor, int]:
    """The LM loss of one batch: the *sum* of target-token cross-entropies over the global batch divided
    by the global number of target tokens (transformers' ``num_items_in_batch``), so N processes compute
    the loss one process computes on the whole batch, not a mean of per-process means over unequal token
    counts. Returns the loss and this process's token count."""
    ids, mask, labels = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels"))
    feats = None if batch["features"] is None else {k: v.to(dev) for k, v in batch["features"].items()}
    n_items = (labels[:, 1:] != D.IGNORE_INDEX).sum()
    if info.enabled:
        dist.all_reduce(n_items)
    return model(ids, mask, labels, feats, num_items_in_batch=n_items).loss, int(mask.sum())


StepLoss = Callable[[nn.Module, dict, torch.device, Any], tuple[torch.Tensor, int]]
Collate = Callable[[Sequence[Any], int, Any], dict]


def _fit(
    model: nn.Module,
    params: list[nn.Parameter],
    examples: Sequence[Any],
    features: dict[str, torch.Tensor] | None,
    *,
    steps: int,
    lr: float,
    cfg: LMMConfig,
    run_dir: Path,
    resume: bool,
    pad_id: int,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
    collate: Collate = D.collate,
    step_loss: StepLoss = lm_step_loss,
) -> dict[str, Any]:
    """AdamW with warm-up and cosine decay over ``steps`` batches of ``examples``; checkpointed.

    Under torchrun each process takes its slice of the global batch and DDP averages gradients.
    ``collate`` turns a batch of examples into tensors and ``step_loss`` scores it (default: lesson 06's
    LM loss, :func:`lm_step_loss`; lesson 07's embedding objectives bring their own).
    """

    c = cfg.resolved()
    info, dev = _dist()
    model.to(dev)
    state_path = run_dir / STATE_FILE
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = cosine_with_warmup(optimizer, max(1, steps // 20), max(1, steps))
    amp_dtype = c.amp_dtype(dev.type)  # as lesson 04's CLIP loop: bf16, or fp16 with a grad scaler, or fp32
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    autocast = autocast_context(amp_dtype, dev.type)
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    start = 0
    if resume and state_path.exists():
        start = load_training_state(state_path, **state)["step"]
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
            save_training_state(state_path, **state, step=at)
        barrier(info)

    every = max(1, steps // 5)
    model.train()
    step, t0, tokens, samples = start, time.perf_counter(), 0, 0
    try:
        for idx in sampler:
            t1 = time.perf_counter()
            batch = collate([examples[i] for i in idx], pad_id, features)
            with autocast:
                loss, n_tok = step_loss(train_model, batch, dev, info)
            scaler.scale(loss * info.world_size).backward()  # DDP averages over processes; the loss is a global sum
            scaler.unscale_(optimizer)  # clip the true gradients (no-ops unless fp16)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            loss = loss.detach()
            if info.enabled:
                dist.all_reduce(loss)
            n_tok *= info.world_size
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
            save_training_state(state_path, **state, step=step)
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


def _begin(
    cfg: LMMConfig,
    stage: str,
    resume: bool,
    data_root: Path,
    *,
    run_dir: Path | None = None,
    extra: dict[str, Any] | None = None,
    label: str | None = None,
) -> tuple[Path, dict | None]:
    """The stage folder, and its summary when the stage is already finished (then it is reused).

    The saved config holds the training split's fingerprint, so a stage trained on another build (another
    generator version, another seed, a ``--data`` folder) is neither resumed nor reused. Stages built on
    lesson 06's (lesson 07's) pass their own ``run_dir``, what else their result depends on (``extra``) and
    the name messages use (``label``).
    """
    run_dir = run_dir or stage_dir(cfg, stage)
    want = {**cfg.stage_config(stage), **(extra or {}), "data": split_fingerprint(data_root, "train")}
    saved = run_dir / CONFIG_FILE
    if saved.exists():
        have = json.loads(saved.read_text())
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            hint = " (it was trained on another dataset build)" if "data" in diff else ""
            raise CheckpointError(
                f"cannot resume or reuse {run_dir}{hint}: its config differs in "
                + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items())
                + "; remove that folder to train it again"
            )
        if (run_dir / SUMMARY_FILE).exists():
            return run_dir, json.loads((run_dir / SUMMARY_FILE).read_text())
        if (run_dir / STATE_FILE).exists() and not resume:
            raise FileExistsError(f"{run_dir} holds an unfinished {label or stage} stage; pass --resume to continue it")
    info, _ = _dist()
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(want, indent=2) + "\n")
    return run_dir, None


def _finish(run_dir: Path, cfg: LMMConfig, summary: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Write the stage's summary (the main process; the others wait for its files)."""

    c = cfg.resolved()
    info, _ = _dist()
    summary = {**summary, **extra, **provenance(c.profile, c.seed, summary.get("wall_time_s"))}
    if info.is_main:
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    barrier(info)
    return summary


def _is_main() -> bool:
    return _dist()[0].is_main
