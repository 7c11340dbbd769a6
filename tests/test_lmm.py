"""Lesson 06's LMM: the splice, labels, tokenizer, LoRA, saving, resume, scoring and bad input."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from mmgeo_utils.clip import TrainConfig
from mmgeo_utils.clip.checkpoint import CheckpointError
from mmgeo_utils.data import load_split
from mmgeo_utils.diagrams.scene import Scene
from mmgeo_utils.lmm import data as D
from mmgeo_utils.lmm.balance import QA_VERSION, balance_yes_no, balanced_questions, balanced_rows
from mmgeo_utils.lmm.config import LMMConfig, stage_dir
from mmgeo_utils.lmm.evaluate import (
    claimed_fact,
    evaluate_lmm,
    exact_match,
    majority_answers,
    normalize,
    scored_questions,
)
from mmgeo_utils.lmm.language_model import build_lm, load_lm
from mmgeo_utils.lmm.projector import Projector
from mmgeo_utils.lmm.tokenizer import IMAGE_TOKEN, load_tokenizer, train_tokenizer
from mmgeo_utils.lmm.train import train_lmm
from mmgeo_utils.lmm.vision_language_model import IGNORE_INDEX, GeometryLMM, expand_image_tokens, load_lmm
from mmgeo_utils.lmm.vision_tower import join, load_vision_tower
from mmgeo_utils.profiles import get_lmm_sizes

TEXTS = ["Triangle ABC has AB = 37.5 and ∠ABC = 90°.", "Is AB ∥ CD?", "Question: What is BC?\nAnswer: 12"] * 4


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    train_tokenizer(TEXTS, 300, folder)
    return folder


@pytest.fixture(scope="module")
def tok(tok_dir):
    return AutoTokenizer.from_pretrained(str(tok_dir))


def _tiny(tok, **kw):
    sizes = get_lmm_sizes("smoke")
    torch.manual_seed(0)
    lm = build_lm(sizes, tok)
    return GeometryLMM(lm, Projector(6, sizes.lm_hidden), tok.convert_tokens_to_ids(IMAGE_TOKEN), "layer3", **kw)


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_and_splits_digits_and_capitals(tok_dir):
    again = AutoTokenizer.from_pretrained(str(tok_dir))
    text = "Triangle XYZ: XY = 1234.5, ∠XYZ ⟂ △PQR, ⊙O"
    ids = again(text, add_special_tokens=False)["input_ids"]
    assert again.decode(ids) == text
    pieces = again.convert_ids_to_tokens(ids)
    assert all(pieces.count(d) >= 1 for d in "12345")  # each digit its own token
    assert not any(any(c.isdigit() for c in p) and len(p.strip("Ġ")) > 1 for p in pieces)
    assert not any(sum("A" <= c <= "Z" for c in p) > 1 for p in pieces)  # X, Y, Z never merged
    assert again.convert_tokens_to_ids(IMAGE_TOKEN) != again.unk_token_id
    assert len(again(IMAGE_TOKEN, add_special_tokens=False)["input_ids"]) == 1


# ----------------------------------------------------------------------------- splice and labels


def test_image_tokens_replace_the_placeholder_embeddings_in_order(tok):
    model = _tiny(tok)
    img = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = expand_image_tokens([tok.bos_token_id, img, 7, 8], img, 3)
    assert ids == [tok.bos_token_id, img, img, img, 7, 8]
    grid = torch.randn(1, 3, 6)
    feats = {"grid": grid, "pooled": torch.zeros(1, 4)}
    out = model.embed(torch.tensor([ids]), feats)
    table = model.lm.get_input_embeddings().weight
    by_hand = torch.cat([table[[tok.bos_token_id]], model.projector(grid)[0], table[[7, 8]]])
    torch.testing.assert_close(out[0], by_hand)
    with pytest.raises(ValueError, match="needs 3 <image> tokens"):
        model.embed(torch.tensor([ids[:-3] + [7, 8, 9]]), feats)
    with pytest.raises(ValueError, match="one image per example"):
        expand_image_tokens([img, 5, img], img, 3)


def test_labels_are_masked_except_the_answer_and_the_loss_is_on_it_alone(tok):
    ids, labels = D.encode(tok, D.sft_prompt("What is BC?"), " 12", n_image_tokens=3, context_length=64)
    answer = tok(" 12", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert labels[-len(answer) :] == answer and set(labels[: -len(answer)]) == {IGNORE_INDEX}
    assert ids[-len(answer) :] == answer and ids.count(tok.convert_tokens_to_ids(IMAGE_TOKEN)) == 3
    model = _tiny(tok)
    feats = {"grid": torch.randn(1, 3, 6), "pooled": torch.zeros(1, 4)}
    t_ids, t_labels = torch.tensor([ids]), torch.tensor([labels])
    loss = model(t_ids, torch.ones_like(t_ids), t_labels, feats).loss
    logits = model(t_ids, torch.ones_like(t_ids), None, feats).logits[0]
    # by hand: position t predicts token t+1; only answer tokens count
    n = len(answer)
    by_hand = torch.nn.functional.cross_entropy(logits[-n - 1 : -1], torch.tensor(answer))
    torch.testing.assert_close(loss, by_hand)


def test_layer3_plus_pooled_tokens_are_laid_out_block_wise():
    grid, pooled = torch.randn(2, 4, 3), torch.randn(2, 5)
    tokens = join({"grid": grid, "pooled": pooled}, "layer3+pooled")
    assert tokens.shape == (2, 5, 8)
    torch.testing.assert_close(tokens[:, :4, :3], grid)
    torch.testing.assert_close(tokens[:, 4, 3:], pooled)
    assert tokens[:, :4, 3:].abs().sum() == 0 and tokens[:, 4, :3].abs().sum() == 0


# ----------------------------------------------------------------------------- training


def _cfg(**kw):
    return LMMConfig(
        **{
            "profile": "smoke",
            "vision": "random",
            "lm_steps": 2,
            "align_steps": 2,
            "sft_steps": 4,
            "train_scenes": 16,
            **kw,
        }
    )


def test_lora_trains_only_the_adapter_and_the_projector(smoke_data):
    from mmgeo_utils.lmm.train import build_sft_model

    cfg = _cfg()
    train_lmm(cfg, "lm", data_root=smoke_data)
    train_lmm(cfg, "align", data_root=smoke_data)
    tok = load_tokenizer(stage_dir(cfg, "lm") / "tokenizer")
    model, params = build_sft_model(
        cfg, tok, 17, json.loads((stage_dir(cfg, "align") / "summary.json").read_text())["token_width"], "layer3+pooled"
    )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("projector.") for n in names)
    assert any(n.startswith("projector.") for n in names) and any("lora_A" in n for n in names)
    assert sum(p.numel() for p in params) < sum(p.numel() for p in model.parameters()) / 2
    full, _ = build_sft_model(_cfg(full=True), tok, 17, model.projector.vision_dim, "layer3+pooled")
    assert all(p.requires_grad for p in full.parameters())


class _Stop:
    def __init__(self, at):
        self.at = at

    def __call__(self, step, record):
        if step == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_sft_resumes_to_the_same_weights(smoke_data, tmp_path, monkeypatch):
    cfg = _cfg()
    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "whole"))
    whole = train_lmm(cfg, data_root=smoke_data)
    a = load_file(str(stage_dir(cfg, "sft") / "model" / "adapter" / "adapter_model.safetensors"))
    pa = load_file(str(stage_dir(cfg, "sft") / "model" / "projector.safetensors"))
    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "cut"))
    train_lmm(cfg, "lm", data_root=smoke_data)
    train_lmm(cfg, "align", data_root=smoke_data)
    with pytest.raises(KeyboardInterrupt):
        train_lmm(cfg, "sft", data_root=smoke_data, callbacks=[_Stop(2)])
    with pytest.raises(FileExistsError, match="--resume"):
        train_lmm(cfg, "sft", data_root=smoke_data)
    resumed = train_lmm(cfg, "sft", data_root=smoke_data, resume=True)["sft"]
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4 == whole["sft"]["steps"]
    b = load_file(str(stage_dir(cfg, "sft") / "model" / "adapter" / "adapter_model.safetensors"))
    pb = load_file(str(stage_dir(cfg, "sft") / "model" / "projector.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_mixed_precision_follows_lesson_04s_rule_and_an_fp16_stage_resumes_to_the_same_weights(
    smoke_data, tmp_path, monkeypatch
):
    """``auto`` is fp32 on CPU (every recorded number), bf16 on GPUs that have it natively, fp16 with a grad
    scaler on older ones; the autocast reaches the step, and fp16's scaler state is in the checkpoint."""
    import mmgeo_utils.clip.loop as L

    assert LMMConfig().amp_dtype("cpu") is None and LMMConfig().stage_config("lm")["precision"] == "fp32"
    for native, dtype in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(L, "native_bf16", lambda native=native: native)
        assert LMMConfig().amp_dtype("cuda") == dtype
    assert _cfg(precision="bf16").stage_config("align")["precision"] == "bf16"

    def lm_weights(cfg, runs, stop=None):
        monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / runs))
        if stop is not None:
            with pytest.raises(KeyboardInterrupt):
                train_lmm(cfg, "lm", data_root=smoke_data, callbacks=[_Stop(stop)])
        train_lmm(cfg, "lm", data_root=smoke_data, resume=stop is not None)
        return load_file(str(stage_dir(cfg, "lm") / "lm" / "model.safetensors"))

    fp32, bf16 = lm_weights(_cfg(lm_steps=3), "fp32"), lm_weights(_cfg(lm_steps=3, precision="bf16"), "bf16")
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # the step ran under autocast
    fp16 = _cfg(lm_steps=3, precision="fp16")
    assert _equal_weights(lm_weights(fp16, "fp16-whole"), lm_weights(fp16, "fp16-cut", stop=2))


