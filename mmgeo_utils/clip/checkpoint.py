"""Training checkpoints in safetensors: weights, optimizer, scheduler and RNG state in one file.

Why not ``torch.save``: a pickle can run code when it is loaded, and a course hands checkpoints
around. safetensors holds only tensors plus a string→string metadata map, so everything that is
not a tensor (the step, scheduler and optimizer hyper-parameters, Python's RNG state) goes into
that map as JSON, and every tensor under a prefix:

==========================  ==========================================================
key                         holds
==========================  ==========================================================
``model.<name>``            the model's ``state_dict`` (what open_clip loads, unprefixed,
                            from ``model.safetensors``)
``loss.<name>``             the objective's buffers (CE-CLIP's CMR thresholds)
``optim.<param>.<field>``   AdamW's per-parameter state (``exp_avg``, ``exp_avg_sq``, ``step``)
``rng.torch`` ...           the CPU and CUDA generators and numpy's key, as uint8/uint32
==========================  ==========================================================

:func:`save_training_state` writes atomically (temporary file, then rename), so a run killed
while saving keeps its previous checkpoint; :func:`load_training_state` names what is wrong
with a missing, truncated or foreign file instead of failing deep inside torch.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

FORMAT = "mmgeo-train-state/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or from an incompatible run."""


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random generator a training step can touch, as tensors and JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": _py_state(random.getstate())}
    return tensors, meta


def _py_state(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for field, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{field}"] = value
            else:
                scalars[f"{pid}.{field}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, field = key.split(".", 2)
            state.setdefault(int(pid), {})[field] = value
    for key, value in meta["scalars"].items():
        pid, field = key.split(".", 1)
        state.setdefault(int(pid), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def save_training_state(
    path: Path | str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    objective: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write everything needed to continue a run at ``step`` to one safetensors file."""
    path = Path(path)
    tensors = {f"model.{k}": _contiguous(v) for k, v in model.state_dict().items()}
    if objective is not None:
        tensors.update({f"loss.{k}": _contiguous(v) for k, v in objective.state_dict().items()})
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update({k: _contiguous(v) for k, v in opt_tensors.items()})
    rng_tensors, rng_meta = rng_state()
    tensors.update({k: _contiguous(v) for k, v in rng_tensors.items()})
    meta = {
        "format": FORMAT,
        "step": str(step),
        "optimizer": json.dumps(opt_meta),
        "scheduler": json.dumps(scheduler.state_dict()),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}),
        "rng": json.dumps(rng_meta),
        "extra": json.dumps(extra or {}),
    }
    return _write_safetensors(path, tensors, meta)


def read_training_state(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a checkpoint, with a clear error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a safetensors file ({e}); delete it to start over, or restore it"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an mmgeo training checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    return tensors, meta


def describe_mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    """How a file's weights differ from a model's ``state_dict``, in one line (torch's error lists every key)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {list(got[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in got and tuple(got[k].shape) != tuple(v.shape)
    ]
    parts = [
        f"{len(items)} {what} (e.g. {', '.join(items[:2])})"
        for what, items in (
            ("missing tensor(s)", missing),
            ("unexpected tensor(s)", unexpected),
            ("tensor(s) of another shape, file vs model", shapes),
        )
        if items
    ]
    return "; ".join(parts) or "the tensors do not load"


def load_training_state(
    path: Path | str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    objective: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a run saved by :func:`save_training_state`; return ``{"step": ..., "extra": ...}``."""
    tensors, meta = read_training_state(path)
    device = next(model.parameters()).device
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
    except RuntimeError:
        raise CheckpointError(
            f"{path} holds weights of a different model: {describe_mismatch(model.state_dict(), model_sd)}"
        ) from None
    if objective is not None:
        objective.load_state_dict(
            {k[len("loss.") :]: v.to(device) for k, v in tensors.items() if k.startswith("loss.")}
        )
    opt_sd = _optimizer_state_dict(
        {k: v for k, v in tensors.items() if k.startswith("optim.")}, json.loads(meta["optimizer"])
    )
    optimizer.load_state_dict(opt_sd)  # moves state to the parameters' device
    scheduler.load_state_dict(json.loads(meta["scheduler"]))
    scaler_state = json.loads(meta.get("scaler", "{}"))
    if scaler is not None and scaler_state:
        scaler.load_state_dict(scaler_state)
    if restore_rng:
        set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng.")}, json.loads(meta["rng"]))
    return {"step": int(meta["step"]), "extra": json.loads(meta["extra"])}


def load_model(path: Path | str, model: nn.Module) -> Path:
    """Load weights written by :func:`save_model` (a run's ``model.safetensors``) into ``model``.

    Names what is wrong instead of failing deep inside open_clip or torch: a missing file, a
    truncated or foreign one, a training state (``state.safetensors``) given as a model, or
    weights of another model or image size.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (give a run folder or its model.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    if meta.get("format") == FORMAT:
        raise CheckpointError(
            f"{path} is a training state (optimizer and RNG too), not a model; give the run "
            "folder or its model.safetensors"
        )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(f"{path} holds weights of a different model or image size: {str(e)[:500]}") from None
    return path


def save_model(path: Path | str, model: nn.Module, metadata: dict[str, str] | None = None) -> Path:
    """The weights alone, unprefixed: ``open_clip.create_model(name, pretrained=path)`` loads them.

    The bytes are a function of the weights and ``metadata`` only (see :func:`safetensors_bytes`).
    """
    return _write_safetensors(Path(path), {k: _contiguous(v) for k, v in model.state_dict().items()}, metadata)


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors' bytes with the metadata map in sorted key order: same tensors and metadata, same bytes.

    Why: safetensors (0.4-0.8) serialises the metadata from a Rust ``HashMap``, so its keys come out
    in a random order per process and two writes of identical weights differ in their sha256 (which
    reproducibility checks and the evaluation cache compare). The header is JSON; re-serialising it
    with sorted keys and the same 8-byte padding leaves every tensor's offsets and bytes untouched.
    """
    blob = save(tensors, metadata=metadata)
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> Path:
    """Write atomically (temporary file, then rename): a run killed while saving keeps the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(safetensors_bytes(tensors, metadata))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
