"""How sure a gap is: the paired bootstrap interval of a difference over test items, and the seed-to-seed
noise of a recipe's gap (lesson 05)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import (
    MODEL_FILE,
    dataset_root,
)
from ..clip.evaluate import (
    check_finite,
    drop_indistinguishable,
    encode_images,
    encode_texts,
    eval_transform,
    i2t_fine_hits,
    split_items,
)
from ..clip.models import get_tokenizer
from ..repro import Timer, detect_device, write_results
from .evaluation import load_run_model
from .selection import _finished_runs


def gap_uncertainty(
    base_hits: np.ndarray, model_hits: np.ndarray, families: Sequence[str], *, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """How far a split's i2t_fine gap can be trusted: its item-bootstrap error and its family mix.

    ``base_hits`` and ``model_hits`` are (seeds, items) arrays of per-diagram hits
    (:func:`~mmgeo_utils.clip.evaluate.i2t_fine_hits`) on the same items; ``families`` names each item's
    family. Why: every seed is scored on the *same* 500 diagrams, so averaging seeds removes
    training noise but not the luck of which diagrams the split drew. Resampling the items (paired,
    the same draw for both models) measures that luck; reweighting the families to equal shares
    (the generator draws them uniformly) shows how much a split's family mix moves the gap.
    """
    base, model = np.asarray(base_hits, float), np.asarray(model_hits, float)
    fam = np.asarray(families)
    if base.ndim != 2 or base.shape != model.shape or base.shape[1] != len(fam):
        raise ValueError(
            f"hits must be two (seeds, items) arrays of one shape over {len(fam)} items, "
            f"got {base.shape} and {model.shape}"
        )
    diff = model.mean(0) - base.mean(0)
    keep = ~np.isnan(diff)  # diagrams without a rule negative are not in i2t_fine
    diff, fam = diff[keep], fam[keep]
    if not len(diff):
        raise ValueError("no item has a rule negative: there is no i2t_fine gap to measure")
    rng = np.random.default_rng(seed)
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot)])
    by_family = {f: {"gap": float(diff[fam == f].mean()), "n": int((fam == f).sum())} for f in sorted(set(fam))}
    return {
        "gap": float(diff.mean()),
        "bootstrap_se": float(boot.std(ddof=1)),
        "n_items": int(len(diff)),
        "seeds": int(base.shape[0]),
        "family_balanced_gap": float(np.mean([v["gap"] for v in by_family.values()])),
        "by_family": by_family,
    }


def gap_noise(
    clip_runs: Sequence[Path | str],
    mmclip_runs: Sequence[Path | str],
    *,
    split: str = "val",
    data_root: Path | str | None = None,
    device: str | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """:func:`gap_uncertainty` of finished CLIP and MMCLIP runs (one per seed) on one split, clean diagrams.

    Seeds pair up in order (``clip_runs[i]`` with ``mmclip_runs[i]``); all runs must share a profile and
    dataset. Written to ``results/<profile>/gap_noise_<split>.json``.
    """

    if not clip_runs or len(clip_runs) != len(mmclip_runs):
        raise ValueError(f"give one CLIP and one MMCLIP run per seed, got {len(clip_runs)} and {len(mmclip_runs)}")
    configs, p = _finished_runs([*clip_runs, *mmclip_runs])
    data_seeds = {c.data_seed for c in configs.values()}
    if len(data_seeds) > 1:
        raise ValueError(
            f"runs trained on different datasets (data seeds {sorted(data_seeds)}) are not scored on one split"
        )
    device = device or detect_device()
    first = next(iter(configs.values()))
    root = Path(data_root) if data_root is not None else dataset_root(first)
    # the same diagrams and candidates as evaluate_clip's i2t_fine (one tokenizer: the runs share a profile)
    items, _ = drop_indistinguishable(split_items(root, split), get_tokenizer(first.model))  # type: ignore[arg-type]
    hits: dict[Path, np.ndarray] = {}
    with Timer() as t:
        for run_dir, cfg in configs.items():
            model = load_run_model(run_dir / MODEL_FILE, cfg, device)
            model.eval()
            tokenizer = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]
            texts = check_finite(encode_texts(model, tokenizer, items.texts, device=device), "text")
            images = check_finite(
                encode_images(model, items.image_paths[: items.n], eval_transform(p.image_size), device=device), "image"
            )
            hits[run_dir] = i2t_fine_hits(items, images, texts)
    families = [r["family"] for r in items.rows]
    record = {
        "split": split,
        "clip_runs": [str(r) for r in clip_runs],
        "mmclip_runs": [str(r) for r in mmclip_runs],
        **gap_uncertainty(
            np.stack([hits[Path(r)] for r in clip_runs]), np.stack([hits[Path(r)] for r in mmclip_runs]), families
        ),
    }
    if write:
        write_results(f"gap_noise_{split}", record, profile=p, seed=None, wall_time_s=t.seconds)
    return record
