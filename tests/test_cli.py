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
    for argv in (["data", "build"], ["bench", "diagrams"], ["bench", "negatives"], ["course"]):
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
