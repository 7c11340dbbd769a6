"""Lesson 08's ablations: MMGeoLM's studies in miniature, each arm a CLIP/MMCLIP run over seeds.

A study is a list of arms; an arm is the hard-negative recipe it changes (``None``: plain CLIP, in-batch
negatives only) and the paper's number for it, so every plot can put the paper beside us.

===============  ======================================================================  ==================
study            arms                                                                    the paper
===============  ======================================================================  ==================
``negatives``    in-batch · random · rule · retrieval · image · rule+retrieval · all     MMGeoLM Table 3
``k``            K image + K retrieval negatives per anchor, K up to the build's K       MMGeoLM Fig. 5
``batching``     random batches vs batches of mutual hard negatives                      MMGeoLM Table 6
``marks``        diagrams with length and angle values vs letters only                   MMGeoLM Table 5
``robustness``   image negatives vs text negatives, on rotated / downscaled tests        MMGeoLM Table 7
``ce_clip``      per-anchor vs + CE-CLIP's IMC and CMR; the adaptive thresholds θ_k       CE-CLIP's θ_k plot
===============  ======================================================================  ==================

Every arm trains at the profile's budget (or ``steps``), from the same data, at every seed, through
:func:`~mmgeo_utils.experiments.jobs.train_all` (two at a time on a 2-core CPU) and is scored by lesson 05's
benchmark (:func:`~mmgeo_utils.experiments.evaluation.evaluate_run`, cached in each run). With ``lmm=True``
each arm's tower also gets lesson 06's LMM and its exact-match QA accuracy: the paper's own metric.
:func:`run_ablation` writes ``results/<profile>/ablation_<study>.json``, one record per study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clip import TrainConfig, default_run_dir
from ..data import DatasetConfig
from ..profiles import Profile, get_profile
from ..repro import Timer, detect_device, write_results
from .comparison import comparison_configs
from .evaluation import evaluate_run, wrong_image_probe
from .jobs import train_all
from .lmm_comparison import _mean_std

METRICS = ("i2t_fine", "t2i_fine", "i2t_r1", "t2i_r1")
VARIANTS = ("rotate30", "downscale0.5")


@dataclass(frozen=True)
class Arm:
    """One arm: the recipe keys it sets on the course's MMCLIP recipe (``None``: plain CLIP)."""

    name: str
    recipe: dict[str, Any] | None
    paper: float | None = None  # the paper's GeoQA accuracy (or the study's own number) for this arm
    x: float | None = None  # the arm's position on a curve (K)


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    paper_source: str
    arms: tuple[Arm, ...]
    note: str = ""
    metrics: tuple[str, ...] = field(default=METRICS)
    probe: bool = False  # also score each run with another diagram's image (what the captions alone give)


def _k_values(profile: Profile) -> tuple[int, ...]:
    """K = 1, 2, 4, 8, 16 up to the K the profile's build holds (cpu: 4, gpu: 10 → 1, 2, 4, 8, 10)."""
    built = DatasetConfig.from_profile(profile).num_negatives
    return tuple(sorted({k for k in (1, 2, 4, 8, 16) if k <= built} | {built}))


