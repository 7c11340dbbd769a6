"""Lesson 08: choosing an encoder by its AC score (Law of Vision Representation, Yang et al., 2024).

The law predicts an LMM's accuracy Y from two cheap properties of its vision encoder: **A**, how well the
frozen LM reads the encoder's projected tokens, and **C**, how well its local features find the same point
in another rendering. Here:

* **A** (:func:`lmm_alignment`) is the paper's v3 form, reference-free: the mean per-token log-likelihood of
  held-out (validation) captions under lesson 06's frozen stage-0 LM, given the image tokens through that
  encoder's **stage-1** projector (the only part trained so far). The paper's released code differs: it scores
  the max cosine of the projected tokens to CLIP's projected tokens (how CLIP-like the encoder is).
* **C** is lesson 05's PCK@0.10 (:func:`~mmgeo_utils.clip.ac_score.correspondence_score`).
* **Y** is lesson 06's exact-match QA accuracy of the full LMM on that encoder.

With a handful of encoders, a 6-coefficient quadratic fits anything, so :func:`loo_fits` compares fits by
**leave-one-out** R² (each encoder predicted by a fit to the others), beside Spearman's ρ and a linear A + C
fit, and a random score as the floor. :func:`ac_policy` is the paper's use of the law: train the LMM on 4
encoders spread over the (A, C) plane, fit, rank the rest, and count how often the best encoder is in the top 3,
against choosing at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..clip.ac_score import minmax, poly2_features
from ..lmm import data as D
from ..lmm.config import LMMConfig, stage_dir
from ..lmm.language_model import load_lm
from ..lmm.tokenizer import image_token_id, load_tokenizer
from ..lmm.train import _tower_and_features, dataset_rows, load_aligned_projector
from ..lmm.vision_language_model import IGNORE_INDEX, GeometryLMM
from ..profiles import Profile
from ..repro import cpu_threads

FITS = ("AC", "A", "C", "A+C", "random")


@torch.no_grad()
def lmm_alignment(cfg: LMMConfig, *, n: int = 200, data_root: Path | str | None = None, batch: int = 32) -> float:
    """A: mean per-token log-likelihood of the first ``n`` validation captions given stage-1 image tokens.

    Stages 0 and 1 of ``cfg`` must be trained (``train_lmm(cfg, "align")``). Every caption token counts once
    (a sum of log-likelihoods over all caption tokens, divided by their number), so long and short captions
    weigh by their length, as the paper's per-token mean over a corpus does.
    """
    if cfg.vision == "none":
        raise ValueError("A needs a vision tower: a blind LMM has no image tokens to align")
    c = cfg.resolved()
    align = stage_dir(cfg, "align")
    if not (align / "projector.safetensors").is_file():
        raise FileNotFoundError(
            f"{align} has no trained projector: train stage align first (mmgeo train-lmm --stage align)"
        )
    root, rows = dataset_rows(c, "val", data_root)
    rows = rows[:n]
    with cpu_threads(c.threads):
        tower, feats, (n_tok, width), _ = _tower_and_features(c, root, rows, split="val")
        tok = load_tokenizer(stage_dir(cfg, "lm") / "tokenizer")
        lm = load_lm(stage_dir(cfg, "lm") / "lm", tok).eval()
        projector = load_aligned_projector(cfg, width, lm.get_input_embeddings().embedding_dim)
        model = GeometryLMM(lm, projector, image_token_id(tok), tower.token_grid).eval()
        examples = D.align_examples(tok, rows, n_image_tokens=n_tok, context_length=c.sizes.context_length)
        total, count = 0.0, 0
        for i in range(0, len(examples), batch):
            part = examples[i : i + batch]
            b = D.collate(part, tok.pad_token_id, feats)  # each example indexes its own row of the features
            logits = model(b["input_ids"], b["attention_mask"], None, b["features"]).logits[:, :-1].float()
            target = b["labels"][:, 1:]
            keep = target != IGNORE_INDEX
            logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
            total += float(logp[keep].sum())
            count += int(keep.sum())
    return total / count


def design(fit: str, a: np.ndarray, c: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The regressors of one fit: ``AC`` the law's quadratic, ``A`` / ``C`` / ``A+C`` linear, ``random`` a
    random score (the floor: what a fit to an uninformative number gives)."""
    a, c = minmax(np.asarray(a, float)), minmax(np.asarray(c, float))
    one = np.ones_like(a)
    if fit == "AC":
        return poly2_features(a, c)
    if fit == "A":
        return np.stack([one, a], 1)
    if fit == "C":
        return np.stack([one, c], 1)
    if fit == "A+C":
        return np.stack([one, a, c], 1)
    if fit == "random":
        return np.stack([one, (rng or np.random.default_rng(0)).random(len(a))], 1)
    raise ValueError(f"unknown fit {fit!r}; fits: {', '.join(FITS)}")


