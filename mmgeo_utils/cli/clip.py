"""Lessons 04-05's commands: ``mmgeo train-clip``, ``eval-clip`` and ``experiment clip-vs-mmclip | validate | gap-noise``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ..clip import LOSSES, MODEL_FILE, PRECISIONS, TrainConfig, load_config
from ..clip.evaluate import VARIANTS, tidy_table
from ..data.contrastive import BATCHING
from ..profiles import ENV_VAR, get_profile
from ..repro import atomic_write_text, detect_device
from .args import NON_NEGATIVE, POSITIVE, POSITIVE_FLOAT, _add_profile, _check_writable


def _train_config(args: argparse.Namespace):
    from ..clip import TrainConfig  # local: keeps `mmgeo --help` fast

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
        numeric_marks=not args.letters_only,
        eval_every=args.eval_every,
        workers=args.workers,
        threads=args.threads,
    )


def cmd_train_clip(args: argparse.Namespace) -> int:
    from ..clip import train  # local: keeps `mmgeo --help` fast

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
    from ..experiments.evaluation import evaluate_checkpoint  # local: keeps `mmgeo --help` fast

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


def cmd_experiment(args: argparse.Namespace) -> int:
    from ..experiments.comparison import comparison_table, run_comparison  # local: keeps `mmgeo --help` fast

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
    from ..experiments.selection import validation_scores  # local: keeps `mmgeo --help` fast

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
    from ..experiments.statistics import gap_noise  # local: keeps `mmgeo --help` fast

    r = gap_noise(args.clip, args.mmclip, split=args.split, data_root=args.data, device=args.device)
    print(
        f"{args.split}: i2t_fine gap {100 * r['gap']:+.1f} ± {100 * r['bootstrap_se']:.1f} (item-bootstrap SE, "
        f"{r['n_items']} diagrams, {r['seeds']} seed(s)); families balanced {100 * r['family_balanced_gap']:+.1f}"
    )
    for family, f in r["by_family"].items():
        print(f"  {family:28s} n={f['n']:4d}  gap {100 * f['gap']:+5.1f}")
    return 0


def _add_clip_parsers(sub) -> None:
    """``mmgeo train-clip`` and ``mmgeo eval-clip``."""
    p = sub.add_parser("train-clip", help="train CLIP or MMCLIP with open_clip (torchrun for several GPUs)")
    _add_profile(p)
    p.add_argument("--loss", choices=LOSSES, default="mmclip")
    p.add_argument(
        "--negatives",
        default="image,rule,retrieval",
        help="comma-separated subset of image, rule, retrieval, random (random: K captions of other diagrams; "
        "ignored by --loss clip)",
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
    p.add_argument(
        "--letters-only",
        action="store_true",
        help="train and test on the profile's diagrams drawn without length and angle values (lesson 08's marks study)",
    )
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


def _add_experiment_parsers(sub) -> argparse._SubParsersAction:
    """``mmgeo experiment clip-vs-mmclip | validate | gap-noise`` (lesson 06 adds ``lmm-comparison``)."""
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
    p = exp.add_parser(
        "ablate",
        help="lesson 08: one of MMGeoLM's ablations (negatives, k, batching, robustness) over seeds "
        "-> results/<profile>/ablation_<study>.json",
    )
    _add_profile(p)
    p.add_argument("--study", required=True, help="negatives, k, batching, marks, robustness or ce_clip")
    p.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=None, help="only these arms of the study (default: all)")
    p.add_argument("--steps", type=POSITIVE, default=None, help="training steps of every arm (default: the profile's)")
    p.add_argument("--lmm", action="store_true", help="also train lesson 06's LMM on each arm and report QA accuracy")
    p.add_argument("--jobs", type=POSITIVE, default=None, help="runs trained at once (default: as the cores hold)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_ablate)
    return exp


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..experiments.ablation import ablation_table, run_ablation  # local: keeps `mmgeo --help` fast

    record = run_ablation(
        args.study,
        args.profile,
        seeds=args.seeds,
        arms=args.arms,
        lmm=args.lmm,
        jobs=args.jobs,
        device=args.device,
        **({"steps": args.steps} if args.steps else {}),
    )
    print(f"{record['title']} ({record['paper_source']})")
    print(ablation_table(record).to_string())
    if record["note"]:
        print(f"note: {record['note']}")
    return 0
