"""Lesson 07, MM-GEM: train lesson 06's LMM to embed and to caption, and score it at both.

Training (:func:`train_gem`) starts where lesson 06's stage 1 ends: the LM of stage 0 and the projector
that stage 1 aligned to the tower. It adds the ``<emb>`` token and the two heads of
:class:`~mmgeo_utils.lmm.embedding.GeometryEmbedder`, and trains LoRA on the LM (with the ``<emb>``
row, through peft's ``trainable_token_indices``), the projector and the heads on one objective:

==============  ==========================================================================
``joint``       InfoNCE with hard-negative captions + image → caption cross-entropy (MM-GEM)
``embed``       the InfoNCE alone
``generate``    the captioning loss alone
==============  ==========================================================================

Every objective gets the same steps, batches and learning rate, so the comparison is the paper's
question at equal budget. The hard negatives are the full build's rule edits of each caption (the first
of each error type, as CLIP training uses them); the images and their cached tower features are lesson
06's (the positives-only build holds the same diagrams, row for row).

Scoring (:func:`evaluate_gem`) asks both skills of the one model on the test split:

* as an embedding model: lesson 05's fine-grained benchmark (``i2t_fine`` and ``t2i_fine``) and
  retrieval R@1 / R@5, computed by the same functions from the LM's embeddings, so the numbers stand
  beside lesson 05's CLIP text towers;
* as a captioner: greedy captions of test diagrams, parsed back to facts
  (:func:`~mmgeo_utils.diagrams.parse.caption_fact_scores`) and scored by fact precision (stated facts
  the scene confirms), recall (the scene's facts stated) and F1.

A model that never learned to embed (``generate``) still gets embedding scores (its heads are
untrained), and one that never learned to caption (``embed``) still captions: both are the baselines
the joint model is compared with.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..clip.evaluate import drop_indistinguishable, fine_grained_scores, retrieval_scores, split_items
from ..data import DatasetConfig, build_dataset, load_split
from ..data.contrastive import default_transform
from ..data.samples import decode_row
from ..diagrams.parse import caption_fact_scores
from ..diagrams.scene import Scene
from ..repro import cpu_threads, seed_everything
from . import data as D
from .config import LMMConfig, stage_dir
from .embedding import (
    OBJECTIVES,
    GeometryEmbedder,
    add_embedding_token,
    embedding_ids,
    gem_collate,
    gem_examples,
    gem_losses,
    pad_right,
)
from .language_model import load_lm
from .loop import _begin, _dist, _finish, _fit, _is_main
from .tokenizer import image_token_id, load_tokenizer
from .train import _tower_and_features, add_lora, dataset_root, load_aligned_projector, selected_rows, train_lmm
from .vision_language_model import GeometryLMM, load_lmm, save_lmm

HEADS_FILE, GEM_FILE = "embedding_heads.safetensors", "gem.json"
EMBED_DIM = 128


def gem_dir(cfg: LMMConfig, objective: str, hard_negatives: bool = True) -> Path:
    """``<tower folder>/gem-<objective>[-in-batch]``: beside lesson 06's ``align`` and ``sft`` of that tower."""
    return stage_dir(cfg, "align").parent / f"gem-{objective}{'' if hard_negatives else '-in-batch'}"


def negatives_root(cfg: LMMConfig) -> Path:
    """The full build (with hard negatives) of ``cfg``'s profile and data seed: lessons 02–05's dataset."""
    return build_dataset(DatasetConfig.from_profile(cfg.profile, seed=cfg.data_seed), progress=False)


def _with_negatives(rows: list[dict], full_root: Path, split: str) -> list[dict]:
    """``rows`` with the full build's text negatives, matched by id (both builds hold the same scenes)."""
    full = load_split(full_root, split, len(rows))
    if [r["id"] for r in full] != [r["id"] for r in rows]:
        raise ValueError(
            f"{full_root} does not hold the same {split} scenes as the LMM's dataset: build both from one profile and seed"
        )
    return [{**r, "text_negatives": f.get("text_negatives", [])} for r, f in zip(rows, full)]


