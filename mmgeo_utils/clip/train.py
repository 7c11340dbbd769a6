"""Training CLIP and MMCLIP with open_clip: the loop of lesson 04 and ``mmgeo train-clip``.

One function, :func:`train`, runs every variant the course compares; they differ only in
:class:`TrainConfig`:

* ``loss``: ``clip`` (in-batch symmetric InfoNCE), ``negclip`` (in-batch plus each sample's own
  hard negatives as extra candidates), ``mmclip`` (in-batch CLIP *plus* the paper's per-anchor
  loss, one positive against only its own negatives, MMGeoLM §3.3 "IB+MM"), ``mmclip+imc_cmr``
  (that, plus CE-CLIP's intra-modal contrast and adaptive rank loss);
* ``negatives``: any subset of image, rule, retrieval, random; ``num_negatives`` K per sample;
* ``hard_weight``: for the ``mmclip`` losses, the weight of the hard-negative term added to
  in-batch CLIP (1 in the paper): the knob that trades fine-grained accuracy against retrieval;
* ``batching``: ``random``, or ``hard`` (batches of samples that are each other's retrieval
  neighbours, MMGeoLM Table 6);
* ``init``: start from an earlier run's weights (the paper's two-stage recipe: plain in-batch CLIP
  first, then hard negatives from that checkpoint).

**A fair budget.** ``images_per_step`` counts every image the vision tower encodes in a step,
negatives included: plain CLIP gets batches of ``images_per_step`` diagrams, a run with K image
negatives per sample gets ``images_per_step / (1 + K)`` positives. So a comparison at equal
``images_per_step`` and ``steps`` gives both models the same vision compute.

The loop is the standard one, written out because it is the lesson: AdamW without weight decay
on gains, biases and the logit scale (as open_clip), cosine schedule with linear warm-up, mixed
precision (bf16 autocast on GPUs that have it, fp16 with a grad scaler on older ones), gradient accumulation, gradient clipping, logit scale clamped
at 100, a tqdm bar with throughput, periodic validation, metrics to CSV, and checkpoints in
safetensors (:mod:`mmgeo_utils.clip.checkpoint`). Resuming restores model, optimizer, scheduler, loss
state and RNGs, and the batch order is a pure function of (seed, step)
(:class:`~mmgeo_utils.data.contrastive.StepBatchSampler`), so an interrupted run that resumes
ends with the same weights as one that never stopped.

Its parts: the recipe in :mod:`~mmgeo_utils.clip.config`, the loss in :mod:`~mmgeo_utils.clip.objective`,
the pieces of the loop in :mod:`~mmgeo_utils.clip.loop`, the run folder's rules in
:mod:`~mmgeo_utils.clip.run_folder`; this module runs them.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.build import build_dataset
from ..data.config import DatasetConfig
from ..data.contrastive import HardNegativeDataset, default_transform
from ..data.read import verify_dataset
from ..profiles import get_profile
from ..repro import atomic_write_text, check_device, cpu_threads, provenance, seed_everything
from .checkpoint import load_training_state, save_model, save_training_state
from .config import TrainConfig, default_run_dir
from .distributed import DistInfo, barrier, init_distributed
from .evaluate import evaluate_clip, headline
from .loop import EVAL_FIELDS, TRAIN_FIELDS, CsvLog, autocast_context, make_loader, make_optimization, train_step
from .models import create_clip, get_tokenizer
from .objective import ContrastiveObjective
from .run_folder import (
    MODEL_FILE,
    STATE_FILE,
    _check_same_config,
    _check_same_data,
    _check_writable,
    _claim_run_dir,
    _data_record,
    load_init,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a run lives and what it did."""

    run_dir: Path
    config: TrainConfig
    steps_done: int
    resumed_from: int = 0
    wall_time_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL_FILE


def dataset_root(cfg: TrainConfig, progress: bool = False, verify: str = "once") -> Path:
    """The (cached) dataset a run trains and is evaluated on: the profile's, built with ``data_seed``.

    By default checked once per process (``verify="once"``): every later run of the same process reuses
    the check while the dataset's manifest is unchanged; ``quick`` or ``full`` check every call.
    """
    data = DatasetConfig.from_profile(cfg.profile, seed=cfg.data_seed, numeric_marks=cfg.numeric_marks)  # type: ignore[arg-type]
    return build_dataset(data, progress=progress, verify=verify)


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite: training stops instead of saving a broken model."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a callback's ``KeyboardInterrupt``) stopped a run; the message says what was saved."""