def studies(profile: Profile | str | None = None) -> dict[str, Study]:
    """The studies of lesson 08 on ``profile`` (the K study's values depend on the profile's build)."""
    p = get_profile(profile)
    every = ("image", "rule", "retrieval")
    return {
        "negatives": Study(
            "negatives",
            "Which kind of negative helps",
            "MMGeoLM Table 3 (GeoQA accuracy, AltCLIP + MAmmoTH2-7B, 1:10 negatives)",
            (
                Arm("in-batch", None, 45.4),
                Arm("random", {"negatives": ("random",)}, 45.0),
                Arm("rule", {"negatives": ("rule",)}, 48.8),
                Arm("retrieval", {"negatives": ("retrieval",)}, 53.0),
                Arm("image", {"negatives": ("image",)}, 54.9),
                Arm("rule+retrieval", {"negatives": ("rule", "retrieval")}, 56.5),
                Arm("all", {"negatives": every}, 58.2),
            ),
            note="'random': K captions of other training diagrams per anchor through the same per-anchor "
            "loss (the paper's Random10: more negatives, none hard); K is the profile's",
        ),
        "k": Study(
            "k",
            "How many negatives per anchor",
            "MMGeoLM Fig. 5 (MM-Math accuracy rises up to ~30 retrieval negatives per positive, then flattens)",
            tuple(
                Arm(f"K={k}", {"negatives": ("image", "retrieval"), "num_negatives": k}, None, k) for k in _k_values(p)
            ),
            note=f"K up to the {p.name} build's K = {DatasetConfig.from_profile(p).num_negatives} image and "
            "retrieval negatives per sample; rule negatives (one per error type) are left out so that K is "
            "the only change",
        ),
        "batching": Study(
            "batching",
            "Batches of mutual hard negatives",
            "MMGeoLM Table 6 (GeoQA: random batches 46.2, mutual hard-negative batches 57.3)",
            (
                Arm("random batches", {"negatives": every, "batching": "random"}, 46.2),
                Arm("hard batches", {"negatives": every, "batching": "hard"}, 57.3),
            ),
        ),
        "marks": Study(
            "marks",
            "Numeric marks in the diagrams",
            "MMGeoLM Table 5 (GeoQA | MathVerse: with length and angle marks 54.9 | 29.0, letters only 51.7 | 28.6)",
            (
                Arm("with marks", {}, 54.9),
                Arm("letters only", {"numeric_marks": False}, 51.7),
            ),
            note="the course's MMCLIP recipe on its own build of the same scenes drawn without length labels and "
            "angle values (captions and questions still state them; an image negative that only changes a "
            "value draws like its positive, so it is not made); each encoder is tested on diagrams drawn as "
            "it was trained, and with --lmm its LMM reads lesson 06's diagrams, which carry the marks, as the "
            "paper tests on GeoQA",
            probe=True,
        ),
        "robustness": Study(
            "robustness",
            "Image vs text negatives on rotated and downscaled diagrams",
            "MMGeoLM Table 7 (MM-Math avg: text negatives 31.9 → 31.0 rotated → 28.4 downscaled; "
            "image negatives 29.0 → 29.0 → 28.7)",
            (
                Arm("text negatives", {"negatives": ("rule", "retrieval")}, 31.9),
                Arm("image negatives", {"negatives": ("image",)}, 29.0),
            ),
            metrics=("i2t_fine", "t2i_fine"),
        ),
        "ce_clip": Study(
            "ce_clip",
            "CE-CLIP's intra-modal contrast and adaptive rank losses",
            "CE-CLIP (Zhang et al., CVPR 2024): L = ITC + 0.2 CMR + 0.3 IMC; the adaptive thresholds θ_k start at "
            "0 and rise over training as positives separate from each type of negative, relation swaps staying "
            "the hardest (smallest gap); no number for our metric",
            (
                Arm("per-anchor", {"negatives": ("rule",)}),
                Arm("+ IMC + CMR", {"negatives": ("rule",), "loss": "mmclip+imc_cmr"}),
            ),
            note="both arms on rule negatives, one per error type (label, shape, relation, number): CE-CLIP's "
            "four types become ours, so θ_k has one curve per type",
        ),
    }


def theta_curves(record: dict[str, Any], arm: str = "+ IMC + CMR", seed: int | None = None):
    """CE-CLIP's θ_k over training, read from the train log of ``arm``'s run (its first seed by default):
    a DataFrame indexed by step, one column per text-negative slot (``rule:label`` ...)."""
    from ..clip import read_csv  # local: pandas only for reading logs back

    entries = record["arms"][arm]["seeds"]
    entry = entries[0] if seed is None else next(e for e in entries if e["seed"] == seed)
    log = read_csv(Path(entry["run"]) / "train_log.csv").set_index("step")
    cols = [c for c in log.columns if c.startswith("theta_")]
    if not cols:
        raise ValueError(f"{entry['run']} logs no CE-CLIP thresholds: it was not trained with loss mmclip+imc_cmr")
    return log[cols].rename(columns=lambda c: c.removeprefix("theta_"))


