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
    for argv in (["data", "build"], ["bench", "diagrams"], ["bench", "negatives"], ["bench", "train"], ["course"],
                 ["train-clip"], ["eval-clip", "--checkpoint", "x"], ["experiment", "clip-vs-mmclip"],
                 ["experiment", "validate", "x"]):
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
    argv = ["train-clip", "--profile", "smoke", "--loss", "negclip", "--negatives", "rule,retrieval", "--steps", "2",
            "--data", str(smoke_data), "--out", str(out), "--workers", "0", "--quiet"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2
    assert main(argv) == 2  # the run exists: an error that says how to resume, not an overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(["eval-clip", "--profile", "smoke", "--checkpoint", str(out), "--data", str(smoke_data),
                 "--out", str(tmp_path / "eval.json")]) == 0
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