def _equal_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


FRESH_PROCESS = r"""
import json, sys, torch, open_clip
from pathlib import Path
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
assert "mmgeo_utils" not in sys.modules
folder = Path(sys.argv[1])
meta = json.loads((folder / "lmm.json").read_text())
tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
lm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder / "lm"), folder / "adapter").eval()
open_clip.add_model_config(str(folder / "vision"))
visual = open_clip.create_model(meta["clip_model"], force_image_size=meta["image_size"]).visual.eval()
visual.load_state_dict(load_file(str(folder / "vision_tower.safetensors")))
proj = load_file(str(folder / "projector.safetensors"))
image = load_file(sys.argv[2])["image"]
with torch.no_grad():
    x = visual.layer3(visual.layer2(visual.layer1(visual.stem(image))))
    grid, pooled = x.flatten(2).transpose(1, 2), visual.attnpool(visual.layer4(x))
    g, cg, cp = grid.shape[1], grid.shape[2], pooled.shape[1]
    tokens = torch.cat([torch.cat([grid, grid.new_zeros(1, g, cp)], -1),
                        torch.cat([pooled.new_zeros(1, 1, cg), pooled[:, None]], -1)], 1)
    h = torch.nn.functional.gelu(tokens @ proj["linear_1.weight"].T + proj["linear_1.bias"])
    image_embeds = h @ proj["linear_2.weight"].T + proj["linear_2.bias"]
    prompt = "<image>\nQuestion: Is AB parallel to CD?\nAnswer:"
    ids = [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
    i = ids.index(meta["image_token_id"])
    ids = ids[:i] + [meta["image_token_id"]] * meta["image_tokens"] + ids[i + 1:]
    ids = torch.tensor([ids])
    emb = lm.get_input_embeddings()(ids)
    emb = emb.masked_scatter((ids == meta["image_token_id"])[..., None], image_embeds)
    print(json.dumps(lm(inputs_embeds=emb).logits[0, -1].tolist()))
"""