def build_gem_model(
    cfg: LMMConfig, tok, width: int, grid: str, lora: bool = True
) -> tuple[GeometryEmbedder, list[torch.nn.Parameter]]:
    """Stage 0's LM (+ ``<emb>``, + LoRA), stage 1's projector and fresh heads; and what trains."""
    c = cfg.resolved()
    lm = load_lm(stage_dir(cfg, "lm") / "lm", tok)
    emb_id = add_embedding_token(tok, lm)
    lm_dim = lm.get_input_embeddings().embedding_dim
    if lora:
        lm = add_lora(lm, c.lora_r, trainable_token_indices=[emb_id])  # type: ignore[arg-type]
    projector = load_aligned_projector(cfg, width, lm_dim)
    model = GeometryEmbedder(GeometryLMM(lm, projector, image_token_id(tok), grid), emb_id, EMBED_DIM)
    return model, [p for p in model.parameters() if p.requires_grad]


def train_gem(
    cfg: LMMConfig,
    objective: str = "joint",
    *,
    hard_negatives: bool = True,
    steps: int | None = None,
    resume: bool = False,
    data_root: Path | str | None = None,
    full_root: Path | str | None = None,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
) -> dict[str, Any]:
    """Train one objective on ``cfg``'s tower (stages 0–1 trained or reused first); return its summary."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; objectives: {', '.join(OBJECTIVES)}")
    if cfg.vision == "none":
        raise ValueError("MM-GEM needs a vision tower: --vision none has no image to embed")
    c = cfg.resolved()
    steps = c.sizes.gem_steps if steps is None else steps
    info, _ = _dist()
    if info.enabled:
        raise ValueError("lesson 07's embedding objectives train in one process (their InfoNCE is not gathered)")
    for stage in ("lm", "align"):  # lesson 06's stages 0 and 1, reused when finished
        train_lmm(cfg, stage, data_root=data_root)
    root = dataset_root(c, data_root)
    extra = {"objective": objective, "hard_negatives": hard_negatives, "gem_steps": steps, "embed_dim": EMBED_DIM}
    run_dir, done = _begin(
        cfg,
        "align",
        resume,
        root,
        run_dir=gem_dir(cfg, objective, hard_negatives),
        extra=extra,
        label=f"gem-{objective}",
    )
    if done is not None:
        return done
    with cpu_threads(c.threads):
        _, rows, _ = selected_rows(c, "train", root)
        rows = _with_negatives(rows, Path(full_root) if full_root else negatives_root(c), "train")
        tower, feats, (n_tok, width), hit = _tower_and_features(c, root, rows)
        tok = load_tokenizer(stage_dir(cfg, "lm") / "tokenizer")
        seed_everything(c.seed)
        model, params = build_gem_model(c, tok, width, tower.token_grid)
        examples = gem_examples(
            tok,
            rows,
            n_image_tokens=n_tok,
            context_length=c.sizes.context_length,
            max_negatives=4 if hard_negatives else 0,
        )

        def step_loss(m, batch, dev, _info):
            return gem_losses(m, batch, dev, objective)["loss"], int(batch["attention_mask"].sum())

        summary = _fit(
            model,
            params,
            examples,
            feats,
            steps=steps,
            lr=c.sizes.sft_lr,
            cfg=c,
            run_dir=run_dir,
            resume=resume,
            pad_id=tok.pad_token_id,
            callbacks=callbacks,
            collate=gem_collate,
            step_loss=step_loss,
        )
        if _is_main():
            save_gem(model.cpu(), run_dir / "model", tok, cfg, tower, n_tok)
    return _finish(run_dir, cfg, summary, feature_cache_hit=hit, image_tokens=n_tok, **extra)


def save_gem(model: GeometryEmbedder, folder: Path, tok, cfg: LMMConfig, tower, n_tok: int) -> Path:
    """Lesson 06's LMM format (:func:`~mmgeo_utils.lmm.vision_language_model.save_lmm`) plus the heads."""
    from .train import saved_info  # local: lesson 06's record of what the LMM was built from

    model.lmm.tower = tower
    with warnings.catch_warnings():  # peft notes that it saves the resized embedding table: it should
        warnings.filterwarnings("ignore", message=".*save_embedding_layers.*", category=UserWarning)
        save_lmm(model.lmm, folder, tok, saved_info(cfg, image_tokens=n_tok))
    save_file({k: v.detach().contiguous() for k, v in _heads(model).items()}, str(folder / HEADS_FILE))
    (folder / GEM_FILE).write_text(json.dumps({"emb_token_id": model.emb_token_id, "dim": EMBED_DIM}) + "\n")
    return folder


def _heads(model: GeometryEmbedder) -> dict[str, torch.Tensor]:
    return {
        **{f"text_head.{k}": v for k, v in model.text_head.state_dict().items()},
        **{f"image_head.{k}": v for k, v in model.image_head.state_dict().items()},
        "logit_scale": model.logit_scale.detach(),
    }


