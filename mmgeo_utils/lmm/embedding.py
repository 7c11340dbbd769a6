"""Lesson 07, MM-GEM in miniature: one LM that both embeds (for retrieval) and generates (captions).

MM-GEM (Ma et al., 2024) trains a single LLM with two objectives at once: a contrastive loss between
an image embedding and a text embedding read off the LM, and the usual captioning loss. Its finding is
that the two "do not significantly conflict". Here the LM is lesson 06's, the tower is a course encoder
(frozen; its features come from lesson 06's cache), and:

* **text embedding**: a caption followed by a learned ``<emb>`` token; the LM's last hidden state at
  that token, through a linear head, L2-normalised (:meth:`GeometryEmbedder.embed_text`). With right
  padding the ``<emb>`` token is the last real token of each row, so a causal LM has read the whole
  caption when it gets there.
* **image embedding**: the projected image tokens (lesson 06's projector), mean-pooled, through a
  linear head, L2-normalised (:meth:`GeometryEmbedder.embed_image`).
* **loss**: ``embed`` is in-batch InfoNCE between the two, *plus the caption's rule-edited hard
  negatives as extra candidates* (:func:`~mmgeo_utils.clip.losses.hard_negative_clip_loss`: our
  addition, MM-GEM has no hard negatives); ``generate`` is image → caption cross-entropy on the same
  LM (lesson 06's stage-1 format); ``joint`` is their sum.

The same LoRA adapter and projector serve both objectives, so the comparison joint / embed / generate
at equal steps asks exactly the paper's question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..clip.losses import hard_negative_clip_loss
from . import data as D
from .vision_language_model import IGNORE_INDEX, GeometryLMM

EMB_TOKEN = "<emb>"
OBJECTIVES = ("joint", "embed", "generate")


def add_embedding_token(tokenizer, lm: nn.Module) -> int:
    """Give ``tokenizer`` the ``<emb>`` token (if it lacks it) and ``lm`` a row for it; return its id.

    The transformers way: ``add_tokens(..., special_tokens=True)`` then ``resize_token_embeddings``. The new
    row starts as the mean of the existing ones (no random draw); LoRA trains it through
    peft's ``trainable_token_indices`` (:func:`~mmgeo_utils.lmm.gem.build_gem_model`), the rest of the
    embedding table stays frozen.
    """
    if EMB_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([EMB_TOKEN], special_tokens=True)  # keeps <image> and every other special token
    old = lm.get_input_embeddings().num_embeddings
    if old < len(tokenizer):
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():  # the new rows start as the mean of the old ones: no random draw
            for table in {
                id(t): t for t in (lm.get_input_embeddings(), lm.get_output_embeddings()) if t is not None
            }.values():
                table.weight[old:] = table.weight[:old].mean(0)
    return tokenizer.convert_tokens_to_ids(EMB_TOKEN)


def embedding_ids(tokenizer, text: str, context_length: int) -> list[int]:
    """``<s> text <emb>``, the caption cut (never the ``<emb>`` token) to fit ``context_length``."""
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[: context_length - 1] + [tokenizer.convert_tokens_to_ids(EMB_TOKEN)]


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids and their attention mask."""
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return ids, mask


class GeometryEmbedder(nn.Module):
    """Lesson 06's LMM plus two linear heads and a learned temperature: MM-GEM's embedding side."""

    def __init__(self, lmm: GeometryLMM, emb_token_id: int, dim: int = 128, init_temperature: float = 0.07):
        super().__init__()
        if lmm.projector is None:
            raise ValueError("an embedding LMM needs a vision tower: vision 'none' has no image embedding")
        width = lmm.projector.lm_dim
        self.lmm, self.emb_token_id = lmm, emb_token_id
        self.text_head, self.image_head = nn.Linear(width, dim), nn.Linear(width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, dim): the last hidden state at each row's ``<emb>`` token, through the text head."""
        at = attention_mask.sum(1) - 1  # right padding: the last real token
        if not bool((input_ids[torch.arange(len(at)), at] == self.emb_token_id).all()):
            raise ValueError("every text row must end with the <emb> token (embedding_ids builds them)")
        out = self.lmm.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1][torch.arange(len(at)), at]
        return F.normalize(self.text_head(hidden.float()), dim=-1)

    def embed_image(self, features: dict[str, Tensor]) -> Tensor:
        """(B, dim): the mean of the projected image tokens, through the image head."""
        return F.normalize(self.image_head(self.lmm.image_embeds(features).mean(1).float()), dim=-1)


