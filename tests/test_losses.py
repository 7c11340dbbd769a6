"""The contrastive losses: agreement with open_clip, hand-computed values, gradients, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch.autograd import gradcheck

from mmgeo_utils.clip import (
    HardNegativeLoss,
    clip_loss,
    cmr_loss,
    cmr_threshold,
    hard_negative_clip_loss,
    imc_loss,
    per_anchor_gradient_weights,
    per_anchor_hard_negative_loss,
)


def unit(*shape, seed=0, dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)
    return x.requires_grad_(requires_grad)


def batch(b=4, d=16, kt=3, ki=2, seed=0, dtype=torch.float32, requires_grad=False):
    """Images, texts, text negatives (B, Kt, D) and image negatives (B, Ki, D), all unit-norm."""
    return (
        unit(b, d, seed=seed, dtype=dtype, requires_grad=requires_grad),
        unit(b, d, seed=seed + 1, dtype=dtype, requires_grad=requires_grad),
        unit(b, kt, d, seed=seed + 2, dtype=dtype, requires_grad=requires_grad),
        unit(b, ki, d, seed=seed + 3, dtype=dtype, requires_grad=requires_grad),
    )


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- CLIP and open_clip's ClipLoss


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("b", [1, 2, 8, 33])
@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_clip_loss_matches_open_clip(seed, b, scale):
    img, txt = unit(b, 32, seed=seed), unit(b, 32, seed=seed + 100)
    ours = clip_loss(img, txt, scale)
    theirs = ClipLoss()(img, txt, torch.tensor(scale))
    assert abs(ours.item() - theirs.item()) < 1e-6
    as_dict = ClipLoss()(img, txt, torch.tensor(scale), output_dict=True)["contrastive_loss"]
    assert abs(ours.item() - as_dict.item()) < 1e-6


def test_clip_loss_takes_a_learnable_scale_and_a_float():
    img, txt = unit(6, 8), unit(6, 8, seed=1)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss = clip_loss(img, txt, log_scale.exp())
    loss.backward()
    assert log_scale.grad is not None and log_scale.grad.abs() > 0
    assert torch.allclose(loss, clip_loss(img, txt, 1 / 0.07))


def test_clip_loss_of_uniform_logits_is_log_batch():
    img = txt = unit(1, 8).expand(5, 8)  # every pair identical: the softmax is uniform
    assert clip_loss(img, txt, 10.0).item() == pytest.approx(math.log(5), abs=1e-6)


# ---------------------------------------------------------------- in-batch + hard negatives


def test_hard_negative_loss_without_negatives_is_clip_loss_exactly():
    img, txt, _, _ = batch()
    assert torch.equal(hard_negative_clip_loss(img, txt, 14.3), clip_loss(img, txt, 14.3))


@pytest.mark.parametrize("share", [False, True])
def test_fully_masked_negatives_reduce_to_clip_loss(share):
    img, txt, tneg, ineg = batch(dtype=torch.float64)
    loss = hard_negative_clip_loss(
        img,
        txt,
        20.0,
        ineg,
        tneg,
        share_negatives=share,
        text_negative_mask=torch.zeros(4, 3, dtype=torch.bool),
        image_negative_mask=torch.zeros(4, 2, dtype=torch.bool),
    )
    torch.testing.assert_close(loss, clip_loss(img, txt, 20.0), rtol=0, atol=1e-12)


def test_masking_a_negative_equals_dropping_it():
    img, txt, tneg, ineg = batch(dtype=torch.float64)
    tmask = torch.tensor([[True, True, True], [True, False, True], [False, False, False], [True, True, True]])
    masked = hard_negative_clip_loss(img, txt, 20.0, None, tneg, text_negative_mask=tmask)
    # the same loss by hand, one row at a time, with only the valid negatives as extra columns
    logits = 20.0 * img @ txt.T
    rows = [torch.cat([logits[i], 20.0 * tneg[i][tmask[i]] @ img[i]]) for i in range(4)]
    i2t = torch.stack([-F.log_softmax(r, 0)[i] for i, r in enumerate(rows)]).mean()
    t2i = F.cross_entropy(logits.T, torch.arange(4))
    torch.testing.assert_close(masked, (i2t + t2i) / 2, rtol=0, atol=1e-12)


def test_hard_negatives_make_the_loss_strictly_larger():
    for seed in range(5):
        img, txt, tneg, ineg = batch(seed=seed)
        base = clip_loss(img, txt, 14.3)
        assert hard_negative_clip_loss(img, txt, 14.3, None, tneg) > base
        assert hard_negative_clip_loss(img, txt, 14.3, ineg, None) > base
        assert hard_negative_clip_loss(img, txt, 14.3, ineg, tneg) > hard_negative_clip_loss(img, txt, 14.3, None, tneg)


def test_own_negatives_are_per_sample_and_shared_negatives_are_extra_columns():
    img, txt, tneg, ineg = batch(dtype=torch.float64)
    b, k, d = tneg.shape
    # own: image i sees texts 0..B-1 and only its own negatives
    own = hard_negative_clip_loss(img, txt, 5.0, None, tneg)
    i2t = torch.stack(
        [F.cross_entropy(5.0 * torch.cat([txt, tneg[i]]) @ img[i], torch.tensor(i)) for i in range(b)]
    ).mean()
    torch.testing.assert_close(own, (i2t + F.cross_entropy(5.0 * txt @ img.T, torch.arange(b))) / 2)
    # shared: the NegCLIP / CE-CLIP layout, negatives appended to the text batch
    shared = hard_negative_clip_loss(img, txt, 5.0, ineg, tneg, share_negatives=True)
    all_txt, all_img = torch.cat([txt, tneg.reshape(b * k, d)]), torch.cat([img, ineg.reshape(-1, d)])
    ref = (
        F.cross_entropy(5.0 * img @ all_txt.T, torch.arange(b))
        + F.cross_entropy(5.0 * txt @ all_img.T, torch.arange(b))
    ) / 2
    torch.testing.assert_close(shared, ref)
    assert shared > own  # other samples' negatives add terms to the denominator too


# ---------------------------------------------------------------- per-anchor (MMCLIP)


def test_per_anchor_softmax_against_hand_computed_value():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[0.8, 0.6], [0.0, 1.0]]])
    scale = 2.0
    # sample 0: s+ = 2, s- = (0, -2); sample 1: s+ = 1.6, s- = (1.2, 2)
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(-2)))
    l1 = -math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(1.2) + math.exp(2)))
    loss = per_anchor_hard_negative_loss(anchor, positive, negatives, scale)
    assert loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    # a bias shifts every logit: the softmax form does not change
    assert per_anchor_hard_negative_loss(anchor, positive, negatives, scale, logit_bias=-3.0).item() == pytest.approx(
        loss.item(), abs=1e-6
    )
    # masking sample 1's second negative leaves it with s- = (1.2,) only; sample 0 all masked -> 0
    mask = torch.tensor([[False, False], [True, False]])
    l1_masked = -math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(1.2)))
    assert per_anchor_hard_negative_loss(
        anchor, positive, negatives, scale, negative_mask=mask
    ).item() == pytest.approx(l1_masked / 2, abs=1e-6)


def test_per_anchor_sigmoid_against_hand_computed_value():
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[0.6, 0.8]])
    negatives = torch.tensor([[[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]])
    scale, bias = 10.0, -4.0
    # z+ = 6 - 4 = 2; z- = (8, 0, -10) - 4 = (4, -4, -14)
    expected = -math.log(sigmoid(2)) - sum(math.log(sigmoid(-z)) for z in (4, -4, -14))
    loss = per_anchor_hard_negative_loss(anchor, positive, negatives, scale, form="sigmoid", logit_bias=bias)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([[True, False, True]])
    expected_masked = -math.log(sigmoid(2)) - sum(math.log(sigmoid(-z)) for z in (4, -14))
    assert per_anchor_hard_negative_loss(
        anchor, positive, negatives, scale, form="sigmoid", logit_bias=bias, negative_mask=mask
    ).item() == pytest.approx(expected_masked, rel=1e-6)


def test_per_anchor_ignores_other_batch_items():
    img, txt, tneg, _ = batch(dtype=torch.float64)
    # change sample 1's caption: sample 0's loss must not move (no in-batch negatives)
    a = per_anchor_hard_negative_loss(img[:1], txt[:1], tneg[:1], 10.0)
    txt2 = txt.detach().clone()
    txt2[1] = -txt2[1]
    full_a = per_anchor_hard_negative_loss(img, txt, tneg, 10.0) * 4
    full_b = per_anchor_hard_negative_loss(img, txt2, tneg, 10.0) * 4
    rest_a = per_anchor_hard_negative_loss(img[1:], txt[1:], tneg[1:], 10.0) * 3
    rest_b = per_anchor_hard_negative_loss(img[1:], txt2[1:], tneg[1:], 10.0) * 3
    torch.testing.assert_close(full_a - rest_a, a)
    torch.testing.assert_close(full_b - rest_b, a)


def test_analytic_gradient_weights_equal_autograd():
    g = torch.Generator().manual_seed(0)
    pos = (torch.randn(6, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    neg = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    per_sample = F.cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros(6, dtype=torch.long), reduction="sum")
    per_sample.backward()
    w = per_anchor_gradient_weights(pos.detach(), neg.detach())
    torch.testing.assert_close(w.positive, pos.grad)
    torch.testing.assert_close(w.negatives, neg.grad)
    # the formulas as written: -Σ e^{s-}/Z and e^{s-}/Z
    z = pos.detach().exp() + neg.detach().exp().sum(1)
    torch.testing.assert_close(w.positive, -neg.detach().exp().sum(1) / z)
    torch.testing.assert_close(w.negatives, neg.detach().exp() / z[:, None])
    torch.testing.assert_close(w.negatives.sum(1), -w.positive)


def test_gradient_weights_accept_floats_and_do_not_overflow():
    w = per_anchor_gradient_weights(1000.0, [1000.0, 0.0])
    assert w.positive.item() == pytest.approx(-0.5) and w.negatives.tolist() == pytest.approx([0.5, 0.0])
    with pytest.raises(ValueError, match=r"neg_logits must be \(\.\.\., K\)"):
        per_anchor_gradient_weights(torch.zeros(3), torch.zeros(4, 2))


# ---------------------------------------------------------------- CE-CLIP: IMC and CMR


def test_imc_against_hand_computed_value():
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tneg = torch.tensor([[[0.6, 0.8]], [[0.8, 0.6]]])  # K = 1
    # row 0: s(I0,T0) = 1, T0·T⁻ = (0.6, 0.8); row 1: s(I1,T1) = 0.8, T1·T⁻ = (0.8, 0.6)
    l0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(0.6) + math.exp(0.8)))
    l1 = -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.8) + math.exp(0.6)))
    assert imc_loss(img, txt, tneg, 1.0).item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    # masking sample 1's negative removes that column from *every* row
    mask = torch.tensor([[True], [False]])
    l0m = -math.log(math.exp(1) / (math.exp(1) + math.exp(0.6)))
    l1m = -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.8)))
    assert imc_loss(img, txt, tneg, 1.0, negative_mask=mask).item() == pytest.approx((l0m + l1m) / 2, abs=1e-6)


def test_cmr_threshold_is_the_clamped_mean_gap():
    pos = torch.tensor([3.0, 5.0], requires_grad=True)  # mean 4
    neg = torch.tensor([[1.0, 6.0, -20.0, 0.0], [2.0, 5.0, -30.0, 9.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, False]])
    theta = cmr_threshold(pos, neg, mask)
    assert theta.tolist() == pytest.approx([4 - 1.5, 0.0, 10.0, 0.0])  # gap, clamp 0, clamp 10, no valid
    assert not theta.requires_grad
    assert cmr_threshold(pos, neg, mask, upper=20.0).tolist()[2] == pytest.approx(20.0)
    prev = torch.tensor([0.0, 0.0, 0.0, 7.0])
    assert cmr_threshold(pos, neg, mask, previous=prev).tolist()[3] == pytest.approx(7.0)
    # the mean over valid samples only
    partial = torch.tensor([[True, True, True, True], [False, True, True, True]])
    assert cmr_threshold(pos, neg, partial)[0].item() == pytest.approx(4 - 1.0)
    # never outside [0, upper] on random logits
    g = torch.Generator().manual_seed(0)
    t = cmr_threshold(torch.randn(64, generator=g) * 30, torch.randn(64, 5, generator=g) * 30)
    assert ((t >= 0) & (t <= 10)).all()


def test_cmr_loss_against_hand_computed_value():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    tneg = torch.tensor([[[0.6, 0.8], [1.0, 0.0]], [[0.6, 0.8], [-1.0, 0.0]]])
    theta = torch.tensor([0.5, 0.1])
    # s+ = (0.8, 1.0); s- = [[0.6, 1.0], [0.8, 0.0]]
    hinges = [[max(0, 0.5 + 0.6 - 0.8), max(0, 0.1 + 1.0 - 0.8)], [max(0, 0.5 + 0.8 - 1.0), max(0, 0.1 + 0.0 - 1.0)]]
    assert cmr_loss(img, txt, tneg, 1.0, theta).item() == pytest.approx(sum(map(sum, hinges)) / 4, abs=1e-6)
    mask = torch.tensor([[True, False], [True, True]])
    assert cmr_loss(img, txt, tneg, 1.0, theta, negative_mask=mask).item() == pytest.approx(
        (hinges[0][0] + hinges[1][0] + hinges[1][1]) / 3, abs=1e-6
    )
    assert cmr_loss(img, txt, tneg, 1.0, theta, negative_mask=torch.zeros(2, 2, dtype=torch.bool)).item() == 0


# ---------------------------------------------------------------- the combined objective


def test_combined_loss_is_the_weighted_sum_and_keeps_thresholds():
    img, txt, tneg, ineg = batch(b=8, kt=3)
    crit = HardNegativeLoss()
    out = crit(img, txt, 14.3, text_negative_features=tneg, image_negative_features=ineg)
    assert set(out) == {"loss", "contrastive_loss", "imc_loss", "cmr_loss", "cmr_thresholds"}
    torch.testing.assert_close(out["loss"], out["contrastive_loss"] + 0.3 * out["imc_loss"] + 0.2 * out["cmr_loss"])
    torch.testing.assert_close(out["contrastive_loss"], hard_negative_clip_loss(img, txt, 14.3, ineg, tneg))
    assert out["cmr_thresholds"].tolist() == [0.0, 0.0, 0.0]  # the curriculum starts at 0
    pos = 14.3 * (img * txt).sum(1)
    neg = 14.3 * torch.einsum("bd,bkd->bk", img, tneg)
    torch.testing.assert_close(crit.cmr_thresholds, cmr_threshold(pos, neg))  # updated after the step
    # eval mode uses but does not move the thresholds
    crit.eval()
    before = crit.cmr_thresholds.clone()
    out = crit(*batch(b=8, kt=3, seed=9)[:2], 14.3, text_negative_features=batch(b=8, kt=3, seed=9)[2])
    torch.testing.assert_close(out["cmr_thresholds"], before)
    torch.testing.assert_close(crit.cmr_thresholds, before)
    # a resumed run continues the curriculum: the thresholds are in the state dict
    fresh = HardNegativeLoss()
    fresh.load_state_dict(crit.state_dict())
    torch.testing.assert_close(fresh.cmr_thresholds, before)


def test_combined_per_anchor_mode_is_the_mmclip_loss():
    img, txt, tneg, ineg = batch()
    crit = HardNegativeLoss(contrastive="per_anchor", imc_weight=0, cmr_weight=0, image_negative_form="sigmoid")
    out = crit(img, txt, 10.0, text_negative_features=tneg, image_negative_features=ineg, logit_bias=-2.0)
    expected = (
        per_anchor_hard_negative_loss(img, txt, tneg, 10.0)
        + per_anchor_hard_negative_loss(txt, img, ineg, 10.0, form="sigmoid", logit_bias=-2.0)
    ) / 2
    torch.testing.assert_close(out["loss"], expected)
    assert set(out) == {"loss", "contrastive_loss"}


# ---------------------------------------------------------------- gradients


def test_gradcheck_every_loss():
    img, txt, tneg, ineg = batch(b=3, d=5, kt=2, ki=2, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    tmask = torch.tensor([[True, False], [True, True], [False, False]])
    imask = torch.tensor([[True, True], [False, True], [True, False]])
    checks = {
        "clip": (lambda i, t, s: clip_loss(i, t, s), (img, txt, scale)),
        "hard_negative": (
            lambda i, t, tn, inn, s: hard_negative_clip_loss(
                i, t, s, inn, tn, text_negative_mask=tmask, image_negative_mask=imask
            ),
            (img, txt, tneg, ineg, scale),
        ),
        "hard_negative_shared": (
            lambda i, t, tn, inn, s: hard_negative_clip_loss(
                i, t, s, inn, tn, text_negative_mask=tmask, share_negatives=True
            ),
            (img, txt, tneg, ineg, scale),
        ),
        "per_anchor_softmax": (
            lambda i, t, tn, s: per_anchor_hard_negative_loss(i, t, tn, s, negative_mask=tmask),
            (img, txt, tneg, scale),
        ),
        "per_anchor_sigmoid": (
            lambda t, i, inn, s, b: per_anchor_hard_negative_loss(
                t, i, inn, s, form="sigmoid", logit_bias=b, negative_mask=imask
            ),
            (txt, img, ineg, scale, bias),
        ),
        "imc": (lambda i, t, tn, s: imc_loss(i, t, tn, s, negative_mask=tmask), (img, txt, tneg, scale)),
        "cmr": (
            lambda i, t, tn, s: cmr_loss(
                i, t, tn, s, torch.tensor([0.3, 0.7], dtype=torch.float64), negative_mask=tmask
            ),
            (img, txt, tneg, scale),
        ),
    }
    crit = HardNegativeLoss().eval()
    crit.cmr_thresholds = torch.tensor([0.2, 0.4], dtype=torch.float64)
    checks["combined"] = (
        lambda i, t, tn, inn, s: crit(
            i, t, s, text_negative_features=tn, image_negative_features=inn, text_negative_mask=tmask
        )["loss"],
        (img, txt, tneg, ineg, scale),
    )
    for name, (fn, inputs) in checks.items():
        assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5), name


# ---------------------------------------------------------------- errors that name the problem


def test_errors_name_the_problem():
    img, txt, tneg, ineg = batch(b=4, d=16, kt=3)
    with pytest.raises(ValueError, match=r"text_negative_features must be \(B, K, D\) = \(4, K, 16\), got \(4, 3, 8\)"):
        hard_negative_clip_loss(img, txt, 1.0, None, tneg[..., :8])
    with pytest.raises(
        ValueError, match=r"image_negative_features must be \(B, K, D\) = \(4, K, 16\), got \(3, 2, 16\)"
    ):
        hard_negative_clip_loss(img, txt, 1.0, ineg[:3], None)
    with pytest.raises(ValueError, match=r"image_features and text_features must have the same"):
        clip_loss(img, txt[:3], 1.0)
    with pytest.raises(ValueError, match=r"image_features must be \(B, D\)"):
        clip_loss(img[0], txt[0], 1.0)
    with pytest.raises(ValueError, match=r"text_negative_mask must be a bool tensor"):
        hard_negative_clip_loss(img, txt, 1.0, None, tneg, text_negative_mask=torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"text_negative_mask must be \(B, K\) = \(4, 3\)"):
        hard_negative_clip_loss(img, txt, 1.0, None, tneg, text_negative_mask=torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"image_negative_mask given without image_negative_features"):
        hard_negative_clip_loss(img, txt, 1.0, None, tneg, image_negative_mask=torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"logit_scale must be a scalar"):
        clip_loss(img, txt, torch.ones(2))
    with pytest.raises(ValueError, match=r"form must be 'softmax' or 'sigmoid', got 'hinge'"):
        per_anchor_hard_negative_loss(img, txt, tneg, 1.0, form="hinge")
    with pytest.raises(ValueError, match=r"negative_mask must be \(B, K\) = \(4, 3\)"):
        imc_loss(img, txt, tneg, 1.0, negative_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"thresholds must be a float or \(K,\) = \(3,\)"):
        cmr_loss(img, txt, tneg, 1.0, torch.zeros(2))
    with pytest.raises(ValueError, match=r"upper must be >= 0"):
        cmr_threshold(torch.zeros(4), torch.zeros(4, 3), upper=-1)
    with pytest.raises(ValueError, match=r"imc_weight=0.3 needs text_negative_features"):
        HardNegativeLoss()(img, txt, 1.0, image_negative_features=ineg)
    with pytest.raises(ValueError, match=r"contrastive='per_anchor' needs"):
        HardNegativeLoss(contrastive="per_anchor", imc_weight=0, cmr_weight=0)(img, txt, 1.0)
    with pytest.raises(ValueError, match=r"contrastive must be 'in_batch' or 'per_anchor'"):
        HardNegativeLoss(contrastive="mmclip")
    crit = HardNegativeLoss()
    crit(img, txt, 1.0, text_negative_features=tneg)
    with pytest.raises(ValueError, match=r"K=2 negative types but the CMR thresholds were built for K=3"):
        crit(img, txt, 1.0, text_negative_features=tneg[:, :2])
