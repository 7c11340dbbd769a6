"""Profiles, provenance and the results/figures writers."""

import json

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from mmgeo_utils import plots, profiles, repro
from mmgeo_utils.profiles import PROFILES, get_profile


def test_profiles_differ_only_in_sizes():
    assert list(PROFILES) == ["smoke", "cpu", "gpu", "paper", "colab"]
    fields = {tuple(p.to_dict()) for p in PROFILES.values()}
    assert len(fields) == 1  # same schema: a profile is a set of sizes, not a code path


def test_profile_from_argument_env_and_default(monkeypatch):
    monkeypatch.setenv("MMGEO_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    assert get_profile("gpu").name == "gpu"  # an argument beats the environment
    assert get_profile(" Smoke ").name == "smoke"
    monkeypatch.delenv("MMGEO_PROFILE")
    monkeypatch.setattr(profiles, "default_profile_name", lambda: "gpu")
    assert get_profile().name == "gpu"


def test_default_is_cpu_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.default_profile_name() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profiles.default_profile_name() == "gpu"


@pytest.mark.parametrize("bad", ["laptop", "smok", "GPU2"])
def test_unknown_profile_lists_valid_ones(bad, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown profile .*valid profiles: smoke, cpu, gpu, paper"):
        get_profile(bad)
    monkeypatch.setenv("MMGEO_PROFILE", bad)
    with pytest.raises(ValueError, match=r"from \$MMGEO_PROFILE"):
        get_profile()


def test_seed_everything_repeats_python_numpy_torch():
    import random

    import numpy as np
    import torch

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    repro.seed_everything(7)
    a = draw()
    repro.seed_everything(7)
    assert draw() == a
    repro.seed_everything(8)
    assert draw() != a


def test_write_results_records_provenance(tmp_path):
    path = repro.write_results("probe", {"acc": 0.5}, profile="smoke", seed=3, wall_time_s=1.23456, root=tmp_path)
    assert path == tmp_path / "smoke" / "probe.json"
    rec = json.loads(path.read_text())
    for key in ("profile", "seed", "commit", "device", "wall_time_s", "versions"):
        assert key in rec
    assert rec["profile"] == "smoke" and rec["seed"] == 3 and rec["metrics"] == {"acc": 0.5}
    assert rec["wall_time_s"] == 1.235 and rec["versions"]["torch"] != "not installed"
    assert rec["commit"] != "unknown"  # the tests run inside the git checkout


def test_write_results_rejects_unstorable_values(tmp_path):
    with pytest.raises(TypeError, match="cannot store object"):
        repro.write_results("bad", {"x": object()}, profile="smoke", root=tmp_path)


def test_save_fig_writes_png_with_provenance(tmp_path):
    plots.set_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = plots.save_fig(fig, "probe", profile="smoke", seed=1, root=tmp_path)
    plt.close(fig)
    assert path == tmp_path / "smoke" / "probe.png"
    comment = Image.open(path).text["Comment"]
    assert "profile=smoke" in comment and "seed=1" in comment and "commit=" in comment


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b.txt"
    repro.atomic_write_text(target, "one")
    repro.atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_colab_fits_a_t4_with_two_vcpus():
    """A T4 has 16 GB and no native bf16 (train uses fp16 there), Colab's VM 2 vCPUs and ~12 GB of RAM:
    the profile keeps the cpu recipe's model and negatives, more data and steps, and a data build that 2
    cores finish in minutes (measured per scene by `mmgeo bench course --profile colab`)."""
    colab, cpu, gpu = get_profile("colab"), get_profile("cpu"), get_profile("gpu")
    assert colab.clip_model == cpu.clip_model and colab.clip_pretrained is None  # learns from scratch at this size
    assert cpu.n_train < colab.n_train < gpu.n_train // 4 and colab.num_negatives <= cpu.num_negatives
    assert colab.image_size % 32 == 0 and colab.train_steps * colab.batch_size > 4 * cpu.train_steps * cpu.batch_size
    # the training split's packed columns at ~3.4 KB per row stay far below Colab's ~12 GB
    assert colab.n_train * 3_400 < 0.1 * 12 * 2**30
