"""The runners: experiments over seeds, recipe choice on validation, and the speed benchmarks.

They import the library below them (diagrams, negatives, data, clip, lmm) and write ``results/<profile>/``;
nothing in the library imports them (the way ``open_clip_train`` sits beside ``open_clip``).

=====================  ==================================================================  ======
module                 what it holds                                                       lesson
=====================  ==================================================================  ======
``comparison``         CLIP vs MMCLIP over seeds (``mmgeo experiment clip-vs-mmclip``)     05
``evaluation``         a finished run scored on a split, cached beside it                  05
``jobs``               how many runs train side by side, in which order                    04, 05
``selection``          recipes compared on validation, chosen by a fixed rule              05
``statistics``         paired bootstrap of a gap; seed-to-seed noise of a recipe's gap     05
``lmm_comparison``     blind / random / CLIP / MMCLIP LMMs over seeds                       06
``gem_comparison``     one LM trained to embed, caption, or both (MM-GEM), at equal steps  07
``ablation``           MMGeoLM's ablations as arms over seeds, beside the paper's numbers   08
``bench``              ``mmgeo bench diagrams`` and ``negatives``                          01, 02
``bench_retrieval``    memory and speed of the chunked top-k of retrieval negatives         02
``bench_train``        ``mmgeo bench train``: a CLIP and an MMCLIP step                     04
``bench_speedups``     ``mmgeo bench train --speedups``: each per-step lever side by side   04
``bench_lmm``          ``mmgeo bench lmm``: samples and tokens per second per stage         06
``course_bench``       ``mmgeo bench course``: the course's time and memory, estimated     00
=====================  ==================================================================  ======

The benchmark functions named like their module (``bench_lmm``, ``bench_retrieval``) are imported from
their module, so that ``mmgeo_utils.experiments.bench_lmm`` stays the module.
"""

from .ablation import run_ablation, studies
from .bench import bench_diagrams, bench_negatives
from .bench_speedups import bench_train_speedups, format_speedups
from .bench_train import bench_train
from .comparison import (
    COMPARISON_TEMPERATURE,
    HEADLINE,
    MMCLIP_RECIPE,
    aggregate,
    comparison_configs,
    comparison_name,
    comparison_table,
    merge_comparisons,
    recipe_of,
    run_comparison,
)
from .course_bench import bench_course, format_estimate
from .evaluation import evaluate_checkpoint, evaluate_run, load_run_model
from .gem_comparison import run_gem_comparison
from .jobs import default_jobs, relative_cost, train_all
from .lmm_comparison import CONDITIONS, condition_config, paired_bootstrap, run_lmm_comparison
from .selection import select_recipes, validation_scores
from .statistics import gap_noise, gap_uncertainty

__all__ = [
    "COMPARISON_TEMPERATURE",
    "CONDITIONS",
    "HEADLINE",
    "MMCLIP_RECIPE",
    "aggregate",
    "bench_course",
    "bench_diagrams",
    "bench_negatives",
    "bench_train",
    "bench_train_speedups",
    "comparison_configs",
    "comparison_name",
    "comparison_table",
    "condition_config",
    "default_jobs",
    "evaluate_checkpoint",
    "evaluate_run",
    "format_estimate",
    "format_speedups",
    "gap_noise",
    "gap_uncertainty",
    "load_run_model",
    "merge_comparisons",
    "paired_bootstrap",
    "recipe_of",
    "relative_cost",
    "run_comparison",
    "run_ablation",
    "run_gem_comparison",
    "run_lmm_comparison",
    "studies",
    "select_recipes",
    "train_all",
    "validation_scores",
]
