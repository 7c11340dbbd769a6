"""A training run's recipe: :class:`TrainConfig`, its validation, its name and its folder (lesson 04).

:func:`~mmgeo_utils.clip.train.train` runs one; :func:`load_config` reads back the one a run folder was
trained with.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.contrastive import BATCHING, KNOWN_SOURCES, NEGATIVE_SOURCES, NegativeConfig
from ..profiles import get_profile
from ..repro import REPO_ROOT
from .checkpoint import CheckpointError

LOSSES = ("clip", "negclip", "mmclip", "mmclip+imc_cmr")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
    num_negatives: int | None = None  # K image, K retrieval and K random negatives per sample (rule: one per type)
    batching: str = "random"
    hard_weight: float = 1.0  # mmclip losses: in-batch CLIP + hard_weight * (hard-negative term)
    model: str | None = None  # open_clip name or shipped config (default: the profile's)
    pretrained: str | None = None  # open_clip tag or local checkpoint file
    init: str | None = None  # an earlier run's folder or model.safetensors (two-stage recipe)
    seed: int = 0  # model init and batch order
    data_seed: int = 0  # which dataset (the profile's is built with seed 0)
    numeric_marks: bool = True  # False: train and test on diagrams drawn without length and angle values
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
        unknown = set(negatives) - set(KNOWN_SOURCES)
        if unknown:
            raise ValueError(f"unknown negative source(s) {sorted(unknown)}; known: {', '.join(KNOWN_SOURCES)}")
        if self.loss != "clip" and not negatives:
            raise ValueError(f"loss {self.loss!r} needs at least one negative source (image, rule, retrieval, random)")
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
        return NegativeConfig(sources=self.negatives, num_image=k, num_retrieval=k, num_random=k)

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
                (not self.numeric_marks, "letters"),
            )
            if differs
        )
        return f"{self.loss}-{neg}{k}{weight}-{self.batching}{init}{sizes}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``numeric_marks`` only when off, so runs on diagrams with marks keep their config bytes."""
        d = dataclasses.asdict(self)
        d["negatives"] = list(self.negatives)
        if d["numeric_marks"]:
            del d["numeric_marks"]
        return d


def runs_root() -> Path:
    """``runs/`` in the repository, or ``$MMGEO_RUNS_DIR``: checkpoints are not committed."""
    return Path(os.environ.get("MMGEO_RUNS_DIR") or REPO_ROOT / "runs")


def default_run_dir(config: TrainConfig) -> Path:
    return runs_root() / config.profile / config.run_name()


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
