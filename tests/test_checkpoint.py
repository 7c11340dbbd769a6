"""Training state in safetensors: exact round trip, and clear errors for bad files."""

import pytest
import torch
from safetensors.torch import save_file

from mmgeo_utils.clip import HardNegativeLoss, cosine_with_warmup
from mmgeo_utils.clip.checkpoint import CheckpointError, load_training_state, save_training_state


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, opt, cosine_with_warmup(opt, 2, 10)


def _steps(model, opt, sched, n):
    for _ in range(n):
        x = torch.randn(16, 4)  # draws from the global RNG: restoring it matters
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()


def test_save_load_continue_equals_never_stopping(tmp_path):
    m1, o1, s1 = _setup()
    _steps(m1, o1, s1, 6)

    m2, o2, s2 = _setup()
    _steps(m2, o2, s2, 3)
    loss = HardNegativeLoss()
    loss.cmr_thresholds = torch.tensor([0.5, 1.0])
    save_training_state(
        tmp_path / "s.safetensors", model=m2, optimizer=o2, scheduler=s2, step=3, objective=loss, extra={"note": "x"}
    )
    torch.manual_seed(123)  # scramble the RNG: loading must restore it
    m3, o3, s3 = _setup(seed=99)
    loss3 = HardNegativeLoss()
    info = load_training_state(tmp_path / "s.safetensors", model=m3, optimizer=o3, scheduler=s3, objective=loss3)
    assert info == {"step": 3, "extra": {"note": "x"}}
    assert torch.equal(loss3.cmr_thresholds, torch.tensor([0.5, 1.0]))
    _steps(m3, o3, s3, 3)
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b)
    assert s1.get_last_lr() == s3.get_last_lr()


def test_missing_truncated_and_foreign_files_are_named(tmp_path):
    m, o, s = _setup()
    with pytest.raises(CheckpointError, match="not found"):
        load_training_state(tmp_path / "none.safetensors", model=m, optimizer=o, scheduler=s)
    path = save_training_state(tmp_path / "s.safetensors", model=m, optimizer=o, scheduler=s, step=0)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_training_state(path, model=m, optimizer=o, scheduler=s)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(CheckpointError, match="not an mmgeo training checkpoint"):
        load_training_state(tmp_path / "f.safetensors", model=m, optimizer=o, scheduler=s)
    other = torch.nn.Linear(3, 3)
    good = save_training_state(tmp_path / "g.safetensors", model=m, optimizer=o, scheduler=s, step=0)
    with pytest.raises(CheckpointError, match="different model"):
        load_training_state(good, model=other, optimizer=torch.optim.AdamW(other.parameters()), scheduler=s)


def test_written_bytes_depend_only_on_the_weights_and_metadata(tmp_path):
    """safetensors writes its metadata map in a random key order; ours comes out sorted, so sha256 is stable."""
    import hashlib
    import subprocess
    import sys

    from safetensors import safe_open

    from mmgeo_utils.clip.checkpoint import save_model

    model, opt, sched = _setup()
    meta = {k: f"value {k}" for k in ("model", "run", "zeta", "alpha", "beta", "gamma", "delta", "epsilon")}
    digests = {
        hashlib.sha256(save_model(tmp_path / f"m{i}.safetensors", model, metadata=meta).read_bytes()).hexdigest()
        for i in range(8)
    }
    # another process draws another hash seed: the bytes must not depend on it either
    code = (
        "import sys, torch; from mmgeo_utils.clip.checkpoint import save_model; torch.manual_seed(0); "
        "m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)); "
        f"save_model(sys.argv[1], m, metadata={meta!r})"
    )
    for i in range(2):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"p{i}.safetensors")], check=True)
        digests.add(hashlib.sha256((tmp_path / f"p{i}.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
    with safe_open(str(tmp_path / "m0.safetensors"), framework="pt") as f:  # still a file safetensors reads
        assert f.metadata() == meta and set(f.keys()) == set(model.state_dict())
    save_training_state(tmp_path / "s0.safetensors", model=model, optimizer=opt, scheduler=sched, step=3)
    save_training_state(tmp_path / "s1.safetensors", model=model, optimizer=opt, scheduler=sched, step=3)
    assert (tmp_path / "s0.safetensors").read_bytes() == (tmp_path / "s1.safetensors").read_bytes()
