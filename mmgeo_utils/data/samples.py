"""One sample from its seeds alone: scene, image, caption, QA and (lesson 02) its hard negatives.

:func:`make_sample` is the pure function :mod:`~mmgeo_utils.data.build` runs for every index; a
metadata row is stored with one JSON type per field (:func:`encode_row`, :func:`decode_row`).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..diagrams.captions import describe
from ..diagrams.families import sample_scene
from ..diagrams.qa import make_qa
from ..diagrams.render import render
from ..diagrams.style import sample_style
from ..negatives import PERTURBATIONS, make_image_negatives
from ..negatives.text import make_text_negatives
from .config import SPLITS, DatasetConfig

PNG_OPTIONS = {"format": "PNG", "compress_level": 3, "optimize": False}
SEED_BITS = 53  # seeds stay exact in any JSON reader (JavaScript numbers included)


# ----------------------------------------------------------------------------- one sample


@dataclass(frozen=True)
class SampleSeeds:
    """Independent seeds for each random choice of one sample."""

    scene: int
    style: int
    caption: int
    qa: int
    image_negatives: int
    text_negatives: int


def sample_seeds(config: DatasetConfig, split: str, index: int) -> SampleSeeds:
    """Seeds of sample ``index`` of ``split``: a function of (config.seed, split, index) only.

    ``SeedSequence`` spawn keys give statistically independent streams for every
    (split, index), so splits never share samples and worker order cannot matter.
    """
    ss = np.random.SeedSequence(int(config.seed), spawn_key=(SPLITS.index(split), int(index)))
    words = ss.generate_state(6, dtype=np.uint64) >> np.uint64(64 - SEED_BITS)
    return SampleSeeds(*(int(w) for w in words))


@dataclass
class SampleRecord:
    """One sample: its metadata row and the files it writes (name relative to the split folder → bytes).

    A later lesson adds hard-negative images to ``files`` and links them from ``row``.
    """

    row: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def sample_id(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def encode_png(image) -> bytes:
    """PNG bytes with fixed options (no timestamps, fixed compression): same pixels, same bytes."""
    buf = io.BytesIO()
    image.save(buf, **PNG_OPTIONS)
    return buf.getvalue()


def _jsonable(x: Any) -> Any:
    """Dataclasses (facts, QA pairs) as plain dicts, for the metadata row."""
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if hasattr(x, "__dataclass_fields__"):
        return {k: _jsonable(getattr(x, k)) for k in x.__dataclass_fields__}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def make_scene(config: DatasetConfig, seeds: SampleSeeds):
    """The sample's scene, labels placed (the part negatives will perturb)."""
    return sample_scene(seeds.scene, families=list(config.families or ()))


def make_sample(config: DatasetConfig, split: str, index: int) -> SampleRecord:
    """Everything about one sample, from seeds alone: scene, image, caption, QA.

    Pure: the same arguments give the same record in any process, which is what
    makes the dataset independent of worker count and resumable shard by shard.
    """
    seeds = sample_seeds(config, split, index)
    sid = sample_id(split, index)
    try:
        scene = make_scene(config, seeds)
        style = sample_style(config.image_size, seeds.style)
        if not config.numeric_marks:
            style = dataclasses.replace(style, numeric_marks=False)
        png = encode_png(render(scene, style).image)
        caption = describe(scene, seeds.caption)
        qa = make_qa(scene, seeds.qa)
    except Exception as e:  # name the sample, so the failure can be reproduced alone
        raise RuntimeError(f"sample {sid} (scene seed {seeds.scene}) failed: {e}") from e
    file_name = f"{sid}.png"
    files = {file_name: png}
    row = {
        "file_name": file_name,
        "id": sid,
        "split": split,
        "index": index,
        "family": scene.family,
        "seed": seeds.scene,
        "scene": scene.to_dict(),
        "caption": caption.text,
        "caption_facts": _jsonable(caption.facts),
        "qa": _jsonable(qa),
        "style": style.to_dict(),
    }
    if config.num_negatives:
        try:
            row.update(make_negatives(config, scene, caption, style, seeds, sid, files))
        except Exception as e:
            raise RuntimeError(f"negatives of sample {sid} (scene seed {seeds.scene}) failed: {e}") from e
    return SampleRecord(row=encode_row(row), files=files)


