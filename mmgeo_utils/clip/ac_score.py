"""The AC score of the Law of Vision Representation (Yang et al., 2024), in miniature.

The law says an LMM's benchmark score is predicted by two properties of its vision encoder,
measured cheaply before any LMM is fully trained:

* **A, cross-modal alignment**: how well the language side can read the visual features once
  only a projector is trained. The paper's v3 measures it as the frozen LLM's mean log-likelihood
  of the true caption given stage-1-projected visual tokens (the v1 code used similarity to
  CLIP's projected tokens instead). Our LMM arrives in lesson 06, so we follow v3's idea with a
  frozen *sentence encoder* (MiniLM) as the language side: fit a linear projector (ridge
  regression, the closed-form stage-1) from the encoder's image embedding to the caption's
  sentence embedding on training pairs; A is the mean cosine between projected image and true
  caption on test pairs, both centred on the training mean so that predicting "an average
  caption" scores 0.
* **C, correspondence**: can local features find the same point in another image? The paper
  uses SPair-71k keypoints (two photos of one object category) and PCK@0.10. Our diagrams give
  keypoints for free: every labelled point's pixel position is known exactly. We pair each test
  diagram with the *same scene drawn again* in another style (line width, fonts, scale) and turned
  by 30-90°, take the local feature at each labelled point of the first, find the most similar
  location in the second's feature map, and count it correct when it lands within 0.10 × image
  size of the point's true position there (PCK@0.10). Points that moved less than that are left
  out: there an encoder wins by copying coordinates. (Why not pair a diagram with its perturbed
  negatives: a perturbation moves exactly the points whose neighbourhood it changes, which puts
  every encoder at chance.)

:func:`fit_ac_polynomial` is the law's fitted relation (degree-2 polynomial in A and C, ordinary
least squares). It needs downstream scores of several fully trained LMMs, which lesson 06 and
08 provide; lesson 05 measures A and C for every encoder we have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.read import load_split
from ..diagrams.render import render
from ..diagrams.scene import Scene
from ..diagrams.style import RenderStyle, sample_style
from .evaluate import encode_images, eval_transform
from .models import dense_image_features

PCK_ALPHA = 0.10


# ----------------------------------------------------------------------------- A


def ridge_projector(x: np.ndarray, y: np.ndarray, lam: float = 1e-2) -> np.ndarray:
    """Closed-form ridge regression ``W = (XᵀX + λ·tr(XᵀX)/D · I)⁻¹ XᵀY`` (with a bias column)."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    gram = x1.T @ x1
    reg = lam * np.trace(gram) / gram.shape[0] * np.eye(gram.shape[0])
    return np.linalg.solve(gram + reg, x1.T @ y)


def alignment_score(
    train_image: np.ndarray, train_text: np.ndarray, test_image: np.ndarray, test_text: np.ndarray, lam: float = 1e-2
) -> float:
    """A: mean centred cosine between projected test images and their captions' embeddings."""
    mean = train_text.mean(0, keepdims=True)
    w = ridge_projector(train_image, train_text - mean, lam)
    pred = np.hstack([test_image, np.ones((len(test_image), 1))]) @ w
    target = test_text - mean
    cos = (pred * target).sum(1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(target, axis=1) + 1e-12)
    return float(cos.mean())


@dataclass
class CaptionEmbeddings:
    """Sentence-encoder embeddings of the captions A is measured against (shared by all encoders)."""

    train_rows: list[dict]
    test_rows: list[dict]
    train: np.ndarray
    test: np.ndarray


def caption_embeddings(root: Path | str, encoder, n_train: int, n_test: int) -> CaptionEmbeddings:
    """Embed ``n_train`` training and ``n_test`` test captions once with a sentence-transformers model."""
    train_rows = load_split(root, "train", limit=n_train)
    test_rows = load_split(root, "test", limit=n_test)
    emb = [
        np.asarray(
            encoder.encode(
                [r["caption"] for r in rows], batch_size=64, normalize_embeddings=True, show_progress_bar=False
            )
        )
        for rows in (train_rows, test_rows)
    ]
    return CaptionEmbeddings(train_rows, test_rows, emb[0], emb[1])


def encoder_alignment(
    model: nn.Module, root: Path | str, captions: CaptionEmbeddings, image_size: int, device: str = "cpu"
) -> float:
    root = Path(root)
    tf = eval_transform(image_size)
    feats = [
        encode_images(model, [root / split / r["file_name"] for r in rows], tf, device=device).numpy()
        for split, rows in (("train", captions.train_rows), ("test", captions.test_rows))
    ]
    return alignment_score(feats[0], captions.train, feats[1], captions.test)


# ----------------------------------------------------------------------------- C


@dataclass(frozen=True)
class KeypointPair:
    """Two drawings of one scene and the pixel positions (x right, y down) of its labelled points."""

    source: Image.Image
    target: Image.Image
    source_xy: np.ndarray  # (P, 2)
    target_xy: np.ndarray  # (P, 2)


