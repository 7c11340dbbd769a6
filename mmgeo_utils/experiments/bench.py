"""``mmgeo bench diagrams``: how many diagrams per second this machine makes.

Dataset size in the course is bounded by rendering speed, so the number is measured,
not assumed. One process measures each stage of a sample (scene generation with
label layout, rendering, PNG encoding); then every core runs the same loop at once
to give the total a dataset build can reach. Speed goals live here, not in tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from ..profiles import Profile, get_profile

BENCH_IMAGE_SIZE = 128  # the throughput goal (≥ 200 diagrams/s per core) is stated at 128 px
DEFAULT_N = 300  # diagrams per core: a few seconds at the goal's speed
WARMUP = 50  # untimed diagrams first: the figure and most glyph outlines are built once per process

_barrier = None  # set in pool workers so that all cores start timing together


def _time_loop(config, n: int, offset: int) -> dict[str, float]:
    """Generate, render and encode ``n`` diagrams, timing each stage (seconds, perf_counter)."""
    from ..data import encode_png, make_scene, sample_seeds
    from ..diagrams.render import render
    from ..diagrams.style import sample_style

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
    import multiprocessing as mp

    from ..data import DatasetConfig, default_workers
    from ..repro import describe_device, write_results

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
    from ..data import DatasetConfig, sample_seeds
    from ..diagrams.captions import describe
    from ..diagrams.families import sample_scene
    from ..diagrams.style import sample_style
    from ..negatives.image import make_image_negatives
    from ..negatives.text import make_text_negatives
    from ..repro import write_results
    from .bench_retrieval import bench_retrieval

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


def bench_train(
    profile: Profile | str | None = None,
    steps: int | None = None,
    warmup: int = 3,
    device: str | None = None,
    data_root: Path | str | None = None,
) -> dict[str, Any]:
    """``mmgeo bench train``: what hard negatives cost per image, and whether data keeps up.

    For the two models of the comparison (:func:`mmgeo_utils.experiments.comparison.comparison_configs`,
    same architecture, same images per step), time ``steps`` optimizer steps after ``warmup``
    untimed ones and report per image encoded: the whole step, the time spent waiting for the
    next batch, and the loss itself (forward + backward of the objective on the step's
    features, timed separately). Goals (in the README): the hard-negative loss adds at most 10%
    per image processed; data loading is never the bottleneck. With CUDA, peak memory too.

    ``data_root`` times on another build of the profile's kind of data (same image size and
    negatives, fewer diagrams): a step's time does not depend on how many diagrams the split holds,
    and the gpu profile's 54,000 scenes with 10 image negatives each take hours of one core to build.
    """
    import torch

    from ..clip import ContrastiveObjective, autocast_context, make_loader, make_optimization, train_step
    from ..clip.distributed import DistInfo
    from ..clip.models import create_clip, get_tokenizer
    from ..data import DatasetConfig, build_dataset, read_manifest
    from ..data.contrastive import HardNegativeDataset, default_transform
    from ..repro import check_device, seed_everything, write_results
    from .comparison import comparison_configs

    profile = get_profile(profile)
    _positive(steps=steps)
    device_type = check_device(device)
    dev = torch.device(device_type)
    steps = steps or (3 if profile.name == "smoke" else 20)
    root = (
        Path(data_root) if data_root is not None else build_dataset(DatasetConfig.from_profile(profile), progress=False)
    )
    data = read_manifest(root)["config"]
    if data["image_size"] != profile.image_size:
        raise ValueError(
            f"{root} holds {data['image_size']} px diagrams; the {profile.name} profile trains on "
            f"{profile.image_size} px"
        )
    out: dict[str, Any] = {
        "benchmark": "train",
        "profile": profile.name,
        "device": device_type,
        "steps": steps,
        "data": {"root": str(root), "n_train": data["n_train"]},
        "models": {},
    }
    for name, cfg in comparison_configs(profile, steps=steps + warmup).items():
        cfg = cfg.resolved()
        seed_everything(0)
        model = create_clip(
            cfg.model,
            cfg.pretrained,
            image_size=profile.image_size,  # type: ignore[arg-type]
            context_length=profile.context_length,
            device=dev,
        )
        tokenizer = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]
        objective = ContrastiveObjective(cfg.loss, cfg.hard_weight).to(dev)
        dataset = HardNegativeDataset(
            root, "train", cfg.negative_config(), transform=default_transform(normalize=False)
        )
        optimizer, scheduler, scaler, amp_dtype = make_optimization(model, cfg, device_type)
        autocast = autocast_context(amp_dtype, device_type)
        it = iter(make_loader(dataset, tokenizer, cfg, device_type=device_type))
        images = cfg.positives_per_step * (1 + cfg.negative_config().image_slots)
        texts = cfg.positives_per_step * (1 + len(cfg.negative_config().text_slots))
        wait = compute = loss_s = 0.0
        if device_type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            train_step(model, objective, optimizer, scheduler, scaler, batch, cfg, DistInfo(), dev, autocast)
            if device_type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            if i >= warmup:
                wait, compute = wait + (t1 - t0), compute + (t2 - t1)
                loss_s += _time_loss(model, objective, batch, dev, autocast, device_type)
        step_s = (wait + compute) / steps
        entry = {
            "positives_per_step": cfg.positives_per_step,
            "images_per_step": images,
            "texts_per_step": texts,
            "step_ms": round(1000 * step_s, 2),
            "ms_per_image": round(1000 * step_s / images, 3),
            "images_per_s": round(images / step_s, 1),
            "data_wait_share": round(wait / (wait + compute), 4),
            "loss_ms": round(1000 * loss_s / steps, 3),
            "loss_share_of_step": round(loss_s / (wait + compute), 4),
        }
        if device_type == "cuda":
            entry["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
        out["models"][name] = entry
    clip, mm = out["models"]["clip"], out["models"]["mmclip"]
    out["mmclip_ms_per_image_vs_clip"] = round(mm["ms_per_image"] / clip["ms_per_image"] - 1, 4)
    # the loss's own extra cost per image, relative to CLIP's whole step per image
    clip_step_per_image = clip["step_ms"] / clip["images_per_step"]
    extra_loss_per_image = mm["loss_ms"] / mm["images_per_step"] - clip["loss_ms"] / clip["images_per_step"]
    out["hard_negative_loss_overhead_per_image"] = round(extra_loss_per_image / clip_step_per_image, 4)
    out["results_file"] = str(write_results("bench_train", out, profile=profile))
    return out


def _time_loss(model, objective, batch, dev, autocast, device_type: str) -> float:
    """Forward + backward of the objective alone, on this batch's features (detached leaves)."""
    import torch

    from ..clip import encode_batch

    with torch.no_grad(), autocast:
        feats = encode_batch(model, batch, dev)
    leaves = {k: (v.detach().float().requires_grad_(True) if v.is_floating_point() else v) for k, v in feats.items()}
    if device_type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    objective(**leaves)["loss"].backward()
    if device_type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- bench train --speedups

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
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # without them, torch emulates bf16 matmuls on a CPU


