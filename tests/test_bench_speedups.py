"""``mmgeo bench train --speedups``: issue 23's speed levers, side by side, on smoke.

Speed goals live in the benchmark, never in tests: these check that every variant runs a step, that
trimming padded text tokens changes no feature, and that the result file holds every row.
"""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from mmgeo_utils import cli
from mmgeo_utils.clip import ContrastiveObjective, make_loader
from mmgeo_utils.clip.models import allow_short_text, count_parameters, create_clip, get_tokenizer, text_extent
from mmgeo_utils.data.contrastive import HardNegativeDataset, default_transform
from mmgeo_utils.experiments import comparison_configs
from mmgeo_utils.experiments.bench_speedups import (
    SPEED_ROWS,
    _Variant,
    bench_train_speedups,
    bf16_support,
    format_speedups,
    trim_text_batch,
)
from mmgeo_utils.profiles import get_profile
from mmgeo_utils.repro import cpu_threads


def _batches(smoke_data, model: str, n: int = 1):
    cfg = comparison_configs("smoke", steps=10, warmup=0.0)[model].resolved()
    tokenizer = get_tokenizer(cfg.model)
    dataset = HardNegativeDataset(
        smoke_data, "train", cfg.negative_config(), transform=default_transform(normalize=False)
    )
    it = iter(make_loader(dataset, tokenizer, dataclasses.replace(cfg, workers=0)))
    return cfg, [next(it) for _ in range(n)]


def test_speedups_option_parses(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "train", "--speedups", "--rounds", "3", "--threads", "1", "--steps", "2"])
    assert args.speedups and args.rounds == 3 and args.threads == 1 and args.steps == 2
    args = parser.parse_args(["bench", "train"])
    assert not args.speedups and args.rounds is None and args.threads is None
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "train", "--speedups", "--rounds", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "train", "--help"])
    assert "--speedups" in capsys.readouterr().out
    assert "bench train --speedups" in cli.__doc__


# Tolerance of the trimmed-vs-untrimmed comparison: fp32 features of unit-scale magnitude; a shorter
# matrix product sums in another order, so the last bits may differ (measured: ~1e-7)
TRIM_ATOL = 1e-5


def test_trimmed_text_features_equal_untrimmed(smoke_data):
    """Tokens after the batch's last end-of-text token cannot change a feature (causal mask, EOT pooling)."""
    _, (batch,) = _batches(smoke_data, "mmclip")
    tokens = torch.cat([batch["text"], batch["text_negatives"].flatten(0, 1)])
    # a batch's longest caption often fills the context (some are cut there): the shorter ones leave padding
    tokens = tokens[tokens.argmax(dim=-1) + 1 < 80]
    n = text_extent(tokens)
    assert len(tokens) >= 4 and 1 < n < 80
    assert (tokens[:, n:] == 0).all() and (tokens[:, n - 1] != 0).any()
    p = get_profile("smoke")
    model = create_clip(p.clip_model, image_size=p.image_size).eval()
    with torch.no_grad():
        full = model.encode_text(tokens)
        allow_short_text(model)
        trimmed = model.encode_text(tokens[:, :n])
        again = model.encode_text(tokens)  # the full length still works after allow_short_text
    assert trimmed.shape == full.shape
    torch.testing.assert_close(trimmed, full, atol=TRIM_ATOL, rtol=0)
    torch.testing.assert_close(again, full, atol=TRIM_ATOL, rtol=0)
    assert not torch.equal(full[0], full[1])  # the features are not trivially equal
    # the batch helper cuts captions and negatives at the same place: after the longest of either
    cut = trim_text_batch(batch)
    width = text_extent(batch["text"], batch["text_negatives"])
    assert cut["text"].shape[-1] == cut["text_negatives"].shape[-1] == width
    assert torch.equal(cut["text"], batch["text"][:, :width]) and (batch["text"][:, width:] == 0).all()


def test_text_extent_and_allow_short_text_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match="every tensor given is empty"):
        text_extent(torch.zeros(0, 96, dtype=torch.long))
    model = create_clip("mmgeo-resnet-tiny", image_size=64)
    model.text_pool_type = "last"
    with pytest.raises(ValueError, match="pool type 'last'"):
        allow_short_text(model)


def test_narrow_text_tower_halves_the_text_width():
    base = create_clip("mmgeo-resnet-tiny", image_size=64)
    narrow = create_clip("mmgeo-resnet-tiny-narrowtext", image_size=64)
    assert narrow.transformer.width == base.transformer.width // 2
    b, n = count_parameters(base), count_parameters(narrow)
    assert n["visual"] == b["visual"] and n["text"] < b["text"]


@pytest.mark.parametrize("row", [r for r in SPEED_ROWS if r != "compile"] + ["channels_last+bf16+trim+narrow_text"])
def test_each_variant_runs_a_step(smoke_data, row):
    levers = SPEED_ROWS.get(row, tuple(row.split("+")))
    p = get_profile("smoke")
    with cpu_threads(1):  # as the cpu profile trains; and 2 threads on 2 busy cores spin more than they compute
        _steps_change_weights(smoke_data, levers, p)


def _steps_change_weights(smoke_data, levers, p):
    for m in ("clip", "mmclip"):
        cfg, batches = _batches(smoke_data, m)
        v = _Variant(levers, cfg, p, batches, torch.device("cpu"), "cpu")
        before = [t.detach().clone() for t in v.model.parameters()]
        (t,) = v.steps(1, ContrastiveObjective(cfg.loss, cfg.hard_weight))
        assert t > 0
        assert any(not torch.equal(a, b) for a, b in zip(before, v.model.parameters(), strict=True))
        assert all(torch.isfinite(q).all() for q in v.model.parameters())


