"""Lesson 07, SliME wired into lesson 06's LMM: the local view, the model's token layout, the selector's mask,
the stages, saving, scoring and bad input."""

import numpy as np
import pytest
import torch

from mmgeo_utils.clip.checkpoint import CheckpointError
from mmgeo_utils.data import load_image, load_split
from mmgeo_utils.diagrams.style import RenderStyle, enlarged
from mmgeo_utils.lmm import LMMConfig
from mmgeo_utils.lmm import data as D
from mmgeo_utils.lmm.language_model import build_lm
from mmgeo_utils.lmm.projector import Projector
from mmgeo_utils.lmm.slime import (
    ARMS,
    evaluate_slime,
    local_crops,
    model_dir,
    slime_dir,
    train_slime,
)
from mmgeo_utils.lmm.slime_model import PARTS_FILE, SlimeLMM, build_slime_model, grid_layout, load_slime
from mmgeo_utils.lmm.tokenizer import IMAGE_TOKEN, train_tokenizer
from mmgeo_utils.lmm.vision_language_model import GeometryLMM
from mmgeo_utils.profiles import get_lmm_sizes

TEXTS = ["Triangle ABC has AB = 37.5 and ∠ABC = 90°.", "Question: Is AB ∥ CD?\nAnswer: yes", "Describe the figure."] * 4
SHAPES = {"grid": (4, 8), "pooled": (4,)}  # a 2 × 2 grid of width 8 and a pooled token of width 4


@pytest.fixture()
def tiny():
    tok = train_tokenizer(TEXTS, 300)
    torch.manual_seed(0)
    return tok, build_lm(get_lmm_sizes("smoke"), tok)


def _model(tok, lm, arm) -> SlimeLMM:
    torch.manual_seed(1)
    return build_slime_model(
        arm.local, arm.gated, lm, Projector(12, lm.config.hidden_size), tok, "layer3+pooled", SHAPES
    ).eval()


def _features(b: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {
        "grid": torch.randn(b, 4, 8, generator=g),
        "pooled": torch.randn(b, 4, generator=g),
        "local_grid": torch.randn(b, 4, 4, 8, generator=g),
        "local_pooled": torch.randn(b, 4, 4, generator=g),
    }


def _prompts(tok, n_image: int, questions=("Is AB ∥ CD?", "What is the length of AB?")):
    ids = [D.prompt_ids(tok, D.sft_prompt(q), n_image) for q in questions]
    n = max(map(len, ids))
    return (
        torch.tensor([x + [tok.pad_token_id] * (n - len(x)) for x in ids]),
        torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids]),
    )


def test_the_local_view_is_the_stored_diagram_drawn_twice_as_large(smoke_data):
    row = load_split(smoke_data, "train", 1)[0]
    crops = local_crops(smoke_data, row)
    size = RenderStyle.from_dict(row["style"]).image_size
    assert len(crops) == 4 and all(c.size == (size, size) for c in crops)
    big = np.zeros((2 * size, 2 * size, 3), dtype=np.float32)
    for k, c in enumerate(crops):  # the crops tile the 2x drawing, row-major
        r, col = divmod(k, 2)
        big[r * size : (r + 1) * size, col * size : (col + 1) * size] = np.asarray(c, dtype=np.float32)
    small = big.reshape(size, 2, size, 2, 3).mean((1, 3))  # averaged back to the stored size
    stored = np.asarray(load_image(smoke_data, row), dtype=np.float32)
    other = np.asarray(load_image(smoke_data, load_split(smoke_data, "train", 2)[1]), dtype=np.float32)
    assert np.abs(small - stored).mean() < 0.25 * np.abs(other - stored).mean()  # the same diagram, not another
    s = enlarged(RenderStyle.from_dict(row["style"]), 2)
    assert s.image_size == 2 * size and s.font_size == 2 * RenderStyle.from_dict(row["style"]).font_size
    with pytest.raises(ValueError, match="positive integer"):
        enlarged(s, 0)


def test_grid_layout_names_a_crop_that_is_not_square():
    assert grid_layout(37, 36) == ((6, 6), 1)
    with pytest.raises(ValueError, match="not a square grid"):
        grid_layout(13, 12)


