"""``mmgeo reproduce``: its steps, their order, resuming after a failure, and the record it writes."""

import json

import pytest

from mmgeo_utils.experiments.ablation import studies
from mmgeo_utils.reproduce import STEPS, STUDY_NAMES, Step, reproduce, summary_table


def test_the_steps_cover_every_study_and_end_with_lesson_08():
    names = [s.name for s in STEPS]
    assert set(STUDY_NAMES) == set(studies("cpu")) and names[0] == "course" and names[-1] == "lesson-08"
    assert {f"ablate-{s}" for s in STUDY_NAMES} <= set(names)


def test_steps_run_in_order_a_failure_stops_and_is_recorded(tmp_path):
    calls = []

    def ok(name):
        return Step(name, f"{name}.json", lambda p, seeds: calls.append((name, p.name, seeds)))

    def boom(p, seeds):
        raise ValueError("no data")

    steps = [ok("a"), Step("b", "b.json", boom), ok("c")]
    with pytest.raises(ValueError, match="unknown step"):
        reproduce("smoke", only=["z"], steps=steps)
    done = reproduce("smoke", steps=steps, seeds=[0, 1])
    assert calls == [("a", "smoke", [0, 1])]  # c never ran: it builds on b
    assert [d["status"][:6] for d in done] == ["ok", "failed"] and "no data" in done[1]["status"]
    saved = json.loads((tmp_path / "results" / "smoke" / "reproduce.json").read_text())["metrics"]
    assert [d["step"] for d in saved["steps"]] == ["a", "b"] and saved["seeds"] == [0, 1]
    calls.clear()
    assert [d["step"] for d in reproduce("smoke", only=["c", "a"], steps=steps)] == ["a", "c"]  # table order
    assert "minutes" in summary_table(done) and "failed" in summary_table(done)
