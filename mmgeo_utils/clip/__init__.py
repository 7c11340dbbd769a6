"""Lessons 03-05: CLIP and MMCLIP with open_clip, their losses, the training run and the benchmark.

=====================  ==============================================================
module                 what it holds
=====================  ==============================================================
``models``             open_clip models from shipped configs (``model_configs/``), hub
                       tags or local files; the tokenizer that spells point names
``losses``             CLIP, hard-negative CLIP and MMCLIP's per-anchor loss
``ce_clip_losses``     CE-CLIP's IMC and CMR, and ``HardNegativeLoss`` combining them
``config``             ``TrainConfig``: a run's recipe, its checks, name and folder
``objective``          ``ContrastiveObjective``: the loss ``TrainConfig.loss`` selects
``loop``               the loop's pieces: optimizer, precision, one step, loader, CSV logs
``run_folder``         a run folder's files, when it may be trained into, resume checks
``train``              ``train()``: one run, resumable (``mmgeo train-clip``)
``checkpoint``         training state in safetensors (weights, optimizer, RNGs)
``distributed``        torchrun/DDP set-up and feature gathering across processes
``evaluate``           fine-grained benchmark, retrieval, robustness variants
``ac_score``           the alignment and correspondence (A, C) scores of an encoder
=====================  ==============================================================

``from mmgeo_utils.clip import train`` gives the function :func:`~mmgeo_utils.clip.train.train`, not
the module; ``importlib.import_module("mmgeo_utils.clip.train")`` gives the module.
"""

from .ac_score import (
    caption_embeddings,
    chance_correspondence,
    correspondence_score,
    encoder_alignment,
    fit_ac_polynomial,
    keypoint_pairs,
)
from .ce_clip_losses import HardNegativeLoss, cmr_logits, cmr_loss, cmr_threshold, imc_loss
from .checkpoint import CheckpointError, load_model, save_model
from .config import DEFAULT_LR, FINETUNE_LR, LOSSES, PRECISIONS, TrainConfig, default_run_dir, load_config, runs_root
from .distributed import DistInfo, init_distributed
from .evaluate import (
    EVAL_VERSION,
    VARIANTS,
    encode_items,
    eval_transform,
    evaluate_clip,
    fine_grained_scores,
    headline,
    i2t_choices,
    i2t_fine_hits,
    split_items,
    tidy_table,
)
from .loop import (
    CsvLog,
    autocast_context,
    cosine_with_warmup,
    encode_batch,
    gather_features,
    make_loader,
    make_optimization,
    micro_batches,
    native_bf16,
    read_csv,
    resolve_precision,
    train_step,
)
from .losses import (
    GradientWeights,
    clip_loss,
    hard_negative_clip_loss,
    per_anchor_gradient_weights,
    per_anchor_hard_negative_loss,
)
from .models import (
    count_parameters,
    create_clip,
    create_clip_for_profile,
    find_pretrained,
    get_tokenizer,
    model_config,
    spell_point_names,
)
from .objective import ContrastiveObjective
from .run_folder import MODEL_FILE, RESUMABLE_CHANGES, STATE_FILE, load_init
from .train import TrainingDiverged, TrainingInterrupted, TrainResult, dataset_root, train

__all__ = [
    "CheckpointError",
    "ContrastiveObjective",
    "CsvLog",
    "DEFAULT_LR",
    "DistInfo",
    "EVAL_VERSION",
    "FINETUNE_LR",
    "GradientWeights",
    "HardNegativeLoss",
    "LOSSES",
    "MODEL_FILE",
    "PRECISIONS",
    "RESUMABLE_CHANGES",
    "STATE_FILE",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "VARIANTS",
    "autocast_context",
    "caption_embeddings",
    "chance_correspondence",
    "clip_loss",
    "cmr_logits",
    "cmr_loss",
    "cmr_threshold",
    "correspondence_score",
    "cosine_with_warmup",
    "count_parameters",
    "create_clip",
    "create_clip_for_profile",
    "dataset_root",
    "default_run_dir",
    "encode_batch",
    "encode_items",
    "encoder_alignment",
    "eval_transform",
    "evaluate_clip",
    "find_pretrained",
    "fine_grained_scores",
    "fit_ac_polynomial",
    "gather_features",
    "get_tokenizer",
    "hard_negative_clip_loss",
    "headline",
    "i2t_choices",
    "i2t_fine_hits",
    "imc_loss",
    "init_distributed",
    "keypoint_pairs",
    "load_config",
    "load_init",
    "load_model",
    "make_loader",
    "make_optimization",
    "micro_batches",
    "model_config",
    "native_bf16",
    "per_anchor_gradient_weights",
    "per_anchor_hard_negative_loss",
    "read_csv",
    "resolve_precision",
    "runs_root",
    "save_model",
    "spell_point_names",
    "split_items",
    "tidy_table",
    "train",
    "train_step",
]
