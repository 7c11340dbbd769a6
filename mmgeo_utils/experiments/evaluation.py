"""Scoring a finished run on a split, cached beside it: what the comparison, the recipe selection and the
noise estimate all read (lesson 05)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..clip import (
    MODEL_FILE,
    TrainConfig,
    TrainResult,
    dataset_root,
    load_config,
)
from ..clip.checkpoint import CheckpointError, load_model
from ..clip.evaluate import (
    EVAL_VERSION,
    drop_indistinguishable,
    encode_items,
    evaluate_clip,
    fine_grained_scores,
    split_items,
)
from ..clip.models import checkpoint_context_length, create_clip, get_tokenizer
from ..data import split_fingerprint
from ..profiles import get_profile
from ..repro import atomic_write_text

EVAL_FILE = "test_eval.json"
VAL_EVAL_FILE = "val_eval.json"


def evaluate_run(
    result: TrainResult,
    *,
    data_root: Path | str | None = None,
    device: str = "cpu",
    variants: Sequence[str] = ("clean", "rotate30", "downscale0.5"),
) -> dict:
    """The full test-split benchmark of a finished run, cached in the run folder (``test_eval.json``)."""
    return _evaluate_cached(
        result.model_path,
        result.config,
        result.run_dir / EVAL_FILE,
        split="test",
        variants=variants,
        data_root=data_root,
        device=device,
    )


def _evaluate_cached(
    model_path: Path,
    cfg: TrainConfig,
    cache: Path,
    *,
    split: str,
    variants: Sequence[str],
    data_root: Path | str | None,
    device: str,
) -> dict:
    """``evaluate_clip`` of one checkpoint on one split, cached in ``cache``.

    The cache is keyed by the sha256 of the weights, the data scored (:func:`split_fingerprint`), the
    variants and the benchmark's version, so neither retraining a run, nor scoring it on other data,
    nor changing a metric can serve a stale evaluation.
    """

    if not model_path.is_file():
        raise CheckpointError(f"checkpoint {model_path} not found")
    root = data_root or dataset_root(cfg)
    key = {
        "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "data": split_fingerprint(root, split),
        "variants": list(variants),
        "version": EVAL_VERSION,
    }
    if cache.exists():
        saved = json.loads(cache.read_text())
        if all(saved.get(k) == v for k, v in key.items()):
            return saved["result"]
    out = evaluate_checkpoint(model_path, cfg, split=split, variants=variants, data_root=root, device=device)
    atomic_write_text(cache, json.dumps({**key, "result": out}) + "\n")
    return out


def load_run_model(model_path: Path | str, cfg: TrainConfig, device: str = "cpu"):
    """The weights ``model_path`` in the model ``cfg`` names, at its profile's image size (eval mode
    is the caller's); a bad file is a :class:`~mmgeo_utils.clip.checkpoint.CheckpointError` naming it."""

    try:  # the run's own text context; an unreadable file is load_model's to name clearly
        context = checkpoint_context_length(model_path)
    except Exception:
        context = None
    model = create_clip(
        cfg.model,
        image_size=get_profile(cfg.profile).image_size,
        context_length=context,  # type: ignore[arg-type]
        device=device,
    )
    load_model(model_path, model)
    return model


def evaluate_checkpoint(
    model_path: Path | str,
    cfg: TrainConfig,
    *,
    split: str = "test",
    variants: Sequence[str] = ("clean", "rotate30", "downscale0.5"),
    data_root: Path | str | None = None,
    device: str = "cpu",
) -> dict:
    """``evaluate_clip`` of the weights ``model_path`` of a run trained with ``cfg`` (uncached): the
    model and image size are the run's, and the data its dataset's unless ``data_root`` is given."""

    model = load_run_model(model_path, cfg, device)
    return evaluate_clip(
        model,
        get_tokenizer(cfg.model, context_length=model.context_length),  # type: ignore[arg-type]
        data_root or dataset_root(cfg),
        split=split,
        image_size=get_profile(cfg.profile).image_size,
        variants=variants,
        device=device,
    )


def wrong_image_probe(
    run_dir: Path | str, *, split: str = "test", data_root: Path | str | None = None, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """``i2t_fine`` per error type with each diagram's own image, and with another diagram's (the next one).

    What an encoder gets right against another diagram's image it gets from the two captions alone (which
    one reads as more plausible); the gap to its own image is what it reads from the diagram. Lesson 08
    uses it on the marks study: an encoder that never saw a drawn value still scores above chance on
    number edits with the true diagram, so its gain there comes from the drawing's proportions.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    model = load_run_model(run_dir / MODEL_FILE, cfg, device)
    tok = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]
    items, _ = drop_indistinguishable(split_items(data_root or dataset_root(cfg), split), tok)
    images, texts = encode_items(model, tok, items, get_profile(cfg.profile).image_size, device=device)
    out = {}
    for name, shift in (("own image", 0), ("another diagram's image", 1)):
        shown = images.clone()
        shown[: items.n] = torch.roll(images[: items.n], shift, dims=0)  # positives only; negatives stay
        scores = fine_grained_scores(items, shown, texts)["i2t_fine"]
        out[name] = {k: v["acc"] for k, v in scores.items()}
    return out