def test_bf16_support_says_native_or_emulated():
    s = bf16_support("cpu")
    assert s.split()[0] in ("native", "emulated", "unknown")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        assert s.startswith("native")
    elif flags:
        assert s.startswith("emulated")


def test_speedups_bench_writes_every_row(smoke_data, monkeypatch):
    """The whole benchmark on smoke: every row measured, the result file holds them all.

    torch.compile is replaced by a model that fails on its first call, as on a machine without a
    C compiler: the row says so in one line and the rest is measured (compiling really is the slow
    test below; it takes minutes on 2 cores).
    """

    class NoCompiler(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, *a, **k):
            raise RuntimeError("InductorError: no working C compiler found\n(cc: not found)")

    monkeypatch.setattr(torch, "compile", NoCompiler)
    out = bench_train_speedups("smoke", steps=1, rounds=2, device="cpu", data_root=smoke_data, threads=1)
    rows = out["rows"]
    assert list(rows)[: len(SPEED_ROWS)] == list(SPEED_ROWS)
    assert rows["compile"]["error"] == "RuntimeError: InductorError: no working C compiler found (cc: not found)"
    for row in SPEED_ROWS:
        if row == "compile":
            continue
        for m in ("clip", "mmclip"):
            r = rows[row][m]
            assert r["ms_per_step"] > 0 and r["images_per_s"] > 0 and r["speedup"] > 0
            assert len(r["ms_per_step_rounds"]) == 2 and r["speedup_range"][0] <= r["speedup_range"][1]
    assert rows["baseline"]["clip"]["speedup"] == 1.0
    assert all("compile" not in rows[r]["levers"] for r in rows if r != "compile")  # failed: in no combination
    assert "best" in rows and set(rows) - set(SPEED_ROWS) <= {"best", "best+narrow_text"}
    for row in set(rows) - set(SPEED_ROWS):  # measured, or one lever's (or the baseline's) own row
        assert rows[row]["mmclip"]["ms_per_step"] > 0
        assert len(rows[row]["levers"]) >= 2 or rows[row]["same_as"] in (*rows[row]["levers"], "baseline")
    for m in ("clip", "mmclip"):
        t = out["text_tokens"][m]
        assert 0 < t["median_caption"] <= out["context_length"] and len(t["batch_extents"]) == 1
        assert rows["trim"][m]["text_width"] == t["batch_extents"][0]
    assert out["parameters"]["narrow_text"]["text"] < out["parameters"]["baseline"]["text"]
    assert out["parameters"]["narrow_text"]["visual"] == out["parameters"]["baseline"]["visual"]
    assert out["cpu_capability"] and out["bf16"].split()[0] in ("native", "emulated") and out["threads"] == 1
    saved = json.loads(Path(out["results_file"]).read_text())
    assert Path(out["results_file"]).name == "bench_train_speedups.json"
    assert saved["metrics"]["rows"] == json.loads(json.dumps(rows))
    for key in ("profile", "commit", "device"):
        assert saved[key]
    table = format_speedups(out)
    for label in ("fp32 baseline", "+channels_last", "+bf16", "+trim", "+torch.compile", "narrow text"):
        assert label in table
    assert re.search(r"\n\+torch\.compile +failed: RuntimeError: InductorError", table)


@pytest.mark.slow
def test_compiled_variant_runs_a_step(smoke_data):
    """torch.compile for real (minutes on 2 busy cores: inductor compiles forward and backward)."""
    p = get_profile("smoke")
    cfg, batches = _batches(smoke_data, "mmclip")
    v = _Variant(("compile", "trim"), cfg, p, batches, torch.device("cpu"), "cpu")
    before = [t.detach().clone() for t in v.model.parameters()]
    with cpu_threads(1):
        times = v.steps(2, ContrastiveObjective(cfg.loss, cfg.hard_weight))
    assert len(times) == 2 and all(t > 0 for t in times)
    assert any(not torch.equal(a, b) for a, b in zip(before, v.model.parameters(), strict=True))


def test_best_combination_takes_the_levers_that_helped_in_every_round(smoke_data, monkeypatch):
    """Which levers the best rows combine, with step times made up per lever (no timing noise)."""
    import mmgeo_utils.experiments.bench_speedups as bench_speedups

    factor = {"channels_last": 0.9, "bf16": 0.8, "trim": 1.1, "compile": 0.5, "narrow_text": 0.7}

    def fake_steps(self, n, objective):
        t = 0.1 * (2 if self.cfg.loss != "clip" else 1)
        for lever in self.levers:
            t *= factor[lever]
        return [t] * n

    monkeypatch.setattr(_Variant, "steps", fake_steps)
    monkeypatch.setattr(bench_speedups, "bf16_support", lambda device_type: "emulated (the CPU has none of x)")
    out = bench_train_speedups("smoke", steps=1, rounds=2, device="cpu", data_root=smoke_data, threads=1)
    rows = out["rows"]
    # bf16 is faster here but emulated: training would keep fp32, so it is left out; trim is slower
    assert rows["best"]["levers"] == ["channels_last", "compile"]
    assert rows["best+narrow_text"]["levers"] == ["channels_last", "compile", "narrow_text"]
    assert rows["best"]["mmclip"]["speedup"] == pytest.approx(1 / (0.9 * 0.5), abs=1e-3)
    assert rows["compile"]["clip"]["speedup"] == pytest.approx(2.0, abs=1e-3)
    assert rows["trim"]["pair_speedup"] == pytest.approx(1 / 1.1, abs=1e-3)
    assert rows["compile"]["clip"]["compile_s"] == 0.0  # made-up steps compile nothing
    table = format_speedups(out)
    assert "+bf16 autocast (emulated)" in table and "best: channels_last+compile+narrow_text" in table
    assert "bf16 is emulated on this hardware" in table
