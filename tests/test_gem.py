"""Lesson 07, MM-GEM: the <emb> token, the embedding heads, the three objectives, saving and scoring."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from mmgeo_utils.lmm import LMMConfig
from mmgeo_utils.lmm.embedding import (
    EMB_TOKEN,
    GeometryEmbedder,
    add_embedding_token,
    embedding_ids,
    gem_collate,
    gem_examples,
    gem_losses,
    pad_right,
)
from mmgeo_utils.lmm.gem import evaluate_gem, gem_dir, load_gem, train_gem
from mmgeo_utils.lmm.language_model import build_lm
from mmgeo_utils.lmm.projector import Projector
from mmgeo_utils.lmm.tokenizer import IMAGE_TOKEN, train_tokenizer
from mmgeo_utils.lmm.vision_language_model import GeometryLMM
from mmgeo_utils.profiles import get_lmm_sizes

TEXTS = ["Triangle ABC has AB = 37.5 and ∠ABC = 90°.", "AB ∥ CD and BC = 4.", "Describe the figure."] * 4


@pytest.fixture()
def tiny():
    tok = train_tokenizer(TEXTS, 300)
    torch.manual_seed(0)
    lm = build_lm(get_lmm_sizes("smoke"), tok)
    return tok, lm


def _embedder(tok, lm):
    emb = add_embedding_token(tok, lm)
    lmm = GeometryLMM(
        lm, Projector(6, get_lmm_sizes("smoke").lm_hidden), tok.convert_tokens_to_ids(IMAGE_TOKEN), "layer3"
    )
    return GeometryEmbedder(lmm, emb, dim=8)


def test_the_emb_token_is_added_once_with_the_mean_row_and_keeps_image(tiny):
    tok, lm = tiny
    n, mean = len(tok), lm.get_input_embeddings().weight.mean(0).clone()
    image = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    first = add_embedding_token(tok, lm)
    assert add_embedding_token(tok, lm) == first == n and len(tok) == n + 1  # idempotent
    assert torch.equal(lm.get_input_embeddings().weight[first], mean)
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == image
    assert tok(f"AB{EMB_TOKEN}", add_special_tokens=False)["input_ids"][-1] == first  # one token, never split
    assert tok.decode([first], skip_special_tokens=True) == ""  # special: generated captions drop it
    ids = embedding_ids(tok, TEXTS[0] * 20, context_length=16)
    assert len(ids) == 16 and ids[-1] == first and ids[0] == tok.bos_token_id  # cut, never the <emb> token


def test_text_embedding_reads_the_emb_position_whatever_the_padding(tiny):
    tok, lm = tiny
    model = _embedder(tok, lm).eval()
    rows = [embedding_ids(tok, t, 64) for t in TEXTS[:2]]
    ids, mask = pad_right(rows, tok.pad_token_id)
    both = model.embed_text(ids, mask)
    alone = model.embed_text(*pad_right(rows[:1], tok.pad_token_id))
    assert both.shape == (2, 8) and torch.allclose(both.norm(dim=-1), torch.ones(2))
    assert torch.allclose(both[0], alone[0], atol=1e-5)  # the padded row gives the unpadded row's embedding
    with pytest.raises(ValueError, match="must end with the <emb> token"):
        model.embed_text(ids[:, :-1], mask[:, :-1])


def test_embedding_needs_a_tower(tiny):
    tok, lm = tiny
    blind = GeometryLMM(lm, None, tok.convert_tokens_to_ids(IMAGE_TOKEN), "none")
    with pytest.raises(ValueError, match="needs a vision tower"):
        GeometryEmbedder(blind, 0)


def _batch(tok, lm):
    model = _embedder(tok, lm)
    rows = [
        {
            "id": f"r{i}",
            "caption": TEXTS[i],
            "text_negatives": [{"error_type": "number", "text": TEXTS[i].replace("3", "8")}],
        }
        for i in range(3)
    ]
    examples = gem_examples(tok, rows, n_image_tokens=4, context_length=64)
    feats = {"grid": torch.randn(3, 4, 6), "pooled": torch.randn(3, 6)}
    return model, gem_collate(examples, tok.pad_token_id, feats)


def test_joint_is_the_sum_of_embed_and_generate_and_hard_negatives_only_add(tiny):
    tok, lm = tiny
    model, batch = _batch(tok, lm)
    model.eval()
    joint = gem_losses(model, batch, torch.device("cpu"), "joint")
    assert set(joint) == {"embed", "generate", "loss"}
    assert torch.allclose(joint["loss"], joint["embed"] + joint["generate"])
    embed = gem_losses(model, batch, torch.device("cpu"), "embed")
    assert set(embed) == {"embed", "loss"} and torch.allclose(embed["embed"], joint["embed"])
    no_negatives = {**batch, "negative_ids": None, "negative_mask": None}
    assert gem_losses(model, no_negatives, torch.device("cpu"), "embed")["loss"] < embed["loss"]
    with pytest.raises(ValueError, match="unknown objective 'both'"):
        gem_losses(model, batch, torch.device("cpu"), "both")


def _cfg():
    return LMMConfig(profile="smoke", vision="random", lm_steps=2, align_steps=2, train_scenes=16, threads=1)


def test_each_objective_trains_saves_and_scores(smoke_data, tmp_path):
    cfg = _cfg()
    for objective in ("embed", "generate"):
        summary = train_gem(cfg, objective, steps=3, data_root=smoke_data, full_root=smoke_data)
        assert summary["steps"] == 3 and summary["objective"] == objective
    folder = gem_dir(cfg, "embed") / "model"
    # the <emb> row learned through peft's trainable tokens; the LM's own rows stayed as stage 0 left them
    delta = {k: v for k, v in load_file(str(folder / "adapter" / "adapter_model.safetensors")).items() if "token" in k}
    assert delta and any(v.abs().sum() > 0 for v in delta.values())
    model, tok = load_gem(folder)
    r = evaluate_gem(folder, smoke_data, context_length=get_lmm_sizes("smoke").context_length)
    assert 0 <= r["i2t_fine"]["all"]["acc"] <= 1 and r["i2t_fine"]["all"]["chance"] < 1
    assert {"i2t_r1", "t2i_r5"} <= set(r["retrieval"]) and "all" in r["t2i_fine"] and "captions" not in r
    cap = evaluate_gem(folder, smoke_data, captions=2, context_length=get_lmm_sizes("smoke").context_length)
    assert cap["captions"]["n"] == 2 and all(0 <= cap["captions"][k] <= 1 for k in ("precision", "recall", "f1"))
    assert cap["i2t_fine"] == r["i2t_fine"]  # captioning does not change the embedding scores
    # a fresh process loads it with transformers + peft + open_clip, and embeds the same
    code = (
        "import sys, torch; from mmgeo_utils.lmm.gem import load_gem; from mmgeo_utils.lmm.embedding import "
        "embedding_ids, pad_right; m, t = load_gem(sys.argv[1]); "
        "print(m.embed_text(*pad_right([embedding_ids(t, 'AB = 3', 64)], t.pad_token_id))[0, :3].tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    here = model.embed_text(*pad_right([embedding_ids(tok, "AB = 3", 64)], tok.pad_token_id))[0, :3]
    assert torch.allclose(torch.tensor(eval(out.stdout.strip().splitlines()[-1])), here, atol=1e-6)


def test_gem_refuses_a_blind_model_and_another_objective(smoke_data):
    with pytest.raises(ValueError, match="needs a vision tower"):
        train_gem(LMMConfig(profile="smoke", vision="none"), data_root=smoke_data)
    with pytest.raises(ValueError, match="unknown objective 'both'"):
        train_gem(_cfg(), "both", data_root=smoke_data)
    with pytest.raises(FileNotFoundError, match="holds no MM-GEM model"):
        load_gem(smoke_data)


def test_an_interrupted_gem_run_resumes_to_the_same_weights(smoke_data, tmp_path, monkeypatch):
    cfg = _cfg()
    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "whole"))
    train_gem(cfg, "joint", steps=4, data_root=smoke_data, full_root=smoke_data)
    whole = load_file(str(gem_dir(cfg, "joint") / "model" / "embedding_heads.safetensors"))

    def stop(step, record):
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "cut"))
    with pytest.raises(KeyboardInterrupt):
        train_gem(cfg, "joint", steps=4, data_root=smoke_data, full_root=smoke_data, callbacks=[stop])
    with pytest.raises(FileExistsError, match="unfinished gem-joint stage"):
        train_gem(cfg, "joint", steps=4, data_root=smoke_data, full_root=smoke_data)
    train_gem(cfg, "joint", steps=4, data_root=smoke_data, full_root=smoke_data, resume=True)
    again = load_file(str(gem_dir(cfg, "joint") / "model" / "embedding_heads.safetensors"))
    assert all(torch.equal(whole[k], again[k]) for k in whole)


def test_tokenizer_with_emb_round_trips_through_save(tiny, tmp_path):
    tok, lm = tiny
    emb = add_embedding_token(tok, lm)
    tok.save_pretrained(str(tmp_path / "tok"))
    again = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert again.convert_tokens_to_ids(EMB_TOKEN) == emb and again.convert_tokens_to_ids(IMAGE_TOKEN) < emb


def test_gem_comparison_writes_every_arm_beside_lesson05_and_reuses_runs(smoke_data, tmp_path, capsys):
    from mmgeo_utils.cli import main
    from mmgeo_utils.clip import train
    from mmgeo_utils.experiments import comparison_configs
    from mmgeo_utils.experiments.gem_comparison import ARMS, gem_table, run_gem_comparison

    small = {"lm_steps": 2, "align_steps": 2, "train_scenes": 16}
    mmclip = comparison_configs("smoke", 0)["mmclip"]
    run = train(mmclip, data_root=smoke_data, progress=False).run_dir
    with pytest.raises(ValueError, match="unknown arm"):
        run_gem_comparison("smoke", arms=["both"], data_root=smoke_data, **small)
    with pytest.raises(FileNotFoundError, match="the mmclip encoder of seed 1 is not trained"):
        run_gem_comparison("smoke", seeds=[1], data_root=smoke_data, **small)
    record = run_gem_comparison("smoke", seeds=[0], data_root=smoke_data, captions=2, jobs=1, **small)
    saved = json.loads((tmp_path / "results" / "smoke" / "gem_comparison.json").read_text())["metrics"]
    assert set(saved["arms"]) == set(ARMS) and saved["seeds"] == [0]
    for arm, r in saved["arms"].items():
        assert (r["objective"], r["hard_negatives"]) == ARMS[arm] and r["seeds"][0]["vision"] == str(run)
        assert 0 <= r["i2t_fine"]["mean"] <= 1 and r["captions"]["f1"]["n"] == 1
    assert saved["chance"]["i2t_fine"] < 1 and saved["lesson05_text_towers"] is None  # no lesson 05 record here
    assert "chance" in gem_table(record).index
    again = run_gem_comparison("smoke", seeds=[0], data_root=smoke_data, captions=2, jobs=1, write=False, **small)
    assert again["arms"] == record["arms"]  # trained arms and their scores are reused, not redone
    assert main(["experiment", "gem-comparison", "--profile", "smoke", "--data", str(smoke_data), "--captions", "2",
                 "--arms", "embed", "--jobs", "1"]) == 0  # fmt: skip
    assert "LM: embed" in capsys.readouterr().out