def keypoint_pairs(
    root: Path | str, split: str = "test", max_pairs: int | None = None, min_move: float = PCK_ALPHA, seed: int = 0
) -> list[KeypointPair]:
    """Each diagram of ``split`` with its scene redrawn in another style, turned by 30-90°.

    Deterministic in ``seed``; only points that moved at least ``min_move`` × image size count.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    pairs: list[KeypointPair] = []
    for row in load_split(root, split):
        style = RenderStyle.from_dict(row["style"])
        scene = Scene.from_dict(row["scene"])
        src = render(scene, style)
        turn = float(rng.uniform(30, 90) * rng.choice([-1, 1]))
        other = sample_style(style.image_size, int(rng.integers(2**31)))
        other = dataclasses.replace(other, rotation_deg=round(style.rotation_deg + turn, 2))
        tgt = render(scene, other)
        names = [
            n
            for n in src.pixel_points
            if n in tgt.pixel_points
            and np.hypot(*np.subtract(src.pixel_points[n], tgt.pixel_points[n])) >= min_move * style.image_size
        ]
        if names:
            pairs.append(
                KeypointPair(
                    src.image.convert("RGB"),
                    tgt.image.convert("RGB"),
                    np.array([src.pixel_points[n] for n in names]),
                    np.array([tgt.pixel_points[n] for n in names]),
                )
            )
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
    return pairs


@torch.no_grad()
def correspondence_score(
    model: nn.Module,
    pairs: Sequence[KeypointPair],
    image_size: int,
    device: str = "cpu",
    alpha: float = PCK_ALPHA,
    grid: int | None = None,
) -> float:
    """C: PCK@alpha of nearest-feature matching of moved points (see the module docstring).

    The encoder's local feature map is upsampled bilinearly to ``grid`` × ``grid`` (default:
    image_size / 4) so coarse maps (a 96 px ResNet ends at 3 × 3) can still be compared; the
    source feature is sampled at the exact keypoint.
    """
    if not pairs:
        raise ValueError("no keypoint pairs: the split has no image negatives that move a point")
    was_training = model.training
    model.eval()
    tf = eval_transform(image_size)
    grid = grid or max(8, image_size // 4)
    hits = total = 0
    try:
        for pair in pairs:
            imgs = torch.stack([tf(pair.source), tf(pair.target)]).to(device)
            fmap = F.interpolate(
                dense_image_features(model, imgs).float(), size=(grid, grid), mode="bilinear", align_corners=False
            )
            fmap = F.normalize(fmap, dim=1)
            # grid_sample wants (x, y) in [-1, 1]
            src = torch.as_tensor(pair.source_xy, dtype=torch.float32, device=device) / image_size * 2 - 1
            feat = F.grid_sample(fmap[:1], src.view(1, -1, 1, 2), mode="bilinear", align_corners=False)
            feat = F.normalize(feat[0, :, :, 0].T, dim=1)  # (P, C)
            sims = feat @ fmap[1].flatten(1)  # (P, grid²)
            best = sims.argmax(1).cpu().numpy()
            cell = image_size / grid
            pred = np.stack([(best % grid + 0.5) * cell, (best // grid + 0.5) * cell], axis=1)
            err = np.hypot(*(pred - pair.target_xy).T)
            hits += int((err <= alpha * image_size).sum())
            total += len(err)
    finally:
        model.train(was_training)
    return hits / total


def chance_correspondence(
    pairs: Sequence[KeypointPair], image_size: int, alpha: float = PCK_ALPHA, grid: int | None = None, seed: int = 0
) -> float:
    """PCK of a matcher that picks a uniformly random grid cell: the floor C is read against."""
    rng = np.random.default_rng(seed)
    grid = grid or max(8, image_size // 4)
    cell = image_size / grid
    hits = total = 0
    for pair in pairs:
        best = rng.integers(0, grid * grid, size=len(pair.target_xy))
        pred = np.stack([(best % grid + 0.5) * cell, (best // grid + 0.5) * cell], axis=1)
        hits += int((np.hypot(*(pred - pair.target_xy).T) <= alpha * image_size).sum())
        total += len(pred)
    return hits / max(total, 1)


# ----------------------------------------------------------------------------- the fitted law


def minmax(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to [0, 1] (all zeros when constant), as the paper's code normalises A, C and the score."""
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def poly2_features(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``[1, A, C, A², AC, C²]``: the law's degree-2 polynomial features."""
    a, c = np.asarray(a, float), np.asarray(c, float)
    return np.stack([np.ones_like(a), a, c, a * a, a * c, c * c], axis=1)


def fit_ac_polynomial(a: Sequence[float], c: Sequence[float], score: Sequence[float]) -> tuple[np.ndarray, float]:
    """Least-squares fit of ``score`` on the AC polynomial; returns (coefficients, R²).

    A, C and the score are min-max normalised first, as in the paper's code. Needs more points
    than the 6 coefficients to mean anything; fewer is an error.
    """
    a, c, y = (np.asarray(v, float) for v in (a, c, score))
    if len(y) <= 6:
        raise ValueError(f"the AC polynomial has 6 coefficients; fitting it to {len(y)} encoders is meaningless")

    x = poly2_features(minmax(a), minmax(c))
    yn = minmax(y)
    coef, *_ = np.linalg.lstsq(x, yn, rcond=None)
    resid = yn - x @ coef
    r2 = 1 - float(resid @ resid) / max(float(((yn - yn.mean()) ** 2).sum()), 1e-12)
    return coef, r2
