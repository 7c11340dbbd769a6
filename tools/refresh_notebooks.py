#!/usr/bin/env python
"""Re-execute notebooks in place on the ``smoke`` profile and strip widget state.

Committed notebooks carry the outputs of a smoke run: nbval (``pytest``) re-runs
them and compares the cells marked ``# NBVAL_CHECK_OUTPUT``. Run this after editing
a notebook:

    python tools/refresh_notebooks.py notebooks/01_diagram_generation.ipynb
    python tools/refresh_notebooks.py notebooks/solutions/01_solutions.ipynb
    python tools/refresh_notebooks.py            # all lessons, then all exercise solutions
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def strip_widget_state(nb) -> None:
    """Saved widget state makes GitHub render "Invalid Notebook"; widgets are live-only."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            data.pop("application/vnd.jupyter.widget-view+json", None)


def refresh(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ["MMGEO_PROFILE"] = "smoke"
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    strip_widget_state(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or (
        sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        + sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_solutions.ipynb"))
    )
    for p in paths:
        print(f"{p.name}: {refresh(p):.1f} s on smoke", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
