"""The main job: notebooks run in order, timings recorded, an interrupted run resumes."""

import json

import nbformat
import pytest

from mmgeo_utils.course import code_sha256, run_course


def _notebook(path, source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def lessons(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEO_RESULTS_DIR", str(tmp_path / "results"))
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    # the kernel must see the profile the course was started with
    _notebook(nbdir / "00_a.ipynb", "import os\nassert os.environ['MMGEO_PROFILE'] == 'smoke'")
    _notebook(nbdir / "01_b.ipynb", "x = 1 + 1")
    _notebook(nbdir / "notes.ipynb", "raise RuntimeError('not a lesson: must not run')")
    return nbdir


@pytest.mark.slow
def test_course_runs_in_order_records_times_and_resumes(lessons, tmp_path, capsys):
    out = tmp_path / "executed"
    assert run_course("smoke", out_dir=out, notebook_dir=lessons) == 0
    assert sorted(p.name for p in out.glob("*.ipynb")) == ["00_a.ipynb", "01_b.ipynb"]
    record = json.loads((tmp_path / "results" / "smoke" / "course.json").read_text())
    assert record["profile"] == "smoke" and "commit" in record
    assert {k: v["status"] for k, v in record["metrics"].items() if k != "total_seconds"} == {
        "00_a.ipynb": "ok",
        "01_b.ipynb": "ok",
    }
    assert (out / "course_state.json").exists()  # the resume state lives beside the executed copies

    # a lesson whose code changed runs again; an unchanged one is skipped, and so is one whose prose changed
    _notebook(lessons / "01_b.ipynb", "x = 2 + 2")
    nb = nbformat.read(lessons / "00_a.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("## Exercises"))
    nbformat.write(nb, lessons / "00_a.ipynb")
    capsys.readouterr()
    run_course("smoke", out_dir=out, notebook_dir=lessons)
    log = capsys.readouterr().out
    assert "00_a.ipynb: done earlier" in log and "01_b.ipynb: ok" in log

    # an executed copy that is gone is run again, whatever the state file says
    (out / "00_a.ipynb").unlink()
    run_course("smoke", out_dir=out, notebook_dir=lessons)
    log = capsys.readouterr().out
    assert "00_a.ipynb: ok" in log and "01_b.ipynb: done earlier" in log


@pytest.mark.slow
def test_a_committed_timing_record_never_skips_a_lesson(lessons, tmp_path, capsys):
    """The bug of a fresh clone: results/<profile>/course.json is committed, and must not count as work done."""
    record = tmp_path / "results" / "smoke" / "course.json"
    record.parent.mkdir(parents=True)
    claim = {"status": "ok", "seconds": 1.0}
    record.write_text(
        json.dumps(
            {
                "profile": "smoke",
                "metrics": {
                    name: {**claim, "code_sha256": code_sha256(lessons / name)} for name in ("00_a.ipynb", "01_b.ipynb")
                },
            }
        )
    )
    run_course("smoke", out_dir=tmp_path / "executed", notebook_dir=lessons)
    log = capsys.readouterr().out
    assert "00_a.ipynb: ok" in log and "01_b.ipynb: ok" in log and "skipped" not in log


@pytest.mark.slow
def test_failing_notebook_stops_the_course_and_is_recorded(lessons, tmp_path):
    _notebook(lessons / "00_a.ipynb", "raise ValueError('broken lesson')")
    with pytest.raises(Exception, match="broken lesson"):
        run_course("smoke", out_dir=tmp_path / "executed", notebook_dir=lessons)
    state = json.loads((tmp_path / "executed" / "course_state.json").read_text())
    assert state["00_a.ipynb"]["status"] == "failed"
    assert "01_b.ipynb" not in state  # later lessons build on earlier ones


def test_unknown_notebook_selection_is_an_error(lessons):
    with pytest.raises(ValueError, match="no notebook matches"):
        run_course("smoke", only=["07"], notebook_dir=lessons)
