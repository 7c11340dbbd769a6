"""The ``mmgeo`` command line: thin callers of the helper package.

    mmgeo data build   --profile cpu [--out DIR] [--seed S]
    mmgeo bench diagrams [--profile P]
    mmgeo bench negatives [--profile P] [--retrieval-n N]
    mmgeo course       [--profile P]      # run the notebooks in order (the main job)

Every command takes ``--profile``; without it ``$MMGEO_PROFILE`` or the default
(``gpu`` with CUDA, else ``cpu``) is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .profiles import PROFILES, get_profile


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None,
                   help=f"one of {', '.join(PROFILES)} (default: $MMGEO_PROFILE, else gpu with CUDA, else cpu)")


def cmd_data_build(args: argparse.Namespace) -> int:
    from .dataset import DatasetConfig, build_dataset

    profile = get_profile(args.profile)
    config = DatasetConfig.from_profile(profile, seed=args.seed)
    out = build_dataset(config, out_dir=args.out, workers=args.workers, progress=not args.quiet)
    print(out)
    return 0


def cmd_bench_diagrams(args: argparse.Namespace) -> int:
    from .bench import bench_diagrams

    result = bench_diagrams(get_profile(args.profile), n=args.n, workers=args.workers,
                            image_size=args.image_size)
    print(json.dumps(result))  # the last line is machine-readable JSON
    return 0


def cmd_bench_negatives(args: argparse.Namespace) -> int:
    from .bench import bench_negatives

    result = bench_negatives(get_profile(args.profile), n=args.n, retrieval_n=args.retrieval_n)
    print(json.dumps({k: v for k, v in result.items() if k != "retrieval"}))
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from .course import run_course

    return run_course(get_profile(args.profile), only=args.only, out_dir=args.out, force=args.force)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mmgeo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate datasets").add_subparsers(dest="action", required=True)
    p = data.add_parser("build", help="render scenes to PNG + metadata.jsonl (cached, resumable)")
    _add_profile(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: data/<profile>-<config hash>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_build)

    bench = sub.add_parser("bench", help="speed benchmarks").add_subparsers(dest="action", required=True)
    p = bench.add_parser("diagrams", help="diagrams rendered per second, per core and in total")
    _add_profile(p)
    p.add_argument("--n", type=int, default=None, help="diagrams per core (default: a few seconds' worth)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None, help="override the profile's image size")
    p.set_defaults(func=cmd_bench_diagrams)

    p = bench.add_parser("negatives", help="image/rule negatives per second and retrieval top-k time")
    _add_profile(p)
    p.add_argument("--n", type=int, default=None, help="scenes to make negatives for (default 50)")
    p.add_argument("--retrieval-n", type=int, default=100_000, help="captions in the top-k timing (default 100k)")
    p.set_defaults(func=cmd_bench_negatives)

    p = sub.add_parser("course", help="run the notebooks in order, saving executed copies and figures")
    _add_profile(p)
    p.add_argument("--only", nargs="*", default=None, help="notebook numbers to run, e.g. 00 01")
    p.add_argument("--out", type=Path, default=None, help="where executed notebooks go (default: results/<profile>/notebooks)")
    p.add_argument("--force", action="store_true", help="re-run notebooks that already ran from the same source")
    p.set_defaults(func=cmd_course)
    return ap


def main(argv: list[str] | None = None) -> int:
    import logging

    # cache hits, resumed shards and rebuilt caches are reported through logging
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # user errors: say what is wrong, no traceback
        print(f"mmgeo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
