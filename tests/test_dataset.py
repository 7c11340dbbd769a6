"""The dataset builder: same seed same bytes, a cache that is checked, builds that resume."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgeo_utils.data import (
    DatasetConfig,
    build_dataset,
    check_dataset,
    default_dir,
    file_hashes,
    load_image,
    load_split,
    sample_seeds,
    shards,
)
from mmgeo_utils.data import build as ds
from mmgeo_utils.data.config import MANIFEST, METADATA, SHARD_DIR, SPLITS
from mmgeo_utils.repro import REPO_ROOT

TINY = DatasetConfig(name="tiny", image_size=48, n_train=5, n_val=2, n_test=2, seed=7)
SHARD = 2  # several shards per split even at this size


def build(root: Path, config: DatasetConfig = TINY, **kw) -> Path:
    kw.setdefault("workers", 1)
    return build_dataset(config, out_dir=root, progress=False, shard_size=SHARD, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One clean build and the sha256 of all its files."""
    root = build(tmp_path_factory.mktemp("ref") / "data")
    return root, file_hashes(root)


@pytest.fixture
def count_shards(monkeypatch) -> list:
    """Record every shard the builder makes (in-process builds only)."""
    built: list = []
    real = shards.build_shard

    def spy(config, root, shard):
        built.append(shard.name)
        return real(config, root, shard)

    monkeypatch.setattr(shards, "build_shard", spy)
    return built


def _manifest_without_provenance(root: Path) -> dict:
    m = json.loads((root / MANIFEST).read_text())
    m.pop("provenance")
    return m


# ----------------------------------------------------------------------------- config and seeds


def test_config_key_tracks_content_not_name():
    same = DatasetConfig(**{**TINY.to_dict(), "name": "other", "families": tuple(TINY.families)})
    assert same.key() == TINY.key()
    for change in (
        {"seed": 8},
        {"image_size": 64},
        {"n_val": 3},
        {"generator_version": "x"},
        {"families": tuple(TINY.families[:1])},
    ):
        other = DatasetConfig(**{**TINY.to_dict(), "families": tuple(TINY.families), **change})
        assert other.key() != TINY.key(), change
    assert DatasetConfig.from_dict(TINY.to_dict()) == TINY


def test_config_from_profile_and_errors():
    c = DatasetConfig.from_profile("smoke", seed=3)
    assert (c.name, c.image_size, c.n_train, c.n_val, c.n_test, c.seed) == ("smoke", 64, 48, 16, 16, 3)
    with pytest.raises(ValueError, match="unknown profile"):
        DatasetConfig.from_profile("huge")
    with pytest.raises(ValueError, match="unknown or no families"):
        DatasetConfig(families=("no_such_family",))
    with pytest.raises(ValueError, match="seed"):
        DatasetConfig(seed=-1)


def test_sample_seeds_depend_only_on_seed_split_index():
    a = sample_seeds(TINY, "train", 3)
    assert a == sample_seeds(TINY, "train", 3)
    assert a != sample_seeds(TINY, "val", 3) and a != sample_seeds(TINY, "train", 4)
    assert len({a.scene, a.style, a.caption, a.qa}) == 4
    assert all(0 <= s < 2**53 for s in (a.scene, a.style, a.caption, a.qa))


def test_default_folder_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEO_DATA_DIR", str(tmp_path))
    assert default_dir(TINY) == tmp_path / f"tiny-{TINY.key()}"
    monkeypatch.delenv("MMGEO_DATA_DIR")
    assert default_dir(TINY).parent == REPO_ROOT / "data"


# ----------------------------------------------------------------------------- layout and content


def test_imagefolder_layout_and_rows(reference):
    root, hashes = reference
    assert (root / MANIFEST).exists()
    for split in SPLITS:
        rows = load_split(root, split)
        assert len(rows) == TINY.size(split)
        assert [r["index"] for r in rows] == list(range(len(rows)))
        for r in rows:
            assert {
                "file_name",
                "id",
                "split",
                "family",
                "seed",
                "scene",
                "caption",
                "caption_facts",
                "qa",
                "style",
            } <= set(r)
            assert r["split"] == split and r["family"] in TINY.families and r["caption"]
            assert (root / split / r["file_name"]).exists()  # relative to the split folder
            img = load_image(root, r)
            assert img.size == (48, 48) and img.mode == "RGB"
    pngs = [p for p in hashes if p.endswith(".png")]
    assert len(pngs) == 9