def test_a_fresh_process_loads_the_lmm_with_transformers_peft_and_open_clip_alone(smoke_data, tmp_path):
    cfg = _cfg()
    train_lmm(cfg, data_root=smoke_data)
    folder = stage_dir(cfg, "sft") / "model"
    model, tok, meta = load_lmm(folder)
    image = torch.randn(1, 3, 64, 64)
    save_file({"image": image}, str(tmp_path / "image.safetensors"))
    ids = torch.tensor([D.prompt_ids(tok, D.sft_prompt("Is AB parallel to CD?"), meta["image_tokens"])])
    with torch.no_grad():
        here = model(ids, torch.ones_like(ids), None, model.encode_images(image)).logits[0, -1]
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(folder), str(tmp_path / "image.safetensors")],
        capture_output=True,
        text=True,
        check=True,
    )
    there = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(there, here, rtol=1e-4, atol=1e-5)
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))


def test_the_lm_can_come_from_a_local_folder(smoke_data, tmp_path, tok):
    sizes = get_lmm_sizes("smoke")
    build_lm(sizes, tok).save_pretrained(str(tmp_path / "tiny-lm"))
    tok.save_pretrained(str(tmp_path / "tiny-lm"))
    cfg = _cfg(lm=str(tmp_path / "tiny-lm"))
    out = train_lmm(cfg, data_root=smoke_data)
    assert out["lm"]["steps"] == 0 and out["sft"]["steps"] == 4
    assert isinstance(load_lm(stage_dir(cfg, "lm") / "lm"), torch.nn.Module)
    r = evaluate_lmm(stage_dir(cfg, "sft") / "model", smoke_data, limit=6)
    assert r["n"] <= 6 and 0 <= r["overall"] <= 1
    # the whole test split: yes/no balanced per relation, so the yes/no majority baseline is 50 %
    r = evaluate_lmm(stage_dir(cfg, "sft") / "model", smoke_data)
    assert r["by_kind"]["yes_no"]["majority_baseline"] == 0.5
    assert r["by_kind"]["yes_no"]["majority_answer"] in ("yes", "no")
    assert r["yes_no_by_relation"] and all(v["yes_share"] == 0.5 for v in r["yes_no_by_relation"].values())
    assert r["yes_no_selection"]["n_dropped"] > 0  # smoke's test split has one-answer relations (midpoint)
    assert r["n"] == len(balanced_questions(load_split(smoke_data, "test"))[0])


