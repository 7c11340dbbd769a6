"""Bad input and faults, as a hostile new user tries them (issue 20): one table, one clear line each.

Every case drives the ``mmgeo`` command line (``mmgeo_utils.cli.main``) the way a user would and
must end with a non-zero exit and a one-line message that contains the case's words: no
traceback, no silent default, nothing overwritten. ``SETUPS`` prepare what a case needs (a
damaged dataset, a finished run, a garbage checkpoint) in the case's own temporary folder; the
smoke dataset is shared and never modified. The count of cases is the count of handled probes:
a new finding gets a row here.
"""

import importlib
import json
import os
import shutil

import pytest
import torch

from mmgeo_utils.cli import main
from mmgeo_utils.clip import TrainConfig, train
from mmgeo_utils.clip.checkpoint import save_model
from mmgeo_utils.data import DatasetConfig, build_dataset, check_dataset, file_hashes
from mmgeo_utils.data import build as data_build
from mmgeo_utils.data.config import MANIFEST, METADATA
from mmgeo_utils.diagrams.scene import Scene, validate_scene
from mmgeo_utils.repro import REPO_ROOT

# ----------------------------------------------------------------------------- setups


def _train_args(data, out, *extra):
    return [
        "train-clip",
        "--profile",
        "smoke",
        "--loss",
        "clip",
        "--data",
        str(data),
        "--out",
        str(out),
        "--workers",
        "0",
        "--quiet",
        "--steps",
        "2",
        *extra,
    ]


def _copy_data(data, tmp_path):
    copy = tmp_path / "data copy"
    shutil.copytree(data, copy)
    return copy


def _cached_run(data, tmp_path, kind):
    """A copy in ``tmp_path/run`` of a run trained once per session (beside the shared data, never in it)."""
    cached = data.parent / f"{kind}-run"
    if not cached.exists():
        if kind == "finished":  # 1 step: weights, checkpoint, summary
            cfg = TrainConfig(profile="smoke", loss="clip", negatives=(), steps=1, workers=0)
            train(cfg, out_dir=cached, data_root=data, progress=False)
        else:  # stopped after its step-1 checkpoint, of 2
            cfg = TrainConfig(profile="smoke", loss="clip", negatives=(), steps=2, checkpoint_every=1, workers=0)

            def stop(step, record):
                raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                train(cfg, out_dir=cached, data_root=data, progress=False, callbacks=[stop])
    return shutil.copytree(cached, tmp_path / "run")


def _finished_run(data, tmp_path):
    return _cached_run(data, tmp_path, "finished")


def _garbage(tmp_path, name="garbage.safetensors"):
    path = tmp_path / name
    path.write_bytes(b"this is not a safetensors file " * 8)
    return path


def _other_model(tmp_path):
    path = tmp_path / "linear.safetensors"
    save_model(path, torch.nn.Linear(3, 2))
    return path


def _truncated_model(data, tmp_path):
    model = _finished_run(data, tmp_path) / "model.safetensors"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(model.read_bytes()[:5000])
    return cut


