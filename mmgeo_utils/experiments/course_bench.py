"""``mmgeo bench course``: how long ``make course`` will take on a profile, and how much memory, from a
few timed pieces of each stage on this machine, before committing hours to it (a dry run).

Each lesson's work is counted from the profile's sizes and the course's recipe, then multiplied by the
time of one unit measured here:

* **a scene** of the dataset (:func:`mmgeo_utils.data.build.make_sample`, one core): with the profile's
  negatives for lesson 02's build, positives only for lesson 01's; the build runs on every core;
* **a caption embedded** by the profile's sentence encoder (lesson 02's retrieval negatives);
* **a training step** of CLIP and of MMCLIP at the profile's images per step, on this device, on a
  synthetic batch of the right shapes (a step's compute does not depend on what the pixels show), and
  **a PNG decoded** for it, spread over the loader workers;
* **an evaluation batch**: images and captions encoded without gradients, plus their PNG decodes.

Host memory is the peak RSS of this process while it measured (models, optimizer, one step), plus the
training split's columns at their measured bytes per row; GPU memory is torch's peak where CUDA runs.
It is an estimate from a model of the lessons (what each trains and scores, below); lessons 00 and 03
are counted at their small fixed cost. Real runs of ``make course`` record their times in
``results/<profile>/course.json``.
"""

from __future__ import annotations

import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..clip import ContrastiveObjective, autocast_context, make_optimization, train_step
from ..clip.distributed import DistInfo
from ..clip.models import create_clip
from ..course import course_notebooks
from ..data import SPLITS, DatasetConfig, build_dataset, make_sample, make_scene, sample_seeds
from ..data.contrastive import HardNegativeDataset, NegativeConfig
from ..diagrams.captions import describe
from ..negatives import embed_captions, load_sentence_encoder
from ..profiles import Profile, get_profile
from ..repro import cpu_threads, detect_device, usable_cores
from .comparison import comparison_configs
from .jobs import default_jobs

FIXED_S = {"00_setup_and_tour": 10.0, "03_contrastive_loss_math": 20.0}  # no data, no training
EVAL_VARIANTS = 3  # clean, rotate30, downscale0.5


def _per_scene_s(config: DatasetConfig, n: int) -> float:
    make_sample(config, "train", 10_000)  # warm-up: figure, glyph outlines
    t = time.perf_counter()
    for i in range(n):
        make_sample(config, "train", i)
    return (time.perf_counter() - t) / n


def _per_caption_embed_s(config: DatasetConfig, n: int = 64) -> float:

    texts = []
    for i in range(n):
        seeds = sample_seeds(config, "train", i)
        texts.append(describe(make_scene(config, seeds), seeds.caption).text)
    encoder = load_sentence_encoder(config.sentence_encoder)
    embed_captions(texts[:8], encoder)
    t = time.perf_counter()
    embed_captions(texts, encoder)
    return (time.perf_counter() - t) / n


def _synthetic_batch(b: int, k_i: int, k_t: int, size: int, context: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tokens = lambda *shape: torch.randint(1, 40_000, (*shape, context), generator=g)  # noqa: E731
    return {
        "image": torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g),
        "text": tokens(b),
        "image_negatives": torch.randint(0, 256, (b, k_i, 3, size, size), dtype=torch.uint8, generator=g),
        "image_negative_mask": torch.ones(b, k_i, dtype=torch.bool),
        "text_negatives": tokens(b, k_t),
        "text_negative_mask": torch.ones(b, k_t, dtype=torch.bool),
    }


