"""Cached, parallel, byte-deterministic dataset builder.

``build_dataset(config)`` turns seeds into a dataset in the Hugging Face
*ImageFolder* layout::

    data/<name>-<key>/
        manifest.json            written last: config, counts, hashes, provenance
        train/metadata.jsonl     one row per image; ``file_name`` is relative to train/
        train/train-000000.png
        val/…  test/…
        .shards/train-00000.json one per shard of 256 samples: its rows, files and hashes

so ``datasets.load_dataset("imagefolder", data_dir=root)`` reads it as is.

Three properties make it something a course can rely on:

* **Same seed, same bytes.** Each sample's seeds come from
  ``SeedSequence(config.seed, spawn_key=(split, index))``, so a sample does not
  depend on which worker made it or in which order; PNGs and JSON are written with
  fixed options. One worker or eight give identical files.
* **Resumable.** Work is done in shards, each finished by an atomic shard manifest
  (its rows, file names and sha256). An interrupted build keeps every complete
  shard and redoes only the rest.
* **A cache that is checked, not trusted.** ``manifest.json`` is written last. A
  later call verifies it (config, counts, sizes, metadata hash; ``verify="full"``
  re-hashes every image) and returns at once if it holds; anything missing,
  truncated or altered is reported by name and rebuilt.

The per-sample work is one pure function, :func:`make_sample`, so lesson 02 adds
hard negatives beside each positive in exactly one place.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..profiles import Profile, get_profile
from ..repro import REPO_ROOT, atomic_write_bytes, atomic_write_text, git_commit, package_versions

log = logging.getLogger(__name__)

# Bump when any code that decides a sample's pixels or text changes (families, layout,
# captions, rendering, this module): the version is part of every cache key, so old
# caches are rebuilt instead of silently mixed with new samples.
GENERATOR_VERSION = "5"  # 5: fact and answer values typed (value number, value_text string)
SPLITS = ("train", "val", "test")
SHARD_SIZE = 256
MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
SHARD_DIR = ".shards"
FORMAT_VERSION = 1  # layout of manifest.json and shard manifests
PNG_OPTIONS = {"format": "PNG", "compress_level": 3, "optimize": False}
SEED_BITS = 53  # seeds stay exact in any JSON reader (JavaScript numbers included)


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

    def __post_init__(self) -> None:
        from ..diagrams.families import FAMILIES

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
    def from_profile(cls, profile: Profile | str | None = None, seed: int = 0, negatives: bool = True) -> DatasetConfig:
        """The profile's dataset; ``negatives=False`` builds positives only (lesson 01)."""
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
        name = p.name if negatives else f"{p.name}-positives"
        return cls(
            name=name, image_size=p.image_size, n_train=p.n_train, n_val=p.n_val, n_test=p.n_test, seed=seed, **neg
        )

    def size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        return getattr(self, f"n_{split}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["families"] = list(self.families or ())
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


# ----------------------------------------------------------------------------- one sample


@dataclass(frozen=True)
class SampleSeeds:
    """Independent seeds for each random choice of one sample."""

    scene: int
    style: int
    caption: int
    qa: int
    image_negatives: int
    text_negatives: int


def sample_seeds(config: DatasetConfig, split: str, index: int) -> SampleSeeds:
    """Seeds of sample ``index`` of ``split``: a function of (config.seed, split, index) only.

    ``SeedSequence`` spawn keys give statistically independent streams for every
    (split, index), so splits never share samples and worker order cannot matter.
    """
    ss = np.random.SeedSequence(int(config.seed), spawn_key=(SPLITS.index(split), int(index)))
    words = ss.generate_state(6, dtype=np.uint64) >> np.uint64(64 - SEED_BITS)
    return SampleSeeds(*(int(w) for w in words))


@dataclass
class SampleRecord:
    """One sample: its metadata row and the files it writes (name relative to the split folder → bytes).

    A later lesson adds hard-negative images to ``files`` and links them from ``row``.
    """

    row: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def sample_id(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def encode_png(image) -> bytes:
    """PNG bytes with fixed options (no timestamps, fixed compression): same pixels, same bytes."""
    buf = io.BytesIO()
    image.save(buf, **PNG_OPTIONS)
    return buf.getvalue()


def _jsonable(x: Any) -> Any:
    """Dataclasses (facts, QA pairs) as plain dicts, for the metadata row."""
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if hasattr(x, "__dataclass_fields__"):
        return {k: _jsonable(getattr(x, k)) for k in x.__dataclass_fields__}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def make_scene(config: DatasetConfig, seeds: SampleSeeds):
    """The sample's scene, labels placed (the part negatives will perturb)."""
    from ..diagrams.families import sample_scene

    return sample_scene(seeds.scene, families=list(config.families or ()))


def make_sample(config: DatasetConfig, split: str, index: int) -> SampleRecord:
    """Everything about one sample, from seeds alone: scene, image, caption, QA.

    Pure: the same arguments give the same record in any process, which is what
    makes the dataset independent of worker count and resumable shard by shard.
    """
    from ..diagrams.captions import describe, make_qa
    from ..diagrams.render import render, sample_style

    seeds = sample_seeds(config, split, index)
    sid = sample_id(split, index)
    try:
        scene = make_scene(config, seeds)
        style = sample_style(config.image_size, seeds.style)
        png = encode_png(render(scene, style).image)
        caption = describe(scene, seeds.caption)
        qa = make_qa(scene, seeds.qa)
    except Exception as e:  # name the sample, so the failure can be reproduced alone
        raise RuntimeError(f"sample {sid} (scene seed {seeds.scene}) failed: {e}") from e
    file_name = f"{sid}.png"
    files = {file_name: png}
    row = {
        "file_name": file_name,
        "id": sid,
        "split": split,
        "index": index,
        "family": scene.family,
        "seed": seeds.scene,
        "scene": scene.to_dict(),
        "caption": caption.text,
        "caption_facts": _jsonable(caption.facts),
        "qa": _jsonable(qa),
        "style": style.to_dict(),
    }
    if config.num_negatives:
        try:
            row.update(make_negatives(config, scene, caption, style, seeds, sid, files))
        except Exception as e:
            raise RuntimeError(f"negatives of sample {sid} (scene seed {seeds.scene}) failed: {e}") from e
    return SampleRecord(row=encode_row(row), files=files)


# Every field of a metadata row keeps one JSON type in every row of every split, so Arrow, and so
# Hugging Face ``datasets`` (``load_dataset("imagefolder", data_dir=root)``), reads metadata.jsonl
# as a table. Two kinds of field would break that and are stored encoded; ``load_split`` decodes
# them, so Python code sees the plain objects:
SCENE_FIELD = "scene"  # a scene's points are keyed by their labels: stored as Scene.to_json()
COUNT_FIELDS = ("image_negative_skips", "text_negative_rejections", "retrieval_counts")  # {reason: n} maps,
# whose keys vary by row: stored as [{"reason": str, "count": int}, ...]


def encode_row(row: dict) -> dict:
    """A row as metadata.jsonl stores it (see ``SCENE_FIELD``, ``COUNT_FIELDS``)."""
    out = dict(row)
    if isinstance(out.get(SCENE_FIELD), dict):
        out[SCENE_FIELD] = json.dumps(out[SCENE_FIELD], sort_keys=True, separators=(",", ":"))
    if "image_negatives" in out:
        out["image_negatives"] = [
            {**n, SCENE_FIELD: json.dumps(n[SCENE_FIELD], sort_keys=True, separators=(",", ":"))}
            if isinstance(n.get(SCENE_FIELD), dict)
            else n
            for n in out["image_negatives"]
        ]
    for name in COUNT_FIELDS:
        if isinstance(out.get(name), dict):
            out[name] = [{"reason": k, "count": int(v)} for k, v in sorted(out[name].items())]
    return out


def decode_row(row: dict) -> dict:
    """The inverse of :func:`encode_row`: scenes as dicts, counts as ``{reason: count}``."""
    out = dict(row)
    if isinstance(out.get(SCENE_FIELD), str):
        out[SCENE_FIELD] = json.loads(out[SCENE_FIELD])
    if "image_negatives" in out:
        out["image_negatives"] = [
            {**n, SCENE_FIELD: json.loads(n[SCENE_FIELD])} if isinstance(n.get(SCENE_FIELD), str) else n
            for n in out["image_negatives"]
        ]
    for name in COUNT_FIELDS:
        if isinstance(out.get(name), list):
            out[name] = {c["reason"]: c["count"] for c in out[name]}
    return out


NEGATIVE_DIR = "negatives"  # inside each split folder: negative images are not samples of their own


def make_negatives(
    config: DatasetConfig, scene, caption, style, seeds: SampleSeeds, sid: str, files: dict[str, bytes]
) -> dict[str, Any]:
    """The sample's image and rule hard negatives (lesson 02), linked from its row.

    Image negatives are rendered with the positive's own style, so the only
    difference a model can see is the perturbed fact. Skipped perturbations and
    rejected rule edits are counted in the row: nothing is dropped silently.
    """
    from ..diagrams.render import render
    from ..negatives.image import PERTURBATIONS, make_image_negatives
    from ..negatives.text import make_text_negatives

    image_negs, skips = make_image_negatives(
        scene,
        config.num_negatives,
        seeds.image_negatives,
        allow_drastic=config.allow_drastic,
        style=style,
        caption_seed=seeds.caption,
    )
    image_rows = []
    for j, neg in enumerate(image_negs):
        name = f"{NEGATIVE_DIR}/{sid}-img{j}.png"
        files[name] = encode_png(neg.image if neg.image is not None else render(neg.scene, style, frame_of=scene).image)
        image_rows.append(
            {
                "file_name": name,
                "perturbation": neg.perturbation,
                "category": PERTURBATIONS[neg.perturbation].category,
                "change": neg.describe_change(),
                "removed": _jsonable(neg.removed),
                "added": _jsonable(neg.added),
                "caption": neg.caption.text,
                "scene": neg.scene.to_dict(),
            }
        )
    text_negs, rejections = make_text_negatives(
        scene, caption, config.num_negatives, seeds.text_negatives, caption_seed=seeds.caption
    )
    text_rows = [
        {"text": t.text, "error_type": t.error_type, "facts": _jsonable(t.facts), "edits": _jsonable(t.edits)}
        for t in text_negs
    ]
    return {
        "image_negatives": image_rows,
        "image_negative_skips": dict(sorted(skips.items())),
        "text_negatives": text_rows,
        "text_negative_rejections": dict(sorted(rejections.items())),
    }


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


# ----------------------------------------------------------------------------- build


def build_dataset(
    config: DatasetConfig,
    out_dir: Path | str | None = None,
    workers: int | None = None,
    progress: bool = True,
    verify: Literal["quick", "full", "once"] = "quick",
    shard_size: int = SHARD_SIZE,
    overwrite: bool = False,
) -> Path:
    """Build (or reuse) the dataset for ``config``; return its root folder.

    ``verify="once"`` checks like ``quick`` the first time, then trusts a dataset this process has
    already checked or built while its manifest is unchanged (what ``train`` and ``evaluate_run``
    use: a course run asks for the same dataset about 14 times).

    A verified cache returns at once. Otherwise complete shards from an earlier,
    interrupted or damaged build are re-hashed and kept, the rest are made in
    ``workers`` processes (default: all cores), and ``manifest.json`` is written last.
    A folder holding another config's dataset (another seed, size or generator version) is
    refused unless ``overwrite=True``: rebuilding it would silently replace data a run may
    have trained on.
    """
    if workers is not None and not (isinstance(workers, (int, np.integer)) and workers >= 1):
        raise ValueError(f"workers must be a positive integer (processes), got {workers!r}; leave it out for all cores")
    root = Path(out_dir) if out_dir is not None else default_dir(config)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"dataset folder {root} is a file, not a folder; choose another --out")
    if verify == "once":
        if _verified_earlier(root, config):
            return root
        verify = "quick"
    problem = check_dataset(root, config, verify)
    if problem is None:
        log.info("dataset cache hit: %s", root)
        _remember_verified(root, config, verify)
        return root
    other = _other_build(root, config)
    if other and not overwrite:
        raise FileExistsError(
            f"{root} holds {other}, not this one (key {config.key()}, seed {config.seed}); "
            "choose another --out, or pass overwrite=True (--overwrite) to replace it"
        )
    if (root / MANIFEST).exists() or (root / SHARD_DIR).exists():
        log.warning("dataset at %s cannot be reused: %s; rebuilding what is needed", root, problem)
    _claim_folder(root)
    (root / MANIFEST).unlink(missing_ok=True)  # never leave a manifest that vouches for a partial build

    t0 = time.perf_counter()
    shards = plan_shards(config, shard_size)
    todo = _shards_to_build(root, config, shards)
    _run_shards(config, root, todo, workers, progress)
    _remove_strays(root, config, shards)
    manifest = _write_metadata_and_manifest(root, config, shards, shard_size, time.perf_counter() - t0, progress)
    log.info("built %s: %s", root, {s: manifest["splits"][s]["n"] for s in SPLITS})
    _remember_verified(root, config, verify)
    return root


def _other_build(root: Path, config: DatasetConfig) -> str | None:
    """A description of the other config's dataset (finished, or interrupted) at ``root``, or None."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        key, seed = manifest["key"], manifest["config"]["seed"]
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: a build of this config repairs it
        pass
    else:
        if key != config.key():
            return f"the dataset of another config (key {key}, seed {seed})"
    shard_dir = root / SHARD_DIR
    for path in sorted(shard_dir.glob("*.json")) if shard_dir.is_dir() else ():
        try:
            key = json.loads(path.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            continue
        if key is not None and key != config.key():
            return f"a partial build of another config (shard {path.name}, key {key})"
    return None


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


# Datasets this process has checked: (root, config key) -> (manifest's mtime_ns and size, "quick"/"full").
# Why: a course run calls build_dataset from every train() and evaluate_run, about 14 times, and a quick
# check of a gpu-sized build hashes ~1.6 GB of metadata and stats ~600,000 images: minutes of idle GPU.
# A rebuild rewrites the manifest (last), so its mtime and size tell a new build from the one checked.
_VERIFIED: dict[tuple[str, str], tuple[tuple[int, int], str]] = {}  # what verify="once" trusts


def _manifest_stamp(root: Path) -> tuple[int, int] | None:
    try:
        st = (root / MANIFEST).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _remember_verified(root: Path, config: DatasetConfig, verify: str) -> None:
    stamp = _manifest_stamp(root)
    if stamp is not None:
        _VERIFIED[(str(root.resolve()), config.key())] = (stamp, verify)


def _verified_earlier(root: Path, config: DatasetConfig) -> bool:
    """This process already checked (or built) ``root`` for ``config``, and its manifest is unchanged."""
    seen = _VERIFIED.get((str(root.resolve()), config.key()))
    if seen is None or seen[0] != _manifest_stamp(root):
        return False
    log.info("dataset cache hit (checked earlier in this process): %s", root)
    return True


def _claim_folder(root: Path) -> None:
    """Refuse to write into (and later clean) a non-empty folder this builder did not make."""
    if root.exists() and any(root.iterdir()):
        ours = (root / MANIFEST).exists() or (root / SHARD_DIR).exists()
        if not ours:
            raise ValueError(f"{root} is not empty and was not made by build_dataset; choose another --out")
    (root / SHARD_DIR).mkdir(parents=True, exist_ok=True)


def _shards_to_build(root: Path, config: DatasetConfig, shards: list[Shard]) -> list[Shard]:
    todo = []
    for shard in shards:
        m, why = read_shard(root, config, shard, rehash=True)
        if m is None:
            todo.append(shard)
            if why != "not built":
                log.warning("shard %s will be rebuilt: %s", shard.name, why)
    if todo and len(todo) < len(shards):
        log.info("resuming: %d of %d shards are complete and kept", len(shards) - len(todo), len(shards))
    return todo


def default_workers() -> int:
    """Render processes when none are asked for: one per core this process may use."""
    from ..repro import usable_cores

    return usable_cores()


def _run_shards(config: DatasetConfig, root: Path, todo: list[Shard], workers: int | None, progress: bool) -> None:
    from tqdm.auto import tqdm

    if not todo:
        return
    workers = min(workers or default_workers(), len(todo))
    tasks = [(config, root, s) for s in todo]
    with tqdm(total=sum(len(s) for s in todo), unit="img", desc=f"data {config.name}", disable=not progress) as bar:
        if workers == 1:
            for task in tasks:
                bar.update(_build_shard_task(task))
            return
        import multiprocessing as mp

        with mp.get_context().Pool(workers, initializer=_ignore_sigint) as pool:
            for n in pool.imap_unordered(_build_shard_task, tasks):
                bar.update(n)


def _ignore_sigint() -> None:
    """Ctrl-C stops the parent, which terminates the pool; workers printing their own tracebacks helps nobody."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _remove_strays(root: Path, config: DatasetConfig, shards: list[Shard]) -> None:
    """Delete images, shard manifests and temp files of an earlier build that this one does not list.

    ImageFolder loads every image in a split folder, so a leftover from a bigger
    earlier build would otherwise leak into this one.
    """
    wanted_shards = {s.name for s in shards}
    for p in (root / SHARD_DIR).iterdir():
        if p.name not in wanted_shards:
            p.unlink()
    for split in SPLITS:
        folder = root / split
        if not folder.exists():
            continue
        wanted = {METADATA}
        for shard in (s for s in shards if s.split == split):
            m, _ = read_shard(root, config, shard, rehash=False)
            wanted.update(m["files"] if m else ())
        for p in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and rel not in wanted:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def _split_rows(root: Path, config: DatasetConfig, shards: list[Shard], split: str) -> Iterator[dict]:
    """The rows of ``split``, shard by shard: one shard's rows in memory at a time."""
    for shard in (s for s in shards if s.split == split):
        m, why = read_shard(root, config, shard, rehash=False)
        if m is None:
            raise RuntimeError(f"shard {shard.name} is incomplete after building it: {why}")
        yield from m["rows"]


def _write_metadata_and_manifest(
    root: Path, config: DatasetConfig, shards: list[Shard], shard_size: int, wall_s: float, progress: bool = True
) -> dict:
    """Each split's ``metadata.jsonl``, written streaming, then the manifest that vouches for them.

    Why streaming: at gpu size a split's rows are ~1.6 GB of JSON; holding the rows, their lines, the
    joined text and its bytes at once took ~15 GB. Rows are read shard by shard and written (and
    hashed) line by line; only retrieval mining needs every caption of the split at once, and it
    gets just captions, facts and scenes, not the rows with their negatives.
    """
    splits: dict[str, dict] = {}
    for split in SPLITS:
        retrieval = bool(config.num_negatives and config.retrieval_candidates and config.size(split) > 1)
        mined = _mine_split(_split_rows(root, config, shards, split), config, progress) if retrieval else None
        digest, size, n = hashlib.sha256(), 0, 0
        path = root / split / METADATA
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            for row in _split_rows(root, config, shards, split):
                if mined is not None:
                    row.update(_retrieval_fields(mined, n))
                line = (_dumps(row) + "\n").encode("utf-8")
                f.write(line)
                digest.update(line)
                size, n = size + len(line), n + 1
        os.replace(tmp, path)
        shard_hashes = {s.name: _sha256((root / SHARD_DIR / s.name).read_bytes()) for s in shards if s.split == split}
        splits[split] = {"n": n, "metadata_bytes": size, "metadata_sha256": digest.hexdigest(), "shards": shard_hashes}
    manifest = {
        "format": FORMAT_VERSION,
        "key": config.key(),
        "config": config.to_dict(),
        "shard_size": shard_size,
        "splits": splits,
        # how it was made; the only part that differs between two builds of one config
        "provenance": {
            "commit": git_commit(),
            "host": _host(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_time_s": round(wall_s, 3),
            "versions": package_versions(),
        },
    }
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def add_retrieval_negatives(rows: list[dict], config: DatasetConfig, progress: bool = True) -> None:
    """Link each row to its nearest captions *of the same split* that are false of its image.

    Retrieval needs every caption of the split at once, so it runs after the shards,
    when the metadata is assembled (MMGeoLM §2.2 keeps the top-100 neighbours by a
    dense retriever; we use the profile's sentence encoder). Candidates that are in
    fact true of the image are rejected and counted per row.
    """
    mined = _mine_split(rows, config, progress)
    for i, row in enumerate(rows):
        row.update(_retrieval_fields(mined, i))


def _mine_split(rows: Iterable[dict], config: DatasetConfig, progress: bool) -> dict[str, Any]:
    """Retrieval negatives of every row of a split, from its captions, facts and scenes alone."""
    from ..diagrams.scene import Fact, Scene
    from ..negatives.retrieval import load_sentence_encoder, mine_retrieval_negatives

    ids, captions, facts, scenes = [], [], [], []
    for r in rows:
        ids.append(r["id"])
        captions.append(r["caption"])
        facts.append([Fact.from_dict(f) for f in r["caption_facts"]])
        scenes.append(Scene.from_dict(decode_row(r)["scene"]))
    mined = mine_retrieval_negatives(
        captions,
        facts,
        scenes,
        load_sentence_encoder(config.sentence_encoder),
        num_candidates=min(config.retrieval_candidates, len(captions) - 1),
        num_negatives=config.num_negatives,
        show_progress=progress,
    )
    return {"ids": ids, "captions": captions, "mined": mined, "counts": mined.counts()}


def _retrieval_fields(m: dict[str, Any], i: int) -> dict[str, Any]:
    """Row ``i``'s ``retrieval_negatives`` and ``retrieval_counts``."""
    mined, ids, captions = m["mined"], m["ids"], m["captions"]
    return {
        "retrieval_negatives": [
            {"id": ids[j], "text": captions[j], "similarity": round(float(sim), 6)}
            for j, sim in zip(mined.negatives[i], mined.similarities[i])
            if j >= 0
        ],
        "retrieval_counts": [
            {"reason": status, "count": int(c[i])} for status, c in sorted(m["counts"].items()) if c[i]
        ],
    }  # encoded as encode_row stores COUNT_FIELDS


def _host() -> str:
    """The CPU that built the data (building never touches a GPU, so torch is not imported)."""
    from ..repro import cpu_model, usable_cores

    return f"{cpu_model()} ({platform.machine()} {platform.system()}), {usable_cores()} cores"


# ----------------------------------------------------------------------------- reading


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
    from PIL import Image

    with Image.open(image_path(root, row)) as im:
        return im.convert("RGB")


def file_hashes(root: Path | str, skip: Sequence[str] = (MANIFEST,)) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path → hash): compare two builds with ``==``."""
    root = Path(root)
    return {
        str(p.relative_to(root)): _file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip
    }
