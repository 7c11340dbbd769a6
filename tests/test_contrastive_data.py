"""Negatives written beside positives, and the batches the losses consume."""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from mmgeo_utils.data import DatasetConfig, build_dataset, load_split
from mmgeo_utils.data.contrastive import HardNegativeDataset, NegativeConfig, make_collate, text_negative_slots
from mmgeo_utils.diagrams.facts import check_fact
from mmgeo_utils.diagrams.scene import Fact, Scene, fact_set

K = 2


def _config(**kw):
    base = dict(
        name="neg", image_size=64, n_train=10, n_val=4, n_test=4, seed=5, num_negatives=K, retrieval_candidates=6
    )
    return DatasetConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_dataset(_config(), out_dir=tmp_path_factory.mktemp("neg") / "data", workers=1, progress=False)


def _true_of(scene: Scene, facts) -> bool:
    try:
        return all(check_fact(scene, f) for f in facts)
    except ValueError:  # names a point the image does not have: false of it
        return False


def test_image_negatives_are_linked_rendered_and_differ_in_one_declared_change(built):
    n_found = 0
    for row in load_split(built, "train"):
        pos = Scene.from_dict(row["scene"])
        pixels = np.asarray(Image.open(built / "train" / row["file_name"]))
        assert len(row["image_negatives"]) + row["image_negative_skips"].get("shortfall", 0) == K
        for neg in row["image_negatives"]:
            n_found += 1
            path = built / "train" / neg["file_name"]
            assert path.parent.name == "negatives"
            assert not np.array_equal(np.asarray(Image.open(path)), pixels), neg["change"]
            negative = Scene.from_dict(neg["scene"])
            removed = fact_set(Fact.from_dict(f) for f in neg["removed"])
            added = fact_set(Fact.from_dict(f) for f in neg["added"])
            if neg["perturbation"] != "relabel":
                assert fact_set(pos.facts) - fact_set(negative.facts) == removed
                assert fact_set(negative.facts) - fact_set(pos.facts) == added
            assert removed != added
    assert n_found >= K * 5  # most samples get their K negatives


def test_every_rule_and_retrieval_negative_is_false_of_its_image(built):
    for split in ("train", "val"):
        rows = load_split(built, split)
        by_id = {r["id"]: r for r in rows}
        for row in rows:
            scene = Scene.from_dict(row["scene"])
            assert row["text_negatives"], row["id"]
            for neg in row["text_negatives"]:
                assert neg["text"] != row["caption"]
                assert not _true_of(scene, [Fact.from_dict(f) for f in neg["facts"]])
            for neg in row["retrieval_negatives"]:
                other = by_id[neg["id"]]  # retrieval never crosses splits
                assert other["id"] != row["id"] and neg["text"] == other["caption"]
                assert not _true_of(scene, [Fact.from_dict(f) for f in other["caption_facts"]])
            assert sum(row["retrieval_counts"].values()) == min(6, len(rows) - 1)


def test_negatives_do_not_change_the_positives(built, tmp_path):
    plain = build_dataset(
        _config(name="plain", num_negatives=0, retrieval_candidates=0),
        out_dir=tmp_path / "p",
        workers=1,
        progress=False,
    )
    assert _config().key() != _config(num_negatives=0).key()
    for a, b in zip(load_split(built, "test"), load_split(plain, "test")):
        assert a["caption"] == b["caption"] and a["scene"] == b["scene"]
        assert (built / "test" / a["file_name"]).read_bytes() == (plain / "test" / b["file_name"]).read_bytes()
        assert "image_negatives" not in b


def test_text_slots_are_fixed_by_type_then_retrieval(built):
    cfg = NegativeConfig(num_image=K, num_retrieval=3)
    assert cfg.text_slots == [
        "rule:label",
        "rule:shape",
        "rule:relation",
        "rule:number",
        "retrieval:0",
        "retrieval:1",
        "retrieval:2",
    ]
    row = load_split(built, "train")[0]
    slots = text_negative_slots(row, cfg)
    types = {n["error_type"]: n["text"] for n in row["text_negatives"]}
    for t, text in zip(("label", "shape", "relation", "number"), slots):
        assert text == types.get(t)
    assert slots[4:6] == [n["text"] for n in row["retrieval_negatives"]][:2]
    assert slots[6] is None  # K=2 retrieval negatives were mined; the third slot stays empty


def test_batches_have_the_shapes_the_losses_take(built):
    cfg = NegativeConfig(num_image=K, num_retrieval=K)
    ds = HardNegativeDataset(built, "train", cfg)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, shuffle=False, collate_fn=make_collate(open_clip.get_tokenizer("ViT-B-32"))
    )
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 64, 64)
    assert batch["text"].shape == (4, 77)
    assert batch["image_negatives"].shape == (4, K, 3, 64, 64)
    assert batch["image_negative_mask"].shape == (4, K)
    assert batch["text_negatives"].shape == (4, 4 + K, 77)
    assert batch["text_negative_mask"].shape == (4, 4 + K)
    # a masked image slot is all zeros, an unmasked one is a real diagram
    m = batch["image_negative_mask"]
    assert torch.all(batch["image_negatives"][~m] == 0)
    assert torch.all(batch["image_negatives"][m].flatten(1).std(dim=1) > 0)
    # an empty text slot tokenises to start/end tokens only
    empty = batch["text_negatives"][~batch["text_negative_mask"]]
    assert torch.all((empty != 0).sum(dim=-1) == 2)


