"""The training loop: configuration errors, batch order, losses, resume, checkpoints, init."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmgeo_utils.clip import LOSSES, ContrastiveObjective, TrainConfig, load_config, read_csv, train
from mmgeo_utils.clip.checkpoint import CheckpointError
from mmgeo_utils.clip.losses import clip_loss, per_anchor_hard_negative_loss
from mmgeo_utils.clip.models import create_clip
from mmgeo_utils.data import load_split
from mmgeo_utils.data.contrastive import StepBatchSampler, hard_order, neighbour_lists


def _cfg(**kw):
    return TrainConfig(**{"profile": "smoke", "steps": 4, "eval_every": 2, "checkpoint_every": 2, "workers": 0, **kw})


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"loss": "triplet"}, "unknown loss 'triplet'"),
        ({"negatives": ("image", "paraphrase")}, "unknown negative source"),
        ({"batching": "sorted"}, "unknown batching 'sorted'"),
        ({"loss": "mmclip", "negatives": ()}, "needs at least one negative source"),
        ({"loss": "mmclip+imc_cmr", "negatives": ("image",)}, "needs text negatives"),
        ({"precision": "fp8"}, "unknown precision"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"profile": "laptop"}, "unknown profile"),
        ({"loss": "negclip", "hard_weight": 0.5}, "has no such sum"),
        ({"loss": "mmclip", "hard_weight": 0}, "hard_weight must be a positive number"),
        ({"temperature": 0.005}, r"temperature must lie in \[0.01, 1\]"),
        ({"temperature": 0.03, "init": "runs/cpu/clip-s0"}, "--init and --pretrained load their own"),
    ],
)
def test_bad_config_names_the_problem(kw, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**kw)


def test_images_per_step_counts_image_negatives():
    clip = TrainConfig(profile="cpu", loss="clip", negatives=(), images_per_step=64)
    mm = TrainConfig(profile="cpu", loss="mmclip", negatives=("image", "rule"), num_negatives=3, images_per_step=64)
    text_only = TrainConfig(profile="cpu", loss="mmclip", negatives=("rule", "retrieval"), images_per_step=64)
    assert clip.positives_per_step == 64 and mm.positives_per_step == 16 and text_only.positives_per_step == 64
    with pytest.raises(ValueError, match="at least 2"):
        _ = TrainConfig(
            profile="cpu", loss="mmclip", negatives=("image",), num_negatives=40, images_per_step=64
        ).positives_per_step


@pytest.mark.parametrize(
    "native, emulated, expected",
    [
        (True, True, torch.bfloat16),  # Ampere and newer: bf16
        (False, True, torch.float16),  # a T4: bf16 only by emulation, so fp16 with the grad scaler
        (False, False, torch.float16),
    ],
)
def test_auto_precision_uses_bf16_only_where_native(monkeypatch, native, emulated, expected):
    from mmgeo_utils.clip import loop

    def is_bf16_supported(including_emulation=True):
        return native or (including_emulation and emulated)

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert loop.resolve_precision("auto", "cuda") is expected
    assert loop.resolve_precision("auto", "cpu") is None
    assert loop.resolve_precision("bf16", "cuda") is torch.bfloat16  # an explicit choice is kept
    made = {}  # this host has no CUDA, where a real GradScaler("cuda") disables itself: record the request
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: made.update(device=device, enabled=enabled))
    *_, amp_dtype = loop.make_optimization(torch.nn.Linear(2, 2), _cfg().resolved(), "cuda")
    assert amp_dtype is expected and made == {"device": "cuda", "enabled": expected is torch.float16}


def test_auto_precision_on_old_torch_asks_the_capability(monkeypatch):
    from mmgeo_utils.clip import loop

    def old_signature():  # torch < 2.4 has no including_emulation
        return True

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", old_signature)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert loop.resolve_precision("auto", "cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert loop.resolve_precision("auto", "cuda") is torch.bfloat16


# ----------------------------------------------------------------------------- batch order


def test_batches_are_a_pure_function_of_seed_and_step():
    full = list(StepBatchSampler(50, 8, 20, seed=3))
    resumed = list(StepBatchSampler(50, 8, 20, seed=3, start=7))
    assert resumed == full[7:]
    assert list(StepBatchSampler(50, 8, 20, seed=4)) != full
    epoch = [i for b in full[:6] for i in b]  # 6 full batches per epoch of 50
    assert len(set(epoch)) == 48  # no sample twice within an epoch
    ranks = [list(StepBatchSampler(50, 8, 20, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert [a + b for a, b in zip(*ranks)] == full  # ranks split the same global batch


def test_sampler_rejects_impossible_batches():
    with pytest.raises(ValueError, match="only 5"):
        StepBatchSampler(5, 8, 3, seed=0)
    with pytest.raises(ValueError, match="not divisible"):
        StepBatchSampler(50, 9, 3, seed=0, world_size=2)


def test_hard_batches_group_retrieval_neighbours(smoke_data):
    rows = load_split(smoke_data, "train")
    nbrs = neighbour_lists(rows)
    order = hard_order(nbrs, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(len(rows)))

    def neighbour_pairs(order):
        batches = [set(order[i : i + 8].tolist()) for i in range(0, len(order) - 7, 8)]
        return sum(j in b for b in batches for i in b for j in nbrs[i])

    rand = np.mean([neighbour_pairs(np.random.default_rng(s).permutation(len(rows))) for s in range(20)])
    assert neighbour_pairs(order) > 2 * rand


# ----------------------------------------------------------------------------- the objective


def _features(b=6, k=3, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    return dict(
        image=f(b, d),
        text=f(b, d),
        logit_scale=torch.tensor(10.0),
        image_negatives=f(b, k, d),
        image_negative_mask=torch.ones(b, k, dtype=torch.bool),
        text_negatives=f(b, k, d),
        text_negative_mask=torch.ones(b, k, dtype=torch.bool),
    )


def test_clip_objective_agrees_with_open_clip():
    from open_clip.loss import ClipLoss

    f = _features()
    ours = ContrastiveObjective("clip")(f["image"], f["text"], f["logit_scale"])["loss"]
    theirs = ClipLoss()(f["image"], f["text"], f["logit_scale"])
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_mmclip_is_in_batch_clip_plus_the_per_anchor_loss():
    f = _features()
    out = ContrastiveObjective("mmclip")(**f)
    per_anchor = (
        per_anchor_hard_negative_loss(f["image"], f["text"], f["text_negatives"], f["logit_scale"])
        + per_anchor_hard_negative_loss(f["text"], f["image"], f["image_negatives"], f["logit_scale"])
    ) / 2
    assert torch.allclose(out["loss"], clip_loss(f["image"], f["text"], f["logit_scale"]) + per_anchor, atol=1e-6)
    full = ContrastiveObjective("mmclip+imc_cmr")(**f)
    assert full["loss"] > out["loss"] and {"imc_loss", "cmr_loss"} <= set(full)
    half = ContrastiveObjective("mmclip", hard_weight=0.5)(**f)
    assert torch.allclose(
        half["loss"], clip_loss(f["image"], f["text"], f["logit_scale"]) + 0.5 * per_anchor, atol=1e-6
    )


def test_a_hard_weight_names_its_run_and_older_configs_read_as_weight_one(tmp_path):
    from mmgeo_utils.experiments import recipe_of

    cfg = TrainConfig(profile="cpu", loss="mmclip", negatives=("rule",), num_negatives=1, hard_weight=0.5)
    assert cfg.run_name() == "mmclip-rule-k1-w0.5-random-s0"
    assert (
        TrainConfig(**{**cfg.to_dict(), "negatives": ("rule",), "hard_weight": 1}).run_name()
        == "mmclip-rule-k1-random-s0"
    )
    # sizes and optimiser settings away from the profile's name themselves; the defaults do not
    assert (
        TrainConfig(**{**cfg.to_dict(), "negatives": ("rule",), "steps": 500, "lr": 5e-4}).run_name() == cfg.run_name()
    )
    longer = TrainConfig(
        **{**cfg.to_dict(), "negatives": ("rule",), "steps": 1000, "lr": 1e-3, "images_per_step": 128, "data_seed": 1}
    )
    assert longer.run_name() == "mmclip-rule-k1-w0.5-random-1000steps-b128-lr0.001-data1-s0"
    assert recipe_of(longer.resolved().to_dict()) == "mmclip-rule-k1-w0.5-random-1000steps-b128-lr0.001-data1"
    old = {k: v for k, v in cfg.resolved().to_dict().items() if k != "hard_weight"}  # a run from before the knob
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_config(tmp_path).hard_weight == 1.0


def test_a_temperature_names_its_run_and_older_configs_read_as_open_clips(tmp_path):
    cfg = TrainConfig(profile="cpu", loss="clip", temperature=0.025)
    assert cfg.run_name() == "clip-inbatch-random-t0.025-s0"
    old = {k: v for k, v in cfg.resolved().to_dict().items() if k != "temperature"}  # a run from before the knob
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_config(tmp_path).temperature is None
    assert load_config(tmp_path).run_name() == "clip-inbatch-random-s0"


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_and_logs(loss, smoke_data, tmp_path):
    result = train(
        _cfg(loss=loss, steps=2, negatives=("image", "rule", "retrieval") if loss != "clip" else ()),
        out_dir=tmp_path / loss,
        data_root=smoke_data,
        progress=False,
    )
    log = (result.run_dir / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 3  # header, step 1, step 2
    evals = (result.run_dir / "eval_log.csv").read_text().splitlines()
    assert len(evals) == 2 and evals[1].startswith("2,")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["profile"] == "smoke" and summary["images_per_s"] > 0
    assert np.isfinite(float(log[2].split(",")[1]))  # the total loss


def test_ce_clip_thresholds_are_logged_per_slot_and_random_negatives_train(smoke_data, tmp_path):
    """Lesson 08 plots CE-CLIP's θ_k over training from the train log: one column per text-negative slot,
    0 at the first step (the curriculum starts there), then the previous batch's clamped mean gap."""
    cfg = _cfg(loss="mmclip+imc_cmr", negatives=("rule", "random"), num_negatives=2, steps=3, log_every=1)
    result = train(cfg, out_dir=tmp_path / "ce", data_root=smoke_data, progress=False)
    log = read_csv(result.run_dir / "train_log.csv")
    slots = ["rule:label", "rule:shape", "rule:relation", "rule:number", "random:0", "random:1"]
    theta = log[[f"theta_{s}" for s in slots]].to_numpy()
    assert theta.shape == (3, 6) and np.all(theta[0] == 0) and np.all(theta >= 0) and np.all(np.isfinite(theta))
    assert np.any(theta[1:] > 0)  # the margins adapt
    plain = train(_cfg(loss="mmclip", negatives=("rule",), steps=1), out_dir=tmp_path / "mm", data_root=smoke_data,
                  progress=False)  # fmt: skip
    assert not any(c.startswith("theta_") for c in read_csv(plain.run_dir / "train_log.csv").columns)


