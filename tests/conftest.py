"""Fixtures shared by the training, evaluation and AC-score tests."""

import pytest

from mmgeo_utils.data import DatasetConfig, build_dataset


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """The smoke profile's dataset with its hard negatives, built once per test session."""
    return build_dataset(
        DatasetConfig.from_profile("smoke"),
        out_dir=tmp_path_factory.mktemp("smoke") / "data",
        workers=1,
        progress=False,
    )


@pytest.fixture(autouse=True)
def _runs_and_results_in_tmp(tmp_path, monkeypatch):
    """No test writes runs, results or figures into the repository."""
    monkeypatch.setenv("MMGEO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MMGEO_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("MMGEO_FIGURES_DIR", str(tmp_path / "figures"))