def test_random_negatives_are_other_diagrams_captions_fixed_per_sample(built):
    """MMGeoLM's "Random" arm: K captions of other diagrams of the split, in slots after the hard ones."""
    cfg = NegativeConfig(sources=("rule", "random"), num_random=3)
    assert cfg.text_slots[4:] == ["random:0", "random:1", "random:2"]
    ds = HardNegativeDataset(built, "train", cfg)
    again = HardNegativeDataset(built, "train", cfg)
    captions = [r["caption"] for r in load_split(built, "train")]
    for i in range(len(ds)):
        item = ds[i]
        rand = item["text_negatives"][4:]
        partners = ds.random_partners[i]
        assert len(set(partners.tolist())) == 3 and i not in partners  # distinct, never the sample itself
        assert rand == [captions[j] for j in partners]
        assert item["text_negative_mask"][4:].tolist() == [c != item["caption"] for c in rand]
        assert item["text_negatives"] == again[i]["text_negatives"]  # the draw is part of the data
    assert not np.array_equal(ds.random_partners, HardNegativeDataset(built, "val", cfg).random_partners[: len(ds)])
    # random alone needs no stored negatives, and a split too small for K is refused by name
    only = HardNegativeDataset(built, "val", NegativeConfig(sources=("random",), num_random=2))
    assert only[0]["text_negatives"] != [] and only[0]["image_negatives"].shape[0] == 0
    with pytest.raises(
        ValueError, match="5 random negatives per sample need more than 5 samples in the split; it has 4"
    ):
        HardNegativeDataset(built, "val", NegativeConfig(sources=("random",), num_random=5))


def test_only_some_sources(built):
    ds = HardNegativeDataset(built, "val", NegativeConfig(sources=("rule",), num_image=K))
    item = ds[0]
    assert item["image_negatives"].shape[0] == 0 and len(item["text_negatives"]) == 4
    with pytest.raises(ValueError, match="unknown negative source"):
        NegativeConfig(sources=("imagee",))


def test_positives_only_dataset_is_a_clear_error(tmp_path):
    plain = build_dataset(
        _config(name="plain", n_train=2, n_val=1, n_test=1, num_negatives=0, retrieval_candidates=0),
        out_dir=tmp_path / "p",
        workers=1,
        progress=False,
    )
    with pytest.raises(ValueError, match="built without negatives"):
        HardNegativeDataset(plain, "train")


def test_uint8_batches_normalised_on_the_device_equal_todays_float_batches(built):
    """Loader workers send uint8 pixels (4x less shared memory); normalize_images finishes the job
    on the device with exactly ToTensor's and Normalize's arithmetic."""
    from mmgeo_utils.clip import encode_batch
    from mmgeo_utils.data.contrastive import default_transform, normalize_images

    negatives = NegativeConfig(num_image=K, num_retrieval=K)
    collate = make_collate(open_clip.get_tokenizer("ViT-B-32"))
    floats = HardNegativeDataset(built, "train", negatives, transform=default_transform())
    pixels = HardNegativeDataset(built, "train", negatives, transform=default_transform(normalize=False))
    a, b = collate([floats[i] for i in range(4)]), collate([pixels[i] for i in range(4)])
    assert b["image"].dtype == torch.uint8 and b["image_negatives"].dtype == torch.uint8
    assert a["image"].dtype == torch.float32 and b["image"].nbytes * 4 == a["image"].nbytes
    for key in ("image", "image_negatives"):
        assert torch.equal(normalize_images(b[key]), a[key])  # bit for bit
    assert normalize_images(a["image"]) is a["image"]  # float input is already normalised

    seen = []

    class Probe(torch.nn.Module):  # records what encode_batch hands the model
        def forward(self, image, text):
            seen.append(image)
            n = image.shape[0]
            return torch.zeros(n, 3), torch.zeros(text.shape[0], 3), torch.tensor(1.0)

    encode_batch(Probe(), a, torch.device("cpu"))
    encode_batch(Probe(), b, torch.device("cpu"))
    assert torch.equal(seen[0], seen[1])


def test_the_dataset_keeps_compact_columns_that_give_back_each_rows_fields(built):
    """No row dicts are held: ids, file names, captions and text slots live in packed string columns,
    and every item is what the metadata row says."""
    from mmgeo_utils.data.contrastive import StringColumn

    negatives = NegativeConfig(num_image=K, num_retrieval=K)
    d = HardNegativeDataset(built, "train", negatives)
    rows = load_split(built, "train")
    assert not hasattr(d, "rows") and isinstance(d.captions, StringColumn) and len(d) == len(rows)
    for i, row in enumerate(rows):
        item = d[i]
        assert item["id"] == row["id"] and item["caption"] == row["caption"]
        slots = text_negative_slots(row, negatives)
        assert item["text_negatives"] == [t or "" for t in slots]
        assert item["text_negative_mask"].tolist() == [t is not None for t in slots]
        assert item["image_negative_mask"].sum() == min(K, len(row["image_negatives"]))
    column = StringColumn(["", "∠ABC = 40°", "triangle O R S"])
    assert [column[i] for i in range(3)] == ["", "∠ABC = 40°", "triangle O R S"] and len(column) == 3
    assert column.nbytes < 100


def test_hard_batching_neighbours_are_read_again_from_the_metadata(built):
    from mmgeo_utils.data.contrastive import neighbour_lists

    d = HardNegativeDataset(built, "train", NegativeConfig(num_image=K, num_retrieval=K))
    assert d.neighbour_lists() == neighbour_lists(load_split(built, "train"))
    assert any(d.neighbour_lists())