@pytest.mark.parametrize("arm", ["raw", "compressed", "selected", "slime"])
def test_each_arm_lays_out_global_separator_and_local_tokens(tiny, arm):
    tok, lm = tiny
    model = _model(tok, lm, ARMS[arm])
    n_local = {"raw": 4 * 5, "compressed": 4 * 1, "selected": 4 * 1, "slime": 4 * 1}[arm]  # 5 tokens // 4 = 1 query
    assert (model.n_global, model.n_local, model.n_image_tokens) == (5, n_local, 5 + 1 + n_local)
    ids, mask = _prompts(tok, model.n_image_tokens)
    out = model(ids, mask, None, _features())
    assert out.logits.shape[:2] == ids.shape
    with pytest.raises(ValueError, match=f"needs {model.n_image_tokens} <image> tokens"):
        model(*_prompts(tok, 5), None, _features())


def test_the_question_mask_is_the_prompt_after_the_image_never_the_answer(tiny):
    tok, lm = tiny
    model = _model(tok, lm, ARMS["selected"])
    ex = D.sft_examples(
        tok,
        [{"id": "train-0", "qa": [{"question": "Is AB ∥ CD?", "answer": "yes"}]}],
        n_image_tokens=model.n_image_tokens,
        context_length=200,
    )[0]
    ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
    q = model.question_mask(ids, torch.ones_like(ids), labels)[0]
    text = tok.decode(ids[0][q])
    assert "AB" in text and "Answer" in text and "yes" not in text
    assert not q[: int((ids[0] == model.image_token_id).nonzero().max()) + 1].any()


def test_a_dropped_local_token_is_exactly_a_removed_one(tiny):
    """Masking a token out and letting positions skip it gives the LM's output without that token."""
    tok, lm = tiny
    model = _model(tok, lm, ARMS["selected"])
    model.top_p = 0.3  # drop most local tokens
    ids, mask = _prompts(tok, model.n_image_tokens, ("Is AB ∥ CD?",))
    feats = _features(1)
    embeds, visible, positions = model.inputs(ids, mask, feats)
    dropped = int((mask - visible).sum())
    assert 0 < dropped < model.n_local
    with torch.no_grad():
        masked = lm(inputs_embeds=embeds, attention_mask=visible, position_ids=positions).logits[0, -1]
        keep = visible[0].bool()
        removed = lm(inputs_embeds=embeds[:, keep], attention_mask=visible[:, keep]).logits[0, -1]
    torch.testing.assert_close(masked, removed, atol=1e-4, rtol=1e-4)
    model.top_p = 1.0
    assert torch.equal(model.inputs(ids, mask, feats)[1], mask)  # top-p 1 keeps every token


def test_the_selection_depends_on_the_question_and_noise_only_trains(tiny):
    tok, lm = tiny
    model = _model(tok, lm, ARMS["selected"])
    ids, mask = _prompts(tok, model.n_image_tokens)
    feats = {k: v[:1].expand(2, *v.shape[1:]) for k, v in _features(1).items()}  # one image, two questions
    _, probs = model.selection(ids, mask, feats)
    assert not torch.allclose(probs[0], probs[1])
    assert torch.equal(model.selection(ids, mask, feats)[1], probs)  # eval: no noise
    model.train()
    assert not torch.equal(model.selection(ids, mask, feats)[1], probs)
    with pytest.raises(ValueError, match="only the 'selected' local mode has a selector"):
        _model(tok, lm, ARMS["compressed"]).selection(ids, mask, feats)


def test_the_gated_adapter_shares_the_projector_and_saves_it_once(tiny):
    tok, lm = tiny
    model = _model(tok, lm, ARMS["slime"])
    assert model.global_adapter.projector is model.projector
    names = list(model.state_dict())
    assert not any(n.startswith("global_adapter.projector") for n in names)
    assert set(model.parts_state()) == {
        n for n in names if n.startswith(("global_adapter.", "compressor.", "separator"))
    }


def test_a_parts_file_of_another_model_is_refused_by_name(tiny, tmp_path):
    from safetensors.torch import save_file

    tok, lm = tiny
    save_file(_model(tok, lm, ARMS["raw"]).parts_state(), str(tmp_path / "p.safetensors"))
    with pytest.raises(ValueError, match="does not fit this SliME model: missing compressor"):
        _model(tok, lm, ARMS["compressed"]).load_parts(tmp_path / "p.safetensors")