# ----------------------------------------------------------------------------- yes/no balance


def _yes_no_counts(qas):
    out = {}
    for q in qas:
        if q["kind"] == "yes_no":
            c = out.setdefault(q["fact"]["kind"], {"yes": 0, "no": 0})
            c[normalize(q["answer"], "yes_no")] += 1
    return out


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_yes_no_is_balanced_per_relation_and_one_answer_relations_are_dropped(smoke_data, split):
    rows = load_split(smoke_data, split)
    before = _yes_no_counts([q for r in rows for q in r["qa"]])
    kept, sel = balanced_rows(rows, seed=0)
    after = _yes_no_counts([q for r in kept for q in r["qa"]])
    for rel, c in after.items():
        assert c["yes"] / (c["yes"] + c["no"]) == 0.5, (rel, c)
    for rel, c in before.items():  # min(n_yes, n_no) of each kept; a one-answer relation is gone, and counted
        k = min(c["yes"], c["no"])
        assert sel.relations[rel] == {"yes": c["yes"], "no": c["no"], "kept": k, "dropped": c["yes"] + c["no"] - 2 * k}
        assert (rel in after) == (k > 0) and (rel in sel.dropped_relations) == (k == 0)
    assert {"midpoint", "similar"} & set(sel.dropped_relations)  # make_qa asks them only with "yes"
    # the other kinds are untouched, and each row keeps its questions' order
    for r, k in zip(rows, kept, strict=True):
        assert [q for q in r["qa"] if q["kind"] != "yes_no"] == [q for q in k["qa"] if q["kind"] != "yes_no"]
        assert [q for q in r["qa"] if q in k["qa"]] == k["qa"] and k["id"] == r["id"]


def test_yes_no_selection_is_deterministic_idempotent_and_seeded(smoke_data):
    qas = [q for r in load_split(smoke_data, "train") for q in r["qa"]]
    a, b = balance_yes_no(qas, seed=0), balance_yes_no(qas, seed=0)
    assert a == b
    assert balance_yes_no([qas[i] for i in a.keep], seed=5).keep == tuple(range(len(a.keep)))  # balanced stays
    others = [balance_yes_no(qas, seed=s).keep for s in range(1, 6)]
    assert any(o != a.keep for o in others) and all(len(o) == len(a.keep) for o in others)
    table = a.table()
    assert [t["relation"] for t in table] == sorted(a.relations)
    assert all(t["n yes"] == t["n no"] for t in table)
    assert {t["why dropped"] for t in table if t["n yes"] == 0} <= {"only 'yes'", "only 'no'"}