def load_gem(folder: Path | str) -> tuple[GeometryEmbedder, Any]:
    """``(model, tokenizer)`` of a folder written by :func:`save_gem`, in eval mode on the CPU."""
    folder = Path(folder)
    if not (folder / GEM_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no MM-GEM model ({GEM_FILE} missing): train one with train_gem")
    lmm, tok, _ = load_lmm(folder)
    meta = json.loads((folder / GEM_FILE).read_text())
    model = GeometryEmbedder(lmm, meta["emb_token_id"], meta["dim"])
    heads = load_file(str(folder / HEADS_FILE))
    model.text_head.load_state_dict({k.removeprefix("text_head."): v for k, v in heads.items() if "text_head" in k})
    model.image_head.load_state_dict({k.removeprefix("image_head."): v for k, v in heads.items() if "image_head" in k})
    model.logit_scale.data.copy_(heads["logit_scale"])
    return model.eval(), tok


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def _text_embeddings(model: GeometryEmbedder, tok, texts: list[str], context_length: int, batch: int = 64):
    out = []
    for i in range(0, len(texts), batch):
        ids, mask = pad_right([embedding_ids(tok, t, context_length) for t in texts[i : i + batch]], tok.pad_token_id)
        out.append(model.embed_text(ids, mask))
    return torch.cat(out)


@torch.no_grad()
def _image_features(model: GeometryEmbedder, paths: list[Path], batch: int = 64) -> dict[str, torch.Tensor]:
    from PIL import Image  # local: only scoring reads image files here

    transform, parts = default_transform(), {}
    for i in range(0, len(paths), batch):
        images = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i : i + batch]])
        for k, v in model.lmm.tower(images).items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def _token_table(tok, context_length: int) -> Callable[[list[str]], torch.Tensor]:
    """Texts → (N, context_length) ids padded with 0, what :func:`drop_indistinguishable` compares."""

    def table(texts: list[str]) -> torch.Tensor:
        rows = [embedding_ids(tok, t, context_length) for t in texts]
        out = torch.zeros((len(rows), context_length), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    return table


@torch.no_grad()
def generate_captions(
    model: GeometryEmbedder, tok, features: dict[str, torch.Tensor], max_new_tokens: int
) -> list[str]:
    """Greedy captions from lesson 06's stage-1 prompt, one per row of ``features``."""
    n_tok = model.lmm.image_embeds({k: v[:1] for k, v in features.items()}).shape[1]
    prompt = D.prompt_ids(tok, D.align_prompt(True), n_tok)
    n = next(iter(features.values())).shape[0]
    ids = torch.tensor([prompt] * n)
    new = model.lmm.generate(ids, torch.ones_like(ids), features, max_new_tokens, tok.eos_token_id)
    return [tok.decode([t for t in row.tolist() if t != tok.eos_token_id], skip_special_tokens=True) for row in new]


def evaluate_gem(
    folder: Path | str, full_root: Path | str, *, split: str = "test", captions: int | None = None, context_length: int
) -> dict[str, Any]:
    """Embedding scores (fine-grained, retrieval) and caption fact precision / recall / F1 of one model."""
    model, tok = load_gem(folder)
    items = split_items(full_root, split)
    items, dropped = drop_indistinguishable(items, _token_table(tok, context_length))
    texts = _text_embeddings(model, tok, list(items.texts), context_length)
    feats = _image_features(model, list(items.image_paths))
    images = model.embed_image(feats)
    result: dict[str, Any] = {
        **fine_grained_scores(items, images, texts),
        "retrieval": retrieval_scores(images[: items.n], texts[: items.n]),
        "negatives_dropped": dropped,
    }
    n_cap = min(items.n, captions if captions is not None else 0)
    if n_cap:
        head = {k: v[:n_cap] for k, v in feats.items()}
        generated = generate_captions(model, tok, head, max_new_tokens=context_length // 2)
        scores = [
            caption_fact_scores(Scene.from_dict(decode_row(r)["scene"]), text)
            for r, text in zip(items.rows[:n_cap], generated)
        ]
        result["captions"] = {
            **{k: float(np.mean([s[k] for s in scores])) for k in ("precision", "recall", "f1")},
            "n": n_cap,
            "examples": [{"id": r["id"], "text": t} for r, t in zip(items.rows[:5], generated[:5])],
        }
    return result
