"""The `mmgeo` command line: user errors are one clear line, not a traceback."""

import subprocess
import sys

from mmgeo_utils.cli import build_parser, main


def test_unknown_profile_is_a_clear_error(capsys):
    assert main(["course", "--profile", "laptop"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'laptop'" in err and "smoke, cpu, gpu, paper" in err


def test_every_command_takes_a_profile():
    parser = build_parser()
    for argv in (
        ["data", "build"],
        ["bench", "diagrams"],
        ["bench", "negatives"],
        ["bench", "train"],
        ["course"],
        ["train-clip"],
        ["eval-clip", "--checkpoint", "x"],
        ["experiment", "clip-vs-mmclip"],
        ["experiment", "validate", "x"],
    ):
        assert parser.parse_args(argv + ["--profile", "smoke"]).profile == "smoke"


def test_module_entry_point_prints_help():
    out = subprocess.run([sys.executable, "-m", "mmgeo_utils", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "mmgeo data build" in out.stdout


def test_bench_negatives_prints_json_last(capsys, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("MMGEO_RESULTS_DIR", str(tmp_path))
    assert main(["bench", "negatives", "--profile", "smoke", "--n", "2", "--retrieval-n", "300"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["retrieval_n"] == 300 and last["image_negatives_per_s"] > 0 and last["k"] == 2
    assert (tmp_path / "smoke" / "bench_negatives_n300.json").exists()


def test_train_and_eval_clip_from_the_command_line(smoke_data, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    argv = [
        "train-clip",
        "--profile",
        "smoke",
        "--loss",
        "negclip",
        "--negatives",
        "rule,retrieval",
        "--steps",
        "2",
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        "--workers",
        "0",
        "--quiet",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2
    assert main(argv) == 2  # the run exists: an error that says how to resume, not an overwrite
    assert "--resume" in capsys.readouterr().err
    assert (
        main(
            [
                "eval-clip",
                "--profile",
                "smoke",
                "--checkpoint",
                str(out),
                "--data",
                str(smoke_data),
                "--out",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "i2t_fine" in printed and "chance_%" in printed
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 16
    assert main(["experiment", "validate", str(out), "--profile", "smoke", "--data", str(smoke_data)]) == 0
    assert out.name in capsys.readouterr().out and (tmp_path / "results" / "smoke" / "recipe_selection.json").exists()
    assert main(["experiment", "validate", str(out), "--profile", "cpu", "--data", str(smoke_data)]) == 2
    assert "trained on profile 'smoke'" in capsys.readouterr().err
    # a run against itself: no gap, and no noise in it
    assert main(["experiment", "gap-noise", "--clip", str(out), "--mmclip", str(out), "--data", str(smoke_data)]) == 0
    assert "i2t_fine gap +0.0 ± 0.0 (item-bootstrap SE, 16 diagrams, 1 seed(s))" in capsys.readouterr().out
    saved = json.loads((tmp_path / "results" / "smoke" / "gap_noise_val.json").read_text())["metrics"]
    assert saved["split"] == "val" and saved["gap"] == 0.0 and sum(f["n"] for f in saved["by_family"].values()) == 16


def test_training_errors_are_one_line(capsys, tmp_path):
    assert main(["train-clip", "--profile", "smoke", "--negatives", "image,paraphrase"]) == 2
    assert "unknown negative source" in capsys.readouterr().err
    assert main(["eval-clip", "--profile", "smoke", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def _fake_run(folder, profile="smoke", nan=False):
    """A finished run folder without training: its config.json and random (or NaN) weights at its image size."""
    import json

    import torch

    from mmgeo_utils.clip import MODEL_FILE, TrainConfig
    from mmgeo_utils.clip.checkpoint import save_model
    from mmgeo_utils.clip.models import create_clip
    from mmgeo_utils.profiles import get_profile

    cfg = TrainConfig(profile=profile, loss="clip").resolved()
    model = create_clip(cfg.model, image_size=get_profile(profile).image_size)
    if nan:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_model(folder / MODEL_FILE, model)
    return folder, model


def test_eval_clip_takes_model_and_image_size_from_the_run(smoke_data, tmp_path, capsys, monkeypatch):
    import json

    run, _ = _fake_run(tmp_path / "run")  # a smoke run (64 px) evaluated without --profile: the default is cpu (96 px)
    monkeypatch.delenv("MMGEO_PROFILE", raising=False)
    out = tmp_path / "new" / "eval.json"
    assert main(["eval-clip", "--checkpoint", str(run), "--data", str(smoke_data), "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["n"] == 16 and "negatives_dropped_truncated" in saved
    capsys.readouterr()
    # the model file itself, inside its run folder, is read the same way
    assert main(["eval-clip", "--checkpoint", str(run / "model.safetensors"), "--data", str(smoke_data)]) == 0
    capsys.readouterr()
    # a profile given explicitly must be the run's
    assert main(["eval-clip", "--checkpoint", str(run), "--profile", "cpu", "--data", str(smoke_data)]) == 2
    assert "trained on profile 'smoke', not 'cpu'" in capsys.readouterr().err


def test_eval_clip_names_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    import torch

    from mmgeo_utils.clip.checkpoint import save_training_state

    run, model = _fake_run(tmp_path / "run")
    weights = (run / "model.safetensors").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = {"garbage.safetensors": b"not a safetensors file", "truncated.safetensors": weights[: len(weights) // 2]}
    for name, data in cases.items():
        (bad / name).write_bytes(data)
    optimizer = torch.optim.AdamW(model.parameters())
    save_training_state(
        run / "state.safetensors",
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        step=1,
    )
    expected = {
        bad / "garbage.safetensors": "is corrupt or not a safetensors file",
        bad / "truncated.safetensors": "is corrupt or not a safetensors file",
        run / "state.safetensors": "is a training state",
        bad / "missing.safetensors": "not found",
    }
    for path, message in expected.items():
        assert main(["eval-clip", "--profile", "smoke", "--checkpoint", str(path)]) == 2, path
        err = capsys.readouterr().err
        assert message in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_eval_clip_refuses_a_nan_model(smoke_data, tmp_path, capsys):
    run, _ = _fake_run(tmp_path / "run", nan=True)
    assert (
        main(
            ["eval-clip", "--checkpoint", str(run), "--profile", "smoke", "--data", str(smoke_data), "--device", "cpu"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "embeddings contain NaN/inf" in err and "did training diverge?" in err


def test_eval_clip_checks_its_output_before_evaluating(tmp_path, capsys, monkeypatch):
    def no_benchmark(*args, **kwargs):
        raise AssertionError("the benchmark ran before --out was checked")

    monkeypatch.setattr("mmgeo_utils.experiments.evaluation.evaluate_checkpoint", no_benchmark)
    run, _ = _fake_run(tmp_path / "run")
    (tmp_path / "a_file").write_text("")
    for out, message in ((tmp_path / "a_file" / "eval.json", "cannot be written"), (tmp_path, "is a folder")):
        assert main(["eval-clip", "--profile", "smoke", "--checkpoint", str(run), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
