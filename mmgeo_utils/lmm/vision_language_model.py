"""The LMM: vision tower → projector → image tokens spliced into a causal LM's ``inputs_embeds``.

A plain ``nn.Module`` wrapper, the pattern of TinyLLaVA Factory and nanoVLM: transformers'
``LlavaForConditionalGeneration`` expects a transformers vision tower, ours is open_clip's.

The splice (:meth:`GeometryLMM.embed`). A prompt holds one ``<image>`` placeholder;
:func:`expand_image_tokens` repeats it once per image token (37 for ``layer3+pooled`` at 96 px),
so every sequence keeps its length and the LM's positions count image tokens like any other.
The LM's embedding of those positions is then replaced by the projected tower tokens, in order:
``embeds[input_ids == <image>] = projector(tokens)``. The blind LMM's prompts carry no
placeholder. Labels are −100 everywhere except the answer (and its end-of-sequence token), so the
loss is only on what the model must produce: cross-entropy over image or question tokens would
teach it to predict the question, which it is given.

Saving (:func:`save_lmm`) writes no pickle: the LM with ``save_pretrained`` (safetensors), the LoRA
adapter with peft's ``save_pretrained``, the projector and the tower's weights as safetensors, the
tower's open_clip config as JSON, and ``lmm.json``. :func:`load_lmm` needs transformers, peft and
open_clip only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..clip.models import CONFIG_DIR, _quiet_random_init
from .language_model import quiet
from .projector import Projector
from .vision_tower import VisionTower, join

IGNORE_INDEX = -100  # what transformers' causal-LM loss skips


def expand_image_tokens(ids: list[int], image_token_id: int, n_tokens: int) -> list[int]:
    """Repeat the single ``<image>`` placeholder ``n_tokens`` times (none for a blind model: 0)."""
    count = ids.count(image_token_id)
    if count > 1:
        raise ValueError(f"a prompt holds {count} <image> placeholders; the LMM takes one image per example")
    if count == 0:
        return list(ids)
    i = ids.index(image_token_id)
    return ids[:i] + [image_token_id] * n_tokens + ids[i + 1 :]


class GeometryLMM(nn.Module):
    """``lm`` (any ``AutoModelForCausalLM``, possibly peft-wrapped) fed projected tower tokens.

    ``tower`` may be ``None`` while training (features come from the cache) and for the blind model;
    ``projector`` is ``None`` only for the blind model.
    """

    def __init__(
        self,
        lm: nn.Module,
        projector: Projector | None,
        image_token_id: int,
        token_grid: str,
        tower: VisionTower | None = None,
    ):
        super().__init__()
        self.lm, self.projector, self.tower = lm, projector, tower
        self.image_token_id, self.token_grid = image_token_id, token_grid

    def image_embeds(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, N, lm width): the tower's tokens through the projector."""
        if self.projector is None:
            raise ValueError("this LMM is blind (vision 'none'): it has no projector for image features")
        return self.projector(join(features, self.token_grid))

    def embed(self, input_ids: torch.Tensor, features: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The LM's input embeddings with image tokens spliced in at the ``<image>`` positions."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        slots = input_ids == self.image_token_id
        if features is None:
            if slots.any():
                raise ValueError("the prompt holds <image> tokens but no image features were given")
            return embeds
        image = self.image_embeds(features).to(embeds.dtype)
        per_row = slots.sum(1)
        if not bool((per_row == image.shape[1]).all()):
            raise ValueError(
                f"each prompt needs {image.shape[1]} <image> tokens (expand_image_tokens), found {per_row.tolist()}"
            )
        return embeds.masked_scatter(slots[..., None], image)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        features: dict[str, torch.Tensor] | None = None,
        **lm_kwargs,
    ):
        """The LM's output (``.loss`` with labels); ``lm_kwargs`` go to the LM (``num_items_in_batch``)."""
        embeds, attention_mask, position_ids = self.inputs(input_ids, attention_mask, features, labels)
        if position_ids is not None:
            lm_kwargs["position_ids"] = position_ids
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **lm_kwargs)

    def inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: dict[str, torch.Tensor] | None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(inputs_embeds, attention_mask, position_ids or None)`` the LM reads.

        Here the embeddings of :meth:`embed` and the mask as given. Lesson 07's SliME model overrides it: its
        selector reads the question (the prompt tokens after the image, where ``labels`` are −100) and drops
        local tokens by masking them out, with positions that skip them.
        """
        return self.embed(input_ids, features), attention_mask, None

    def encode_images(self, images: torch.Tensor) -> dict[str, torch.Tensor] | None:
        return None if self.tower is None else self.tower(images)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: dict[str, torch.Tensor] | None,
        max_new_tokens: int,
        eos_token_id: int,
    ) -> torch.Tensor:
        """Greedy decoding from left-padded prompts; returns (B, ≤ max_new_tokens) new token ids.

        Written out instead of ``lm.generate``: position ids come from the attention mask (left
        padding must not shift a prompt's positions), and the first step takes ``inputs_embeds``.
        """
        embeds, attention_mask, _ = self.inputs(input_ids, attention_mask, features)
        position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
        )
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        new: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1)
            token = torch.where(done, torch.full_like(token, eos_token_id), token)
            new.append(token)
            done |= token == eos_token_id
            if bool(done.all()):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)], 1)
            position_ids = position_ids[:, -1:] + 1
            out = self.lm(
                input_ids=token[:, None],
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        return torch.stack(new, 1)


# ----------------------------------------------------------------------------- saving and loading

LMM_FILE, PROJECTOR_FILE, TOWER_FILE = "lmm.json", "projector.safetensors", "vision_tower.safetensors"


def save_lmm(model: GeometryLMM, folder: Path | str, tokenizer, info: dict[str, Any]) -> Path:
    """Write a trained LMM to ``folder`` in the formats its libraries read (no pickle).

    ``lm/``: the LM (``save_pretrained``), merged with nothing: with LoRA, ``adapter/`` holds the
    adapter (peft) over ``lm/``; ``tokenizer/``; ``projector.safetensors``; ``vision_tower.safetensors``
    + ``vision/<model>.json`` (open_clip's own config format); ``lmm.json`` says how they fit.
    """
    from peft import PeftModel  # local: peft is imported only where an adapter is built or loaded

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lm = model.lm
    with quiet():
        if isinstance(lm, PeftModel):
            lm.save_pretrained(str(folder / "adapter"))
            # the base LM without the LoRA layers peft injected into it (unload() on a copy: the
            # model in memory keeps its adapter), so lm/ loads as a plain AutoModelForCausalLM
            copy.deepcopy(lm).unload().save_pretrained(str(folder / "lm"))
        else:
            lm.save_pretrained(str(folder / "lm"))
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    meta = {
        "image_token_id": model.image_token_id,
        "token_grid": model.token_grid,
        "lora": isinstance(lm, PeftModel),
        **info,
    }
    if model.projector is not None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()},
            str(folder / PROJECTOR_FILE),
        )
        meta["projector"] = {"vision_dim": model.projector.vision_dim, "lm_dim": model.projector.lm_dim}
    if model.tower is not None:
        visual = model.tower.visual
        save_file({k: v.detach().cpu().contiguous() for k, v in visual.state_dict().items()}, str(folder / TOWER_FILE))
        shipped = CONFIG_DIR / f"{info.get('clip_model')}.json"
        if shipped.is_file():  # a course config: copied, so open_clip alone can rebuild the tower
            (folder / "vision").mkdir(exist_ok=True)
            (folder / "vision" / shipped.name).write_text(shipped.read_text())
    (folder / LMM_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load_lmm(folder: Path | str) -> tuple[GeometryLMM, Any, dict]:
    """``(model, tokenizer, info)`` of a folder written by :func:`save_lmm`, in eval mode on the CPU."""
    import open_clip  # local: open_clip takes ~3 s to import (torchvision, timm, transformers)
    from peft import PeftModel  # local: peft is imported only where an adapter is built or loaded

    folder = Path(folder)
    if not (folder / LMM_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no trained LMM ({LMM_FILE} missing): train one with mmgeo train-lmm")
    meta = json.loads((folder / LMM_FILE).read_text())

    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    with quiet():
        lm = AutoModelForCausalLM.from_pretrained(str(folder / "lm"))
        if meta["lora"]:
            lm = PeftModel.from_pretrained(lm, str(folder / "adapter"))
    projector = None
    if "projector" in meta:
        projector = Projector(**meta["projector"])
        projector.load_state_dict(load_file(str(folder / PROJECTOR_FILE)))
    tower = None
    if (folder / TOWER_FILE).is_file():
        if (folder / "vision").is_dir():
            open_clip.add_model_config(str(folder / "vision"))
        with _quiet_random_init(True):  # the weights come next, from vision_tower.safetensors
            clip = open_clip.create_model(meta["clip_model"], force_image_size=meta["image_size"])
        clip.visual.load_state_dict(load_file(str(folder / TOWER_FILE)))
        tower = VisionTower(clip.visual, meta["token_grid"], meta.get("vision", "tower"))
    model = GeometryLMM(lm, projector, meta["image_token_id"], meta["token_grid"], tower).eval()
    return model, tokenizer, meta
