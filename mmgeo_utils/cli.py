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
    mmgeo train-lmm    --vision RUN|random|none --stage lm|align|sft|all [--lora-r R|--full] [--seed S] [--resume]
    mmgeo eval-lmm     --vision RUN|random|none [--seed S] [--limit N]   # exact match per question kind
    mmgeo experiment lmm-comparison --profile cpu [--seeds 0 1 2]       # blind, random, CLIP, MMCLIP
    mmgeo bench lmm    [--profile P]      # samples/s and tokens/s per stage, feature cache, peak memory

Training runs on several GPUs with torchrun (one process per GPU, gloo on CPU):

    torchrun --nproc_per_node 4 -m mmgeo_utils train-clip --profile gpu --loss mmclip

Every command takes ``--profile``; without it ``$MMGEO_PROFILE`` or the default
(``gpu`` with CUDA, else ``cpu``) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .gpu import UnusableGPUError
from .profiles import ENV_VAR, PROFILES, get_profile


def _int_at_least(low: int, what: str):
    """An argparse type: an integer ≥ ``low``, else an error that argparse prefixes with the option's name."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = what
    return parse


NON_NEGATIVE = _int_at_least(0, "a non-negative integer")
POSITIVE = _int_at_least(1, "a positive integer (leave the option out for the default)")
IMAGE_SIZE = _int_at_least(16, "an image size of at least 16 pixels")


def POSITIVE_FLOAT(text: str) -> float:
    """A finite number > 0: ``--lr inf`` or ``--hard-weight nan`` would train a NaN model."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=None,
        help=f"one of {', '.join(PROFILES)} (default: $MMGEO_PROFILE, else gpu with CUDA, else cpu)",
    )


def cmd_data_build(args: argparse.Namespace) -> int:
    from .data import DatasetConfig, build_dataset

    profile = get_profile(args.profile)
    config = DatasetConfig.from_profile(profile, seed=args.seed)
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


def cmd_bench_diagrams(args: argparse.Namespace) -> int:
    from .experiments.bench import bench_diagrams

    result = bench_diagrams(get_profile(args.profile), n=args.n, workers=args.workers, image_size=args.image_size)
    print(json.dumps(result))  # the last line is machine-readable JSON
    return 0


def cmd_bench_negatives(args: argparse.Namespace) -> int:
    from .experiments.bench import bench_negatives

    result = bench_negatives(get_profile(args.profile), n=args.n, retrieval_n=args.retrieval_n)
    print(json.dumps({k: v for k, v in result.items() if k != "retrieval"}))
    return 0


def _train_config(args: argparse.Namespace):
    from .clip import TrainConfig

    negatives = tuple(n.strip() for n in args.negatives.split(",") if n.strip()) if args.negatives else ()
    return TrainConfig(
        profile=get_profile(args.profile).name,
        loss=args.loss,
        negatives=negatives,
        num_negatives=args.num_negatives,
        batching=args.batching,
        hard_weight=args.hard_weight,
        model=args.model,
        pretrained=args.pretrained,
        init=args.init,
        seed=args.seed,
        steps=args.steps,
        images_per_step=args.images_per_step,
        lr=args.lr,
        temperature=args.temperature,
        grad_accum=args.grad_accum,
        grad_checkpointing=args.grad_checkpointing,
        precision=args.precision,
        eval_every=args.eval_every,
        workers=args.workers,
        threads=args.threads,
    )


def cmd_train_clip(args: argparse.Namespace) -> int:
    from .clip import train

    result = train(
        _train_config(args),
        out_dir=args.out,
        resume=args.resume,
        progress=not args.quiet,
        device=args.device,
        data_root=args.data,
        overwrite=args.overwrite,
        verify=args.verify,
    )
    if result.summary:
        print(
            json.dumps(
                {
                    "run_dir": str(result.run_dir),
                    "steps": result.steps_done,
                    "images_per_s": result.summary.get("images_per_s"),
                    "data_wait_share": result.summary.get("data_wait_share"),
                }
            )
        )
    return 0


