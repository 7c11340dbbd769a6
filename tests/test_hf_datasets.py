"""A built dataset is a Hugging Face ImageFolder: ``load_dataset("imagefolder", data_dir=root)`` reads it as is."""

import pytest

from mmgeo_utils.data import DatasetConfig, load_split
from mmgeo_utils.diagrams.qa import QA
from mmgeo_utils.diagrams.scene import Fact, Scene

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def hf(smoke_data):
    return datasets.load_dataset("imagefolder", data_dir=str(smoke_data))


def test_every_split_loads_with_its_rows(hf, smoke_data):
    config = DatasetConfig.from_profile("smoke")
    assert {name: len(split) for name, split in hf.items()} == {
        "train": config.size("train"),
        "validation": config.size("val"),
        "test": config.size("test"),
    }


def test_a_row_matches_what_load_split_reads(hf, smoke_data):
    ours = load_split(smoke_data, "test")[3]
    theirs = hf["test"][3]
    assert theirs["id"] == ours["id"] and theirs["caption"] == ours["caption"]
    assert theirs["image"].size == (DatasetConfig.from_profile("smoke").image_size,) * 2
    # typed fields decode to the same facts and answers
    assert [Fact.from_dict(f) for f in theirs["caption_facts"]] == [Fact.from_dict(f) for f in ours["caption_facts"]]
    assert [QA.from_dict(q) for q in theirs["qa"]] == [QA.from_dict(q) for q in ours["qa"]]
    assert Scene.from_json(theirs["scene"]) == Scene.from_dict(ours["scene"])


def test_values_keep_one_type_and_read_back_as_written():
    for fact in (
        Fact("length", ("A", "B"), 90),
        Fact("length", ("A", "B"), 4.5),
        Fact("shape", ("A", "B", "C", "D"), "square"),
        Fact("parallel", ("A", "B", "C", "D")),
    ):
        value = fact.value
        d = fact.to_dict()
        assert d["value"] is None or isinstance(d["value"], float)
        assert d["value_text"] is None or isinstance(d["value_text"], str)
        assert Fact.from_dict(d) == fact
        assert type(Fact.from_dict(d).value) is type(value)
