"""The CLIP vs MMCLIP comparison: runs, cached evaluations, the results file."""

import functools
import json
import operator
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmgeo_utils.clip import train
from mmgeo_utils.experiments import (
    aggregate,
    comparison_configs,
    comparison_table,
    evaluate_run,
    merge_comparisons,
    run_comparison,
)
from mmgeo_utils.experiments.jobs import in_processes


def test_both_models_get_the_same_images_per_step_and_steps():
    cfgs = {k: v.resolved() for k, v in comparison_configs("cpu", seed=3).items()}
    images = {k: c.positives_per_step * (1 + c.negative_config().image_slots) for k, c in cfgs.items()}
    assert images["clip"] == images["mmclip"] == 64
    assert cfgs["clip"].steps == cfgs["mmclip"].steps and cfgs["clip"].seed == cfgs["mmclip"].seed == 3
    assert cfgs["clip"].loss == "clip" and cfgs["mmclip"].loss.startswith("mmclip")


def test_relative_cost_counts_tower_inputs_so_mmclip_starts_first():
    from mmgeo_utils.experiments import relative_cost

    cfgs = comparison_configs("cpu", seed=0)
    assert relative_cost(cfgs["mmclip"]) == 3 * relative_cost(cfgs["clip"])  # 6 tower inputs per positive vs 2
    assert relative_cost(comparison_configs("cpu", 0, steps=1000)["clip"]) == 2 * relative_cost(cfgs["clip"])


