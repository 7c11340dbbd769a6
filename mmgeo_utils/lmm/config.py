"""What an LMM run is: its config (``LMMConfig``, validated), the stages, and where each stage's folder lives
(``runs/<profile>/lmm/``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..clip import PRECISIONS, runs_root
from ..clip.loop import resolve_precision
from ..profiles import LMMSizes, get_lmm_sizes, get_profile
from ..repro import detect_device
from .balance import QA_VERSION
from .vision_tower import TOKEN_GRIDS, resolve_run

STAGES = ("lm", "align", "sft")


@dataclass(frozen=True)
class LMMConfig:
    """One LMM of lesson 06. ``None`` sizes take the profile's (:data:`~mmgeo_utils.profiles.LMM_SIZES`)."""

    profile: str = "cpu"
    vision: str = "none"  # a run of mmgeo train-clip (name under runs/<profile>/ or folder), random, none
    lora_r: int | None = None
    full: bool = False  # full fine-tuning of the LM in sft instead of LoRA
    seed: int = 0  # LM init, projector init, random tower, batch order
    data_seed: int = 0
    token_grid: str | None = None
    lm: str | None = None  # hub name or LM folder (default: the profile's; None builds one from config)
    lm_steps: int | None = None
    align_steps: int | None = None
    sft_steps: int | None = None
    batch_size: int | None = None
    train_scenes: int | None = None
    threads: int | None = None
    precision: str = "auto"  # autocast: auto = bf16 on GPUs that have it, fp16 (+ grad scaler) on older, fp32 on CPU

    def __post_init__(self) -> None:
        get_profile(self.profile)
        if self.token_grid is not None and self.token_grid not in TOKEN_GRIDS:
            raise ValueError(f"unknown token grid {self.token_grid!r}; known: {', '.join(TOKEN_GRIDS)}")
        if self.full and self.lora_r is not None:
            raise ValueError("--full fine-tunes the whole LM; --lora-r sets a LoRA rank: give one of them")
        for name in ("lora_r", "lm_steps", "align_steps", "sft_steps", "batch_size", "train_scenes", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (0 if name.endswith("_steps") else 1)):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if not self.vision:
            raise ValueError("vision must name a run of mmgeo train-clip, 'random' or 'none'")

    @property
    def sizes(self) -> LMMSizes:
        return get_lmm_sizes(self.profile)

    def resolved(self) -> LMMConfig:
        s = self.sizes
        return dataclasses.replace(
            self,
            lora_r=None if self.full else (self.lora_r or s.lora_r),
            lm=self.lm or s.lm,
            token_grid=self.token_grid or s.token_grid,
            lm_steps=s.lm_steps if self.lm_steps is None else self.lm_steps,
            align_steps=s.align_steps if self.align_steps is None else self.align_steps,
            sft_steps=s.sft_steps if self.sft_steps is None else self.sft_steps,
            batch_size=self.batch_size or s.batch_size,
            train_scenes=min(self.train_scenes or s.train_scenes, get_profile(self.profile).n_train),
            threads=self.threads or get_profile(self.profile).train_threads,
        )

    def amp_dtype(self, device_type: str | None = None) -> torch.dtype | None:
        """The autocast dtype training uses on ``device_type`` (default: this machine's), None for fp32."""
        return resolve_precision(self.precision, device_type or ("cuda" if detect_device() == "cuda" else "cpu"))

    @property
    def blind(self) -> bool:
        return self.vision == "none"

    def tower_name(self) -> str:
        if self.vision in ("none", "random"):
            return {"none": "blind", "random": "random"}[self.vision]
        return resolve_run(self.vision, self.profile).name

    def stage_config(self, stage: str) -> dict[str, Any]:
        """What a stage's result depends on: compared on ``--resume``."""
        c = self.resolved()
        common = {
            "profile": c.profile,
            "seed": c.seed,
            "data_seed": c.data_seed,
            "qa_version": QA_VERSION,
            "lm": c.lm,
            "train_scenes": c.train_scenes,
            "batch_size": c.batch_size,
            "lm_steps": c.lm_steps,
            "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[c.amp_dtype()],
        }
        if stage == "lm":
            return common
        common.update(vision=c.vision, tower=self.tower_name(), token_grid=c.token_grid, align_steps=c.align_steps)
        if stage == "align":
            return common
        return {**common, "sft_steps": c.sft_steps, "lora_r": c.lora_r, "full": c.full}


def lmm_root(profile: str) -> Path:

    return runs_root() / get_profile(profile).name / "lmm"


def stage_dir(cfg: LMMConfig, stage: str) -> Path:
    """Where a stage of ``cfg`` lives (sizes that differ from the profile's go into the name)."""
    c, s = cfg.resolved(), cfg.sizes
    size = "".join(
        f"-{k}{v}"
        for k, v, d in (
            ("steps", c.lm_steps, s.lm_steps),
            ("n", c.train_scenes, s.train_scenes),
            ("b", c.batch_size, s.batch_size),
            ("data", c.data_seed, 0),
        )
        if v != d and not (k == "n" and v == get_profile(c.profile).n_train and d > v)
    )
    qa = f"-qa{QA_VERSION}"  # another selection of questions trains other weights: another folder
    lm_name = f"lm{size}{qa}-s{c.seed}" if not c.lm else f"hub-{Path(c.lm).name}{size}{qa}-s{c.seed}"
    if stage == "lm":
        return lmm_root(c.profile) / lm_name
    grid = "" if c.blind else f"-{c.token_grid}"
    extra = "".join(
        f"-{k}{v}" for k, v, d in (("align", c.align_steps, s.align_steps), ("sft", c.sft_steps, s.sft_steps)) if v != d
    )
    cond = lmm_root(c.profile) / lm_name / f"{cfg.tower_name()}{grid}{extra}"
    return cond / ("align" if stage == "align" else ("sft-full" if c.full else f"sft-lora{c.lora_r}"))


# ----------------------------------------------------------------------------- one loop for every stage