def cmd_eval_clip(args: argparse.Namespace) -> int:
    import dataclasses

    from .clip import MODEL_FILE, TrainConfig, load_config
    from .clip.evaluate import VARIANTS, tidy_table
    from .experiments.comparison import evaluate_checkpoint
    from .repro import atomic_write_text, detect_device

    ckpt = Path(args.checkpoint)
    # a run folder, or a file in one: the model and image size are the run's (its config.json)
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent if (ckpt.parent / "config.json").is_file() else None
    if run_dir is not None:
        cfg = load_config(run_dir)
        explicit = args.profile or os.environ.get(ENV_VAR) or None
        if explicit is not None and get_profile(explicit).name != cfg.profile:
            raise ValueError(
                f"{run_dir} was trained on profile {cfg.profile!r}, not {get_profile(explicit).name!r} "
                "(leave out --profile to use the run's)"
            )
        if args.model:
            cfg = dataclasses.replace(cfg, model=args.model)
        model_path = ckpt / MODEL_FILE if ckpt.is_dir() else ckpt
    else:  # a bare weights file: the profile's model and image size, unless --model
        cfg = TrainConfig(profile=get_profile(args.profile).name, model=args.model).resolved()
        model_path = ckpt
    if args.out is not None:  # before the benchmark, not after minutes of it
        _check_writable(args.out)
    result = evaluate_checkpoint(
        model_path, cfg, split=args.split, variants=VARIANTS, data_root=args.data, device=args.device or detect_device()
    )
    print(tidy_table(result).to_string(index=False))
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    return 0


