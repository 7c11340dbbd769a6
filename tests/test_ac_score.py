"""A and C of the Law of Vision Representation, and its fitted polynomial."""

import numpy as np
import pytest

from mmgeo_utils.clip.ac_score import (
    alignment_score,
    chance_correspondence,
    correspondence_score,
    fit_ac_polynomial,
    keypoint_pairs,
    poly2_features,
)
from mmgeo_utils.clip.models import create_clip


def test_alignment_is_high_for_a_linear_map_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.normal(size=(400, 16)), rng.normal(size=(100, 16))
    w = rng.normal(size=(16, 8))
    a = alignment_score(x_tr, x_tr @ w + 3.0, x_te, x_te @ w + 3.0)
    noise = alignment_score(rng.normal(size=(400, 16)), x_tr @ w, rng.normal(size=(100, 16)), x_te @ w)
    assert a > 0.99 and abs(noise) < 0.2


def test_keypoint_pairs_redraw_the_scene_and_keep_points_that_moved(smoke_data):
    pairs = keypoint_pairs(smoke_data, "test")
    assert len(pairs) >= 8 and pairs[0].source.size == pairs[0].target.size == (64, 64)
    for p in pairs:
        moved = np.hypot(*(p.source_xy - p.target_xy).T)
        assert (moved >= 0.1 * 64).all()
        assert ((p.target_xy >= 0) & (p.target_xy <= 64)).all()
    again = keypoint_pairs(smoke_data, "test")
    assert all(np.array_equal(a.target_xy, b.target_xy) for a, b in zip(pairs, again))  # deterministic


def test_correspondence_of_a_random_encoder_is_a_fraction_and_chance_is_small(smoke_data):
    pairs = keypoint_pairs(smoke_data, "test", max_pairs=5)
    c = correspondence_score(create_clip("mmgeo-resnet-tiny", image_size=64), pairs, image_size=64)
    assert 0.0 <= c <= 1.0
    assert 0.0 <= chance_correspondence(pairs, 64) < 0.2
    with pytest.raises(ValueError, match="no keypoint pairs"):
        correspondence_score(None, [], image_size=64)


def test_ac_polynomial_recovers_a_quadratic_and_refuses_too_few_points():
    rng = np.random.default_rng(1)
    a, c = rng.uniform(size=12), rng.uniform(size=12)
    y = poly2_features(a, c) @ np.array([0.1, 0.5, 0.2, -0.3, 0.4, 0.05])
    _, r2 = fit_ac_polynomial(a, c, y)
    assert r2 > 0.999
    with pytest.raises(ValueError, match="6 coefficients"):
        fit_ac_polynomial(a[:5], c[:5], y[:5])
