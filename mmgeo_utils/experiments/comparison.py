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

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import (
    MODEL_FILE,
    RESUMABLE_CHANGES,
    TrainConfig,
    TrainResult,
    dataset_root,
    default_run_dir,
    load_config,
    train,
)
from ..profiles import Profile, get_profile

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


EVAL_FILE = "test_eval.json"
VAL_EVAL_FILE = "val_eval.json"


def evaluate_run(
    result: TrainResult,
    *,
    data_root: Path | str | None = None,
    device: str = "cpu",
    variants: Sequence[str] = ("clean", "rotate30", "downscale0.5"),
) -> dict:
    """The full test-split benchmark of a finished run, cached in the run folder (``test_eval.json``)."""
    return _evaluate_cached(
        result.model_path,
        result.config,
        result.run_dir / EVAL_FILE,
        split="test",
        variants=variants,
        data_root=data_root,
        device=device,
    )


def _evaluate_cached(
    model_path: Path,
    cfg: TrainConfig,
    cache: Path,
    *,
    split: str,
    variants: Sequence[str],
    data_root: Path | str | None,
    device: str,
) -> dict:
    """``evaluate_clip`` of one checkpoint on one split, cached in ``cache``.

    The cache is keyed by the sha256 of the weights, the data scored (:func:`split_fingerprint`), the
    variants and the benchmark's version, so neither retraining a run, nor scoring it on other data,
    nor changing a metric can serve a stale evaluation.
    """
    from ..clip.checkpoint import CheckpointError
    from ..clip.evaluate import EVAL_VERSION
    from ..data import split_fingerprint
    from ..repro import atomic_write_text

    if not model_path.is_file():
        raise CheckpointError(f"checkpoint {model_path} not found")
    root = data_root or dataset_root(cfg)
    key = {
        "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "data": split_fingerprint(root, split),
        "variants": list(variants),
        "version": EVAL_VERSION,
    }
    if cache.exists():
        saved = json.loads(cache.read_text())
        if all(saved.get(k) == v for k, v in key.items()):
            return saved["result"]
    out = evaluate_checkpoint(model_path, cfg, split=split, variants=variants, data_root=root, device=device)
    atomic_write_text(cache, json.dumps({**key, "result": out}) + "\n")
    return out


def load_run_model(model_path: Path | str, cfg: TrainConfig, device: str = "cpu"):
    """The weights ``model_path`` in the model ``cfg`` names, at its profile's image size (eval mode
    is the caller's); a bad file is a :class:`~mmgeo_utils.clip.checkpoint.CheckpointError` naming it."""
    from ..clip.checkpoint import load_model
    from ..clip.models import checkpoint_context_length, create_clip

    try:  # the run's own text context; an unreadable file is load_model's to name clearly
        context = checkpoint_context_length(model_path)
    except Exception:
        context = None
    model = create_clip(
        cfg.model,
        image_size=get_profile(cfg.profile).image_size,
        context_length=context,  # type: ignore[arg-type]
        device=device,
    )
    load_model(model_path, model)
    return model


def evaluate_checkpoint(
    model_path: Path | str,
    cfg: TrainConfig,
    *,
    split: str = "test",
    variants: Sequence[str] = ("clean", "rotate30", "downscale0.5"),
    data_root: Path | str | None = None,
    device: str = "cpu",
) -> dict:
    """``evaluate_clip`` of the weights ``model_path`` of a run trained with ``cfg`` (uncached): the
    model and image size are the run's, and the data its dataset's unless ``data_root`` is given."""
    from ..clip.evaluate import evaluate_clip
    from ..clip.models import get_tokenizer

    model = load_run_model(model_path, cfg, device)
    return evaluate_clip(
        model,
        get_tokenizer(cfg.model, context_length=model.context_length),  # type: ignore[arg-type]
        data_root or dataset_root(cfg),
        split=split,
        image_size=get_profile(cfg.profile).image_size,
        variants=variants,
        device=device,
    )


