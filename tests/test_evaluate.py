"""The fine-grained benchmark, retrieval metrics and robustness variants."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmgeo_utils.clip.evaluate import (
    SplitItems,
    drop_indistinguishable,
    encode_texts,
    eval_transform,
    evaluate_clip,
    fine_grained_scores,
    headline,
    i2t_choices,
    i2t_fine_hits,
    retrieval_scores,
    split_items,
    tidy_table,
)
from mmgeo_utils.clip.models import create_clip, get_tokenizer


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
    # every rule negative of the split is accounted for: scored, dropped, or beyond the first of its type
    rn = result["rule_negatives"]
    assert rn["scored"] + rn["dropped"] + rn["unscored_beyond_first_of_type"] == sum(
        len(r["text_negatives"]) for r in split_items(smoke_data, "test").rows
    )
    assert result["negatives_dropped_truncated"]["all"] >= 0 and "all" in result["negatives_dropped_identical"]
    h = headline(result)
    assert 0 <= h["i2t_fine"] <= 1
    assert set(h["i2t_fine_by_type"]) == {"label", "shape", "relation", "number"} and "i2t_with_retrieval" in h
    table = tidy_table(result, model="random")
    assert {"accuracy_%", "chance_%", "n"} <= set(table.columns) and (table["chance_%"] > 0).all()
    assert model.training  # evaluation restores train mode


def test_a_split_without_negatives_is_an_error(tmp_path):
    from mmgeo_utils.data import DatasetConfig, build_dataset

    root = build_dataset(
        DatasetConfig(n_train=2, n_val=0, n_test=2, image_size=64), out_dir=tmp_path / "d", workers=1, progress=False
    )
    with pytest.raises(ValueError, match="without hard negatives"):
        split_items(root, "test")


def test_nan_never_scores_in_any_metric():
    items = _items()
    nan = torch.full((30, 8), float("nan"))
    r = fine_grained_scores(items, nan[:12], nan[:24])
    for bench in ("i2t_fine", "t2i_fine", "i2t_with_retrieval", "probes"):
        assert all(v["acc"] == 0.0 for v in r[bench].values()), bench
    assert all(v["acc"] == 0.0 for v in retrieval_scores(nan[:4], nan[:4]).values())  # was R@1 = R@5 = 100 %
    assert not any(c["correct"] for c in i2t_choices(items, nan[:12], nan[:24]))
    # one NaN negative among finite scores beats the positive; a NaN positive never wins
    eye = torch.eye(40)
    images, texts = torch.cat([eye[:4], eye[10:18]]), torch.cat([eye[:4], eye[20:40]])
    texts[items.rule_index[0, 1]] = float("nan")
    images[1] = float("nan")
    r = fine_grained_scores(items, images, texts)
    assert r["i2t_fine"]["shape"]["acc"] == 0.5 and r["i2t_fine"]["label"]["acc"] == 0.75
    assert retrieval_scores(images[:4], texts[:4])["i2t_r5"]["acc"] == 0.75


def test_a_model_with_nan_weights_is_refused(smoke_data):
    model = create_clip("mmgeo-resnet-tiny", image_size=64)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(
        ValueError, match=r"embeddings contain NaN/inf.*checkpoint is broken \(did training diverge\?\)"
    ):
        evaluate_clip(model, get_tokenizer("mmgeo-resnet-tiny"), smoke_data, image_size=64, variants=("clean",))


def _long_caption(tokenizer, tail):
    """A caption that fills the context, then ``tail``: an edit there falls after the cut."""
    head = "triangle ABC with AB = 4.5 and angle ABC = 60 degrees, " * 20
    assert tokenizer([head])[0, -1] != 0  # truncated
    return head + tail


def test_a_negative_equal_to_its_caption_after_truncation_is_dropped_and_counted():
    tok = get_tokenizer("mmgeo-resnet-tiny")
    items = _items(n=2)
    texts = [f"caption {i}" for i in range(2)] + [f"negative {j}" for j in range(10)]
    texts[0] = _long_caption(tok, "circle O")
    texts[items.rule_index[0, 2]] = _long_caption(tok, "circle P")  # the relation edit, after the cut
    texts[items.retrieval_index[1, 0]] = texts[1]  # a retrieved caption identical to the caption, no cut
    items.texts = texts
    kept, dropped = drop_indistinguishable(items, tok)
    assert dropped["truncated"] == {"relation": 1, "all": 1} and dropped["identical"] == {"retrieval": 1, "all": 1}
    assert kept.rule_index[0, 2] == -1 and (kept.rule_index[1] >= 0).all() and kept.retrieval_index[1, 0] == -1
    assert (items.rule_index >= 0).all()  # the input is left as it was
    # the diagram left without a relation negative is not scored for that type; chance follows what is scored
    eye = torch.eye(40)
    r = fine_grained_scores(kept, torch.cat([eye[:2], eye[30:34]]), torch.cat([eye[:2], eye[2:12]]))
    assert r["i2t_fine"]["relation"]["n"] == 1 and r["i2t_fine"]["label"]["n"] == 2
    assert r["i2t_fine"]["all"]["chance"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert r["i2t_with_retrieval"]["retrieval only"]["n"] == 1


def test_texts_with_equal_tokens_tie_exactly_and_a_tie_is_a_miss():
    tok = get_tokenizer("mmgeo-resnet-tiny")
    model = create_clip("mmgeo-resnet-tiny", image_size=64).eval()
    items = _items(n=2)
    texts = [f"square ABCD with side {i}" for i in range(2)] + [f"circle O with radius {j}" for j in range(10)]
    texts[0] = _long_caption(tok, "circle O")
    texts[items.rule_index[0, 3]] = _long_caption(tok, "circle Q")  # token-identical, kept here on purpose
    items.texts = texts
    feats = encode_texts(model, tok, texts, batch_size=3)  # caption and negative in different batches
    assert torch.equal(feats[0], feats[items.rule_index[0, 3]])
    images = torch.nn.functional.normalize(torch.randn(6, feats.shape[1]), dim=-1)
    images[0] = feats[0]  # the image is its caption: only the tie can stop the hit
    assert i2t_fine_hits(items, images, feats)[0] == 0.0  # beats three negatives, ties the fourth: a miss
    assert not i2t_choices(items, images, feats)[0]["correct"]
    images[0] = feats[0] + 1e-3 * feats[items.rule_index[0, 0]]  # without the tie it would be a hit...
    texts_no_tie = feats.clone()
    texts_no_tie[items.rule_index[0, 3]] = feats[items.rule_index[1, 3]]
    assert i2t_fine_hits(items, images, texts_no_tie)[0] == 1.0  # ...so the test can fail


def test_equal_embeddings_tie_whatever_the_numbers():
    """The positive and its candidates come from one product: an equal candidate ties to the last bit
    (scored apart, ``(a * b).sum`` and a batched product differ in the last bit in about 4 of 5 cases)."""
    n, d = 200, 64
    items = _items(n)
    gen = torch.Generator().manual_seed(0)
    images, texts = _unit(torch.randn(3 * n, d, generator=gen)), _unit(torch.randn(6 * n, d, generator=gen))
    texts[items.rule_index[:, 3]] = texts[:n].clone()  # every number edit is invisible to the model
    images[items.image_neg_index[:, 1]] = images[:n].clone()  # and so is every change_length perturbation
    r = fine_grained_scores(items, images, texts)
    assert r["i2t_fine"]["number"]["acc"] == 0.0 and r["i2t_fine"]["all"]["acc"] == 0.0
    assert r["t2i_fine"]["change_length"]["acc"] == 0.0 and r["t2i_fine"]["all"]["acc"] == 0.0
    assert r["i2t_fine"]["label"]["acc"] > 0.3  # the other choices are still won or lost on their scores


def test_evaluation_decodes_in_workers_on_cuda_with_the_same_embeddings(smoke_data, monkeypatch):
    from mmgeo_utils.clip import evaluate

    monkeypatch.setattr(evaluate, "usable_cores", lambda: 16)
    assert evaluate.eval_workers("cuda") == 8 and evaluate.eval_workers("cpu") == 0
    monkeypatch.setattr(evaluate, "usable_cores", lambda: 2)  # a Colab VM: one worker, one core feeds the GPU
    assert evaluate.eval_workers(torch.device("cuda", 0)) == 1
    model = create_clip("mmgeo-resnet-tiny", image_size=64).eval()
    paths = split_items(smoke_data, "test").image_paths[:10]
    one = evaluate.encode_images(model, paths, eval_transform(64), batch_size=4)
    two = evaluate.encode_images(model, paths, eval_transform(64), batch_size=4, workers=2)
    assert one.shape == (10, model.text_projection.shape[1]) and torch.equal(one, two)
