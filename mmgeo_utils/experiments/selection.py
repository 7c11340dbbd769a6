"""Choosing a recipe on the validation split, never on test: candidate runs scored on validation and the
choice recorded by a fixed rule (``mmgeo experiment validate``, ``results/<profile>/recipe_selection.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import (
    MODEL_FILE,
    TrainConfig,
    load_config,
)
from ..clip.evaluate import headline
from ..profiles import Profile, get_profile
from ..repro import Timer, detect_device, load_results, write_results
from .comparison import HEADLINE, _mean_std, _stamped, _what_trains, recipe_of
from .evaluation import VAL_EVAL_FILE, _evaluate_cached


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