def _read_only(tmp_path, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return folder
    # root writes anywhere: make the write probe fail as it does for a normal user
    import tempfile

    (folder / "probe").unlink()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    return folder


def _alter_caption(data, tmp_path):
    """A caption edited in place: same byte count, different meaning."""
    copy = _copy_data(data, tmp_path)
    meta = copy / "train" / METADATA
    text = meta.read_text()
    assert " is " in text
    meta.write_text(text.replace(" is ", " IS ", 1))
    return copy


def _png(copy, name="train-000003.png"):
    return copy / "train" / name


def _truncate_png(data, tmp_path):
    copy = _copy_data(data, tmp_path)
    png = _png(copy)
    png.write_bytes(png.read_bytes()[:60])
    return copy


def _scramble_pngs(data, tmp_path):
    """Every training PNG's pixels zeroed at the same byte size: only a full hash check notices."""
    copy = _copy_data(data, tmp_path)
    for png in (copy / "train").glob("train-*.png"):
        raw = bytearray(png.read_bytes())
        raw[60:-20] = bytes(len(raw) - 80)
        png.write_bytes(bytes(raw))
    return copy


def _other_seed_dataset(tmp_path):
    """A tiny dataset of another seed (positives only): a valid dataset that is not the run's."""
    config = DatasetConfig(name="other", image_size=64, n_train=8, n_val=4, n_test=2, seed=1)
    return build_dataset(config, out_dir=tmp_path / "other data", workers=1, progress=False)


def _interrupted_run(data, tmp_path):
    return _cached_run(data, tmp_path, "interrupted")


def _interrupt_inside_step(monkeypatch):
    train_module = importlib.import_module("mmgeo_utils.clip.train")  # the package exports the function train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_step", interrupted)


def _interrupt_data_build(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_build, "_run_shards", interrupted)


def _nan_loss(monkeypatch):
    from mmgeo_utils.clip import ContrastiveObjective

    forward = ContrastiveObjective.forward

    def nan_forward(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(ContrastiveObjective, "forward", nan_forward)


def _lmm_args(data, *extra):
    return [
        "train-lmm",
        "--profile",
        "smoke",
        "--data",
        str(data),
        "--lm-steps",
        "1",
        "--align-steps",
        "1",
        "--sft-steps",
        "1",
        "--train-scenes",
        "8",
        *extra,
    ]


def _fake_clip_run(tmp_path, profile, finished=True):
    """A folder that looks like a train-clip run of ``profile`` (config only; an empty model file when finished)."""
    folder = tmp_path / f"{profile}-clip-run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TrainConfig(profile=profile, loss="clip").resolved().to_dict()))
    if finished:
        (folder / "model.safetensors").write_bytes(b"")
    return folder


def _tiny_lm(folder, with_lm=True):
    """A local LM folder in save_pretrained's format (a BPE, and a smoke-sized Qwen2 unless ``with_lm`` is False)."""
    from mmgeo_utils.lmm.language_model import build_lm
    from mmgeo_utils.lmm.tokenizer import train_tokenizer
    from mmgeo_utils.profiles import get_lmm_sizes

    tok = train_tokenizer(["Triangle ABC has AB = 5.", "Question: Is AB parallel to CD?\nAnswer: no"] * 4, 300, folder)
    if with_lm:
        build_lm(get_lmm_sizes("smoke"), tok).save_pretrained(str(folder))
    return folder


def _lmm_context(monkeypatch, n):
    import dataclasses

    from mmgeo_utils import profiles

    monkeypatch.setitem(profiles.LMM_SIZES, "smoke", dataclasses.replace(profiles.LMM_SIZES["smoke"], context_length=n))


def _lmm_stage_with(data, tmp_path, lm_folder):
    """Stage lm of a blind LMM on the local LM ``lm_folder`` (its run folder is named after the folder's name)."""
    assert main(_lmm_args(data, "--vision", "none", "--stage", "lm", "--lm", str(lm_folder))) == 0


# ----------------------------------------------------------------------------- the table

# (id, argv from (data, tmp_path, monkeypatch), words the one-line message must contain)
CASES = [
    # numbers that used to fall back to a default, or fail without naming the option
    (
        "seed-negative",
        lambda d, t, m: _train_args(d, t / "r", "--seed", "-5"),
        ["argument --seed", "non-negative integer"],
    ),
    (
        "data-seed-negative",
        lambda d, t, m: ["data", "build", "--profile", "smoke", "--seed", "-5", "--out", str(t / "d")],
        ["argument --seed", "non-negative integer"],
    ),
    (
        "data-workers-0",
        lambda d, t, m: ["data", "build", "--profile", "smoke", "--workers", "0", "--out", str(t / "d")],
        ["argument --workers", "positive integer"],
    ),
    (
        "bench-n-0",
        lambda d, t, m: ["bench", "diagrams", "--profile", "smoke", "--n", "0"],
        ["argument --n", "positive integer"],
    ),
    (
        "bench-image-size-0",
        lambda d, t, m: ["bench", "diagrams", "--profile", "smoke", "--image-size", "0"],
        ["argument --image-size", "at least 16"],
    ),
    (
        "bench-workers-0",
        lambda d, t, m: ["bench", "diagrams", "--profile", "smoke", "--workers", "0"],
        ["argument --workers", "positive integer"],
    ),
    ("bench-negatives-n-0", lambda d, t, m: ["bench", "negatives", "--profile", "smoke", "--n", "0"], ["argument --n"]),
    (
        "bench-retrieval-n-1",
        lambda d, t, m: ["bench", "negatives", "--profile", "smoke", "--retrieval-n", "1"],
        ["argument --retrieval-n", "≥ 2"],
    ),
    (
        "bench-train-steps-0",
        lambda d, t, m: ["bench", "train", "--profile", "smoke", "--steps", "0"],
        ["argument --steps"],
    ),
    (
        "bench-train-rounds-0",
        lambda d, t, m: ["bench", "train", "--profile", "smoke", "--speedups", "--rounds", "0"],
        ["argument --rounds", "positive integer"],
    ),
    (
        "bench-train-rounds-without-speedups",
        lambda d, t, m: ["bench", "train", "--profile", "smoke", "--rounds", "2"],
        ["--rounds 2 belongs to --speedups"],
    ),
    (
        "train-steps-0",
        lambda d, t, m: _train_args(d, t / "r", "--steps", "0"),
        ["argument --steps", "positive integer"],
    ),
    ("train-steps-word", lambda d, t, m: _train_args(d, t / "r", "--steps", "ten"), ["argument --steps", "'ten'"]),
    (
        "experiment-seeds-negative",
        lambda d, t, m: ["experiment", "clip-vs-mmclip", "--profile", "smoke", "--seeds", "-1"],
        ["argument --seeds", "non-negative integer"],
    ),
    ("lr-inf", lambda d, t, m: _train_args(d, t / "r", "--lr", "inf"), ["argument --lr", "positive finite number"]),
    ("lr-nan", lambda d, t, m: _train_args(d, t / "r", "--lr", "nan"), ["argument --lr", "positive finite number"]),
    (
        "lr-negative",
        lambda d, t, m: _train_args(d, t / "r", "--lr=-0.001"),
        ["argument --lr", "positive finite number"],
    ),
    (
        "hard-weight-inf",
        lambda d, t, m: _train_args(d, t / "r", "--loss", "mmclip", "--hard-weight", "inf"),
        ["argument --hard-weight", "positive finite number"],
    ),
    (
        "num-negatives-0",
        lambda d, t, m: _train_args(d, t / "r", "--loss", "mmclip", "--negatives", "image", "--num-negatives", "0"),
        ["num_negatives=0", "no hard negatives", "image"],
    ),
    (
        "num-negatives-negative",
        lambda d, t, m: _train_args(d, t / "r", "--num-negatives", "-1"),
        ["argument --num-negatives"],
    ),
    (
        "temperature-out-of-range",
        lambda d, t, m: _train_args(d, t / "r", "--temperature", "5"),
        ["temperature must lie in [0.01, 1]"],
    ),
    (
        "unknown-negative-source",
        lambda d, t, m: _train_args(d, t / "r", "--loss", "mmclip", "--negatives", "image,paraphrase"),
        ["unknown negative source"],
    ),
    (
        "unknown-batching",
        lambda d, t, m: _train_args(d, t / "r", "--batching", "sorted"),
        ["argument --batching", "sorted"],
    ),
    (
        "unknown-profile",
        lambda d, t, m: ["course", "--profile", "laptop"],
        ["unknown profile 'laptop'", "(from argument)"],
    ),
    (
        "profile-typo-in-env",
        lambda d, t, m: (m.setenv("MMGEO_PROFILE", "smok"), ["experiment", "validate", str(t)])[1],
        ["unknown profile 'smok'", "$MMGEO_PROFILE"],
    ),
    # devices
    (
        "device-tpu",
        lambda d, t, m: _train_args(d, t / "r", "--device", "tpu"),
        ["unknown device 'tpu'", "cpu, cuda, mps"],
    ),
    (
        "device-tpu-eval",
        lambda d, t, m: ["eval-clip", "--profile", "smoke", "--checkpoint", str(t), "--device", "tpu"],
        ["unknown device 'tpu'"],
    ),
    (
        "device-tpu-bench",
        lambda d, t, m: ["bench", "train", "--profile", "smoke", "--device", "tpu"],
        ["unknown device 'tpu'"],
    ),
    pytest.param(
        "device-cuda-without-gpu",
        lambda d, t, m: _train_args(d, t / "r", "--device", "cuda"),
        ["device 'cuda'", "no CUDA GPU", "--device cpu"],
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
    ),
    # checkpoints that are not this model's weights
    (
        "init-garbage",
        lambda d, t, m: _train_args(d, t / "r", "--init", str(_garbage(t))),
        ["garbage.safetensors is corrupt or not a safetensors file"],
    ),
    (
        "init-truncated",
        lambda d, t, m: _train_args(d, t / "r", "--init", str(_truncated_model(d, t))),
        ["cut.safetensors is corrupt or not a safetensors file"],
    ),
    (
        "init-other-model",
        lambda d, t, m: _train_args(d, t / "r", "--init", str(_other_model(t))),
        ["linear.safetensors holds another model's weights", "missing tensor(s)", "unexpected tensor(s)"],
    ),
    (
        "init-state-file",
        lambda d, t, m: _train_args(d, t / "r", "--init", str(_finished_run(d, t) / "state.safetensors")),
        ["is a training checkpoint", "not a model"],
    ),
    (
        "init-missing",
        lambda d, t, m: _train_args(d, t / "r", "--init", str(t / "nope")),
        ["--init checkpoint", "not found"],
    ),
    (
        "pretrained-garbage",
        lambda d, t, m: _train_args(d, t / "r", "--pretrained", str(_garbage(t))),
        ["pretrained checkpoint", "garbage.safetensors cannot be loaded into mmgeo-resnet-tiny"],
    ),
    (
        "pretrained-other-model",
        lambda d, t, m: _train_args(d, t / "r", "--pretrained", str(_other_model(t))),
        ["linear.safetensors cannot be loaded into mmgeo-resnet-tiny"],
    ),
    (
        "resume-corrupt-state",
        lambda d, t, m: (
            (
                lambda run: (
                    (run / "state.safetensors").write_bytes((run / "state.safetensors").read_bytes()[:999]) and run
                )
            )(_interrupted_run(d, t)),
            _train_args(d, t / "run", "--resume"),
        )[1],
        ["state.safetensors is corrupt"],
    ),
    (
        "eval-missing-checkpoint",
        lambda d, t, m: ["eval-clip", "--profile", "smoke", "--checkpoint", str(t / "nothing")],
        ["not found"],
    ),
    # output folders: never overwrite, fail before the work
    (
        "out-is-a-file",
        lambda d, t, m: (t.joinpath("file").write_text("x"), _train_args(d, t / "file"))[1],
        ["is a file, not a folder"],
    ),
    (
        "out-holds-user-files",
        lambda d, t, m: (
            t.joinpath("mine").mkdir(),
            t.joinpath("mine", "notes.txt").write_text("x"),
            _train_args(d, t / "mine"),
        )[2],
        ["not a training run's", "notes.txt", "--overwrite"],
    ),
    (
        "out-holds-user-config",
        lambda d, t, m: (
            t.joinpath("mine").mkdir(),
            t.joinpath("mine", "config.json").write_text("{}"),
            _train_args(d, t / "mine"),
        )[2],
        ["config.json is not this run's config", "--overwrite"],
    ),
    (
        "out-holds-another-runs-config",
        lambda d, t, m: (
            _interrupted_run(d, t).joinpath("state.safetensors").unlink(),
            _train_args(d, t / "run", "--lr", "1e-3"),
        )[1],
        ["config.json is not this run's config"],
    ),
    (
        "out-finished-run-without-state",
        lambda d, t, m: (
            _finished_run(d, t).joinpath("state.safetensors").unlink(),
            _train_args(d, t / "run", "--steps", "1"),
        )[1],
        ["already holds a finished run", "--resume", "--overwrite"],
    ),
    (
        "out-weights-without-checkpoint",
        lambda d, t, m: (
            (lambda r: (r / "state.safetensors").unlink() or (r / "summary.json").unlink())(_finished_run(d, t)),
            _train_args(d, t / "run", "--steps", "1"),
        )[1],
        ["trained model.safetensors whose checkpoint and summary are gone"],
    ),
    (
        "out-unfinished-run",
        lambda d, t, m: (_interrupted_run(d, t), _train_args(d, t / "run"))[1],
        ["holds an unfinished run", "--resume"],
    ),
    (
        "resume-and-overwrite",
        lambda d, t, m: _train_args(d, t / "r", "--resume", "--overwrite"),
        ["--resume", "--overwrite", "give one of them"],
    ),
    ("out-read-only", lambda d, t, m: _train_args(d, _read_only(t, m) / "run"), ["cannot write to run folder"]),
    (
        "data-build-out-is-a-file",
        lambda d, t, m: (
            t.joinpath("f").write_text("x"),
            ["data", "build", "--profile", "smoke", "--out", str(t / "f")],
        )[1],
        ["is a file, not a folder"],
    ),
    (
        "data-build-foreign-folder",
        lambda d, t, m: (
            t.joinpath("mine.txt").write_text("x"),
            ["data", "build", "--profile", "smoke", "--out", str(t)],
        )[1],
        ["not made by build_dataset"],
    ),
    (
        "data-build-other-seed",
        lambda d, t, m: [
            "data",
            "build",
            "--profile",
            "smoke",
            "--seed",
            "1",
            "--out",
            str(_copy_data(d, t)),
            "--quiet",
        ],
        ["holds the dataset of another config", "seed 0", "--overwrite"],
    ),
    # data that is not what it claims to be
    ("data-not-a-dataset", lambda d, t, m: _train_args(t, t / "r"), ["manifest.json not found", "not a built dataset"]),
    (
        "data-caption-edited",
        lambda d, t, m: _train_args(_alter_caption(d, t), t / "r"),
        ["fails its quick check", "train/metadata.jsonl does not match its sha256"],
    ),
    (
        "data-png-truncated",
        lambda d, t, m: _train_args(_truncate_png(d, t), t / "r"),
        ["fails its quick check", "train/train-000003.png has 60 bytes"],
    ),
    (
        "data-png-altered-verify-full",
        lambda d, t, m: _train_args(_scramble_pngs(d, t), t / "r", "--verify", "full"),
        ["fails its full check", "does not match its sha256"],
    ),
    (
        "data-png-altered-read-in-training",
        lambda d, t, m: _train_args(_scramble_pngs(d, t), t / "r"),
        ["cannot read image", ".png", "--verify full"],
    ),
    (
        "data-png-altered-read-in-a-worker",
        lambda d, t, m: _train_args(_scramble_pngs(d, t), t / "r") + ["--workers", "1"],
        ["cannot read image", ".png", "--verify full"],
    ),
    (
        "resume-on-other-data",
        lambda d, t, m: (_interrupted_run(d, t), _train_args(_other_seed_dataset(t), t / "run", "--resume"))[1],
        ["cannot resume", "trained on other data", "seed 0", "seed 1"],
    ),
    # lesson 06's LMM (issue 24): checked before any stage trains where it can be
    (
        "lmm-unknown-vision-run",
        lambda d, t, m: _lmm_args(d, "--vision", "clip-nowhere"),
        ["unknown vision run 'clip-nowhere'", "give a run of mmgeo train-clip"],
    ),
    (
        "lmm-vision-run-of-another-image-size",
        lambda d, t, m: _lmm_args(d, "--vision", str(_fake_clip_run(t, "cpu"))),
        ["trained on 96 px diagrams", "profile smoke renders 64 px", "train an encoder on smoke"],
    ),
    (
        "lmm-unfinished-vision-run",
        lambda d, t, m: _lmm_args(d, "--vision", str(_fake_clip_run(t, "smoke", False))),
        ["is not a finished training run", "model.safetensors", "--resume"],
    ),
    (
        "lmm-missing-tokenizer-folder",
        lambda d, t, m: _lmm_args(d, "--vision", "none", "--lm", str(t / "nowhere")),
        ["tokenizer folder", "nowhere", "not found"],
    ),
    (
        "lmm-lm-folder-without-an-lm",
        lambda d, t, m: _lmm_args(d, "--vision", "none", "--lm", str(_tiny_lm(t / "tokenizer-only", with_lm=False))),
        ["LM folder", "tokenizer-only", "holds no config.json"],
    ),
    (
        "lmm-question-longer-than-the-context",
        lambda d, t, m: (_lmm_context(m, 12), _lmm_args(d, "--vision", "none"))[1],
        ["question", "needs", "the context holds 12", "shorten the question or raise context_length"],
    ),
    (
        "lmm-resume-with-another-config",
        lambda d, t, m: (
            _lmm_stage_with(d, t, _tiny_lm(t / "a" / "tiny-lm")),
            _lmm_args(d, "--vision", "none", "--stage", "lm", "--resume", "--lm", str(_tiny_lm(t / "b" / "tiny-lm"))),
        )[1],
        ["cannot resume", "config differs in lm", "a/tiny-lm", "b/tiny-lm"],
    ),
    # faults while running
    (
        "train-diverges",
        lambda d, t, m: (_nan_loss(m), _train_args(d, t / "r"))[1],
        ["training diverged", "loss is nan at step 1", "--lr", "no model.safetensors was written"],
    ),
    (
        "train-ctrl-c-inside-a-step",
        lambda d, t, m: (_interrupt_inside_step(m), _train_args(d, t / "r"))[1],
        ["interrupted inside step 1 of 2", "nothing was saved for it", "--resume"],
    ),
    (
        "data-build-ctrl-c",
        lambda d, t, m: (
            _interrupt_data_build(m),
            ["data", "build", "--profile", "smoke", "--out", str(t / "d"), "--quiet"],
        )[1],
        ["interrupted; rerun the same command to resume"],
    ),
]


def _case_id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name, argv, words", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_clear_line(name, argv, words, smoke_data, tmp_path, monkeypatch, capsys):
    args = argv(smoke_data, tmp_path, monkeypatch)
    capsys.readouterr()  # what setting the case up printed
    try:
        code = main(args)
    except SystemExit as e:  # argparse: usage, then one error line naming the option
        code = e.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"{name}: accepted"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    message = lines[-1]
    assert message.startswith("mmgeo"), err
    missing = [w for w in words if w not in message]
    assert not missing, f"{name}: {missing} not in {message!r}"


def test_the_table_covers_the_probes():
    assert len(CASES) >= 40


def test_nothing_was_overwritten_by_a_refused_build(smoke_data, tmp_path, capsys):
    copy = _copy_data(smoke_data, tmp_path)
    before = file_hashes(copy, skip=())
    assert main(["data", "build", "--profile", "smoke", "--seed", "1", "--out", str(copy), "--quiet"]) == 2
    assert file_hashes(copy, skip=()) == before


def test_a_refused_run_folder_keeps_the_users_files(smoke_data, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}\n')
    assert main(_train_args(smoke_data, folder)) == 2
    assert (folder / "config.json").read_text() == '{"mine": true}\n' and sorted(os.listdir(folder)) == ["config.json"]
    # --overwrite is the user's say-so: the run's files replace their namesakes, other files stay
    (folder / "notes.txt").write_text("keep me")
    assert main(_train_args(smoke_data, folder, "--overwrite")) == 0
    assert json.loads((folder / "config.json").read_text())["loss"] == "clip"
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "model.safetensors").is_file()


def test_a_full_check_finds_and_repairs_what_a_quick_one_cannot(smoke_data, tmp_path, capsys):
    copy = _scramble_pngs(smoke_data, tmp_path)
    reference = file_hashes(smoke_data)
    assert check_dataset(copy, DatasetConfig.from_profile("smoke")) is None  # same sizes: quick passes
    build = ["data", "build", "--profile", "smoke", "--out", str(copy), "--workers", "1", "--quiet"]
    assert main(build + ["--verify", "full"]) == 0
    assert file_hashes(copy) == reference


# ----------------------------------------------------------------------------- scenes


def _triangle(**points):
    return {
        "family": "triangle",
        "points": {"A": [0, 0], "B": [4, 0], "C": [1, 3], **points},
        "elements": [{"type": "polygon", "vertices": ["A", "B", "C"]}],
        "facts": [],
    }


@pytest.mark.parametrize(
    "make, words",
    [
        (
            lambda: Scene.from_dict({**_triangle(), "points": [["A", [0, 0]], ["B", [4, 0]], ["A", [1, 3]]]}),
            "label 'A' is used twice",
        ),
        (
            lambda: Scene.from_json(
                '{"family": "t", "points": {"A": [0, 0], "A": [1, 1]}, "elements": [], "facts": []}'
            ),
            "label 'A' is used twice",
        ),
        (lambda: Scene.from_dict(_triangle(C=[float("nan"), 3])), "point 'C' has non-finite coordinates"),
        (lambda: Scene.from_dict(_triangle(C=["one", 3])), "point 'C' has coordinates"),
    ],
)
def test_a_bad_scene_is_refused_when_read(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_render_and_describe_refuse_a_scene_that_fails_validation():
    from mmgeo_utils.diagrams.captions import describe
    from mmgeo_utils.diagrams.render import render

    scene = Scene.from_dict(_triangle())
    validate_scene(scene)
    scene.points["C"] = (float("nan"), 3.0)  # changed after reading: what validate_scene exists for
    for draw in (render, describe):
        with pytest.raises(ValueError, match=r"point\(s\) \['C'\] have non-finite coordinates"):
            draw(scene)
    scene.points["C"] = (4.0, 0.0)  # on top of B
    with pytest.raises(ValueError, match="points B and C coincide"):
        render(scene)


def test_ctrl_c_during_a_parallel_data_build_is_one_line(tmp_path):
    """Ctrl-C in a terminal during ``mmgeo data build`` with workers: one line from the parent, none from workers."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "d"
    # the cpu profile's 7,000 scenes: a build long enough that the signal always lands mid-way (a smoke
    # build can finish between the first image and the signal on a busy machine)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmgeo_utils",
            "data",
            "build",
            "--profile",
            "cpu",
            "--out",
            str(out),
            "--workers",
            "2",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,
        # as from a terminal: SIGINT at its default, whatever this test process inherited (an ignored
        # signal stays ignored across exec, and Python then installs no KeyboardInterrupt handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600  # a starved machine takes minutes to import torch and start workers
    while not any((out / "train").glob("*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # workers are rendering
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the parent and every worker
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert (
        "Traceback" not in err
        and err.strip().splitlines()[-1] == "mmgeo: interrupted; rerun the same command to resume"
    )
    assert not (out / MANIFEST).exists()  # nothing vouches for the partial build
