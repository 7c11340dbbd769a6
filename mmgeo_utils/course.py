"""Run the course end to end: every notebook, in order, on one profile.

This is the main job behind ``make course`` / ``mmgeo course``. Executed copies
go to ``results/<profile>/notebooks/`` (the committed notebooks keep their smoke
outputs for nbval), figures to ``figures/<profile>/`` via the notebooks' own
``save_fig`` calls, and ``results/<profile>/course.json`` records each notebook's
wall time with the usual provenance. That file is where the timing table of
notebook 00 comes from.

An interrupted run resumes: a notebook that already ran successfully from the same
source on the same profile is not run again (``--force`` runs everything).
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


def course_notebooks(root: Path = NOTEBOOK_DIR) -> list[Path]:
    """The lessons, in order: ``NN_name.ipynb``."""
    return sorted(root.glob("[0-9][0-9]_*.ipynb"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def execute_notebook(src: Path, dst: Path, profile: Profile, timeout: int = 6 * 3600) -> float:
    """Execute ``src`` with ``MMGEO_PROFILE`` set and write the executed copy to ``dst``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)
    old = os.environ.get("MMGEO_PROFILE")
    os.environ["MMGEO_PROFILE"] = profile.name  # the kernel inherits it
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(src.parent)}})
        t0 = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("MMGEO_PROFILE", None)
        else:
            os.environ["MMGEO_PROFILE"] = old
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return seconds


def run_course(profile: Profile | str | None = None, only: list[str] | None = None,
               out_dir: Path | None = None, force: bool = False,
               notebook_dir: Path = NOTEBOOK_DIR) -> int:
    """Run the notebooks in order; return 0 when all succeeded (a failing one stops the run)."""
    profile = get_profile(profile)
    out_dir = Path(out_dir or results_dir(profile) / "notebooks")
    state_path = results_dir(profile) / "course.json"
    state = json.loads(state_path.read_text()).get("metrics", {}) if state_path.exists() else {}
    notebooks = course_notebooks(notebook_dir)
    if not notebooks:
        raise FileNotFoundError(f"no lesson notebooks (NN_name.ipynb) in {notebook_dir}")
    if only:
        available = [p.name for p in notebooks]
        notebooks = [p for p in notebooks if p.name[:2] in {o.zfill(2) for o in only}]
        if not notebooks:
            raise ValueError(f"no notebook matches {only}; have: {available}")
    print(f"mmgeo course: profile {profile.name} ({profile.description}), {len(notebooks)} notebooks",
          flush=True)
    for src in notebooks:
        digest = _sha256(src)
        done = state.get(src.name, {})
        if not force and done.get("status") == "ok" and done.get("source_sha256") == digest:
            print(f"  {src.name}: done earlier in {done['seconds']:.0f} s (skipped)", flush=True)
            continue
        print(f"  {src.name}: running ...", flush=True)
        try:
            seconds = execute_notebook(src, out_dir / src.name, profile)
        except Exception as e:  # record the failure, then stop: later lessons build on this one
            state[src.name] = {"status": "failed", "error": str(e)[-2000:], "source_sha256": digest}
            write_results("course", state, profile=profile)
            print(f"  {src.name}: FAILED — see {out_dir / src.name} and the error above", flush=True)
            raise
        state[src.name] = {"status": "ok", "seconds": round(seconds, 1), "source_sha256": digest,
                           "commit": provenance(profile, None)["commit"]}
        write_results("course", state, profile=profile)
        print(f"  {src.name}: ok in {seconds:.0f} s", flush=True)
    print(f"executed notebooks in {out_dir}, timings in {state_path}", flush=True)
    return 0