def test_aggregate_gives_mean_and_sample_std():
    def entry(v):
        return {
            "i2t_fine": v,
            "t2i_fine": v,
            "i2t_with_retrieval": v,
            "i2t_r1": v,
            "t2i_r1": v,
            "i2t_r5": v,
            "t2i_r5": v,
            "i2t_fine_by_type": {"label": v},
            "t2i_fine_by_type": {"relabel": v},
        }

    out = aggregate([entry(0.2), entry(0.4)])
    assert out["i2t_fine"]["mean"] == pytest.approx(0.3) and out["i2t_fine"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert out["i2t_fine_by_type"]["label"]["n"] == 2


def test_run_comparison_writes_per_seed_numbers_and_reuses_evaluations(smoke_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEO_DATA_DIR", str(smoke_data.parent))
    monkeypatch.setattr(
        "mmgeo_utils.experiments.comparison.evaluate_run",
        lambda result, **kw: evaluate_run(result, data_root=smoke_data, **kw),
    )
    # two runs at a time in their own processes, one thread each
    record = run_comparison("smoke", seeds=(0, 1), runs_dir=tmp_path / "runs", progress=False, jobs=2, threads=1)
    saved = json.loads((tmp_path / "results" / "smoke" / "clip_vs_mmclip.json").read_text())
    assert saved["metrics"]["seeds"] == [0, 1] and saved["profile"] == "smoke"
    assert saved["metrics"]["recipe"]["mmclip"]["loss"] == comparison_configs("smoke")["mmclip"].loss
    for name in ("clip", "mmclip"):
        assert [e["seed"] for e in record[name]] == [0, 1]
        # started longest first, returned in the order asked: each entry is its own seed's run
        assert [e["run"] for e in record[name]] == [
            str(tmp_path / "runs" / comparison_configs("smoke", s, threads=1)[name].run_name()) for s in (0, 1)
        ]
        for entry in record[name]:
            assert {"i2t_fine", "t2i_fine", "i2t_r1", "t2i_r1", "i2t_fine_by_type", "t2i_fine_by_type"} <= set(entry)
    table = comparison_table(record)
    assert list(table.columns) == ["clip", "mmclip", "gap (pts)", "chance"]
    # extending with a seed already there reuses its run and must reproduce its numbers
    again = run_comparison("smoke", seeds=(1,), runs_dir=tmp_path / "runs", progress=False, threads=1, extend=True)
    assert again["seeds"] == [0, 1] and again["summary"] == record["summary"]
    alone = train(comparison_configs("smoke", 1, threads=1)["mmclip"], out_dir=tmp_path / "alone", progress=False)
    parallel = load_file(str(tmp_path / "runs" / alone.config.run_name() / "model.safetensors"))
    assert all(torch.equal(t, parallel[k]) for k, t in load_file(str(alone.model_path)).items())  # same weights
    cache = tmp_path / "runs" / comparison_configs("smoke", 0)["clip"].run_name() / "test_eval.json"
    stale = json.loads(cache.read_text())
    stale["version"], stale["result"]["n"] = "0", -1  # a cache from another benchmark version
    cache.write_text(json.dumps(stale))
    result = train(comparison_configs("smoke", 0, threads=1)["clip"], out_dir=cache.parent, resume=True, progress=False)
    assert evaluate_run(result, data_root=smoke_data)["n"] == 16  # recomputed, not served stale


def test_validation_scores_use_the_validation_split_and_name_bad_input(smoke_data, tmp_path):
    from mmgeo_utils.clip.checkpoint import CheckpointError
    from mmgeo_utils.experiments import validation_scores

    cfg = comparison_configs("smoke", 0, steps=1)["mmclip"]
    result = train(cfg, out_dir=tmp_path / "runs" / "a", data_root=smoke_data, progress=False)
    record = validation_scores([result.run_dir], "smoke", data_root=smoke_data)
    (entry,) = record["runs"].values()
    assert record["split"] == "val" and entry["n"] == 16  # the smoke profile's validation split, all of it
    assert entry["config"]["loss"] == cfg.loss and 0.0 <= entry["i2t_fine"] <= 1.0
    saved = json.loads((tmp_path / "results" / "smoke" / "recipe_selection.json").read_text())
    assert saved["metrics"]["runs"]["a"]["i2t_fine"] == entry["i2t_fine"]
    cache = result.run_dir / "val_eval.json"
    stale = json.loads(cache.read_text())
    stale["result"]["n"] = -1
    cache.write_text(json.dumps(stale))
    assert validation_scores([result.run_dir], data_root=smoke_data, write=False)["runs"]["a"]["n"] == -1  # cached
    # the same weights scored on other data: a copy whose validation split's manifest entry differs
    other = tmp_path / "other-data"
    shutil.copytree(smoke_data, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["val"]["metadata_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert validation_scores([result.run_dir], data_root=other, write=False)["runs"]["a"]["n"] == 16
    stale["model_sha256"] = "0" * 64  # a retrained run's cache is stale
    cache.write_text(json.dumps(stale))
    assert validation_scores([result.run_dir], data_root=smoke_data, write=False)["runs"]["a"]["n"] == 16
    (other / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.json not found"):
        validation_scores([result.run_dir], data_root=other, write=False)
    with pytest.raises(ValueError, match="trained on profile 'smoke', not 'cpu'"):
        validation_scores([result.run_dir], "cpu", data_root=smoke_data, write=False)
    with pytest.raises(CheckpointError, match="no config.json"):
        validation_scores([tmp_path / "nothing"], data_root=smoke_data, write=False)
    (result.run_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has not finished"):
        validation_scores([result.run_dir], data_root=smoke_data, write=False)


def test_gap_uncertainty_resamples_items_and_balances_families():
    from mmgeo_utils.experiments import gap_uncertainty

    # 300 diagrams of family a, 100 of b; the model wins every a diagram CLIP loses, ties on b
    families = ["a"] * 300 + ["b"] * 100
    base = np.zeros((2, 400))
    model = np.concatenate([np.ones((2, 300)), np.zeros((2, 100))], axis=1)
    base[:, -1] = model[:, -1] = np.nan  # a diagram without rule negatives counts for neither
    out = gap_uncertainty(base, model, families, n_boot=4000)
    assert out["n_items"] == 399 and out["seeds"] == 2
    assert out["gap"] == pytest.approx(300 / 399)
    assert out["family_balanced_gap"] == pytest.approx(0.5)  # (1 + 0) / 2: the split's 3:1 mix no longer counts
    assert out["by_family"] == {"a": {"gap": 1.0, "n": 300}, "b": {"gap": 0.0, "n": 99}}
    p = 300 / 399
    assert out["bootstrap_se"] == pytest.approx(np.sqrt(p * (1 - p) / 399), rel=0.1)  # a binomial mean's error
    with pytest.raises(ValueError, match="same shape|one shape"):
        gap_uncertainty(base, model[:1], families)


def test_validation_takes_over_earlier_records_only_when_a_run_scored_twice_agrees(smoke_data, tmp_path):
    from mmgeo_utils.experiments import recipe_of, validation_scores

    configs = comparison_configs("smoke", 0, steps=1)
    a, b = (train(configs[m], out_dir=tmp_path / "runs" / m, data_root=smoke_data, progress=False) for m in configs)
    first = validation_scores([a.run_dir], data_root=smoke_data, name="screen")
    path = tmp_path / "results" / "smoke" / "screen.json"
    record = validation_scores([b.run_dir], data_root=smoke_data, write=False, earlier=[path])
    assert set(record["runs"]) == {"clip", "mmclip"}  # the earlier run competes without its folder being read
    assert record["runs"]["clip"]["i2t_fine"] == first["runs"]["clip"]["i2t_fine"]
    assert record["runs"]["clip"]["measured"]["commit"] and "measured" not in record["runs"]["mmclip"]
    assert record["recipes"][recipe_of(record["runs"]["mmclip"]["config"])]["verdict"]["seeds_compared"] == [0]
    again = validation_scores([a.run_dir, b.run_dir], data_root=smoke_data, write=False, earlier=[path])
    assert again["runs"]["clip"]["i2t_fine"] == first["runs"]["clip"]["i2t_fine"]  # scored twice, same numbers
    tampered = json.loads(path.read_text())
    tampered["metrics"]["runs"]["clip"]["i2t_fine"] += 0.5
    path.write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="clip scores i2t_fine .* changed between them"):
        validation_scores([a.run_dir], data_root=smoke_data, write=False, earlier=[path])
    tampered["metrics"] = {"clip": []}  # a comparison record, not a validation record
    path.write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="not a validation record"):
        validation_scores([a.run_dir], data_root=smoke_data, write=False, earlier=[path])


def test_a_recipe_variant_changes_only_the_hard_negative_model_and_its_results_file():
    from mmgeo_utils.experiments import MMCLIP_RECIPE, comparison_name

    course, variant = comparison_configs("cpu", 1), comparison_configs("cpu", 1, recipe={"loss": "negclip"})
    assert variant["clip"] == course["clip"] and variant["mmclip"].loss == "negclip"
    assert variant["mmclip"].negatives == course["mmclip"].negatives == MMCLIP_RECIPE["negatives"]
    assert comparison_name(None) == comparison_name(dict(MMCLIP_RECIPE)) == "clip_vs_mmclip"
    assert (
        comparison_name({"loss": "negclip", "negatives": ("image", "rule")})
        == "clip_vs_mmclip_loss-negclip_negatives-image+rule"
    )
    assert (
        comparison_name({"loss": "negclip", "num_negatives": MMCLIP_RECIPE["num_negatives"]})
        == "clip_vs_mmclip_loss-negclip"
    )  # unchanged keys stay out of the name
    other_weight = 0.5 if MMCLIP_RECIPE["hard_weight"] != 0.5 else 1.0
    assert comparison_configs("cpu", 1, recipe={"hard_weight": other_weight})["mmclip"].hard_weight == other_weight
    assert comparison_name({"hard_weight": other_weight}) == f"clip_vs_mmclip_hard_weight-{other_weight}"


def test_both_models_start_at_the_comparison_temperature_unless_their_weights_bring_one():
    from mmgeo_utils.experiments import COMPARISON_TEMPERATURE, comparison_name

    for profile in ("smoke", "cpu", "gpu"):  # from scratch: both models, the same temperature
        assert {c.temperature for c in comparison_configs(profile, 0).values()} == {COMPARISON_TEMPERATURE}
    assert {c.temperature for c in comparison_configs("paper", 0).values()} == {None}  # pretrained CLIP's own
    other = comparison_configs("cpu", 0, temperature=0.07)
    assert {c.temperature for c in other.values()} == {0.07} and other["clip"].run_name().endswith("-t0.07-s0")
    assert {c.temperature for c in comparison_configs("cpu", 0, temperature=None).values()} == {None}
    assert comparison_name(temperature=COMPARISON_TEMPERATURE) == comparison_name(steps=1000) == "clip_vs_mmclip"
    assert comparison_name(temperature=0.07) == comparison_name(temperature=None) == "clip_vs_mmclip_temperature-0.07"


def _scores(loss, seed, i2t_fine, retrieval, **config):
    from mmgeo_utils.experiments import HEADLINE

    cfg = comparison_configs("cpu", seed, recipe=None if loss == "clip" else {"loss": loss})[
        "clip" if loss == "clip" else "mmclip"
    ]
    cfg = cfg.__class__(**{**cfg.to_dict(), "negatives": tuple(cfg.negatives), "loss": loss, **config}).resolved()
    return {"config": cfg.to_dict(), **{k: retrieval for k in HEADLINE}, "i2t_fine": i2t_fine}


def test_recipes_are_judged_on_seed_means_against_clip_by_both_conditions():
    from mmgeo_utils.experiments import select_recipes

    runs = {f"clip-s{s}": _scores("clip", s, 0.20 + 0.01 * s, 0.30) for s in (0, 1, 2)}
    runs |= {f"good-s{s}": _scores("mmclip", s, 0.31 + 0.01 * s, 0.27) for s in (0, 1, 2)}  # +11, R -3
    runs |= {f"forgets-s{s}": _scores("mmclip+imc_cmr", s, 0.40, 0.20) for s in (0, 1, 2)}  # +19, R -10
    runs |= {f"weak-s{s}": _scores("negclip", s, 0.25, 0.30) for s in (0, 1, 2)}  # +4
    runs |= {"other-seed-s5": _scores("mmclip", 5, 0.50, 0.30, num_negatives=7)}
    out = select_recipes(runs)
    recipes, baseline = out["recipes"], out["criterion"]["baseline"]
    assert baseline.startswith("clip-") and recipes[baseline]["i2t_fine"]["mean"] == pytest.approx(0.21)
    verdicts = {r["loss"] + ("-k7" if "-k7-" in k else ""): r.get("verdict") for k, r in recipes.items()}
    assert verdicts["mmclip"]["meets"] and verdicts["mmclip"]["i2t_fine_gap"] == pytest.approx(0.11)
    assert not verdicts["mmclip+imc_cmr"]["meets"] and "below CLIP" in verdicts["mmclip+imc_cmr"]["why"]
    assert not verdicts["negclip"]["meets"] and "gap +4.0 < 10" in verdicts["negclip"]["why"]
    assert verdicts["mmclip-k7"]["judged"] is False  # seed 5 alone says nothing against seeds 0-2
    assert recipes[out["chosen"]]["loss"] == "mmclip" and "-k7-" not in out["chosen"]
    runs["better-s0"] = _scores("mmclip", 0, 0.45, 0.30, num_negatives=8)  # larger gap, but one seed only
    assert select_recipes(runs)["chosen"] == out["chosen"]
    runs |= {f"better-s{s}": _scores("mmclip", s, 0.45, 0.30, num_negatives=8) for s in (1, 2)}
    assert "-k8-" in select_recipes(runs)["chosen"]  # confirmed on as many seeds, and the larger gap
    del runs["better-s0"], runs["better-s1"], runs["better-s2"]
    del runs["good-s2"]  # two seeds: judged against CLIP's same two, not its three
    two = select_recipes(runs)["recipes"]
    (good,) = [r for r in two.values() if r["loss"] == "mmclip" and r["seeds"] == [0, 1]]
    assert good["verdict"]["seeds_compared"] == [0, 1] and good["verdict"]["i2t_fine_gap"] == pytest.approx(0.11)
    runs["clip-s8"] = _scores("clip", 8, 0.2, 0.3, steps=100)  # a shorter run is its own recipe, by name
    assert select_recipes(runs)["criterion"]["baseline"] is None  # two CLIP recipes: none is the baseline
    del runs["clip-s8"]
    runs["clip-s9"] = _scores("clip", 9, 0.2, 0.3, weight_decay=0.0)  # a setting the name does not carry
    with pytest.raises(ValueError, match="share a name but not a config"):
        select_recipes(runs)


def test_default_jobs_fill_the_cores_at_the_runs_thread_count(monkeypatch):
    from mmgeo_utils.experiments import default_jobs

    monkeypatch.setattr("mmgeo_utils.repro.usable_cores", lambda: 2)
    cpu = list(comparison_configs("cpu", 0).values())  # one thread each
    assert default_jobs(cpu, "cpu") == 2 and default_jobs(cpu[:1], "cpu") == 1 and default_jobs(cpu, "cuda") == 1
    assert default_jobs(list(comparison_configs("smoke", 0).values()), "cpu") == 1  # unpinned: uses every core


def _record(seeds, *, lr=5e-4, clip=0.2, commit="abc"):
    """A results-file record as write_results writes it, with made-up numbers per seed."""

    def entry(seed, v):
        return {
            "seed": seed,
            **{
                k: v + seed / 100
                for k in ("i2t_fine", "t2i_fine", "i2t_with_retrieval", "i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")
            },
            "i2t_fine_by_type": {"label": v},
            "t2i_fine_by_type": {"relabel": v},
        }

    cfg = {"loss": "clip", "steps": 500, "lr": lr, "seed": None, "eval_every": 100, "hard_weight": 1.0}
    return {
        "name": "clip_vs_mmclip",
        "profile": "cpu",
        "commit": commit,
        "device": "cpu:2 cores",
        "created": "t",
        "metrics": {
            "clip": [entry(s, clip) for s in seeds],
            "mmclip": [entry(s, 0.35) for s in seeds],
            "chance": {"i2t_fine": 0.23},
            "recipe": {"clip": cfg, "mmclip": {**cfg, "loss": "mmclip"}},
            "seeds": list(seeds),
        },
    }


def test_merging_comparisons_unites_seeds_and_refuses_records_that_measured_something_else():
    merged = merge_comparisons([_record([0, 1], commit="old"), _record([2, 1], commit="new")])
    assert merged["seeds"] == [0, 1, 2] and [e["seed"] for e in merged["mmclip"]] == [0, 1, 2]
    assert merged["summary"]["clip"]["i2t_fine"]["n"] == 3
    assert merged["gap_mmclip_minus_clip"]["i2t_fine"] == pytest.approx(0.15)
    assert [e["measured"]["commit"] for e in merged["clip"]] == ["old", "new", "new"]  # each seed keeps its origin
    # evaluation cadence does not change what trains; the learning rate does
    cadence = _record([2])
    cadence["metrics"]["recipe"]["clip"]["eval_every"] = 50
    assert merge_comparisons([_record([0]), cadence])["seeds"] == [0, 2]
    before_weights = _record([2])  # a record from before TrainConfig.hard_weight trained with weight 1
    for config in before_weights["metrics"]["recipe"].values():
        assert config.pop("hard_weight") == 1.0
    assert merge_comparisons([_record([0]), before_weights])["seeds"] == [0, 2]
    with pytest.raises(ValueError, match="trained clip differently.*lr"):
        merge_comparisons([_record([0]), _record([2], lr=1e-3)])
    with pytest.raises(ValueError, match="clip seed 1 was measured twice with different numbers"):
        merge_comparisons([_record([0, 1]), _record([1], clip=0.3)])
    other_split = _record([2])
    other_split["metrics"]["chance"] = {"i2t_fine": 0.25}
    with pytest.raises(ValueError, match="chance levels"):
        merge_comparisons([_record([0]), other_split])
    with pytest.raises(ValueError, match="profile"):
        merge_comparisons([_record([0]), {**_record([2]), "profile": "gpu"}])


def test_extending_a_missing_results_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEO_RESULTS_DIR", str(tmp_path / "results"))
    with pytest.raises(FileNotFoundError, match="cannot extend .*clip_vs_mmclip.json"):
        run_comparison("smoke", seeds=(), runs_dir=tmp_path / "runs", progress=False, extend=True)


def test_a_corrupt_results_file_is_named(tmp_path):
    from mmgeo_utils.repro import load_results

    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(ValueError, match="r.json is corrupt"):
        load_results(tmp_path / "r.json")
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ValueError, match="not an mmgeo results file"):
        load_results(tmp_path / "r.json")


def test_in_processes_returns_results_in_call_order_whatever_the_start_order():
    calls = [functools.partial(operator.mul, i, 10) for i in range(4)]
    assert in_processes(calls, 2, first=[3, 1, 0, 2]) == [0, 10, 20, 30]  # spawned processes
    assert in_processes(calls, 1) == [0, 10, 20, 30]  # here, one after another
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        in_processes(calls, 0)


def test_wrong_image_probe_scores_the_own_image_as_the_benchmark_does_and_another_as_a_caption_prior(
    smoke_data, tmp_path
):
    from mmgeo_utils.clip.evaluate import ERROR_TYPES
    from mmgeo_utils.experiments.evaluation import wrong_image_probe

    cfg = comparison_configs("smoke", 0, steps=2)["mmclip"]
    result = train(cfg, out_dir=tmp_path / "runs" / "a", data_root=smoke_data, progress=False)
    probe = wrong_image_probe(result.run_dir, data_root=smoke_data)
    bench = evaluate_run(result, data_root=smoke_data)["i2t_fine"]
    assert probe["own image"] == {k: bench[k]["acc"] for k in ("all", *ERROR_TYPES)}
    wrong = probe["another diagram's image"]
    assert set(wrong) == set(probe["own image"]) and all(0.0 <= v <= 1.0 for v in wrong.values())
