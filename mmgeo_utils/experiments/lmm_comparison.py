"""Lesson 06's experiment: the same LMM on four towers, seeds paired with the encoders' seeds.

===========  ===============================================================================
condition    tower
===========  ===============================================================================
``blind``    none: what the question text alone gives away
``random``   the profile's architecture, randomly initialised (from the LMM's seed)
``clip``     lesson 05's CLIP run of the same seed (in-batch negatives only)
``mmclip``   lesson 05's MMCLIP run of the same seed (the course's hard-negative recipe)
===========  ===============================================================================

Every condition shares stage 0 (the LM of that seed), the data, the stages and their budgets; only
the tower differs. :func:`run_lmm_comparison` writes ``results/<profile>/lmm_comparison.json``: per
condition a list of seeds with overall and per-kind accuracy, their mean ± std, each kind's
majority baseline, and the paired bootstrap 95 % interval of MMCLIP − CLIP over test questions
(:func:`paired_bootstrap`: per question, the accuracy averaged over seeds; questions resampled).
The test questions are yes/no balanced per relation (:mod:`~mmgeo_utils.lmm.balance`);
``yes_no_selection`` says what that left out.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import default_run_dir
from ..data import split_fingerprint
from ..lmm.config import LMMConfig, lmm_root, stage_dir
from ..lmm.evaluate import evaluate_lmm, write_eval
from ..lmm.train import dataset_rows, train_lmm
from ..profiles import Profile, get_lmm_sizes, get_profile
from ..repro import Timer, detect_device, usable_cores, write_results
from .comparison import comparison_configs
from .jobs import in_processes

CONDITIONS = ("blind", "random", "clip", "mmclip")
EVAL_FILE = "test_eval.json"
EVAL_VERSION = 3  # what a cached score holds; a newer version scores again (2: yes/no per relation,
# 3: yes/no balanced per relation in the scored questions and the majority baselines, lmm.balance)


def encoder_runs(profile: Profile | str | None, seed: int) -> dict[str, Path]:
    """Lesson 05's CLIP and MMCLIP run folders of ``seed`` (the comparison's default names)."""

    return {name: default_run_dir(cfg) for name, cfg in comparison_configs(profile, seed).items()}


def trained_encoders(
    profile: Profile | str | None, name: str, seeds: Sequence[int], runs: Sequence[Path | str] | None = None
) -> dict[int, Path]:
    """Seed → the trained ``name`` ("clip" or "mmclip") encoder run of that seed: ``runs`` in seed order, or
    lesson 05's (:func:`encoder_runs`). A count that does not match or a run without weights is an error
    naming it, raised before anything trains."""
    if runs is not None and len(runs) != len(seeds):
        raise ValueError(f"{len(runs)} {name} run(s) for {len(seeds)} seed(s): give one run per seed, in order")
    found = {}
    for i, seed in enumerate(seeds):
        run = Path(runs[i]) if runs is not None else encoder_runs(profile, seed)[name]
        if not (run / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the {name} encoder of seed {seed} is not trained: {run} has no "
                "model.safetensors (mmgeo experiment clip-vs-mmclip trains it)"
            )
        found[seed] = run
    return found


def condition_config(
    profile: Profile | str | None, condition: str, seed: int, vision_run: Path | None = None, **overrides: Any
) -> LMMConfig:
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; conditions: {', '.join(CONDITIONS)}")
    vision = {"blind": "none", "random": "random"}.get(condition) or str(vision_run)
    return LMMConfig(profile=get_profile(profile).name, vision=vision, seed=seed, **overrides)


def evaluate_condition(cfg: LMMConfig, root: Path | str, *, limit: int | None = None) -> dict[str, Any]:
    """The test score of a trained condition, cached beside it (keyed by the split's fingerprint and limit)."""

    limit = limit or get_lmm_sizes(cfg.profile).eval_questions
    key = hashlib.sha256(f"{split_fingerprint(root, 'test')}|{limit}|{EVAL_VERSION}".encode()).hexdigest()[:16]
    path = stage_dir(cfg, "sft") / EVAL_FILE
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    result = evaluate_lmm(
        stage_dir(cfg, "sft") / "model", root, limit=limit, cache_dir=lmm_root(cfg.profile) / "features"
    )
    result["key"] = key
    write_eval(result, path)
    return result


def default_lmm_jobs(configs: Sequence[LMMConfig], device: str | None = None) -> int:
    """How many LMMs to train at once: on a CPU as many as its cores hold at their thread count, else one.

    Lesson 06 on a 2-core laptop: its one-thread conditions train two at a time, about twice as fast
    as one after another (a stage's weights depend on its config alone, not on what ran beside it).
    """
    if (device or detect_device()) != "cpu" or not configs:
        return 1
    threads = max(c.resolved().threads or usable_cores() for c in configs)
    return max(1, min(len(configs), usable_cores() // threads))


def _train_and_score(cfg: LMMConfig, root: Path, limit: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    # resume=True: a comparison stopped midway continues its unfinished stages (their configs are checked)
    return train_lmm(cfg, data_root=root, resume=True), evaluate_condition(cfg, root, limit=limit)


def train_and_score(
    configs: Sequence[LMMConfig], root: Path | str, *, limit: int | None = None, jobs: int | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Train (or reuse) and score every LMM of ``configs``, ``jobs`` at a time; ``(summaries, score)`` each.

    Stage 0 (the LM of a seed, shared by every tower) is trained first, once per seed, so parallel
    conditions never train the same folder; then the conditions run in spawned processes (a forked
    copy of a process that already ran torch threads can deadlock).
    """
    root = Path(root)
    jobs = default_lmm_jobs(configs) if jobs is None else jobs
    if jobs > 1 and len(configs) > 1:
        for lm_cfg in {stage_dir(cfg, "lm"): cfg for cfg in configs}.values():
            train_lmm(lm_cfg, "lm", data_root=root)
    return in_processes([functools.partial(_train_and_score, cfg, root, limit) for cfg in configs], jobs)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``b − a`` over questions, and its 95 % interval from resampling the questions.

    ``a`` and ``b`` are (seeds, questions) arrays of 0/1: each question keeps its pairing (the same
    diagram and question under both towers), so diagram-to-diagram luck cancels.
    """
    diff = np.asarray(b, dtype=float).mean(0) - np.asarray(a, dtype=float).mean(0)
    rng = np.random.default_rng(seed)
    boots = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot)])
    return {
        "mean": float(diff.mean()),
        "low": float(np.percentile(boots, 2.5)),
        "high": float(np.percentile(boots, 97.5)),
        "n_questions": int(len(diff)),
    }


def mmclip_seed_configs(
    p: Profile,
    seeds: Sequence[int],
    mmclip_runs: Sequence[Path | str] | None,
    data_root: Path | str | None,
    **overrides: Any,
) -> tuple[Path, dict[int, LMMConfig]]:
    """Where lesson 07's comparisons start: the LMM data and one lesson 06 config per seed on its MMCLIP tower.

    The tower of seed ``s`` is lesson 05's MMCLIP run of seed ``s`` (``mmclip_runs`` to give others, one per
    seed); a missing one is an error naming it, before anything trains.
    """
    if not seeds:
        raise ValueError("no seeds to run")
    towers = trained_encoders(p, "mmclip", seeds, mmclip_runs)
    base = LMMConfig(profile=p.name, **{k: v for k, v in overrides.items() if k in ("data_seed",)})
    root, _ = dataset_rows(base, "train", data_root)
    return root, {seed: condition_config(p, "mmclip", seed, towers[seed], **overrides) for seed in seeds}


def train_shared_stages(configs: Sequence[LMMConfig], root: Path) -> None:
    """Stages 0–1 (the LM, then the aligned projector) of every config, in this process, before the arms share them."""
    for cfg in configs:
        for stage in ("lm", "align"):
            train_lmm(cfg, stage, data_root=root)


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def run_lmm_comparison(
    profile: Profile | str | None = None,
    seeds: Sequence[int] = (0,),
    *,
    conditions: Sequence[str] = CONDITIONS,
    clip_runs: Sequence[Path | str] | None = None,
    mmclip_runs: Sequence[Path | str] | None = None,
    data_root: Path | str | None = None,
    limit: int | None = None,
    jobs: int | None = None,
    write: bool = True,
    results_root: Path | str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or reuse) and score every condition at every seed; write ``lmm_comparison.json``.

    ``clip_runs`` / ``mmclip_runs`` give the encoder run folders seed by seed (default: lesson 05's
    runs of each seed under ``runs/<profile>/``); a missing one is an error naming it, before any
    training. ``jobs`` LMMs train at once (default :func:`default_lmm_jobs`: two on a 2-core CPU).
    """

    p = get_profile(profile)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds to run")
    given = {"clip": clip_runs, "mmclip": mmclip_runs}
    towers = {
        (name, seed): run
        for name in ("clip", "mmclip")
        if name in conditions
        for seed, run in trained_encoders(p, name, seeds, given[name]).items()
    }
    root, _ = dataset_rows(
        LMMConfig(profile=p.name, **{k: v for k, v in overrides.items() if k in ("data_seed",)}), "train", data_root
    )
    per: dict[str, list[dict]] = {c: [] for c in conditions}
    planned = [
        (seed, cond, condition_config(p, cond, seed, towers.get((cond, seed)), **overrides))
        for seed in seeds
        for cond in conditions
    ]
    with Timer() as t:
        done = train_and_score([cfg for _, _, cfg in planned], root, limit=limit, jobs=jobs)
        for (seed, cond, cfg), (summaries, r) in zip(planned, done):
            per[cond].append(
                {
                    "seed": seed,
                    "vision": cfg.vision,
                    "run": str(stage_dir(cfg, "sft")),
                    "overall": r["overall"],
                    "by_kind": {k: v["accuracy"] for k, v in r["by_kind"].items()},
                    "claims_that_hold": r["claims_that_hold"],
                    "train_wall_time_s": sum(s.get("wall_time_s") or 0 for k, s in summaries.items() if k != "lm"),
                    "correct": [int(a["correct"]) for a in r["answers"]],
                }
            )
            majority = {k: v["majority_baseline"] for k, v in r["by_kind"].items()}
            majority_answers = {k: v["majority_answer"] for k, v in r["by_kind"].items()}
            overall_majority = r["overall_majority_baseline"]
            test_selection = r["yes_no_selection"]
    record: dict[str, Any] = {
        "seeds": seeds,
        "conditions": {},
        "majority_baseline": majority,
        "majority_answer": majority_answers,
        "overall_majority_baseline": overall_majority,
        "n_questions": len(per[conditions[0]][0]["correct"]),
        "yes_no_selection": test_selection,
    }
    for cond, entries in per.items():
        kinds = sorted(set().union(*(e["by_kind"] for e in entries)))
        record["conditions"][cond] = {
            "seeds": [{k: v for k, v in e.items() if k != "correct"} for e in entries],
            "overall": _mean_std([e["overall"] for e in entries]),
            "by_kind": {k: _mean_std([e["by_kind"][k] for e in entries if k in e["by_kind"]]) for k in kinds},
        }
    correct = {c: np.array([e["correct"] for e in per[c]]) for c in conditions}
    pairs = [("clip", "mmclip"), ("blind", "clip"), ("blind", "mmclip"), ("blind", "random"), ("random", "clip")]
    record["paired_bootstrap"] = {
        f"{b}_minus_{a}": paired_bootstrap(correct[a], correct[b]) for a, b in pairs if a in correct and b in correct
    }
    record["lmm"] = {
        k: v for k, v in LMMConfig(profile=p.name, **overrides).resolved().stage_config("lm").items() if k != "seed"
    }
    record["sizes"] = get_lmm_sizes(p).__dict__
    if write:
        write_results("lmm_comparison", record, profile=p, seed=None, wall_time_s=t.seconds, root=results_root)
    return record


def comparison_table(record: dict[str, Any]):
    """Conditions × (overall, kinds) as 'mean ± std' percentages, with the majority baseline as a row."""
    import pandas as pd  # local: pandas only for the table

    rows = {}
    for cond, r in record["conditions"].items():
        rows[cond] = {
            "overall": f"{100 * r['overall']['mean']:.1f} ± {100 * r['overall']['std']:.1f}",
            **{k: f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}" for k, v in r["by_kind"].items()},
        }
    rows["majority answer"] = {
        "overall": f"{100 * record['overall_majority_baseline']:.1f}",
        **{k: f"{100 * v:.1f}" for k, v in record["majority_baseline"].items()},
    }
    return pd.DataFrame(rows).T
