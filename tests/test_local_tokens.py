"""Lesson 07, SliME's parts: 2-D positions, resamplers (question-aware), the gated adapter and the selector."""

import pytest
import torch

from mmgeo_utils.lmm.local_tokens import (
    GatedProjector,
    Resampler,
    keep_in_order,
    select_local,
    selector_scores,
    sincos_2d,
)
from mmgeo_utils.lmm.projector import Projector


def test_sincos_positions_are_distinct_bounded_and_row_major():
    pos = sincos_2d(3, 4, 8)
    assert pos.shape == (12, 8) and pos.abs().max() <= 1
    assert len({tuple(p.tolist()) for p in pos}) == 12  # every cell its own code
    assert torch.equal(pos[1, :4], pos[2, :4]) and not torch.equal(pos[1, 4:], pos[2, 4:])  # same row, other column
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


def test_a_resampler_without_positions_ignores_token_order_and_with_them_does_not():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    perm = torch.randperm(6)
    plain = Resampler(8, n_queries=3, heads=2)
    assert plain(x).shape == (2, 3, 8) and torch.allclose(plain(x), plain(x[:, perm]), atol=1e-6)
    placed = Resampler(8, n_queries=3, heads=2, grid=(2, 3))
    assert not torch.allclose(placed(x), placed(x[:, perm]), atol=1e-4)
    with pytest.raises(ValueError, match=r"grid \(2, 3\) holds 6 tokens, got 4"):
        placed(x[:, :4])


def test_a_question_aware_resampler_reads_the_question_and_ignores_its_padding():
    torch.manual_seed(0)
    r = Resampler(8, n_queries=2, grid=(2, 3))
    x, q = torch.randn(1, 6, 8), torch.randn(1, 4, 8)
    mask = torch.tensor([[True, True, False, False]])
    out = r(x, q, mask)
    assert not torch.allclose(out, r(x), atol=1e-4)  # the question changes what the queries keep
    other_padding = q.clone()
    other_padding[:, 2:] = torch.randn(1, 2, 8)
    assert torch.allclose(out, r(x, other_padding, mask), atol=1e-6)  # padding is never read


def test_the_gate_starts_as_an_even_mix_and_a_mode_picks_one_expert():
    torch.manual_seed(0)
    proj, res = Projector(8, 16), Resampler(8, n_queries=6, grid=(2, 3))
    g = GatedProjector(proj, res)
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        mlp, resampled = proj(x), proj(res(x))
        assert torch.allclose(g(x), (mlp + resampled) / 2, atol=1e-6)
        assert torch.equal(g(x, mode=0), mlp) and torch.equal(g(x, mode=1), resampled)
    with pytest.raises(ValueError, match="mode must be"):
        g(x, mode=2)
    few = GatedProjector(proj, Resampler(8, n_queries=2))
    with pytest.raises(ValueError, match="mixing needs as many"):
        few(x)


def test_the_selector_keeps_the_top_p_nucleus_in_the_original_order():
    local = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])  # (1, 4, 2)
    question = torch.tensor([[[1.0, 0.0], [1.0, 0.2], [0.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    # by hand: the summed cosine to the two real question tokens
    q = torch.nn.functional.normalize(question[0, :2], dim=-1)
    by_hand = torch.nn.functional.normalize(local[0], dim=-1) @ q.T
    assert torch.allclose(selector_scores(local, question, mask)[0], by_hand.sum(-1))
    assert select_local(local, question, mask, top_p=1.0).all()
    only = select_local(local, question, mask, top_p=1e-6)
    assert only.tolist() == [[True, False, False, False]]  # the best token alone
    probs = by_hand.sum(-1).softmax(-1)
    two = select_local(local, question, mask, top_p=float(probs[0]) + 1e-3)  # just more than the best one's mass
    assert two.sum() == 2 and two[0, 0] and two[0, 2]  # the two best, in their order
    kept, valid = keep_in_order(local, two)
    assert torch.equal(kept[0], local[0, [0, 2]]) and valid.all()
    with pytest.raises(ValueError, match="top_p must be"):
        select_local(local, question, top_p=0)


def test_selector_noise_is_drawn_from_the_generator_and_absent_by_default():
    torch.manual_seed(0)
    local, question = torch.randn(3, 12, 8), torch.randn(3, 5, 8)
    plain = select_local(local, question, top_p=0.5)
    assert torch.equal(plain, select_local(local, question, top_p=0.5))
    a = select_local(local, question, top_p=0.5, noise_std=5.0, generator=torch.Generator().manual_seed(1))
    b = select_local(local, question, top_p=0.5, noise_std=5.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, plain)
    kept, valid = keep_in_order(local, a)
    assert kept.shape[1] == int(a.sum(-1).max()) and torch.equal(valid.sum(-1), a.sum(-1))
