"""``mmgeo bench course``: a dry-run estimate of every lesson's time and the course's memory."""

import json

from mmgeo_utils.course import course_notebooks
from mmgeo_utils.experiments import course_bench


def test_bench_course_estimates_every_lesson_from_measured_pieces(monkeypatch, capsys):
    from mmgeo_utils import cli

    result = course_bench.bench_course("smoke", device="cpu", scenes=1, steps=1)
    lessons = result["lessons_s"]
    assert set(lessons) | set(result["not_estimated"]) == {nb.stem for nb in course_notebooks()}
    assert all(v > 0 for v in lessons.values()) and abs(result["total_s"] - sum(lessons.values())) < 0.5
    assert result["per_scene_s"]["with_negatives"] > result["per_scene_s"]["positives_only"] > 0
    for run in result["train"].values():
        assert run["step_s"] > 0 and run["steps"] == 3 and run["eval_samples"] == 16  # smoke's sizes
    # lesson 04 trains the two models the comparison defines, for the profile's steps
    assert lessons["04_training_mmclip"] >= min(r["step_s"] * r["steps"] for r in result["train"].values())
    m = result["memory"]
    assert m["host_estimate_gib"] >= m["host_peak_measured_gib"] > 0 and 0 < m["bytes_per_train_row"] < 20_000
    text = course_bench.format_estimate(result)
    assert "02_negative_construction" in text and "total" in text and "host memory" in text

    monkeypatch.setattr(course_bench, "bench_course", lambda profile, **kw: result)  # the CLI prints it
    assert cli.main(["bench", "course", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("make course on smoke") and json.loads(out[-1])["profile"] == "smoke"
