"""Batches for hard-negative contrastive training: (image, caption, image negatives, text negatives).

A built dataset (:func:`mmgeo_utils.data.build.build_dataset` with ``num_negatives > 0``)
links every positive to its hard negatives in ``metadata.jsonl``. This module turns
those rows into fixed-shape tensors the losses of :mod:`mmgeo_utils.clip.losses` take:

============================  ===================  =============================================
key                           shape                meaning
============================  ===================  =============================================
``image``                     (B, C, H, W)         the positive diagrams
``text``                      (B, L)               their captions, tokenised
``image_negatives``           (B, K_i, C, H, W)    each sample's perturbed diagrams
``image_negative_mask``       (B, K_i) bool        False where a sample had fewer negatives
``text_negatives``            (B, K_t, L)          rule negatives by type slot, retrieval, random
``text_negative_mask``        (B, K_t) bool        False for empty slots
============================  ===================  =============================================

Text negatives have a **fixed slot layout**: one column per rule error type
(label, shape, relation, number), then the retrieval negatives, then the *random* ones: the
captions of K other diagrams of the split drawn at random, fixed per sample (MMGeoLM's
"Random" arm of Table 3: more negatives, none of them hard). CE-CLIP's CMR loss
keeps one adaptive threshold per negative type, which only means something if
column k holds the same kind of negative for every sample. A missing negative is
an empty, masked slot — never a silently repeated or invented one.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..negatives.text import ERROR_TYPES
from .read import iter_split

# open_clip's normalisation for models trained from OpenAI-style preprocessing
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NEGATIVE_SOURCES = ("image", "rule", "retrieval")  # the hard negatives a build stores
RANDOM_SOURCE = "random"  # captions of other diagrams of the split: negatives that are not hard
KNOWN_SOURCES = (*NEGATIVE_SOURCES, RANDOM_SOURCE)
RANDOM_NEGATIVE_SEED = 20250526  # the draw of each sample's random captions; fixed, so every run sees the same


def default_transform(image_size: int | None = None, normalize: bool = True) -> Callable[[Image.Image], torch.Tensor]:
    """PIL → normalised tensor; resized only when ``image_size`` differs from the stored images.

    ``normalize=False`` stops at the uint8 pixels (C, H, W), for :func:`normalize_images` to finish
    on the device: what ``train`` does. Why: loader workers hand batches over through shared
    memory, and float batches are 4× the bytes (8 workers prefetching 256-image float batches of
    224 px need ~5 GB of ``/dev/shm``, where Docker gives 64 MB), and the host-to-GPU copy shrinks
    by the same factor.
    """
    from torchvision import transforms as T  # local: torchvision takes about a second to import

    steps: list[Any] = []
    if image_size is not None:
        steps.append(T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC))
    steps += [T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)] if normalize else [T.PILToTensor()]
    return T.Compose(steps)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (..., C, H, W) → the tensor ``default_transform()`` makes, bit for bit; float input
    is returned as it is (already normalised).

    The same operations in the same order as torchvision's ``ToTensor`` (``/ 255`` in float32) and
    ``Normalize`` (``- mean``, then ``/ std``), so moving them from the loader to the device changes no
    number.
    """
    if images.dtype != torch.uint8:
        return images
    x = images.to(torch.float32).div(255)
    mean = torch.as_tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.as_tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


@dataclass(frozen=True)
class NegativeConfig:
    """Which negatives a batch carries, and how many (the ablations of lesson 08 vary these)."""

    sources: tuple[str, ...] = NEGATIVE_SOURCES
    num_image: int = 4
    num_retrieval: int = 4
    rule_types: tuple[str, ...] = ERROR_TYPES
    num_random: int = 4

    def __post_init__(self) -> None:
        unknown = set(self.sources) - set(KNOWN_SOURCES)
        if unknown:
            raise ValueError(f"unknown negative source(s) {sorted(unknown)}; known: {', '.join(KNOWN_SOURCES)}")
        bad = set(self.rule_types) - set(ERROR_TYPES)
        if bad:
            raise ValueError(f"unknown rule error type(s) {sorted(bad)}; known: {', '.join(ERROR_TYPES)}")

    @property
    def text_slots(self) -> list[str]:
        """Column names of the text negatives: ``rule:label`` ..., ``retrieval:0`` ..., then ``random:0`` ..."""
        slots = [f"rule:{t}" for t in self.rule_types] if "rule" in self.sources else []
        if "retrieval" in self.sources:
            slots += [f"retrieval:{j}" for j in range(self.num_retrieval)]
        if RANDOM_SOURCE in self.sources:
            slots += [f"random:{j}" for j in range(self.num_random)]
        return slots

    @property
    def image_slots(self) -> int:
        return self.num_image if "image" in self.sources else 0


