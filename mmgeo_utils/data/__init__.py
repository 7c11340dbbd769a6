"""Lessons 01-02: the dataset, built from seeds, and the tensors training reads from it.

=================  ===================================================================
module             what it holds
=================  ===================================================================
``config``         :class:`DatasetConfig` (what decides the content, its cache key) and
                   the folder layout's names
``samples``        one sample from its seeds: scene, image, caption, QA, hard negatives
``shards``         the files a build writes shard by shard, and the cache check
``build``          ``build_dataset``: cached, parallel, byte-deterministic, resumable;
                   the metadata files and the retrieval-mining step
``read``           rows, images, manifest and fingerprints of a built dataset
``contrastive``    torch Dataset, collate and batch order: positives with their negatives
=================  ===================================================================

``contrastive`` imports torch, so its names load on first use (``from mmgeo_utils.data import
HardNegativeDataset``): ``mmgeo data build`` and reading a split never import torch.
"""

from .build import add_retrieval_negatives, build_dataset, default_workers
from .config import GENERATOR_VERSION, SPLITS, DatasetConfig, data_root, default_dir
from .read import (
    file_hashes,
    image_path,
    iter_split,
    load_image,
    load_split,
    read_manifest,
    split_fingerprint,
    verify_dataset,
)
from .samples import encode_png, make_sample, make_scene, sample_seeds
from .shards import check_dataset

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "DatasetConfig",
    "add_retrieval_negatives",
    "build_dataset",
    "check_dataset",
    "data_root",
    "default_dir",
    "default_workers",
    "encode_png",
    "file_hashes",
    "image_path",
    "iter_split",
    "load_image",
    "load_split",
    "make_sample",
    "make_scene",
    "read_manifest",
    "sample_seeds",
    "split_fingerprint",
    "verify_dataset",
]

_CONTRASTIVE = (
    "BATCHING",
    "CLIP_MEAN",
    "CLIP_STD",
    "HardNegativeDataset",
    "NegativeConfig",
    "StepBatchSampler",
    "default_transform",
    "make_collate",
    "normalize_images",
)


def __getattr__(name: str):
    """The torch side of the data stage (:mod:`.contrastive`), imported when first asked for."""
    if name in _CONTRASTIVE:
        from . import contrastive  # local: torch loads only when a torch dataset is asked for

        return getattr(contrastive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
