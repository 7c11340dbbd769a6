"""Reading a built dataset: its rows, images, manifest and fingerprints, and checking one given by folder.

What lessons 01-06 and the training loop read once :func:`~mmgeo_utils.data.build.build_dataset` has
written a dataset; nothing here writes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from .config import MANIFEST, METADATA, SPLITS, DatasetConfig
from .samples import decode_row
from .shards import _file_sha256, _sha256, check_dataset


def verify_dataset(root: Path | str, verify: Literal["quick", "full"] = "quick") -> Path:
    """``root`` if the dataset there passes its own manifest's check, else a ``ValueError`` naming the problem.

    For data given by folder (``--data DIR``), whose config the caller does not know: the manifest
    says what was built, and :func:`check_dataset` whether the files still are that (``quick``:
    sizes and metadata hashes; ``full``: every image re-hashed).
    """
    root = Path(root)
    manifest = read_manifest(root)
    try:
        config = DatasetConfig.from_dict(manifest["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{root / MANIFEST} does not describe a dataset this version can read ({e})") from None
    problem = check_dataset(root, config, verify)
    if problem:
        raise ValueError(
            f"dataset {root} fails its {verify} check: {problem}; rebuild it (mmgeo data build with "
            f"its profile and seed and --out {root} repairs it)"
        )
    return root


def load_split(root: Path | str, split: str, limit: int | None = None) -> list[dict]:
    """The metadata rows of one split, in index order; only the first ``limit`` when given.

    ``limit`` stops reading there: a gpu-sized train split is ~1.6 GB of JSON, and a caller that
    needs its first 1,000 rows (the AC score) should not parse the other 49,000.
    """
    return list(itertools.islice(iter_split(root, split), limit))


def iter_split(root: Path | str, split: str) -> Iterator[dict]:
    """The metadata rows of one split, one at a time: for readers that keep only a few fields of each
    (the training dataset), so a split is never held as dicts all at once."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    path = Path(root) / split / METADATA
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the dataset first (mmgeo data build)")
    return (decode_row(row) for row in _read_jsonl(path))


def split_fingerprint(root: Path | str, split: str) -> str:
    """Which data a split of the dataset at ``root`` is: its config key and the sha256 of its manifest entry.

    Why: a cached evaluation must name the data it scored, not only the weights. The entry holds
    the split's size, its metadata hash and the hash of every shard manifest (which hash every
    image), so two builds agree here exactly when they hold the same files; scoring the same model
    on another dataset (``data_root=...``, a rebuilt generator) then misses the cache instead of
    being served another split's numbers.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    manifest = read_manifest(root)
    try:
        entry = manifest["splits"][split]
        key = manifest["key"]
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{Path(root) / MANIFEST} has no entry for split {split!r} ({e!r}); rebuild the dataset"
        ) from None
    return f"{key}/{split}/{_sha256(json.dumps(entry, sort_keys=True).encode())}"


def read_manifest(root: Path | str) -> dict[str, Any]:
    """The manifest of the dataset built at ``root``: its config, key and splits.

    Code that reads a built dataset without knowing its config (an evaluation's cache key, a
    benchmark on a smaller build) learns from here what the data is; a folder that holds none is
    named as not a dataset.
    """
    path = Path(root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {root} is not a built dataset (build_dataset / "
            "mmgeo data build write the manifest last)"
        ) from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is unreadable ({e!r}); rebuild the dataset") from None


def _read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(
                    f"{path}:{lineno} is not valid JSON ({e}); the dataset is corrupt, "
                    f"rebuild it with build_dataset / mmgeo data build"
                ) from None
            if not isinstance(row, dict) or "file_name" not in row:
                raise ValueError(f"{path}:{lineno} is not a metadata row (no file_name); rebuild the dataset")
            yield row


def image_path(root: Path | str, row: dict) -> Path:
    return Path(root) / row["split"] / row["file_name"]


def load_image(root: Path | str, row: dict):
    """The row's image as an RGB PIL image."""
    with Image.open(image_path(root, row)) as im:
        return im.convert("RGB")


def file_hashes(root: Path | str, skip: Sequence[str] = (MANIFEST,)) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path → hash): compare two builds with ``==``."""
    root = Path(root)
    return {
        str(p.relative_to(root)): _file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip
    }