def test_stored_row_re_renders_its_image(reference):
    """The row is the whole truth: scene + style in the row reproduce the PNG exactly."""
    from mmgeo_utils.diagrams.render import render
    from mmgeo_utils.diagrams.scene import Scene
    from mmgeo_utils.diagrams.style import RenderStyle

    root, _ = reference
    row = load_split(root, "val")[1]
    again = render(Scene.from_dict(row["scene"]), RenderStyle.from_dict(row["style"])).image
    assert np.array_equal(np.asarray(again), np.asarray(load_image(root, row)))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_any_worker_count(reference, tmp_path):
    root, hashes = reference
    again = build(tmp_path / "one")
    parallel = build(tmp_path / "two", workers=2)
    assert file_hashes(again) == hashes
    assert file_hashes(parallel) == hashes
    assert _manifest_without_provenance(parallel) == _manifest_without_provenance(root)
    other_seed = DatasetConfig(**{**TINY.to_dict(), "families": tuple(TINY.families), "seed": 8})
    other = build(tmp_path / "three", other_seed)
    assert file_hashes(other) != hashes


# ----------------------------------------------------------------------------- cache


def test_cache_hit_does_not_rebuild(reference, tmp_path, count_shards):
    root = build(tmp_path / "d")
    assert len(count_shards) == len(shards.plan_shards(TINY, SHARD))
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    count_shards.clear()
    assert build(root) == root
    assert build(root, verify="full") == root
    assert count_shards == []
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes


def _truncate_png(root: Path) -> str:
    p = root / "train" / "train-000003.png"
    p.write_bytes(p.read_bytes()[:50])
    return "train-000003.png"


def _delete_png(root: Path) -> str:
    (root / "val" / "val-000001.png").unlink()
    return "val-000001.png is missing"


def _truncate_metadata(root: Path) -> str:
    p = root / "test" / METADATA
    p.write_bytes(p.read_bytes()[:-40])
    return "test/metadata.jsonl"


def _bad_manifest(root: Path) -> str:
    (root / MANIFEST).write_text("{not json")
    return "manifest.json is unreadable"


@pytest.mark.parametrize("corrupt", [_truncate_png, _delete_png, _truncate_metadata, _bad_manifest])
def test_damaged_cache_is_reported_and_rebuilt(reference, tmp_path, corrupt, caplog, count_shards):
    _, hashes = reference
    root = build(tmp_path / "d")
    count_shards.clear()
    expected = corrupt(root)
    problem = check_dataset(root, TINY)
    assert problem is not None and expected in problem
    with caplog.at_level("WARNING", logger="mmgeo_utils.data.build"):
        build(root)
    assert expected in caplog.text, caplog.text
    assert file_hashes(root) == hashes
    assert check_dataset(root, TINY, verify="full") is None
    # only the shard holding a damaged image is remade; metadata and manifests are re-derived
    assert len(count_shards) <= 1


def test_same_size_corruption_needs_full_verify(reference, tmp_path, caplog):
    _, hashes = reference
    root = build(tmp_path / "d")
    p = root / "train" / "train-000000.png"
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF  # same size, different content
    p.write_bytes(bytes(data))
    assert check_dataset(root, TINY, verify="quick") is None  # sizes and metadata still hold
    assert "sha256" in check_dataset(root, TINY, verify="full")
    with caplog.at_level("WARNING", logger="mmgeo_utils.data.build"):
        build(root, verify="full")
    assert "train-000000.png does not match its sha256" in caplog.text
    assert file_hashes(root) == hashes


# ----------------------------------------------------------------------------- resume


def test_interrupted_build_resumes_and_ends_identical(reference, tmp_path, count_shards):
    _, hashes = reference
    root = build(tmp_path / "d")
    (root / MANIFEST).unlink()
    (root / SHARD_DIR / "train-00001.json").unlink()
    count_shards.clear()
    build(root)
    assert count_shards == ["train-00001.json"]
    assert file_hashes(root) == hashes


