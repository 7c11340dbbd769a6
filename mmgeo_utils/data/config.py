"""What decides a dataset's content (:class:`DatasetConfig`, its cache key) and the layout of a built one.

The folder and file names of the *ImageFolder* layout that :mod:`~mmgeo_utils.data.build` writes and
:mod:`~mmgeo_utils.data.read` reads (lessons 01 and 02).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..diagrams.families import FAMILIES
from ..profiles import Profile, get_profile
from ..repro import REPO_ROOT

# Bump when any code that decides a sample's pixels or text changes (families, layout,
# captions, rendering, the data modules): the version is part of every cache key, so old
# caches are rebuilt instead of silently mixed with new samples.
GENERATOR_VERSION = "6"  # 6: a hard negative keeps every letter and value its edit did not touch
# (laid out with its positive's label radius and centroid; length-label side ties broken by a fixed rule);
# 5: fact and answer values typed (value number, value_text string)
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
SHARD_DIR = ".shards"
FORMAT_VERSION = 1  # layout of manifest.json and shard manifests


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides a dataset's content, and nothing else.

    ``name`` only names the folder; it is not part of :meth:`key`, so two profiles of
    the same sizes describe the same data. ``families=None`` means every registered
    family, resolved here so that adding a family changes the key.
    """

    name: str = "custom"
    image_size: int = 128
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    seed: int = 0
    families: tuple[str, ...] | None = None
    # hard negatives (lesson 02): K image and K rule negatives per sample, and retrieval
    # negatives mined from the split's captions; 0 builds positives only
    num_negatives: int = 0
    allow_drastic: bool = False  # drastic relation flips (∥ → ⟂) in *image* negatives
    retrieval_candidates: int = 0
    sentence_encoder: str = "minilm"
    generator_version: str = GENERATOR_VERSION
    # False: diagrams without length labels and angle values, letters only (MMGeoLM Table 5); the captions and
    # questions still state the values
    numeric_marks: bool = True

    def __post_init__(self) -> None:
        known = tuple(FAMILIES)
        fams = known if self.families is None else tuple(self.families)
        unknown = [f for f in fams if f not in FAMILIES]
        if unknown or not fams:
            raise ValueError(f"unknown or no families {unknown or list(fams)}; known: {', '.join(known)}")
        object.__setattr__(self, "families", fams)
        if not (isinstance(self.seed, (int, np.integer)) and self.seed >= 0):
            raise ValueError(f"dataset seed must be a non-negative integer, got {self.seed!r}")
        for split in SPLITS:
            n = self.size(split)
            if not (isinstance(n, (int, np.integer)) and n >= 0):
                raise ValueError(f"n_{split} must be a non-negative integer, got {n!r}")
        if not (isinstance(self.image_size, int) and self.image_size >= 16):
            raise ValueError(f"image_size must be an integer ≥ 16, got {self.image_size!r}")
        if self.num_negatives < 0 or self.retrieval_candidates < 0:
            raise ValueError("num_negatives and retrieval_candidates must be non-negative")

    @classmethod
    def from_profile(
        cls, profile: Profile | str | None = None, seed: int = 0, negatives: bool = True, numeric_marks: bool = True
    ) -> DatasetConfig:
        """The profile's dataset; ``negatives=False`` builds positives only (lesson 01), ``numeric_marks=False``
        draws letters only (lesson 08's marks study)."""
        p = get_profile(profile)
        neg = (
            {
                "num_negatives": p.num_negatives,
                "retrieval_candidates": p.retrieval_candidates,
                "sentence_encoder": p.sentence_encoder,
            }
            if negatives
            else {}
        )
        name = (p.name if negatives else f"{p.name}-positives") + ("" if numeric_marks else "-letters")
        return cls(
            name=name,
            image_size=p.image_size,
            n_train=p.n_train,
            n_val=p.n_val,
            n_test=p.n_test,
            seed=seed,
            numeric_marks=numeric_marks,
            **neg,
        )

    def size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        return getattr(self, f"n_{split}")

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``numeric_marks`` only when off, so the builds with marks keep their key and manifest."""
        d = asdict(self)
        d["families"] = list(self.families or ())
        if d["numeric_marks"]:
            del d["numeric_marks"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetConfig:
        d = dict(d)
        d["families"] = tuple(d["families"])
        return cls(**d)

    def key(self) -> str:
        """A short hash of the content-deciding fields (generator version included)."""
        content = {k: v for k, v in self.to_dict().items() if k != "name"}
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def data_root() -> Path:
    """``data/`` in the repository, or ``$MMGEO_DATA_DIR``."""
    return Path(os.environ.get("MMGEO_DATA_DIR") or REPO_ROOT / "data")


def default_dir(config: DatasetConfig) -> Path:
    return data_root() / f"{config.name}-{config.key()}"
