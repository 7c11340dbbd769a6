"""Reproducibility: seeding, device detection and provenance of every reported number.

"Same seed, same data, same numbers": each result file records the profile, seed,
git commit, device, wall time and package versions that produced it, so a figure in
the README can always be traced back to the run that made it.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .gpu import cuda_available
from .profiles import Profile, get_profile

REPO_ROOT = Path(__file__).resolve().parent.parent

# the packages whose versions change numbers; recorded with every result
TRACKED_PACKAGES = (
    "mmgeo",
    "numpy",
    "matplotlib",
    "pillow",
    "torch",
    "torchvision",
    "open_clip_torch",
    "sentence-transformers",
    "transformers",
    "peft",
)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU) with one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch  # local: the foundations import without torch (drawing a diagram needs none)

        torch.manual_seed(seed)
        torch.cuda.manual_seed_all(seed)
    except ImportError:
        pass


def detect_device() -> str:
    """``cuda`` when a GPU is visible, ``mps`` on Apple silicon, else ``cpu``.

    A GPU that ``nvidia-smi`` lists but torch cannot use (driver too old for the wheel) raises
    :class:`~mmgeo_utils.gpu.UnusableGPUError` with how to install a fitting torch.
    """
    try:
        import torch  # local: the foundations import without torch (drawing a diagram needs none)

        if cuda_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
    except ImportError:
        pass
    return "cpu"


DEVICES = ("cpu", "cuda", "mps")


def check_device(device: str | None) -> str:
    """``device`` if this machine has it (``None``: :func:`detect_device`), else a ``ValueError`` saying why.

    torch's own errors for ``--device tpu`` or ``--device cuda`` on a machine without a GPU are a
    list of 20 backends or a driver hint deep in a traceback; the course's commands run on these three.
    """
    if device is None:
        return detect_device()
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    import torch  # local: the foundations import without torch (drawing a diagram needs none)

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' asked for, but torch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}); use --device cpu"
        )
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' asked for, but this machine has no Apple-silicon GPU; use --device cpu")
    return device


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (a container or
    ``taskset`` often allows fewer than ``os.cpu_count()`` reports), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo`` on Linux), or the architecture when none is told.

    Recorded with every result because the same seed and thread count train a different model on
    another CPU (its vector units change the order of floating-point sums)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device() -> str:
    """A human-readable device string for result files: the GPU's name, or the CPU's name and cores."""
    device = detect_device()
    if device == "cuda":
        import torch  # local: the foundations import without torch (drawing a diagram needs none)

        return f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    kernels = torch_cpu_capability()
    arch = platform.machine() + (f", torch {kernels}" if kernels else "")
    return f"{device}:{usable_cores()} cores, {cpu_model()} ({arch})"


def torch_cpu_capability() -> str | None:
    """The vector instruction set torch's CPU kernels use here (``AVX512``, ``AVX2``, ...): what,
    beyond the name, decides which numbers a seed gives on this CPU. None without torch."""
    try:
        import torch  # local: the foundations import without torch (drawing a diagram needs none)

        return torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        return None


# what a run writes, not what computes it: a course run rewrites these tracked files as it goes,
# and that must not mark the code of its later results as uncommitted
OUTPUT_DIRS = ("results", "figures")


def git_commit(root: Path = REPO_ROOT) -> str:
    """The current commit, with ``+dirty`` when code (anything outside ``OUTPUT_DIRS``) has
    uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        outputs = [f":(exclude){d}" for d in OUTPUT_DIRS]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def provenance(profile: Profile | str | None, seed: int | None, wall_time_s: float | None = None) -> dict:
    """Everything needed to trace a number back to the run that produced it."""
    profile = get_profile(profile)
    return {
        "profile": profile.name,
        "seed": seed,
        "commit": git_commit(),
        "device": describe_device(),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": package_versions(),
    }


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text so that readers see either the old or the whole new content."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def results_dir(profile: Profile | str | None = None, root: Path | None = None) -> Path:
    """``results/<profile>/``; ``$MMGEO_RESULTS_DIR`` overrides the root (tests use it)."""
    root = Path(root or os.environ.get("MMGEO_RESULTS_DIR") or REPO_ROOT / "results")
    return root / get_profile(profile).name


def write_results(
    name: str,
    metrics: dict[str, Any],
    *,
    profile: Profile | str | None = None,
    seed: int | None = None,
    wall_time_s: float | None = None,
    root: Path | None = None,
) -> Path:
    """Write ``results/<profile>/<name>.json``: the metrics plus their provenance."""
    profile = get_profile(profile)
    record = {"name": name, **provenance(profile, seed, wall_time_s), "metrics": metrics}
    path = results_dir(profile, root) / f"{name}.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return path


def load_results(path: Path | str) -> dict[str, Any]:
    """Read a file :func:`write_results` wrote; a missing, corrupt or foreign file is named as such."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"results file {path} is corrupt ({e}); restore it from git or rerun what wrote it") from e
    missing = {"name", "profile", "commit", "metrics"} - set(record if isinstance(record, dict) else ())
    if missing:
        raise ValueError(f"{path} is not an mmgeo results file (no {', '.join(sorted(missing))})")
    return record


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a results file")


@dataclass
class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start


@contextmanager
def env_var(name: str, value: str | None) -> Iterator[None]:
    """Temporarily set (or unset, with None) an environment variable."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op CPU threads (None: leave the count as it is), then restore it.

    Why: a matrix product split over 2 threads adds its partial sums in another order than one
    on 1 thread, and over hundreds of training steps those last-bit differences grow into a
    different model. Same seed, same data, same numbers holds on a CPU only at the same count.
    """
    import torch  # local: the foundations import without torch (drawing a diagram needs none)

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