def train(
    config: TrainConfig,
    *,
    out_dir: Path | str | None = None,
    resume: bool = False,
    data_root: Path | str | None = None,
    device: str | None = None,
    progress: bool = True,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
    overwrite: bool = False,
    verify: str = "once",
) -> TrainResult:
    """Train one model; return where its weights and logs are.

    ``resume=True`` continues the run in ``out_dir`` from its last checkpoint (a finished run
    returns at once); without it an existing run is an error, so a run is never overwritten by
    accident, and a folder holding anything but this run is refused unless ``overwrite=True``
    (see :func:`_claim_run_dir`). The data is checked first (``verify``: ``quick`` compares sizes
    and metadata hashes, ``full`` re-hashes every image, ``once`` is ``quick`` unless this process
    already checked the same build), also a ``data_root`` given explicitly; its
    fingerprint goes into ``config.json`` and a resume on other data is refused.

    ``callbacks`` get ``(step, record)`` after every step (the resume tests interrupt a run from
    one). Interrupts keep resume exact: Ctrl-C lets the step in progress finish, then checkpoints
    that step and raises :class:`TrainingInterrupted`; a ``KeyboardInterrupt`` raised *inside* a
    step (a second Ctrl-C) leaves weights, BatchNorm statistics and optimizer half-updated, so
    nothing is saved for it and ``--resume`` continues from the last periodic checkpoint. A
    non-finite loss or weight stops the run with :class:`TrainingDiverged`, before any
    ``model.safetensors`` is written. The run uses ``config.threads`` CPU threads (the process's
    count is restored afterwards).
    """
    with cpu_threads(config.resolved().threads):
        return _train(
            config,
            out_dir=out_dir,
            resume=resume,
            data_root=data_root,
            device=device,
            progress=progress,
            callbacks=callbacks,
            overwrite=overwrite,
            verify=verify,
        )