@pytest.mark.slow
def test_every_arm_trains_saves_reloads_and_scores_on_smoke(smoke_data):
    cfg = LMMConfig(profile="smoke", vision="random")
    root = smoke_data
    results, trained = {}, {}
    for arm in ARMS:
        trained[arm] = summaries = train_slime(cfg, arm, data_root=root)
        assert tuple(summaries) == ARMS[arm].stages()
        results[arm] = evaluate_slime(cfg, arm, root, limit=8)
        assert 0 <= results[arm]["overall"] <= 1 and results[arm]["n"] > 0
    assert model_dir(cfg, "global").parent.name.startswith("sft-lora")  # lesson 06's own LMM, reused
    assert (results["raw"]["local_tokens"], results["compressed"]["local_tokens"]) == (4 * 17, 4 * 4)  # 17 // 4
    assert results["selected"]["local_tokens_kept"] <= 16 and results["compressed"]["local_tokens_kept"] == 16
    joint = slime_dir(cfg, "slime-joint")
    assert (joint / "joint" / "summary.json").is_file() and not (joint / "expert").exists()

    # a fresh load gives the same answers (the saved parts are the trained ones)
    model, tok, info = load_slime(model_dir(cfg, "slime"))
    assert info["slime"]["local"] == "selected" and model.global_adapter is not None
    again = evaluate_slime(cfg, "slime", root, limit=8)
    assert [a["prediction"] for a in again["answers"]] == [a["prediction"] for a in results["slime"]["answers"]]
    fewer = evaluate_slime(cfg, "selected", root, limit=8, top_p=0.2)
    assert fewer["local_tokens_kept"] < results["selected"]["local_tokens_kept"]

    # a finished stage is reused, not retrained; a stage folder of another config is refused by name
    assert train_slime(cfg, "selected", data_root=root) == trained["selected"]
    saved = slime_dir(cfg, "selected") / "local" / "config.json"
    saved.write_text(saved.read_text().replace('"compression": 4', '"compression": 2'))
    with pytest.raises(CheckpointError, match=r"config differs in compression \(saved 2, now 4\)"):
        train_slime(cfg, "selected", data_root=root)


def test_bad_arms_and_a_blind_tower_are_refused():
    with pytest.raises(ValueError, match="unknown SliME arm 'hd'; arms: global, raw"):
        train_slime(LMMConfig(profile="smoke", vision="random"), "hd")
    with pytest.raises(ValueError, match="--vision none has no image"):
        train_slime(LMMConfig(profile="smoke", vision="none"), "slime")
    with pytest.raises(FileNotFoundError, match="no trained LMM for slime arm 'raw'"):
        evaluate_slime(LMMConfig(profile="smoke", vision="random"), "raw", "/nonexistent")


def test_a_plain_lmm_is_not_loaded_as_a_slime_one(tmp_path, tiny):
    from mmgeo_utils.lmm.vision_language_model import save_lmm

    tok, lm = tiny
    save_lmm(
        GeometryLMM(lm, Projector(12, lm.config.hidden_size), tok.convert_tokens_to_ids(IMAGE_TOKEN), "layer3"),
        tmp_path,
        tok,
        {},
    )
    with pytest.raises(FileNotFoundError, match="holds no SliME LMM"):
        load_slime(tmp_path)


def test_an_interrupted_slime_stage_resumes_to_the_same_weights(smoke_data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    cfg = LMMConfig(profile="smoke", vision="random", sft_steps=4)
    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "whole"))
    train_slime(cfg, "selected", data_root=smoke_data)
    whole = load_file(str(slime_dir(cfg, "selected") / "sft" / PARTS_FILE))

    def stop(step, record):
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "cut"))
    with pytest.raises(KeyboardInterrupt):
        train_slime(cfg, "selected", data_root=smoke_data, callbacks=[stop])
    with pytest.raises(FileExistsError, match="unfinished slime-selected local stage"):
        train_slime(cfg, "selected", data_root=smoke_data)
    train_slime(cfg, "selected", data_root=smoke_data, resume=True)
    again = load_file(str(slime_dir(cfg, "selected") / "sft" / PARTS_FILE))
    assert set(whole) == set(again) and all(torch.equal(whole[k], again[k]) for k in whole)


