"""Evaluating a CLIP model on what the course is about: fine-grained geometry, and retrieval.

Every test diagram comes with hard negatives that are *known* to be false (lesson 02), so the
benchmark needs no human labels:

* **fine-grained image→text** (``i2t_fine``): does the image score its true caption above *one
  edit of each type*: the first of its rule negatives of each error type (label / shape / relation
  / number), each the caption with exactly one fact edited by rule? The dataset may hold several
  negatives of a type; only the first of each is scored, as training uses only the first of each
  (``rule_negatives`` in the result counts the ones left unscored). Broken down by error type, each
  a two-way choice.
* **fine-grained text→image** (``t2i_fine``): does the caption score the true diagram above every
  one of the K diagrams perturbed from it in exactly one fact? Broken down by perturbation type.
* **with retrieval negatives** (``i2t_with_retrieval``): ``i2t_fine`` with the retrieved captions
  added to the candidates. A retrieved caption describes *another* diagram and differs in many
  facts, so it is not a one-fact test; it is reported beside, never folded in silently.
* **standard retrieval** R@1 / R@5 in both directions over the whole test split: the general
  skill hard-negative training must not destroy.
* **Hit@1 probes per negative source** (MMGeoLM App. C): the positive among its negatives of one
  source only (image, rule, retrieval); each kind of negative should help most on its own probe.
* **robustness** (MMGeoLM Table 7): the fine-grained benchmark again on diagrams rotated 30° and
  on diagrams downscaled 0.5× (and brought back to the model's input size).

A choice counts as correct only when the true candidate scores *strictly* higher than every
false one: a tie is a miss, so a collapsed model that scores everything the same gets 0, not
chance. A caption and its candidates are scored by one operation (an elementwise product summed by
one reduction, texts with equal token ids sharing one embedding), so candidates the model cannot tell
apart tie exactly. A NaN score is never a hit, and :func:`evaluate_clip` refuses a model whose embeddings are
not finite (a diverged run) rather than score it.

A text negative that tokenizes exactly like its caption is *dropped*, never scored: captions are
cut at the model's context length, and when a rule edit falls after the cut no model can win that
choice. The result counts the dropped ones (``negatives_dropped_truncated``, and
``negatives_dropped_identical`` for any equal without a cut); a diagram left with no negative of a
type is not scored for that type. Every number comes with its chance level, computed from what is
actually scored: a uniformly random scorer's expected accuracy on the same items and candidates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.contrastive import CLIP_MEAN, CLIP_STD
from ..data.read import load_split
from ..negatives.text import ERROR_TYPES
from ..repro import usable_cores

# Bump when a metric's definition changes: cached evaluations of another version are recomputed.
EVAL_VERSION = "3"  # 3: token-identical text negatives dropped, NaN never a hit
ROTATION_DEG = 30.0
DOWNSCALE = 0.5


# ----------------------------------------------------------------------------- image variants


def eval_transform(image_size: int, variant: str = "clean") -> Callable[[Image.Image], torch.Tensor]:
    """PIL → normalised tensor at ``image_size``; ``variant`` is clean, rotate30 or downscale0.5.

    Rotation fills the corners with the diagram's white background (black corners would be a
    cue no diagram has). Downscaling halves the resolution and scales back up, so the model
    sees its usual input size with half the detail, as in MMGeoLM's robustness test.
    """
    from torchvision import transforms as T  # local: torchvision takes about a second to import

    steps: list[Any] = []
    if variant == "rotate30":
        steps.append(
            T.RandomRotation(
                (ROTATION_DEG, ROTATION_DEG), interpolation=T.InterpolationMode.BILINEAR, fill=(255, 255, 255)
            )
        )
    elif variant == "downscale0.5":
        low = max(8, round(image_size * DOWNSCALE))
        steps.append(T.Resize((low, low), interpolation=T.InterpolationMode.BICUBIC, antialias=True))
    elif variant != "clean":
        raise ValueError(f"unknown image variant {variant!r}; known: clean, rotate30, downscale0.5")
    steps += [
        T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.ToTensor(),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ]
    return T.Compose(steps)


VARIANTS = ("clean", "rotate30", "downscale0.5")


# ----------------------------------------------------------------------------- encoding


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB"))


def eval_workers(device: str | torch.device) -> int:
    """Loader workers for evaluation: on CUDA up to 8 (one core left to feed the GPU), else none.

    Why: the course decodes ~580,000 PNGs in evaluation on ``gpu``; on one thread that is 25-30
    minutes with the GPU idle. On a CPU the model needs those cores itself.
    """
    return min(8, max(1, usable_cores() - 1)) if torch.device(device).type == "cuda" else 0


@torch.no_grad()
def encode_images(
    model: nn.Module,
    paths: Sequence[Path],
    transform,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    workers: int | None = None,
) -> torch.Tensor:
    """L2-normalised image embeddings (N, D) of the image files, in order.

    ``workers`` defaults to :func:`eval_workers`; on CUDA batches are pinned and copied asynchronously.
    """
    workers = eval_workers(device) if workers is None else workers
    cuda = torch.device(device).type == "cuda"
    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, transform), batch_size=batch_size, num_workers=workers, pin_memory=cuda
    )
    out = [model.encode_image(x.to(device, non_blocking=cuda), normalize=True).float().cpu() for x in loader]
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def encode_texts(
    model: nn.Module, tokenizer, texts: Sequence[str], *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """L2-normalised text embeddings (N, D), in order.

    Texts with equal token ids (after the tokenizer's cut at its context length) get the very same
    embedding, the first one's: what the model cannot tell apart must tie exactly, whatever batch
    each text was encoded in.
    """
    if not texts:
        return torch.zeros(0, 0)
    tokens = tokenizer(list(texts))
    out = torch.cat(
        [
            model.encode_text(tokens[i : i + batch_size].to(device), normalize=True).float().cpu()
            for i in range(0, len(tokens), batch_size)
        ]
    )
    _, group = torch.unique(tokens, dim=0, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), len(tokens), dtype=torch.long)
    first.scatter_reduce_(0, group, torch.arange(len(tokens)), reduce="amin")
    return out[first[group]]


def check_finite(features: torch.Tensor, what: str) -> torch.Tensor:
    """``features`` unchanged, or a clear error: a NaN/inf embedding means broken weights, not a score."""
    if not bool(torch.isfinite(features).all()):
        bad = int((~torch.isfinite(features)).any(dim=-1).sum())
        raise ValueError(
            f"the model's {what} embeddings contain NaN/inf ({bad} of {len(features)}): the "
            "checkpoint is broken (did training diverge?); it is not scored"
        )
    return features


@dataclass
class SplitItems:
    """What the benchmark compares, as file paths, strings and index tables (no tensors yet)."""

    rows: list[dict]
    image_paths: list[Path]  # positives first (N), then every image negative
    image_neg_index: np.ndarray  # (N, Ki) into image_paths, -1 = none
    image_neg_types: list[list[str]]
    texts: list[str]  # captions first (N), then every text negative
    rule_index: np.ndarray  # (N, 4) into texts: the FIRST rule negative of each error type, -1 = none
    retrieval_index: np.ndarray  # (N, Kr) into texts, -1 = none
    rule_unscored: int = 0  # rule negatives beyond the first of their type (never scored)

    @property
    def n(self) -> int:
        return len(self.rows)


def split_items(root: Path | str, split: str = "test", max_samples: int | None = None) -> SplitItems:
    """Collect a split's positives and negatives; a split built without negatives is an error."""
    root = Path(root)
    rows = load_split(root, split)[:max_samples]
    if not rows:
        raise ValueError(f"split {split!r} of {root} is empty: nothing to evaluate")
    if "image_negatives" not in rows[0]:
        raise ValueError(
            f"{root} was built without hard negatives; the fine-grained benchmark needs them "
            "(build with DatasetConfig.from_profile(profile))"
        )
    n = len(rows)
    paths = [root / split / r["file_name"] for r in rows]
    texts = [r["caption"] for r in rows]
    ki = max(len(r["image_negatives"]) for r in rows)
    kr = max(len(r.get("retrieval_negatives", [])) for r in rows)
    img_idx = np.full((n, ki), -1, dtype=np.int64)
    rule_idx = np.full((n, len(ERROR_TYPES)), -1, dtype=np.int64)
    ret_idx = np.full((n, kr), -1, dtype=np.int64)
    types, unscored = [], 0
    for i, r in enumerate(rows):
        types.append([neg["perturbation"] for neg in r["image_negatives"]])
        for j, neg in enumerate(r["image_negatives"]):
            img_idx[i, j] = len(paths)
            paths.append(root / split / neg["file_name"])
        for neg in r.get("text_negatives", []):
            col = ERROR_TYPES.index(neg["error_type"])
            if rule_idx[i, col] < 0:  # one edit of each type, as training uses them
                rule_idx[i, col] = len(texts)
                texts.append(neg["text"])
            else:
                unscored += 1
        for j, neg in enumerate(r.get("retrieval_negatives", [])):
            ret_idx[i, j] = len(texts)
            texts.append(neg["text"])
    return SplitItems(rows, paths, img_idx, types, texts, rule_idx, ret_idx, unscored)


def drop_indistinguishable(items: SplitItems, tokenizer) -> tuple[SplitItems, dict[str, dict[str, int]]]:
    """``items`` without the text negatives whose token ids equal their caption's, and how many went.

    Captions are cut at the model's context length; when a rule edit falls after the cut the
    negative *is* the caption to the model and no model can win the choice, so it is not scored.
    Counted per kind (error type or ``retrieval``) under ``truncated`` (the caption fills the
    context: the cut hid the difference) or ``identical`` (equal tokens without a cut).
    """
    n = items.n
    tokens = tokenizer(list(items.texts))
    full = tokens[:n, -1] != 0  # the last position is not padding (open_clip pads with 0): the caption was cut
    counts: dict[str, dict[str, int]] = {"truncated": {}, "identical": {}}
    out = []
    for index, kinds in ((items.rule_index, list(ERROR_TYPES)), (items.retrieval_index, None)):
        index = index.copy()
        for i, j in zip(*np.nonzero(index >= 0)):
            if torch.equal(tokens[index[i, j]], tokens[i]):
                kind = kinds[j] if kinds else "retrieval"
                why = counts["truncated" if bool(full[i]) else "identical"]
                why[kind] = why.get(kind, 0) + 1
                index[i, j] = -1
        out.append(index)
    for why in counts.values():
        why["all"] = sum(why.values())
    return dataclasses.replace(items, rule_index=out[0], retrieval_index=out[1]), counts


# ----------------------------------------------------------------------------- scoring


def _pick(pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per item: 1 if ``pos`` beats every valid negative strictly, and the chance of a random pick.

    A tie is a miss, and so is any NaN: a comparison with NaN is false, and a NaN negative
    counts as beating the positive.
    """
    beaten = (pos[:, None] > neg) | ~valid  # NaN on either side: not beaten
    hit = beaten.all(dim=1) & torch.isfinite(pos)
    chance = 1.0 / (1.0 + valid.sum(dim=1).double())
    return hit.numpy().astype(float), chance.numpy()


def _summary(hit: np.ndarray, chance: np.ndarray, keep: np.ndarray | None = None) -> dict[str, float]:
    if keep is not None:
        hit, chance = hit[keep], chance[keep]
    if len(hit) == 0:
        return {"acc": float("nan"), "chance": float("nan"), "n": 0}
    return {"acc": float(hit.mean()), "chance": float(chance.mean()), "n": int(len(hit))}


def _candidate_scores(
    query: torch.Tensor, features: torch.Tensor, index: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of each query (N, D) against its own positive (row i of ``features``) and its
    candidates ``index`` (N, K, -1 = none): the positive's score (N,), the candidates' (N, K) and which
    are valid (N, K).

    Each score is an elementwise product summed over D by one reduction, the same instructions for
    every (n, k), so equal embeddings score exactly equal. A matrix product does not promise that:
    BLAS may compute two columns with different kernels (blocking, thread split), and a tie would
    then fall either way.
    """
    n = query.shape[0]
    idx = torch.cat([torch.arange(n)[:, None], torch.as_tensor(index, dtype=torch.long).reshape(n, -1)], 1)
    s = (query[:, None, :] * features[idx.clamp_min(0)]).sum(-1)
    return s[:, 0], s[:, 1:], idx[:, 1:] >= 0


def fine_grained_scores(items: SplitItems, image_features: torch.Tensor, text_features: torch.Tensor) -> dict:
    """The fine-grained benchmark and the per-source probes from precomputed embeddings.

    Scores what ``items`` indexes (-1 = none): in ``i2t_fine`` the first rule negative of each error
    type (:func:`split_items`) less those :func:`drop_indistinguishable` removed. Each ``chance`` is
    the mean over scored items of 1 / (1 + their scored negatives).
    """
    n = items.n
    img, cap = image_features[:n], text_features[:n]
    k_rule = items.rule_index.shape[1]
    pos, text_s, text_ok = _candidate_scores(
        img, text_features, np.concatenate([items.rule_index, items.retrieval_index], 1)
    )
    rule_s, rule_ok, ret_s, ret_ok = text_s[:, :k_rule], text_ok[:, :k_rule], text_s[:, k_rule:], text_ok[:, k_rule:]
    all_s, all_ok = torch.cat([rule_s, ret_s], 1), torch.cat([rule_ok, ret_ok], 1)
    i2t = {"all": _summary(*_pick(pos, rule_s, rule_ok), keep=rule_ok.any(1).numpy())}
    for col, etype in enumerate(ERROR_TYPES):
        ok = rule_ok[:, col : col + 1]
        i2t[etype] = _summary(*_pick(pos, rule_s[:, col : col + 1], ok), keep=ok[:, 0].numpy())
    with_retrieval = {
        "all": _summary(*_pick(pos, all_s, all_ok), keep=all_ok.any(1).numpy()),
        "retrieval only": _summary(*_pick(pos, ret_s, ret_ok), keep=ret_ok.any(1).numpy()),
    }

    pos_t, neg_s, neg_ok = _candidate_scores(cap, image_features, items.image_neg_index)
    t2i = {"all": _summary(*_pick(pos_t, neg_s, neg_ok), keep=neg_ok.any(1).numpy())}
    by_type: dict[str, list[float]] = {}
    for i, types in enumerate(items.image_neg_types):
        for j, t in enumerate(types):
            by_type.setdefault(t, []).append(float(bool(pos_t[i] > neg_s[i, j])))  # a tie or NaN: a miss
    for t in sorted(by_type):
        t2i[t] = {"acc": float(np.mean(by_type[t])), "chance": 0.5, "n": len(by_type[t])}

    return {
        "i2t_fine": i2t,
        "t2i_fine": t2i,
        "i2t_with_retrieval": with_retrieval,
        "probes": {"image": t2i["all"], "rule": i2t["all"], "retrieval": with_retrieval["retrieval only"]},
    }


def i2t_fine_hits(items: SplitItems, image_features: torch.Tensor, text_features: torch.Tensor) -> np.ndarray:
    """Per diagram, 1.0 where its true caption beats its scored rule negatives (the first of each error
    type, less the dropped ones) strictly, 0.0 where not, NaN where none is left.

    The items whose mean is ``i2t_fine["all"]``: what a paired comparison of two models needs
    (:func:`~mmgeo_utils.experiments.comparison.gap_uncertainty`), since both are scored on the same diagrams.
    """
    pos, rule_s, ok = _candidate_scores(image_features[: items.n], text_features, items.rule_index)
    hit, _ = _pick(pos, rule_s, ok)
    hit[~ok.any(1).numpy()] = np.nan
    return hit


def retrieval_scores(image_features: torch.Tensor, text_features: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """R@k image→text and text→image over N pairs (chance k/N)."""
    n = image_features.shape[0]
    sims = image_features @ text_features.T
    target = torch.arange(n)
    out = {}
    for name, s in (("i2t", sims), ("t2i", sims.T)):
        # rank of the true item = how many other candidates are not strictly below it (a tie is a miss,
        # as in the fine-grained benchmark, so a collapsed encoder gets 0, not 1; a NaN beats it)
        true = s[target, target][:, None]
        rank = (~(s < true)).sum(1) - 1
        finite = torch.isfinite(true[:, 0])
        for k in ks:
            out[f"{name}_r{k}"] = {
                "acc": float(((rank < k) & finite).double().mean()),
                "chance": min(1.0, k / n),
                "n": n,
            }
    return out


# ----------------------------------------------------------------------------- the whole benchmark


@torch.no_grad()
def evaluate_clip(
    model: nn.Module,
    tokenizer,
    root: Path | str,
    *,
    split: str = "test",
    image_size: int,
    variants: Sequence[str] = VARIANTS,
    max_samples: int | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    workers: int | None = None,
) -> dict:
    """Every metric of this module for one model on one split, as a JSON-able dict.

    ``variants`` other than ``clean`` re-encode the diagrams (positives and negatives) only; the
    text embeddings are shared. ``max_samples`` limits the split (periodic evaluation in training).
    Text negatives that tokenize like their caption are dropped and counted
    (:func:`drop_indistinguishable`); non-finite embeddings are an error, not a score.
    """
    was_training = model.training
    model.eval()
    try:
        items, dropped = drop_indistinguishable(split_items(root, split, max_samples), tokenizer)
        texts = check_finite(encode_texts(model, tokenizer, items.texts, device=device), "text")
        result: dict[str, Any] = {
            "split": split,
            "n": items.n,
            "negatives_dropped_truncated": dropped["truncated"],
            "negatives_dropped_identical": dropped["identical"],
            "rule_negatives": {
                "scored": int((items.rule_index >= 0).sum()),
                "dropped": sum(c.get(t, 0) for c in dropped.values() for t in ERROR_TYPES),
                "unscored_beyond_first_of_type": items.rule_unscored,
            },
        }
        for variant in variants:
            images = check_finite(
                encode_images(
                    model,
                    items.image_paths,
                    eval_transform(image_size, variant),
                    batch_size=batch_size,
                    device=device,
                    workers=workers,
                ),
                "image",
            )
            fine = fine_grained_scores(items, images, texts)
            if variant == "clean":
                result.update(fine)
                result["retrieval"] = retrieval_scores(images[: items.n], texts[: items.n])
            else:
                result.setdefault("robustness", {})[variant] = {
                    "i2t_fine": fine["i2t_fine"]["all"],
                    "t2i_fine": fine["t2i_fine"]["all"],
                }
    finally:
        model.train(was_training)
    return result


@torch.no_grad()
def encode_items(
    model: nn.Module,
    tokenizer,
    items: SplitItems,
    image_size: int,
    *,
    variant: str = "clean",
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings of every positive and negative of ``items`` (for per-item analysis)."""
    was_training = model.training
    model.eval()
    try:
        texts = encode_texts(model, tokenizer, items.texts, device=device)
        images = encode_images(model, items.image_paths, eval_transform(image_size, variant), device=device)
    finally:
        model.train(was_training)
    return images, texts


def i2t_choices(items: SplitItems, image_features: torch.Tensor, text_features: torch.Tensor) -> list[dict]:
    """Per test item: the caption the model prefers among the true one and its text negatives.

    Each entry has ``correct`` (bool), ``chosen`` (the preferred text) and ``kind`` (``caption``,
    ``rule:<type>`` or ``retrieval``): the raw material for "which facts does a model confuse".
    """
    out = []
    for i in range(items.n):
        cands = [(i, "caption")]
        cands += [(int(j), f"rule:{ERROR_TYPES[c]}") for c, j in enumerate(items.rule_index[i]) if j >= 0]
        cands += [(int(j), "retrieval") for j in items.retrieval_index[i] if j >= 0]
        scores = (text_features[[j for j, _ in cands]] * image_features[i]).sum(-1)  # equal texts tie exactly
        best = int(scores.nan_to_num(nan=float("inf")).argmax())  # a NaN candidate wins: never a false hit
        correct = best == 0 and bool((scores[0] > scores[1:]).all()) and bool(torch.isfinite(scores[0]))
        out.append(
            {
                "index": i,
                "correct": correct,
                "chosen": items.texts[cands[best][0]],
                "kind": cands[best][1],
                "caption": items.texts[i],
            }
        )
    return out


def headline(result: dict) -> dict[str, float]:
    """The numbers a comparison reports: fine-grained accuracies and R@1, as fractions."""
    out = {
        "i2t_fine": result["i2t_fine"]["all"]["acc"],
        "t2i_fine": result["t2i_fine"]["all"]["acc"],
        "i2t_r1": result["retrieval"]["i2t_r1"]["acc"],
        "t2i_r1": result["retrieval"]["t2i_r1"]["acc"],
        "i2t_r5": result["retrieval"]["i2t_r5"]["acc"],
        "t2i_r5": result["retrieval"]["t2i_r5"]["acc"],
    }
    out["i2t_with_retrieval"] = result["i2t_with_retrieval"]["all"]["acc"]
    out["i2t_fine_by_type"] = {k: v["acc"] for k, v in result["i2t_fine"].items() if k != "all"}
    out["t2i_fine_by_type"] = {k: v["acc"] for k, v in result["t2i_fine"].items() if k != "all"}
    return out


def tidy_table(result: dict, model: str | None = None):
    """One row per number: benchmark, breakdown, accuracy %, chance %, items (a pandas DataFrame)."""
    import pandas as pd  # local: only the table needs pandas

    rows = []

    def add(bench, part, d):
        rows.append(
            {
                "benchmark": bench,
                "breakdown": part,
                "accuracy_%": 100 * d["acc"],
                "chance_%": 100 * d["chance"],
                "n": d["n"],
            }
        )

    for bench in ("i2t_fine", "t2i_fine", "i2t_with_retrieval", "probes"):
        for part, d in result[bench].items():
            add(bench, part, d)
    for part, d in result["retrieval"].items():
        add("retrieval", part, d)
    for variant, d in result.get("robustness", {}).items():
        for bench, v in d.items():
            add(f"{bench}@{variant}", "all", v)
    df = pd.DataFrame(rows)
    if model is not None:
        df.insert(0, "model", model)
    return df.round({"accuracy_%": 1, "chance_%": 1})