class _StepGuard:
    """Defers Ctrl-C that arrives while a step changes the model's state until that step is done.

    Installed only in the main thread of a single-process run whose SIGINT handler is Python's
    default (a notebook kernel or a test runner with its own keeps it); a second Ctrl-C stops at once.
    """

    def __init__(self, enabled: bool):
        self.in_step = self.pending = False
        self._signal = signal
        self._previous = None
        if (
            enabled
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.in_step and not self.pending:
            self.pending = True
            log.warning(
                "Ctrl-C: finishing this step, then saving a checkpoint (Ctrl-C again stops at once, without one)"
            )
            return
        raise KeyboardInterrupt

    def close(self) -> None:
        if self._previous is not None:
            self._signal.signal(self._signal.SIGINT, self._previous)
            self._previous = None


def _check_finite_weights(model: nn.Module, step: int, cfg: TrainConfig) -> None:
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDiverged(
            f"training diverged: {len(bad)} weight tensor(s) hold NaN or inf after step {step} "
            f"(first {bad[0]}); {_divergence_hint(cfg)}"
        )


def _divergence_hint(cfg: TrainConfig) -> str:
    return (
        f"the usual cause is a learning rate or hard-negative weight too large for this model (lr {cfg.lr:g}, "
        f"hard_weight {cfg.hard_weight:g}; --lr, --hard-weight); no {MODEL_FILE} was written"
    )


def _train(
    config: TrainConfig,
    *,
    out_dir: Path | str | None,
    resume: bool,
    data_root: Path | str | None,
    device: str | None,
    progress: bool,
    callbacks: Iterable[Callable[[int, dict], None]],
    overwrite: bool,
    verify: str,
) -> TrainResult:
    cfg = config.resolved()
    device_type = check_device(device)
    info = init_distributed(device_type)
    dev = torch.device(f"cuda:{info.local_rank}" if device_type == "cuda" else device_type)
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    state_path, summary_path = run_dir / STATE_FILE, run_dir / "summary.json"

    claim = _claim_run_dir(run_dir, cfg, resume, overwrite)
    if claim == "finished":
        return _finished_run(run_dir, cfg)
    if info.is_main:
        _check_writable(run_dir)

    root = _training_data(cfg, data_root, verify, progress and info.is_main)
    data = _data_record(root)

    seed_everything(cfg.seed)
    model = _create_model(cfg, dev)
    objective = ContrastiveObjective(cfg.loss, cfg.hard_weight).to(dev)
    tokenizer = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]

    negatives = cfg.negative_config()
    dataset = HardNegativeDataset(root, "train", negatives, transform=default_transform(normalize=False))
    batch = cfg.positives_per_step
    if batch % (info.world_size * cfg.grad_accum):
        raise ValueError(
            f"{batch} positives per step do not split over {info.world_size} processes × "
            f"{cfg.grad_accum} accumulation steps"
        )

    optimizer, scheduler, scaler, amp_dtype = make_optimization(model, cfg, device_type)
    start = _start_step(
        claim,
        run_dir,
        cfg,
        data,
        info,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        objective=objective,
        scaler=scaler,
    )
    train_model, model = _for_processes(model, info, device_type)
    loader = make_loader(dataset, tokenizer, cfg, start=start, info=info, device_type=device_type)
    thetas = theta_fields(cfg)
    train_log, eval_log = _open_logs(run_dir, start, info, thetas)

    images_per_step = batch * (1 + negatives.image_slots)
    bar = tqdm(
        total=cfg.steps, initial=start, desc=cfg.run_name(), unit="step", disable=not (progress and info.is_main)
    )
    step, t_run, wait_total, compute_total = start, time.perf_counter(), 0.0, 0.0
    saved = start or None  # the step of the newest checkpoint on disk
    at_boundary = True  # False while a step is changing weights, BatchNorm statistics, optimizer and RNG
    # several processes would stop at different steps and wait for each other at the checkpoint's barrier
    guard = _StepGuard(enabled=not info.enabled)
    autocast = autocast_context(amp_dtype, device_type)
    try:
        it = iter(loader)
        while step < cfg.steps:  # type: ignore[operator]
            t0 = time.perf_counter()
            batch_data = next(it)
            t1 = time.perf_counter()
            at_boundary, guard.in_step = False, True
            record = train_step(
                train_model, objective, optimizer, scheduler, scaler, batch_data, cfg, info, dev, autocast
            )
            if device_type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            step += 1
            at_boundary, guard.in_step = True, False
            if not math.isfinite(record["loss"]):
                raise TrainingDiverged(
                    f"training diverged: the loss is {record['loss']} at step {step}; " + _divergence_hint(cfg)
                )
            wait_total, compute_total = wait_total + (t1 - t0), compute_total + (t2 - t1)
            for k, name in enumerate(thetas):  # the loss numbers its thresholds; the log names them by slot
                record[name] = record.pop(f"cmr_theta_{k}", math.nan)
            record.update(
                step=step,
                images_per_s=images_per_step / max(t2 - t0, 1e-9),
                data_wait_share=(t1 - t0) / max(t2 - t0, 1e-9),
                elapsed_s=time.perf_counter() - t_run,
            )
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.0f}")
            if train_log is not None and (step % cfg.log_every == 0 or step in (1, cfg.steps)):
                train_log.write(record)
            if step % cfg.eval_every == 0 or step == cfg.steps:  # type: ignore[operator]
                if info.is_main and eval_log is not None:
                    eval_log.write({"step": step, **_validate(model, tokenizer, root, cfg, dev)})
                barrier(info)
            for cb in callbacks:
                cb(step, record)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:  # type: ignore[operator]
                _check_finite_weights(model, step, cfg)
                _checkpoint(state_path, model, optimizer, scheduler, objective, scaler, step, info)
                saved = step
            if guard.pending and step < cfg.steps:  # type: ignore[operator]
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if not at_boundary:
            message = _interrupted_inside_step(step, saved, cfg)
        elif step > start and not info.enabled:
            _check_finite_weights(model, step, cfg)
            _checkpoint(state_path, model, optimizer, scheduler, objective, scaler, step, info)
            message = f"interrupted at step {step} of {cfg.steps}: checkpoint saved in {run_dir}; {_RESUME_HINT}"
        else:
            message = f"interrupted at step {step} of {cfg.steps}; {_RESUME_HINT}" + (
                f" from the checkpoint of step {saved}" if saved else ""
            )
        raise TrainingInterrupted(message) from None
    finally:
        guard.close()
        bar.close()

    wall = time.perf_counter() - t_run
    _check_finite_weights(model, step, cfg)
    _checkpoint(state_path, model, optimizer, scheduler, objective, scaler, step, info)
    summary: dict[str, Any] = {}
    if info.is_main:
        save_model(run_dir / MODEL_FILE, model, metadata={"model": str(cfg.model), "run": cfg.run_name()})
        summary = {
            "steps": step,
            "positives_per_step": batch,
            "images_per_step": images_per_step,
            "world_size": info.world_size,
            "resumed_from": start,
            "data_wait_share": wait_total / max(wait_total + compute_total, 1e-9),
            "images_per_s": images_per_step * (step - start) / max(wait_total + compute_total, 1e-9),
            **provenance(cfg.profile, cfg.seed, wall),
        }
        atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    barrier(info)
    return TrainResult(run_dir, cfg, step, start, wall, summary)