def _check_writable(path: Path) -> None:
    """A clear error now if ``path`` cannot be written: its folder is made and a probe file written in it."""
    import tempfile

    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name, e.g. {path / 'eval.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise ValueError(f"--out {path} cannot be written ({e.strerror or e}); nothing was evaluated") from None


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments.comparison import comparison_table, run_comparison

    recipe = {k: v for k, v in (("loss", args.loss), ("hard_weight", args.hard_weight)) if v is not None} or None
    record = run_comparison(
        args.profile,
        seeds=args.seeds,
        recipe=recipe,
        progress=not args.quiet,
        device=args.device,
        jobs=args.jobs,
        extend=args.extend,
        **({"steps": args.steps} if args.steps else {}),
        **({"temperature": args.temperature} if args.temperature else {}),
    )
    print(comparison_table(record).to_string())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .experiments.comparison import validation_scores

    # the profile comes from the runs; one given explicitly must match them
    if not args.profile and os.environ.get(ENV_VAR):
        get_profile(None)  # a typo in $MMGEO_PROFILE is blamed on the variable, not on an argument
    explicit = args.profile or os.environ.get(ENV_VAR) or None
    record = validation_scores(
        args.runs, explicit, data_root=args.data, device=args.device, name=args.name, earlier=args.earlier
    )
    for run, r in record["runs"].items():
        print(
            f"{run:45s} i2t_fine {100 * r['i2t_fine']:5.1f}  t2i_fine {100 * r['t2i_fine']:5.1f}  "
            f"R@1 {100 * r['i2t_r1']:4.1f}/{100 * r['t2i_r1']:4.1f}  R@5 {100 * r['i2t_r5']:4.1f}/{100 * r['t2i_r5']:4.1f}"
        )
    for key, r in record["recipes"].items():
        verdict = r.get("verdict", {}).get(
            "why", "baseline" if r["loss"] == "clip" else "not judged (no single CLIP baseline)"
        )
        print(
            f"{key:40s} seeds {r['seeds']}  i2t_fine {100 * r['i2t_fine']['mean']:5.1f} ± {100 * r['i2t_fine']['std']:.1f}"
            f"  -> {verdict}"
        )
    print(f"chosen: {record['chosen'] or 'none meets both conditions'}")
    return 0


def cmd_gap_noise(args: argparse.Namespace) -> int:
    from .experiments.comparison import gap_noise

    r = gap_noise(args.clip, args.mmclip, split=args.split, data_root=args.data, device=args.device)
    print(
        f"{args.split}: i2t_fine gap {100 * r['gap']:+.1f} ± {100 * r['bootstrap_se']:.1f} (item-bootstrap SE, "
        f"{r['n_items']} diagrams, {r['seeds']} seed(s)); families balanced {100 * r['family_balanced_gap']:+.1f}"
    )
    for family, f in r["by_family"].items():
        print(f"  {family:28s} n={f['n']:4d}  gap {100 * f['gap']:+5.1f}")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from .experiments.bench import bench_train, bench_train_speedups, format_speedups

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
    from .experiments.course_bench import bench_course, format_estimate
    from .repro import write_results

    result = bench_course(get_profile(args.profile), device=args.device, cores=args.cores, workers=args.workers)
    if args.save:
        result["results_file"] = str(write_results("bench_course", result, profile=result["profile"]))
    print(format_estimate(result))
    print(json.dumps(result))  # the last line is machine-readable JSON
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from .course import run_course

    return run_course(get_profile(args.profile), only=args.only, out_dir=args.out, force=args.force)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mmgeo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)

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
    p.set_defaults(func=cmd_data_build)

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

    from .clip import LOSSES, PRECISIONS
    from .data.contrastive import BATCHING

    p = sub.add_parser("train-clip", help="train CLIP or MMCLIP with open_clip (torchrun for several GPUs)")
    _add_profile(p)
    p.add_argument("--loss", choices=LOSSES, default="mmclip")
    p.add_argument(
        "--negatives",
        default="image,rule,retrieval",
        help="comma-separated subset of image, rule, retrieval (ignored by --loss clip)",
    )
    p.add_argument(
        "--num-negatives", type=NON_NEGATIVE, default=None, help="K image and K retrieval negatives per sample"
    )
    p.add_argument(
        "--batching",
        choices=BATCHING,
        default="random",
        help="hard: batches of samples that are each other's retrieval neighbours",
    )
    p.add_argument(
        "--hard-weight",
        type=POSITIVE_FLOAT,
        default=1.0,
        help="mmclip losses: weight of the hard-negative term added to in-batch CLIP (default 1)",
    )
    p.add_argument("--model", default=None, help="open_clip model name or shipped config (default: the profile's)")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag or a local checkpoint file")
    p.add_argument("--init", default=None, help="start from an earlier run (folder or model.safetensors)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.add_argument("--steps", type=POSITIVE, default=None)
    p.add_argument("--images-per-step", type=POSITIVE, default=None, help="images encoded per step, negatives included")
    p.add_argument(
        "--lr",
        type=POSITIVE_FLOAT,
        default=None,
        help="peak learning rate (default: 5e-4 from scratch, 2e-5 from --pretrained weights)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="initial temperature, 1/logit scale (default: open_clip's 0.07; it is still learned)",
    )
    p.add_argument(
        "--grad-accum",
        type=POSITIVE,
        default=1,
        help="micro-batches per step: the same step in less GPU memory (in-batch negatives per micro-batch)",
    )
    p.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: less GPU memory (cards of 12 GB or less), slower",
    )
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--eval-every", type=POSITIVE, default=None)
    p.add_argument(
        "--workers", type=NON_NEGATIVE, default=None, help="DataLoader workers (0: load in the training process)"
    )
    p.add_argument(
        "--threads",
        type=POSITIVE,
        default=None,
        help="torch CPU threads (default: the profile's, 1 on cpu; a seed reproduces only at one count)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the profile's, built if needed)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<profile>/<run name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train into --out even though it holds another run or other files (run files are replaced)",
    )
    p.add_argument(
        "--verify",
        choices=("quick", "full"),
        default="quick",
        help="check of the data before training: quick (sizes and metadata hashes) or full (re-hash every image)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_clip)

    p = sub.add_parser("eval-clip", help="fine-grained benchmark, retrieval, probes and robustness of a checkpoint")
    _add_profile(p)
    p.add_argument("--checkpoint", required=True, help="a run folder or a .safetensors file")
    p.add_argument("--model", default=None, help="model name (default: from the run's config.json)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the profile's)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=None, help="write the full result as JSON here")
    p.set_defaults(func=cmd_eval_clip)

    exp = sub.add_parser("experiment", help="the course's experiments").add_subparsers(dest="action", required=True)
    p = exp.add_parser(
        "clip-vs-mmclip", help="CLIP vs MMCLIP at equal budget over seeds -> results/<profile>/clip_vs_mmclip.json"
    )
    _add_profile(p)
    p.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--loss",
        choices=[x for x in LOSSES if x != "clip"],
        default=None,
        help="the hard-negative model's loss (default: the course's recipe, experiments.MMCLIP_RECIPE); "
        "a variant is written beside clip_vs_mmclip.json",
    )
    p.add_argument(
        "--hard-weight",
        type=float,
        default=None,
        help="weight of the hard-negative term (default: the course's recipe's); a variant as for --loss",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="initial temperature of both models (default: experiments.COMPARISON_TEMPERATURE; "
        "open_clip's is 0.07); a variant as for --loss",
    )
    p.add_argument("--steps", type=POSITIVE, default=None)
    p.add_argument(
        "--jobs",
        type=POSITIVE,
        default=None,
        help="runs trained at once (default: as many as the CPU's cores hold at the profile's threads; 1 on a GPU)",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="add these seeds to the results file's earlier seeds (same recipe; a seed in both must "
        "give the same numbers)",
    )
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_experiment)
    p = exp.add_parser(
        "validate",
        help="score finished runs on the validation split (how recipes are chosen) "
        "-> results/<profile>/recipe_selection.json",
    )
    _add_profile(p)
    p.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<profile>/<run name>)")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the runs' profile's)")
    p.add_argument("--name", default="recipe_selection", help="results file name (default: recipe_selection)")
    p.add_argument(
        "--earlier",
        type=Path,
        nargs="+",
        default=[],
        help="earlier validation records (results/<profile>/*.json) whose runs join the selection; "
        "a run scored again must give the same numbers",
    )
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_validate)
    p = exp.add_parser(
        "gap-noise",
        help="how much of a split's i2t_fine gap is the luck of its diagrams: paired "
        "item-bootstrap error and the family-balanced gap -> results/<profile>/gap_noise_<split>.json",
    )
    p.add_argument("--clip", type=Path, nargs="+", required=True, help="CLIP run folders, one per seed")
    p.add_argument("--mmclip", type=Path, nargs="+", required=True, help="MMCLIP run folders, the same seeds in order")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the runs' profile's)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_gap_noise)

    _add_lmm_parsers(sub, bench, exp)

    p = sub.add_parser("course", help="run the notebooks in order, saving executed copies and figures")
    _add_profile(p)
    p.add_argument("--only", nargs="*", default=None, help="notebook numbers to run, e.g. 00 01")
    p.add_argument(
        "--out", type=Path, default=None, help="where executed notebooks go (default: results/<profile>/notebooks)"
    )
    p.add_argument("--force", action="store_true", help="re-run notebooks that already ran from the same source")
    p.set_defaults(func=cmd_course)
    return ap


