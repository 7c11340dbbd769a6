"""Lessons 06–07's commands: ``mmgeo train-lmm``, ``eval-lmm``, ``experiment lmm-comparison``, ``bench lmm``;
``train-lmm --local`` and ``experiment slime-comparison`` (SliME); ``train-gem`` and ``experiment gem-comparison``
(MM-GEM)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..clip import PRECISIONS
from ..profiles import get_profile
from .args import _add_profile


def _lmm_config(args: argparse.Namespace):
    from ..lmm.config import LMMConfig  # local: keeps `mmgeo --help` fast

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
        precision=args.precision,
    )


def cmd_train_lmm(args: argparse.Namespace) -> int:
    from ..lmm.config import stage_dir  # local: keeps `mmgeo --help` fast
    from ..lmm.train import train_lmm

    cfg = _lmm_config(args)
    if args.local and args.local != "global":  # lesson 07: SliME's local tokens, every stage of the arm
        from ..lmm.slime import slime_dir, train_slime  # local: keeps `mmgeo --help` fast

        if args.stage != "all":
            raise ValueError(f"--local {args.local} trains every stage of its arm: leave out --stage {args.stage}")
        summaries = train_slime(cfg, args.local, resume=args.resume, data_root=args.data, progress=True)
        where = {stage: slime_dir(cfg, args.local) / stage for stage in summaries}
    else:
        summaries = train_lmm(cfg, args.stage, resume=args.resume, data_root=args.data)
        where = {stage: stage_dir(cfg, stage) for stage in summaries}
    for stage, s in summaries.items():
        print(
            f"{stage:6s} {where[stage]}  steps {s.get('steps')}  "
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
    from ..experiments.lmm_comparison import evaluate_condition  # local: keeps `mmgeo --help` fast
    from ..lmm.config import stage_dir
    from ..lmm.train import dataset_rows

    cfg = _lmm_config(args)
    root, _ = dataset_rows(cfg, "train", args.data)
    if args.local and args.local != "global":
        from ..experiments.slime_comparison import evaluate_arm  # local: keeps `mmgeo --help` fast

        r = evaluate_arm(cfg, args.local, root, limit=args.limit)
    else:
        if not (stage_dir(cfg, "sft") / "summary.json").exists():
            raise FileNotFoundError(
                f"no trained LMM in {stage_dir(cfg, 'sft')}: train it with mmgeo train-lmm (same options)"
            )
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
    if "local_tokens" in r:
        print(
            f"local tokens read: {r['local_tokens_kept']:.1f} of {r['local_tokens']}; small-text kinds "
            f"{100 * r['small_text']:.1f}%; {1000 * r['seconds_per_question']:.1f} ms per question"
        )
    held = r["claims_that_hold"]
    print(
        f"answers whose asserted fact holds on the scene: {'n/a' if held is None else f'{100 * held:.1f}%'} "
        f"of {r['claims_checked']} checkable"
    )
    return 0


def cmd_lmm_comparison(args: argparse.Namespace) -> int:
    from ..experiments.lmm_comparison import comparison_table, run_lmm_comparison  # local: keeps `mmgeo --help` fast

    record = run_lmm_comparison(
        args.profile, conditions=args.conditions, clip_runs=args.clip, limit=args.limit, **_comparison_kwargs(args)
    )
    print(comparison_table(record).to_string())
    for name, b in record["paired_bootstrap"].items():
        print(
            f"{name:18s} {100 * b['mean']:+5.1f} points, 95 % interval [{100 * b['low']:+.1f}, {100 * b['high']:+.1f}]"
            f" over {b['n_questions']} questions"
        )
    return 0


def cmd_train_gem(args: argparse.Namespace) -> int:
    from ..experiments.gem_comparison import ARMS, evaluate_arm  # local: keeps `mmgeo --help` fast
    from ..lmm.gem import gem_dir, negatives_root, train_gem

    cfg = _lmm_config(args)
    hard = not args.in_batch
    s = train_gem(cfg, args.objective, hard_negatives=hard, steps=args.steps, resume=args.resume, data_root=args.data)
    arm = next(a for a, v in ARMS.items() if v == (args.objective, hard))
    print(f"gem-{arm} {gem_dir(cfg, args.objective, hard)}  steps {s.get('steps')}  {s.get('wall_time_s') or 0:.1f} s")
    r = evaluate_arm(cfg, arm, negatives_root(cfg), captions=args.captions)
    print(
        " ".join(f"{k} {100 * r[k]:.1f}%" for k in ("i2t_fine", "t2i_fine", "i2t_r1", "i2t_r5"))
        + (
            f"  captions: fact precision {100 * r['captions']['precision']:.1f}%, recall {100 * r['captions']['recall']:.1f}%"
            if r.get("captions")
            else ""
        )
    )
    return 0


def cmd_gem_comparison(args: argparse.Namespace) -> int:
    from ..experiments.gem_comparison import gem_table, run_gem_comparison  # local: keeps `mmgeo --help` fast

    record = run_gem_comparison(args.profile, arms=args.arms, captions=args.captions, **_comparison_kwargs(args))
    print(gem_table(record).to_string())
    return 0


def cmd_slime_comparison(args: argparse.Namespace) -> int:
    from ..experiments.slime_comparison import run_slime_comparison, slime_table  # local: keeps `mmgeo --help` fast

    record = run_slime_comparison(args.profile, arms=args.arms, limit=args.limit, **_comparison_kwargs(args))
    print(slime_table(record).to_string())
    t = record["targets"]
    if t["local_gain"]:
        g = t["local_gain"]
        print(
            f"SliME's small-text gain over global only: {100 * g['measured']:+.1f} points (target +5): {'met' if g['met'] else 'not met'}"
        )
    if t["less_is_more"]:
        m = t["less_is_more"]
        kept = "n/a" if m["gain_kept"] is None else f"{100 * m['gain_kept']:.0f} %"
        print(
            f"the selector keeps {kept} of the raw local tokens' gain with {100 * m['token_share']:.0f} % of them: {'met' if m['met'] else 'not met'}"
        )
    return 0


def cmd_bench_lmm(args: argparse.Namespace) -> int:
    from ..experiments.bench_lmm import bench_lmm  # local: keeps `mmgeo --help` fast

    print(
        json.dumps(
            bench_lmm(
                args.profile,
                steps=args.steps,
                vision=args.vision,
                data_root=args.data,
                threads=args.threads,
                local=args.local,
            )
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
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="autocast of every stage (default auto: bf16 on GPUs that have it, fp16 on older, fp32 on CPU)",
    )
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the profile's)")


def _add_local_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--local",
        choices=("global", "raw", "compressed", "selected", "slime", "slime-joint"),
        default=None,
        help="lesson 07: SliME's local tokens of a 2x view (raw, compressed, selected by the question; slime adds "
        "the gated global adapter, trained alternately or jointly); global: lesson 06's LMM",
    )


def _add_lmm_parsers(sub, bench, exp) -> None:
    p = sub.add_parser("train-lmm", help="lesson 06: train the LLaVA-style LMM's stages on a tower")
    _add_lmm_options(p)
    p.add_argument("--stage", choices=("lm", "align", "sft", "all"), default="all")
    _add_local_option(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted stage")
    p.set_defaults(func=cmd_train_lmm)
    p = sub.add_parser(
        "eval-lmm", help="lesson 06: exact match per question kind, majority baselines, facts re-checked"
    )
    _add_lmm_options(p)
    p.add_argument("--limit", type=int, default=None, help="test questions scored (default: the profile's)")
    _add_local_option(p)
    p.set_defaults(func=cmd_eval_lmm)
    p = exp.add_parser(
        "lmm-comparison",
        help="blind, random, CLIP and MMCLIP towers under one LMM -> results/<profile>/lmm_comparison.json",
    )
    _add_comparison_options(p, "LMMs trained at once (default: as many as the CPU's cores hold; 1 on a GPU)")
    p.add_argument(
        "--conditions",
        nargs="+",
        default=["blind", "random", "clip", "mmclip"],
        choices=["blind", "random", "clip", "mmclip"],
    )
    p.add_argument(
        "--clip", type=Path, nargs="+", default=None, help="CLIP run folders, one per seed (default: lesson 05's runs)"
    )
    p.add_argument("--limit", type=int, default=None, help="test questions scored (default: the profile's)")
    p.set_defaults(func=cmd_lmm_comparison)
    _add_gem_parsers(sub, exp)
    p = exp.add_parser(
        "slime-comparison",
        help="global vs local tokens raw / compressed / selected (SliME) -> results/<profile>/slime_comparison.json",
    )
    _add_comparison_options(p)
    arms = ["global", "raw", "compressed", "selected", "slime", "slime-joint"]
    p.add_argument("--arms", nargs="+", default=arms, choices=arms)
    p.add_argument("--limit", type=int, default=None, help="test questions scored (default: the profile's)")
    p.set_defaults(func=cmd_slime_comparison)
    p = bench.add_parser("lmm", help="lesson 06: samples/s and tokens/s per stage, feature cache, peak memory")
    _add_profile(p)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--vision", default="random")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None)
    _add_local_option(p)
    p.set_defaults(func=cmd_bench_lmm)


def _add_comparison_options(p, jobs_help: str = "arms trained at once (default: as the CPU's cores hold)") -> None:
    """The options lessons 06–07's comparisons share: profile, seeds, MMCLIP towers, threads, jobs, data."""
    _add_profile(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--mmclip", type=Path, nargs="+", default=None, help="MMCLIP run folders, one per seed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--jobs", type=int, default=None, help=jobs_help)
    p.add_argument("--data", type=Path, default=None)


def _comparison_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`_add_comparison_options`'s values as the keyword arguments every ``run_*_comparison`` takes."""
    return {
        "seeds": args.seeds,
        "mmclip_runs": args.mmclip,
        "data_root": args.data,
        "jobs": args.jobs,
        **({"threads": args.threads} if args.threads else {}),
    }


def _add_gem_parsers(sub, exp) -> None:
    p = sub.add_parser("train-gem", help="lesson 07: train lesson 06's LMM to embed, caption, or both (MM-GEM)")
    _add_lmm_options(p)
    p.add_argument("--objective", choices=("joint", "embed", "generate"), default="joint")
    p.add_argument("--in-batch", action="store_true", help="InfoNCE with in-batch negatives only (MM-GEM's own)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's gem_steps)")
    p.add_argument("--captions", type=int, default=None, help="test captions generated and scored")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.set_defaults(func=cmd_train_gem)
    p = exp.add_parser(
        "gem-comparison",
        help="joint / embed / generate on one LM at equal steps -> results/<profile>/gem_comparison.json",
    )
    _add_comparison_options(p)
    p.add_argument(
        "--arms",
        nargs="+",
        default=["joint", "joint-in-batch", "embed", "generate"],
        choices=["joint", "joint-in-batch", "embed", "generate"],
    )
    p.add_argument("--captions", type=int, default=None, help="test captions generated and scored")
    p.set_defaults(func=cmd_gem_comparison)
