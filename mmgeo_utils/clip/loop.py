"""The pieces of the training loop of lesson 04: optimizer and schedule, precision, one step, the loader, CSV logs.

:func:`~mmgeo_utils.clip.train.train` strings them together; notebook 04 and ``mmgeo bench train`` use
them one by one.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.contrastive import HardNegativeDataset, StepBatchSampler, make_collate, normalize_images
from .config import TrainConfig
from .distributed import DistInfo, gather, gather_no_grad
from .evaluate import eval_workers


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's rule: no weight decay on gains, biases, embeddings' norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up then cosine decay to 0 (transformers' scheduler, a torch ``LambdaLR``).

    Warm-up matters here: a probe of a tiny CLIP from scratch collapsed to a constant loss
    without it.
    """
    from transformers import get_cosine_schedule_with_warmup  # local: transformers takes seconds to import

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def native_bf16() -> bool:
    """Whether this CUDA GPU computes in bf16 natively (Ampere, compute capability 8.0, and newer).

    ``torch.cuda.is_bf16_supported()`` alone also says True on older cards such as Colab's T4,
    where bf16 is emulated: slower matmuls and more memory than fp16. torch 2.4 added
    ``including_emulation``; on older releases the capability is asked directly.
    """
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4
        return torch.cuda.get_device_capability() >= (8, 0)


def resolve_precision(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32.

    ``auto``: bf16 on a CUDA GPU that has it natively, fp16 (with the GradScaler
    :func:`make_optimization` turns on for it) on older GPUs, fp32 elsewhere.
    """
    if precision == "auto":
        precision = "fp32" if device_type != "cuda" else "bf16" if native_bf16() else "fp16"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def encode_batch(model: nn.Module, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """One forward pass over positives *and* negatives; features split back into their roles.

    Images: the B positives and their B·K_i negatives go through the tower together (one call,
    so DDP sees one forward), likewise captions and their B·K_t text negatives.
    """
    image = normalize_images(batch["image"].to(device, non_blocking=True))  # uint8 from the loader: 4x fewer bytes
    text = batch["text"].to(device, non_blocking=True)
    b = image.shape[0]
    img_neg = normalize_images(batch["image_negatives"].to(device, non_blocking=True))
    txt_neg = batch["text_negatives"].to(device, non_blocking=True)
    k_i, k_t = img_neg.shape[1], txt_neg.shape[1]
    images = torch.cat([image, img_neg.flatten(0, 1)]) if k_i else image
    texts = torch.cat([text, txt_neg.flatten(0, 1)]) if k_t else text
    image_features, text_features, logit_scale = model(image=images, text=texts)[:3]
    out = {"image": image_features[:b], "text": text_features[:b], "logit_scale": logit_scale}
    if k_i:
        out["image_negatives"] = image_features[b:].view(b, k_i, -1)
        out["image_negative_mask"] = batch["image_negative_mask"].to(device)
    if k_t:
        out["text_negatives"] = text_features[b:].view(b, k_t, -1)
        out["text_negative_mask"] = batch["text_negative_mask"].to(device)
    return out


def gather_features(features: dict[str, Tensor], info: DistInfo) -> dict[str, Tensor]:
    """Every process's features, concatenated (gradients flow back to each process's slice)."""
    out = {}
    for key, value in features.items():
        if key == "logit_scale":
            out[key] = value
        elif value.dtype == torch.bool:
            out[key] = gather_no_grad(value, info)
        else:
            out[key] = gather(value, info)
    return out


def micro_batches(batch: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Split a batch into ``n`` equal micro-batches for gradient accumulation."""
    if n == 1:
        return [batch]
    b = batch["image"].shape[0]
    if b % n:
        raise ValueError(f"batch of {b} is not divisible into {n} accumulation steps")
    m = b // n
    return [{k: v[i * m : (i + 1) * m] for k, v in batch.items()} for i in range(n)]