def test_the_limited_evaluation_set_is_balanced_and_the_majority_comes_from_balanced_training():
    def qa(rel, ans, kind="yes_no"):
        return {"kind": kind, "answer": ans, "question": f"{rel}?", "fact": {"kind": rel, "args": ["A", "B"]}}

    rows = [
        {"qa": [qa("parallel", "yes"), qa("parallel", "no"), qa("midpoint", "yes")]},
        {"qa": [qa("on_circle", "yes"), qa("on_circle", "no"), qa("parallel", "yes"), qa("length", "5", "length")]},
        {"qa": [qa("parallel", "no")]},
    ]
    qs, sel = balanced_questions(rows, limit=6)  # the first 6 questions, then the selection
    assert [(i, j) for i, j, _ in qs] in ([(0, 0), (0, 1), (1, 0), (1, 1)], [(0, 1), (1, 0), (1, 1), (1, 2)])
    assert sel.relations["parallel"] == {"yes": 2, "no": 1, "kept": 1, "dropped": 1}
    assert sel.dropped_relations == {"midpoint": 1}
    assert len(balanced_questions(rows)[0]) == 7  # no limit: parallel 2 + 2, on_circle 1 + 1, length
    # 3 "yes" and 2 "no" as stored; balanced, the tie goes to the first answer met, and no relation decides it
    assert majority_answers(rows)["yes_no"] in ("yes", "no") and majority_answers(rows)["length"] == "5"
    assert (
        majority_answers([{"qa": [qa("midpoint", "yes")] * 5 + [qa("parallel", "no")] * 2 + [qa("parallel", "yes")]}])[
            "yes_no"
        ]
        == "no"
    )


def test_a_split_with_nothing_to_score_is_refused_by_name():
    # only one-sided relations: balancing leaves no yes/no question, so there is nothing to score
    rows = [{"qa": [{"kind": "yes_no", "answer": "yes", "question": "p?", "fact": {"kind": "midpoint", "args": []}}]}]
    with pytest.raises(ValueError, match="no val questions to score"):
        scored_questions(rows, "val", None, 0)
    with pytest.raises(ValueError, match="no test questions to score"):
        scored_questions([], "test", None, 0)


def test_lmm_stages_train_on_balanced_questions_in_their_own_folders(smoke_data):
    cfg = _cfg()
    out = train_lmm(cfg, "lm", data_root=smoke_data)["lm"]
    assert f"-qa{QA_VERSION}-" in stage_dir(cfg, "lm").name
    assert out["yes_no_selection"]["qa_version"] == QA_VERSION
    rows = load_split(smoke_data, "train")[:16]
    assert out["yes_no_selection"]["relations"] == balanced_rows(rows)[1].relations
    assert json.loads((stage_dir(cfg, "lm") / "config.json").read_text())["qa_version"] == QA_VERSION


# ----------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    "pred, truth, kind, same",
    [
        ("5", "5", "length", True),
        ("5.0", "5", "length", True),
        (" 5 .", "5", "length", True),
        ("4.5", "4.6", "length", False),
        ("40°", "40°", "angle", True),
        ("40 degrees", "40°", "angle", True),
        ("Yes", "yes", "yes_no", True),
        ("no.", "yes", "yes_no", False),
        ("DA", "AD", "which", True),
        ("AE", "AD", "which", False),
        ("Right Triangle", "right triangle", "shape", True),
        ("isosceles triangle", "right triangle", "shape", False),
    ],
)
def test_exact_match_after_normalisation(pred, truth, kind, same):
    assert exact_match(pred, truth, kind) is same


def test_answers_are_rechecked_against_the_scene(smoke_data):
    rows = load_split(smoke_data, "test")
    seen = set()
    for r in rows:
        scene = Scene.from_dict(r["scene"])
        for q in r["qa"]:
            q = {**q, "_scene": scene}
            claim, holds = claimed_fact(q, q["answer"])  # the truth asserts a true fact
            assert holds is True, (q["question"], q["answer"], claim)
            if q["kind"] == "yes_no":
                wrong = "no" if normalize(q["answer"], "yes_no") == "yes" else "yes"
                claim, holds = claimed_fact(q, wrong)
                assert holds is False and q["fact"]["kind"] in claim
            seen.add(q["kind"])
    assert {"yes_no", "length", "shape"} <= seen
    assert claimed_fact({**rows[0]["qa"][0], "_scene": Scene.from_dict(rows[0]["scene"])}, "banana")[1] in (None, False)


# ----------------------------------------------------------------------------- bad input


def _fake_run(folder, profile):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TrainConfig(profile=profile, loss="clip").resolved().to_dict()))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_an_unknown_run_or_a_run_of_another_image_size_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="unknown vision run 'clip-nowhere'"):
        load_vision_tower("clip-nowhere", "smoke")
    run = _fake_run(tmp_path / "cpu-run", "cpu")
    with pytest.raises(ValueError, match="trained on 96 px diagrams"):
        load_vision_tower(str(run), "smoke")
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        load_vision_tower(str(tmp_path), "smoke")


