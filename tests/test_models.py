"""The shipped open_clip configs, the tokenizer wrapper and dense features."""

import pytest
import torch

from mmgeo_utils.models import (count_parameters, create_clip, dense_image_features, get_tokenizer, shipped_models,
                                spell_point_names)


def test_point_names_are_spelled_and_words_are_left_alone():
    assert spell_point_names("Here triangle ORS, with OM ⟂ RS; ∠ABC = 40° and A lies on ⊙O.") == \
        "Here triangle O R S, with O M ⟂ R S; ∠A B C = 40° and A lies on ⊙O."
    assert spell_point_names("In the diagram, Moreover The") == "In the diagram, Moreover The"


def test_tokenizer_separates_points_and_keeps_the_context_length():
    tok = get_tokenizer("mmgeo-resnet-tiny")
    a, b = tok(["triangle ORS"]), tok(["triangle OSM"])
    assert a.shape == (1, 96) and tok("one string").shape == (1, 96)
    assert (a != 0).sum() == (b != 0).sum()  # one token per letter: a relabelled name has the same length
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name, size, grid", [("mmgeo-resnet-tiny", 64, 4), ("mmgeo-vit-small", 64, 4)])
def test_shipped_models_build_and_give_dense_features(name, size, grid):
    assert name in shipped_models()
    model = create_clip(name, image_size=size)
    feats = dense_image_features(model, torch.randn(2, 3, size, size))
    assert feats.shape[0] == 2 and feats.shape[-2:] == (grid, grid)
    assert count_parameters(model)["total"] > count_parameters(model)["visual"] > 0