def test_a_run_starts_at_its_temperature_and_still_learns_it(smoke_data, tmp_path):
    result = train(
        _cfg(loss="clip", steps=2, temperature=0.02), out_dir=tmp_path / "t", data_root=smoke_data, progress=False
    )
    first = float(read_csv(result.run_dir / "train_log.csv")["logit_scale"].iloc[0])
    assert first == pytest.approx(50.0, rel=1e-3)  # one warm-up step has barely moved it from 1 / 0.02
    final = float(load_file(result.run_dir / "model.safetensors")["logit_scale"].exp())
    assert final != pytest.approx(50.0, abs=1e-6) and final == pytest.approx(50.0, rel=0.01)  # learned, not frozen
    assert load_config(result.run_dir).temperature == 0.02


def test_hard_batching_trains(smoke_data, tmp_path):
    result = train(
        _cfg(loss="negclip", batching="hard", steps=2), out_dir=tmp_path / "hard", data_root=smoke_data, progress=False
    )
    assert result.steps_done == 2


class _Stop:
    def __init__(self, at):
        self.at = at

    def __call__(self, step, record):
        if step == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_to_the_same_weights(smoke_data, tmp_path):
    cfg = _cfg(loss="mmclip+imc_cmr", steps=6, checkpoint_every=2)
    whole = train(cfg, out_dir=tmp_path / "whole", data_root=smoke_data, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "cut", data_root=smoke_data, progress=False, callbacks=[_Stop(3)])
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = train(cfg, out_dir=tmp_path / "cut", data_root=smoke_data, progress=False, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps_done == 6
    a, b = load_file(str(whole.model_path)), load_file(str(resumed.model_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda p: [",".join(r.split(",")[:-3]) for r in p.read_text().splitlines()]  # noqa: E731 (timings differ)
    assert strip(whole.run_dir / "train_log.csv") == strip(resumed.run_dir / "train_log.csv")


def test_runs_are_never_overwritten_and_resume_checks_the_config(smoke_data, tmp_path):
    cfg = _cfg(loss="clip", negatives=(), steps=2)
    train(cfg, out_dir=tmp_path / "r", data_root=smoke_data, progress=False)
    with pytest.raises(FileExistsError, match="finished run"):
        train(cfg, out_dir=tmp_path / "r", data_root=smoke_data, progress=False)
    again = train(cfg, out_dir=tmp_path / "r", data_root=smoke_data, progress=False, resume=True)
    assert again.steps_done == 2  # a finished run is reused, not retrained
    with pytest.raises(CheckpointError, match="lr"):
        train(
            _cfg(loss="clip", negatives=(), steps=2, lr=1e-3),
            out_dir=tmp_path / "r",
            data_root=smoke_data,
            progress=False,
            resume=True,
        )


def test_a_run_trains_on_its_thread_count_records_it_and_restores_the_process(smoke_data, tmp_path):
    assert TrainConfig(profile="cpu").resolved().threads == 1  # what the published cpu numbers used
    before, seen = torch.get_num_threads(), []
    wanted = 1 if before != 1 else 2
    cfg = _cfg(loss="clip", negatives=(), steps=2, threads=wanted)
    train(
        cfg,
        out_dir=tmp_path / "t",
        data_root=smoke_data,
        progress=False,
        callbacks=[lambda step, record: seen.append(torch.get_num_threads())],
    )
    assert seen == [wanted, wanted] and torch.get_num_threads() == before
    assert json.loads((tmp_path / "t" / "config.json").read_text())["threads"] == wanted
    with pytest.raises(CheckpointError, match="threads"):  # another count would train another model
        train(
            _cfg(loss="clip", negatives=(), steps=2, threads=wanted + 1),
            out_dir=tmp_path / "t",
            data_root=smoke_data,
            progress=False,
            resume=True,
        )


def test_a_corrupt_checkpoint_is_named(smoke_data, tmp_path):
    cfg = _cfg(loss="clip", negatives=(), steps=4, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "c", data_root=smoke_data, progress=False, callbacks=[_Stop(2)])
    state = tmp_path / "c" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="state.safetensors is corrupt"):
        train(cfg, out_dir=tmp_path / "c", data_root=smoke_data, progress=False, resume=True)


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    from mmgeo_utils.clip.checkpoint import save_model

    a = create_clip("mmgeo-resnet-tiny", image_size=64)
    path = save_model(tmp_path / "w.safetensors", a)
    b = create_clip("mmgeo-resnet-tiny", pretrained=path, image_size=64)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="missing.safetensors not found"):
        create_clip("mmgeo-resnet-tiny", pretrained=tmp_path / "missing.safetensors", image_size=64)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        create_clip("mmgeo-resnet-huge")


def test_two_stage_init_starts_from_the_first_stage(smoke_data, tmp_path):
    from mmgeo_utils.clip import load_init

    first = train(
        _cfg(loss="clip", negatives=(), steps=2), out_dir=tmp_path / "s1", data_root=smoke_data, progress=False
    )
    model = create_clip("mmgeo-resnet-tiny", image_size=64)
    load_init(model, first.run_dir)
    saved = load_file(str(first.model_path))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    second = train(
        _cfg(loss="mmclip", steps=1, init=str(first.run_dir), negatives=("rule",)),
        out_dir=tmp_path / "s2",
        data_root=smoke_data,
        progress=False,
    )
    assert second.steps_done == 1 and "-init-" in second.config.run_name()
    with pytest.raises(FileNotFoundError, match="--init checkpoint"):
        train(
            _cfg(loss="clip", negatives=(), init=str(tmp_path / "nope")),
            out_dir=tmp_path / "s3",
            data_root=smoke_data,
            progress=False,
        )


# ----------------------------------------------------------------------------- faults (issue 20)


def _same_tensors(a_path, b_path, prefix=""):
    a, b = load_file(str(a_path)), load_file(str(b_path))
    keys = sorted(k for k in a if k.startswith(prefix))
    assert keys and keys == sorted(k for k in b if k.startswith(prefix))
    return [k for k in keys if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def uninterrupted(smoke_data, tmp_path_factory):
    """4 steps of MMCLIP with rule negatives, checkpoints every 2, never stopped."""
    cfg = _cfg(loss="mmclip", negatives=("rule",), steps=4, checkpoint_every=2)
    return cfg, train(cfg, out_dir=tmp_path_factory.mktemp("whole") / "run", data_root=smoke_data, progress=False)


def _interrupt_in_forward_of_step(monkeypatch, at, interrupt):
    """Call ``interrupt`` inside step ``at``'s loss, after the model's forward moved its BatchNorm statistics."""
    forward, calls = ContrastiveObjective.forward, []

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            interrupt()
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ContrastiveObjective, "forward", wrapped)


def _raise():
    raise KeyboardInterrupt


def _ctrl_c():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize(
    "interrupt, resumes_from", [(_raise, 2), (_ctrl_c, 3)], ids=["raised-inside-step-3", "ctrl-c-inside-step-3"]
)
def test_an_interrupt_inside_a_step_resumes_bit_exact(
    interrupt, resumes_from, uninterrupted, smoke_data, tmp_path, monkeypatch
):
    """Issue 20: the checkpoint written on Ctrl-C named step n after step n+1 had partly run (BatchNorm 21 vs 20).

    A KeyboardInterrupt raised inside a step saves nothing for it (resume starts at the periodic
    checkpoint of step 2); a real Ctrl-C lets the step finish and saves step 3. Either way the
    resumed run's weights, buffers and optimizer state equal the uninterrupted run's bit for bit.
    """
    import signal

    from mmgeo_utils.clip import TrainingInterrupted

    cfg, whole = uninterrupted
    # a terminal's Ctrl-C reaches Python's default handler; the test must not depend on what an earlier
    # test or plugin left installed for SIGINT (the guard only takes over the default handler)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as m:
            _interrupt_in_forward_of_step(m, 3, interrupt)
            with pytest.raises(TrainingInterrupted, match="interrupted"):
                train(cfg, out_dir=tmp_path / "cut", data_root=smoke_data, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = train(cfg, out_dir=tmp_path / "cut", data_root=smoke_data, progress=False, resume=True)
    assert resumed.resumed_from == resumes_from and resumed.steps_done == 4
    assert _same_tensors(whole.model_path, resumed.model_path) == []  # every weight and buffer
    assert load_file(str(whole.model_path))["visual.bn1.num_batches_tracked"].item() == 4
    assert _same_tensors(whole.run_dir / "state.safetensors", resumed.run_dir / "state.safetensors", "optim.") == []


def test_a_non_finite_loss_stops_training_before_a_model_is_written(smoke_data, tmp_path, monkeypatch):
    from mmgeo_utils.clip import TrainingDiverged

    forward, calls = ContrastiveObjective.forward, []

    def nan_at_step_2(self, *args, **kwargs):
        calls.append(1)
        out = forward(self, *args, **kwargs)
        if len(calls) == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(ContrastiveObjective, "forward", nan_at_step_2)
    cfg = _cfg(loss="clip", negatives=(), steps=3, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at step 2; .*lr 0.0005, hard_weight 1"):
        train(cfg, out_dir=tmp_path / "nan", data_root=smoke_data, progress=False)
    assert not (tmp_path / "nan" / "model.safetensors").exists() and not (tmp_path / "nan" / "summary.json").exists()
    state = load_file(str(tmp_path / "nan" / "state.safetensors"))  # the last good checkpoint: step 1, finite
    assert all(torch.isfinite(v).all() for k, v in state.items() if v.is_floating_point())


def test_lr_and_weight_must_be_finite():
    for kw, words in (
        ({"lr": float("inf")}, "lr must be a positive number"),
        ({"lr": 0}, "lr must be a positive"),
        ({"hard_weight": float("inf")}, "hard_weight must be a positive number"),
        ({"seed": -5}, "seed must be a non-negative integer"),
    ):
        with pytest.raises(ValueError, match=words):
            TrainConfig(**kw)


def test_a_run_records_its_data_and_resumes_only_on_it(smoke_data, tmp_path):
    from mmgeo_utils.data import split_fingerprint

    cfg = _cfg(loss="clip", negatives=(), steps=2)
    run = train(cfg, out_dir=tmp_path / "r", data_root=smoke_data, progress=False).run_dir
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["fingerprint"] == {s: split_fingerprint(smoke_data, s) for s in ("train", "val")}
    assert data["root"] == str(smoke_data) and data["seed"] == 0
    assert load_config(run) == cfg.resolved()  # the record is not part of the recipe


def test_pretrained_weights_fine_tune_at_a_small_rate_with_warm_up():
    from mmgeo_utils.clip import DEFAULT_LR, FINETUNE_LR

    paper = TrainConfig(profile="paper").resolved()
    assert paper.pretrained == "openai" and paper.lr == FINETUNE_LR == 2e-5
    assert paper.warmup > 0 and int(paper.warmup * paper.steps) >= 100  # a warm-up of hundreds of steps
    assert TrainConfig(profile="cpu").resolved().lr == DEFAULT_LR  # from scratch: unchanged
    assert TrainConfig(profile="cpu", pretrained="openai", model="ViT-B-32").resolved().lr == FINETUNE_LR
    assert "-lr" not in TrainConfig(profile="paper").run_name()
    assert TrainConfig(profile="paper", lr=1e-5).run_name().endswith("-lr1e-05-s0")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        TrainConfig(lr=0)


def test_grad_checkpointing_saves_memory_without_changing_the_step(smoke_data, tmp_path):
    """Activation checkpointing (open_clip's set_grad_checkpointing) recomputes, it does not approximate:
    the same weights after two steps; it may be switched on or off when a run resumes."""
    plain = train(
        _cfg(loss="clip", negatives=(), steps=2, model="mmgeo-vit-small"),
        out_dir=tmp_path / "a",
        data_root=smoke_data,
        progress=False,
    )
    ckpt = train(
        _cfg(loss="clip", negatives=(), steps=2, model="mmgeo-vit-small", grad_checkpointing=True),
        out_dir=tmp_path / "b",
        data_root=smoke_data,
        progress=False,
    )
    a, b = load_file(str(plain.model_path)), load_file(str(ckpt.model_path))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_loader_workers_fit_the_machine_on_cuda(smoke_data, monkeypatch):
    """With CUDA, up to 8 workers with one core left to feed the GPU: 1 on Colab's 2 vCPUs, not 8."""
    from mmgeo_utils.clip import evaluate, make_loader
    from mmgeo_utils.clip.models import get_tokenizer
    from mmgeo_utils.data.contrastive import HardNegativeDataset

    cfg = TrainConfig(profile="smoke", loss="clip", steps=2).resolved()
    data = HardNegativeDataset(smoke_data, "train", cfg.negative_config())
    tok = get_tokenizer(cfg.model)
    for cores, expected in ((2, 1), (16, 8)):
        monkeypatch.setattr(evaluate, "usable_cores", lambda cores=cores: cores)
        loader = make_loader(data, tok, cfg, device_type="cuda")
        assert loader.num_workers == expected and loader.pin_memory
    assert make_loader(data, tok, cfg, device_type="cpu").num_workers == 1
