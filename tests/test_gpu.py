"""A GPU torch cannot use stops the course with a clear message instead of a silent CPU run."""

import os
import stat

import pytest
import torch

from mmgeo_utils import gpu, profiles, repro
from mmgeo_utils.gpu import UnusableGPUError

SMI_HEADER = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |
+-----------------------------------------------------------------------------+"""


def _fake_nvidia_smi(tmp_path, monkeypatch, listing: str | None):
    """An ``nvidia-smi`` on PATH that lists ``listing`` (or fails, like one that finds no GPU)."""
    exe = tmp_path / "nvidia-smi"
    if listing is None:
        exe.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    else:
        exe.write_text(
            f"#!/bin/sh\nif [ \"$1\" = \"\" ]; then cat <<'X'\n{SMI_HEADER}\nX\nelse printf '%s\\n' '{listing}'; fi\n"
        )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpu.nvidia_smi_report.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_report():
    gpu.nvidia_smi_report.cache_clear()
    yield
    gpu.nvidia_smi_report.cache_clear()


def test_a_gpu_torch_cannot_use_is_an_error_that_says_how_to_fix_it(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "Tesla T4, 470.82.01")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(UnusableGPUError) as err:
        repro.detect_device()
    text = str(err.value)
    assert "Tesla T4" in text and "driver 470.82.01" in text and "supports CUDA up to 11.4" in text
    assert "built for CUDA 13.0, which needs a newer driver" in text
    assert "--index-url https://download.pytorch.org/whl/cu118" in text  # the newest build a CUDA 11.4 driver runs
    assert "CUDA_VISIBLE_DEVICES=" in text
    with pytest.raises(UnusableGPUError):  # the default profile is not silently cpu either
        profiles.default_profile_name()


def test_torchs_own_warning_is_the_reason_given(tmp_path, monkeypatch):
    """torch says why it cannot open the GPU in a warning ("driver too old"); the error repeats it."""
    import warnings

    _fake_nvidia_smi(tmp_path, monkeypatch, "Tesla T4, 470.82.01")
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def unavailable_with_a_reason():
        warnings.warn(
            "CUDA initialization: The NVIDIA driver on your system is too old\n (found version 11040).", stacklevel=2
        )
        return False

    monkeypatch.setattr(torch.cuda, "is_available", unavailable_with_a_reason)
    with pytest.raises(UnusableGPUError, match=r"driver on your system is too old \(found version 11040\)"):
        gpu.cuda_available()


def test_cpu_only_torch_is_named(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA A100-SXM4-40GB, 550.54.15")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UnusableGPUError, match=r"is a CPU-only build"):
        gpu.cuda_available()


def test_hidden_gpus_and_machines_without_one_run_on_the_cpu(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "Tesla T4, 470.82.01")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the user asked for the CPU
    assert repro.detect_device() == "cpu" and profiles.default_profile_name() == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    _fake_nvidia_smi(tmp_path, monkeypatch, None)  # nvidia-smi installed, no GPU
    assert gpu.cuda_available() is False
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi at all
    gpu.nvidia_smi_report.cache_clear()
    assert gpu.cuda_available() is False


def test_a_usable_gpu_is_used(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.cuda_available() is True and profiles.default_profile_name() == "gpu"


@pytest.mark.parametrize(
    "cuda, tag",
    [
        ("11.4", "cu118"),
        ("12.2", "cu121"),
        ("12.4", "cu124"),
        ("12.7", "cu126"),
        ("13.1", "cu130"),
        (None, "cu126"),
        ("10.2", "cu118"),
    ],
)
def test_wheel_index_for_a_driver(cuda, tag):
    assert gpu.wheel_tag_for(cuda) == tag


def test_cli_prints_the_message_without_a_traceback(tmp_path, monkeypatch, capsys):
    from mmgeo_utils import cli

    _fake_nvidia_smi(tmp_path, monkeypatch, "Tesla T4, 470.82.01")
    monkeypatch.delenv("MMGEO_PROFILE", raising=False)  # the default profile asks for the device
    assert cli.main(["train-clip", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmgeo: error: nvidia-smi sees 1 GPU(s) (Tesla T4") and "Traceback" not in err