def test_crash_mid_build_keeps_finished_shards(reference, tmp_path, monkeypatch, count_shards):
    _, hashes = reference
    real = shards.make_sample

    def crash_on_val(config, split, index):
        if split == "val":
            raise KeyboardInterrupt  # the user pressed Ctrl-C while val was being made
        return real(config, split, index)

    monkeypatch.setattr(shards, "make_sample", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "d")
    root = tmp_path / "d"
    assert not (root / MANIFEST).exists()
    assert count_shards == ["train-00000.json", "train-00001.json", "train-00002.json", "val-00000.json"]
    monkeypatch.setattr(shards, "make_sample", real)
    count_shards.clear()
    build(root)
    assert count_shards == ["val-00000.json", "test-00000.json"]  # the train shards were kept
    assert file_hashes(root) == hashes


def test_rebuilding_with_a_smaller_config_removes_leftovers(tmp_path):
    root = build(tmp_path / "d")
    small = DatasetConfig(**{**TINY.to_dict(), "families": tuple(TINY.families), "n_train": 2})
    with pytest.raises(FileExistsError, match="holds the dataset of another config"):  # never replaced silently
        build(root, small)
    build(root, small, overwrite=True)
    assert sorted(p.name for p in (root / "train").iterdir()) == [
        "metadata.jsonl",
        "train-000000.png",
        "train-000001.png",
    ]
    assert check_dataset(root, small, verify="full") is None


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not made by build_dataset"):
        build(tmp_path)


def test_load_split_errors(reference, tmp_path):
    with pytest.raises(FileNotFoundError, match="mmgeo data build"):
        load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_split(tmp_path, "dev")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / METADATA).write_text('{"file_name": "a.png"}\n{"file_na\n')
    with pytest.raises(ValueError, match=r"metadata.jsonl:2 is not valid JSON"):
        load_split(tmp_path, "train")
    assert load_split(tmp_path, "train", limit=1) == [{"file_name": "a.png"}]  # stops before the bad line
    root, _ = reference
    assert load_split(root, "train", limit=3) == load_split(root, "train")[:3]


# ----------------------------------------------------------------------------- CLI


def _run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmgeo_utils", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_cli_data_build(tmp_path):
    out = tmp_path / "smoke"
    proc = _run_cli("data", "build", "--profile", "smoke", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    config = DatasetConfig.from_profile("smoke")
    assert check_dataset(out, config, verify="full") is None
    assert [len(load_split(out, s)) for s in SPLITS] == [48, 16, 16]
    with Image.open(out / "train" / "train-000000.png") as im:
        assert im.size == (64, 64)


def test_cli_bench_diagrams_prints_json_last(tmp_path):
    proc = _run_cli("bench", "diagrams", "--profile", "smoke", "--n", "20", env={"MMGEO_RESULTS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {
        "diagrams_per_s_per_core",
        "diagrams_per_s_total",
        "image_size",
        "render_only_per_s_per_core",
        "details",
    } <= set(result)
    assert result["image_size"] == 128 and result["n_per_core"] == 20
    assert result["diagrams_per_s_per_core"] > 0 and result["diagrams_per_s_total"] > 0
    # not the default measurement: its own file, never the one the README cites
    assert Path(result["results_file"]) == tmp_path / "smoke" / "bench_diagrams_128px_n20.json"


def test_verify_once_trusts_a_check_of_this_process_until_the_manifest_changes(tmp_path, monkeypatch):
    root = build(tmp_path / "d")  # a build counts as checked
    checks = []
    real = ds.check_dataset
    monkeypatch.setattr(ds, "check_dataset", lambda *a, **k: checks.append(a[0]) or real(*a, **k))
    assert build(root, verify="once") == root and build(root, verify="once") == root
    assert checks == []  # trusted: no metadata hashed, no image stat'ed again
    assert build(root) == root and len(checks) == 1  # the default still checks every time
    manifest = root / MANIFEST
    os.utime(manifest, ns=(manifest.stat().st_atime_ns, manifest.stat().st_mtime_ns + 1))  # a rebuild
    assert build(root, verify="once") == root and len(checks) == 2
    assert not ds._verified_earlier(root, dataclasses.replace(TINY, seed=8))  # another config is checked anew
