"""A training run's folder: the files it writes, when it may be trained into, and what a resume must match.

:func:`~mmgeo_utils.clip.train.train` claims the folder first and checks a resume's config and data
against what the folder recorded; :func:`load_init` reads an earlier run's weights (lesson 04).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..data.read import read_manifest, split_fingerprint
from .checkpoint import FORMAT as TRAIN_STATE_FORMAT
from .checkpoint import CheckpointError, describe_mismatch
from .config import TrainConfig, load_config

log = logging.getLogger(__name__)

STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"

# files a training run writes into its folder; anything else there is someone else's
RUN_FILES = frozenset(
    {
        "config.json",
        STATE_FILE,
        MODEL_FILE,
        "summary.json",
        "train_log.csv",
        "eval_log.csv",
        "test_eval.json",
        "val_eval.json",
    }
)


def _is_run_file(name: str) -> bool:
    return name in RUN_FILES or (name.startswith(".") and ".tmp" in name)  # an atomic write cut short


def _claim_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, overwrite: bool) -> str:
    """What ``run_dir`` holds and may become: ``"finished"``, ``"resume"`` or ``"fresh"``; an error otherwise.

    A folder is trained into only when it is new, empty, or holds nothing but this very run
    (resumed with ``resume``, or restarted when it never reached a checkpoint). Another run, a
    finished model whose checkpoint is gone, a ``config.json`` that is not this run's, or a user's
    own files are never overwritten; ``overwrite=True`` (``--overwrite``) deletes the run files
    named in :data:`RUN_FILES` first and leaves every other file alone.
    """
    if resume and overwrite:
        raise ValueError(
            "resume=True (--resume) continues the run in the folder, overwrite=True (--overwrite) "
            "replaces it: give one of them"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run folder {run_dir} is a file, not a folder; choose another --out")
    names = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if names and overwrite:
        for name in names:
            if _is_run_file(name) and (run_dir / name).is_file():
                (run_dir / name).unlink()
        log.warning("--overwrite: removed the run files in %s", run_dir)
        return "fresh"
    how = "pass resume=True (--resume) to {}, overwrite=True (--overwrite) to replace it, or choose another --out"
    if "summary.json" in names:
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a finished run; " + how.format("reuse it"))
        return "finished"
    if STATE_FILE in names:
        if not resume:
            raise FileExistsError(
                f"{run_dir} holds an unfinished run (checkpoint {STATE_FILE}); " + how.format("continue it")
            )
        return "resume"
    if MODEL_FILE in names:
        raise FileExistsError(
            f"{run_dir} holds a trained {MODEL_FILE} whose checkpoint and summary are gone; "
            "pass overwrite=True (--overwrite) to replace it, or choose another --out"
        )
    foreign = [n for n in names if not _is_run_file(n)]
    if foreign:
        raise FileExistsError(
            f"{run_dir} is not empty and holds files that are not a training run's "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); choose another "
            "--out, or pass overwrite=True (--overwrite) to train there anyway"
        )
    if "config.json" in names:
        try:
            same = load_config(run_dir).to_dict() == cfg.to_dict()
        except CheckpointError:
            same = False
        if not same:
            raise FileExistsError(
                f"{run_dir}/config.json is not this run's config (another run, or a file of "
                "yours); choose another --out, or pass overwrite=True (--overwrite) to replace it"
            )
        log.info("%s never reached a checkpoint: starting it again", run_dir)
    return "fresh"


def _check_writable(run_dir: Path) -> None:
    """Fail before training, not after it: can this process create files in ``run_dir``?"""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise PermissionError(
            f"cannot write to run folder {run_dir} ({e.strerror or e}); choose another --out or make it writable"
        ) from None


def _data_record(root: Path) -> dict[str, Any]:
    """Which data a run trains (train split) and validates on (val split): recorded in its config.json."""
    manifest = read_manifest(root)
    return {
        "root": str(root),
        "seed": (manifest.get("config") or {}).get("seed"),
        "fingerprint": {split: split_fingerprint(root, split) for split in ("train", "val")},
    }


def load_init(model: nn.Module, init: str | Path) -> Path:
    """Load an earlier run's weights (its folder or ``model.safetensors``) into ``model``."""
    path = Path(init)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"--init checkpoint {path} not found (give a run folder or its {MODEL_FILE})")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        weights = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"--init checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    if meta.get("format") == TRAIN_STATE_FORMAT:
        raise CheckpointError(
            f"--init checkpoint {path} is a training checkpoint (weights, optimizer and RNG "
            f"state), not a model: give the run folder or its {MODEL_FILE}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(
            f"--init checkpoint {path} holds another model's weights: {describe_mismatch(model.state_dict(), weights)}"
        ) from None
    return path


def _check_same_data(run_dir: Path, data: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text()).get("data")
    if saved is None:
        log.warning("%s predates data fingerprints: cannot check that it resumes on the data it started on", run_dir)
        return
    if saved.get("fingerprint") != data["fingerprint"]:
        raise CheckpointError(
            f"cannot resume {run_dir}: it trained on other data ({saved.get('root')}, seed "
            f"{saved.get('seed')}, train {saved.get('fingerprint', {}).get('train')}) than "
            f"{data['root']} (seed {data['seed']}, train {data['fingerprint']['train']}); resume "
            "on the dataset it started on, or start a new run in another --out"
        )


# how much of a run to log, evaluate or checkpoint may change on resume; what it computes may not
RESUMABLE_CHANGES = frozenset(
    {"eval_every", "checkpoint_every", "log_every", "workers", "eval_samples", "grad_checkpointing"}
)


def _check_same_config(run_dir: Path, cfg: TrainConfig) -> None:
    # compare canonical forms: a config that trains the same run is the same config
    saved = load_config(run_dir).to_dict()
    now = cfg.to_dict()
    diff = {k: (saved.get(k), now[k]) for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]}
    if diff:
        raise CheckpointError(
            f"cannot resume {run_dir}: its config differs in "
            + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items())
        )
