"""Do image negatives differ from their positive by anything but the edited fact? (issue 23, lever 3)

Reads a built dataset (never writes to it) and reports, on one split:

1. **Image statistics, paired.** For every image negative and its own positive: ink (pixels darker
   than mid-grey), mean intensity, edge energy, ink bounding box, connected components of the ink,
   PNG size. Per perturbation type: the mean difference negative − positive and how often the
   negative has more / the same / less.
2. **Trivial pickers.** Text→image as the benchmark scores it (the true diagram among itself and its
   K negatives; a tie is a miss): pick the candidate with the most / least of each statistic, a
   fixed random linear function of the pixels (a scorer that reads no caption), and the pixel medoid.
   A caption-blind picker that scores far from 1/(K+1) shows a structural bias of the candidate sets.
3. **What the chance level assumes.** ``chance = 1/(K+1)`` holds for a scorer under which the K+1
   candidates are exchangeable. Here every negative is the positive plus one small edit, so for a
   model that cannot see an edit the negative's score is the positive's plus noise, and the positive
   must win K coin flips: about 2^-K, not 1/(K+1). With ``--runs FILE`` (a results JSON with
   ``t2i_fine_by_type`` per run, e.g. ``results/cpu/recipe_selection.json``) the script predicts each
   run's ``t2i_fine`` as the mean over diagrams of the product of its negatives' per-type pairwise
   accuracies and prints it beside the measured value.
4. **Layout parity.** Re-renders each negative from its stored scene and style in the positive's frame
   (must equal the stored PNG) and compares the drawing plans: point letters whose point did not move
   (and keeps its name) and angle / length values whose points did not move and whose text did not
   change must be drawn at the same pixel anchor. Counts the negatives where one moved anyway.

    python tools/negative_shortcuts.py data/cpu-<key> --split val [--runs results/cpu/recipe_selection.json]

Never run it on the test split to choose anything (CONTRIBUTING: choices are made on validation).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mmgeo_utils.data import load_split
from mmgeo_utils.diagrams.plan import plan_scene
from mmgeo_utils.diagrams.render import render
from mmgeo_utils.diagrams.scene import Scene
from mmgeo_utils.diagrams.style import RenderStyle

INK_LEVEL = 128  # a pixel is ink when its grey level is below this (ink is drawn at 0-51 on white)
STATS = ("ink", "mean_intensity", "edge_energy", "bbox_area", "components", "png_bytes")
N_RANDOM_SCORERS = 64
MOVE_TOL_PX = 1e-6


# ----------------------------------------------------------------------------- image statistics


def grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def image_stats(png: bytes) -> dict[str, float]:
    """The statistics a shortcut could hide in, for one PNG."""
    g = grey(png)
    ink = g < INK_LEVEL
    ys, xs = np.nonzero(ink)
    bbox = float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)) if len(xs) else 0.0
    gx, gy = np.diff(g, axis=1), np.diff(g, axis=0)
    return {
        "ink": float(ink.sum()),
        "mean_intensity": float(g.mean()),
        "edge_energy": float((gx**2).mean() + (gy**2).mean()),
        "bbox_area": bbox,
        "components": float(ndimage.label(ink, structure=np.ones((3, 3)))[1]),
        "png_bytes": float(len(png)),
    }


def candidate_sets(root: Path, rows: list[dict]) -> list[dict]:
    """Per diagram with negatives: its PNG bytes, its negatives' bytes and their perturbation types."""
    split_dir = root / rows[0]["split"]
    out = []
    for r in rows:
        negs = r.get("image_negatives") or []
        if not negs:
            continue
        out.append(
            {
                "row": r,
                "pos": (split_dir / r["file_name"]).read_bytes(),
                "negs": [(split_dir / n["file_name"]).read_bytes() for n in negs],
                "types": [n["perturbation"] for n in negs],
            }
        )
    return out


