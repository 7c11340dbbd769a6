"""Is the GPU this machine has one torch can use? A clear stop instead of a silent CPU run.

torch's CUDA wheels need a driver at least as new as the CUDA they were built with. With an older
driver ``torch.cuda.is_available()`` is simply False, and everything downstream (the default
profile, the training device) would quietly become the CPU: a course that takes an hour on the GPU
would run for days without saying why. So when ``nvidia-smi`` lists a GPU that torch cannot open,
:func:`cuda_available` raises :class:`UnusableGPUError` with what was found and how to install a
torch build for that driver. Hiding the GPUs on purpose (``CUDA_VISIBLE_DEVICES=`` empty or ``-1``)
is a choice, and then the CPU is used without complaint.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from functools import lru_cache

# PyTorch's wheel indices for CUDA 11.8 and 12.x/13.x builds (https://download.pytorch.org/whl/cuXYZ); the
# newest torch release is published only for a few of them, older releases for the older ones
WHEEL_INDEX = "https://download.pytorch.org/whl/{tag}"
CUDA_TAGS = ("cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130")


class UnusableGPUError(RuntimeError):
    """``nvidia-smi`` sees a GPU, torch cannot use it (driver too old, or a CPU-only torch)."""


def gpus_hidden() -> bool:
    """The user hid every GPU (``CUDA_VISIBLE_DEVICES`` set to empty or ``-1``): a CPU run is wanted."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1")


@lru_cache(maxsize=1)
def nvidia_smi_report() -> dict | None:
    """The GPUs and driver ``nvidia-smi`` reports, or None without it (or when it finds none).

    ``{"gpus": ["NVIDIA T4", ...], "driver": "470.82.01", "cuda": "11.4"}``; ``cuda`` is the newest
    CUDA the driver supports (the header of plain ``nvidia-smi``), None where it is not printed.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        listing = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[c.strip() for c in line.split(",")] for line in listing.stdout.splitlines() if line.strip()]
    if listing.returncode != 0 or not rows:
        return None
    cuda = None
    try:
        header = subprocess.run([exe], capture_output=True, text=True, timeout=20).stdout
        m = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", header)
        cuda = m.group(1) if m else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"gpus": [r[0] for r in rows], "driver": rows[0][1] if len(rows[0]) > 1 else "unknown", "cuda": cuda}


def wheel_tag_for(cuda: str | None) -> str:
    """The newest of :data:`CUDA_TAGS` a driver supporting CUDA ``cuda`` ("12.4") runs; cu126 unknown."""
    if not cuda:
        return "cu126"
    major, minor = (int(x) for x in cuda.split(".")[:2])
    fitting = [t for t in CUDA_TAGS if (int(t[2:-1]), int(t[-1])) <= (major, minor)]
    return fitting[-1] if fitting else CUDA_TAGS[0]


def unusable_gpu_message(report: dict, torch_version: str, torch_cuda: str | None, reason: str = "") -> str:
    """What was found, why torch cannot use it, and how to get a torch that can."""
    gpus = ", ".join(report["gpus"])
    driver = f"driver {report['driver']}" + (f", which supports CUDA up to {report['cuda']}" if report["cuda"] else "")
    if torch_cuda is None:
        why = f"this torch ({torch_version}) is a CPU-only build"
    else:
        why = (
            f"this torch ({torch_version}) is built for CUDA {torch_cuda}, which needs a newer driver"
            if not report["cuda"] or _version(report["cuda"]) < _version(torch_cuda)
            else f"this torch ({torch_version}, CUDA {torch_cuda}) cannot open it"
        )
    tag = wheel_tag_for(report["cuda"])
    return "\n".join(
        filter(
            None,
            [
                f"nvidia-smi sees {len(report['gpus'])} GPU(s) ({gpus}; {driver}), but {why}: "
                "torch.cuda.is_available() is False.",
                f"torch says: {reason}" if reason else "",
                "Install a torch build for this driver (the PyTorch index for its CUDA version), then run again:",
                f"    pip install --force-reinstall torch torchvision --index-url {WHEEL_INDEX.format(tag=tag)}",
                "  (indices: " + ", ".join(CUDA_TAGS) + "; take the newest at or below the CUDA version nvidia-smi "
                "prints; if the newest torch has no build there, https://pytorch.org/get-started/previous-versions/ "
                "lists the older releases and their indices) — or update the NVIDIA driver.",
                "To run on the CPU instead, hide the GPU: CUDA_VISIBLE_DEVICES= (empty).",
            ],
        )
    )


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, except that a GPU torch cannot use is an error, not False.

    Raises :class:`UnusableGPUError` when ``nvidia-smi`` lists a GPU, the user has not hidden it,
    and torch cannot open it. Without ``nvidia-smi`` (a CPU machine, a Mac) this is the plain check.
    """
    import torch  # local: the foundations import without torch (drawing a diagram needs none)

    with warnings.catch_warnings(record=True) as caught:  # torch's own reason ("driver too old") is a warning
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available or gpus_hidden():
        return available
    report = nvidia_smi_report()
    if report is None:
        return False
    reason = " ".join(" ".join(str(w.message).split()) for w in caught)
    raise UnusableGPUError(unusable_gpu_message(report, torch.__version__, torch.version.cuda, reason))