# ----------------------------------------------------------------------------- lesson 06: the LMM


def _lmm_config(args: argparse.Namespace):
    from .lmm.train import LMMConfig

    return LMMConfig(
        profile=get_profile(args.profile).name,
        vision=args.vision,
        lora_r=args.lora_r,
        full=args.full,
        seed=args.seed,
        token_grid=args.token_grid,
        lm=args.lm,
        lm_steps=args.lm_steps,
        align_steps=args.align_steps,
        sft_steps=args.sft_steps,
        train_scenes=args.train_scenes,
        threads=args.threads,
    )


def cmd_train_lmm(args: argparse.Namespace) -> int:
    from .lmm.train import stage_dir, train_lmm

    cfg = _lmm_config(args)
    summaries = train_lmm(cfg, args.stage, resume=args.resume, data_root=args.data)
    for stage, s in summaries.items():
        print(
            f"{stage:6s} {stage_dir(cfg, stage)}  steps {s.get('steps')}  "
            f"{s.get('tokens_per_s') or 0:.0f} tokens/s  {s.get('wall_time_s') or 0:.1f} s"
        )
    print(
        json.dumps(
            {
                k: {kk: v for kk, v in s.items() if isinstance(v, (int, float, str, bool)) or v is None}
                for k, s in summaries.items()
            }
        )
    )
    return 0


def cmd_eval_lmm(args: argparse.Namespace) -> int:
    from .experiments.lmm_comparison import evaluate_condition
    from .lmm.train import dataset_rows, stage_dir

    cfg = _lmm_config(args)
    if not (stage_dir(cfg, "sft") / "summary.json").exists():
        raise FileNotFoundError(
            f"no trained LMM in {stage_dir(cfg, 'sft')}: train it with mmgeo train-lmm (same options)"
        )
    root, _ = dataset_rows(cfg, "train", args.data)
    r = evaluate_condition(cfg, root, limit=args.limit)
    print(f"{'kind':8s} {'n':>5s} {'exact match':>12s} {'majority':>9s}  majority answer")
    for kind, k in r["by_kind"].items():
        print(
            f"{kind:8s} {k['n']:5d} {100 * k['accuracy']:11.1f}% {100 * k['majority_baseline']:8.1f}%  {k['majority_answer']}"
        )
    print(f"{'overall':8s} {r['n']:5d} {100 * r['overall']:11.1f}% {100 * r['overall_majority_baseline']:8.1f}%")
    print("yes/no per relation (balanced: a 'yes' share of 50 %, so the wording cannot give the answer away):")
    for rel, k in r["yes_no_by_relation"].items():
        print(f"  {rel:14s} {k['n']:5d} {100 * k['accuracy']:6.1f}%  yes share {100 * k['yes_share']:5.1f}%")
    dropped = r["yes_no_selection"]["dropped_relations"]
    print(
        f"yes/no questions left out to balance them: {r['yes_no_selection']['n_dropped']}"
        + (
            f"; relations with one answer only, dropped: {', '.join(f'{k} ({v})' for k, v in dropped.items())}"
            if dropped
            else ""
        )
    )
    held = r["claims_that_hold"]
    print(
        f"answers whose asserted fact holds on the scene: {'n/a' if held is None else f'{100 * held:.1f}%'} "
        f"of {r['claims_checked']} checkable"
    )
    return 0


