"""Examples of the three stages, their token sequences and labels, and the cached tower features.

Every example comes from the dataset rows lessons 01-05 built (:func:`~mmgeo_utils.data.build.load_split`):
its caption (``describe``) and its question–answer pairs (``make_qa``), whose answers were measured
from the scene's coordinates.

=========  ====================================================  ================================
stage      prompt (no loss)                                      target (the loss)
=========  ====================================================  ================================
``lm``     ``<s>``                                               the caption, or ``Question: q``
                                                                 ``Answer: a`` (text only)
``align``  ``<s><image>`` ``Describe the figure.``               the caption
``sft``    ``<s><image>`` ``Question: q`` ``Answer:``            `` a</s>``
=========  ====================================================  ================================

Features. The tower is frozen in stages 1-2, so its outputs for a split are computed once and cached
under ``runs/<profile>/lmm/features/``, keyed by the tower's weights hash and the split's fingerprint
(:func:`~mmgeo_utils.data.build.split_fingerprint`): another encoder or another build of the data
misses the cache instead of being served the wrong features. Stored in float16, which halves the
cpu profile's 6,000 × 37 tokens (the LMM computes in float32).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from tqdm.auto import tqdm

from ..data import load_image, load_split, split_fingerprint
from ..data.contrastive import default_transform
from ..repro import atomic_write_bytes
from .tokenizer import IMAGE_TOKEN
from .vision_language_model import IGNORE_INDEX, expand_image_tokens

ALIGN_PROMPT = "Describe the figure."
QUESTION_KINDS = ("length", "angle", "yes_no", "which", "shape")


def sft_prompt(question: str, image: bool = True) -> str:
    return (IMAGE_TOKEN + "\n" if image else "") + f"Question: {question}\nAnswer:"


def align_prompt(image: bool = True) -> str:
    return (IMAGE_TOKEN + "\n" if image else "") + ALIGN_PROMPT + "\n"


def corpus(rows: Sequence[dict]) -> list[str]:
    """The course's own text: captions and question–answer pairs (the tokenizer's and stage 0's data)."""
    out = []
    for r in rows:
        out.append(r["caption"])
        out += [f"Question: {q['question']}\nAnswer: {q['answer']}" for q in r["qa"]]
    return out


@dataclass(frozen=True)
class Example:
    """One token sequence: ``input_ids``, ``labels`` (−100 outside the target), and the scene it shows."""

    input_ids: list[int]
    labels: list[int]
    scene: int  # row index in the split (which cached features to splice in); -1 for text-only
    qa: int = -1  # which of the scene's questions (sft)


def prompt_ids(tokenizer, prompt: str, n_image_tokens: int) -> list[int]:
    """``<s> prompt`` as ids, the ``<image>`` placeholder expanded to ``n_image_tokens``."""
    p = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return expand_image_tokens(p, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), n_image_tokens)


def encode(
    tokenizer,
    prompt: str,
    target: str,
    *,
    n_image_tokens: int,
    context_length: int,
    truncate: bool = False,
    where: str = "",
) -> tuple[list[int], list[int]]:
    """``<s> prompt target </s>`` as ids, with labels only on ``target </s>``.

    A sequence longer than ``context_length`` is an error naming it, unless ``truncate`` (captions
    in stage 0 and 1, whose tail is one more fact, not the answer) cuts the target's end.
    """
    p = prompt_ids(tokenizer, prompt, n_image_tokens)
    t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(p) + len(t) > context_length:
        if not truncate or len(p) >= context_length - 1:
            raise ValueError(
                f"{where or 'an example'} needs {len(p) + len(t)} tokens ({len(p)} of prompt, "
                f"{n_image_tokens} of them image tokens) but the context holds {context_length}: "
                "shorten the question or raise context_length in profiles.LMM_SIZES"
            )
        t = t[: context_length - len(p)]
    return p + t, [IGNORE_INDEX] * len(p) + t


