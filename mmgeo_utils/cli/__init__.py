"""The ``mmgeo`` command line: thin callers of the helper package.

    mmgeo data build   --profile cpu [--out DIR] [--seed S]
    mmgeo bench diagrams [--profile P]
    mmgeo bench negatives [--profile P] [--retrieval-n N]
    mmgeo train-clip   --profile cpu --loss mmclip --negatives image,rule,retrieval [--resume]
    mmgeo eval-clip    --checkpoint runs/cpu/<run> [--split test]
    mmgeo experiment clip-vs-mmclip --profile cpu [--seeds 0 1 2] [--extend]
    mmgeo experiment validate runs/cpu/<run> ...   # validation scores: how the recipe is chosen
    mmgeo experiment gap-noise --clip runs/cpu/<clip runs> --mmclip runs/cpu/<mmclip runs>  # how noisy a gap is
    mmgeo bench train  [--profile P]      # per-image step time of CLIP vs MMCLIP, data wait share
    mmgeo bench train --speedups [--profile P] [--rounds R]   # bf16, channels_last, compile, trim, narrow text
    mmgeo course       [--profile P]      # run the notebooks in order (the main job)
    mmgeo reproduce    [--profile P] [--only STEP ...]   # the lessons, then every study at 3 seeds
    mmgeo train-lmm    --vision RUN|random|none --stage lm|align|sft|all [--lora-r R|--full] [--seed S] [--resume]
    mmgeo train-lmm    --vision RUN --local raw|compressed|selected|slime|slime-joint   # lesson 07, SliME
    mmgeo eval-lmm     --vision RUN|random|none [--seed S] [--limit N]   # exact match per question kind
    mmgeo experiment lmm-comparison --profile cpu [--seeds 0 1 2]       # blind, random, CLIP, MMCLIP
    mmgeo bench lmm    [--profile P]      # samples/s and tokens/s per stage, feature cache, peak memory
    mmgeo train-gem    --vision RUN --objective joint|embed|generate [--in-batch]   # lesson 07, MM-GEM
    mmgeo experiment gem-comparison --profile cpu [--seeds 0 1 2]       # joint vs embed vs generate
    mmgeo experiment slime-comparison --profile cpu [--seeds 0 1 2]     # SliME: global vs local tokens
    mmgeo experiment ablate --study negatives|k|batching|marks|robustness|ce_clip [--seeds 0 1 2] [--lmm]  # lesson 08

Training runs on several GPUs with torchrun (one process per GPU, gloo on CPU):

    torchrun --nproc_per_node 4 -m mmgeo_utils train-clip --profile gpu --loss mmclip

Every command takes ``--profile``; without it ``$MMGEO_PROFILE`` or the default
(``gpu`` with CUDA, else ``cpu``) is used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..gpu import UnusableGPUError
from ..profiles import get_profile
from ..repro import check_device
from .args import NON_NEGATIVE, POSITIVE, _add_profile
from .bench import _add_bench_parsers
from .clip import _add_clip_parsers, _add_experiment_parsers
from .lmm import _add_lmm_parsers


def cmd_data_build(args: argparse.Namespace) -> int:
    from ..data import DatasetConfig, build_dataset  # local: keeps `mmgeo --help` fast

    profile = get_profile(args.profile)
    config = DatasetConfig.from_profile(profile, seed=args.seed, numeric_marks=not args.letters_only)
    out = build_dataset(
        config,
        out_dir=args.out,
        workers=args.workers,
        progress=not args.quiet,
        verify=args.verify,
        overwrite=args.overwrite,
    )
    print(out)
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from ..course import run_course  # local: keeps `mmgeo --help` fast

    return run_course(get_profile(args.profile), only=args.only, out_dir=args.out, force=args.force)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..reproduce import reproduce, summary_table  # local: keeps `mmgeo --help` fast

    done = reproduce(get_profile(args.profile), only=args.only, seeds=args.seeds)
    print(summary_table(done))
    return 0 if all(d["status"] == "ok" for d in done) else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mmgeo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)

    _add_data_parser(sub)
    bench = _add_bench_parsers(sub)
    _add_clip_parsers(sub)
    exp = _add_experiment_parsers(sub)
    _add_lmm_parsers(sub, bench, exp)
    _add_course_parser(sub)
    p = sub.add_parser(
        "reproduce", help="every figure and table of the course: the lessons, then every study at 3 seeds"
    )
    _add_profile(p)
    p.add_argument(
        "--only", nargs="+", default=None, help="steps to run (default: all; names in mmgeo_utils/reproduce.py)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.set_defaults(func=cmd_reproduce)
    return ap


def _add_data_parser(sub) -> None:
    """``mmgeo data build``."""
    data = sub.add_parser("data", help="generate datasets").add_subparsers(dest="action", required=True)
    p = data.add_parser("build", help="render scenes to PNG + metadata.jsonl (cached, resumable)")
    _add_profile(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: data/<profile>-<config hash>)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.add_argument("--workers", type=POSITIVE, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--verify",
        choices=("quick", "full"),
        default="quick",
        help="check of an existing build: quick (sizes and metadata hashes) or full (re-hash every image)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace another config's (another seed's) dataset in --out instead of refusing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--letters-only", action="store_true", help="draw no length labels or angle values (lesson 08's marks study)"
    )
    p.set_defaults(func=cmd_data_build)


def _add_course_parser(sub) -> None:
    """``mmgeo course``."""
    p = sub.add_parser("course", help="run the notebooks in order, saving executed copies and figures")
    _add_profile(p)
    p.add_argument("--only", nargs="*", default=None, help="notebook numbers to run, e.g. 00 01")
    p.add_argument(
        "--out", type=Path, default=None, help="where executed notebooks go (default: results/<profile>/notebooks)"
    )
    p.add_argument("--force", action="store_true", help="re-run notebooks that already ran from the same source")
    p.set_defaults(func=cmd_course)


# ----------------------------------------------------------------------------- lesson 06: the LMM


def main(argv: list[str] | None = None) -> int:
    import logging  # local: keeps `mmgeo --help` fast

    # cache hits, resumed shards and rebuilt caches are reported through logging
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # open_clip narrates every model build at INFO on the root logger
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or "open_clip" not in r.pathname)
    args = build_parser().parse_args(argv)
    from ..clip import TrainingDiverged  # local: keeps `mmgeo --help` fast

    try:
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        return args.func(args)
    # user errors (CheckpointError is a ValueError), a GPU torch cannot use, and faults of the machine or the
    # data: one line, no traceback
    except (ValueError, OSError, TrainingDiverged, UnusableGPUError) as e:
        print(f"mmgeo: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # training says what it saved; a data build keeps every finished shard
        print(f"mmgeo: {_one_line(e) or 'interrupted; rerun the same command to resume'}", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """The error's message on one line; a DataLoader worker's re-raised error is its last line, the original."""
    text = str(e)
    if "Original Traceback" in text:  # torch.utils.data wraps a worker's exception with the worker's traceback
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
