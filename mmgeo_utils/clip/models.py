"""open_clip models for the course: small configs shipped here, hub models on ``paper``.

Three ways to get a CLIP model, one function (:func:`create_clip`):

* a config shipped in ``mmgeo_utils/clip/model_configs/`` (``mmgeo-resnet-tiny`` for ``smoke``/``cpu``,
  ``mmgeo-vit-small`` for ``gpu``), randomly initialised: registered with
  ``open_clip.add_model_config`` so open_clip builds it like any of its own (each has a
  ``-narrowtext`` twin, text tower width and heads halved, that only ``mmgeo bench train
  --speedups`` uses so far);
* an open_clip model name with a pretrained tag (``ViT-B-32`` + ``openai`` on ``paper``), which
  open_clip downloads once;
* the same name with ``pretrained`` set to a *local file* (``.safetensors``, ``.bin``, ``.pt``):
  the offline path, and what a checkpoint of :mod:`mmgeo_utils.clip.train` is loaded through.

Why a ResNet tower on CPU: a probe on 2 cores found open_clip's ViT from scratch at 64-96 px
learned nothing fine-grained in minutes, while its ``ModifiedResNet`` (layers [1,1,1,1], width
32) learned which vertex carries a right-angle mark. Convolutions bring the locality prior a
tiny model cannot learn from a few thousand diagrams.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..profiles import Profile, get_profile
from .checkpoint import CheckpointError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_registered = False


def shipped_models() -> list[str]:
    """The model configs that ship with the course (no download needed)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def model_config(model_name: str) -> dict:
    """The open_clip config of ``model_name``: a shipped one or any of open_clip's own (``paper``'s
    ``ViT-B-32-quickgelu``), as open_clip reads it. An unknown name is an error that lists ours."""
    import open_clip  # local: open_clip takes ~3 s to import (torchvision, timm, transformers)

    register_model_configs()
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(
            f"unknown open_clip model {model_name!r}; shipped here: {', '.join(shipped_models())} "
            "(or any name of open_clip.list_models())"
        )
    return config