@pytest.mark.slow
def test_the_slime_comparison_measures_every_arm_against_global_and_its_targets(smoke_data, tmp_path, capsys):
    import json

    from mmgeo_utils.cli import main
    from mmgeo_utils.clip import train
    from mmgeo_utils.experiments import comparison_configs
    from mmgeo_utils.experiments.slime_comparison import TOP_P_CURVE, run_slime_comparison, slime_table

    small = {"lm_steps": 2, "align_steps": 2, "sft_steps": 2, "train_scenes": 16}
    run = train(comparison_configs("smoke", 0)["mmclip"], data_root=smoke_data, progress=False).run_dir
    with pytest.raises(ValueError, match="unknown SliME arm"):
        run_slime_comparison("smoke", arms=["hd"], data_root=smoke_data, **small)
    record = run_slime_comparison("smoke", arms=["raw", "selected"], data_root=smoke_data, limit=8, jobs=1, **small)
    saved = json.loads((tmp_path / "results" / "smoke" / "slime_comparison.json").read_text())["metrics"]
    assert list(saved["arms"]) == ["global", "raw", "selected"]  # global is always measured
    assert saved["arms"]["raw"]["seeds"][0]["vision"] == str(run)
    assert [c["top_p"] for c in saved["top_p_curve"]] == list(TOP_P_CURVE)
    kept = [c["local_tokens_kept"]["mean"] for c in saved["top_p_curve"]]
    assert kept == sorted(kept) and kept[-1] == saved["arms"]["selected"]["local_tokens"]  # top-p 1 keeps all
    gains = saved["targets"]["gain_small_text"]
    expect = saved["arms"]["raw"]["small_text"]["mean"] - saved["arms"]["global"]["small_text"]["mean"]
    assert gains["raw"] == pytest.approx(expect) and saved["targets"]["local_gain"] is None  # slime not run
    assert "small text" in slime_table(record).columns
    again = run_slime_comparison(
        "smoke", arms=["raw", "selected"], data_root=smoke_data, limit=8, jobs=1, write=False, **small
    )
    assert again["arms"] == record["arms"]  # trained arms and their scores are reused
    assert main(["experiment", "slime-comparison", "--profile", "smoke", "--data", str(smoke_data), "--arms", "raw",
                 "--limit", "8", "--jobs", "1"]) == 0  # fmt: skip
    assert "raw" in capsys.readouterr().out


def test_the_cli_trains_and_scores_an_arm_and_refuses_a_stage_with_local(smoke_data, capsys):
    from mmgeo_utils.cli import main

    common = ["--profile", "smoke", "--vision", "random", "--data", str(smoke_data), "--lm-steps", "2",
              "--align-steps", "2", "--sft-steps", "2", "--train-scenes", "16"]  # fmt: skip
    assert main(["train-lmm", *common, "--local", "compressed"]) == 0
    out = capsys.readouterr().out
    assert "slime-compressed/local" in out and "slime-compressed/sft" in out
    assert main(["eval-lmm", *common, "--local", "compressed", "--limit", "8"]) == 0
    assert "local tokens read: 16.0 of 16" in capsys.readouterr().out
    assert main(["train-lmm", *common, "--local", "raw", "--stage", "sft"]) != 0
    assert "--local raw trains every stage of its arm" in capsys.readouterr().err


def test_bench_lmm_times_a_slime_arm_and_refuses_one_without_local_tokens(smoke_data, capsys):
    import json

    from mmgeo_utils.cli import main

    assert (
        main(["bench", "lmm", "--profile", "smoke", "--steps", "1", "--data", str(smoke_data), "--local", "slime"]) == 0
    )
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["slime"]
    assert [k for k in ("expert", "local", "sft") if r[k]["s_per_step"] > 0] == ["expert", "local", "sft"]
    assert r["local_images_per_s"] > 0 and r["eval_questions_per_s"] > 0 and r["local_tokens"] == 16
    assert r["estimate_s"]["one_arm"] > r["estimate_s"]["training"] > 0
    assert main(["bench", "lmm", "--profile", "smoke", "--data", str(smoke_data), "--local", "global"]) != 0
    assert "times a SliME arm with local tokens" in capsys.readouterr().err
