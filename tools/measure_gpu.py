"""What one GPU does with the gpu profile, measured in a few minutes: ``results/<profile>/measure_gpu.json``.

1. A smaller build of the profile's data: its image size and negatives, ``--n-train`` diagrams. No
   retrieval negatives: the comparison's recipe does not train on them, and their sentence encoder is
   a package a bare GPU machine may not have.
2. ``mmgeo bench train`` on it (``bench_train.json``): per-image step time of CLIP and MMCLIP, the
   share of the step spent waiting for data, peak memory.
3. One short MMCLIP run of the comparison's recipe and its test benchmark on the small split: the CUDA
   path end to end (bf16 autocast, loader workers, checkpoints, evaluation) and its real throughput.
   Its accuracy means little at this size; the numbers that matter are images/s and memory.

Usage: ``python tools/measure_gpu.py [--profile gpu] [--n-train 4096] [--n-eval 512] [--steps 300]``
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from mmgeo_utils.clip import default_run_dir, train
from mmgeo_utils.clip.evaluate import headline
from mmgeo_utils.data import DatasetConfig, build_dataset
from mmgeo_utils.experiments import bench_train, comparison_configs, evaluate_run
from mmgeo_utils.profiles import get_profile
from mmgeo_utils.repro import detect_device, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--n-train", type=int, default=4096)
    ap.add_argument("--n-eval", type=int, default=512, help="validation and test diagrams")
    ap.add_argument("--steps", type=int, default=300, help="steps of the short MMCLIP run")
    args = ap.parse_args()
    profile = get_profile(args.profile)
    device = detect_device()

    config = dataclasses.replace(
        DatasetConfig.from_profile(profile),
        name=f"{profile.name}-measure",
        n_train=args.n_train,
        n_val=args.n_eval,
        n_test=args.n_eval,
        retrieval_candidates=0,
    )
    t0 = time.perf_counter()
    root = build_dataset(config, progress=False)  # data/<name>-<key>, beside the profile's own
    build_s = time.perf_counter() - t0
    print(f"data: {args.n_train}/{args.n_eval}/{args.n_eval} scenes at {config.image_size} px in {build_s:.0f} s")

    bench = bench_train(profile, device=device, data_root=root)
    print({k: bench["models"][k]["images_per_s"] for k in bench["models"]}, "images/s")

    cfg = dataclasses.replace(comparison_configs(profile, steps=args.steps)["mmclip"], eval_every=args.steps)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # its own folder: trained on the small build, it must never be resumed as the profile's run of that name
    run_dir = default_run_dir(cfg).with_name(f"measure-{cfg.run_name()}")
    result = train(cfg, out_dir=run_dir, data_root=root, device=device, progress=False)
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 3) if device == "cuda" else None
    evaluation = evaluate_run(result, data_root=root, device=device)  # the test benchmark, cached in the run
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    path = write_results(
        "measure_gpu",
        {
            "gpu": gpu,
            "data": {**config.to_dict(), "build_s": round(build_s, 1), "root": str(Path(root).name)},
            "bench_train": {k: v for k, v in bench.items() if k != "results_file"},
            "short_run": {
                "config": result.config.to_dict(),
                "summary": result.summary,
                "peak_memory_gib": peak,
                "test": headline(evaluation),
                "test_n": evaluation["i2t_fine"]["all"]["n"],
            },
        },
        profile=profile,
        wall_time_s=time.perf_counter() - t0,
    )
    print(f"short run: {result.summary.get('images_per_s', float('nan')):.0f} images/s, peak {peak} GiB -> {path}")


if __name__ == "__main__":
    main()
