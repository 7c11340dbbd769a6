"""Lesson 06's experiment, benchmark and command line."""

import json

import numpy as np
import pytest

from mmgeo_utils.cli import main
from mmgeo_utils.clip import train
from mmgeo_utils.data import load_split
from mmgeo_utils.experiments import comparison_configs
from mmgeo_utils.experiments.lmm_comparison import comparison_table, paired_bootstrap, run_lmm_comparison
from mmgeo_utils.lmm.balance import balanced_questions

SMALL = {"lm_steps": 2, "align_steps": 2, "sft_steps": 2, "train_scenes": 16}


def test_paired_bootstrap_interval_brackets_the_paired_difference():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(2, 400))
    b = a.copy()
    b[:, :100] = 1  # b is right wherever a is, and on some more questions
    r = paired_bootstrap(a, b)
    assert r["mean"] == pytest.approx((b.mean(0) - a.mean(0)).mean())
    assert 0 < r["low"] < r["mean"] < r["high"] and r["n_questions"] == 400
    same = paired_bootstrap(a, a)
    assert same["mean"] == same["low"] == same["high"] == 0


def test_lmm_comparison_writes_four_conditions_with_baselines_and_intervals(smoke_data, tmp_path):
    for cfg in comparison_configs("smoke", 0).values():  # lesson 05's encoders of seed 0, at smoke size
        train(cfg, data_root=smoke_data, progress=False)
    record = run_lmm_comparison("smoke", seeds=[0], data_root=smoke_data, limit=12, **SMALL)
    saved = json.loads((tmp_path / "results" / "smoke" / "lmm_comparison.json").read_text())["metrics"]
    assert set(saved["conditions"]) == {"blind", "random", "clip", "mmclip"} and saved["seeds"] == [0]
    for r in saved["conditions"].values():
        assert [s["seed"] for s in r["seeds"]] == [0] and 0 <= r["overall"]["mean"] <= 1
        assert set(r["by_kind"]) <= {"length", "angle", "yes_no", "which", "shape"}
    assert saved["conditions"]["clip"]["seeds"][0]["vision"].endswith(comparison_configs("smoke", 0)["clip"].run_name())
    assert set(saved["majority_baseline"]) == set(saved["conditions"]["blind"]["by_kind"])
    assert {"mmclip_minus_clip", "clip_minus_blind"} <= set(saved["paired_bootstrap"])
    b = saved["paired_bootstrap"]["mmclip_minus_clip"]
    # the first 12 test questions, yes/no balanced per relation (the one-answer ones left out, and counted)
    scored, selection = balanced_questions(load_split(smoke_data, "test"), 12)
    assert b["low"] <= b["mean"] <= b["high"] and b["n_questions"] == len(scored) < 12
    assert saved["yes_no_selection"]["relations"] == selection.relations
    assert "majority answer" in comparison_table(record).index
    again = run_lmm_comparison("smoke", seeds=[0], data_root=smoke_data, limit=12, write=False, **SMALL)
    assert again["conditions"] == record["conditions"]  # trained runs and scores are reused, not redone


def test_conditions_trained_two_at_a_time_match_one_after_another(smoke_data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    clip = train(comparison_configs("smoke", 0)["clip"], data_root=smoke_data, progress=False).run_dir
    kw = dict(seeds=[0], conditions=["random", "clip"], clip_runs=[clip], data_root=smoke_data, limit=8, write=False)
    records = {}
    for jobs in (1, 2):
        monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / f"jobs{jobs}"))
        records[jobs] = run_lmm_comparison("smoke", jobs=jobs, threads=1, **kw, **SMALL)
    for cond in ("random", "clip"):
        one, two = (records[j]["conditions"][cond]["seeds"][0] for j in (1, 2))
        assert one["overall"] == two["overall"] and one["by_kind"] == two["by_kind"]
        weights = [load_file(f"{r['run']}/model/projector.safetensors") for r in (one, two)]
        assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])  # the same weights, bit for bit


def test_lmm_comparison_names_a_missing_encoder_before_training(smoke_data):
    with pytest.raises(FileNotFoundError, match="the clip encoder of seed 0 is not trained"):
        run_lmm_comparison("smoke", seeds=[0], data_root=smoke_data, **SMALL)
    with pytest.raises(ValueError, match="one run per seed"):
        run_lmm_comparison("smoke", seeds=[0, 1], clip_runs=["a"], data_root=smoke_data, **SMALL)


def test_cli_trains_scores_and_names_bad_input(smoke_data, capsys):
    args = [
        "--profile",
        "smoke",
        "--vision",
        "none",
        "--data",
        str(smoke_data),
        "--lm-steps",
        "2",
        "--align-steps",
        "2",
        "--sft-steps",
        "2",
        "--train-scenes",
        "16",
    ]
    assert main(["train-lmm", *args]) == 0
    assert main(["eval-lmm", *args, "--limit", "8"]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "majority" in out and "yes/no questions left out to balance them" in out
    assert main(["train-lmm", "--profile", "smoke", "--vision", "clip-nowhere", "--data", str(smoke_data)]) == 2
    assert "unknown vision run 'clip-nowhere'" in capsys.readouterr().err
    assert main(["eval-lmm", "--profile", "smoke", "--vision", "random", "--data", str(smoke_data)]) == 2
    assert "no trained LMM" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-lmm", "--profile", "smoke", "--vision", "none", "--full", "--lora-r", "4"])


def test_bench_lmm_reports_rates_cache_and_memory(smoke_data, capsys):
    assert main(["bench", "lmm", "--profile", "smoke", "--steps", "1", "--data", str(smoke_data)]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["feature_cache_hit"] == {"first_call": False, "second_call": True}
    for stage in ("lm", "align", "sft"):
        assert r[stage]["samples_per_s"] > 0 and r[stage]["tokens_per_s"] > 0
    assert r["peak_memory_mib"] > 0 and r["estimate_s"]["four_conditions_one_seed"] > r["estimate_s"]["stage_lm"]


def test_torchrun_two_processes_on_cpu_train_like_one(smoke_data, tmp_path):
    """CI's proof of the multi-GPU path: 2 gloo processes, each half of every batch, end where 1 process ends."""
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from mmgeo_utils.lmm.config import LMMConfig, stage_dir

    args = [
        "train-lmm",
        "--profile",
        "smoke",
        "--vision",
        "random",
        "--data",
        str(smoke_data),
        "--lm-steps",
        "2",
        "--align-steps",
        "2",
        "--sft-steps",
        "2",
        "--train-scenes",
        "16",
        "--threads",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    folders = {}
    for name, launcher in (
        ("one", [sys.executable, "-m", "mmgeo_utils"]),
        (
            "two",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_port",
                str(_free_port()),
                "-m",
                "mmgeo_utils",
            ],
        ),
    ):
        env["MMGEO_RUNS_DIR"] = str(tmp_path / name)
        out = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        os.environ["MMGEO_RUNS_DIR"] = str(tmp_path / name)
        cfg = LMMConfig(
            profile="smoke", vision="random", lm_steps=2, align_steps=2, sft_steps=2, train_scenes=16, threads=1
        )
        folders[name] = stage_dir(cfg, "sft")
    two = json.loads((folders["two"] / "summary.json").read_text())
    assert two["world_size"] == 2 and two["steps"] == 2
    for f in ("model/adapter/adapter_model.safetensors", "model/projector.safetensors"):
        a, b = load_file(str(folders["one"] / f)), load_file(str(folders["two"] / f))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
