"""``mmgeo bench diagrams | negatives | train | course``: the speed benchmarks' commands (speed goals live here, not in tests)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..profiles import get_profile
from .args import IMAGE_SIZE, POSITIVE, _add_profile, _int_at_least


def cmd_bench_diagrams(args: argparse.Namespace) -> int:
    from ..experiments.bench import bench_diagrams  # local: keeps `mmgeo --help` fast

    result = bench_diagrams(get_profile(args.profile), n=args.n, workers=args.workers, image_size=args.image_size)
    print(json.dumps(result))  # the last line is machine-readable JSON
    return 0


def cmd_bench_negatives(args: argparse.Namespace) -> int:
    from ..experiments.bench import bench_negatives  # local: keeps `mmgeo --help` fast

    result = bench_negatives(get_profile(args.profile), n=args.n, retrieval_n=args.retrieval_n)
    print(json.dumps({k: v for k, v in result.items() if k != "retrieval"}))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from ..experiments.bench_speedups import bench_train_speedups, format_speedups  # local: keeps `mmgeo --help` fast
    from ..experiments.bench_train import bench_train

    if args.speedups:
        result = bench_train_speedups(
            get_profile(args.profile),
            steps=args.steps,
            rounds=args.rounds,
            device=args.device,
            data_root=args.data,
            threads=args.threads,
        )
        print(format_speedups(result))
        print(json.dumps(result))  # the last line is machine-readable JSON
        return 0
    for flag, value in (("--rounds", args.rounds), ("--threads", args.threads)):
        if value is not None:
            raise ValueError(f"{flag} {value} belongs to --speedups (plain `bench train` times each model once)")
    result = bench_train(get_profile(args.profile), steps=args.steps, device=args.device, data_root=args.data)
    print(json.dumps(result))  # the last line is machine-readable JSON
    return 0


def cmd_bench_course(args: argparse.Namespace) -> int:
    from ..experiments.course_bench import bench_course, format_estimate  # local: keeps `mmgeo --help` fast
    from ..repro import write_results

    result = bench_course(get_profile(args.profile), device=args.device, cores=args.cores, workers=args.workers)
    if args.save:
        result["results_file"] = str(write_results("bench_course", result, profile=result["profile"]))
    print(format_estimate(result))
    print(json.dumps(result))  # the last line is machine-readable JSON
    return 0


def _add_bench_parsers(sub) -> argparse._SubParsersAction:
    """``mmgeo bench diagrams | negatives | train | course`` (lesson 06 adds ``lmm``)."""
    bench = sub.add_parser("bench", help="speed benchmarks").add_subparsers(dest="action", required=True)
    p = bench.add_parser("diagrams", help="diagrams rendered per second, per core and in total")
    _add_profile(p)
    p.add_argument(
        "--n",
        type=POSITIVE,
        default=None,
        help="diagrams per core (default: a few seconds' worth; another n writes its own results file)",
    )
    p.add_argument("--workers", type=POSITIVE, default=None)
    p.add_argument("--image-size", type=IMAGE_SIZE, default=None, help="override the profile's image size")
    p.set_defaults(func=cmd_bench_diagrams)

    p = bench.add_parser("negatives", help="image/rule negatives per second and retrieval top-k time")
    _add_profile(p)
    p.add_argument("--n", type=POSITIVE, default=None, help="scenes to make negatives for (default 50)")
    p.add_argument(
        "--retrieval-n",
        type=_int_at_least(2, "an integer ≥ 2"),
        default=100_000,
        help="captions in the top-k timing (default 100k)",
    )
    p.set_defaults(func=cmd_bench_negatives)

    p = bench.add_parser(
        "course",
        help="dry run: each lesson's time and the peak memory of `make course` on a "
        "profile, estimated from a few timed scenes, steps and evaluation batches here",
    )
    _add_profile(p)
    p.add_argument("--device", default=None, help="cpu or cuda (default: what is present)")
    p.add_argument("--cores", type=int, default=None, help="cores for the data build (default: this machine's)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: 8 on CUDA, 1 on CPU)")
    p.add_argument("--save", action="store_true", help="also write results/<profile>/bench_course.json")
    p.set_defaults(func=cmd_bench_course)
    p = bench.add_parser("train", help="per-image step time of CLIP and MMCLIP, and the share spent waiting for data")
    _add_profile(p)
    p.add_argument(
        "--steps",
        type=POSITIVE,
        default=None,
        help="timed steps per model (default: 20, smoke 3; with --speedups per round: 3, smoke 1)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a dataset of the profile's image size, e.g. a smaller build (default: the profile's, built if needed)",
    )
    p.add_argument(
        "--speedups",
        action="store_true",
        help="issue 23's speed levers side by side: fp32 baseline, +channels_last, +bf16 autocast, +trim padded "
        "text tokens, +torch.compile, a narrow text tower, and the best combination; a table of ms/step, "
        "images/s and speed-up for CLIP and MMCLIP, written to results/<profile>/bench_train_speedups.json",
    )
    p.add_argument(
        "--rounds",
        type=POSITIVE,
        default=None,
        help="with --speedups: rounds of interleaved timing, for the spread (default: 5, smoke 2)",
    )
    p.add_argument(
        "--threads",
        type=POSITIVE,
        default=None,
        help="with --speedups: torch CPU threads (default: the profile's training threads, as training uses)",
    )
    p.set_defaults(func=cmd_bench_train)

    return bench