def default_jobs(configs: Sequence[TrainConfig], device: str) -> int:
    """How many runs to train at once: on a CPU, as many as its cores hold at the runs' thread
    count (a run with no pinned count uses them all); on a GPU one."""
    from .. import repro

    if device != "cpu" or not configs:
        return 1
    cores = repro.usable_cores()
    threads = max(c.resolved().threads or cores for c in configs)
    return max(1, min(len(configs), cores // threads))


def train_all(
    runs: Sequence[tuple[TrainConfig, Path | None]],
    *,
    jobs: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> list[TrainResult]:
    """Train (or reuse, or resume) every ``(config, run folder)``; ``jobs`` of them at once.

    Why processes: a run pins its own CPU thread count, and the small cpu-profile model gains little
    from a second intra-op thread, so two one-thread runs side by side finish about twice as fast on
    2 cores as one after another. The weights are the same either way: a run depends on its config
    (thread count included), not on what ran beside it. Parallel runs show no progress bars; each
    writes its own ``train_log.csv``.
    """
    from ..repro import detect_device

    device = device or detect_device()
    jobs = default_jobs([c for c, _ in runs], device) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(runs) == 1:
        return [train(cfg, out_dir=out, resume=True, progress=progress, device=device) for cfg, out in runs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # longest first, so the last run to start is a short one and no core idles while a long one
    # finishes (lesson 05 on 2 cores: both MMCLIP runs side by side, then both CLIP runs)
    order = sorted(range(len(runs)), key=lambda i: -relative_cost(runs[i][0]))
    # spawn, not fork: a forked copy of a process that already ran torch threads can deadlock
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            i: pool.submit(train, runs[i][0], out_dir=runs[i][1], resume=True, progress=False, device=device)
            for i in order
        }
        return [futures[i].result() for i in range(len(runs))]


def relative_cost(config: TrainConfig) -> int:
    """A run's work in tower inputs: steps x positives x (1 image + its image negatives + 1 caption
    + its text negatives). Only its order matters (which run to start first)."""
    cfg = config.resolved()
    neg = cfg.negative_config()
    return cfg.steps * cfg.positives_per_step * (2 + neg.image_slots + len(neg.text_slots))


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
    from ..clip.evaluate import headline
    from ..repro import Timer, detect_device, load_results, provenance, results_dir, write_results

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


def validation_scores(
    run_dirs: Sequence[Path | str],
    profile: Profile | str | None = None,
    *,
    data_root: Path | str | None = None,
    device: str | None = None,
    write: bool = True,
    name: str = "recipe_selection",
    earlier: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """Score finished runs on the whole *validation* split (clean diagrams): how recipes are chosen.

    The comparison's recipe (:data:`MMCLIP_RECIPE`) is picked from these numbers, never from the
    test split. All runs must share one profile (``profile``, when given, must be theirs); the
    record (per run: its config and the headline numbers) goes to ``results/<profile>/<name>.json``
    with profile, commit and device. Each run's scores are cached in its ``val_eval.json``.

    ``earlier`` adds the runs of earlier validation records (files this function wrote) to the
    selection, so a candidate screened in an earlier session still competes after its run folder is
    gone. A run scored both now and there must carry the same numbers, as a seed merged into a
    comparison must (:func:`merge_comparisons`): otherwise the code, data or CPU changed between
    them and the earlier scores are not comparable. Entries taken over keep their ``measured`` stamp.
    """
    from ..clip.evaluate import headline
    from ..repro import Timer, detect_device, write_results

    if not run_dirs:
        raise ValueError("validation_scores needs at least one run folder")
    device = device or detect_device()
    configs, p = _finished_runs(run_dirs)
    if profile is not None and get_profile(profile).name != p.name:
        raise ValueError(f"the runs were trained on profile {p.name!r}, not {get_profile(profile).name!r}")
    earlier_records = {path: _validation_record(path, p.name) for path in earlier}  # also before evaluating
    runs: dict[str, Any] = {}
    with Timer() as t:
        for run_dir, cfg in configs.items():
            # cached beside test_eval.json, keyed the same way: adding a candidate re-scores only it
            out = _evaluate_cached(
                run_dir / MODEL_FILE,
                cfg,
                run_dir / VAL_EVAL_FILE,
                split="val",
                variants=("clean",),
                data_root=data_root,
                device=device,
            )
            runs[run_dir.name] = {"config": cfg.to_dict(), "n": out["n"], **headline(out)}
    for path, earlier_record in earlier_records.items():
        _take_over_runs(runs, earlier_record, path)
    record = {"split": "val", "runs": runs, **select_recipes(runs)}
    if write:
        write_results(name, record, profile=p, seed=None, wall_time_s=t.seconds)
    return record


def _finished_runs(run_dirs: Sequence[Path | str]) -> tuple[dict[Path, TrainConfig], Profile]:
    """The configs of finished runs of one profile, and that profile; checked before any evaluation,
    since a late failure would waste the evaluations before it."""
    configs = {Path(r): load_config(r) for r in run_dirs}
    for run_dir in configs:
        if not (run_dir / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{run_dir} has no {MODEL_FILE}: the run has not finished")
    profiles = {c.profile for c in configs.values()}
    if len(profiles) > 1:
        raise ValueError(f"runs of different profiles cannot be compared: {sorted(profiles)}")
    return configs, get_profile(profiles.pop())


def _validation_record(path: Path | str, profile: str) -> dict[str, Any]:
    """An earlier record of :func:`validation_scores` for ``profile``; any other file is named as such."""
    from ..repro import load_results

    record = load_results(path)
    m = record["metrics"]
    if record["profile"] != profile or m.get("split") != "val" or "runs" not in m:
        raise ValueError(f"{path} is not a validation record of profile {profile!r} (mmgeo experiment validate)")
    return record


def _take_over_runs(runs: dict[str, Any], record: dict[str, Any], path: Path | str) -> None:
    """Add the runs of an earlier validation record to ``runs`` (see ``validation_scores(earlier=)``)."""
    for run, entry in record["metrics"]["runs"].items():
        entry = _stamped(entry, record)
        seen = runs.get(run)
        if seen is None:
            runs[run] = entry
        elif any(seen[k] != entry[k] for k in HEADLINE):
            raise ValueError(
                f"{run} scores i2t_fine {seen['i2t_fine']} now but {entry['i2t_fine']} in {path}: the "
                "code, data or CPU changed between them; score every candidate again instead"
            )


# What a recipe must do on the validation split to be chosen: the two conditions, fixed
# before the runs they judge. "Within a few points" is read as at most 5 points lower than CLIP on
# each of R@1 and R@5 in each direction.
GAP_TARGET = 0.10
RETRIEVAL_TOLERANCE = 0.05
RETRIEVAL_KEYS = ("i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")


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


def select_recipes(
    runs: dict[str, dict[str, Any]], *, gap_target: float = GAP_TARGET, retrieval_tolerance: float = RETRIEVAL_TOLERANCE
) -> dict[str, Any]:
    """Group validation scores by recipe, average over seeds, and judge each recipe against CLIP.

    ``runs`` maps run names to ``{"config": ..., <headline numbers>}`` (what
    :func:`validation_scores` measures). A recipe *meets* the criterion when its mean i2t_fine is
    at least ``gap_target`` above plain CLIP's and none of its mean R@1/R@5 (both directions) is
    more than ``retrieval_tolerance`` below CLIP's. Both means are taken over the seeds the recipe
    and CLIP share (``seeds_compared``), so an extra CLIP seed cannot move the verdict; a recipe
    that shares no seed with CLIP is reported but not judged.

    ``chosen`` names the recipe the course should use: of those that meet both conditions, the one
    judged on the most seeds (a candidate screened on seed 0 alone loses to one confirmed on three),
    then the one with the largest gap; None when none meets them.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, r in runs.items():
        key = recipe_of(r["config"])
        members = groups.setdefault(key, [])
        if members and _what_trains(members[0]["config"]) != _what_trains(r["config"]):
            raise ValueError(
                f"{name} and {key} runs share a name but not a config (weight decay, warm-up, "
                "threads, ...): seeds of one recipe must differ in the seed only"
            )
        members.append(r)
    mean = lambda members, k, seeds: float(np.mean([m[k] for m in members if m["config"]["seed"] in seeds]))  # noqa: E731
    recipes: dict[str, Any] = {}
    for key, members in sorted(groups.items()):
        recipes[key] = {
            "loss": members[0]["config"]["loss"],
            "seeds": sorted(m["config"]["seed"] for m in members),
            **{k: _mean_std([m[k] for m in members]) for k in HEADLINE},
        }
    baselines = [k for k, r in recipes.items() if r["loss"] == "clip"]
    criterion = {
        "gap_target": gap_target,
        "retrieval_tolerance": retrieval_tolerance,
        "retrieval_keys": list(RETRIEVAL_KEYS),
        "baseline": baselines[0] if len(baselines) == 1 else None,
    }
    if len(baselines) != 1:
        return {"recipes": recipes, "criterion": criterion, "chosen": None}
    base = groups[baselines[0]]
    for key, r in recipes.items():
        if key == baselines[0]:
            continue
        seeds = sorted(set(r["seeds"]) & set(recipes[baselines[0]]["seeds"]))
        if not seeds:
            r["verdict"] = {"judged": False, "why": f"seeds {r['seeds']} share none with CLIP's"}
            continue
        gap = mean(groups[key], "i2t_fine", seeds) - mean(base, "i2t_fine", seeds)
        drops = {k: mean(base, k, seeds) - mean(groups[key], k, seeds) for k in RETRIEVAL_KEYS}
        worst = max(drops, key=drops.get)
        why = []
        if gap < gap_target:
            why.append(f"i2t_fine gap {100 * gap:+.1f} < {100 * gap_target:.0f} points")
        if drops[worst] > retrieval_tolerance:
            why.append(
                f"{worst} {100 * drops[worst]:.1f} points below CLIP (tolerance {100 * retrieval_tolerance:.0f})"
            )
        r["verdict"] = {
            "judged": True,
            "meets": not why,
            "seeds_compared": seeds,
            "i2t_fine_gap": gap,
            "retrieval_drop": drops,
            "why": "; ".join(why) or "meets both conditions",
        }
    meeting = [k for k, r in recipes.items() if r.get("verdict", {}).get("meets")]
    rank = lambda k: (len(recipes[k]["verdict"]["seeds_compared"]), recipes[k]["verdict"]["i2t_fine_gap"])  # noqa: E731
    return {"recipes": recipes, "criterion": criterion, "chosen": max(meeting, key=rank) if meeting else None}


def gap_uncertainty(
    base_hits: np.ndarray, model_hits: np.ndarray, families: Sequence[str], *, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """How far a split's i2t_fine gap can be trusted: its item-bootstrap error and its family mix.

    ``base_hits`` and ``model_hits`` are (seeds, items) arrays of per-diagram hits
    (:func:`~mmgeo_utils.clip.evaluate.i2t_fine_hits`) on the same items; ``families`` names each item's
    family. Why: every seed is scored on the *same* 500 diagrams, so averaging seeds removes
    training noise but not the luck of which diagrams the split drew. Resampling the items (paired,
    the same draw for both models) measures that luck; reweighting the families to equal shares
    (the generator draws them uniformly) shows how much a split's family mix moves the gap.
    """
    base, model = np.asarray(base_hits, float), np.asarray(model_hits, float)
    fam = np.asarray(families)
    if base.ndim != 2 or base.shape != model.shape or base.shape[1] != len(fam):
        raise ValueError(
            f"hits must be two (seeds, items) arrays of one shape over {len(fam)} items, "
            f"got {base.shape} and {model.shape}"
        )
    diff = model.mean(0) - base.mean(0)
    keep = ~np.isnan(diff)  # diagrams without a rule negative are not in i2t_fine
    diff, fam = diff[keep], fam[keep]
    if not len(diff):
        raise ValueError("no item has a rule negative: there is no i2t_fine gap to measure")
    rng = np.random.default_rng(seed)
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot)])
    by_family = {f: {"gap": float(diff[fam == f].mean()), "n": int((fam == f).sum())} for f in sorted(set(fam))}
    return {
        "gap": float(diff.mean()),
        "bootstrap_se": float(boot.std(ddof=1)),
        "n_items": int(len(diff)),
        "seeds": int(base.shape[0]),
        "family_balanced_gap": float(np.mean([v["gap"] for v in by_family.values()])),
        "by_family": by_family,
    }


def gap_noise(
    clip_runs: Sequence[Path | str],
    mmclip_runs: Sequence[Path | str],
    *,
    split: str = "val",
    data_root: Path | str | None = None,
    device: str | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """:func:`gap_uncertainty` of finished CLIP and MMCLIP runs (one per seed) on one split, clean diagrams.

    Seeds pair up in order (``clip_runs[i]`` with ``mmclip_runs[i]``); all runs must share a profile and
    dataset. Written to ``results/<profile>/gap_noise_<split>.json``.
    """
    from ..clip.evaluate import (
        check_finite,
        drop_indistinguishable,
        encode_images,
        encode_texts,
        eval_transform,
        i2t_fine_hits,
        split_items,
    )
    from ..clip.models import get_tokenizer
    from ..repro import Timer, detect_device, write_results

    if not clip_runs or len(clip_runs) != len(mmclip_runs):
        raise ValueError(f"give one CLIP and one MMCLIP run per seed, got {len(clip_runs)} and {len(mmclip_runs)}")
    configs, p = _finished_runs([*clip_runs, *mmclip_runs])
    data_seeds = {c.data_seed for c in configs.values()}
    if len(data_seeds) > 1:
        raise ValueError(
            f"runs trained on different datasets (data seeds {sorted(data_seeds)}) are not scored on one split"
        )
    device = device or detect_device()
    first = next(iter(configs.values()))
    root = Path(data_root) if data_root is not None else dataset_root(first)
    # the same diagrams and candidates as evaluate_clip's i2t_fine (one tokenizer: the runs share a profile)
    items, _ = drop_indistinguishable(split_items(root, split), get_tokenizer(first.model))  # type: ignore[arg-type]
    hits: dict[Path, np.ndarray] = {}
    with Timer() as t:
        for run_dir, cfg in configs.items():
            model = load_run_model(run_dir / MODEL_FILE, cfg, device)
            model.eval()
            tokenizer = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]
            texts = check_finite(encode_texts(model, tokenizer, items.texts, device=device), "text")
            images = check_finite(
                encode_images(model, items.image_paths[: items.n], eval_transform(p.image_size), device=device), "image"
            )
            hits[run_dir] = i2t_fine_hits(items, images, texts)
    families = [r["family"] for r in items.rows]
    record = {
        "split": split,
        "clip_runs": [str(r) for r in clip_runs],
        "mmclip_runs": [str(r) for r in mmclip_runs],
        **gap_uncertainty(
            np.stack([hits[Path(r)] for r in clip_runs]), np.stack([hits[Path(r)] for r in mmclip_runs]), families
        ),
    }
    if write:
        write_results(f"gap_noise_{split}", record, profile=p, seed=None, wall_time_s=t.seconds)
    return record


def _chance_levels(result: dict) -> dict[str, float]:
    return {
        "i2t_fine": result["i2t_fine"]["all"]["chance"],
        "t2i_fine": result["t2i_fine"]["all"]["chance"],
        "i2t_with_retrieval": result["i2t_with_retrieval"]["all"]["chance"],
        **{k: v["chance"] for k, v in result["retrieval"].items()},
    }


def comparison_table(record: dict[str, Any]):
    """Mean ± std per model and metric, in %, as a pandas DataFrame (rows: metrics)."""
    import pandas as pd

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
