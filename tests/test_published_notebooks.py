"""The lessons executed on cpu, published under docs/lessons/: current, or marked stale, and readable."""

import re
from pathlib import Path

import nbformat
import pytest

from mmgeo_utils.course import code_sha256
from tools.publish_notebooks import BANNER_MARK, MAX_BYTES, PUBLISHED

ROOT = Path(__file__).resolve().parent.parent
COPIES = sorted(PUBLISHED.glob("*/[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_published_copy_is_current_or_marked_stale(copy):
    nb = nbformat.read(copy, as_version=4)
    stamp = nb.metadata["mmgeo"]
    assert {"profile", "commit", "device", "seconds", "code_sha256"} <= set(stamp)
    lesson = ROOT / "notebooks" / copy.name
    current = lesson.exists() and code_sha256(nbformat.read(lesson, as_version=4)) == stamp["code_sha256"]
    assert current or stamp.get("stale"), (
        f"{copy.name} changed since it was published: rerun it on {stamp['profile']} and "
        "`python tools/publish_notebooks.py`, or `python tools/publish_notebooks.py --mark-stale`"
    )
    assert nb.cells[0].source.startswith(BANNER_MARK) and ("Stale" in nb.cells[0].source) == bool(stamp.get("stale"))


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_published_copy_is_small_and_has_no_widget_state(copy):
    assert copy.stat().st_size <= MAX_BYTES
    nb = nbformat.read(copy, as_version=4)
    assert "widgets" not in nb.metadata


def test_every_link_of_the_lesson_table_exists():
    links = re.findall(r"\]\((docs/lessons/[^)]+|notebooks/[^)]+\.ipynb)\)", (ROOT / "README.md").read_text())
    assert links, "the README's lesson table links no lesson"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"the README links lessons that do not exist: {missing}"


def test_code_hash_ignores_outputs_and_markdown():
    a = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("1 + 1")])
    b = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("y"), nbformat.v4.new_code_cell("1 + 1")])
    b.cells[1].outputs = [nbformat.v4.new_output("stream", text="2")]
    assert code_sha256(a) == code_sha256(b)
    b.cells[1].source = "1 + 2"
    assert code_sha256(a) != code_sha256(b)
