"""Lesson 08's ablation runner: studies, arms, records, reuse, plots and the command line."""

import dataclasses
import json
from pathlib import Path

import pytest

from mmgeo_utils.cli import main
from mmgeo_utils.data import DatasetConfig
from mmgeo_utils.experiments.ablation import (
    ablation_table,
    arm_config,
    hardest_types,
    plot_study,
    plot_thetas,
    probe_table,
    run_ablation,
    studies,
    theta_curves,
)
from mmgeo_utils.experiments.comparison import MMCLIP_RECIPE, comparison_configs
from mmgeo_utils.experiments.evaluation import evaluate_run, wrong_image_probe
from mmgeo_utils.experiments.lmm_comparison import condition_config
from mmgeo_utils.profiles import get_lmm_sizes


def test_every_study_is_declared_with_the_papers_numbers_and_valid_runs():
    for profile in ("smoke", "cpu", "gpu"):
        for s in studies(profile).values():
            assert s.arms and s.paper_source and len({a.name for a in s.arms}) == len(s.arms)
            for arm in s.arms:
                cfg = arm_config(profile, arm, 0)  # every arm is a valid run of the profile
                assert cfg.profile == profile and (cfg.loss == "clip") == (arm.recipe is None)
    ks = [a.x for a in studies("cpu")["k"].arms]
    assert ks == [1, 2, 4] and max(ks) == DatasetConfig.from_profile("cpu").num_negatives
    assert [a.x for a in studies("gpu")["k"].arms] == [1, 2, 4, 8, 10]
    table3 = {a.name: a.paper for a in studies()["negatives"].arms}
    assert (
        table3["random"] < table3["in-batch"] < table3["rule"] < table3["retrieval"] < table3["image"] < table3["all"]
    )
    # the in-batch arm is lesson 05's CLIP run, and an arm that changes nothing is its MMCLIP run
    base = comparison_configs("smoke", 0)
    assert arm_config("smoke", studies("smoke")["negatives"].arms[0], 0) == base["clip"]
    same = next(a for a in studies("smoke")["negatives"].arms if a.name == "rule")  # the course's recipe
    assert same.recipe["negatives"] == MMCLIP_RECIPE["negatives"] and arm_config("smoke", same, 0) == base["mmclip"]
    rand = arm_config("smoke", next(a for a in studies("smoke")["negatives"].arms if a.name == "random"), 0)
    assert rand.negatives == ("random",) and rand.negative_config().text_slots[0] == "random:0"
    assert rand.run_name().startswith("mmclip-random-k")


