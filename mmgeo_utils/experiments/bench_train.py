"""``mmgeo bench train``: images per second of a CLIP and an MMCLIP training step at the profile's sizes, the
share of the step spent waiting for data, and what the hard-negative loss itself costs (lesson 04)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..clip import ContrastiveObjective, autocast_context, encode_batch, make_loader, make_optimization, train_step
from ..clip.distributed import DistInfo
from ..clip.models import create_clip, get_tokenizer
from ..data.contrastive import HardNegativeDataset, default_transform
from ..profiles import Profile, get_profile
from ..repro import check_device, seed_everything, write_results
from .bench import _positive, _training_data
from .comparison import comparison_configs


def bench_train(
    profile: Profile | str | None = None,
    steps: int | None = None,
    warmup: int = 3,
    device: str | None = None,
    data_root: Path | str | None = None,
) -> dict[str, Any]:
    """``mmgeo bench train``: what hard negatives cost per image, and whether data keeps up.

    For the two models of the comparison (:func:`mmgeo_utils.experiments.comparison.comparison_configs`,
    same architecture, same images per step), time ``steps`` optimizer steps after ``warmup``
    untimed ones and report per image encoded: the whole step, the time spent waiting for the
    next batch, and the loss itself (forward + backward of the objective on the step's
    features, timed separately). Goals (in the README): the hard-negative loss adds at most 10%
    per image processed; data loading is never the bottleneck. With CUDA, peak memory too.

    ``data_root`` times on another build of the profile's kind of data (same image size and
    negatives, fewer diagrams): a step's time does not depend on how many diagrams the split holds,
    and the gpu profile's 54,000 scenes with 10 image negatives each take hours of one core to build.
    """

    profile = get_profile(profile)
    _positive(steps=steps)
    device_type = check_device(device)
    dev = torch.device(device_type)
    steps = steps or (3 if profile.name == "smoke" else 20)
    root, data = _training_data(profile, data_root)
    out: dict[str, Any] = {
        "benchmark": "train",
        "profile": profile.name,
        "device": device_type,
        "steps": steps,
        "data": {"root": str(root), "n_train": data["n_train"]},
        "models": {},
    }
    for name, cfg in comparison_configs(profile, steps=steps + warmup).items():
        cfg = cfg.resolved()
        seed_everything(0)
        model = create_clip(
            cfg.model,
            cfg.pretrained,
            image_size=profile.image_size,  # type: ignore[arg-type]
            context_length=profile.context_length,
            device=dev,
        )
        tokenizer = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]
        objective = ContrastiveObjective(cfg.loss, cfg.hard_weight).to(dev)
        dataset = HardNegativeDataset(
            root, "train", cfg.negative_config(), transform=default_transform(normalize=False)
        )
        optimizer, scheduler, scaler, amp_dtype = make_optimization(model, cfg, device_type)
        autocast = autocast_context(amp_dtype, device_type)
        it = iter(make_loader(dataset, tokenizer, cfg, device_type=device_type))
        images = cfg.positives_per_step * (1 + cfg.negative_config().image_slots)
        texts = cfg.positives_per_step * (1 + len(cfg.negative_config().text_slots))
        wait = compute = loss_s = 0.0
        if device_type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            train_step(model, objective, optimizer, scheduler, scaler, batch, cfg, DistInfo(), dev, autocast)
            if device_type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            if i >= warmup:
                wait, compute = wait + (t1 - t0), compute + (t2 - t1)
                loss_s += _time_loss(model, objective, batch, dev, autocast, device_type)
        step_s = (wait + compute) / steps
        entry = {
            "positives_per_step": cfg.positives_per_step,
            "images_per_step": images,
            "texts_per_step": texts,
            "step_ms": round(1000 * step_s, 2),
            "ms_per_image": round(1000 * step_s / images, 3),
            "images_per_s": round(images / step_s, 1),
            "data_wait_share": round(wait / (wait + compute), 4),
            "loss_ms": round(1000 * loss_s / steps, 3),
            "loss_share_of_step": round(loss_s / (wait + compute), 4),
        }
        if device_type == "cuda":
            entry["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
        out["models"][name] = entry
    clip, mm = out["models"]["clip"], out["models"]["mmclip"]
    out["mmclip_ms_per_image_vs_clip"] = round(mm["ms_per_image"] / clip["ms_per_image"] - 1, 4)
    # the loss's own extra cost per image, relative to CLIP's whole step per image
    clip_step_per_image = clip["step_ms"] / clip["images_per_step"]
    extra_loss_per_image = mm["loss_ms"] / mm["images_per_step"] - clip["loss_ms"] / clip["images_per_step"]
    out["hard_negative_loss_overhead_per_image"] = round(extra_loss_per_image / clip_step_per_image, 4)
    out["results_file"] = str(write_results("bench_train", out, profile=profile))
    return out


def _time_loss(model, objective, batch, dev, autocast, device_type: str) -> float:
    """Forward + backward of the objective alone, on this batch's features (detached leaves)."""

    with torch.no_grad(), autocast:
        feats = encode_batch(model, batch, dev)
    leaves = {k: (v.detach().float().requires_grad_(True) if v.is_floating_point() else v) for k, v in feats.items()}
    if device_type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    objective(**leaves)["loss"].backward()
    if device_type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- bench train --speedups
