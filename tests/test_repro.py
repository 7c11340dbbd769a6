"""Provenance: what a result file says about the machine that measured it."""

import os

from mmgeo_utils import repro


def test_usable_cores_follow_the_affinity_not_the_machine(monkeypatch):
    assert 1 <= repro.usable_cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        monkeypatch.setattr(os, "cpu_count", lambda: 64)
        assert repro.usable_cores() == 1  # a container allowed one core of 64


def test_cpu_device_string_names_the_processor(monkeypatch):
    monkeypatch.setattr(repro, "detect_device", lambda: "cpu")
    monkeypatch.setattr(repro, "cpu_model", lambda: "Example CPU 9000")
    monkeypatch.setattr(repro, "usable_cores", lambda: 3)
    text = repro.describe_device()
    assert text.startswith("cpu:3 cores, Example CPU 9000 (") and "torch " in text


def test_cpu_model_is_never_empty():
    assert repro.cpu_model().strip()


def test_rewritten_outputs_do_not_make_the_commit_dirty(tmp_path):
    import subprocess

    def git(*a):
        return subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *a],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "init")
    clean = repro.git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "results" / "r.json").write_text('{"a": 1}')  # a run rewrote its own output
    assert repro.git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")  # the code changed
    assert repro.git_commit(tmp_path) == clean + "+dirty"