def random_partners(n: int, k: int, split: str) -> np.ndarray:
    """For each of ``n`` samples, ``k`` distinct *other* samples drawn at random, (n, k) indices.

    The draw depends only on the split's name and size (seeded by :data:`RANDOM_NEGATIVE_SEED`), not on
    the training seed: like the stored hard negatives, a sample's random negatives are part of the data.
    """
    if k and n <= k:
        raise ValueError(f"{k} random negatives per sample need more than {k} samples in the split; it has {n}")
    rng = np.random.default_rng([RANDOM_NEGATIVE_SEED, zlib.crc32(split.encode())])
    picks = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        j = rng.choice(n - 1, size=k, replace=False)
        picks[i] = j + (j >= i)  # skip the sample itself
    return picks


def text_negative_slots(row: dict, config: NegativeConfig) -> list[str | None]:
    """The row's stored text negatives in the fixed slot layout (rule, then retrieval), None where a slot
    is empty. The random slots, which need the other rows' captions, are filled by the dataset."""
    out: list[str | None] = []
    if "rule" in config.sources:
        by_type: dict[str, str] = {}
        for neg in row.get("text_negatives", []):
            by_type.setdefault(neg["error_type"], neg["text"])
        out += [by_type.get(t) for t in config.rule_types]
    if "retrieval" in config.sources:
        found = [n["text"] for n in row.get("retrieval_negatives", [])][: config.num_retrieval]
        out += found + [None] * (config.num_retrieval - len(found))
    return out


