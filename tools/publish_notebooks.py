#!/usr/bin/env python
"""Publish the lessons as a full course run executed them, so a reader sees real results without running.

The committed lessons in ``notebooks/`` carry smoke outputs (nbval compares those); a reader on GitHub
would see numbers from 48 diagrams. After ``make course`` on a profile, this copies the executed lessons
from ``results/<profile>/notebooks/`` to ``docs/lessons/<profile>/``, with widget state stripped and
images kept, and stamps each with what produced it (profile, commit, device, wall time) and the hash of
its code cells:

    python tools/publish_notebooks.py --profile cpu            # after a full run
    python tools/publish_notebooks.py --mark-stale             # after changing a lesson without rerunning it

A published copy whose code no longer matches its lesson must be marked stale (a banner on top and
``metadata.mmgeo.stale``); ``tests/test_published_notebooks.py`` fails otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmgeo_utils.course import code_sha256  # noqa: E402
from tools.refresh_notebooks import strip_widget_state  # noqa: E402

PUBLISHED = ROOT / "docs" / "lessons"
MAX_BYTES = 3_500_000  # a published lesson stays readable on GitHub
BANNER_MARK = "<!-- mmgeo:published -->"


def _banner(lesson: str, stamp: dict) -> str:
    minutes = stamp["seconds"] / 60
    text = (
        f"{BANNER_MARK}\n> **Executed on the `{stamp['profile']}` profile** by `make course` at commit "
        f"`{stamp['commit'][:12]}` on {stamp['device']}, in {minutes:.1f} min. The lesson itself, with the "
        f"outputs of a quick smoke run, is [`notebooks/{lesson}`](../../../notebooks/{lesson})."
    )
    if stamp.get("stale"):
        text += (
            "\n>\n> ⚠️ **Stale:** the lesson's code has changed since this run; the figures and numbers below "
            "are those of the commit above."
        )
    return text


def _set_banner(nb, lesson: str, stamp: dict) -> None:
    cell = nbformat.v4.new_markdown_cell(_banner(lesson, stamp))
    if nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(BANNER_MARK):
        nb.cells[0] = cell
    else:
        nb.cells.insert(0, cell)


def publish(profile: str) -> list[Path]:
    executed = ROOT / "results" / profile / "notebooks"
    state_path = executed / "course_state.json"
    if not state_path.exists():
        raise SystemExit(
            f"no course run of {profile!r} here ({state_path} is missing): run `mmgeo course --profile {profile}` first"
        )
    state = json.loads(state_path.read_text())
    record = json.loads((ROOT / "results" / profile / "course.json").read_text())
    out_dir = PUBLISHED / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lesson in sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")):
        entry = state.get(lesson.name, {})
        src = executed / lesson.name
        if entry.get("status") != "ok" or not src.exists():
            print(f"{lesson.name}: not run on {profile} here, skipped")
            continue
        nb = nbformat.read(src, as_version=4)
        if code_sha256(nb) != code_sha256(nbformat.read(lesson, as_version=4)):
            raise SystemExit(
                f"{lesson.name}: the executed copy's code differs from the lesson's; rerun it "
                f"(mmgeo course --profile {profile} --only {lesson.name[:2]})"
            )
        strip_widget_state(nb)
        stamp = {
            "profile": profile,
            "commit": entry["commit"],
            "device": record["device"],
            "seconds": entry["seconds"],
            "code_sha256": code_sha256(nb),
            "stale": False,
        }
        nb.metadata["mmgeo"] = stamp
        _set_banner(nb, lesson.name, stamp)
        dst = out_dir / lesson.name
        nbformat.write(nb, dst)
        size = dst.stat().st_size
        if size > MAX_BYTES:
            print(f"WARNING: {dst} is {size / 1e6:.1f} MB (over {MAX_BYTES / 1e6:.1f} MB): shrink its figures")
        print(f"{lesson.name}: published ({size / 1e6:.2f} MB)")
        written.append(dst)
    return written


def mark_stale() -> list[Path]:
    changed = []
    for copy in sorted(PUBLISHED.glob("*/[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(copy, as_version=4)
        lesson = ROOT / "notebooks" / copy.name
        stamp = dict(nb.metadata.get("mmgeo", {}))
        stale = not lesson.exists() or stamp.get("code_sha256") != code_sha256(nbformat.read(lesson, as_version=4))
        if stale != bool(stamp.get("stale")):
            stamp["stale"] = stale
            nb.metadata["mmgeo"] = stamp
            _set_banner(nb, copy.name, stamp)
            nbformat.write(nb, copy)
            changed.append(copy)
            print(f"{copy.relative_to(ROOT)}: {'marked stale' if stale else 'current again'}")
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", help="the profile whose course run to publish (default: cpu)")
    ap.add_argument("--mark-stale", action="store_true", help="only mark the copies whose lesson's code changed")
    args = ap.parse_args(argv)
    if args.mark_stale:
        mark_stale()
    else:
        publish(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