def hardest_types(record: dict[str, Any], arm: str = "+ IMC + CMR") -> list[str | None]:
    """Per seed of ``arm``, the negative type with the smallest final θ_k (the one the model separates
    least), or None where the thresholds are all equal (nothing learned yet, as after one step)."""
    out: list[str | None] = []
    for e in record["arms"][arm]["seeds"]:
        last = theta_curves(record, arm, seed=e["seed"]).iloc[-1]
        out.append(None if last.min() == last.max() else str(last.idxmin()))
    return out


def plot_thetas(record: dict[str, Any], arm: str = "+ IMC + CMR"):
    """θ_k per step, one line per negative type, as CE-CLIP's README plots its four thresholds."""
    import matplotlib.pyplot as plt  # local: plotting only when asked

    curves = theta_curves(record, arm)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name in curves.columns:
        ax.plot(curves.index, curves[name], label=name.removeprefix("rule:"))
    ax.set(xlabel="step", ylabel="θ_k (logit units)", title="CE-CLIP's adaptive margins θ_k, one per negative type")
    ax.legend(title="negative type", fontsize=8)
    fig.tight_layout()
    return fig


def arm_config(profile: Profile | str | None, arm: Arm, seed: int, **overrides: Any) -> TrainConfig:
    """The run of ``arm`` at ``seed``: lesson 05's comparison run, with the arm's recipe on MMCLIP's."""
    runs = comparison_configs(profile, seed, recipe=arm.recipe, **overrides)
    return runs["clip"] if arm.recipe is None else runs["mmclip"]


def _entry(seed: int, run: Path, full: dict[str, Any]) -> dict[str, Any]:
    from ..clip.evaluate import headline  # local: the benchmark's summary, as lesson 05 reports it

    h = headline(full)
    out = {"seed": seed, "run": str(run), **{k: h[k] for k in METRICS}, "i2t_fine_by_type": h["i2t_fine_by_type"]}
    out["robustness"] = {v: {k: r[k]["acc"] for k in ("i2t_fine", "t2i_fine")} for v, r in full["robustness"].items()}
    out["chance"] = {k: full[k]["all"]["chance"] for k in ("i2t_fine", "t2i_fine")} | {
        k: full["retrieval"][k]["chance"] for k in ("i2t_r1", "t2i_r1")
    }
    return out


