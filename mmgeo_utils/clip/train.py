"""Training CLIP and MMCLIP with open_clip: the loop of lesson 04 and ``mmgeo train-clip``.

One function, :func:`train`, runs every variant the course compares; they differ only in
:class:`TrainConfig`:

* ``loss``: ``clip`` (in-batch symmetric InfoNCE), ``negclip`` (in-batch plus each sample's own
  hard negatives as extra candidates), ``mmclip`` (in-batch CLIP *plus* the paper's per-anchor
  loss, one positive against only its own negatives, MMGeoLM §3.3 "IB+MM"), ``mmclip+imc_cmr``
  (that, plus CE-CLIP's intra-modal contrast and adaptive rank loss);
* ``negatives``: any subset of image, rule, retrieval; ``num_negatives`` K per sample;
* ``hard_weight``: for the ``mmclip`` losses, the weight of the hard-negative term added to
  in-batch CLIP (1 in the paper): the knob that trades fine-grained accuracy against retrieval;
* ``batching``: ``random``, or ``hard`` (batches of samples that are each other's retrieval
  neighbours, MMGeoLM Table 6);
* ``init``: start from an earlier run's weights (the paper's two-stage recipe: plain in-batch CLIP
  first, then hard negatives from that checkpoint).

**A fair budget.** ``images_per_step`` counts every image the vision tower encodes in a step,
negatives included: plain CLIP gets batches of ``images_per_step`` diagrams, a run with K image
negatives per sample gets ``images_per_step / (1 + K)`` positives. So a comparison at equal
``images_per_step`` and ``steps`` gives both models the same vision compute.

The loop is the standard one, written out because it is the lesson: AdamW without weight decay
on gains, biases and the logit scale (as open_clip), cosine schedule with linear warm-up, mixed
precision (bf16 autocast on GPUs that have it, fp16 with a grad scaler on older ones), gradient accumulation, gradient clipping, logit scale clamped
at 100, a tqdm bar with throughput, periodic validation, metrics to CSV, and checkpoints in
safetensors (:mod:`mmgeo_utils.clip.checkpoint`). Resuming restores model, optimizer, scheduler, loss
state and RNGs, and the batch order is a pure function of (seed, step)
(:class:`~mmgeo_utils.data.contrastive.StepBatchSampler`), so an interrupted run that resumes
ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.contrastive import (
    BATCHING,
    NEGATIVE_SOURCES,
    HardNegativeDataset,
    NegativeConfig,
    StepBatchSampler,
    default_transform,
    make_collate,
    normalize_images,
)
from ..profiles import get_profile
from ..repro import REPO_ROOT, atomic_write_text, check_device, cpu_threads, provenance, seed_everything
from .checkpoint import FORMAT as TRAIN_STATE_FORMAT
from .checkpoint import CheckpointError, describe_mismatch, load_training_state, save_model, save_training_state
from .distributed import DistInfo, barrier, gather, gather_no_grad, init_distributed
from .evaluate import eval_workers
from .losses import HardNegativeLoss, clip_loss

log = logging.getLogger(__name__)

LOSSES = ("clip", "negclip", "mmclip", "mmclip+imc_cmr")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"


# ----------------------------------------------------------------------------- configuration


DEFAULT_LR = 5e-4  # AdamW's peak learning rate from scratch; a run at another one carries it in its name
# ... and from pretrained weights (--pretrained, the paper profile's OpenAI CLIP): MMGeoLM fine-tunes its
# MMCLIP at 2e-5 (CE-CLIP at 5e-6); 5e-4 would wipe out what the weights know within the warm-up
FINETUNE_LR = 2e-5


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` fields take the profile's size (see :meth:`resolved`)."""

    profile: str = "cpu"
    loss: str = "mmclip"
    negatives: tuple[str, ...] = NEGATIVE_SOURCES
    num_negatives: int | None = None  # K image and K retrieval negatives per sample (rule: one per type)
    batching: str = "random"
    hard_weight: float = 1.0  # mmclip losses: in-batch CLIP + hard_weight * (hard-negative term)
    model: str | None = None  # open_clip name or shipped config (default: the profile's)
    pretrained: str | None = None  # open_clip tag or local checkpoint file
    init: str | None = None  # an earlier run's folder or model.safetensors (two-stage recipe)
    seed: int = 0  # model init and batch order
    data_seed: int = 0  # which dataset (the profile's is built with seed 0)
    steps: int | None = None
    images_per_step: int | None = None  # images the vision tower sees per step, negatives included
    lr: float | None = None  # peak learning rate (default: DEFAULT_LR, FINETUNE_LR from pretrained weights)
    temperature: float | None = None  # initial temperature 1/logit_scale (None: open_clip's 0.07); still learned
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of steps with linearly rising learning rate
    grad_accum: int = 1  # micro-batches per step (less GPU memory; see notebook 04 on what it changes)
    grad_checkpointing: bool = False  # recompute activations in backward (open_clip's): less GPU memory, ~30 % slower
    grad_clip: float | None = 1.0
    precision: str = "auto"
    eval_every: int | None = None  # validation every N steps (default: 5 times per run)
    eval_samples: int = 200  # validation items per evaluation
    checkpoint_every: int | None = None  # default: 10 times per run
    log_every: int = 10
    workers: int | None = None  # DataLoader workers (default: 1 on CPU, up to 8 with CUDA)
    threads: int | None = None  # torch CPU threads (default: the profile's; see Profile.train_threads)

    def __post_init__(self) -> None:
        get_profile(self.profile)
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        negatives = tuple(self.negatives)
        if self.loss == "clip":  # plain CLIP trains on no negatives: one canonical config for it
            negatives = ()
            object.__setattr__(self, "num_negatives", None)
        object.__setattr__(self, "negatives", negatives)
        unknown = set(negatives) - set(NEGATIVE_SOURCES)
        if unknown:
            raise ValueError(f"unknown negative source(s) {sorted(unknown)}; known: {', '.join(NEGATIVE_SOURCES)}")
        if self.loss != "clip" and not negatives:
            raise ValueError(f"loss {self.loss!r} needs at least one negative source (image, rule, retrieval)")
        if self.loss == "mmclip+imc_cmr" and not set(negatives) & {"rule", "retrieval"}:
            raise ValueError("mmclip+imc_cmr needs text negatives (rule and/or retrieval): IMC and CMR rank captions")
        if not (isinstance(self.hard_weight, (int, float)) and 0 < self.hard_weight < math.inf):
            raise ValueError(f"hard_weight must be a positive number, got {self.hard_weight!r}")
        object.__setattr__(self, "hard_weight", float(self.hard_weight))
        if self.hard_weight != 1.0 and not self.loss.startswith("mmclip"):
            raise ValueError(
                f"hard_weight weighs the hard-negative term added to in-batch CLIP; loss {self.loss!r} "
                "has no such sum (only mmclip and mmclip+imc_cmr do)"
            )
        if self.temperature is not None:
            if not (isinstance(self.temperature, (int, float)) and 0.01 <= self.temperature <= 1):
                raise ValueError(
                    f"temperature must lie in [0.01, 1] (open_clip clamps the logit scale at 100), "
                    f"got {self.temperature!r}"
                )
            if self.init or self.pretrained:
                raise ValueError(
                    "temperature sets the initial logit scale of a model trained from scratch; "
                    f"--init and --pretrained load their own (init={self.init!r}, "
                    f"pretrained={self.pretrained!r})"
                )
            object.__setattr__(self, "temperature", float(self.temperature))
        if self.batching not in BATCHING:
            raise ValueError(f"unknown batching {self.batching!r}; known: {', '.join(BATCHING)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        for name in ("num_negatives", "steps", "images_per_step", "eval_every", "checkpoint_every", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (0 if name == "num_negatives" else 1)):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("seed", "data_seed"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.uses_negatives and self.num_negatives == 0 and "rule" not in negatives:
            raise ValueError(
                f"num_negatives=0 leaves loss {self.loss!r} with no hard negatives: image and retrieval "
                f"negatives come num_negatives per sample (negatives now: {', '.join(negatives)}); "
                "give num_negatives >= 1, add rule negatives, or train loss 'clip'"
            )
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")

    def resolved(self) -> TrainConfig:
        """Fill every ``None`` size from the profile."""
        p = get_profile(self.profile)
        steps = self.steps or p.train_steps
        return dataclasses.replace(
            self,
            model=self.model or p.clip_model,
            pretrained=self.pretrained if self.pretrained is not None else p.clip_pretrained,
            num_negatives=p.num_negatives if self.num_negatives is None else self.num_negatives,
            steps=steps,
            images_per_step=self.images_per_step or p.batch_size,
            eval_every=self.eval_every or max(1, steps // 5),
            checkpoint_every=self.checkpoint_every or max(1, steps // 10),
            threads=self.threads or p.train_threads,
            lr=self.lr if self.lr is not None else self.default_lr(),
        )

    def default_lr(self) -> float:
        """The learning rate a run gets unless one is given: a fine-tuning rate from pretrained weights.

        ``--init`` keeps :data:`DEFAULT_LR`: its first stage was trained here, from scratch, at that
        rate. Warm-up (``warmup``, 10 % of the steps) applies to every run.
        """
        pretrained = self.pretrained if self.pretrained is not None else get_profile(self.profile).clip_pretrained
        return FINETUNE_LR if pretrained else DEFAULT_LR

    @property
    def uses_negatives(self) -> bool:
        return self.loss != "clip"

    def negative_config(self) -> NegativeConfig:
        if not self.uses_negatives:
            return NegativeConfig(sources=())
        k = self.num_negatives if self.num_negatives is not None else get_profile(self.profile).num_negatives
        return NegativeConfig(sources=self.negatives, num_image=k, num_retrieval=k)

    @property
    def positives_per_step(self) -> int:
        """Diagrams per step whose captions are trained on: images_per_step / (1 + K image negatives)."""
        cfg = self.resolved()
        per_sample = 1 + cfg.negative_config().image_slots
        b = cfg.images_per_step // per_sample  # type: ignore[operator]
        if b < 2:
            raise ValueError(
                f"images_per_step={cfg.images_per_step} leaves {b} positives per step with "
                f"{per_sample - 1} image negatives each; a contrastive batch needs at least 2"
            )
        return b

    def run_name(self) -> str:
        """``mmclip-rule-k1-w0.5-random-s0``: the recipe, then the seed.

        A size or optimiser setting that differs from the profile's (steps, images per step,
        model, learning rate, data seed) adds a suffix such as ``-1000steps`` or ``-lr0.001``, so a
        screen of it gets its own folder instead of colliding with the default run of that name;
        runs at the defaults keep the short name.
        """
        neg = "+".join(self.negatives) if self.uses_negatives else "inbatch"
        k = f"-k{self.num_negatives}" if self.uses_negatives and self.num_negatives is not None else ""
        weight = f"-w{self.hard_weight:g}" if self.hard_weight != 1.0 else ""
        init = "-init" if self.init else ""
        p = get_profile(self.profile)
        sizes = "".join(
            f"-{text}"
            for differs, text in (
                (self.steps not in (None, p.train_steps), f"{self.steps}steps"),
                (self.images_per_step not in (None, p.batch_size), f"b{self.images_per_step}"),
                (self.model not in (None, p.clip_model), f"{self.model}"),
                (self.lr not in (None, self.default_lr()), f"lr{self.lr or 0:g}"),
                (self.temperature is not None, f"t{self.temperature}"),
                (self.data_seed != 0, f"data{self.data_seed}"),
            )
            if differs
        )
        return f"{self.loss}-{neg}{k}{weight}-{self.batching}{init}{sizes}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["negatives"] = list(self.negatives)
        return d


def runs_root() -> Path:
    """``runs/`` in the repository, or ``$MMGEO_RUNS_DIR``: checkpoints are not committed."""
    return Path(os.environ.get("MMGEO_RUNS_DIR") or REPO_ROOT / "runs")


def default_run_dir(config: TrainConfig) -> Path:
    return runs_root() / config.profile / config.run_name()


# ----------------------------------------------------------------------------- the objective


class ContrastiveObjective(nn.Module):
    """The loss selected by ``TrainConfig.loss``, on features gathered from every process.

    Returns a dict with ``"loss"`` (to backpropagate) and its parts. The CMR thresholds of
    ``mmclip+imc_cmr`` live in the submodule's buffer, so they are checkpointed with the run.
    ``hard_weight`` scales the whole hard-negative term of the ``mmclip`` losses (IMC and CMR
    included) against in-batch CLIP: ``loss = clip_loss + hard_weight * hard``.
    """

    def __init__(self, loss: str, hard_weight: float = 1.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        if hard_weight <= 0 or (hard_weight != 1.0 and not loss.startswith("mmclip")):
            raise ValueError(f"hard_weight={hard_weight} needs an mmclip loss and a positive value")
        self.loss = loss
        self.hard_weight = float(hard_weight)
        self.hard: HardNegativeLoss | None = None
        if loss == "negclip":
            self.hard = HardNegativeLoss(contrastive="in_batch", imc_weight=0.0, cmr_weight=0.0)
        elif loss == "mmclip":
            self.hard = HardNegativeLoss(contrastive="per_anchor", imc_weight=0.0, cmr_weight=0.0)
        elif loss == "mmclip+imc_cmr":
            self.hard = HardNegativeLoss(contrastive="per_anchor")  # CE-CLIP's weights 0.3 / 0.2

    def forward(
        self,
        image: Tensor,
        text: Tensor,
        logit_scale: Tensor,
        *,
        image_negatives: Tensor | None = None,
        image_negative_mask: Tensor | None = None,
        text_negatives: Tensor | None = None,
        text_negative_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        if self.hard is None:
            value = clip_loss(image, text, logit_scale)
            return {"loss": value, "clip_loss": value}
        out = self.hard(
            image,
            text,
            logit_scale,
            image_negative_features=image_negatives,
            image_negative_mask=image_negative_mask,
            text_negative_features=text_negatives,
            text_negative_mask=text_negative_mask,
        )
        out = {k: v for k, v in out.items() if k != "cmr_thresholds"}
        if self.loss.startswith("mmclip"):  # "IB+MM": the per-anchor loss is added to in-batch CLIP
            out["clip_loss"] = clip_loss(image, text, logit_scale)
            out["loss"] = out["clip_loss"] + self.hard_weight * out["loss"]
        return out


# ----------------------------------------------------------------------------- pieces of the loop


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's rule: no weight decay on gains, biases, embeddings' norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up then cosine decay to 0 (transformers' scheduler, a torch ``LambdaLR``).

    Warm-up matters here: a probe of a tiny CLIP from scratch collapsed to a constant loss
    without it.
    """
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def native_bf16() -> bool:
    """Whether this CUDA GPU computes in bf16 natively (Ampere, compute capability 8.0, and newer).

    ``torch.cuda.is_bf16_supported()`` alone also says True on older cards such as Colab's T4,
    where bf16 is emulated: slower matmuls and more memory than fp16. torch 2.4 added
    ``including_emulation``; on older releases the capability is asked directly.
    """
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4
        return torch.cuda.get_device_capability() >= (8, 0)


def resolve_precision(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32.

    ``auto``: bf16 on a CUDA GPU that has it natively, fp16 (with the GradScaler
    :func:`make_optimization` turns on for it) on older GPUs, fp32 elsewhere.
    """
    if precision == "auto":
        precision = "fp32" if device_type != "cuda" else "bf16" if native_bf16() else "fp16"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def encode_batch(model: nn.Module, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """One forward pass over positives *and* negatives; features split back into their roles.

    Images: the B positives and their B·K_i negatives go through the tower together (one call,
    so DDP sees one forward), likewise captions and their B·K_t text negatives.
    """
    image = normalize_images(batch["image"].to(device, non_blocking=True))  # uint8 from the loader: 4x fewer bytes
    text = batch["text"].to(device, non_blocking=True)
    b = image.shape[0]
    img_neg = normalize_images(batch["image_negatives"].to(device, non_blocking=True))
    txt_neg = batch["text_negatives"].to(device, non_blocking=True)
    k_i, k_t = img_neg.shape[1], txt_neg.shape[1]
    images = torch.cat([image, img_neg.flatten(0, 1)]) if k_i else image
    texts = torch.cat([text, txt_neg.flatten(0, 1)]) if k_t else text
    image_features, text_features, logit_scale = model(image=images, text=texts)[:3]
    out = {"image": image_features[:b], "text": text_features[:b], "logit_scale": logit_scale}
    if k_i:
        out["image_negatives"] = image_features[b:].view(b, k_i, -1)
        out["image_negative_mask"] = batch["image_negative_mask"].to(device)
    if k_t:
        out["text_negatives"] = text_features[b:].view(b, k_t, -1)
        out["text_negative_mask"] = batch["text_negative_mask"].to(device)
    return out


def gather_features(features: dict[str, Tensor], info: DistInfo) -> dict[str, Tensor]:
    """Every process's features, concatenated (gradients flow back to each process's slice)."""
    out = {}
    for key, value in features.items():
        if key == "logit_scale":
            out[key] = value
        elif value.dtype == torch.bool:
            out[key] = gather_no_grad(value, info)
        else:
            out[key] = gather(value, info)
    return out


def micro_batches(batch: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Split a batch into ``n`` equal micro-batches for gradient accumulation."""
    if n == 1:
        return [batch]
    b = batch["image"].shape[0]
    if b % n:
        raise ValueError(f"batch of {b} is not divisible into {n} accumulation steps")
    m = b // n
    return [{k: v[i * m : (i + 1) * m] for k, v in batch.items()} for i in range(n)]


def make_optimization(model: nn.Module, cfg: TrainConfig, device_type: str):
    """AdamW (open_clip's betas and eps), the schedule, a grad scaler (fp16 only) and the autocast dtype."""
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = cosine_with_warmup(optimizer, int(cfg.warmup * cfg.steps), cfg.steps)  # type: ignore[operator]
    amp_dtype = resolve_precision(cfg.precision, device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=amp_dtype == torch.float16)
    return optimizer, scheduler, scaler, amp_dtype


def make_loader(
    dataset: HardNegativeDataset,
    tokenizer,
    cfg: TrainConfig,
    *,
    start: int = 0,
    info: DistInfo | None = None,
    device_type: str = "cpu",
) -> torch.utils.data.DataLoader:
    """Batches of steps ``start..cfg.steps`` for this process: pre-rendered PNGs decoded in workers.

    Workers default to 1 on CPU (the second core trains) and, with CUDA, up to 8 with one core left to
    feed the GPU (:func:`~mmgeo_utils.clip.evaluate.eval_workers`: 1 on Colab's 2 vCPUs); memory is pinned on
    CUDA so host-to-device copies overlap compute. ``mmgeo bench train`` measures the share of
    step time spent waiting for data.
    """
    info = info or DistInfo()  # one process
    neighbours = dataset.neighbour_lists() if cfg.batching == "hard" else None
    sampler = StepBatchSampler(
        len(dataset),
        cfg.positives_per_step,
        cfg.steps,
        seed=cfg.seed,  # type: ignore[arg-type]
        start=start,
        batching=cfg.batching,
        neighbours=neighbours,
        rank=info.rank,
        world_size=info.world_size,
    )
    workers = cfg.workers if cfg.workers is not None else (eval_workers(device_type) if device_type == "cuda" else 1)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=make_collate(tokenizer),
        num_workers=workers,
        pin_memory=device_type == "cuda",
        prefetch_factor=4 if workers else None,
    )


def autocast_context(amp_dtype: torch.dtype | None, device_type: str):
    return (
        torch.autocast(device_type=device_type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )


# ----------------------------------------------------------------------------- logging


class CsvLog:
    """Append rows to a CSV file; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, fields: Sequence[str], keep_until: int | None = None):
        self.path, self.fields = path, list(fields)
        rows = []
        if keep_until is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def read_csv(path: Path | str):
    """A run's ``train_log.csv`` or ``eval_log.csv`` as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(path)


TRAIN_FIELDS = (
    "step",
    "loss",
    "clip_loss",
    "contrastive_loss",
    "imc_loss",
    "cmr_loss",
    "lr",
    "logit_scale",
    "grad_norm",
    "images_per_s",
    "data_wait_share",
    "elapsed_s",
)
EVAL_FIELDS = ("step", "i2t_fine", "t2i_fine", "i2t_r1", "t2i_r1")


# ----------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    """Where a run lives and what it did."""

    run_dir: Path
    config: TrainConfig
    steps_done: int
    resumed_from: int = 0
    wall_time_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL_FILE


def dataset_root(cfg: TrainConfig, progress: bool = False, verify: str = "once") -> Path:
    """The (cached) dataset a run trains and is evaluated on: the profile's, built with ``data_seed``.

    By default checked once per process (``verify="once"``): every later run of the same process reuses
    the check while the dataset's manifest is unchanged; ``quick`` or ``full`` check every call.
    """
    from ..data.build import DatasetConfig, build_dataset

    return build_dataset(DatasetConfig.from_profile(cfg.profile, seed=cfg.data_seed), progress=progress, verify=verify)  # type: ignore[arg-type]


def load_init(model: nn.Module, init: str | Path) -> Path:
    """Load an earlier run's weights (its folder or ``model.safetensors``) into ``model``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(init)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"--init checkpoint {path} not found (give a run folder or its {MODEL_FILE})")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        weights = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"--init checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    if meta.get("format") == TRAIN_STATE_FORMAT:
        raise CheckpointError(
            f"--init checkpoint {path} is a training checkpoint (weights, optimizer and RNG "
            f"state), not a model: give the run folder or its {MODEL_FILE}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(
            f"--init checkpoint {path} holds another model's weights: {describe_mismatch(model.state_dict(), weights)}"
        ) from None
    return path


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite: training stops instead of saving a broken model."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a callback's ``KeyboardInterrupt``) stopped a run; the message says what was saved."""


# files a training run writes into its folder; anything else there is someone else's
RUN_FILES = frozenset(
    {
        "config.json",
        STATE_FILE,
        MODEL_FILE,
        "summary.json",
        "train_log.csv",
        "eval_log.csv",
        "test_eval.json",
        "val_eval.json",
    }
)


def _is_run_file(name: str) -> bool:
    return name in RUN_FILES or (name.startswith(".") and ".tmp" in name)  # an atomic write cut short


def _claim_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, overwrite: bool) -> str:
    """What ``run_dir`` holds and may become: ``"finished"``, ``"resume"`` or ``"fresh"``; an error otherwise.

    A folder is trained into only when it is new, empty, or holds nothing but this very run
    (resumed with ``resume``, or restarted when it never reached a checkpoint). Another run, a
    finished model whose checkpoint is gone, a ``config.json`` that is not this run's, or a user's
    own files are never overwritten; ``overwrite=True`` (``--overwrite``) deletes the run files
    named in :data:`RUN_FILES` first and leaves every other file alone.
    """
    if resume and overwrite:
        raise ValueError(
            "resume=True (--resume) continues the run in the folder, overwrite=True (--overwrite) "
            "replaces it: give one of them"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run folder {run_dir} is a file, not a folder; choose another --out")
    names = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if names and overwrite:
        for name in names:
            if _is_run_file(name) and (run_dir / name).is_file():
                (run_dir / name).unlink()
        log.warning("--overwrite: removed the run files in %s", run_dir)
        return "fresh"
    how = "pass resume=True (--resume) to {}, overwrite=True (--overwrite) to replace it, or choose another --out"
    if "summary.json" in names:
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a finished run; " + how.format("reuse it"))
        return "finished"
    if STATE_FILE in names:
        if not resume:
            raise FileExistsError(
                f"{run_dir} holds an unfinished run (checkpoint {STATE_FILE}); " + how.format("continue it")
            )
        return "resume"
    if MODEL_FILE in names:
        raise FileExistsError(
            f"{run_dir} holds a trained {MODEL_FILE} whose checkpoint and summary are gone; "
            "pass overwrite=True (--overwrite) to replace it, or choose another --out"
        )
    foreign = [n for n in names if not _is_run_file(n)]
    if foreign:
        raise FileExistsError(
            f"{run_dir} is not empty and holds files that are not a training run's "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); choose another "
            "--out, or pass overwrite=True (--overwrite) to train there anyway"
        )
    if "config.json" in names:
        try:
            same = load_config(run_dir).to_dict() == cfg.to_dict()
        except CheckpointError:
            same = False
        if not same:
            raise FileExistsError(
                f"{run_dir}/config.json is not this run's config (another run, or a file of "
                "yours); choose another --out, or pass overwrite=True (--overwrite) to replace it"
            )
        log.info("%s never reached a checkpoint: starting it again", run_dir)
    return "fresh"


def _check_writable(run_dir: Path) -> None:
    """Fail before training, not after it: can this process create files in ``run_dir``?"""
    import tempfile

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise PermissionError(
            f"cannot write to run folder {run_dir} ({e.strerror or e}); choose another --out or make it writable"
        ) from None


def _data_record(root: Path) -> dict[str, Any]:
    """Which data a run trains (train split) and validates on (val split): recorded in its config.json."""
    from ..data.build import read_manifest, split_fingerprint

    manifest = read_manifest(root)
    return {
        "root": str(root),
        "seed": (manifest.get("config") or {}).get("seed"),
        "fingerprint": {split: split_fingerprint(root, split) for split in ("train", "val")},
    }


def _check_same_data(run_dir: Path, data: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text()).get("data")
    if saved is None:
        log.warning("%s predates data fingerprints: cannot check that it resumes on the data it started on", run_dir)
        return
    if saved.get("fingerprint") != data["fingerprint"]:
        raise CheckpointError(
            f"cannot resume {run_dir}: it trained on other data ({saved.get('root')}, seed "
            f"{saved.get('seed')}, train {saved.get('fingerprint', {}).get('train')}) than "
            f"{data['root']} (seed {data['seed']}, train {data['fingerprint']['train']}); resume "
            "on the dataset it started on, or start a new run in another --out"
        )


def train(
    config: TrainConfig,
    *,
    out_dir: Path | str | None = None,
    resume: bool = False,
    data_root: Path | str | None = None,
    device: str | None = None,
    progress: bool = True,
    callbacks: Iterable[Callable[[int, dict], None]] = (),
    overwrite: bool = False,
    verify: str = "once",
) -> TrainResult:
    """Train one model; return where its weights and logs are.

    ``resume=True`` continues the run in ``out_dir`` from its last checkpoint (a finished run
    returns at once); without it an existing run is an error, so a run is never overwritten by
    accident, and a folder holding anything but this run is refused unless ``overwrite=True``
    (see :func:`_claim_run_dir`). The data is checked first (``verify``: ``quick`` compares sizes
    and metadata hashes, ``full`` re-hashes every image, ``once`` is ``quick`` unless this process
    already checked the same build), also a ``data_root`` given explicitly; its
    fingerprint goes into ``config.json`` and a resume on other data is refused.

    ``callbacks`` get ``(step, record)`` after every step (the resume tests interrupt a run from
    one). Interrupts keep resume exact: Ctrl-C lets the step in progress finish, then checkpoints
    that step and raises :class:`TrainingInterrupted`; a ``KeyboardInterrupt`` raised *inside* a
    step (a second Ctrl-C) leaves weights, BatchNorm statistics and optimizer half-updated, so
    nothing is saved for it and ``--resume`` continues from the last periodic checkpoint. A
    non-finite loss or weight stops the run with :class:`TrainingDiverged`, before any
    ``model.safetensors`` is written. The run uses ``config.threads`` CPU threads (the process's
    count is restored afterwards).
    """
    with cpu_threads(config.resolved().threads):
        return _train(
            config,
            out_dir=out_dir,
            resume=resume,
            data_root=data_root,
            device=device,
            progress=progress,
            callbacks=callbacks,
            overwrite=overwrite,
            verify=verify,
        )


class _StepGuard:
    """Defers Ctrl-C that arrives while a step changes the model's state until that step is done.

    Installed only in the main thread of a single-process run whose SIGINT handler is Python's
    default (a notebook kernel or a test runner with its own keeps it); a second Ctrl-C stops at once.
    """

    def __init__(self, enabled: bool):
        import signal
        import threading

        self.in_step = self.pending = False
        self._signal = signal
        self._previous = None
        if (
            enabled
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.in_step and not self.pending:
            self.pending = True
            log.warning(
                "Ctrl-C: finishing this step, then saving a checkpoint (Ctrl-C again stops at once, without one)"
            )
            return
        raise KeyboardInterrupt

    def close(self) -> None:
        if self._previous is not None:
            self._signal.signal(self._signal.SIGINT, self._previous)
            self._previous = None


def _check_finite_weights(model: nn.Module, step: int, cfg: TrainConfig) -> None:
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDiverged(
            f"training diverged: {len(bad)} weight tensor(s) hold NaN or inf after step {step} "
            f"(first {bad[0]}); {_divergence_hint(cfg)}"
        )


def _divergence_hint(cfg: TrainConfig) -> str:
    return (
        f"the usual cause is a learning rate or hard-negative weight too large for this model (lr {cfg.lr:g}, "
        f"hard_weight {cfg.hard_weight:g}; --lr, --hard-weight); no {MODEL_FILE} was written"
    )


def _train(
    config: TrainConfig,
    *,
    out_dir: Path | str | None,
    resume: bool,
    data_root: Path | str | None,
    device: str | None,
    progress: bool,
    callbacks: Iterable[Callable[[int, dict], None]],
    overwrite: bool,
    verify: str,
) -> TrainResult:
    cfg = config.resolved()
    device_type = check_device(device)
    info = init_distributed(device_type)
    dev = torch.device(f"cuda:{info.local_rank}" if device_type == "cuda" else device_type)
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    state_path, summary_path = run_dir / STATE_FILE, run_dir / "summary.json"

    claim = _claim_run_dir(run_dir, cfg, resume, overwrite)
    if claim == "finished":
        _check_same_config(run_dir, cfg)
        summary = json.loads(summary_path.read_text())
        return TrainResult(run_dir, cfg, summary["steps"], summary["steps"], 0.0, summary)
    if info.is_main:
        _check_writable(run_dir)

    if data_root is not None:
        from ..data.build import verify_dataset

        root = verify_dataset(data_root, "quick" if verify == "once" else verify)
    else:
        root = dataset_root(cfg, progress and info.is_main, verify=verify)
    data = _data_record(root)

    seed_everything(cfg.seed)
    from .models import create_clip, get_tokenizer

    model = create_clip(
        cfg.model,
        cfg.pretrained,
        image_size=get_profile(cfg.profile).image_size,  # type: ignore[arg-type]
        temperature=cfg.temperature,
        context_length=get_profile(cfg.profile).context_length,
        device=dev,
    )
    if cfg.init:
        load_init(model, cfg.init)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    objective = ContrastiveObjective(cfg.loss, cfg.hard_weight).to(dev)
    tokenizer = get_tokenizer(cfg.model, context_length=model.context_length)  # type: ignore[arg-type]

    negatives = cfg.negative_config()
    dataset = HardNegativeDataset(root, "train", negatives, transform=default_transform(normalize=False))
    batch = cfg.positives_per_step
    if batch % (info.world_size * cfg.grad_accum):
        raise ValueError(
            f"{batch} positives per step do not split over {info.world_size} processes × "
            f"{cfg.grad_accum} accumulation steps"
        )

    optimizer, scheduler, scaler, amp_dtype = make_optimization(model, cfg, device_type)

    start = 0
    if claim == "resume":
        _check_same_config(run_dir, cfg)
        _check_same_data(run_dir, data)
        start = load_training_state(
            state_path, model=model, optimizer=optimizer, scheduler=scheduler, objective=objective, scaler=scaler
        )["step"]
        log.info("resuming %s at step %d of %d", run_dir, start, cfg.steps)
    elif info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps({**cfg.to_dict(), "data": data}, indent=2) + "\n")

    train_model: nn.Module = model
    if info.enabled and device_type == "cuda":
        # BatchNorm statistics over the global batch (open_clip's --use-bn-sync); gloo on CPU
        # has no SyncBatchNorm, so there each process normalises its own share
        train_model = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device_type == "cuda" else None
        )

    loader = make_loader(dataset, tokenizer, cfg, start=start, info=info, device_type=device_type)

    train_log = eval_log = None
    if info.is_main:
        train_log = CsvLog(run_dir / "train_log.csv", TRAIN_FIELDS, keep_until=start if start else None)
        eval_log = CsvLog(run_dir / "eval_log.csv", EVAL_FIELDS, keep_until=start if start else None)

    from tqdm.auto import tqdm

    images_per_step = batch * (1 + negatives.image_slots)
    bar = tqdm(
        total=cfg.steps, initial=start, desc=cfg.run_name(), unit="step", disable=not (progress and info.is_main)
    )
    step, t_run, wait_total, compute_total = start, time.perf_counter(), 0.0, 0.0
    saved = start or None  # the step of the newest checkpoint on disk
    at_boundary = True  # False while a step is changing weights, BatchNorm statistics, optimizer and RNG
    # several processes would stop at different steps and wait for each other at the checkpoint's barrier
    guard = _StepGuard(enabled=not info.enabled)
    autocast = autocast_context(amp_dtype, device_type)
    try:
        it = iter(loader)
        while step < cfg.steps:  # type: ignore[operator]
            t0 = time.perf_counter()
            batch_data = next(it)
            t1 = time.perf_counter()
            at_boundary, guard.in_step = False, True
            record = train_step(
                train_model, objective, optimizer, scheduler, scaler, batch_data, cfg, info, dev, autocast
            )
            if device_type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            step += 1
            at_boundary, guard.in_step = True, False
            if not math.isfinite(record["loss"]):
                raise TrainingDiverged(
                    f"training diverged: the loss is {record['loss']} at step {step}; " + _divergence_hint(cfg)
                )
            wait_total, compute_total = wait_total + (t1 - t0), compute_total + (t2 - t1)
            record.update(
                step=step,
                images_per_s=images_per_step / max(t2 - t0, 1e-9),
                data_wait_share=(t1 - t0) / max(t2 - t0, 1e-9),
                elapsed_s=time.perf_counter() - t_run,
            )
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.0f}")
            if train_log is not None and (step % cfg.log_every == 0 or step in (1, cfg.steps)):
                train_log.write(record)
            if step % cfg.eval_every == 0 or step == cfg.steps:  # type: ignore[operator]
                if info.is_main and eval_log is not None:
                    eval_log.write({"step": step, **_validate(model, tokenizer, root, cfg, dev)})
                barrier(info)
            for cb in callbacks:
                cb(step, record)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:  # type: ignore[operator]
                _check_finite_weights(model, step, cfg)
                _checkpoint(state_path, model, optimizer, scheduler, objective, scaler, step, info)
                saved = step
            if guard.pending and step < cfg.steps:  # type: ignore[operator]
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        resume_hint = "rerun the same command with --resume (resume=True) to continue"
        if not at_boundary:
            where = f"the checkpoint of step {saved}" if saved else "the start: no checkpoint was reached yet"
            message = (
                f"interrupted inside step {step + 1} of {cfg.steps}: its weights and optimizer were half "
                f"updated, so nothing was saved for it; {resume_hint} from {where}"
            )
        elif step > start and not info.enabled:
            _check_finite_weights(model, step, cfg)
            _checkpoint(state_path, model, optimizer, scheduler, objective, scaler, step, info)
            message = f"interrupted at step {step} of {cfg.steps}: checkpoint saved in {run_dir}; {resume_hint}"
        else:
            message = f"interrupted at step {step} of {cfg.steps}; {resume_hint}" + (
                f" from the checkpoint of step {saved}" if saved else ""
            )
        raise TrainingInterrupted(message) from None
    finally:
        guard.close()
        bar.close()

    wall = time.perf_counter() - t_run
    _check_finite_weights(model, step, cfg)
    _checkpoint(state_path, model, optimizer, scheduler, objective, scaler, step, info)
    summary: dict[str, Any] = {}
    if info.is_main:
        save_model(run_dir / MODEL_FILE, model, metadata={"model": str(cfg.model), "run": cfg.run_name()})
        summary = {
            "steps": step,
            "positives_per_step": batch,
            "images_per_step": images_per_step,
            "world_size": info.world_size,
            "resumed_from": start,
            "data_wait_share": wait_total / max(wait_total + compute_total, 1e-9),
            "images_per_s": images_per_step * (step - start) / max(wait_total + compute_total, 1e-9),
            **provenance(cfg.profile, cfg.seed, wall),
        }
        atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    barrier(info)
    return TrainResult(run_dir, cfg, step, start, wall, summary)


def train_step(
    model, objective, optimizer, scheduler, scaler, batch, cfg: TrainConfig, info: DistInfo, dev: torch.device, autocast
) -> dict[str, float]:
    """One optimizer step over a (possibly accumulated) batch; returns the logged numbers."""
    parts: dict[str, float] = {}
    micro = micro_batches(batch, cfg.grad_accum)
    for i, mb in enumerate(micro):
        sync = i == len(micro) - 1
        no_sync = model.no_sync() if (info.enabled and not sync) else contextlib.nullcontext()
        with no_sync:
            with autocast:
                features = gather_features(encode_batch(model, mb, dev), info)
            losses = objective(**{k: (v.float() if v.is_floating_point() else v) for k, v in features.items()})
            scaler.scale(losses["loss"] / len(micro)).backward()
        for k, v in losses.items():
            parts[k] = parts.get(k, 0.0) + float(v.detach()) / len(micro)
    scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else float("inf"))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    base = unwrap(model)
    with torch.no_grad():
        base.logit_scale.clamp_(0, math.log(100))  # open_clip's clamp: temperature never below 0.01
    parts.update(
        lr=optimizer.param_groups[0]["lr"],
        logit_scale=float(base.logit_scale.detach().exp()),
        grad_norm=float(grad_norm),
    )
    return parts


def _validate(model: nn.Module, tokenizer, root: Path, cfg: TrainConfig, dev: torch.device) -> dict[str, float]:
    from .evaluate import evaluate_clip, headline

    result = evaluate_clip(
        model,
        tokenizer,
        root,
        split="val",
        image_size=get_profile(cfg.profile).image_size,
        variants=("clean",),
        max_samples=cfg.eval_samples,
        device=dev,
    )
    h = headline(result)
    return {k: h[k] for k in EVAL_FIELDS if k != "step"}


def _checkpoint(path: Path, model, optimizer, scheduler, objective, scaler, step: int, info: DistInfo) -> None:
    if info.is_main:
        save_training_state(
            path, model=model, optimizer=optimizer, scheduler=scheduler, step=step, objective=objective, scaler=scaler
        )
    barrier(info)


# how much of a run to log, evaluate or checkpoint may change on resume; what it computes may not
RESUMABLE_CHANGES = frozenset(
    {"eval_every", "checkpoint_every", "log_every", "workers", "eval_samples", "grad_checkpointing"}
)


def load_config(run_dir: Path | str) -> TrainConfig:
    """The resolved :class:`TrainConfig` a run folder was trained with (its ``config.json``)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no config.json; it was not written by mmgeo train")
    try:
        raw = json.loads(path.read_text())
        raw.pop("data", None)  # which data it trained on (see _data_record), not part of the recipe
        return TrainConfig(**{**raw, "negatives": tuple(raw["negatives"])}).resolved()
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a training config this version can read: {e}") from None


def _check_same_config(run_dir: Path, cfg: TrainConfig) -> None:
    # compare canonical forms: a config that trains the same run is the same config
    saved = load_config(run_dir).to_dict()
    now = cfg.to_dict()
    diff = {k: (saved.get(k), now[k]) for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]}
    if diff:
        raise CheckpointError(
            f"cannot resume {run_dir}: its config differs in "
            + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items())
        )