def bf16_support(device_type: str) -> str:
    """``native ...`` or ``emulated ...``: whether bf16 autocast has hardware behind it here.

    CPUs: the ``avx512_bf16`` / ``amx_bf16`` flags of ``/proc/cpuinfo`` (oneDNN's bf16 kernels run on
    them; elsewhere bf16 is converted to and from fp32 around fp32 arithmetic). GPUs: compute
    capability 8.0 and newer (:func:`mmgeo_utils.clip.train.native_bf16`).
    """
    if device_type == "cuda":
        from ..clip import native_bf16

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
    from ..clip.models import text_extent

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
    from ..clip.models import text_extent

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
        import torch

        from ..clip import autocast_context, make_optimization
        from ..clip.models import allow_short_text, count_parameters, create_clip
        from ..repro import seed_everything

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
        import torch

        from ..clip import train_step
        from ..clip.distributed import DistInfo

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
    import torch

    from ..clip import ContrastiveObjective, make_loader
    from ..clip.models import get_tokenizer, shipped_models
    from ..data import DatasetConfig, build_dataset, read_manifest
    from ..data.contrastive import HardNegativeDataset, default_transform
    from ..repro import check_device, cpu_threads, git_commit, write_results
    from .comparison import comparison_configs

    profile = get_profile(profile)
    _positive(steps=steps, rounds=rounds, threads=threads)
    device_type = check_device(device)
    dev = torch.device(device_type)
    smoke = profile.name == "smoke"
    steps = steps or (1 if smoke else 3)
    rounds = rounds or (2 if smoke else 5)
    root = (
        Path(data_root) if data_root is not None else build_dataset(DatasetConfig.from_profile(profile), progress=False)
    )
    data = read_manifest(root)["config"]
    if data["image_size"] != profile.image_size:
        raise ValueError(
            f"{root} holds {data['image_size']} px diagrams; the {profile.name} profile trains on "
            f"{profile.image_size} px"
        )
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
        import torch._dynamo.config as dynamo_config
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