def lm_examples(tokenizer, rows: Sequence[dict], context_length: int) -> list[Example]:
    out = []
    for text in corpus(rows):
        ids, labels = encode(tokenizer, "", text, n_image_tokens=0, context_length=context_length, truncate=True)
        out.append(Example(ids, [IGNORE_INDEX] + labels[1:], -1))
    return out


def align_examples(tokenizer, rows: Sequence[dict], *, n_image_tokens: int, context_length: int) -> list[Example]:
    image = n_image_tokens > 0
    return [
        Example(
            *encode(
                tokenizer,
                align_prompt(image),
                " " + r["caption"],
                n_image_tokens=n_image_tokens,
                context_length=context_length,
                truncate=True,
            ),
            i,
        )
        for i, r in enumerate(rows)
    ]


def sft_examples(tokenizer, rows: Sequence[dict], *, n_image_tokens: int, context_length: int) -> list[Example]:
    image = n_image_tokens > 0
    out = []
    for i, r in enumerate(rows):
        for j, q in enumerate(r["qa"]):
            ids, labels = encode(
                tokenizer,
                sft_prompt(q["question"], image),
                " " + q["answer"],
                n_image_tokens=n_image_tokens,
                context_length=context_length,
                where=f"question {q['question']!r} of {r['id']}",
            )
            out.append(Example(ids, labels, i, j))
    return out


def collate(examples: Sequence[Example], pad_id: int, features: dict[str, torch.Tensor] | None) -> dict:
    """Right-padded ids, labels (−100 on padding), attention mask, and the examples' features."""
    n = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask, "features": None}
    if features is not None and examples[0].scene >= 0:
        idx = torch.tensor([e.scene for e in examples])
        batch["features"] = {k: v[idx].float() for k, v in features.items()}
    return batch


# ----------------------------------------------------------------------------- the feature cache


def feature_cache_path(cache_dir: Path, tower, root: Path | str, split: str, n: int, view: str = "") -> Path:

    data = hashlib.sha256(split_fingerprint(root, split).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{tower.weights_hash()[:16]}-{data}-{split}-{n}{'-' + view if view else ''}.safetensors"


ImageView = tuple[str, Callable[[Path, dict], list]]  # (name, (root, row) -> the row's images)


def cached_features(
    tower,
    root: Path | str,
    split: str,
    n: int,
    cache_dir: Path | str,
    *,
    batch_size: int = 64,
    progress: bool = False,
    view: ImageView | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """``({"grid": (n, G, C), "pooled": (n, C)}, hit)``: the tower's features of the split's first n diagrams.

    ``view=(name, images_of)`` encodes each row's ``images_of(root, row)`` instead of its stored diagram
    (lesson 07's local crops): keys become ``<name>_grid`` (n, V, G, C) and ``<name>_pooled`` (n, V, C), V
    images per row, so they travel beside the global features through :func:`collate`.
    """

    path = feature_cache_path(Path(cache_dir), tower, root, split, n, view[0] if view else "")
    if path.is_file():
        return load_file(str(path)), True
    rows = load_split(root, split)[:n]
    transform = default_transform()
    parts: dict[str, list[torch.Tensor]] = {}
    step = batch_size if view is None else max(1, batch_size // 4)
    for i in tqdm(
        range(0, len(rows), step), desc=f"features {split}{' ' + view[0] if view else ''}", disable=not progress
    ):
        chunk = rows[i : i + step]
        if view is None:
            images = torch.stack([transform(load_image(root, r)) for r in chunk])
        else:
            per_row = [view[1](Path(root), r) for r in chunk]
            images = torch.stack([transform(im) for ims in per_row for im in ims])
        for k, v in tower(images).items():
            if view is not None:
                v = v.reshape(len(chunk), -1, *v.shape[1:])
                k = f"{view[0]}_{k}"
            parts.setdefault(k, []).append(v.half())
    feats = {k: torch.cat(v).contiguous() for k, v in parts.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save_bytes(feats, metadata={"tower": tower.name, "split": split}))
    return feats, False
