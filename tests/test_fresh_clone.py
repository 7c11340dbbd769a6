"""A fresh clone runs the whole course: committed results never stand in for work this machine has not done."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmgeo_utils.course import code_sha256, course_notebooks

ROOT = Path(__file__).resolve().parent.parent


def _fresh_copy(dst: Path) -> Path:
    """The files git tracks (what a clone holds), nothing else: no venv, data, runs or executed notebooks."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


@pytest.mark.slow
def test_fresh_copy_runs_every_lesson_on_smoke(tmp_path):
    repo = _fresh_copy(tmp_path / "clone")
    lessons = course_notebooks(repo / "notebooks")
    # what an earlier course run commits: timings that claim every lesson was done from this source
    record = repo / "results" / "smoke" / "course.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps(
            {
                "profile": "smoke",
                "device": "cpu:2 cores, the machine that committed it",
                "metrics": {p.name: {"status": "ok", "seconds": 1.0, "code_sha256": code_sha256(p)} for p in lessons},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMGEO_")}
    env.update(PYTHONPATH=str(repo), MMGEO_DATA_DIR=str(tmp_path / "data"), MMGEO_RUNS_DIR=str(tmp_path / "runs"))
    out = subprocess.run(
        [sys.executable, "-m", "mmgeo_utils", "course", "--profile", "smoke"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for p in lessons:
        assert f"{p.name}: ok" in out.stdout, out.stdout
        assert (repo / "results" / "smoke" / "notebooks" / p.name).exists()
    assert "skipped" not in out.stdout
