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

The per-sample work is one pure function, :func:`~mmgeo_utils.data.samples.make_sample`, so lesson 02 adds
hard negatives beside each positive in exactly one place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ..diagrams.scene import Fact, Scene
from ..negatives import load_sentence_encoder, mine_retrieval_negatives
from ..repro import atomic_write_text, cpu_model, git_commit, package_versions, usable_cores
from .config import FORMAT_VERSION, MANIFEST, METADATA, SHARD_DIR, SPLITS, DatasetConfig, default_dir
from .samples import decode_row
from .shards import SHARD_SIZE, Shard, _build_shard_task, _dumps, _sha256, check_dataset, plan_shards, read_shard

log = logging.getLogger(__name__)


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
    return usable_cores()


def _run_shards(config: DatasetConfig, root: Path, todo: list[Shard], workers: int | None, progress: bool) -> None:
    if not todo:
        return
    workers = min(workers or default_workers(), len(todo))
    tasks = [(config, root, s) for s in todo]
    with tqdm(total=sum(len(s) for s in todo), unit="img", desc=f"data {config.name}", disable=not progress) as bar:
        if workers == 1:
            for task in tasks:
                bar.update(_build_shard_task(task))
            return
        with mp.get_context().Pool(workers, initializer=_ignore_sigint) as pool:
            for n in pool.imap_unordered(_build_shard_task, tasks):
                bar.update(n)


def _ignore_sigint() -> None:
    """Ctrl-C stops the parent, which terminates the pool; workers printing their own tracebacks helps nobody."""
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
    return f"{cpu_model()} ({platform.machine()} {platform.system()}), {usable_cores()} cores"