def cmd_lmm_comparison(args: argparse.Namespace) -> int:
    from .experiments.lmm_comparison import comparison_table, run_lmm_comparison

    record = run_lmm_comparison(
        args.profile,
        seeds=args.seeds,
        conditions=args.conditions,
        clip_runs=args.clip,
        mmclip_runs=args.mmclip,
        data_root=args.data,
        limit=args.limit,
        **({"threads": args.threads} if args.threads else {}),
    )
    print(comparison_table(record).to_string())
    for name, b in record["paired_bootstrap"].items():
        print(
            f"{name:18s} {100 * b['mean']:+5.1f} points, 95 % interval [{100 * b['low']:+.1f}, {100 * b['high']:+.1f}]"
            f" over {b['n_questions']} questions"
        )
    return 0


def cmd_bench_lmm(args: argparse.Namespace) -> int:
    from .experiments.bench_lmm import bench_lmm

    print(
        json.dumps(
            bench_lmm(args.profile, steps=args.steps, vision=args.vision, data_root=args.data, threads=args.threads)
        )
    )  # the last line is machine-readable JSON
    return 0


def _add_lmm_options(p: argparse.ArgumentParser) -> None:
    _add_profile(p)
    p.add_argument(
        "--vision",
        required=True,
        help="the tower: a run of mmgeo train-clip (its name under runs/<profile>/ or its folder), "
        "'random' (same architecture, untrained) or 'none' (a blind LMM)",
    )
    lora = p.add_mutually_exclusive_group()
    lora.add_argument("--lora-r", type=int, default=None, help="LoRA rank of stage sft (default: the profile's)")
    lora.add_argument("--full", action="store_true", help="fine-tune the whole LM in stage sft instead of LoRA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token-grid", default=None, help="layer3+pooled, layer3, pooled (ResNet) or patches (ViT)")
    p.add_argument("--lm", default=None, help="hub name or local folder of the LM (default: the profile's)")
    for stage in ("lm", "align", "sft"):
        p.add_argument(f"--{stage}-steps", type=int, default=None)
    p.add_argument("--train-scenes", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the profile's)")


def _add_lmm_parsers(sub, bench, exp) -> None:
    p = sub.add_parser("train-lmm", help="lesson 06: train the LLaVA-style LMM's stages on a tower")
    _add_lmm_options(p)
    p.add_argument("--stage", choices=("lm", "align", "sft", "all"), default="all")
    p.add_argument("--resume", action="store_true", help="continue an interrupted stage")
    p.set_defaults(func=cmd_train_lmm)
    p = sub.add_parser(
        "eval-lmm", help="lesson 06: exact match per question kind, majority baselines, facts re-checked"
    )
    _add_lmm_options(p)
    p.add_argument("--limit", type=int, default=None, help="test questions scored (default: the profile's)")
    p.set_defaults(func=cmd_eval_lmm)
    p = exp.add_parser(
        "lmm-comparison",
        help="blind, random, CLIP and MMCLIP towers under one LMM -> results/<profile>/lmm_comparison.json",
    )
    _add_profile(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--conditions",
        nargs="+",
        default=["blind", "random", "clip", "mmclip"],
        choices=["blind", "random", "clip", "mmclip"],
    )
    p.add_argument(
        "--clip", type=Path, nargs="+", default=None, help="CLIP run folders, one per seed (default: lesson 05's runs)"
    )
    p.add_argument("--mmclip", type=Path, nargs="+", default=None, help="MMCLIP run folders, one per seed")
    p.add_argument("--limit", type=int, default=None, help="test questions scored (default: the profile's)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None)
    p.set_defaults(func=cmd_lmm_comparison)
    p = bench.add_parser("lmm", help="lesson 06: samples/s and tokens/s per stage, feature cache, peak memory")
    _add_profile(p)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--vision", default="random")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None)
    p.set_defaults(func=cmd_bench_lmm)


def main(argv: list[str] | None = None) -> int:
    import logging

    # cache hits, resumed shards and rebuilt caches are reported through logging
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # open_clip narrates every model build at INFO on the root logger
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or "open_clip" not in r.pathname)
    args = build_parser().parse_args(argv)
    from .clip import TrainingDiverged

    try:
        if getattr(args, "device", None) is not None:
            from .repro import check_device

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
