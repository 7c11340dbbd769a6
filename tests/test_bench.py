"""``mmgeo bench train``: what it times, and which data it refuses to time on."""

from pathlib import Path

import pytest

from mmgeo_utils.experiments import bench_train


def test_bench_train_times_both_models_on_the_given_data(smoke_data):
    out = bench_train("smoke", steps=1, warmup=1, device="cpu", data_root=smoke_data)
    clip, mm = out["models"]["clip"], out["models"]["mmclip"]
    for m in (clip, mm):
        assert m["step_ms"] > 0 and m["loss_ms"] > 0 and 0 <= m["data_wait_share"] < 1
    # the same images per step; MMCLIP's text tower also reads one rule edit of each error type per image
    assert clip["images_per_step"] == mm["images_per_step"] == 8
    assert clip["texts_per_step"] == 8 and mm["texts_per_step"] == 5 * 8
    assert out["data"]["n_train"] == 48 and Path(out["results_file"]).is_file()


def test_bench_train_refuses_data_it_cannot_time(smoke_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a built dataset"):
        bench_train("smoke", steps=1, device="cpu", data_root=tmp_path)
    with pytest.raises(ValueError, match="holds 64 px diagrams; the cpu profile trains on 96 px"):
        bench_train("cpu", steps=1, device="cpu", data_root=smoke_data)
