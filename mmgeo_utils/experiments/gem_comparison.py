"""Lesson 07's MM-GEM experiment: one LM trained to embed, to caption, or both, at equal steps.

=====================  ==========================================================================
arm                    objective
=====================  ==========================================================================
``joint``              InfoNCE with the caption's hard negatives + image → caption (MM-GEM + ours)
``joint-in-batch``     InfoNCE with in-batch negatives only + image → caption (MM-GEM as published)
``embed``              the InfoNCE with hard negatives alone
``generate``           the captioning loss alone
=====================  ==========================================================================

Every arm starts from the same stage 0 (LM) and stage 1 (projector aligned to the tower) of lesson 06,
on lesson 05's MMCLIP tower of the same seed, and trains the same steps, batches and learning rate.
:func:`run_gem_comparison` writes ``results/<profile>/gem_comparison.json``: per arm a list of seeds
with the embedding scores (``i2t_fine``, ``t2i_fine``, R@1 / R@5, the same functions as lesson 05) and
the caption scores (fact precision / recall / F1), their mean ± std, the chance levels, and lesson 05's
CLIP and MMCLIP text towers beside them when ``clip_vs_mmclip.json`` exists.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..clip.evaluate import headline
from ..data import split_fingerprint
from ..lmm.config import LMMConfig
from ..lmm.gem import evaluate_gem, gem_dir, negatives_root, train_gem
from ..profiles import Profile, get_lmm_sizes, get_profile
from ..repro import Timer, load_results, results_dir, write_results
from .jobs import in_processes
from .lmm_comparison import _mean_std, default_lmm_jobs, mmclip_seed_configs, train_shared_stages

ARMS: dict[str, tuple[str, bool]] = {  # arm → (objective, hard negatives in the InfoNCE)
    "joint": ("joint", True),
    "joint-in-batch": ("joint", False),
    "embed": ("embed", True),
    "generate": ("generate", True),
}
EVAL_FILE = "test_eval.json"
EVAL_VERSION = 1
SCORES = ("i2t_fine", "t2i_fine", "i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")
CAPTION_SCORES = ("precision", "recall", "f1")


def evaluate_arm(cfg: LMMConfig, arm: str, full_root: Path, *, captions: int | None = None) -> dict[str, Any]:
    """The test scores of a trained arm, cached beside it (keyed by the split's fingerprint and captions)."""
    objective, hard = ARMS[arm]
    folder = gem_dir(cfg, objective, hard)
    captions = get_lmm_sizes(cfg.profile).gem_captions if captions is None else captions
    key = hashlib.sha256(f"{split_fingerprint(full_root, 'test')}|{captions}|{EVAL_VERSION}".encode()).hexdigest()[:16]
    path = folder / EVAL_FILE
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    r = evaluate_gem(
        folder / "model", full_root, captions=captions, context_length=get_lmm_sizes(cfg.profile).context_length
    )
    out = {**headline(r), "captions": r.get("captions"), "negatives_dropped": r["negatives_dropped"], "key": key}
    chance = {k: r[k]["all"]["chance"] for k in ("i2t_fine", "t2i_fine")}
    out["chance"] = {**chance, **{k: v["chance"] for k, v in r["retrieval"].items() if "chance" in v}}
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def _train_and_score(cfg: LMMConfig, arm: str, root: Path, full_root: Path, captions: int | None):
    objective, hard = ARMS[arm]
    # resume=True: a comparison stopped midway continues its unfinished runs (their configs are checked)
    summary = train_gem(cfg, objective, hard_negatives=hard, data_root=root, full_root=full_root, resume=True)
    return summary, evaluate_arm(cfg, arm, full_root, captions=captions)


def _lesson05_towers(p: Profile, results_root: Path | str | None) -> dict[str, Any] | None:
    """Lesson 05's CLIP and MMCLIP text towers on the same benchmark (mean ± std), if that record exists."""
    path = results_dir(p, results_root) / "clip_vs_mmclip.json"
    if not path.is_file():
        return None
    m = load_results(path)["metrics"]
    return {name: {k: m["summary"][name][k] for k in SCORES} for name in ("clip", "mmclip")} | {
        "seeds": m.get("seeds"),
        "source": path.name,
    }


def run_gem_comparison(
    profile: Profile | str | None = None,
    seeds: Sequence[int] = (0,),
    *,
    arms: Sequence[str] = tuple(ARMS),
    mmclip_runs: Sequence[Path | str] | None = None,
    data_root: Path | str | None = None,
    captions: int | None = None,
    jobs: int | None = None,
    write: bool = True,
    results_root: Path | str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or reuse) and score every arm at every seed; write ``gem_comparison.json``.

    The tower of seed ``s`` is lesson 05's MMCLIP run of seed ``s`` (``mmclip_runs`` to give others, one
    per seed). Stages 0–1 are trained first, once per seed; then the arms run ``jobs`` at a time in
    spawned processes (default: two on a 2-core CPU).
    """
    p = get_profile(profile)
    seeds = list(seeds)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(unknown)}; arms: {', '.join(ARMS)}")
    root, configs = mmclip_seed_configs(p, seeds, mmclip_runs, data_root, **overrides)
    full_root = negatives_root(next(iter(configs.values())))
    planned = [(seed, arm) for seed in seeds for arm in arms]
    with Timer() as t:
        train_shared_stages(list(configs.values()), root)
        jobs = default_lmm_jobs([configs[s] for s, _ in planned]) if jobs is None else jobs  # one per arm and seed
        calls = [functools.partial(_train_and_score, configs[s], a, root, full_root, captions) for s, a in planned]
        done = in_processes(calls, jobs)
    per: dict[str, list[dict]] = {a: [] for a in arms}
    for (seed, arm), (summary, r) in zip(planned, done):
        per[arm].append(
            {
                "seed": seed,
                "vision": configs[seed].vision,
                "run": str(gem_dir(configs[seed], *ARMS[arm])),
                **{k: r[k] for k in SCORES},
                "i2t_fine_by_type": r["i2t_fine_by_type"],
                "captions": r["captions"],
                "train_wall_time_s": summary.get("wall_time_s"),
            }
        )
        chance = r["chance"]
    record: dict[str, Any] = {"seeds": seeds, "arms": {}, "chance": chance, "tower": "mmclip (lesson 05, same seed)"}
    for arm, entries in per.items():
        summary = {k: _mean_std([e[k] for e in entries]) for k in SCORES}
        if all(e["captions"] for e in entries):
            summary["captions"] = {k: _mean_std([e["captions"][k] for e in entries]) for k in CAPTION_SCORES}
        record["arms"][arm] = {"objective": ARMS[arm][0], "hard_negatives": ARMS[arm][1], "seeds": entries, **summary}
    record["lesson05_text_towers"] = _lesson05_towers(p, results_root)
    record["gem_steps"] = get_lmm_sizes(p).gem_steps
    record["base"] = {k: v for k, v in configs[seeds[0]].resolved().stage_config("align").items() if k != "seed"}
    if write:
        write_results("gem_comparison", record, profile=p, seed=None, wall_time_s=t.seconds, root=results_root)
    return record


def gem_table(record: dict[str, Any]):
    """Arms (and lesson 05's towers) × scores as 'mean ± std' percentages, chance as the last row."""
    import pandas as pd  # local: pandas only for the table

    def cell(d: dict[str, float]) -> str:
        return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"

    rows: dict[str, dict[str, str]] = {}
    for arm, r in record["arms"].items():
        rows[f"LM: {arm}"] = {k: cell(r[k]) for k in SCORES}
        for k in CAPTION_SCORES:
            rows[f"LM: {arm}"][f"caption {k}"] = cell(r["captions"][k]) if "captions" in r else "–"
    for name, r in (record.get("lesson05_text_towers") or {}).items():
        if name in ("clip", "mmclip"):
            rows[f"lesson 05 {name.upper()}"] = {k: cell(r[k]) for k in SCORES}
    rows["chance"] = {k: f"{100 * v:.1f}" for k, v in record["chance"].items() if k in SCORES}
    return pd.DataFrame(rows).T.fillna("–")
