"""``mmgeo bench diagrams``: how many diagrams per second this machine makes.

Dataset size in the course is bounded by rendering speed, so the number is measured,
not assumed. One process measures each stage of a sample (scene generation with
label layout, rendering, PNG encoding); then every core runs the same loop at once
to give the total a dataset build can reach. Speed goals live here, not in tests.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

from ..data import DatasetConfig, build_dataset, default_workers, encode_png, make_scene, read_manifest, sample_seeds
from ..diagrams.captions import describe
from ..diagrams.families import sample_scene
from ..diagrams.render import render
from ..diagrams.style import sample_style
from ..negatives.image import make_image_negatives
from ..negatives.text import make_text_negatives
from ..profiles import Profile, get_profile
from ..repro import describe_device, write_results
from .bench_retrieval import bench_retrieval

BENCH_IMAGE_SIZE = 128  # the throughput goal (≥ 200 diagrams/s per core) is stated at 128 px
DEFAULT_N = 300  # diagrams per core: a few seconds at the goal's speed
WARMUP = 50  # untimed diagrams first: the figure and most glyph outlines are built once per process

_barrier = None  # set in pool workers so that all cores start timing together


def _time_loop(config, n: int, offset: int) -> dict[str, float]:
    """Generate, render and encode ``n`` diagrams, timing each stage (seconds, perf_counter)."""

    def one(i: int, stages: dict[str, float] | None) -> None:
        seeds = sample_seeds(config, "train", i)
        t0 = time.perf_counter()
        scene = make_scene(config, seeds)
        t1 = time.perf_counter()
        image = render(scene, sample_style(config.image_size, seeds.style)).image
        t2 = time.perf_counter()
        encode_png(image)
        t3 = time.perf_counter()
        if stages is not None:
            stages["generate_s"] += t1 - t0
            stages["render_s"] += t2 - t1
            stages["png_s"] += t3 - t2

    for i in range(WARMUP):
        one(offset + n + i, None)  # seeds outside the timed range
    if _barrier is not None:
        _barrier.wait()
    stages = {"generate_s": 0.0, "render_s": 0.0, "png_s": 0.0}
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on one machine
    for i in range(n):
        one(offset + i, stages)
    end = time.perf_counter()
    return {"n": n, "start": start, "end": end, **stages}


def _init_worker(barrier) -> None:
    global _barrier
    _barrier = barrier


def _pool_task(args: tuple) -> dict[str, float]:
    return _time_loop(*args)


def _positive(**sizes: int | None) -> None:
    """A size left out takes its default; one given must be a positive integer (0 is not "the default")."""
    for name, v in sizes.items():
        if v is not None and not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r} (leave it out for the default)")


def _training_data(profile: Profile, data_root: Path | str | None) -> tuple[Path, dict[str, Any]]:
    """The dataset a training benchmark reads (``data_root``, else the profile's build) and its config; it must
    hold the profile's image size."""
    root = (
        Path(data_root) if data_root is not None else build_dataset(DatasetConfig.from_profile(profile), progress=False)
    )
    data = read_manifest(root)["config"]
    if data["image_size"] != profile.image_size:
        raise ValueError(
            f"{root} holds {data['image_size']} px diagrams; the {profile.name} profile trains on "
            f"{profile.image_size} px"
        )
    return root, data


def _rates(r: dict[str, float]) -> dict[str, float]:
    n = r["n"]
    return {
        "diagrams_per_s": round(n / (r["end"] - r["start"]), 1),
        "render_only_per_s": round(n / r["render_s"], 1),
        "ms_per_diagram": {k[:-2]: round(1e3 * r[k] / n, 3) for k in ("generate_s", "render_s", "png_s")},
    }


def bench_diagrams(
    profile: Profile | str | None = None,
    n: int | None = None,
    workers: int | None = None,
    image_size: int | None = None,
) -> dict[str, Any]:
    """Diagrams per second, per core and on all cores, at 128 px unless ``image_size`` is given.

    A "diagram" is the dataset's per-image work: sample a scene and place its labels,
    render it, encode the PNG (captions excluded). ``render_only_per_s_per_core``
    isolates the renderer.
    """

    profile = get_profile(profile)
    _positive(n=n, workers=workers)
    if image_size is not None and not (isinstance(image_size, int) and image_size >= 16):
        raise ValueError(f"image_size must be an integer ≥ 16 (pixels), got {image_size!r}")
    size = image_size or BENCH_IMAGE_SIZE
    n_given, workers_given = n, workers
    n = n or DEFAULT_N
    workers = workers or default_workers()
    config = dataclasses.replace(DatasetConfig.from_profile(profile), image_size=size)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    single = _time_loop(config, n, offset=0)
    ctx = mp.get_context()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(ctx.Barrier(workers),)) as pool:
        runs = pool.map(_pool_task, [(config, n, (k + 1) * (n + WARMUP)) for k in range(workers)], chunksize=1)
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    total = sum(r["n"] for r in runs) / wall

    s = _rates(single)
    result = {
        "benchmark": "diagrams",
        "profile": profile.name,
        "image_size": size,
        "image_size_note": (
            f"{size} px given with --image-size"
            if image_size
            else f"{size} px, the size the speed goal is stated at (the {profile.name} profile "
            f"builds datasets at {profile.image_size} px; use --image-size to change)"
        ),
        "diagrams_per_s_per_core": s["diagrams_per_s"],
        "diagrams_per_s_total": round(total, 1),
        "render_only_per_s_per_core": s["render_only_per_s"],
        "workers": workers,
        "n_per_core": n,
        "details": {
            "definition": (
                f"diagram = sample scene + place labels + render + PNG encode (no captions); "
                f"timed after {WARMUP} untimed warm-up diagrams per process"
            ),
            "single_process": s,
            "parallel_per_core": [_rates(r) for r in runs],
            "parallel_diagrams_per_s_per_core": round(total / workers, 1),
            "load_average_before": load_before,
            "device": describe_device(),
        },
    }
    # the default measurement is the one the README cites; another n or worker count is another file
    name = (
        f"bench_diagrams_{size}px"
        + (f"_n{n}" if n_given not in (None, DEFAULT_N) else "")
        + (f"_w{workers}" if workers_given is not None else "")
    )
    result["results_file"] = str(write_results(name, result, profile=profile))
    return result