def paired_table(sets: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per type and statistic: n, mean(neg − pos), and the fractions neg > / = / < pos."""
    diffs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in sets:
        pos = s["pos_stats"]
        for t, neg in zip(s["types"], s["neg_stats"]):
            for k in STATS:
                d = neg[k] - pos[k]
                diffs[t][k].append(d)
                diffs["all"][k].append(d)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for t, by_stat in diffs.items():
        table[t] = {}
        for k, d in by_stat.items():
            a = np.asarray(d)
            table[t][k] = {
                "n": len(a),
                "mean_diff": float(a.mean()),
                "neg_more": float((a > 0).mean()),
                "same": float((a == 0).mean()),
                "neg_less": float((a < 0).mean()),
            }
    return table


def pick_accuracy(scores: list[np.ndarray]) -> float:
    """Text→image accuracy of a scorer: the positive (index 0) strictly above every negative; a tie is a miss."""
    return float(np.mean([float(np.all(s[0] > s[1:])) for s in scores]))


def trivial_pickers(sets: list[dict], seed: int = 0) -> dict[str, float]:
    out: dict[str, float] = {"chance 1/(K+1)": float(np.mean([1.0 / (1 + len(s["negs"])) for s in sets]))}
    for k in STATS:
        vals = [np.array([s["pos_stats"][k]] + [n[k] for n in s["neg_stats"]]) for s in sets]
        out[f"most {k}"] = pick_accuracy(vals)
        out[f"least {k}"] = pick_accuracy([-v for v in vals])
    pixels = [np.stack([grey(s["pos"]).ravel()] + [grey(n).ravel() for n in s["negs"]]) for s in sets]
    # a scorer that reads no caption: a fixed random linear function of the pixels
    rng = np.random.default_rng(seed)
    accs, pairwise = [], []
    for _ in range(N_RANDOM_SCORERS):
        w = rng.standard_normal(pixels[0].shape[1])
        scores = [p @ w for p in pixels]
        accs.append(pick_accuracy(scores))
        pairwise.append(np.mean(np.concatenate([s[0] > s[1:] for s in scores])))
    out[f"random linear scorer (mean of {N_RANDOM_SCORERS})"] = float(np.mean(accs))
    out["random linear scorer, min"] = float(np.min(accs))
    out["random linear scorer, max"] = float(np.max(accs))
    out["random linear scorer, pairwise (positive > one negative)"] = float(np.mean(pairwise))
    # the candidate closest (L1) to all others: the positive is one edit from each negative,
    # negatives are two edits from each other
    out["pixel medoid"] = pick_accuracy([-np.abs(p[:, None, :] - p[None, :, :]).sum(axis=(1, 2)) for p in pixels])
    return out


# ----------------------------------------------------------------------------- the chance level


def predicted_from_pairwise(sets: list[dict], by_type: dict[str, float]) -> float:
    """Mean over diagrams of ∏ P(positive beats negative j), from per-type pairwise accuracies."""
    return float(np.mean([np.prod([by_type.get(t, 0.5) for t in s["types"]]) for s in sets]))


def _runs_in(metrics: dict) -> dict[str, dict]:
    """Evaluated runs of a results file: ``metrics.runs`` (recipe selection, validation) or
    ``metrics.<model>`` lists (a comparison such as clip_vs_mmclip.json, test)."""
    if "runs" in metrics:
        return metrics["runs"]
    return {
        Path(r.get("run", f"{model}-s{r.get('seed')}")).name: r
        for model, rs in metrics.items()
        if isinstance(rs, list)
        for r in rs
        if isinstance(r, dict)
    }


def run_predictions(sets: list[dict], path: Path) -> list[dict]:
    metrics = json.loads(path.read_text())["metrics"]
    runs = _runs_in(metrics)
    out = []
    for name, r in runs.items():
        if "t2i_fine_by_type" not in r:
            continue
        out.append(
            {
                "run": name,
                "runs_split": metrics.get("split", "test"),
                "measured_t2i_fine": r["t2i_fine"],
                "predicted_independent": predicted_from_pairwise(sets, r["t2i_fine_by_type"]),
                "pairwise_mean": float(np.mean([r["t2i_fine_by_type"].get(t, 0.5) for s in sets for t in s["types"]])),
            }
        )
    return out


# ----------------------------------------------------------------------------- layout parity


def _same_point(pos: Scene, neg: Scene, renaming: dict[str, str]) -> dict[str, str]:
    """Positive letter → negative letter for points that did not move."""
    out = {}
    for p, xy in pos.points.items():
        q = renaming.get(p, p)
        if q in neg.points and tuple(neg.points[q]) == tuple(xy):
            out[p] = q
    return out


def _renaming(change: str) -> dict[str, str]:
    """The letter map of a relabel from its stored change line (``relabel A→B, B→A``)."""
    if not change.startswith("relabel "):
        return {}
    return dict(pair.split("→") for pair in change[len("relabel ") :].split(", "))


def layout_parity(root: Path, sets: list[dict]) -> dict:
    """Per type: negatives whose stored PNG is not the re-render, or that move a letter or value not edited."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    examples: list[str] = []
    for s in sets:
        row = s["row"]
        style = RenderStyle.from_dict(row["style"])
        pos = Scene.from_dict(row["scene"])
        if not np.array_equal(np.asarray(render(pos, style).image.convert("L"), dtype=float), grey(s["pos"])):
            counts["positive"]["png_differs_from_rerender"] += 1
        pos_plan, pos_ctx = plan_scene(pos, style)
        for n, png in zip(row["image_negatives"], s["negs"]):
            t = n["perturbation"]
            c = counts[t]
            c["n"] += 1
            neg = Scene.from_dict(n["scene"])
            if not np.array_equal(
                np.asarray(render(neg, style, frame_of=pos).image.convert("L"), dtype=float), grey(png)
            ):
                c["png_differs_from_rerender"] += 1
            neg_plan, neg_ctx = plan_scene(neg, style, frame_of=pos)
            if not np.array_equal(pos_ctx.frame.pixel_affine(), neg_ctx.frame.pixel_affine()):
                c["other_frame"] += 1
            renaming = _renaming(n["change"])
            still = _same_point(pos, neg, renaming)
            # point letters: a point that did not move and kept its name keeps its label offset
            kept = {p: q for p, q in still.items() if p == q}
            moved_letters = [p for p in kept if tuple(pos.label_offsets[p]) != tuple(neg.label_offsets.get(p, ()))]
            if moved_letters:
                c["letters_replaced"] += 1
                c["letters_replaced_count"] += len(moved_letters)
                pa = {k: a for _, a, kind, k in pos_plan.texts if kind == "point"}
                na = {k: a for _, a, kind, k in neg_plan.texts if kind == "point"}
                c["max_letter_shift_px"] = max(
                    c["max_letter_shift_px"], max(float(np.hypot(*(pa[p] - na[p]))) for p in moved_letters)
                )
                if len(examples) < 8:
                    examples.append(f"{row['id']} {t}: letters {''.join(moved_letters)} re-placed ({n['change']})")
            # angle values and lengths whose points did not move and whose text is unchanged
            pv = {(kind, key, txt): a for txt, a, kind, key in pos_plan.texts if kind != "point"}
            nv = {(kind, key, txt): a for txt, a, kind, key in neg_plan.texts if kind != "point"}
            shifts = [
                float(np.hypot(*(a - nv[k]))) for k, a in pv.items() if k in nv and all(ch in kept for ch in k[1])
            ]
            shifts = [d for d in shifts if d > MOVE_TOL_PX]
            if shifts:
                c["values_moved"] += 1
                c["max_value_shift_px"] = max(c["max_value_shift_px"], max(shifts))
                if len(examples) < 16:
                    examples.append(f"{row['id']} {t}: a value not edited moved {max(shifts):.2f} px ({n['change']})")
    return {"by_type": {t: dict(v) for t, v in sorted(counts.items())}, "examples": examples}


# ----------------------------------------------------------------------------- report


def _print_report(res: dict) -> None:
    print(f"split {res['split']}: {res['diagrams']} diagrams with {res['negatives']} image negatives")
    print("\n== paired image statistics, negative − its positive (mean diff; share neg >, =, < pos)")
    for t, by_stat in sorted(res["paired"].items(), key=lambda kv: -kv[1]["ink"]["n"]):
        n = by_stat["ink"]["n"]
        cells = "  ".join(
            f"{k} {v['mean_diff']:+.1f} ({v['neg_more']:.2f}/{v['same']:.2f}/{v['neg_less']:.2f})"
            for k, v in by_stat.items()
        )
        print(f"{t:22s} n={n:4d}  {cells}")
    print("\n== caption-blind pickers, text→image accuracy (tie = miss)")
    for k, v in res["pickers"].items():
        print(f"{k:58s} {100 * v:5.1f} %")
    if res.get("runs"):
        print("\n== measured t2i_fine vs the product of per-type pairwise accuracies (independent coin flips)")
        for r in res["runs"]:
            if r["runs_split"] != res["split"]:
                print(f"warning: {r['run']} was evaluated on {r['runs_split']}, these diagrams are {res['split']}")
            print(
                f"{r['run']:40s} measured {100 * r['measured_t2i_fine']:5.1f} %  predicted "
                f"{100 * r['predicted_independent']:5.1f} %  (mean pairwise {100 * r['pairwise_mean']:.1f} %)"
            )
    if res.get("layout"):
        print("\n== layout parity (re-rendered from the stored scenes and styles)")
        for t, c in res["layout"]["by_type"].items():
            print(f"{t:22s} " + "  ".join(f"{k} {v:g}" for k, v in sorted(c.items())))
        for e in res["layout"]["examples"]:
            print("  e.g.", e)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="a built dataset folder (data/<profile>-<key>)")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--limit", type=int, default=None, help="first N diagrams only")
    ap.add_argument("--runs", type=Path, default=None, help="results JSON whose runs carry t2i_fine_by_type")
    ap.add_argument("--no-layout", action="store_true", help="skip the re-rendering layout check")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    if not (args.root / "manifest.json").is_file():
        raise SystemExit(f"{args.root} has no manifest.json: not a built dataset")
    rows = load_split(args.root, args.split, limit=args.limit)
    sets = candidate_sets(args.root, rows)
    if not sets:
        raise SystemExit(f"split {args.split} of {args.root} has no image negatives (built with num_negatives=0?)")
    for s in sets:
        s["pos_stats"] = image_stats(s["pos"])
        s["neg_stats"] = [image_stats(n) for n in s["negs"]]
    res: dict = {
        "root": str(args.root),
        "split": args.split,
        "diagrams": len(sets),
        "negatives": sum(len(s["negs"]) for s in sets),
        "paired": paired_table(sets),
        "pickers": trivial_pickers(sets),
    }
    if args.runs:
        res["runs"] = run_predictions(sets, args.runs)
    if not args.no_layout:
        res["layout"] = layout_parity(args.root, sets)
    _print_report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