def _common_chance(arms: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The chance levels every arm shares. An arm tested on its own build (the marks study's letters-only
    diagrams have fewer image negatives) can have its own: those stay in the arm's ``chance`` only."""
    levels = [a["chance"] for a in arms.values() if "chance" in a]
    return {k: v for k, v in levels[0].items() if all(c.get(k) == v for c in levels)} if levels else {}


def run_ablation(
    study: str,
    profile: Profile | str | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    arms: Sequence[str] | None = None,
    lmm: bool = False,
    lmm_overrides: dict[str, Any] | None = None,
    jobs: int | None = None,
    device: str | None = None,
    write: bool = True,
    progress: bool = False,
    results_root: Path | str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or reuse) and score every arm of ``study`` at every seed; write ``ablation_<study>.json``.

    ``overrides`` (``steps``, ``images_per_step``, ...) apply to every arm: a cheap declared version of a
    study is the same study with fewer steps or seeds, recorded as such. Finished runs are reused, an
    interrupted one resumes, so the command can be stopped and run again. ``lmm_overrides`` (``sft_steps``,
    ``train_scenes``, ...) size the LMMs of ``lmm=True``.
    """
    p = get_profile(profile)
    known = studies(p)
    if study not in known:
        raise ValueError(f"unknown study {study!r}; studies: {', '.join(known)}")
    s = known[study]
    chosen = [a for a in s.arms if arms is None or a.name in arms]
    missing = set(arms or ()) - {a.name for a in s.arms}
    if missing:
        raise ValueError(
            f"study {study!r} has no arm(s) {', '.join(sorted(missing))}; arms: {', '.join(a.name for a in s.arms)}"
        )
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds to run")
    device = device or detect_device()
    planned = [(arm, seed, arm_config(p, arm, seed, **overrides)) for arm in chosen for seed in seeds]
    with Timer() as t:
        results = train_all(
            [(cfg, default_run_dir(cfg)) for _, _, cfg in planned], jobs=jobs, device=device, progress=progress
        )
        per: dict[str, list[dict]] = {a.name: [] for a in chosen}
        for (arm, seed, _), result in zip(planned, results):
            full = evaluate_run(result, device=device)
            per[arm.name].append(_entry(seed, result.run_dir, full))
            if s.probe:
                probe = wrong_image_probe(result.run_dir, device=device)
                per[arm.name][-1]["wrong_image_by_type"] = probe["another diagram's image"]
        if lmm:
            _add_lmm_scores(p, planned, results, per, lmm_overrides or {})
    record: dict[str, Any] = {
        "study": s.name,
        "title": s.title,
        "paper_source": s.paper_source,
        "note": s.note,
        "seeds": seeds,
        "chance": {},  # the levels all arms share, filled in below
        "overrides": dict(overrides),
        "lmm_overrides": dict(lmm_overrides or {}) if lmm else None,
        "arms": {},
    }
    for arm in chosen:
        entries = per[arm.name]
        summary: dict[str, Any] = {k: _mean_std([e[k] for e in entries]) for k in s.metrics}
        summary["robustness"] = {
            v: {k: _mean_std([e["robustness"][v][k] for e in entries]) for k in ("i2t_fine", "t2i_fine")}
            for v in VARIANTS
            if all(v in e["robustness"] for e in entries)
        }
        if s.probe:  # i2t_fine by type with another diagram's image: the captions' prior alone
            summary["wrong_image"] = {
                t: _mean_std([e["wrong_image_by_type"][t] for e in entries]) for t in entries[0]["wrong_image_by_type"]
            }
        if lmm:
            summary["qa"] = _mean_std([e["qa"] for e in entries])
        record["arms"][arm.name] = {"recipe": arm.recipe, "paper": arm.paper, "x": arm.x, "seeds": entries, **summary}
        record["arms"][arm.name]["chance"] = entries[0]["chance"]  # every seed is tested on the same split
    record["chance"] = _common_chance(record["arms"])
    if write:
        write_results(f"ablation_{study}", record, profile=p, seed=None, wall_time_s=t.seconds, root=results_root)
    return record


def _add_lmm_scores(p: Profile, planned, results, per: dict[str, list[dict]], overrides: dict[str, Any]) -> None:
    """Lesson 06's LMM on every arm's tower (same seed), its overall exact match added to each entry."""
    from ..lmm.train import dataset_rows  # local: the LMM stack only when asked for
    from .lmm_comparison import condition_config, train_and_score

    configs = [condition_config(p, "mmclip", seed, r.run_dir, **overrides) for (_, seed, _), r in zip(planned, results)]
    root, _ = dataset_rows(configs[0], "train", None)
    scores = train_and_score(configs, root)
    for (arm, seed, _), (_, score) in zip(planned, scores):
        entry = next(e for e in per[arm.name] if e["seed"] == seed)
        entry["qa"] = score["overall"]


def ablation_table(record: dict[str, Any]):
    """Arms × metrics as 'mean ± std' percentages, the paper's number beside them, chance as the last row."""
    import pandas as pd  # local: pandas only for the table

    metrics = [k for k in (*METRICS, "qa") if all(k in a for a in record["arms"].values())]
    rows = {
        name: {k: f"{100 * a[k]['mean']:.1f} ± {100 * a[k]['std']:.1f}" for k in metrics}
        | {"paper": "–" if a["paper"] is None else f"{a['paper']:.1f}"}
        for name, a in record["arms"].items()
    }
    rows["chance"] = {k: _chance_cell(record, k) for k in metrics}
    return pd.DataFrame(rows).T.fillna("–")


def probe_table(record: dict[str, Any]):
    """Two-way ``i2t_fine`` per error type, each arm with its diagrams' own images and with another diagram's.

    A study run with ``probe`` (the marks study) stores both per seed. What survives the wrong image comes from
    the two captions alone (chance 50 %); the gap between the rows is what the encoder reads from the diagram.
    """
    import pandas as pd  # local: pandas only for the table

    rows = {}
    for name, a in record["arms"].items():
        if any("wrong_image_by_type" not in e for e in a["seeds"]):
            raise ValueError(
                f"the {record['study']} record has no wrong-image probe for arm {name!r}: it was written before "
                f"the probe existed; run `mmgeo experiment ablate --study {record['study']}` again (runs are reused)"
            )
        for label, key in (("own image", "i2t_fine_by_type"), ("another diagram's image", "wrong_image_by_type")):
            types = a["seeds"][0][key]
            cells = {t: _mean_std([e[key][t] for e in a["seeds"]]) for t in types if t != "all"}
            rows[(name, label)] = {t: f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}" for t, c in cells.items()}
    return pd.DataFrame(rows).T


def _chance_cell(record: dict[str, Any], metric: str) -> str:
    """The chance level of ``metric``: one number when the arms share it, else each arm's in the table's order."""
    if metric in record["chance"]:
        return f"{100 * record['chance'][metric]:.1f}"
    per = [a["chance"][metric] for a in record["arms"].values() if metric in a.get("chance", {})]
    return " / ".join(f"{100 * c:.1f}" for c in per) if per else "–"


def plot_study(record: dict[str, Any], metric: str = "i2t_fine"):
    """The study in the paper's shape: ours (mean ± std over seeds, chance dotted) beside the paper's numbers.

    ``negatives`` and ``batching``: bars per arm; ``k``: a curve over K; ``robustness``: each arm over the
    clean, rotated and downscaled test diagrams. The paper's panel is on the right, on its own axis (a
    7B LMM's GeoQA accuracy is not our encoder's benchmark): compare the *order* of the arms, not the heights.
    """
    import matplotlib.pyplot as plt  # local: plotting only here

    arms = record["arms"]
    names = list(arms)
    fig, (ours, paper) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    if record["study"] == "robustness":
        for name, a in arms.items():
            points = [a[metric]] + [a["robustness"][v][metric] for v in VARIANTS if v in a["robustness"]]
            xs = ["clean", *[v for v in VARIANTS if v in a["robustness"]]]
            ours.errorbar(xs, [100 * p["mean"] for p in points], yerr=[100 * p["std"] for p in points],
                          marker="o", capsize=3, label=name)  # fmt: skip
        ours.legend()
    elif record["study"] == "k":
        xs = [a["x"] for a in arms.values()]
        ours.errorbar(xs, [100 * a[metric]["mean"] for a in arms.values()],
                      yerr=[100 * a[metric]["std"] for a in arms.values()], marker="o", capsize=3)  # fmt: skip
        ours.set_xlabel("negatives per anchor (K)")
    else:
        ours.bar(names, [100 * arms[n][metric]["mean"] for n in names], yerr=[100 * arms[n][metric]["std"] for n in names],
                 capsize=3, color="C0")  # fmt: skip
        ours.tick_params(axis="x", rotation=20)
    if metric in record["chance"]:
        ours.axhline(100 * record["chance"][metric], color="grey", linestyle=":", label="chance")
    elif record["study"] not in ("robustness", "k"):  # bars tested on their own builds: each its own chance
        at = [(i, 100 * arms[n]["chance"][metric]) for i, n in enumerate(names) if metric in arms[n].get("chance", {})]
        if at:
            ours.hlines([c for _, c in at], [i - 0.4 for i, _ in at], [i + 0.4 for i, _ in at], color="grey",
                        linestyle=":", label="chance")  # fmt: skip
    ours.set(title=f"ours: {metric} % ({len(record['seeds'])} seed(s))", ylabel=f"{metric} %")
    with_paper = [n for n in names if arms[n]["paper"] is not None]
    if with_paper:
        paper.bar(with_paper, [arms[n]["paper"] for n in with_paper], color="C1")
        paper.tick_params(axis="x", rotation=20)
        lo = min(arms[n]["paper"] for n in with_paper)
        paper.set_ylim(lo - 5, max(arms[n]["paper"] for n in with_paper) + 3)
    else:
        paper.text(0.5, 0.5, "the paper reports this study as a curve only", ha="center", transform=paper.transAxes)
    paper.set(title="the paper", ylabel="accuracy %")
    fig.suptitle(f"{record['title']} — {record['paper_source']}", fontsize=9)
    fig.tight_layout()
    return fig


def rank_agreement(record: dict[str, Any], metric: str = "i2t_fine") -> dict[str, Any]:
    """Spearman's ρ between our arms' ``metric`` (seed means) and the paper's numbers, over the arms with both.

    ρ is the Pearson correlation of the two rank vectors (ties get their average rank): 1 when the miniature
    orders the arms as the paper does, −1 when it reverses them. With two arms it is ±1: read it as "same
    order or not".
    """
    import numpy as np  # local: only the statistic needs it
    import pandas as pd

    arms = {n: a for n, a in record["arms"].items() if a["paper"] is not None and metric in a}
    if len(arms) < 2:
        raise ValueError(f"study {record['study']!r} has fewer than two arms with the paper's numbers and {metric}")
    ours = pd.Series({n: a[metric]["mean"] for n, a in arms.items()})
    paper = pd.Series({n: a["paper"] for n, a in arms.items()})
    r_ours, r_paper = ours.rank(), paper.rank()
    rho = float(np.corrcoef(r_ours, r_paper)[0, 1]) if r_ours.nunique() > 1 and r_paper.nunique() > 1 else float("nan")
    return {"rho": rho, "n_arms": len(arms), "ours_order": list(ours.sort_values().index),
            "paper_order": list(paper.sort_values().index)}  # fmt: skip


def lesson_record(
    study: str, profile: Profile | str | None = None, *, results_root: Path | str | None = None, **kw: Any
) -> tuple[dict[str, Any], str]:
    """What lesson 08 shows for ``study``, and a sentence saying what it is.

    The record of ``mmgeo experiment ablate`` (every arm, 3 seeds or more, the profile's budget) when
    ``results/<profile>/ablation_<study>.json`` holds one; otherwise a declared cheap version run now: seed 0
    and half the profile's steps per arm (``kw`` goes to :func:`run_ablation`), not written to ``results/``.
    """
    from ..repro import load_results, results_dir  # local: only the lesson reads records back

    p = get_profile(profile)
    path = results_dir(p, results_root) / f"ablation_{study}.json"
    if path.is_file():
        rec = load_results(path)["metrics"]
        if len(rec["seeds"]) >= 3 and not rec.get("overrides"):
            return (
                rec,
                f"the {len(rec['seeds'])}-seed record of `mmgeo experiment ablate --study {study}` ({path.name})",
            )
    steps = max(1, TrainConfig(profile=p.name).resolved().steps // 2)
    rec = run_ablation(study, p, seeds=[0], steps=steps, write=False, **kw)
    return rec, (
        f"a cheap version run now: seed 0, {steps} step{'s' * (steps != 1)} per arm (half the profile's); "
        f"`mmgeo experiment ablate --study {study}` gives every arm 3 seeds at full budget"
    )
