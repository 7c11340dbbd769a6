#!/usr/bin/env python
"""Give every lesson its "Open in Colab" badge and its Colab install cell (idempotent).

The badge goes at the end of the title cell; the install cell is the first code cell.
In Colab it clones the course and installs its package over Colab's own torch (the
package asks only for ``torch>=2.3``, which Colab's satisfies); anywhere else it does
nothing. Run after adding a lesson:

    python tools/colab_cells.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmgeo_utils.course import course_notebooks  # noqa: E402

REPOSITORY = "mmgeo/mmgeo"  # owner/name on GitHub: the one place the badges and the install cell take it from
BADGE_MARK = "colab-badge.svg"
INSTALL_MARK = "# Colab only:"


def badge(notebook: Path) -> str:
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook.name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/{BADGE_MARK})]({url})"


INSTALL_CELL = f"""{INSTALL_MARK} fetch the course and install its package, keeping Colab's own torch. Elsewhere a no-op.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    if not os.path.isdir("/content/mmgeo"):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/{REPOSITORY}", "/content/mmgeo"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", "/content/mmgeo"], check=True)
    sys.path.insert(0, "/content/mmgeo")  # this kernel started before the install
    os.chdir("/content/mmgeo/notebooks")
    os.environ.setdefault("MMGEO_PROFILE", "colab")  # sized for a T4 and 2 vCPUs"""


def apply(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    changed = False
    title = nb.cells[0]
    lines = title.source.splitlines()
    if BADGE_MARK not in title.source:
        lines.insert(1, "")
        lines.insert(2, badge(path))
        changed = True
    else:
        lines = [badge(path) if BADGE_MARK in line else line for line in lines]
    new_title = "\n".join(lines)
    changed |= new_title != title.source
    title.source = new_title
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    if nb.cells[first_code].source.startswith(INSTALL_MARK):
        changed |= nb.cells[first_code].source != INSTALL_CELL
        nb.cells[first_code].source = INSTALL_CELL
    else:
        nb.cells.insert(first_code, nbformat.v4.new_code_cell(INSTALL_CELL))
        changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


def main() -> int:
    for path in course_notebooks(ROOT / "notebooks"):
        print(f"{path.name}: {'updated' if apply(path) else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