# Every field of a metadata row keeps one JSON type in every row of every split, so Arrow, and so
# Hugging Face ``datasets`` (``load_dataset("imagefolder", data_dir=root)``), reads metadata.jsonl
# as a table. Two kinds of field would break that and are stored encoded; ``load_split`` decodes
# them, so Python code sees the plain objects:
SCENE_FIELD = "scene"  # a scene's points are keyed by their labels: stored as Scene.to_json()
COUNT_FIELDS = ("image_negative_skips", "text_negative_rejections", "retrieval_counts")  # {reason: n} maps,
# whose keys vary by row: stored as [{"reason": str, "count": int}, ...]


def encode_row(row: dict) -> dict:
    """A row as metadata.jsonl stores it (see ``SCENE_FIELD``, ``COUNT_FIELDS``)."""
    out = dict(row)
    if isinstance(out.get(SCENE_FIELD), dict):
        out[SCENE_FIELD] = json.dumps(out[SCENE_FIELD], sort_keys=True, separators=(",", ":"))
    if "image_negatives" in out:
        out["image_negatives"] = [
            {**n, SCENE_FIELD: json.dumps(n[SCENE_FIELD], sort_keys=True, separators=(",", ":"))}
            if isinstance(n.get(SCENE_FIELD), dict)
            else n
            for n in out["image_negatives"]
        ]
    for name in COUNT_FIELDS:
        if isinstance(out.get(name), dict):
            out[name] = [{"reason": k, "count": int(v)} for k, v in sorted(out[name].items())]
    return out


def decode_row(row: dict) -> dict:
    """The inverse of :func:`encode_row`: scenes as dicts, counts as ``{reason: count}``."""
    out = dict(row)
    if isinstance(out.get(SCENE_FIELD), str):
        out[SCENE_FIELD] = json.loads(out[SCENE_FIELD])
    if "image_negatives" in out:
        out["image_negatives"] = [
            {**n, SCENE_FIELD: json.loads(n[SCENE_FIELD])} if isinstance(n.get(SCENE_FIELD), str) else n
            for n in out["image_negatives"]
        ]
    for name in COUNT_FIELDS:
        if isinstance(out.get(name), list):
            out[name] = {c["reason"]: c["count"] for c in out[name]}
    return out


NEGATIVE_DIR = "negatives"  # inside each split folder: negative images are not samples of their own


def make_negatives(
    config: DatasetConfig, scene, caption, style, seeds: SampleSeeds, sid: str, files: dict[str, bytes]
) -> dict[str, Any]:
    """The sample's image and rule hard negatives (lesson 02), linked from its row.

    Image negatives are rendered with the positive's own style, so the only
    difference a model can see is the perturbed fact. Skipped perturbations and
    rejected rule edits are counted in the row: nothing is dropped silently.
    """
    image_negs, skips = make_image_negatives(
        scene,
        config.num_negatives,
        seeds.image_negatives,
        allow_drastic=config.allow_drastic,
        style=style,
        caption_seed=seeds.caption,
    )
    image_rows = []
    for j, neg in enumerate(image_negs):
        name = f"{NEGATIVE_DIR}/{sid}-img{j}.png"
        files[name] = encode_png(neg.image if neg.image is not None else render(neg.scene, style, frame_of=scene).image)
        image_rows.append(
            {
                "file_name": name,
                "perturbation": neg.perturbation,
                "category": PERTURBATIONS[neg.perturbation].category,
                "change": neg.describe_change(),
                "removed": _jsonable(neg.removed),
                "added": _jsonable(neg.added),
                "caption": neg.caption.text,
                "scene": neg.scene.to_dict(),
            }
        )
    text_negs, rejections = make_text_negatives(
        scene, caption, config.num_negatives, seeds.text_negatives, caption_seed=seeds.caption
    )
    text_rows = [
        {"text": t.text, "error_type": t.error_type, "facts": _jsonable(t.facts), "edits": _jsonable(t.edits)}
        for t in text_negs
    ]
    return {
        "image_negatives": image_rows,
        "image_negative_skips": dict(sorted(skips.items())),
        "text_negatives": text_rows,
        "text_negative_rejections": dict(sorted(rejections.items())),
    }
