"""The course's central comparison: CLIP vs MMCLIP at the same budget, over several seeds.

``run_comparison`` trains each model of :func:`comparison_configs` for every seed (reusing runs
that already finished, resuming ones that were interrupted), evaluates each on the held-out
*test* split, and writes ``results/<profile>/clip_vs_mmclip.json``: per model a list with one
entry per seed (headline numbers plus the per-type breakdown) and the mean ± std over seeds.

Both models see the same number of images per step (negatives included) for the same number
of steps, from the same dataset. Nothing here tunes on the test split: recipes are compared on the
validation split (:func:`validation_scores`, ``mmgeo experiment validate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import (
    RESUMABLE_CHANGES,
    TrainConfig,
    default_run_dir,
)
from ..clip.evaluate import headline
from ..profiles import Profile, get_profile
from ..repro import Timer, detect_device, load_results, provenance, results_dir, write_results
from .evaluation import evaluate_run
from .jobs import train_all

# The MMCLIP recipe of the comparison: rule negatives, one caption edit of each error type (label,
# shape, relation, number) per sample, and MMGeoLM's per-anchor loss added to in-batch CLIP at full
# weight ("IB+MM", its Table 9; loss = CLIP + per-anchor). With no image negatives both models get all 64
# images per step as positives. Chosen on the validation split by `select_recipes` together with
# COMPARISON_TEMPERATURE (results/cpu/recipe_selection.json, `mmgeo experiment validate`: +15.5 points
# over three seeds, R@5 image->text 4.1 lower). At open_clip's 0.07 no candidate met both conditions on
# three seeds (results/cpu/recipe_selection_2026-12-03.json): weight 1 gained +16.3 but lost 5.3 of R@5,
# weight 0.5 met them by 0.2 points and gained only +6.1 on test; rule + retrieval negatives (K=1), CE-CLIP's
# IMC and CMR terms (loss="mmclip+imc_cmr"), hard batching and the two-stage --init recipe each cost more
# retrieval (results/cpu/recipe_screen_*.json).
MMCLIP_RECIPE = dict(loss="mmclip", negatives=("rule",), num_negatives=1, hard_weight=1.0)

# Both models of the comparison start at this temperature (1 / logit scale) instead of open_clip's
# 0.07. From scratch, 500 steps of AdamW move the learned logit scale only from 14.3 to 14.9 (at 0.07) or
# from 40 to 39.2-39.5 (here), so the initial value is in effect the temperature; pretrained CLIP ends near
# 100 (0.01). A sharper softmax weighs the hardest in-batch and per-anchor negatives more. Chosen on the
# validation split with the recipe (results/cpu/recipe_screen_temperature.json, then recipe_selection.json).
# Pretrained weights (the paper profile) and --init runs bring their own scale, and keep it.
COMPARISON_TEMPERATURE = 0.025


def comparison_configs(
    profile: Profile | str | None = None, seed: int = 0, *, recipe: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, TrainConfig]:
    """``{"clip": ..., "mmclip": ...}``: the two runs of the comparison for one seed.

    ``recipe`` replaces keys of :data:`MMCLIP_RECIPE` (loss, negatives, num_negatives, hard_weight) for the
    hard-negative model only; ``overrides`` (steps, images_per_step, temperature, ...) apply to both.
    Models trained from scratch start at :data:`COMPARISON_TEMPERATURE` unless ``temperature`` is given
    (``None``: open_clip's 0.07).
    """
    prof = get_profile(profile)
    p = prof.name
    base = dict(profile=p, seed=seed, **overrides)
    from_scratch = not (base.get("pretrained") or prof.clip_pretrained or base.get("init"))
    if from_scratch and "temperature" not in base:
        base["temperature"] = COMPARISON_TEMPERATURE
    hard = {**MMCLIP_RECIPE, **(recipe or {})}
    if not hard["loss"].startswith("mmclip") and "hard_weight" not in (recipe or {}):
        hard["hard_weight"] = 1.0  # the recipe's weight belongs to the mmclip losses; negclip has no such term
    return {"clip": TrainConfig(loss="clip", negatives=(), **base), "mmclip": TrainConfig(**hard, **base)}


def comparison_name(recipe: dict[str, Any] | None = None, **overrides: Any) -> str:
    """The results file of a comparison: ``clip_vs_mmclip``, or with its changes in the name: the
    recipe's, and a temperature other than :data:`COMPARISON_TEMPERATURE` (``temperature-0.07``).
    Other overrides (steps, ...) are sizes and stay out of the name."""
    changed = {k: v for k, v in (recipe or {}).items() if MMCLIP_RECIPE.get(k) != v}
    if "temperature" in overrides and overrides["temperature"] != COMPARISON_TEMPERATURE:
        changed["temperature"] = overrides["temperature"] or 0.07  # None: open_clip's initial temperature
    if not changed:
        return "clip_vs_mmclip"
    parts = [f"{k}-{'+'.join(v) if isinstance(v, (tuple, list)) else v}" for k, v in sorted(changed.items())]
    return "clip_vs_mmclip_" + "_".join(parts)


def recipe_of(config: dict[str, Any]) -> str:
    """A run's recipe: its run name without the seed (``mmclip-rule-k1-random``)."""
    cfg = TrainConfig(**{**config, "negatives": tuple(config["negatives"])})
    return cfg.run_name().rsplit("-s", 1)[0]


def _what_trains(config: dict[str, Any]) -> dict[str, Any]:
    # what resume may change (logging, evaluation cadence) does not change the model; nor, here, the seed.
    # Records from before TrainConfig.hard_weight trained with weight 1, and those from before
    # TrainConfig.temperature at open_clip's initial temperature.
    return {
        k: v
        for k, v in {"hard_weight": 1.0, "temperature": None, **config}.items()
        if k not in RESUMABLE_CHANGES | {"seed"}
    }


HEADLINE = ("i2t_fine", "t2i_fine", "i2t_with_retrieval", "i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def aggregate(per_seed: list[dict]) -> dict[str, Any]:
    """Mean ± std over seeds of every headline number and of every per-type accuracy."""
    out: dict[str, Any] = {}
    for key in HEADLINE:
        out[key] = _mean_std([s[key] for s in per_seed])
    for key in ("i2t_fine_by_type", "t2i_fine_by_type"):
        types = sorted(set().union(*(s[key] for s in per_seed)))
        out[key] = {t: _mean_std([s[key][t] for s in per_seed if t in s[key]]) for t in types}
    return out


def run_comparison(
    profile: Profile | str | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    recipe: dict[str, Any] | None = None,
    runs_dir: Path | str | None = None,
    write: bool = True,
    progress: bool = True,
    device: str | None = None,
    jobs: int | None = None,
    extend: bool = False,
    results_root: Path | str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or reuse) and evaluate CLIP and MMCLIP for every seed; return and write the results.

    ``jobs`` runs train at once (default :func:`default_jobs`: two on a 2-core CPU for the cpu
    profile). The record goes to ``results/<profile>/<comparison_name(recipe)>.json``: the course's
    recipe to ``clip_vs_mmclip.json``, a variant (``recipe={"loss": "mmclip+imc_cmr"}``) beside it.
    Each per-seed entry carries the commit, device and time that measured it (``measured``).

    ``extend=True`` adds these seeds to the seeds that file already holds (:func:`merge_comparisons`):
    how seeds trained on different days or machines become one record. The merge refuses records
    whose recipes, chance levels or profiles differ, and a seed measured twice with different numbers.
    """

    p = get_profile(profile)
    file_name = comparison_name(recipe, **overrides)
    earlier = results_dir(p, results_root) / f"{file_name}.json"
    if extend and not earlier.is_file():  # before hours of training, not after
        raise FileNotFoundError(f"cannot extend {earlier}: no such results file (run without extend first)")
    if not seeds:
        raise ValueError("no seeds to train")
    device = device or detect_device()
    models: dict[str, list[dict]] = {"clip": [], "mmclip": []}
    trained: dict[str, Any] = {}  # each model's config as trained (seed aside)
    planned = [
        (seed, name, cfg, Path(runs_dir) / cfg.run_name() if runs_dir else default_run_dir(cfg))
        for seed in seeds
        for name, cfg in comparison_configs(p, seed, recipe=recipe, **overrides).items()
    ]
    with Timer() as t:
        results = train_all([(cfg, out) for _, _, cfg, out in planned], jobs=jobs, device=device, progress=progress)
        stamp = _measured_stamp(provenance(p, None))  # one commit and device for every entry of this call
        for (seed, name, _, out), result in zip(planned, results):
            full = evaluate_run(result, device=device)
            entry = {
                "seed": seed,
                "run": str(out),
                **headline(full),
                "robustness": full.get("robustness", {}),
                "probes": {k: v["acc"] for k, v in full["probes"].items()},
                "train_wall_time_s": result.summary.get("wall_time_s"),
                "images_per_s": result.summary.get("images_per_s"),
                "measured": stamp,
            }
            models[name].append(entry)
            trained[name] = {k: v for k, v in result.config.to_dict().items() if k not in ("seed",)}
            trained[name]["positives_per_step"] = result.config.positives_per_step
    record = _comparison_record(models, chance=_chance_levels(full), recipe=trained)
    if extend:
        record = merge_comparisons([load_results(earlier), {"profile": p.name, "metrics": record}])
    if write:
        write_results(file_name, record, profile=p, seed=None, wall_time_s=t.seconds, root=results_root)
    return record


def _comparison_record(
    models: dict[str, list[dict]], *, chance: dict[str, float], recipe: dict[str, Any]
) -> dict[str, Any]:
    """Per-seed entries (sorted by seed) plus their mean ± std and the MMCLIP − CLIP gap."""
    models = {name: sorted(entries, key=lambda e: e["seed"]) for name, entries in models.items()}
    seeds = [e["seed"] for e in models["clip"]]
    if [e["seed"] for e in models["mmclip"]] != seeds:
        raise ValueError(
            f"CLIP seeds {seeds} and MMCLIP seeds {[e['seed'] for e in models['mmclip']]} differ: "
            "a comparison needs both models at every seed"
        )
    summary = {name: aggregate(entries) for name, entries in models.items()}
    gap = {k: summary["mmclip"][k]["mean"] - summary["clip"][k]["mean"] for k in HEADLINE}
    return {
        **models,
        "summary": summary,
        "gap_mmclip_minus_clip": gap,
        "chance": chance,
        "recipe": recipe,
        "seeds": seeds,
    }


def _measured_stamp(record: dict[str, Any]) -> dict[str, Any]:
    """What a per-seed entry keeps of the provenance of the record that measured it."""
    return {k: record.get(k) for k in ("commit", "device", "created")}


def _stamped(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``entry`` taken over from ``record``, keeping the stamp it already carries, else the record's."""
    return {**entry, "measured": entry.get("measured") or _measured_stamp(record)}


def merge_comparisons(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One comparison over the union of the seeds of several results files (``load_results`` records).

    Seeds are independent runs, so a record over seeds 0-1 and one over seed 2 make a record over
    seeds 0-2, provided they measured the same thing: the same profile, the same recipe for both
    models (what trains: steps, lr, data, threads, ...), the same chance levels (the same test
    split). A seed in two records must carry the same numbers (same seed, same numbers); a
    difference means the code changed between them, and all seeds should be rerun instead.
    Entries keep the ``measured`` stamp (commit, device, time) of the record they came from.
    """
    if not records:
        raise ValueError("nothing to merge")
    first = records[0]
    models: dict[str, dict[int, dict]] = {"clip": {}, "mmclip": {}}
    for i, rec in enumerate(records):
        m = rec["metrics"]
        if rec["profile"] != first["profile"]:
            raise ValueError(f"record {i} is of profile {rec['profile']!r}, record 0 of {first['profile']!r}")
        for name in models:
            ours, theirs = _what_trains(m["recipe"][name]), _what_trains(first["metrics"]["recipe"][name])
            if ours != theirs:
                diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
                raise ValueError(f"record {i} trained {name} differently from record 0 ({', '.join(diff)})")
        if m["chance"] != first["metrics"]["chance"]:
            raise ValueError(f"record {i} has other chance levels than record 0: another test split")
        for name in models:
            for entry in m[name]:
                entry = _stamped(entry, rec)
                seen = models[name].get(entry["seed"])
                if seen is not None and any(seen[k] != entry[k] for k in HEADLINE):
                    raise ValueError(
                        f"{name} seed {entry['seed']} was measured twice with different numbers "
                        f"(i2t_fine {seen['i2t_fine']} vs {entry['i2t_fine']}): the code or data "
                        "changed between the records; rerun every seed instead of merging"
                    )
                models[name][entry["seed"]] = entry
    return _comparison_record(
        {name: list(by_seed.values()) for name, by_seed in models.items()},
        chance=first["metrics"]["chance"],
        recipe=first["metrics"]["recipe"],
    )


def _chance_levels(result: dict) -> dict[str, float]:
    return {
        "i2t_fine": result["i2t_fine"]["all"]["chance"],
        "t2i_fine": result["t2i_fine"]["all"]["chance"],
        "i2t_with_retrieval": result["i2t_with_retrieval"]["all"]["chance"],
        **{k: v["chance"] for k, v in result["retrieval"].items()},
    }


def comparison_table(record: dict[str, Any]):
    """Mean ± std per model and metric, in %, as a pandas DataFrame (rows: metrics)."""
    import pandas as pd  # local: pandas only for the table

    rows = []
    for metric in HEADLINE:
        row = {"metric": metric}
        for name in ("clip", "mmclip"):
            s = record["summary"][name][metric]
            row[name] = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
        row["gap (pts)"] = round(
            100 * (record["summary"]["mmclip"][metric]["mean"] - record["summary"]["clip"][metric]["mean"]), 1
        )
        row["chance"] = f"{100 * record['chance'][metric]:.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")
