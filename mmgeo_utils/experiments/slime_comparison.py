"""Lesson 07's SliME experiment: global tokens alone, then local tokens raw, compressed and chosen by the question.

Every arm (:data:`~mmgeo_utils.lmm.slime.ARMS`) starts from the same stage 0 (LM) and stage 1 (MLP projector)
of lesson 06, on lesson 05's MMCLIP tower of the same seed, and instruction-tunes for the same steps; the
arms with local tokens first train their new parts on captions (``align_steps`` per caption stage).
:func:`run_slime_comparison` writes ``results/<profile>/slime_comparison.json``: per arm a list of seeds with
exact match overall, per kind and on the kinds read off small text (lengths, angles, which segment:
:data:`~mmgeo_utils.lmm.slime.SMALL_TEXT_KINDS`), the local tokens the LM read and the seconds per question;
their mean ± std; the selector's curve of accuracy against local tokens kept (top-p swept at test time on the
trained ``selected`` arm); the paired bootstrap of each arm − ``global`` over test questions; and the issue's
two targets, each measured against its threshold.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import split_fingerprint
from ..lmm.config import LMMConfig
from ..lmm.slime import (
    ARMS,
    SMALL_TEXT_KINDS,
    check_arm,
    evaluate_slime,
    prepare_features,
    slime_dir,
    train_slime,
)
from ..profiles import Profile, get_lmm_sizes, get_profile
from ..repro import Timer, atomic_write_text, write_results
from .jobs import in_processes
from .lmm_comparison import _mean_std, default_lmm_jobs, mmclip_seed_configs, paired_bootstrap, train_shared_stages

EVAL_VERSION = 1
TOP_P_CURVE = (0.2, 0.4, 0.6, 0.8, 0.95, 1.0)  # the selector's nucleus, swept at test time
GAIN_TARGET, KEEP_SHARE, TOKEN_SHARE = 0.05, 0.9, 1 / 3  # the targets


def evaluate_arm(
    cfg: LMMConfig, arm: str, root: Path | str, *, limit: int | None = None, top_p: float | None = None
) -> dict[str, Any]:
    """The test score of a trained arm, cached in its folder (keyed by the split, the limit and ``top_p``)."""
    limit = limit or get_lmm_sizes(cfg.profile).eval_questions
    key = hashlib.sha256(f"{split_fingerprint(root, 'test')}|{limit}|{top_p}|{EVAL_VERSION}".encode()).hexdigest()
    path = slime_dir(cfg, arm) / f"test_eval-{key[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = evaluate_slime(cfg, arm, root, limit=limit, top_p=top_p)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return result


def _train_and_score(cfg: LMMConfig, arm: str, root: Path, limit: int | None):
    summaries = train_slime(cfg, arm, data_root=root, resume=True)  # a stopped comparison continues where it was
    curve = {}
    if arm == "selected":  # the selector alone, without the gated global adapter
        curve = {p: evaluate_arm(cfg, arm, root, limit=limit, top_p=p) for p in TOP_P_CURVE}
    return summaries, evaluate_arm(cfg, arm, root, limit=limit), curve


def _entry(seed: int, cfg: LMMConfig, summaries: dict, r: dict) -> dict[str, Any]:
    return {
        "seed": seed,
        "vision": cfg.vision,
        "overall": r["overall"],
        "small_text": r["small_text"],
        "by_kind": {k: v["accuracy"] for k, v in r["by_kind"].items()},
        "local_tokens": r["local_tokens"],
        "local_tokens_kept": r["local_tokens_kept"],
        "seconds_per_question": r["seconds_per_question"],
        "train_wall_time_s": sum(s.get("wall_time_s") or 0.0 for s in summaries.values()),
        "correct": [bool(a["correct"]) for a in r["answers"]],
        "small_text_mask": [a["kind"] in SMALL_TEXT_KINDS for a in r["answers"]],
    }


def run_slime_comparison(
    profile: Profile | str | None = None,
    seeds: Sequence[int] = (0,),
    *,
    arms: Sequence[str] = tuple(ARMS),
    mmclip_runs: Sequence[Path | str] | None = None,
    data_root: Path | str | None = None,
    limit: int | None = None,
    jobs: int | None = None,
    write: bool = True,
    results_root: Path | str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or reuse) and score every arm at every seed; write ``slime_comparison.json``.

    ``global`` is always scored (every gain is measured against it). Stages 0–1 are trained first, once per
    seed; then the arms run ``jobs`` at a time in spawned processes (default: two on a 2-core CPU).
    """
    p = get_profile(profile)
    seeds = list(seeds)
    for arm in arms:
        check_arm(arm)
    arms = ["global", *[a for a in arms if a != "global"]]
    root, configs = mmclip_seed_configs(p, seeds, mmclip_runs, data_root, **overrides)
    planned = [(seed, arm) for seed in seeds for arm in arms]
    with Timer() as t:
        train_shared_stages(list(configs.values()), root)
        for cfg in configs.values():  # the tower's global and local features once per seed, before the arms
            prepare_features(cfg, root)
        jobs = default_lmm_jobs([configs[s] for s, _ in planned]) if jobs is None else jobs  # one per arm and seed
        calls = [functools.partial(_train_and_score, configs[s], a, root, limit) for s, a in planned]
        done = in_processes(calls, jobs)
    per: dict[str, list[dict]] = {a: [] for a in arms}
    curves: dict[int, dict] = {}
    majority = None
    for (seed, arm), (summaries, r, curve) in zip(planned, done):
        per[arm].append(_entry(seed, configs[seed], summaries, r))
        if curve:
            curves[seed] = curve
        if arm == "global":
            majority = {k: v["majority_baseline"] for k, v in r["by_kind"].items()}
    record: dict[str, Any] = {
        "seeds": seeds,
        "tower": "mmclip (lesson 05, same seed)",
        "small_text_kinds": list(SMALL_TEXT_KINDS),
        "majority_baseline": majority,
        "arms": {},
    }
    for arm, entries in per.items():
        kinds = sorted({k for e in entries for k in e["by_kind"]})
        record["arms"][arm] = {
            "local": ARMS[arm].local,
            "gated": ARMS[arm].gated,
            "schedule": ARMS[arm].schedule,
            "stages": list(ARMS[arm].stages()),
            "seeds": [{k: v for k, v in e.items() if k not in ("correct", "small_text_mask")} for e in entries],
            **{k: _mean_std([e[k] for e in entries]) for k in ("overall", "small_text", "local_tokens_kept")},
            "by_kind": {k: _mean_std([e["by_kind"][k] for e in entries if k in e["by_kind"]]) for k in kinds},
            "local_tokens": entries[0]["local_tokens"],
            "seconds_per_question": _mean_std([e["seconds_per_question"] for e in entries]),
        }
    record["paired_bootstrap_vs_global"] = _bootstraps(per)
    record["top_p_curve"] = _curve(curves)
    record["targets"] = targets(record)
    if write:
        write_results("slime_comparison", record, profile=p, seed=None, wall_time_s=t.seconds, root=results_root)
    return record


