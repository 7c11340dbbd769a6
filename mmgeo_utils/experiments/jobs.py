"""Training many runs at once on one machine: how many side by side, in which order (``mmgeo experiment``)."""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

from .. import repro
from ..clip import (
    TrainConfig,
    TrainResult,
    train,
)
from ..repro import detect_device

T = TypeVar("T")


def in_processes(calls: Sequence[Callable[[], T]], jobs: int, *, first: Sequence[int] | None = None) -> list[T]:
    """``[call() for call in calls]``, ``jobs`` at a time in spawned processes; results in the calls' order.

    Each call is a picklable callable without arguments (a :func:`functools.partial` of a module-level
    function). ``first`` is the order they start in (default: as given). With one job, or one call, they
    run here, one after another. Spawn, not fork: a forked copy of a process that already ran torch
    threads can deadlock.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(calls) <= 1:
        return [call() for call in calls]
    order = range(len(calls)) if first is None else first
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {i: pool.submit(calls[i]) for i in order}
        return [futures[i].result() for i in range(len(calls))]


def default_jobs(configs: Sequence[TrainConfig], device: str) -> int:
    """How many runs to train at once: on a CPU, as many as its cores hold at the runs' thread
    count (a run with no pinned count uses them all); on a GPU one."""

    if device != "cpu" or not configs:
        return 1
    cores = repro.usable_cores()
    threads = max(c.resolved().threads or cores for c in configs)
    return max(1, min(len(configs), cores // threads))


def train_all(
    runs: Sequence[tuple[TrainConfig, Path | None]],
    *,
    jobs: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> list[TrainResult]:
    """Train (or reuse, or resume) every ``(config, run folder)``; ``jobs`` of them at once.

    Why processes: a run pins its own CPU thread count, and the small cpu-profile model gains little
    from a second intra-op thread, so two one-thread runs side by side finish about twice as fast on
    2 cores as one after another. The weights are the same either way: a run depends on its config
    (thread count included), not on what ran beside it. Parallel runs show no progress bars; each
    writes its own ``train_log.csv``.
    """

    device = device or detect_device()
    jobs = default_jobs([c for c, _ in runs], device) if jobs is None else jobs
    alone = jobs == 1 or len(runs) == 1
    calls = [
        functools.partial(train, cfg, out_dir=out, resume=True, progress=progress and alone, device=device)
        for cfg, out in runs
    ]
    # longest first, so the last run to start is a short one and no core idles while a long one
    # finishes (lesson 05 on 2 cores: both MMCLIP runs side by side, then both CLIP runs)
    return in_processes(calls, jobs, first=sorted(range(len(runs)), key=lambda i: -relative_cost(runs[i][0])))


def relative_cost(config: TrainConfig) -> int:
    """A run's work in tower inputs: steps x positives x (1 image + its image negatives + 1 caption
    + its text negatives). Only its order matters (which run to start first)."""
    cfg = config.resolved()
    neg = cfg.negative_config()
    return cfg.steps * cfg.positives_per_step * (2 + neg.image_slots + len(neg.text_slots))
