"""Figures: saved once per change of pixels, so a course run that reproduces them leaves git clean."""

import matplotlib.pyplot as plt

from mmgeo_utils.plots import save_fig


def _figure(value):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, value])
    return fig


def test_same_figure_keeps_its_bytes_and_a_changed_one_is_rewritten(tmp_path, monkeypatch):
    path = save_fig(_figure(1), "line", profile="smoke", root=tmp_path)
    first = path.read_bytes()
    # another provenance (as after a new commit) with the same pixels: the file is untouched
    monkeypatch.setattr(
        "mmgeo_utils.plots.provenance", lambda p, s: {"profile": "smoke", "commit": "other", "device": "elsewhere"}
    )
    assert save_fig(_figure(1), "line", profile="smoke", root=tmp_path).read_bytes() == first
    assert save_fig(_figure(2), "line", profile="smoke", root=tmp_path).read_bytes() != first


def test_an_unreadable_old_figure_is_replaced(tmp_path):
    target = tmp_path / "smoke" / "line.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a png")
    assert save_fig(_figure(1), "line", profile="smoke", root=tmp_path).read_bytes()[:4] == b"\x89PNG"
