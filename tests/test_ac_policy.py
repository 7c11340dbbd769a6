"""Lesson 08's AC analysis: A from the LMM's stage 1, leave-one-out fits, and the 4-encoder policy."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mmgeo_utils.experiments.ac_policy import FITS, ac_policy, design, lmm_alignment, loo_fits, loo_r2, spearman
from mmgeo_utils.lmm import LMMConfig, train_lmm

RNG = np.random.default_rng(0)
A, C = RNG.random(10), RNG.random(10)


def test_leave_one_out_predicts_each_point_from_the_others():
    y = 2 * A + 1
    r2, pred = loo_r2(design("A", A, C), y)
    assert r2 == pytest.approx(1.0) and np.allclose(pred, y)
    # by hand for one point: fit the other nine, predict the first
    x = design("A", A, C)
    coef, *_ = np.linalg.lstsq(x[1:], y[1:], rcond=None)
    assert pred[0] == pytest.approx(x[0] @ coef)
    noisy = y + RNG.normal(0, 0.3, 10)
    r2_noisy, _ = loo_r2(design("A", A, C), noisy)
    in_sample = 1 - np.sum((noisy - x @ np.linalg.lstsq(x, noisy, rcond=None)[0]) ** 2) / np.sum(
        (noisy - noisy.mean()) ** 2
    )
    assert r2_noisy < in_sample  # held out is harder than in sample
    with pytest.raises(ValueError, match="at least 3"):
        loo_r2(x[:2], y[:2])
    assert np.isnan(loo_r2(x, np.ones(10))[0])  # nothing to explain
    assert np.isnan(ac_policy(A, C, np.ones(10))["policy_top"])


def test_the_quadratic_law_is_recovered_and_the_random_score_is_the_floor():
    a, c = (A - A.min()) / np.ptp(A), (C - C.min()) / np.ptp(C)
    y = 0.2 + 0.5 * a - 0.3 * c + 0.4 * a * c + 0.2 * c * c
    fits = loo_fits(A, C, y)
    assert set(FITS) <= set(fits) and fits["n_encoders"] == 10
    assert fits["AC"]["loo_r2"] == pytest.approx(1.0) and fits["AC"]["spearman"] == pytest.approx(1.0)
    assert fits["random"]["loo_r2"] < fits["A+C"]["loo_r2"] < 1
    with pytest.raises(ValueError, match="unknown fit"):
        design("B", A, C)


def test_spearman_is_the_pearson_correlation_of_ranks():
    x, y = [3, 1, 2, 5, 4], [10, 30, 20, 50, 40]
    assert spearman(x, y) == pytest.approx(pd.Series(x).corr(pd.Series(y), method="spearman"))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_the_policy_finds_the_best_encoder_when_the_law_holds_exactly():
    y = 0.1 + A + 0.5 * C  # linear in A and C: four trained encoders determine it
    r = ac_policy(A, C, y, fit="A+C", draws=50)
    assert r["policy_top"] == 1.0 and r["chance_top"] == pytest.approx(0.3) and r["n"] == 10
    noise = ac_policy(A, C, RNG.random(10), fit="A+C", draws=200)
    assert 0 <= noise["policy_top"] <= 1
    with pytest.raises(ValueError, match="need 0 < k"):
        ac_policy(A, C, y, k=10)


def test_a_is_the_mean_caption_log_likelihood_under_stage_one(smoke_data):
    cfg = LMMConfig(profile="smoke", vision="random", lm_steps=2, align_steps=2, train_scenes=16, threads=1)
    with pytest.raises(FileNotFoundError, match="no trained projector"):
        lmm_alignment(cfg, n=8, data_root=smoke_data)
    for stage in ("lm", "align"):
        train_lmm(cfg, stage, data_root=smoke_data)
    a = lmm_alignment(cfg, n=8, data_root=smoke_data)
    assert np.isfinite(a) and a < 0
    assert lmm_alignment(cfg, n=8, data_root=smoke_data, batch=3) == pytest.approx(a, rel=1e-5)  # batching-free
    # by hand: the same number is minus the align loss over those captions in one batch
    from mmgeo_utils.lmm import data as D
    from mmgeo_utils.lmm import load_tokenizer, stage_dir
    from mmgeo_utils.lmm.language_model import load_lm
    from mmgeo_utils.lmm.projector import Projector
    from mmgeo_utils.lmm.train import _tower_and_features, dataset_rows
    from mmgeo_utils.lmm.vision_language_model import GeometryLMM

    c = cfg.resolved()
    root, rows = dataset_rows(c, "val", smoke_data)
    tower, feats, (n_tok, width), _ = _tower_and_features(c, root, rows[:8], split="val")
    tok = load_tokenizer(stage_dir(cfg, "lm") / "tokenizer")
    lm = load_lm(stage_dir(cfg, "lm") / "lm", tok).eval()
    proj = Projector(width, lm.get_input_embeddings().embedding_dim)
    proj.load_state_dict(load_file(str(stage_dir(cfg, "align") / "projector.safetensors")))
    model = GeometryLMM(lm, proj, tok.convert_tokens_to_ids("<image>"), tower.token_grid).eval()
    ex = D.align_examples(tok, rows[:8], n_image_tokens=n_tok, context_length=c.sizes.context_length)
    b = D.collate(ex, tok.pad_token_id, feats)
    with torch.no_grad():
        loss = model(b["input_ids"], b["attention_mask"], b["labels"], b["features"]).loss
    assert a == pytest.approx(-float(loss), rel=1e-4)
    with pytest.raises(ValueError, match="needs a vision tower"):
        lmm_alignment(LMMConfig(profile="smoke", vision="none", lm_steps=2, align_steps=2), data_root=smoke_data)


def test_the_analysis_measures_a_c_y_of_every_encoder_and_fits_them(smoke_data):
    from mmgeo_utils.clip import TrainConfig, train
    from mmgeo_utils.experiments.ac_policy import run_ac_analysis

    encoders = {}
    for name, kw in {"clip": {"loss": "clip", "negatives": ()}, "rule": {"negatives": ("rule",)},
                     "image": {"negatives": ("image",)}}.items():  # fmt: skip
        cfg = TrainConfig(profile="smoke", steps=2, **kw)
        encoders[name] = train(cfg, data_root=smoke_data, progress=False).run_dir
    small = {"lm_steps": 2, "align_steps": 2, "sft_steps": 2, "train_scenes": 16, "threads": 1}
    r = run_ac_analysis(encoders, "smoke", data_root=smoke_data, full_root=smoke_data, keypoint_pairs_max=4,
                        lmm_overrides=small, policy_draws=5)  # fmt: skip
    assert [e["encoder"] for e in r["encoders"]] == ["clip", "rule", "image"] and r["keypoint_pairs"] >= 1
    for e in r["encoders"]:
        assert e["A"] < 0 and 0 <= e["C"] <= 1 and 0 <= e["Y"] <= 1
    assert r["fits"]["n_encoders"] == 3 and r["policy"] is None  # too few encoders for a 4-trained policy
    with pytest.raises(ValueError, match="at least 3 encoders"):
        run_ac_analysis(dict(list(encoders.items())[:2]), "smoke", data_root=smoke_data)
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        run_ac_analysis({**encoders, "missing": smoke_data}, "smoke", data_root=smoke_data)