def test_a_missing_tokenizer_or_lm_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer folder .*nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="LM folder .*nowhere"):
        load_lm(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no trained LMM"):
        load_lmm(tmp_path)


def test_a_question_longer_than_the_context_is_named(tok):
    with pytest.raises(ValueError, match="question 'Is AB .* needs .* tokens .* context holds 40"):
        D.sft_examples(
            tok,
            [{"id": "train-0", "qa": [{"question": "Is AB " + "parallel " * 30 + "to CD?", "answer": "yes"}]}],
            n_image_tokens=17,
            context_length=40,
        )


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"full": True, "lora_r": 8}, "give one of them"),
        ({"token_grid": "layer9"}, "unknown token grid"),
        ({"sft_steps": -1}, "sft_steps must be a positive integer"),
        ({"profile": "laptop"}, "unknown profile"),
        ({"vision": ""}, "vision must name a run"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ],
)
def test_bad_config_names_the_problem(kw, words):
    with pytest.raises(ValueError, match=words):
        LMMConfig(**kw)


def test_resume_with_another_config_names_the_difference(smoke_data):
    train_lmm(_cfg(), "lm", data_root=smoke_data)
    train_lmm(_cfg(), "align", data_root=smoke_data)
    with pytest.raises(KeyboardInterrupt):
        train_lmm(_cfg(), "sft", data_root=smoke_data, callbacks=[_Stop(1)])
    # same folder (the batch size is not in its name only when it is the profile's), other seed of the tower
    import mmgeo_utils.lmm.train as T

    other = _cfg()
    saved = json.loads((stage_dir(other, "sft") / "config.json").read_text())
    saved["lora_r"] = 99
    (stage_dir(other, "sft") / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match=r"config differs in lora_r \(saved 99, now 4\)"):
        T.train_lmm(other, "sft", data_root=smoke_data, resume=True)


def test_a_stage_trained_on_another_build_is_neither_resumed_nor_reused(smoke_data, tmp_path):
    from mmgeo_utils.data import DatasetConfig, build_dataset

    other = build_dataset(
        DatasetConfig.from_profile("smoke", seed=1, negatives=False), out_dir=tmp_path / "d1", workers=1, progress=False
    )
    with pytest.raises(KeyboardInterrupt):
        train_lmm(_cfg(), "lm", data_root=smoke_data, callbacks=[_Stop(1)])
    with pytest.raises(CheckpointError, match=r"another dataset build.*config differs in data"):
        train_lmm(_cfg(), "lm", data_root=other, resume=True)
    train_lmm(_cfg(), "lm", data_root=smoke_data, resume=True)  # its own data: resumes and finishes
    with pytest.raises(CheckpointError, match="another dataset build"):  # a finished stage is not reused either
        train_lmm(_cfg(), "lm", data_root=other)


def test_a_vit_tower_gives_its_patch_tokens_and_refuses_resnet_grids():
    from mmgeo_utils.clip.models import dense_visual_features

    tower = load_vision_tower("random", "gpu")  # the gpu profile's ViT, untrained
    assert tower.token_grid == "patches"
    feats = tower(torch.zeros(1, 3, 224, 224))
    assert join(feats, "patches").shape == (1, 196, 384)  # 14 × 14 patches of 16 px
    # the tokens are lesson 05's dense features (open_clip's public forward_intermediates), row-major
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        dense = dense_visual_features(tower.visual, x)
        assert torch.equal(tower(x)["grid"], dense.flatten(2).transpose(1, 2)) and dense.shape[-2:] == (14, 14)
        assert torch.allclose(tower(x)["grid"], tower.visual.transformer(tower.visual._embeds(x))[:, 1:], atol=1e-5)
    from mmgeo_utils.lmm.vision_tower import VisionTower

    with pytest.raises(ValueError, match="reads a ResNet's stages"):
        VisionTower(tower.visual, "layer3+pooled", "vit")
    resnet = load_vision_tower("random", "smoke")
    with pytest.raises(ValueError, match="needs a ViT tower"):
        VisionTower(resnet.visual, "patches", "resnet")


def test_a_typed_build_fact_reads_with_its_shape_name(smoke_data):
    row = load_split(smoke_data, "test")[0]
    assert isinstance(row["scene"], dict)  # load_split decodes the typed rows: no JSON strings left to parse
    shape = {"kind": "shape", "args": ["A", "B", "C"], "value": None, "value_text": "right triangle"}
    scene = Scene.from_dict(row["scene"])
    claim, _ = claimed_fact({"kind": "shape", "question": "?", "fact": shape, "_scene": scene}, "right triangle")
    assert "right triangle" in claim
