"""``mmgeo bench lmm``: how fast each stage of lesson 06 runs on this machine, and what a condition costs.

A few timed steps of each stage at the profile's sizes (batch, context, LM, token grid) in a
scratch folder, the tower's feature extraction (images/s, then a second call that must hit the
cache), greedy answering (questions/s), and peak memory (CUDA's allocator peak, or the process's
maximum resident set on a CPU). From the rates it extrapolates what the profile's full budgets
cost: one condition's stages 1-2 and its evaluation, stage 0 once per seed, and four conditions.
With ``local=ARM`` it times lesson 07's SliME arm the same way (its local features, each of its stages, its
answering) and extrapolates one arm at the profile's budgets.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..lmm.config import LMMConfig, lmm_root, stage_dir
from ..lmm.data import cached_features
from ..lmm.evaluate import evaluate_lmm
from ..lmm.slime import ARMS, check_arm, evaluate_slime, local_features, train_slime
from ..lmm.train import dataset_rows, train_lmm
from ..lmm.vision_tower import load_vision_tower
from ..profiles import Profile, get_lmm_sizes, get_profile
from ..repro import cpu_threads, env_var


def _peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_lmm(
    profile: Profile | str | None = None,
    *,
    steps: int = 5,
    vision: str = "random",
    data_root: Path | str | None = None,
    questions: int = 64,
    threads: int | None = None,
    local: str | None = None,
) -> dict[str, Any]:
    """Rates per stage and the extrapolated time of the profile's budgets (seconds)."""

    if local is not None and (check_arm(local).local is None or vision == "none"):
        raise ValueError(
            f"--local {local} times a SliME arm with local tokens on a tower: not 'global' or --vision none"
        )
    p, sizes = get_profile(profile), get_lmm_sizes(profile)
    threads = threads or p.train_threads
    scenes = min(sizes.train_scenes, max(4 * sizes.batch_size, 64))
    cfg = LMMConfig(
        profile=p.name, vision=vision, lm_steps=steps, align_steps=steps, sft_steps=steps, train_scenes=scenes
    )
    out: dict[str, Any] = {
        "profile": p.name,
        "vision": vision,
        "threads": threads,
        "timed_steps": steps,
        "batch_size": sizes.batch_size,
        "context_length": sizes.context_length,
    }
    with tempfile.TemporaryDirectory() as tmp, env_var("MMGEO_RUNS_DIR", tmp), cpu_threads(threads):
        root, rows = dataset_rows(cfg, "train", data_root)
        tower = load_vision_tower(vision, p, seed=0) if vision != "none" else None
        if tower is not None:
            t0 = time.perf_counter()
            _, hit_first = cached_features(tower, root, "train", scenes, lmm_root(p.name) / "features")
            out["features_images_per_s"] = scenes / (time.perf_counter() - t0)
            _, hit = cached_features(tower, root, "train", scenes, lmm_root(p.name) / "features")
            out["feature_cache_hit"] = {"first_call": hit_first, "second_call": hit}
        summaries = train_lmm(cfg, data_root=root)
        for stage, s in summaries.items():
            if s.get("steps"):
                out[stage] = {
                    "samples_per_s": s["samples_per_s"],
                    "tokens_per_s": s["tokens_per_s"],
                    "s_per_step": s["wall_time_s"] / s["steps"],
                }
        out["lm_parameters"] = summaries["lm"].get("lm_parameters")
        out["sft_trainable_parameters"] = summaries["sft"].get("trainable_parameters")
        t0 = time.perf_counter()
        scored = evaluate_lmm(
            stage_dir(cfg, "sft") / "model",
            root,
            limit=questions,
            train_rows=rows,
            cache_dir=lmm_root(p.name) / "features",
        )["n"]  # fewer: yes/no balanced
        out["eval_questions_per_s"] = scored / (time.perf_counter() - t0)
        if local is not None:
            out["slime"] = _bench_slime(cfg, local, root, tower, scenes, questions)
    out["peak_memory_mib"] = _peak_memory_mib()
    per_step = {k: out[k]["s_per_step"] for k in ("lm", "align", "sft") if k in out}
    feature_s = (sizes.train_scenes + _test_scenes(p, sizes)) / out.get("features_images_per_s", float("inf"))
    eval_s = sizes.eval_questions / out["eval_questions_per_s"]
    condition = (
        per_step.get("align", 0) * sizes.align_steps + per_step.get("sft", 0) * sizes.sft_steps + feature_s + eval_s
    )
    stage0 = per_step.get("lm", 0) * sizes.lm_steps
    out["estimate_s"] = {
        "stage_lm": stage0,
        "features_per_tower": feature_s,
        "one_condition": condition,
        "eval_per_condition": eval_s,
        "four_conditions_one_seed": stage0 + 4 * condition,
    }
    if local is not None:
        b = out["slime"]
        steps_of = {"expert": sizes.align_steps, "local": sizes.align_steps, "joint": 2 * sizes.align_steps}
        training = sum(b[st]["s_per_step"] * steps_of.get(st, sizes.sft_steps) for st in ARMS[local].stages())
        b["estimate_s"] = {
            "local_features_per_tower": (sizes.train_scenes + _test_scenes(p, sizes)) / b["local_images_per_s"],
            "training": training,
            "eval": sizes.eval_questions / b["eval_questions_per_s"],
        }
        b["estimate_s"]["one_arm"] = sum(b["estimate_s"].values())
    return out


def _bench_slime(cfg: LMMConfig, arm: str, root: Path, tower, scenes: int, questions: int) -> dict[str, Any]:
    """SliME arm ``arm`` on lesson 06's finished stages: local features (scenes/s), its stages, its answering."""
    t0 = time.perf_counter()
    local_features(tower, root, "train", scenes, lmm_root(cfg.profile) / "features")
    out: dict[str, Any] = {"arm": arm, "local_images_per_s": scenes / (time.perf_counter() - t0)}
    for stage, s in train_slime(cfg, arm, data_root=root).items():
        out[stage] = {"samples_per_s": s["samples_per_s"], "s_per_step": s["wall_time_s"] / max(s["steps"], 1)}
        out["image_tokens"], out["local_tokens"] = s.get("image_tokens"), s.get("local_tokens")
    t0 = time.perf_counter()
    scored = evaluate_slime(cfg, arm, root, limit=questions)
    out["eval_questions_per_s"] = scored["n"] / (time.perf_counter() - t0)
    out["local_tokens_kept"] = scored["local_tokens_kept"]
    return out


def _test_scenes(p: Profile, sizes) -> int:
    return min(p.n_test, sizes.eval_questions)  # questions come several per scene: an upper bound
