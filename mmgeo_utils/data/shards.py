"""The files a build writes, shard by shard, and the check that they still hold.

A shard of :data:`SHARD_SIZE` samples is finished by an atomic shard manifest (its rows, file
names and sha256); :func:`check_dataset` verifies a finished build against ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..repro import atomic_write_bytes, atomic_write_text
from .config import FORMAT_VERSION, MANIFEST, METADATA, SHARD_DIR, SPLITS, DatasetConfig
from .samples import make_sample

SHARD_SIZE = 256


# ----------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shard:
    split: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}.json"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(config: DatasetConfig, shard_size: int = SHARD_SIZE) -> list[Shard]:
    if shard_size < 1:
        raise ValueError(f"shard_size must be ≥ 1, got {shard_size}")
    out = []
    for split in SPLITS:
        n = config.size(split)
        for i, start in enumerate(range(0, n, shard_size)):
            out.append(Shard(split, i, start, min(n, start + shard_size)))
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text (° stays °)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build_shard(config: DatasetConfig, root: Path, shard: Shard) -> int:
    """Make and write one shard's samples, then its manifest (atomically, last)."""
    rows, files = [], {}
    split_dir = root / shard.split
    for index in range(shard.start, shard.stop):
        rec = make_sample(config, shard.split, index)
        for name, data in rec.files.items():
            atomic_write_bytes(split_dir / name, data)
            files[name] = {"bytes": len(data), "sha256": _sha256(data)}
        rows.append(rec.row)
    manifest = {
        "format": FORMAT_VERSION,
        "key": config.key(),
        "split": shard.split,
        "shard": shard.index,
        "start": shard.start,
        "stop": shard.stop,
        "files": files,
        "rows": rows,
    }
    atomic_write_text(root / SHARD_DIR / shard.name, _dumps(manifest) + "\n")
    return len(shard)


def _build_shard_task(args: tuple[DatasetConfig, Path, Shard]) -> int:
    return build_shard(*args)


def read_shard(root: Path, config: DatasetConfig, shard: Shard, rehash: bool = True) -> tuple[dict | None, str]:
    """A complete, intact shard's manifest, or ``(None, why not)``."""
    path = root / SHARD_DIR / shard.name
    if not path.exists():
        return None, "not built"
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{path.name} is not valid JSON ({e})"
    want = {
        "format": FORMAT_VERSION,
        "key": config.key(),
        "split": shard.split,
        "shard": shard.index,
        "start": shard.start,
        "stop": shard.stop,
    }
    got = {k: m.get(k) for k in want}
    if got != want:
        return None, f"{path.name} belongs to another build ({got} != {want})"
    if len(m.get("rows", [])) != len(shard):
        return None, f"{path.name} has {len(m.get('rows', []))} rows, expected {len(shard)}"
    problem = _check_files(root / shard.split, m.get("files", {}), rehash)
    return (None, f"{shard.name}: {problem}") if problem else (m, "ok")


def _check_files(folder: Path, files: dict[str, dict], rehash: bool) -> str | None:
    """The first missing, resized or (with ``rehash``) altered file, described; None if all hold."""
    for name, info in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{folder.name}/{name} is missing"
        if size != info["bytes"]:
            return f"{folder.name}/{name} has {size} bytes, expected {info['bytes']} (truncated or altered)"
        if rehash and _file_sha256(path) != info["sha256"]:
            return f"{folder.name}/{name} does not match its sha256 (corrupt)"
    return None


# ----------------------------------------------------------------------------- cache check


def check_dataset(root: Path, config: DatasetConfig, verify: Literal["quick", "full"] = "quick") -> str | None:
    """Why the dataset at ``root`` cannot be used for ``config``, or None if it can.

    ``quick`` checks the manifest, the config, counts, every metadata file's hash and
    every image's size; ``full`` also re-hashes every image.
    """
    if verify not in ("quick", "full"):
        raise ValueError(f"verify must be 'quick' or 'full', got {verify!r}")
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        return f"{MANIFEST} is missing (never built, or the build was interrupted)"
    try:
        manifest = json.loads(path.read_text())
        splits = manifest["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} is unreadable ({e!r})"
    if manifest.get("key") != config.key() or manifest.get("config") != config.to_dict():
        return f"it was built for another config (key {manifest.get('key')}, wanted {config.key()})"
    for split in SPLITS:
        try:
            problem = _check_split(root, config, split, splits.get(split), verify == "full")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            problem = f"{MANIFEST} or a shard manifest is malformed for split {split!r} ({e!r})"
        if problem:
            return problem
    return None


def _check_split(root: Path, config: DatasetConfig, split: str, info: dict | None, rehash: bool) -> str | None:
    if not info:
        return f"{MANIFEST} has no entry for split {split!r}"
    meta = root / split / METADATA
    if not meta.exists():
        return f"{split}/{METADATA} is missing"
    data = meta.read_bytes()
    if len(data) != info["metadata_bytes"]:
        return f"{split}/{METADATA} has {len(data)} bytes, expected {info['metadata_bytes']} (truncated or altered)"
    if _sha256(data) != info["metadata_sha256"]:
        return f"{split}/{METADATA} does not match its sha256 (altered)"
    rows = data.count(b"\n")
    if rows != config.size(split) or info["n"] != config.size(split):
        return f"{split}/{METADATA} has {rows} rows, expected {config.size(split)}"
    for name, sha in info["shards"].items():
        spath = root / SHARD_DIR / name
        if not spath.exists():
            return f"shard manifest {SHARD_DIR}/{name} is missing"
        sdata = spath.read_bytes()
        if _sha256(sdata) != sha:
            return f"shard manifest {SHARD_DIR}/{name} does not match its sha256"
        problem = _check_files(root / split, json.loads(sdata)["files"], rehash)
        if problem:
            return problem
    return None