def _time_steps(profile: Profile, device: str, steps: int) -> dict[str, dict[str, float]]:

    dev = torch.device(device)
    out = {}
    for name, cfg in comparison_configs(profile, steps=steps + 1).items():
        cfg = cfg.resolved()
        neg = cfg.negative_config()
        with cpu_threads(cfg.threads if device == "cpu" else None):
            model = create_clip(
                cfg.model, None, image_size=profile.image_size, context_length=profile.context_length, device=dev
            )
            objective = ContrastiveObjective(cfg.loss, cfg.hard_weight).to(dev)
            optimizer, scheduler, scaler, amp = make_optimization(model, cfg, device)
            batch = _synthetic_batch(
                cfg.positives_per_step, neg.image_slots, len(neg.text_slots), profile.image_size, model.context_length
            )
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            times = []
            for _ in range(steps + 1):  # the first step is a warm-up
                t = time.perf_counter()
                train_step(
                    model,
                    objective,
                    optimizer,
                    scheduler,
                    scaler,
                    batch,
                    cfg,
                    DistInfo(),
                    dev,
                    autocast_context(amp, device),
                )
                if device == "cuda":
                    torch.cuda.synchronize(dev)
                times.append(time.perf_counter() - t)
            model.eval()
            with torch.no_grad():
                n = min(32, cfg.positives_per_step)
                t = time.perf_counter()
                model.encode_image(batch["image"][:n].to(dev).float(), normalize=True)
                t_img = (time.perf_counter() - t) / n
                t = time.perf_counter()
                model.encode_text(batch["text"][:n].to(dev), normalize=True)
                t_txt = (time.perf_counter() - t) / n
        run = comparison_configs(profile)[name].resolved()  # the lesson's run: its steps, its validations
        entry = {
            "step_s": float(np.median(times[1:])),
            "images_per_step": cfg.positives_per_step * (1 + neg.image_slots),
            "texts_per_step": cfg.positives_per_step * (1 + len(neg.text_slots)),
            "steps": run.steps,
            "validations": len({s for s in range(1, run.steps + 1) if s % run.eval_every == 0} | {run.steps}),
            "eval_image_s": t_img,
            "eval_text_s": t_txt,
            "eval_samples": min(run.eval_samples, profile.n_val),
            "threads": cfg.threads,
        }
        if device == "cuda":
            entry["gpu_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        out[name] = entry
        del model, optimizer
    return out


def _decode_s(root: Path, n: int = 32) -> float:

    paths = sorted((root / "train").glob("*.png"))[:n] + sorted((root / "train" / "negatives").glob("*.png"))[:n]
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            np.asarray(im.convert("RGB"))
    return (time.perf_counter() - t) / max(1, len(paths))


def _bytes_per_row(root: Path, profile: Profile) -> float:
    """Host bytes the training dataset keeps per row (its packed columns), measured."""

    neg = NegativeConfig(num_image=profile.num_negatives, num_retrieval=profile.num_negatives)
    tracemalloc.start()
    d = HardNegativeDataset(root, "train", neg)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return held / max(1, len(d))


def bench_course(
    profile: Profile | str | None = None,
    *,
    device: str | None = None,
    scenes: int = 3,
    steps: int = 2,
    cores: int | None = None,
    workers: int | None = None,
    scratch: Path | str | None = None,
) -> dict[str, Any]:
    """Estimate each lesson's time and the course's peak memory on ``profile`` here (see the module doc).

    ``cores`` (data build) and ``workers`` (PNG decoding) default to this machine's; pass others to
    estimate another machine from this one's per-core timings.
    """

    p = get_profile(profile)
    device = device or detect_device()
    cores = cores or usable_cores()
    workers = workers if workers is not None else (min(8, max(1, cores - 1)) if device == "cuda" else 1)  # as train()
    full = DatasetConfig.from_profile(p)
    positives = DatasetConfig.from_profile(p, negatives=False)
    n_all = sum(full.size(s) for s in SPLITS)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        probe = DatasetConfig(
            **{
                **full.to_dict(),
                "families": tuple(full.families or ()),
                "name": "probe",
                "n_train": 12,
                "n_val": 12,
                "n_test": 12,
            }
        )
        root = build_dataset(probe, out_dir=Path(tmp) / "probe", workers=1, progress=False)
        per_row = _bytes_per_row(root, p)
        decode = _decode_s(root)
    scene_neg, scene_pos = _per_scene_s(full, scenes), _per_scene_s(positives, scenes)
    embed = _per_caption_embed_s(full) if full.retrieval_candidates else 0.0
    runs = _time_steps(p, device, steps)
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def run_s(r: dict) -> float:  # one train() call: steps, data, periodic validation
        load = decode * r["images_per_step"] / max(1, workers)
        step = max(r["step_s"], load) if device == "cuda" else r["step_s"] + (load if workers == 0 else 0.0)
        k = 1 + p.num_negatives  # a validation item: its diagram and image negatives, caption and text negatives
        val = r["validations"] * r["eval_samples"] * k * (r["eval_image_s"] + r["eval_text_s"] + decode)
        return r["steps"] * step + val

    def test_eval_s(r: dict) -> float:
        k = 1 + p.num_negatives
        images = p.n_test * k * EVAL_VARIANTS * (r["eval_image_s"] + decode / max(1, workers))
        return images + p.n_test * (1 + 4 + p.num_negatives) * r["eval_text_s"]

    configs = list(comparison_configs(p).values())
    jobs = default_jobs(configs, device)
    pair_train = sum(run_s(r) for r in runs.values()) / (jobs if jobs > 1 else 1)
    pair_test = sum(test_eval_s(r) for r in runs.values())
    lessons = {
        "00_setup_and_tour": FIXED_S["00_setup_and_tour"],
        "01_diagram_generation": n_all * scene_pos / cores,
        "02_negative_construction": n_all * scene_neg / cores + n_all * embed,
        "03_contrastive_loss_math": FIXED_S["03_contrastive_loss_math"],
        "04_training_mmclip": pair_train,
        "05_evaluating_encoders": (p.seeds - 1) * pair_train + p.seeds * pair_test,
    }

    unmodelled = [nb.stem for nb in course_notebooks() if nb.stem not in lessons]  # a lesson added since
    dataset_bytes = per_row * p.n_train
    out = {
        "benchmark": "course (dry run: an estimate)",
        "profile": p.name,
        "device": device,
        "cores": cores,
        "loader_workers": workers,
        "measured_in_s": round(time.perf_counter() - t0, 1),
        "per_scene_s": {"with_negatives": round(scene_neg, 4), "positives_only": round(scene_pos, 4)},
        "per_caption_embed_s": round(embed, 5),
        "png_decode_s": round(decode, 5),
        "train": {
            k: {kk: (round(v, 5) if isinstance(v, float) else v) for kk, v in r.items()} for k, r in runs.items()
        },
        "lessons_s": {k: round(v, 1) for k, v in lessons.items()},
        "total_s": round(sum(lessons.values()), 1),
        "not_estimated": unmodelled,
        "memory": {
            "host_peak_measured_gib": round(host_peak / 2**30, 2),
            "train_split_columns_gib": round(dataset_bytes / 2**30, 3),
            "host_estimate_gib": round((host_peak + dataset_bytes) / 2**30, 2),
            "bytes_per_train_row": round(per_row),
        },
        "data": {"scenes": n_all, "disk_estimate_gib": None},
    }
    gpu = [r["gpu_peak_gib"] for r in runs.values() if "gpu_peak_gib" in r]
    if gpu:
        out["memory"]["gpu_peak_gib"] = round(max(gpu), 2)
    out["data"]["disk_estimate_gib"] = round(_disk_per_scene(p) * n_all / 2**30, 2)
    return out


def _disk_per_scene(p: Profile) -> float:
    """Bytes a built scene takes on disk: its PNG and its negatives' (~RGB/12 at these line drawings)
    plus ~32 KB of metadata at K = 10 (gpu's measured row), scaled by K."""
    png = 3 * p.image_size**2 / 12
    return (1 + p.num_negatives) * png + 3_200 * max(1, p.num_negatives)


def format_estimate(result: dict[str, Any]) -> str:
    """The estimate as the lines ``mmgeo bench course`` prints."""
    lines = [
        f"make course on {result['profile']} ({result['device']}, {result['cores']} cores, "
        f"{result['loader_workers']} loader workers): an estimate from timings measured here"
    ]
    for name, s in result["lessons_s"].items():
        lines.append(f"  {name:28s} {_hms(s):>10s}")
    m = result["memory"]
    lines += [f"  {name:28s} {'not estimated':>10s}" for name in result["not_estimated"]]
    lines.append(
        f"  {'total':28s} {_hms(result['total_s']):>10s}"
        + (" + the lessons not estimated" if result["not_estimated"] else "")
    )
    lines.append(
        f"  host memory ~{m['host_estimate_gib']} GiB (measured peak {m['host_peak_measured_gib']} GiB + training "
        f"split {m['train_split_columns_gib']} GiB)"
        + (f"; GPU peak {m['gpu_peak_gib']} GiB" if "gpu_peak_gib" in m else "")
    )
    lines.append(f"  data: {result['data']['scenes']} scenes, ~{result['data']['disk_estimate_gib']} GiB on disk")
    return "\n".join(lines)


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"
