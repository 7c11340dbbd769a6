"""The shipped open_clip configs, the tokenizer wrapper and dense features."""

import pytest
import torch

from mmgeo_utils.clip.models import (
    count_parameters,
    create_clip,
    dense_image_features,
    get_tokenizer,
    shipped_models,
    spell_point_names,
)


def test_point_names_are_spelled_and_words_are_left_alone():
    assert (
        spell_point_names("Here triangle ORS, with OM ⟂ RS; ∠ABC = 40° and A lies on ⊙O.")
        == "Here triangle O R S, with O M ⟂ R S; ∠A B C = 40° and A lies on ⊙O."
    )
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


# ----------------------------------------------------------------------------- the paper profile's model


def test_paper_profile_fits_its_pretrained_model():
    import open_clip

    from mmgeo_utils.clip.models import register_model_configs
    from mmgeo_utils.profiles import get_profile

    paper = get_profile("paper")
    register_model_configs()
    config = open_clip.get_model_config(paper.clip_model)  # what notebook 04 prints: no shipped file needed
    assert config is not None and config.get("quick_gelu")  # OpenAI's weights were trained with QuickGELU
    assert paper.image_size % config["vision_cfg"]["patch_size"] == 0  # no edge pixels left unseen
    assert paper.clip_pretrained in open_clip.list_pretrained_tags_by_model(paper.clip_model)
    assert paper.context_length > config["text_cfg"]["context_length"]
    assert paper.sentence_encoder == get_profile("cpu").sentence_encoder  # the shipped MiniLM, offline


def test_paper_context_holds_its_captions():
    """The spelled-out captions and rule negatives of gpu/paper-sized scenes fit paper's context."""
    from open_clip.tokenizer import SimpleTokenizer

    from mmgeo_utils.data import DatasetConfig, make_scene, sample_seeds
    from mmgeo_utils.diagrams.captions import describe
    from mmgeo_utils.negatives.text import make_text_negatives
    from mmgeo_utils.profiles import get_profile

    bpe, paper = SimpleTokenizer(), get_profile("paper")
    config = DatasetConfig.from_profile("paper")
    lengths = []
    for i in range(60):
        seeds = sample_seeds(config, "test", i)
        scene = make_scene(config, seeds)
        caption = describe(scene, seeds.caption)
        texts = [caption.text] + [
            t.text for t in make_text_negatives(scene, caption, 3, seeds.text_negatives, caption_seed=seeds.caption)[0]
        ]
        lengths += [len(bpe.encode(spell_point_names(t))) + 2 for t in texts]  # + start and end tokens
    assert max(lengths) <= paper.context_length
    assert sum(n > 77 for n in lengths) > 0  # ... and OpenAI's 77 would cut some (why paper sets a context)


def test_context_length_is_forced_and_read_back_from_a_checkpoint(tmp_path):
    from safetensors.torch import save_file

    from mmgeo_utils.clip.models import checkpoint_context_length

    model = create_clip("mmgeo-resnet-tiny", image_size=64, context_length=40)
    assert model.context_length == 40 and model.positional_embedding.shape[0] == 40
    assert get_tokenizer("mmgeo-resnet-tiny", context_length=40)(["triangle ABC"]).shape == (1, 40)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert checkpoint_context_length(path) == 40
    again = create_clip("mmgeo-resnet-tiny", path, image_size=64)  # no length given: the checkpoint's
    assert again.context_length == 40 and torch.equal(again.positional_embedding, model.positional_embedding)


def test_openai_weights_get_quickgelu_and_missing_weights_fail_early(monkeypatch, tmp_path):
    import open_clip
    from open_clip import pretrained as oc_pretrained

    from mmgeo_utils.clip import models

    asked = {}
    monkeypatch.setattr(models, "find_pretrained", lambda name, tag: tmp_path / "w.safetensors")
    monkeypatch.setattr(open_clip, "create_model", lambda name, **kw: asked.update(kw) or torch.nn.Linear(1, 1))
    models.create_clip("ViT-B-32", "openai", image_size=224, context_length=160)
    assert asked["force_quick_gelu"] is True and asked["force_context_length"] == 160
    monkeypatch.undo()

    def offline(cfg, **kw):
        raise FileNotFoundError("Failed to download file: no connection")

    monkeypatch.setattr(oc_pretrained, "download_pretrained", offline)
    with pytest.raises(
        FileNotFoundError,
        match=r"ViT-B-32-quickgelu / 'openai' are not on this machine.*"
        r"timm/vit_base_patch32_clip_224.openai.*--pretrained WEIGHTS",
    ):
        models.find_pretrained("ViT-B-32-quickgelu", "openai")
    with pytest.raises(FileNotFoundError, match="pretrained checkpoint .*nowhere.safetensors not found"):
        models.create_clip("mmgeo-resnet-tiny", tmp_path / "nowhere.safetensors")
    with pytest.raises(ValueError, match="no 'laion9' weights for ViT-B-32-quickgelu; its tags: openai"):
        models.find_pretrained("ViT-B-32-quickgelu", "laion9")


def test_vit_dense_features_are_the_last_blocks_patch_tokens_through_a_public_api():
    """forward_intermediates gives what the tower computes by hand: patchify, class token, positions,
    ln_pre, the blocks; patch tokens laid out on the grid (no private open_clip helper needed)."""
    from mmgeo_utils.repro import REPO_ROOT

    model = create_clip("mmgeo-vit-small", image_size=64).eval()
    v, x = model.visual, torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        t = v.conv1(x).flatten(2).transpose(1, 2)
        t = torch.cat([v.class_embedding.expand(2, 1, -1), t], dim=1) + v.positional_embedding
        t = v.transformer(v.ln_pre(t))
        by_hand = t[:, 1:].transpose(1, 2).reshape(2, -1, *v.grid_size)
        assert torch.allclose(dense_image_features(model, x), by_hand, atol=1e-5)
    floor = next(
        line for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line.startswith("open_clip_torch")
    )
    assert floor.split(">=")[1].split()[0] == "2.32"  # the first release with forward_intermediates
