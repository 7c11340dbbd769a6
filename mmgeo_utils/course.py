"""Run the course end to end: every notebook, in order, on one profile.

This is the main job behind ``make course`` / ``mmgeo course``. Executed copies
go to ``results/<profile>/notebooks/`` (git ignores them; the committed notebooks
keep their smoke outputs for nbval), figures to ``figures/<profile>/`` via the
notebooks' own ``save_fig`` calls, and ``results/<profile>/course.json`` records
each notebook's wall time with the usual provenance (git ignores it: it says what ran
on this machine). Notebook 00's timing table reads it; the README's course times are
copied from it into docs/results.md.

An interrupted run resumes: a notebook is skipped only when *this machine* ran its
current code (:func:`code_sha256`: its code cells; editing prose reruns nothing) on the
same profile and its executed copy is still there.
That resume state lives beside the executed copies (``course_state.json``), never
in ``course.json``, and neither is committed: a fresh clone carries no claim that
anything ran here (``--force`` runs all).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .profiles import Profile, get_profile
from .repro import REPO_ROOT, provenance, results_dir, write_results

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
STATE_FILE = "course_state.json"


def course_notebooks(root: Path = NOTEBOOK_DIR) -> list[Path]:
    """The lessons, in order: ``NN_name.ipynb``."""
    return sorted(root.glob("[0-9][0-9]_*.ipynb"))


def code_sha256(notebook) -> str:
    """The hash of a notebook's code: its code cells' sources, in order (outputs and markdown aside).

    ``notebook`` is a path or an ``nbformat`` notebook. What ran is decided by this hash, so a
    lesson whose prose changed need not run again, and a published copy stays current.
    """
    import nbformat  # local: nbformat only reads notebooks

    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, (str, Path)) else notebook
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode())
            h.update(b"\0")
    return h.hexdigest()


def execute_notebook(src: Path, dst: Path, profile: Profile, timeout: int = 6 * 3600) -> float:
    """Execute ``src`` with ``MMGEO_PROFILE`` set and write the executed copy to ``dst``."""
    import nbformat  # local: nbformat only reads notebooks
    from nbclient import NotebookClient  # local: nbclient only runs notebooks

    nb = nbformat.read(src, as_version=4)
    old = os.environ.get("MMGEO_PROFILE")
    os.environ["MMGEO_PROFILE"] = profile.name  # the kernel inherits it
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}}
        )
        t0 = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("MMGEO_PROFILE", None)
        else:
            os.environ["MMGEO_PROFILE"] = old
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".ipynb.partial")
    nbformat.write(nb, tmp)
    tmp.replace(dst)  # an executed copy on disk is always a complete one
    return seconds


def _read_state(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        print(f"  {path} is not valid JSON (an interrupted write?): running every lesson again", flush=True)
        return {}


def _write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)


def run_course(
    profile: Profile | str | None = None,
    only: list[str] | None = None,
    out_dir: Path | None = None,
    force: bool = False,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> int:
    """Run the notebooks in order; return 0 when all succeeded (a failing one stops the run)."""
    profile = get_profile(profile)
    out_dir = Path(out_dir or results_dir(profile) / "notebooks")
    state_path = out_dir / STATE_FILE  # what ran on this machine, beside what it produced
    state = _read_state(state_path)
    notebooks = course_notebooks(notebook_dir)
    if not notebooks:
        raise FileNotFoundError(f"no lesson notebooks (NN_name.ipynb) in {notebook_dir}")
    if only:
        available = [p.name for p in notebooks]
        notebooks = [p for p in notebooks if p.name[:2] in {o.zfill(2) for o in only}]
        if not notebooks:
            raise ValueError(f"no notebook matches {only}; have: {available}")
    print(f"mmgeo course: profile {profile.name} ({profile.description}), {len(notebooks)} notebooks", flush=True)
    for src in notebooks:
        digest = code_sha256(src)
        done = state.get(src.name, {})
        if (
            not force
            and done.get("status") == "ok"
            and done.get("code_sha256") == digest
            and (out_dir / src.name).exists()
        ):
            print(f"  {src.name}: done earlier on this machine in {done['seconds']:.0f} s (skipped)", flush=True)
            continue
        print(f"  {src.name}: running ...", flush=True)
        try:
            seconds = execute_notebook(src, out_dir / src.name, profile)
        except Exception as e:  # record the failure, then stop: later lessons build on this one
            state[src.name] = {"status": "failed", "error": str(e)[-2000:], "code_sha256": digest}
            _write_state(state_path, state)
            print(f"  {src.name}: FAILED — see the error above", flush=True)
            raise
        state[src.name] = {
            "status": "ok",
            "seconds": round(seconds, 1),
            "code_sha256": digest,
            "commit": provenance(profile, None)["commit"],
        }
        _write_state(state_path, state)
        _record_timings(profile, state)
        print(f"  {src.name}: ok in {seconds:.0f} s", flush=True)
    print(f"executed notebooks in {out_dir}, timings in {results_dir(profile) / 'course.json'}", flush=True)
    return 0


def _record_timings(profile: Profile, state: dict) -> None:
    """``results/<profile>/course.json``: the wall time of each lesson that ran here (not committed;
    docs/results.md quotes the numbers). It is a record, never resume state."""
    timings = {
        name: {k: v for k, v in entry.items() if k != "error"}
        for name, entry in sorted(state.items())
        if entry.get("status") == "ok"
    }
    timings["total_seconds"] = round(sum(e["seconds"] for e in timings.values()), 1)
    write_results("course", timings, profile=profile)