def _finished_run(run_dir: Path, cfg: TrainConfig) -> TrainResult:
    """A run that ``resume`` finds finished: its config is checked, nothing is trained."""
    _check_same_config(run_dir, cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    return TrainResult(run_dir, cfg, summary["steps"], summary["steps"], 0.0, summary)


def _training_data(cfg: TrainConfig, data_root: Path | str | None, verify: str, progress: bool) -> Path:
    """The dataset's root: ``data_root`` checked against its own manifest, or the profile's (built if need be)."""
    if data_root is not None:
        return verify_dataset(data_root, "quick" if verify == "once" else verify)
    return dataset_root(cfg, progress, verify=verify)


def _create_model(cfg: TrainConfig, dev: torch.device) -> nn.Module:
    """The open_clip model of ``cfg`` on ``dev``: from scratch, pretrained or ``--init`` weights."""
    model = create_clip(
        cfg.model,
        cfg.pretrained,
        image_size=get_profile(cfg.profile).image_size,  # type: ignore[arg-type]
        temperature=cfg.temperature,
        context_length=get_profile(cfg.profile).context_length,
        device=dev,
    )
    if cfg.init:
        load_init(model, cfg.init)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _start_step(claim: str, run_dir: Path, cfg: TrainConfig, data: dict[str, Any], info: DistInfo, **state: Any) -> int:
    """The step a run starts at: a resume's checkpoint (config and data checked first, ``state`` restored),
    else 0, with the run's ``config.json`` written."""
    if claim == "resume":
        _check_same_config(run_dir, cfg)
        _check_same_data(run_dir, data)
        start = load_training_state(run_dir / STATE_FILE, **state)["step"]
        log.info("resuming %s at step %d of %d", run_dir, start, cfg.steps)
        return start
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps({**cfg.to_dict(), "data": data}, indent=2) + "\n")
    return 0


def _for_processes(model: nn.Module, info: DistInfo, device_type: str) -> tuple[nn.Module, nn.Module]:
    """``(the module that trains, the model whose weights are saved)``: ``model`` twice in one process."""
    train_model: nn.Module = model
    if info.enabled and device_type == "cuda":
        # BatchNorm statistics over the global batch (open_clip's --use-bn-sync); gloo on CPU
        # has no SyncBatchNorm, so there each process normalises its own share
        train_model = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device_type == "cuda" else None
        )
    return train_model, model


def theta_fields(cfg: TrainConfig) -> list[str]:
    """The train log's columns of CE-CLIP's adaptive thresholds θ_k (``mmclip+imc_cmr`` runs only): one per
    text-negative slot, named by it (``theta_rule:label`` ... ``theta_rule:number``), in slot order."""
    if cfg.loss != "mmclip+imc_cmr":
        return []
    return [f"theta_{slot}" for slot in cfg.negative_config().text_slots]


def _open_logs(
    run_dir: Path, start: int, info: DistInfo, extra_fields: Sequence[str] = ()
) -> tuple[CsvLog | None, CsvLog | None]:
    """The main process's train and eval CSV logs; a resume drops their rows after ``start``."""
    if not info.is_main:
        return None, None
    cut = TRAIN_FIELDS.index("images_per_s")  # the timings stay the last columns
    fields = (*TRAIN_FIELDS[:cut], *extra_fields, *TRAIN_FIELDS[cut:])
    train_log = CsvLog(run_dir / "train_log.csv", fields, keep_until=start if start else None)
    eval_log = CsvLog(run_dir / "eval_log.csv", EVAL_FIELDS, keep_until=start if start else None)
    return train_log, eval_log


_RESUME_HINT = "rerun the same command with --resume (resume=True) to continue"


def _interrupted_inside_step(step: int, saved: int | None, cfg: TrainConfig) -> str:
    where = f"the checkpoint of step {saved}" if saved else "the start: no checkpoint was reached yet"
    return (
        f"interrupted inside step {step + 1} of {cfg.steps}: its weights and optimizer were half "
        f"updated, so nothing was saved for it; {_RESUME_HINT} from {where}"
    )


def _validate(model: nn.Module, tokenizer, root: Path, cfg: TrainConfig, dev: torch.device) -> dict[str, float]:
    result = evaluate_clip(
        model,
        tokenizer,
        root,
        split="val",
        image_size=get_profile(cfg.profile).image_size,
        variants=("clean",),
        max_samples=cfg.eval_samples,
        device=dev,
    )
    h = headline(result)
    return {k: h[k] for k in EVAL_FIELDS if k != "step"}


def _checkpoint(path: Path, model, optimizer, scheduler, objective, scaler, step: int, info: DistInfo) -> None:
    if info.is_main:
        save_training_state(
            path, model=model, optimizer=optimizer, scheduler=scheduler, step=step, objective=objective, scaler=scaler
        )
    barrier(info)