def _bootstraps(per: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Each arm − global over the test questions (overall and small-text), seeds paired."""
    base = per["global"]
    out = {}
    for arm, entries in per.items():
        if arm == "global":
            continue
        a = np.array([e["correct"] for e in base])
        b = np.array([e["correct"] for e in entries])
        small = np.array(base[0]["small_text_mask"])
        out[arm] = {
            "overall": paired_bootstrap(a, b),
            "small_text": paired_bootstrap(a[:, small], b[:, small]) if small.any() else None,
        }
    return out


def _curve(curves: dict[int, dict]) -> list[dict[str, Any]]:
    """Per top-p: the local tokens kept and the accuracies, mean over seeds."""
    if not curves:
        return []
    out = []
    for top_p in TOP_P_CURVE:
        rs = [c[top_p] for c in curves.values()]
        out.append(
            {
                "top_p": top_p,
                **{k: _mean_std([r[k] for r in rs]) for k in ("local_tokens_kept", "small_text", "overall")},
            }
        )
    return out


def targets(record: dict[str, Any]) -> dict[str, Any]:
    """The issue's two targets, each as (measured, threshold, met); ``None`` where an arm was not run.

    1. Local tokens raise small-text exact match by ≥ 5 points over global only (the full SliME arm).
    2. The selector keeps ≥ 90 % of the uncompressed local tokens' gain with ≤ a third of their tokens.
    """
    arms = record["arms"]
    g = arms["global"]["small_text"]["mean"]

    def gain(arm: str) -> float | None:
        return arms[arm]["small_text"]["mean"] - g if arm in arms else None

    out: dict[str, Any] = {"gain_small_text": {a: gain(a) for a in arms if a != "global"}}
    full = gain("slime")
    out["local_gain"] = (
        None if full is None else {"measured": full, "threshold": GAIN_TARGET, "met": full >= GAIN_TARGET}
    )
    raw, sel = gain("raw"), gain("selected")
    if raw is None or sel is None:
        out["less_is_more"] = None
    else:
        kept = arms["selected"]["local_tokens_kept"]["mean"]
        share = kept / arms["raw"]["local_tokens"]
        kept_gain = sel / raw if raw > 0 else None
        out["less_is_more"] = {
            "gain_kept": kept_gain,
            "token_share": share,
            "threshold": {"gain_kept": KEEP_SHARE, "token_share": TOKEN_SHARE},
            "met": bool(kept_gain is not None and kept_gain >= KEEP_SHARE and share <= TOKEN_SHARE),
            "note": None if raw > 0 else "uncompressed local tokens gained nothing, so there is no gain to keep",
        }
    return out


def slime_table(record: dict[str, Any]):
    """Arms × (overall, small text, each kind, local tokens kept, ms per question) as 'mean ± std' percentages."""
    import pandas as pd  # local: pandas only for the table

    def cell(d: dict[str, float], scale: float = 100.0) -> str:
        return f"{scale * d['mean']:.1f} ± {scale * d['std']:.1f}"

    rows = {}
    for arm, r in record["arms"].items():
        rows[arm] = {
            "overall": cell(r["overall"]),
            "small text": cell(r["small_text"]),
            **{k: cell(v) for k, v in r["by_kind"].items()},
            "local tokens kept": f"{r['local_tokens_kept']['mean']:.1f} of {r['local_tokens']}",
            "ms / question": cell(r["seconds_per_question"], 1000.0),
        }
    if record.get("majority_baseline"):
        rows["majority answer"] = {k: f"{100 * v:.1f}" for k, v in record["majority_baseline"].items()}
    return pd.DataFrame(rows).T.fillna("–")