def test_a_study_trains_scores_writes_and_is_reused(smoke_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMGEO_DATA_DIR", str(smoke_data.parent))
    monkeypatch.setattr(
        "mmgeo_utils.experiments.ablation.evaluate_run",
        lambda result, **kw: evaluate_run(result, data_root=smoke_data, **kw),
    )
    with pytest.raises(ValueError, match="unknown study 'colour'"):
        run_ablation("colour", "smoke")
    with pytest.raises(ValueError, match="has no arm"):
        run_ablation("robustness", "smoke", arms=["pictures"])
    record = run_ablation("robustness", "smoke", seeds=[0], jobs=1, steps=2)
    saved = json.loads((tmp_path / "results" / "smoke" / "ablation_robustness.json").read_text())["metrics"]
    assert set(saved["arms"]) == {"text negatives", "image negatives"} and saved["overrides"] == {"steps": 2}
    for arm in saved["arms"].values():
        assert 0 <= arm["i2t_fine"]["mean"] <= 1 and set(arm["robustness"]) == {"rotate30", "downscale0.5"}
        assert arm["seeds"][0]["seed"] == 0 and arm["paper"] is not None
    assert 0 < saved["chance"]["i2t_fine"] < 1
    assert "chance" in ablation_table(record).index
    assert plot_study(record).axes  # the paper-shaped figure draws
    again = run_ablation("robustness", "smoke", seeds=[0], jobs=1, steps=2, write=False)
    assert again["arms"] == record["arms"]  # runs and evaluations are reused
    assert main(["experiment", "ablate", "--study", "robustness", "--profile", "smoke", "--seeds", "0",
                 "--steps", "2", "--jobs", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "MMGeoLM Table 7" in out and "image negatives" in out
    with pytest.raises(ValueError, match="written before the probe existed"):
        probe_table(record)  # a study without the probe (or an old record) says how to get one

    # a study with the probe (the marks study's switch) scores every run against another diagram's image too
    probed = {k: dataclasses.replace(s, probe=True) for k, s in studies("smoke").items()}
    monkeypatch.setattr("mmgeo_utils.experiments.ablation.studies", lambda p=None: probed)
    with_probe = run_ablation("robustness", "smoke", seeds=[0], jobs=1, steps=2, write=False)
    for arm in with_probe["arms"].values():
        entry = arm["seeds"][0]
        expected = wrong_image_probe(entry["run"], data_root=smoke_data)["another diagram's image"]
        assert entry["wrong_image_by_type"] == expected and arm["wrong_image"]["all"]["mean"] == expected["all"]
    table = probe_table(with_probe)
    assert table.shape == (4, 4) and list(table.columns) == ["label", "shape", "relation", "number"]
    own = with_probe["arms"]["image negatives"]["seeds"][0]["i2t_fine_by_type"]["label"]
    assert table.loc[("image negatives", "own image"), "label"] == f"{100 * own:.1f} ± 0.0"


def test_with_lmm_every_arm_is_scored_by_lesson_06s_lmm_on_its_own_tower(smoke_data, tmp_path, monkeypatch):
    from mmgeo_utils.lmm.config import stage_dir
    from mmgeo_utils.lmm.evaluate import evaluate_lmm
    from mmgeo_utils.lmm.train import dataset_rows

    monkeypatch.setenv("MMGEO_DATA_DIR", str(smoke_data.parent))
    monkeypatch.setattr(
        "mmgeo_utils.experiments.ablation.evaluate_run",
        lambda result, **kw: evaluate_run(result, data_root=smoke_data, **kw),
    )
    small = {"lm_steps": 2, "align_steps": 2, "sft_steps": 2, "train_scenes": 16}
    record = run_ablation("robustness", "smoke", seeds=[0], jobs=1, steps=2, lmm=True, lmm_overrides=small, write=False)
    assert record["lmm_overrides"] == small and "qa" in ablation_table(record).columns
    towers = set()
    for arm in record["arms"].values():
        entry = arm["seeds"][0]
        assert arm["qa"]["mean"] == entry["qa"] and arm["qa"]["std"] == 0
        cfg = condition_config("smoke", "mmclip", 0, Path(entry["run"]), **small)
        towers.add(cfg.vision)
        root, _ = dataset_rows(cfg, "train", None)
        # the arm's score is its own LMM's, read afresh from the saved model (not a cached or shared number)
        fresh = evaluate_lmm(stage_dir(cfg, "sft") / "model", root, limit=get_lmm_sizes("smoke").eval_questions)
        assert entry["qa"] == fresh["overall"]
    assert len(towers) == 2  # one LMM per arm, each on that arm's encoder


def test_curve_and_bar_studies_plot_from_a_record():
    def arm(x, paper, v):
        m = {"mean": v, "std": 0.01, "n": 3}
        return {"x": x, "paper": paper, "i2t_fine": m, "t2i_fine": m, "i2t_r1": m, "t2i_r1": m, "robustness": {}}

    base = {"seeds": [0, 1, 2], "chance": {"i2t_fine": 0.2}, "title": "t", "paper_source": "p"}
    k = {**base, "study": "k", "arms": {f"K={x}": arm(x, None, 0.3 + x / 100) for x in (1, 2, 4)}}
    bars = {**base, "study": "negatives", "arms": {"in-batch": arm(None, 45.4, 0.3), "all": arm(None, 58.2, 0.4)}}
    for record in (k, bars):
        fig = plot_study(record)
        assert len(fig.axes) == 2
    assert list(ablation_table(bars)["paper"]) == ["45.4", "58.2", "–"]


def test_arms_tested_on_their_own_builds_keep_their_own_chance_level():
    from mmgeo_utils.experiments.ablation import _common_chance

    m = {"mean": 0.3, "std": 0.0, "n": 3}
    arms = {
        name: {"paper": None, "x": None, "t2i_fine": m, "i2t_fine": m, "robustness": {}, "chance": c}
        for name, c in (("with marks", {"i2t_fine": 0.2268, "t2i_fine": 0.2}),
                        ("letters only", {"i2t_fine": 0.2268, "t2i_fine": 0.2158}))
    }  # fmt: skip
    record = {"study": "marks", "seeds": [0, 1, 2], "title": "t", "paper_source": "p", "arms": arms}
    record["chance"] = _common_chance(arms)
    assert record["chance"] == {"i2t_fine": 0.2268}  # t2i_fine differs: no one number stands for both arms
    table = ablation_table(record)
    assert table.loc["chance", "i2t_fine"] == "22.7" and table.loc["chance", "t2i_fine"] == "20.0 / 21.6"
    ax = plot_study(record, "t2i_fine").axes[0]
    assert sorted(round(seg[0][1], 2) for seg in ax.collections[-1].get_segments()) == [20.0, 21.58]


def test_rank_agreement_is_spearmans_rho_of_ours_against_the_paper():
    from mmgeo_utils.experiments.ablation import rank_agreement

    def rec(values, papers):
        arms = {f"a{i}": {"paper": p, "i2t_fine": {"mean": v}} for i, (v, p) in enumerate(zip(values, papers))}
        return {"study": "negatives", "arms": arms}

    assert rank_agreement(rec([0.1, 0.2, 0.3], [40, 50, 60]))["rho"] == pytest.approx(1.0)
    assert rank_agreement(rec([0.3, 0.2, 0.1], [40, 50, 60]))["rho"] == pytest.approx(-1.0)
    # one swap of four: 1 - 6 * 2 / (4 * 15) = 0.8
    r = rank_agreement(rec([0.1, 0.3, 0.2, 0.4], [40, 50, 60, 70]))
    assert r["rho"] == pytest.approx(0.8) and r["ours_order"] == ["a0", "a2", "a1", "a3"]
    with pytest.raises(ValueError, match="fewer than two arms"):
        rank_agreement(rec([0.1], [40]))


def test_theta_curves_read_each_seeds_log_and_name_the_hardest_type(tmp_path):
    """Lesson 08's CE-CLIP plot: θ_k per step from a run's train log; the hardest type is the smallest final θ_k."""
    header = "step,loss,theta_rule:label,theta_rule:shape,theta_rule:relation,theta_rule:number\n"
    logs = {0: "1,5.0,0,0,0,0\n10,4.0,1.5,2.5,0.5,2.0\n", 1: "1,5.0,0,0,0,0\n"}
    entries = []
    for seed, rows in logs.items():
        run = tmp_path / f"run{seed}"
        run.mkdir()
        (run / "train_log.csv").write_text(header + rows)
        entries.append({"seed": seed, "run": str(run)})
    record = {"arms": {"+ IMC + CMR": {"seeds": entries}, "per-anchor": {"seeds": [{"seed": 0, "run": str(tmp_path)}]}}}
    (tmp_path / "train_log.csv").write_text("step,loss\n1,5.0\n")
    curves = theta_curves(record)
    assert list(curves.columns) == ["rule:label", "rule:shape", "rule:relation", "rule:number"]
    assert list(curves.index) == [1, 10] and curves.loc[10, "rule:relation"] == 0.5
    assert hardest_types(record) == ["rule:relation", None]  # seed 1 learned nothing yet: all θ equal
    assert plot_thetas(record).axes[0].get_lines()[2].get_label() == "relation"
    with pytest.raises(ValueError, match="logs no CE-CLIP thresholds"):
        theta_curves(record, "per-anchor")
