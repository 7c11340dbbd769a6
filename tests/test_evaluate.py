"""The fine-grained benchmark, retrieval metrics and robustness variants."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmgeo_utils.evaluate import (SplitItems, eval_transform, evaluate_clip, fine_grained_scores, headline,
                                  retrieval_scores, split_items, tidy_table)
from mmgeo_utils.models import create_clip, get_tokenizer


def _items(n=4):
    """n positives, each with 2 image negatives, one rule negative of each type and one retrieval negative."""
    rows = [{"id": i} for i in range(n)]
    img_idx = np.array([[n + 2 * i, n + 2 * i + 1] for i in range(n)])
    rule = np.array([[n + 5 * i + j for j in range(4)] for i in range(n)])
    ret = np.array([[n + 5 * i + 4] for i in range(n)])
    return SplitItems(rows, [None] * (3 * n), img_idx, [["relabel", "change_length"]] * n, [""] * (6 * n), rule, ret)


def _unit(x):
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def test_a_perfect_encoder_scores_one_and_chance_is_counted_per_item():
    items = _items()
    d = 40
    eye = torch.eye(d)
    images = torch.cat([eye[:4], eye[10:18]])  # negatives orthogonal to everything
    texts = torch.cat([eye[:4], eye[20:40]])
    r = fine_grained_scores(items, images, texts)
    assert r["i2t_fine"]["all"] == {"acc": 1.0, "chance": pytest.approx(1 / 5), "n": 4}  # 4 one-fact edits
    assert r["i2t_with_retrieval"]["all"]["chance"] == pytest.approx(1 / 6)
    assert r["t2i_fine"]["all"]["acc"] == 1.0 and r["t2i_fine"]["all"]["chance"] == pytest.approx(1 / 3)
    assert r["i2t_fine"]["label"]["chance"] == 0.5 and r["t2i_fine"]["relabel"]["n"] == 4
    assert r["probes"]["retrieval"]["chance"] == 0.5 and r["probes"]["rule"]["chance"] == pytest.approx(1 / 5)


def test_ties_are_misses_so_a_collapsed_encoder_scores_zero():
    items = _items()
    same = _unit(torch.ones(30, 8))
    r = fine_grained_scores(items, same[:12], same[:24])
    assert r["i2t_fine"]["all"]["acc"] == 0.0 and r["t2i_fine"]["all"]["acc"] == 0.0
    assert retrieval_scores(same[:4], same[:4])["i2t_r1"]["acc"] == 0.0


def test_one_confusable_rule_type_shows_in_its_own_breakdown():
    items = _items(n=2)
    d = 32
    eye = torch.eye(d)
    texts = torch.cat([eye[:2], eye[2:12]])
    texts[items.rule_index[:, 2]] = eye[:2]  # the "relation" negative equals the caption: a tie
    r = fine_grained_scores(items, torch.cat([eye[:2], eye[20:24]]), texts)
    assert r["i2t_fine"]["relation"]["acc"] == 0.0 and r["i2t_fine"]["label"]["acc"] == 1.0
    assert r["i2t_fine"]["all"]["acc"] == 0.0


def test_retrieval_recall_at_k():
    n = 10
    img = _unit(torch.eye(n))
    txt = _unit(torch.roll(torch.eye(n), 1, dims=0) + 0.5 * torch.eye(n))  # true pair second best
    r = retrieval_scores(img, txt)
    assert r["i2t_r1"]["acc"] == 0.0 and r["i2t_r5"]["acc"] == 1.0 and r["i2t_r5"]["chance"] == 0.5


def test_robustness_variants_change_the_pixels_and_keep_a_white_background():
    im = Image.new("RGB", (64, 64), "white")
    im.paste((0, 0, 0), (10, 30, 54, 34))  # a horizontal bar
    clean, rot, down = (eval_transform(64, v)(im) for v in ("clean", "rotate30", "downscale0.5"))
    assert clean.shape == rot.shape == down.shape == (3, 64, 64)
    assert not torch.allclose(clean, rot) and not torch.allclose(clean, down)
    assert torch.allclose(rot[:, 0, 0], clean[:, 0, 0])  # corners filled with the background, not black
    with pytest.raises(ValueError, match="unknown image variant"):
        eval_transform(64, "blur")


def test_evaluate_clip_on_the_smoke_split(smoke_data):
    model = create_clip("mmgeo-resnet-tiny", image_size=64)
    result = evaluate_clip(model, get_tokenizer("mmgeo-resnet-tiny"), smoke_data, image_size=64)
    assert result["n"] == 16 and set(result["robustness"]) == {"rotate30", "downscale0.5"}
    h = headline(result)
    assert 0 <= h["i2t_fine"] <= 1
    assert set(h["i2t_fine_by_type"]) == {"label", "shape", "relation", "number"} and "i2t_with_retrieval" in h
    table = tidy_table(result, model="random")
    assert {"accuracy_%", "chance_%", "n"} <= set(table.columns) and (table["chance_%"] > 0).all()
    assert model.training  # evaluation restores train mode


def test_a_split_without_negatives_is_an_error(tmp_path):
    from mmgeo_utils.dataset import DatasetConfig, build_dataset

    root = build_dataset(DatasetConfig(n_train=2, n_val=0, n_test=2, image_size=64), out_dir=tmp_path / "d",
                         workers=1, progress=False)
    with pytest.raises(ValueError, match="without hard negatives"):
        split_items(root, "test")


def test_evaluation_decodes_in_workers_on_cuda_with_the_same_embeddings(smoke_data, monkeypatch):
    from mmgeo_utils import evaluate

    monkeypatch.setattr(evaluate, "usable_cores", lambda: 16)
    assert evaluate.eval_workers("cuda") == 8 and evaluate.eval_workers("cpu") == 0
    monkeypatch.setattr(evaluate, "usable_cores", lambda: 2)  # a Colab VM: one worker, one core feeds the GPU
    assert evaluate.eval_workers(torch.device("cuda", 0)) == 1
    model = create_clip("mmgeo-resnet-tiny", image_size=64).eval()
    paths = split_items(smoke_data, "test").image_paths[:10]
    one = evaluate.encode_images(model, paths, eval_transform(64), batch_size=4)
    two = evaluate.encode_images(model, paths, eval_transform(64), batch_size=4, workers=2)
    assert one.shape == (10, model.text_projection.shape[1]) and torch.equal(one, two)