def loo_r2(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Leave-one-out R² of least squares ``y ~ x`` and the held-out predictions.

    Each point is predicted by the minimum-norm least-squares fit to all the others (``np.linalg.lstsq``),
    so a fit with more coefficients than points still predicts, and shows how badly it generalises. NaN
    when every ``y`` is the same (nothing to explain).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(y)
    if n < 3:
        raise ValueError(f"leave-one-out needs at least 3 encoders, got {n}")
    pred = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        coef, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
        pred[i] = x[i] @ coef
    sst = float(((y - y.mean()) ** 2).sum())
    if sst == 0:  # every encoder scored the same: there is nothing to explain, R² is undefined
        return float("nan"), pred
    return 1 - float(((y - pred) ** 2).sum()) / sst, pred


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: the Pearson correlation of average ranks."""
    import pandas as pd  # local: ranks with ties averaged

    rx, ry = pd.Series(list(x)).rank().to_numpy(), pd.Series(list(y)).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def loo_fits(
    a: Sequence[float], c: Sequence[float], y: Sequence[float], *, seed: int = 0, random_draws: int = 100
) -> dict[str, Any]:
    """Leave-one-out R² and Spearman's ρ (held-out prediction vs Y) of every fit in :data:`FITS`.

    The random score is drawn ``random_draws`` times; its R² and ρ are their means.
    """
    a, c, y = (np.asarray(v, float) for v in (a, c, y))
    out: dict[str, Any] = {}
    for fit in FITS:
        if fit == "random":
            rng = np.random.default_rng(seed)
            runs = [loo_r2(design(fit, a, c, rng), y) for _ in range(random_draws)]
            out[fit] = {"loo_r2": float(np.mean([r for r, _ in runs])),
                        "spearman": _nanmean([spearman(p, y) for _, p in runs])}  # fmt: skip
            continue
        r2, pred = loo_r2(design(fit, a, c), y)
        out[fit] = {"loo_r2": r2, "spearman": spearman(pred, y), "loo_predictions": pred.tolist()}
    out["n_encoders"] = len(y)
    return out


def _nanmean(values: Sequence[float]) -> float:
    """The mean of the defined values; NaN when none is (ρ is undefined when Y has one value)."""
    v = np.asarray(values, float)
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")


def _spread_sample(a: np.ndarray, c: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` encoders spread over the (A, C) plane: the paper's region sampling, as a random farthest-point draw."""
    pts = np.stack([minmax(a), minmax(c)], 1)
    chosen = [int(rng.integers(len(pts)))]
    while len(chosen) < k:
        d = np.min(((pts[:, None] - pts[chosen][None]) ** 2).sum(-1), 1)
        d[chosen] = -1
        best = np.flatnonzero(d == d.max())
        chosen.append(int(rng.choice(best)))
    return np.array(chosen)


def ac_policy(
    a: Sequence[float],
    c: Sequence[float],
    y: Sequence[float],
    *,
    k: int = 4,
    top: int = 3,
    draws: int = 1000,
    seed: int = 0,
    fit: str = "AC",
) -> dict[str, float]:
    """How often the best encoder (highest Y) is in the predicted top ``top`` when only ``k`` are trained.

    Each draw trains (reads the Y of) ``k`` encoders spread over the (A, C) plane, fits ``fit`` to them
    (minimum-norm least squares), predicts the others, and ranks all by Y where trained and the prediction
    elsewhere. ``chance_top`` is ``top / n``: the same count for ``top`` encoders chosen at random.
    """
    a, c, y = (np.asarray(v, float) for v in (a, c, y))
    n = len(y)
    if not 0 < k < n or top < 1:
        raise ValueError(f"need 0 < k < {n} encoders and top >= 1, got k={k}, top={top}")
    if np.ptp(y) == 0:  # no best encoder to find
        return {"policy_top": float("nan"), "chance_top": min(1.0, top / n), "k": k, "top": top, "draws": 0, "n": n}
    rng = np.random.default_rng(seed)
    best = int(np.argmax(y))
    x = design(fit, a, c)
    hits = 0
    for _ in range(draws):
        trained = _spread_sample(a, c, k, rng)
        coef, *_ = np.linalg.lstsq(x[trained], y[trained], rcond=None)
        score = x @ coef
        score[trained] = y[trained]  # a trained encoder's accuracy is known, not predicted
        hits += int(best in np.argsort(-score, kind="stable")[:top])
    return {"policy_top": hits / draws, "chance_top": min(1.0, top / n), "k": k, "top": top, "draws": draws, "n": n}


def run_ac_analysis(
    encoders: dict[str, Path | str],
    profile: Profile | str | None = None,
    *,
    seed: int = 0,
    data_root: Path | str | None = None,
    full_root: Path | str | None = None,
    keypoint_pairs_max: int = 300,
    lmm_overrides: dict[str, Any] | None = None,
    policy_draws: int = 1000,
    device: str = "cpu",
) -> dict[str, Any]:
    """A, C and Y of every encoder (``name → run folder``), the leave-one-out fits and the policy.

    Y is lesson 06's LMM (the profile's sizes, or ``lmm_overrides``) trained on each encoder at ``seed``
    and scored on the test questions; finished LMMs and their scores are reused. A is measured on the
    validation captions and C on the test diagrams' keypoint pairs (``full_root``: the encoders' dataset,
    default the profile's build).
    """
    from ..clip import MODEL_FILE, load_config  # local: the encoders' checkpoints only here
    from ..clip.ac_score import chance_correspondence, correspondence_score, keypoint_pairs
    from ..clip.models import create_clip
    from ..data import DatasetConfig, build_dataset
    from ..profiles import get_profile
    from .lmm_comparison import train_and_score

    p = get_profile(profile)
    if len(encoders) < 3:
        raise ValueError(f"the AC analysis needs at least 3 encoders, got {len(encoders)}")
    runs = {name: Path(r) for name, r in encoders.items()}
    for name, run in runs.items():
        if not (run / MODEL_FILE).is_file():
            raise FileNotFoundError(f"encoder {name!r}: {run} has no {MODEL_FILE} (train it first)")
    configs = {
        name: LMMConfig(profile=p.name, vision=str(run), seed=seed, **(lmm_overrides or {}))
        for name, run in runs.items()
    }
    root, _ = dataset_rows(next(iter(configs.values())), "train", data_root)
    scored = train_and_score(list(configs.values()), root)
    full_root = full_root or build_dataset(DatasetConfig.from_profile(p), progress=False)  # the keypoints' scenes
    pairs = keypoint_pairs(full_root, "test", max_pairs=keypoint_pairs_max)
    rows = []
    for (name, cfg), (_, score) in zip(configs.items(), scored):
        model = create_clip(load_config(runs[name]).model or p.clip_model, runs[name] / MODEL_FILE,
                            image_size=p.image_size, device=device)  # fmt: skip
        rows.append(
            {
                "encoder": name,
                "run": str(runs[name]),
                "A": lmm_alignment(cfg, data_root=root),
                "C": correspondence_score(model, pairs, p.image_size, device=device),
                "Y": score["overall"],
            }
        )
    a, c, y = (np.array([r[k] for r in rows]) for k in ("A", "C", "Y"))
    return {
        "encoders": rows,
        "fits": loo_fits(a, c, y, seed=seed),
        "policy": {fit: ac_policy(a, c, y, draws=policy_draws, seed=seed, fit=fit) for fit in ("AC", "A+C")}
        if len(rows) > 4
        else None,
        "c_chance": chance_correspondence(pairs, p.image_size),
        "keypoint_pairs": len(pairs),
        "lmm_overrides": dict(lmm_overrides or {}),
        "seed": seed,
    }
