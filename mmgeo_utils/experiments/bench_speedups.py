"""``mmgeo bench train --speedups``: what each per-step speed-up buys (channels_last, bf16 autocast, trimmed text
padding, torch.compile, a narrow text tower), timed side by side in interleaved rounds for CLIP and MMCLIP.
Bench only: training is unchanged (issue 23's lever 1)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from ..clip import ContrastiveObjective, autocast_context, make_loader, make_optimization, native_bf16, train_step
from ..clip.distributed import DistInfo
from ..clip.models import allow_short_text, count_parameters, create_clip, get_tokenizer, shipped_models, text_extent
from ..data.contrastive import HardNegativeDataset, default_transform
from ..profiles import Profile, get_profile
from ..repro import check_device, cpu_threads, git_commit, seed_everything, write_results
from .bench import _positive, _training_data
from .comparison import comparison_configs

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # without them, torch emulates bf16 matmuls on a CPU

# What each lever of issue 23 (lever 1) changes; a variant is a set of them. All but narrow_text leave the
# model as it is (only how its step is computed); narrow_text is another model: half the text tower's width.
SPEED_LEVERS = ("channels_last", "bf16", "trim", "compile", "narrow_text")
SPEED_ROWS = {  # row name -> levers, in the table's order; the best combinations are chosen after these
    "baseline": (),
    "channels_last": ("channels_last",),
    "bf16": ("bf16",),
    "trim": ("trim",),
    "compile": ("compile",),
    "narrow_text": ("narrow_text",),
}
ROW_LABELS = {
    "baseline": "fp32 baseline",
    "channels_last": "+channels_last",
    "bf16": "+bf16 autocast",
    "trim": "+trim padded text",
    "compile": "+torch.compile",
    "narrow_text": "narrow text tower",
}
NARROW_TEXT_SUFFIX = (
    "-narrowtext"  # mmgeo_utils/clip/model_configs/<model>-narrowtext.json: text width and heads halved
)


def bf16_support(device_type: str) -> str:
    """``native ...`` or ``emulated ...``: whether bf16 autocast has hardware behind it here.

    CPUs: the ``avx512_bf16`` / ``amx_bf16`` flags of ``/proc/cpuinfo`` (oneDNN's bf16 kernels run on
    them; elsewhere bf16 is converted to and from fp32 around fp32 arithmetic). GPUs: compute
    capability 8.0 and newer (:func:`mmgeo_utils.clip.train.native_bf16`).
    """
    if device_type == "cuda":
        return "native (CUDA compute capability >= 8.0)" if native_bf16() else "emulated (GPU older than Ampere)"
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        return "unknown (no /proc/cpuinfo to read the CPU's flags from)"
    have = [f for f in BF16_CPU_FLAGS if f in flags]
    if have:
        return f"native ({', '.join(have)})"
    return f"emulated (the CPU has none of {', '.join(BF16_CPU_FLAGS)})"


def trim_text_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with captions and text negatives cut after the batch's last end-of-text token.

    A model encodes the result only after :func:`mmgeo_utils.clip.models.allow_short_text`, and gives the
    same features (the test ``test_trimmed_text_features_equal_untrimmed`` checks it on smoke's model).
    """

    n = text_extent(batch["text"], batch["text_negatives"])
    return {**batch, "text": batch["text"][..., :n], "text_negatives": batch["text_negatives"][..., :n]}


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def _text_stats(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """How much padding trimming can cut: each caption's length (to its end-of-text token) and each batch's."""

    lengths = []
    for b in batches:
        for t in (b["text"], b["text_negatives"]):
            if t.numel():
                lengths += (t.reshape(-1, t.shape[-1]).argmax(dim=-1) + 1).tolist()
    context = int(batches[0]["text"].shape[-1])
    extents = [text_extent(b["text"], b["text_negatives"]) for b in batches]
    return {
        "median_caption": _median([float(x) for x in lengths]),
        "captions_at_context": round(sum(x == context for x in lengths) / len(lengths), 4),
        "batch_extents": extents,
    }


class _Variant:
    """One model of one variant: its own weights, optimizer and batches, ready to time steps."""

    def __init__(self, levers, cfg, profile, batches, dev, device_type: str):

        self.levers, self.dev, self.device_type = tuple(levers), dev, device_type
        model_name = cfg.model + (NARROW_TEXT_SUFFIX if "narrow_text" in levers else "")
        cfg = dataclasses.replace(cfg, precision="bf16" if "bf16" in levers else "fp32")
        seed_everything(0)
        model = create_clip(
            model_name,
            cfg.pretrained if "narrow_text" not in levers else None,
            image_size=profile.image_size,
            context_length=profile.context_length,
            device=dev,
        )
        self.parameters = count_parameters(model)
        if "channels_last" in levers:
            model = model.to(memory_format=torch.channels_last)
            model.visual.register_forward_pre_hook(
                lambda mod, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
            )
        if "trim" in levers:
            allow_short_text(model)
            batches = [trim_text_batch(b) for b in batches]
        self.text_width = _median([float(b["text"].shape[-1]) for b in batches])
        self.optimizer, self.scheduler, self.scaler, amp_dtype = make_optimization(model, cfg, device_type)
        self.autocast = autocast_context(amp_dtype, device_type)
        self.model = torch.compile(model) if "compile" in levers else model
        self.cfg, self.batches, self.next = cfg, batches, 0
        self.images_per_step = cfg.positives_per_step * (1 + cfg.negative_config().image_slots)

    def steps(self, n: int, objective) -> list[float]:
        """Run ``n`` optimizer steps; the seconds of each."""

        times = []
        for _ in range(n):
            batch = self.batches[self.next % len(self.batches)]
            self.next += 1
            t0 = time.perf_counter()
            train_step(
                self.model,
                objective,
                self.optimizer,
                self.scheduler,
                self.scaler,
                batch,
                self.cfg,
                DistInfo(),
                self.dev,
                self.autocast,
            )
            if self.device_type == "cuda":
                torch.cuda.synchronize(self.dev)
            times.append(time.perf_counter() - t0)
        return times


def bench_train_speedups(
    profile: Profile | str | None = None,
    steps: int | None = None,
    rounds: int | None = None,
    device: str | None = None,
    data_root: Path | str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """``mmgeo bench train --speedups``: what each speed lever of issue 23 buys per step, side by side.

    Rows (each lever alone on the fp32 baseline): ``channels_last`` (model and images in NHWC),
    ``bf16`` (CPU/GPU autocast; marked *emulated* where the hardware lacks bf16 arithmetic),
    ``trim`` (captions and text negatives cut after the batch's last end-of-text token,
    :func:`trim_text_batch`), ``compile`` (``torch.compile`` of the model; compile time reported
    apart from the steady step), ``narrow_text`` (the ``-narrowtext`` model config: text tower width
    and heads halved, its parameter count reported). Then ``best``: every lever except narrow_text
    that made the CLIP + MMCLIP step faster, and ``best+narrow_text`` when the narrow tower did too.

    How it is timed: both models of the comparison (same images per step) of every variant are built
    at once and train on the same ``steps`` pre-loaded batches (data loading is excluded: ``mmgeo
    bench train`` measures it). After an untimed warm-up that sees every batch once (a compiled model
    meets every text length), ``rounds`` rounds each time ``steps`` steps of every variant in turn,
    the order rotating each round, so background load falls on all alike. A speed-up is the
    baseline's median step time over the variant's; its range is over the rounds' paired ratios.
    The best combinations are timed in further rounds interleaved with the baseline again.
    Training itself is unchanged by all of this: the levers exist only here.
    """

    profile = get_profile(profile)
    _positive(steps=steps, rounds=rounds, threads=threads)
    device_type = check_device(device)
    dev = torch.device(device_type)
    smoke = profile.name == "smoke"
    steps = steps or (1 if smoke else 3)
    rounds = rounds or (2 if smoke else 5)
    root, data = _training_data(profile, data_root)
    # no learning-rate warm-up: every timed step is a real update (a schedule has no cost to time)
    configs = {k: c.resolved() for k, c in comparison_configs(profile, steps=10_000, warmup=0.0).items()}
    threads = threads or configs["clip"].threads
    rows = dict(SPEED_ROWS)
    notes: dict[str, str] = {}
    narrow = configs["clip"].model + NARROW_TEXT_SUFFIX  # type: ignore[operator]
    if narrow not in shipped_models():
        del rows["narrow_text"]
        notes["narrow_text"] = f"not measured: no model config {narrow} ships in mmgeo_utils/clip/model_configs"
    bf16 = bf16_support(device_type)
    start = time.perf_counter()
    with cpu_threads(threads), _compile_limits():
        # the same batches for every variant of a model: pre-loaded, so data loading is out of the timing
        batches: dict[str, list] = {}
        objectives = {}
        for name, cfg in configs.items():
            tokenizer = get_tokenizer(cfg.model, context_length=profile.context_length)  # type: ignore[arg-type]
            dataset = HardNegativeDataset(
                root, "train", cfg.negative_config(), transform=default_transform(normalize=False)
            )
            it = iter(make_loader(dataset, tokenizer, dataclasses.replace(cfg, workers=0), device_type=device_type))
            batches[name] = [next(it) for _ in range(steps)]
            objectives[name] = ContrastiveObjective(cfg.loss, cfg.hard_weight).to(dev)
        text_stats = {m: _text_stats(b) for m, b in batches.items()}
        # untimed: every batch (every text length) once, and at least two steps for a compiled model
        warmup = {"compile": max(2, steps), "eager": steps}

        variants: dict[str, dict[str, _Variant]] = {}
        meta: dict[str, dict[str, Any]] = {}

        def build(row: str, levers) -> None:
            meta[row] = {"levers": list(levers)}
            try:
                vs = {m: _Variant(levers, configs[m], profile, batches[m], dev, device_type) for m in configs}
                n = warmup["compile" if "compile" in levers else "eager"]
                warm = {m: v.steps(n, objectives[m]) for m, v in vs.items()}
            except Exception as e:  # torch.compile without a compiler, an op without a bf16 kernel, ...
                meta[row]["error"] = _one_line(e)
                return
            variants[row] = vs
            meta[row]["warmup_s"] = {m: round(sum(t), 3) for m, t in warm.items()}

        def time_rounds(names: list[str]) -> dict[str, dict[str, list[float]]]:
            per_round: dict[str, dict[str, list[float]]] = {r: {m: [] for m in configs} for r in names}
            for k in range(rounds):
                order = names[k % len(names) :] + names[: k % len(names)]
                for row in order:
                    for m, v in variants[row].items():
                        per_round[row][m].append(sum(v.steps(steps, objectives[m])) / steps)
            return per_round

        for row, levers in rows.items():
            build(row, levers)
        single = [r for r in rows if r in variants]
        if "baseline" not in variants:
            raise RuntimeError(f"the fp32 baseline does not run: {meta['baseline']['error']}")
        timings = time_rounds(single)

        def summary(row: str, base: dict[str, list[float]], own: dict[str, list[float]]) -> dict[str, Any]:
            out = dict(meta[row])
            for m in configs:
                t, b = own[m], base[m]
                v = variants[row][m]
                med = _median(t)
                ratios = [bb / tt for bb, tt in zip(b, t, strict=True)]
                out[m] = {
                    "ms_per_step": round(1e3 * med, 2),
                    "ms_per_step_rounds": [round(1e3 * x, 2) for x in t],
                    "spread": round((max(t) - min(t)) / med, 4),
                    "images_per_s": round(v.images_per_step / med, 1),
                    "images_per_step": v.images_per_step,
                    "speedup": round(_median(b) / med, 3),
                    "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
                    "text_width": v.text_width,  # tokens each text is padded to (median batch)
                }
                if "compile" in v.levers:  # the warm-up beyond its steady steps is compilation
                    out[m]["compile_s"] = round(max(0.0, meta[row]["warmup_s"][m] - warmup["compile"] * med), 2)
            # what a comparison pays: one CLIP and one MMCLIP step
            out["pair_speedup"] = round(
                (_median(base["clip"]) + _median(base["mmclip"])) / (_median(own["clip"]) + _median(own["mmclip"])), 3
            )
            pair = [(bc + bm) / (oc + om) for bc, bm, oc, om in zip(*base.values(), *own.values(), strict=True)]
            out["pair_speedup_range"] = [round(min(pair), 3), round(max(pair), 3)]
            return out

        results = {
            row: summary(row, timings["baseline"], timings[row]) if row in variants else dict(meta[row]) for row in rows
        }
        # the best combinations: levers that made the CLIP + MMCLIP step faster in every round (bf16 only where
        # the hardware computes it: emulated, training keeps fp32); narrow_text changes the model, so apart
        helped = [
            r
            for r in single
            if r != "baseline"
            and results[r]["pair_speedup_range"][0] > 1.0
            and not (r == "bf16" and not bf16.startswith("native"))
        ]
        best = tuple(lv for r in helped if r != "narrow_text" for lv in SPEED_ROWS[r])
        combos = {"best": best}
        if "narrow_text" in helped:
            combos["best+narrow_text"] = (*best, "narrow_text")
        for row, levers in combos.items():
            if len(levers) >= 2:  # none or one lever: an existing row is the best, already measured
                build(row, levers)
        second = [r for r in combos if r in variants]
        if second:
            again = time_rounds(["baseline", *second])
            for row in second:
                results[row] = summary(row, again["baseline"], again[row])
            results["baseline"]["second_rounds_ms_per_step"] = {
                m: round(1e3 * _median(t), 2) for m, t in again["baseline"].items()
            }
        for row, levers in combos.items():
            if row in results:
                continue
            if len(levers) >= 2:  # the combination failed to run (its error in one line)
                results[row] = dict(meta[row])
            else:
                same = levers[0] if levers else "baseline"
                results[row] = {**results[same], "levers": list(levers), "same_as": same}
                notes[row] = (
                    f"only {same} made the step faster in every round: its row"
                    if levers
                    else "no lever made the CLIP + MMCLIP step faster in every round: the baseline is the best"
                )
        used_threads = torch.get_num_threads()
    params = {row: variants[row]["clip"].parameters for row in ("baseline", "narrow_text") if row in variants}
    out: dict[str, Any] = {
        "benchmark": "train_speedups",
        "profile": profile.name,
        "commit": git_commit(),
        "device": device_type,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": bf16,
        "threads": used_threads,
        "steps_per_round": steps,
        "rounds": rounds,
        "warmup_steps": warmup,
        "context_length": int(batches["clip"][0]["text"].shape[-1]),
        "text_tokens": text_stats,
        "models": {
            m: {"model": c.model, "loss": c.loss, "negatives": list(c.negatives), "images_per_step": c.images_per_step}
            for m, c in configs.items()
        },
        "parameters": params,
        "rows": results,
        "notes": notes,
        "data": {"root": str(root), "n_train": data["n_train"]},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    out["results_file"] = str(write_results("bench_train_speedups", out, profile=profile))
    return out


@contextlib.contextmanager
def _compile_limits():
    """Room for every compiled variant: dynamo keeps a few graphs per function, then runs it eagerly.

    Each compiled model (CLIP and MMCLIP, alone and in the best combinations) and each new text length
    is another graph of the same ``CLIP.forward``; past the limit the rest would be timed uncompiled.
    """
    try:
        import torch._dynamo.config as dynamo_config  # local: a torch without dynamo is handled below
    except ImportError:  # a torch without dynamo: torch.compile fails, and its row says so
        yield
        return
    key = next((k for k in ("recompile_limit", "cache_size_limit") if hasattr(dynamo_config, k)), None)
    if key is None:
        yield
        return
    with dynamo_config.patch(**{key: max(64, getattr(dynamo_config, key))}):
        yield


def format_speedups(result: dict[str, Any]) -> str:
    """The table of ``mmgeo bench train --speedups``: one row per variant, CLIP and MMCLIP side by side."""
    lines = [
        f"profile {result['profile']}, device {result['device']}, torch CPU capability "
        f"{result['cpu_capability']}, bf16 {result['bf16']}, {result['threads']} thread(s), "
        f"{result['rounds']} rounds x {result['steps_per_round']} steps per variant and model",
    ]
    rows = result["rows"]
    labels = {
        row: "best: " + ("+".join(r.get("levers", [])) or "the baseline")
        if row.startswith("best")
        else ROW_LABELS.get(row, row)
        for row, r in rows.items()
    }
    if "bf16" in labels and not result["bf16"].startswith("native"):
        labels["bf16"] += " (emulated)" if result["bf16"].startswith("emulated") else " (unknown)"

    w = max(24, *map(len, labels.values()))
    lines += [
        "",
        f"{'variant':<{w}} {'CLIP ms/step':>13} {'img/s':>7} {'speed-up':>16} "
        f"{'MMCLIP ms/step':>15} {'img/s':>7} {'speed-up':>16} {'both':>6} {'spread':>7}",
    ]
    for row, r in rows.items():
        label = labels[row]
        if "error" in r or "clip" not in r:
            lines.append(f"{label:<{w}} failed: {r.get('error', 'not measured')}")
            continue
        cells = []
        for m in ("clip", "mmclip"):
            x = r[m]
            lo, hi = x["speedup_range"]
            cells.append(
                f"{x['ms_per_step']:>{13 if m == 'clip' else 15}.1f} {x['images_per_s']:>7.1f} "
                f"{x['speedup']:>5.2f}x ({lo:.2f}-{hi:.2f})"
            )
        spread = max(r["clip"]["spread"], r["mmclip"]["spread"])  # the noisier model's
        lines.append(f"{label:<{w}} {cells[0]} {cells[1]} {r['pair_speedup']:>5.2f}x {100 * spread:>6.1f}%")
    lines.append("")
    lines.append(
        "speed-up: baseline median ms/step / variant's (range: paired per-round ratios); both: one CLIP + one "
        "MMCLIP step; spread: (max - min) / median of the variant's per-round ms/step (the noisier model's); "
        "best: the levers that made both steps together faster in every round (bf16 only where native), "
        "timed in later rounds against the baseline again"
    )
    extra = []
    for row, r in rows.items():
        if "clip" in r and "compile_s" in r["clip"]:
            extra.append(f"compile time ({row}): CLIP {r['clip']['compile_s']} s, MMCLIP {r['mmclip']['compile_s']} s")
    for m, t in result["text_tokens"].items():
        extra.append(
            f"{m} text: a caption's median length {t['median_caption']:g} tokens, {100 * t['captions_at_context']:.1f} % "
            f"cut at the context of {result['context_length']}; trimming keeps each batch's longest: "
            f"{', '.join(map(str, t['batch_extents']))}"
        )
    p = result["parameters"]
    if "narrow_text" in p:
        extra.append(
            f"parameters: baseline {p['baseline']['total']:,} (text {p['baseline']['text']:,}), narrow text "
            f"{p['narrow_text']['total']:,} (text {p['narrow_text']['text']:,})"
        )
    extra += [f"{k}: {v}" for k, v in result["notes"].items()]
    if result["bf16"].startswith("emulated"):
        extra.append("bf16 is emulated on this hardware: measured anyway; training keeps fp32 here")
    lines += extra
    return "\n".join(lines)