def register_model_configs() -> None:
    """Make the shipped configs known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip  # local: open_clip takes ~3 s to import (torchvision, timm, transformers)

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def create_clip(
    model_name: str,
    pretrained: str | Path | None = None,
    *,
    image_size: int | None = None,
    temperature: float | None = None,
    context_length: int | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """An open_clip ``CLIP`` model, on ``device``, in train mode.

    ``pretrained`` is an open_clip tag (needs the internet the first time) or a path to a
    checkpoint file on disk; a missing path is an error that names it, never a silent random
    init. ``image_size`` overrides the config's input size (the profiles render diagrams at
    64-336 px; a ResNet's attention pool and a ViT's position embedding are sized from it).
    ``temperature`` starts the learned temperature (1 / logit scale) there instead of at open_clip's
    0.07 (its ``init_logit_scale``). Why it is a setting: AdamW moves the log logit scale by at most
    about ``lr`` per step, so in a few hundred steps it barely leaves its initial value (14.3 → 14.9
    in the cpu profile's 500), while the paper's hard-negative loss runs on a pretrained CLIP whose
    scale has grown to ~100. On a short run from scratch the initial temperature is, in effect, the
    temperature. Pretrained weights bring their own scale, so the two do not mix.

    ``context_length`` overrides the text context (open_clip's ``force_context_length``; it
    interpolates a pretrained model's 77 position embeddings to it): the ``paper`` profile's
    spelled-out captions run to ~130 tokens. A checkpoint file of ours carries its own length, read
    from its ``positional_embedding`` when none is given, so a run is reloaded as it was trained.
    OpenAI's weights were trained with QuickGELU: the ``openai`` tag turns it on for any model name
    (open_clip's ``force_quick_gelu``; the ``-quickgelu`` names already have it).
    """
    import open_clip  # local: open_clip takes ~3 s to import (torchvision, timm, transformers)

    register_model_configs()
    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model_name!r}; shipped here: {', '.join(shipped_models())} "
            "(or any name of open_clip.list_models())"
        )
    if pretrained is not None:
        pretrained = str(pretrained)
        find_pretrained(model_name, pretrained)  # a missing file or unreachable weights fail here, clearly
    if temperature is not None and pretrained is not None:
        raise ValueError(
            f"temperature={temperature} starts a model trained from scratch; pretrained weights "
            f"{pretrained!r} bring their own logit scale"
        )
    if context_length is None and pretrained is not None and pretrained.endswith(".safetensors"):
        try:
            context_length = checkpoint_context_length(pretrained)
        except Exception as e:  # not a safetensors file at all: name it, as for any unloadable checkpoint
            raise CheckpointError(
                f"pretrained checkpoint {pretrained} cannot be loaded into {model_name}: it is not a "
                f"safetensors file ({' '.join(str(e).split())[:300]})"
            ) from None
    scale = {} if temperature is None else {"init_logit_scale": math.log(1.0 / temperature)}
    with _quiet_random_init(pretrained is None):
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=pretrained,
                force_image_size=image_size,
                force_context_length=context_length,
                force_quick_gelu=pretrained == "openai",
                device=device,
                **scale,
            )
        except Exception as e:  # a truncated, garbage or other model's file fails deep in open_clip or torch
            if pretrained is None or not Path(pretrained).is_file():
                raise
            raise CheckpointError(
                f"pretrained checkpoint {pretrained} cannot be loaded into {model_name}: "
                f"{' '.join(str(e).split())[:300]}"
            ) from None
    model.train()
    return model


def find_pretrained(model_name: str, pretrained: str) -> Path:
    """The local file of ``model_name``'s ``pretrained`` weights: a path as given, or a tag from the
    Hugging Face cache (downloaded there first when the hub is reachable).

    Why ask before building a model: a ``paper`` run without the weights would otherwise fail deep
    inside ``train()`` with open_clip's generic download error. Notebook 00 calls this, so a machine
    without them learns at once which weights are missing and how to bring them from a local folder.
    """
    import open_clip  # local: open_clip takes ~3 s to import (torchvision, timm, transformers)
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    looks_like_path = any(c in pretrained for c in "/\\") or Path(pretrained).suffix
    if looks_like_path:
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"pretrained checkpoint {pretrained} not found")
        return Path(pretrained)
    register_model_configs()
    cfg = get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(
            f"open_clip has no {pretrained!r} weights for {model_name}; "
            f"its tags: {', '.join(tags) or 'none (train it from scratch)'}"
        )
    hub = cfg.get("hf_hub", "").rstrip("/")
    try:
        return Path(download_pretrained(cfg))  # a cached file is returned without the network
    except Exception as e:  # offline, hub unreachable, no such file: say which weights and what to do
        reason = " ".join(str(e).split())[:300]
        raise FileNotFoundError(
            f"the pretrained weights {model_name} / {pretrained!r} are not on this machine and could not be "
            f"downloaded (Hugging Face Hub repo {hub or cfg.get('url')}): {reason}. "
            f"On a machine with internet run `huggingface-cli download {hub or '<repo>'} --local-dir WEIGHTS`, "
            "copy WEIGHTS here and pass its file: `--pretrained WEIGHTS/open_clip_model.safetensors` "
            "(or copy that machine's Hugging Face cache, ~/.cache/huggingface, and point HF_HOME at it "
            "with HF_HUB_OFFLINE=1)"
        ) from None


def checkpoint_context_length(path: str | Path) -> int | None:
    """The text context a safetensors CLIP checkpoint was trained with (None if it has no text tower)."""
    with safe_open(str(path), framework="pt") as f:
        for key in ("positional_embedding", "text.positional_embedding"):
            if key in f.keys():
                return int(f.get_slice(key).get_shape()[0])
    return None


class _RandomInitFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_random_init(expected: bool):
    """open_clip warns on the root logger when it builds a model without weights; here we asked for that."""
    root, flt = logging.getLogger(), _RandomInitFilter()
    if expected:
        root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def create_clip_for_profile(
    profile: Profile | str | None = None, *, device: str | torch.device = "cpu", pretrained: str | Path | None = None
) -> nn.Module:
    """The profile's model (``profile.clip_model``), at the profile's image size."""
    p = get_profile(profile)
    return create_clip(
        p.clip_model,
        pretrained if pretrained is not None else p.clip_pretrained,
        image_size=p.image_size,
        device=device,
    )


# Two to five capitals standing alone: a polygon or a segment named by its points (ORS, RM, ABCD).
POINT_NAMES = re.compile(r"(?<![A-Za-z])([A-Z]{2,5})(?![A-Za-z])")


def spell_point_names(text: str) -> str:
    """``"triangle ORS, RM = 4.5"`` → ``"triangle O R S, R M = 4.5"``.

    Why: CLIP's BPE lower-cases and merges letters, so ``ORS`` becomes the single token ``ors``
    and ``OSM`` the tokens ``os`` + ``m``: every triangle, segment and angle name would be its
    own rare word, and a model would have to learn separately that each of hundreds of such
    words means "these points". Spelled out, a name is a sequence of single-letter tokens, the
    same 26 the image shows next to its points (digits are already split by the BPE).
    """
    return POINT_NAMES.sub(lambda m: " ".join(m.group(1)), text)


class GeometryTokenizer:
    """open_clip's tokenizer applied to captions whose point names are spelled out."""

    def __init__(self, tokenizer: Callable):
        self.tokenizer = tokenizer
        self.context_length = getattr(tokenizer, "context_length", None)

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.tokenizer([spell_point_names(t) for t in texts])


def get_tokenizer(model_name: str, context_length: int | None = None) -> GeometryTokenizer:
    """open_clip's tokenizer for ``model_name``, after :func:`spell_point_names`.

    The BPE vocabulary ships inside open_clip, so this works offline; the context length is the
    model config's (96 for our small models: our captions state many facts) unless one is given:
    pass the model's own (``model.context_length``) for a model built with another.
    """
    import open_clip  # local: open_clip takes ~3 s to import (torchvision, timm, transformers)

    register_model_configs()
    return GeometryTokenizer(open_clip.get_tokenizer(model_name, context_length=context_length))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters of the image tower, the text side and in total."""
    visual = sum(p.numel() for p in model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"visual": visual, "text": total - visual, "total": total}


def dense_image_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A (B, C, h, w) map of local features from the image tower, for correspondence (lesson 05).

    ModifiedResNet: the third residual stage (stride 16), not the last: at our 64-96 px the last
    stage is a 2 × 2 or 3 × 3 grid, too coarse to locate a point within 10 % of the image.
    VisionTransformer: the patch tokens of the last block (before the final norm and projection),
    laid out on the patch grid (stride = patch size, 16 for our ViT), through open_clip's public
    ``forward_intermediates`` (open_clip >= 2.32, the floor requirements.txt sets).
    """
    return dense_visual_features(model.visual, images)


def dense_visual_features(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """:func:`dense_image_features` of an image tower alone (lesson 06's LMM holds only the tower)."""
    if hasattr(visual, "attnpool"):  # open_clip.modified_resnet.ModifiedResNet
        x = visual.stem(images.to(visual.conv1.weight.dtype))
        for layer in (visual.layer1, visual.layer2, visual.layer3):
            x = layer(x)
        return x
    if hasattr(visual, "transformer") and hasattr(visual, "conv1"):  # open_clip VisionTransformer
        out = visual.forward_intermediates(images, indices=1, intermediates_only=True, output_fmt="NCHW")
        return out["image_intermediates"][-1]
    raise ValueError(f"dense features are not implemented for image tower {type(visual).__name__}")


def text_extent(*tokens: torch.Tensor) -> int:
    """Token positions up to and including the last end-of-text token of any row of ``tokens``.

    open_clip's tokenizer ends every caption with its end-of-text token, the largest id of the
    vocabulary, and pads with zeros after it, so ``argmax`` finds it (a caption cut at the context
    length ends with it too). Everything after this position is padding in every row.
    """
    rows = [t.reshape(-1, t.shape[-1]) for t in tokens if t.numel()]
    if not rows:
        raise ValueError("no tokens to measure: every tensor given is empty")
    return max(int(r.argmax(dim=-1).max()) + 1 for r in rows)


def allow_short_text(model: nn.Module) -> nn.Module:
    """Let ``model`` (an open_clip ``CLIP``) encode token tensors shorter than its context length.

    open_clip adds all ``context_length`` position embeddings and the full causal mask, so a batch
    whose padding was trimmed (to :func:`text_extent`) fails there; this replaces ``encode_text``
    on this one model with the same computation on the first ``n`` positions. Why the features are
    the same: the mask is causal, so no position attends to a later one, and the text feature is
    read at the end-of-text token (``argmax`` pooling); positions after the batch's last
    end-of-text token cannot reach any feature that is read. Only the padding's compute is saved
    (up to floating-point rounding: other matrix shapes sum in another order).
    ``mmgeo bench train --speedups`` measures what it buys; training does not use it.
    """
    if getattr(model, "text_pool_type", None) != "argmax" or getattr(model, "attn_mask", None) is None:
        raise ValueError(
            f"trimming padded text tokens is exact only for a causal text tower pooled at the end-of-text "
            f"token; {type(model).__name__} has pool type {getattr(model, 'text_pool_type', None)!r} and "
            f"{'no' if getattr(model, 'attn_mask', None) is None else 'a'} causal mask"
        )

    def encode_text(text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        n = text.shape[-1]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(text).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
        x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]  # the end-of-text token
        proj = model.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return torch.nn.functional.normalize(x, dim=-1) if normalize else x

    model.encode_text = encode_text
    return model