# ----------------------------------------------------------------------------- training examples


@dataclass(frozen=True)
class GemExample:
    """One training scene: its caption for generation and for embedding, and its hard-negative captions."""

    caption: D.Example  # image → caption, labels on the caption (lesson 06's stage-1 format)
    text: list[int]  # <s> caption <emb>
    negatives: tuple[list[int], ...]  # <s> edited caption <emb>, one per rule error type present
    scene: int


def gem_examples(
    tokenizer, rows: Sequence[dict], *, n_image_tokens: int, context_length: int, max_negatives: int = 4
) -> list[GemExample]:
    """Every row's caption and its first rule negative of each error type (as CLIP training uses them)."""
    captions = D.align_examples(tokenizer, rows, n_image_tokens=n_image_tokens, context_length=context_length)
    out = []
    for i, (r, cap) in enumerate(zip(rows, captions)):
        if "text_negatives" not in r:
            raise ValueError(f"row {r['id']} has no text negatives: build the dataset with its hard negatives")
        first: dict[str, str] = {}
        for neg in r["text_negatives"]:
            first.setdefault(neg["error_type"], neg["text"])
        negs = tuple(embedding_ids(tokenizer, t, context_length) for t in list(first.values())[:max_negatives])
        out.append(GemExample(cap, embedding_ids(tokenizer, r["caption"], context_length), negs, i))
    return out


def gem_collate(examples: Sequence[GemExample], pad_id: int, features: dict[str, Tensor] | None) -> dict:
    """The captioning batch (lesson 06's collate), the texts, and the negatives as a (B, K) grid + mask."""
    batch = D.collate([e.caption for e in examples], pad_id, features)
    batch["text_ids"], batch["text_mask"] = pad_right([e.text for e in examples], pad_id)
    k = max(len(e.negatives) for e in examples)
    flat = [n for e in examples for n in e.negatives]
    batch["negative_valid"] = torch.tensor([[j < len(e.negatives) for j in range(k)] for e in examples])
    batch["negative_ids"], batch["negative_mask"] = pad_right(flat, pad_id) if flat else (None, None)
    return batch


def gem_losses(model: GeometryEmbedder, batch: dict, dev: torch.device, objective: str) -> dict[str, Tensor]:
    """The batch's ``embed`` and/or ``generate`` losses (``joint``: both), and ``loss``, their sum."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; objectives: {', '.join(OBJECTIVES)}")
    feats = {k: v.to(dev) for k, v in batch["features"].items()}
    out: dict[str, Tensor] = {}
    if objective in ("joint", "generate"):
        ids, mask, labels = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels"))
        n_items = (labels[:, 1:] != IGNORE_INDEX).sum()
        out["generate"] = model.lmm(ids, mask, labels, feats, num_items_in_batch=n_items).loss
    if objective in ("joint", "embed"):
        image = model.embed_image(feats)
        text = model.embed_text(batch["text_ids"].to(dev), batch["text_mask"].to(dev))
        negatives, valid = None, None
        if batch["negative_ids"] is not None:
            flat = model.embed_text(batch["negative_ids"].to(dev), batch["negative_mask"].to(dev))
            valid = batch["negative_valid"].to(dev)
            negatives = flat.new_zeros((*valid.shape, flat.shape[-1]))
            negatives[valid] = flat
        out["embed"] = hard_negative_clip_loss(
            image, text, model.logit_scale.exp().clamp(max=100), None, negatives, text_negative_mask=valid
        )
    out["loss"] = sum(out.values())  # type: ignore[assignment]
    return out