def make_optimization(model: nn.Module, cfg: TrainConfig, device_type: str):
    """AdamW (open_clip's betas and eps), the schedule, a grad scaler (fp16 only) and the autocast dtype."""
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = cosine_with_warmup(optimizer, int(cfg.warmup * cfg.steps), cfg.steps)  # type: ignore[operator]
    amp_dtype = resolve_precision(cfg.precision, device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=amp_dtype == torch.float16)
    return optimizer, scheduler, scaler, amp_dtype


def make_loader(
    dataset: HardNegativeDataset,
    tokenizer,
    cfg: TrainConfig,
    *,
    start: int = 0,
    info: DistInfo | None = None,
    device_type: str = "cpu",
) -> torch.utils.data.DataLoader:
    """Batches of steps ``start..cfg.steps`` for this process: pre-rendered PNGs decoded in workers.

    Workers default to 1 on CPU (the second core trains) and, with CUDA, up to 8 with one core left to
    feed the GPU (:func:`~mmgeo_utils.clip.evaluate.eval_workers`: 1 on Colab's 2 vCPUs); memory is pinned on
    CUDA so host-to-device copies overlap compute. ``mmgeo bench train`` measures the share of
    step time spent waiting for data.
    """
    info = info or DistInfo()  # one process
    neighbours = dataset.neighbour_lists() if cfg.batching == "hard" else None
    sampler = StepBatchSampler(
        len(dataset),
        cfg.positives_per_step,
        cfg.steps,
        seed=cfg.seed,  # type: ignore[arg-type]
        start=start,
        batching=cfg.batching,
        neighbours=neighbours,
        rank=info.rank,
        world_size=info.world_size,
    )
    workers = cfg.workers if cfg.workers is not None else (eval_workers(device_type) if device_type == "cuda" else 1)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=make_collate(tokenizer),
        num_workers=workers,
        pin_memory=device_type == "cuda",
        prefetch_factor=4 if workers else None,
    )


def autocast_context(amp_dtype: torch.dtype | None, device_type: str):
    return (
        torch.autocast(device_type=device_type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )


def train_step(
    model, objective, optimizer, scheduler, scaler, batch, cfg: TrainConfig, info: DistInfo, dev: torch.device, autocast
) -> dict[str, float]:
    """One optimizer step over a (possibly accumulated) batch; returns the logged numbers."""
    parts: dict[str, float] = {}
    micro = micro_batches(batch, cfg.grad_accum)
    for i, mb in enumerate(micro):
        sync = i == len(micro) - 1
        no_sync = model.no_sync() if (info.enabled and not sync) else contextlib.nullcontext()
        with no_sync:
            with autocast:
                features = gather_features(encode_batch(model, mb, dev), info)
            losses = objective(**{k: (v.float() if v.is_floating_point() else v) for k, v in features.items()})
            scaler.scale(losses["loss"] / len(micro)).backward()
        for k, v in losses.items():
            parts[k] = parts.get(k, 0.0) + float(v.detach()) / len(micro)
    scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else float("inf"))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    base = unwrap(model)
    with torch.no_grad():
        base.logit_scale.clamp_(0, math.log(100))  # open_clip's clamp: temperature never below 0.01
    parts.update(
        lr=optimizer.param_groups[0]["lr"],
        logit_scale=float(base.logit_scale.detach().exp()),
        grad_norm=float(grad_norm),
    )
    return parts


# ----------------------------------------------------------------------------- logging


class CsvLog:
    """Append rows to a CSV file; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, fields: Sequence[str], keep_until: int | None = None):
        self.path, self.fields = path, list(fields)
        rows = []
        if keep_until is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def read_csv(path: Path | str):
    """A run's ``train_log.csv`` or ``eval_log.csv`` as a pandas DataFrame."""
    import pandas as pd  # local: only for reading a run's logs back

    return pd.read_csv(path)


TRAIN_FIELDS = (
    "step",
    "loss",
    "clip_loss",
    "contrastive_loss",
    "imc_loss",
    "cmr_loss",
    "lr",
    "logit_scale",
    "grad_norm",
    "images_per_s",
    "data_wait_share",
    "elapsed_s",
)
EVAL_FIELDS = ("step", "i2t_fine", "t2i_fine", "i2t_r1", "t2i_r1")
