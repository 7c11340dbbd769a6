"""Two processes on CPU (gloo): gathered features give the single-process loss, and torchrun trains."""

import json
import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmgeo_utils.clip import ContrastiveObjective, gather_features
from mmgeo_utils.clip.distributed import DistInfo


def _features(seed=0, b=8, k=2, d=16):
    g = torch.Generator().manual_seed(seed)
    f = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    mask = torch.rand(b, k, generator=g) > 0.3
    return dict(
        image=f(b, d),
        text=f(b, d),
        image_negatives=f(b, k, d),
        image_negative_mask=mask,
        text_negatives=f(b, 4, d),
        text_negative_mask=torch.ones(b, 4, dtype=torch.bool),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, loss, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        full = _features()
        b = full["image"].shape[0] // world
        local = {k: v[rank * b : (rank + 1) * b].clone().requires_grad_(v.is_floating_point()) for k, v in full.items()}
        feats = gather_features({**local, "logit_scale": torch.tensor(10.0)}, DistInfo(rank, world, rank))
        out = ContrastiveObjective(loss)(**feats)
        out["loss"].backward()
        # plain numpy arrays: a shared-memory tensor would die with this process
        queue.put(
            (
                rank,
                float(out["loss"].detach()),
                local["image"].grad.numpy().copy(),
                local["text_negatives"].grad.numpy().copy(),
            )
        )
    finally:
        dist.barrier()  # neither process tears gloo down while the other still talks to it
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_one_process_with_the_whole_batch():
    world, loss = 2, "mmclip+imc_cmr"
    full = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in _features().items()}
    single = ContrastiveObjective(loss)(**full, logit_scale=torch.tensor(10.0))
    single["loss"].backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_worker, args=(world, _free_port(), loss, queue), nprocs=world, start_method="spawn")
    results = sorted((queue.get() for _ in range(world)), key=lambda r: r[0])
    b = full["image"].shape[0] // world
    for rank, value, g_img, g_txtneg in results:
        g_img, g_txtneg = torch.from_numpy(g_img), torch.from_numpy(g_txtneg)
        assert abs(value - float(single["loss"])) < 1e-5  # every process computes the global loss
        # all_gather's backward sums the identical losses of all processes; DDP's gradient
        # averaging divides by the world size again, so the net gradient is the single-process one
        assert torch.allclose(g_img / world, full["image"].grad[rank * b : (rank + 1) * b], atol=1e-6)
        assert torch.allclose(g_txtneg / world, full["text_negatives"].grad[rank * b : (rank + 1) * b], atol=1e-6)


def test_torchrun_two_processes_on_cpu(smoke_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmgeo_utils",
        "train-clip",
        "--profile",
        "smoke",
        "--loss",
        "mmclip",
        "--steps",
        "2",
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert (out / "model.safetensors").exists()
    rows = (out / "train_log.csv").read_text().splitlines()
    assert len(rows) == 3 and float(rows[-1].split(",")[1]) > 0