class StringColumn:
    """Strings packed into one UTF-8 buffer and an int64 offset table: two objects, none per string.

    Why not a list of str: tens of thousands of rows of Python objects cost several times their text
    in memory, and every forked loader worker ends up copying the pages that hold them, because
    reference counts and the garbage collector write to each object it touches. Two arrays are two
    objects; workers share their pages untouched.
    """

    def __init__(self, strings: Iterable[str] = ()):
        self._buffer, self._ends = bytearray(), array("q", [0])
        self.extend(strings)

    def append(self, text: str) -> None:
        self._buffer += text.encode("utf-8")
        self._ends.append(len(self._buffer))

    def extend(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.append(text)

    @property
    def data(self) -> np.ndarray:
        return np.frombuffer(self._buffer, dtype=np.uint8)

    @property
    def offsets(self) -> np.ndarray:
        return np.frombuffer(self._ends, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._buffer[self._ends[i] : self._ends[i + 1]].decode("utf-8")

    @property
    def nbytes(self) -> int:
        return len(self._buffer) + self._ends.itemsize * len(self._ends)


class HardNegativeDataset(torch.utils.data.Dataset):
    """One split of a built dataset, each item a positive with its hard negatives.

    Items are dicts of an image tensor, a caption string, a (K_i, C, H, W) tensor of
    negative images with its mask, and the text negatives as a fixed-length list of
    strings (``""`` in masked slots) with their mask. Tokenisation happens in
    :func:`make_collate`, once per batch.

    Only what a step needs is kept, read from the metadata one row at a time: ids, file names,
    captions and text-negative slots in :class:`StringColumn` s, masks in numpy arrays. A gpu-sized
    split's rows (scenes, facts, QA, negatives' scenes: ~32 KB of JSON each) are never held as dicts.
    """

    def __init__(
        self,
        root: Path | str,
        split: str,
        negatives: NegativeConfig | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.negatives = negatives or NegativeConfig()
        self.transform = transform or default_transform()
        k, n_text = self.negatives.image_slots, len(self.negatives.text_slots)
        n_random = self.negatives.num_random if RANDOM_SOURCE in self.negatives.sources else 0
        n_stored = n_text - n_random
        self.ids, self.file_names, self.captions = StringColumn(), StringColumn(), StringColumn()
        self.image_negative_files, self.text_negatives = StringColumn(), StringColumn()
        image_counts, text_masks = array("b"), array("b")
        for i, row in enumerate(iter_split(self.root, split)):
            if i == 0 and set(self.negatives.sources) & set(NEGATIVE_SOURCES) and "image_negatives" not in row:
                raise ValueError(
                    f"{self.root} was built without negatives (num_negatives=0); "
                    "build it with DatasetConfig.from_profile(profile) or pass NegativeConfig(sources=())"
                )
            self.ids.append(row["id"])
            self.file_names.append(row["file_name"])
            self.captions.append(row["caption"])
            names = [n["file_name"] for n in row.get("image_negatives", [])[:k]]
            image_counts.append(len(names))
            self.image_negative_files.extend(names + [""] * (k - len(names)))
            slots = text_negative_slots(row, self.negatives)
            self.text_negatives.extend(t or "" for t in slots)
            text_masks.extend(t is not None for t in slots)
        self.image_negative_counts = np.frombuffer(image_counts, dtype=np.int8)
        stored_mask = np.frombuffer(text_masks, dtype=np.int8).astype(bool).reshape(len(self.ids), n_stored)
        # the random slots hold indices of other samples, whose captions are looked up per item; a partner
        # whose caption is word for word the sample's own would be a false negative, so its slot is masked
        self.random_partners = random_partners(len(self.ids), n_random, split) if n_random else None
        random_mask = np.ones((len(self.ids), n_random), dtype=bool)
        if self.random_partners is not None:
            for i, partners in enumerate(self.random_partners):
                own = self.captions[i]
                random_mask[i] = [self.captions[int(j)] != own for j in partners]
        self.text_negative_mask = np.concatenate([stored_mask, random_mask], axis=1)
        self._k_text, self._k_stored = n_text, n_stored

    def __len__(self) -> int:
        return len(self.file_names)

    def _image(self, file_name: str) -> torch.Tensor:
        path = self.root / self.split / file_name
        try:
            with Image.open(path) as im:
                return self.transform(im.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for a truncated or garbled PNG omit the file
            raise ValueError(
                f"cannot read image {path} ({e}): the dataset is damaged; `mmgeo data build` with "
                f"--verify full finds and rebuilds what is broken"
            ) from None

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self._image(self.file_names[i])
        k = self.negatives.image_slots
        negs = [self._image(self.image_negative_files[i * k + j]) for j in range(int(self.image_negative_counts[i]))]
        image_mask = torch.zeros(k, dtype=torch.bool)
        image_mask[: len(negs)] = True
        image_negatives = torch.zeros((k, *image.shape), dtype=image.dtype)
        if negs:
            image_negatives[: len(negs)] = torch.stack(negs)
        kt = self._k_stored
        texts = [self.text_negatives[i * kt + j] for j in range(kt)]
        if self.random_partners is not None:
            texts += [self.captions[int(j)] for j in self.random_partners[i]]
        return {
            "id": self.ids[i],
            "image": image,
            "caption": self.captions[i],
            "image_negatives": image_negatives,
            "image_negative_mask": image_mask,
            "text_negatives": texts,
            "text_negative_mask": torch.from_numpy(self.text_negative_mask[i].copy()),
        }

    def neighbour_lists(self) -> list[list[int]]:
        """:func:`neighbour_lists` of this split, read again from its metadata (hard batching only)."""
        return neighbour_lists(iter_split(self.root, self.split))


class Collate:
    """Stacks tensors and tokenises captions and text negatives into one batch.

    ``tokenizer`` is open_clip's (``open_clip.get_tokenizer(name)``): a list of strings in, a
    (N, L) tensor of token ids out. A class rather than a closure so it pickles: DataLoader
    workers started by *spawn* (macOS, or a run inside ``train_all``'s processes) receive it pickled.
    """

    def __init__(self, tokenizer: Callable[[Sequence[str]], torch.Tensor]):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict]) -> dict[str, Any]:
        b = len(items)
        k_t = len(items[0]["text_negatives"])
        batch = {
            "id": [it["id"] for it in items],
            "image": torch.stack([it["image"] for it in items]),
            "text": self.tokenizer([it["caption"] for it in items]),
            "image_negatives": torch.stack([it["image_negatives"] for it in items]),
            "image_negative_mask": torch.stack([it["image_negative_mask"] for it in items]),
            "text_negative_mask": torch.stack([it["text_negative_mask"] for it in items]),
        }
        if k_t:
            flat = [t for it in items for t in it["text_negatives"]]
            tokens = self.tokenizer(flat)
            batch["text_negatives"] = tokens.view(b, k_t, tokens.shape[-1])
        else:
            batch["text_negatives"] = batch["text"].new_zeros((b, 0, batch["text"].shape[-1]))
        return batch


def make_collate(tokenizer: Callable[[Sequence[str]], torch.Tensor]) -> Collate:
    """The collate function of a :class:`HardNegativeDataset` loader (see :class:`Collate`)."""
    return Collate(tokenizer)


# ----------------------------------------------------------------------------- batch order


BATCHING = ("random", "hard")


def neighbour_lists(rows: Iterable[dict]) -> list[list[int]]:
    """For each row, the indices of the rows its retrieval negatives came from (same split)."""
    ids: list[str] = []
    linked: list[list[str]] = []
    for r in rows:  # one pass, keeping only ids: rows may be streamed from the metadata
        ids.append(r["id"])
        linked.append([n["id"] for n in r.get("retrieval_negatives", [])])
    index = {rid: i for i, rid in enumerate(ids)}
    return [[index[j] for j in js if j in index] for js in linked]


def hard_order(neighbours: list[list[int]], rng: np.random.Generator) -> np.ndarray:
    """An epoch's sample order in which consecutive samples are each other's hard negatives.

    Breadth-first walks over the retrieval-neighbour graph from random starting samples: each
    walk lists a sample, then its unvisited neighbours, their neighbours, and so on, so a batch
    cut from the order holds clusters of captions that differ in a few facts (MMGeoLM Table 6,
    "batches made of mutual hard negatives"). Every sample appears exactly once per epoch.
    """
    n = len(neighbours)
    seen = np.zeros(n, dtype=bool)
    order: list[int] = []
    for start in rng.permutation(n):
        if seen[start]:
            continue
        seen[start] = True
        queue = [int(start)]
        while queue:
            i = queue.pop(0)
            order.append(i)
            for j in rng.permutation(neighbours[i]) if neighbours[i] else ():
                if not seen[j]:
                    seen[j] = True
                    queue.append(int(j))
    return np.asarray(order, dtype=np.int64)


class StepBatchSampler(torch.utils.data.Sampler):
    """The batches of steps ``start, start+1, ...``: a pure function of (seed, step).

    Batch ``s`` is cut from epoch ``s // steps_per_epoch``'s order, which comes from
    ``np.random.default_rng([seed, epoch])``, so a run resumed at step ``s`` sees exactly the
    batches an uninterrupted run would have (no DataLoader state to save). Under DDP each rank
    takes its contiguous slice of the *global* batch, so the global batch, and with gathered
    features the loss, does not depend on the number of processes. The last incomplete batch
    of an epoch is dropped, as in open_clip.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        steps: int,
        *,
        seed: int,
        start: int = 0,
        batching: str = "random",
        neighbours: list[list[int]] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batching not in BATCHING:
            raise ValueError(f"unknown batching {batching!r}; known: {', '.join(BATCHING)}")
        if batch_size > n:
            raise ValueError(f"batch of {batch_size} samples but the split has only {n}")
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} processes")
        if batching == "hard" and neighbours is None:
            raise ValueError("batching='hard' needs the retrieval neighbours of every sample")
        self.n, self.batch_size, self.steps, self.seed, self.start = n, batch_size, steps, seed, start
        self.batching, self.neighbours, self.rank, self.world_size = batching, neighbours, rank, world_size
        self.steps_per_epoch = n // batch_size
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = (
                hard_order(self.neighbours, rng)
                if self.batching == "hard"  # type: ignore[arg-type]
                else rng.permutation(self.n)
            )
            self._epoch = epoch
        return self._order

    def global_batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        return order[k * self.batch_size : (k + 1) * self.batch_size].tolist()

    def __iter__(self):
        local = self.batch_size // self.world_size
        for step in range(self.start, self.steps):
            batch = self.global_batch(step)
            yield batch[self.rank * local : (self.rank + 1) * local]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)
