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