def bench_negatives(
    profile: Profile | str | None = None, n: int | None = None, retrieval_n: int = 100_000, k: int | None = None
) -> dict[str, Any]:
    """Hard-negative construction speed: image and rule negatives per sample, and retrieval top-k.

    ``n`` scenes get the profile's K image negatives (perturb, check, render) and K rule
    negatives each; retrieval times the chunked top-k over ``retrieval_n`` caption
    embeddings (100k by default, the size MMGeoLM mines from) plus the real sentence
    encoder's captions per second (see :func:`mmgeo_utils.experiments.bench_retrieval.bench_retrieval`).
    """

    profile = get_profile(profile)
    _positive(n=n, k=k)
    if not (isinstance(retrieval_n, int) and retrieval_n >= 2):
        raise ValueError(f"retrieval_n must be an integer ≥ 2 (captions to search), got {retrieval_n!r}")
    n = n or 50
    k = k or profile.num_negatives
    config = DatasetConfig.from_profile(profile)
    scenes = []
    for i in range(n):
        seeds = sample_seeds(config, "train", i)
        scenes.append((sample_scene(seeds.scene), sample_style(profile.image_size, seeds.style), seeds))
    image_s = text_s = 0.0
    made_image = made_text = 0
    for scene, style, seeds in scenes:
        caption = describe(scene, seeds.caption)
        t0 = time.perf_counter()
        negs, _ = make_image_negatives(scene, k, seeds.image_negatives, style=style, caption_seed=seeds.caption)
        t1 = time.perf_counter()
        tnegs, _ = make_text_negatives(scene, caption, k, seeds.text_negatives, caption_seed=seeds.caption)
        t2 = time.perf_counter()
        image_s, text_s = image_s + (t1 - t0), text_s + (t2 - t1)
        made_image, made_text = made_image + len(negs), made_text + len(tnegs)
    retrieval = bench_retrieval(
        n=int(retrieval_n), k=min(100, int(retrieval_n) - 1), encode_n=min(2000, int(retrieval_n))
    )
    result = {
        "benchmark": "negatives",
        "profile": profile.name,
        "k": k,
        "samples": n,
        "image_negatives_per_s": round(made_image / image_s, 1),
        "image_negatives_per_sample": round(made_image / n, 2),
        "image_ms_per_sample": round(1000 * image_s / n, 2),
        "rule_negatives_per_s": round(made_text / text_s, 1),
        "rule_negatives_per_sample": round(made_text / n, 2),
        "retrieval_topk_seconds": retrieval["topk_seconds"],
        "retrieval_n": retrieval["n"],
        "retrieval_peak_bytes_estimate": retrieval["peak_bytes_estimate"],
        "encode_captions_per_s": retrieval.get("encode_captions_per_s"),
        "retrieval": retrieval,
    }
    result["results_file"] = str(write_results(f"bench_negatives_n{retrieval['n']}", result, profile=profile))
    return result
