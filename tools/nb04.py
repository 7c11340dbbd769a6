"""Writes notebooks/04_training_mmclip.ipynb (sources only; refresh_notebooks.py executes it)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = []

cells.append(md(r"""# 04 · Training MMCLIP with open_clip

Lessons 01–03 built diagrams, hard negatives that differ from the truth in one fact, and the losses that
use them. This lesson trains two CLIP models on exactly the same data and budget — plain CLIP with
in-batch negatives, and **MMCLIP**, which adds the per-anchor hard-negative loss of MMGeoLM (Sun et al.,
2025, §3.3) — and looks inside the training loop while they learn.

**What you will learn**

1. How a **small open_clip model** is declared in a JSON config we ship, built with `open_clip`, and why
   the CPU profiles use a ResNet image tower.
2. What one **batch** holds when it carries hard negatives, and how to give two models a **fair budget**:
   the same number of images through the vision tower per step.
3. **One training step, written out**: one forward pass over positives *and* negatives, the loss,
   backward, gradient clipping, AdamW, the cosine schedule, the logit-scale clamp — checked against the
   library's `train_step`.
4. **Mixed precision** (bf16 autocast on GPUs) and **gradient accumulation**, and why accumulating a
   contrastive loss is *not* the same as a bigger batch.
5. **Training CLIP and MMCLIP** side by side: loss curves, validation curves, throughput, and how the
   same run is launched with **torchrun on several GPUs**.

Everything reusable is in [`mmgeo_utils/train.py`](../mmgeo_utils/train.py) (the loop),
[`models.py`](../mmgeo_utils/models.py), [`checkpoint.py`](../mmgeo_utils/checkpoint.py) and
[`distributed.py`](../mmgeo_utils/distributed.py); `mmgeo train-clip` is the same loop from the shell.

**How long it takes.** `smoke`: about 30 s (3 steps per model; the numbers mean nothing). `cpu` (2 cores):
about 20 minutes, CLIP ≈ 7 and MMCLIP ≈ 12 minutes for 500 steps each (measured; runs are checkpointed, so
an interrupted notebook resumes where it stopped). `gpu`: not measured yet on a real GPU run of this
lesson — see `results/gpu/` once one is recorded. Lesson 05 evaluates the models trained here."""))

cells.append(code(r"""import copy
import json
import math
import os
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from mmgeo_utils.contrastive_data import HardNegativeDataset, default_transform
from mmgeo_utils.dataset import DatasetConfig, build_dataset
from mmgeo_utils.experiments import comparison_configs
from mmgeo_utils.losses import clip_loss
from mmgeo_utils.models import CONFIG_DIR, count_parameters, create_clip, get_tokenizer
from mmgeo_utils.plots import save_fig, set_style
from mmgeo_utils.profiles import get_profile
from mmgeo_utils.repro import detect_device, seed_everything, write_results
from mmgeo_utils.train import (ContrastiveObjective, autocast_context, encode_batch, gather_features,
                               make_loader, make_optimization, micro_batches, read_csv, train, train_step,
                               unwrap)
from mmgeo_utils.distributed import DistInfo

profile = get_profile()
SEED = 0
seed_everything(SEED)
set_style()
device = detect_device()
# Training uses every core; the DataLoader's one worker process decodes PNGs beside it.
torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
t_start = time.perf_counter()
results = {}
root = build_dataset(DatasetConfig.from_profile(profile), progress=False)  # lesson 02's dataset (cached)
print(f"profile {profile.name}: {profile.description}")"""))

cells.append(md(r"""## 1 · The model: an open_clip config we ship

open_clip builds a model from a JSON config: an `embed_dim`, an image tower (`vision_cfg`) and a text
tower (`text_cfg`). We ship small ones in `mmgeo_utils/model_configs/` and register them with
`open_clip.add_model_config`, so `open_clip.create_model("mmgeo-resnet-tiny")` works like any of
open_clip's own names; on the `paper` profile the same function loads `ViT-B-32` with OpenAI weights,
and a `pretrained=` path loads the same format from a local file (that is how checkpoints of this
lesson are reloaded in lesson 05).

Why a **ResNet** image tower on CPU: a probe on 2 cores found that open_clip's ViT trained from scratch
at 64–96 px learned nothing fine-grained in minutes, while its `ModifiedResNet` (one block per stage,
width 32) learned which vertex carries a right-angle mark. Convolutions bring the locality prior that a
tiny model cannot learn from a few thousand diagrams. The text context is 96 tokens, not CLIP's 77:
our captions state many facts, and 11 % of them are longer than 77 tokens — truncating them would make
a negative that edits the last fact identical to its caption."""))

cells.append(code(r"""# NBVAL_CHECK_OUTPUT
config = json.loads((CONFIG_DIR / f"{profile.clip_model}.json").read_text())
print(profile.clip_model, json.dumps(config, indent=1))
model = create_clip(profile.clip_model, image_size=profile.image_size)
print({k: f"{v / 1e6:.2f} M" for k, v in count_parameters(model).items()})
tokenizer = get_tokenizer(profile.clip_model)
print("token ids have shape", tuple(tokenizer(["a right triangle ABC"]).shape))"""))

cells.append(md(r"""## 2 · A batch with hard negatives, and a fair budget

`HardNegativeDataset` (lesson 02) gives each positive its image negatives and its text negatives in fixed
slots — one rule negative per error type (label, shape, relation, number), then retrieved captions — with
masks for empty slots. The two models of this lesson:

* **CLIP**: `loss="clip"`, no negatives; the other captions of the batch are the only negatives.
* **MMCLIP**: `loss="mmclip"` = in-batch CLIP **plus** the per-anchor loss, each image against its own
  text negatives and each caption against its own image negatives (MMGeoLM's "IB+MM" hybrid). Negatives
  from all three sources (image, rule, retrieval).

**The budget** is counted in images through the vision tower per step (`images_per_step`, the profile's
`batch_size`), negatives included. CLIP gets that many positives; MMCLIP with K image negatives per
sample gets `images_per_step / (1 + K)` positives. Both run the same number of steps. Text negatives are
paid for in text-tower time, which `mmgeo bench train` reports."""))

cells.append(code(r"""# NBVAL_CHECK_OUTPUT
configs = comparison_configs(profile, seed=SEED)
for name, cfg in configs.items():
    cfg = cfg.resolved()
    neg = cfg.negative_config()
    print(f"{name:7s} loss={cfg.loss:7s} negatives={','.join(cfg.negatives) if cfg.uses_negatives else '-':22s} "
          f"positives/step={cfg.positives_per_step:3d} images/step={cfg.positives_per_step * (1 + neg.image_slots):3d} "
          f"texts/step={cfg.positives_per_step * (1 + len(neg.text_slots)):3d} steps={cfg.steps}")"""))

cells.append(code(r"""# NBVAL_CHECK_OUTPUT
mm_cfg = configs["mmclip"].resolved()
dataset = HardNegativeDataset(root, "train", mm_cfg.negative_config(), transform=default_transform())
batch = next(iter(make_loader(dataset, tokenizer, mm_cfg, device_type="cpu")))
for key, value in batch.items():
    print(f"{key:20s}", tuple(value.shape) if torch.is_tensor(value) else f"list of {len(value)}")
print("text negative slots:", mm_cfg.negative_config().text_slots)"""))

cells.append(md(r"""## 3 · One training step, written out

The whole step of `train_step`, line by line:

1. **One forward pass** over the B positives and their B·K_i image negatives (and the captions with their
   B·K_t text negatives): one call of the model, so batch statistics and, under DDP, the gradient
   hooks see everything once. `encode_batch` then splits the features back into their roles.
2. Under DDP, **gather** every process's features (`gather_features`, section 5); here it is the identity.
3. **The loss**, computed in float32 even under mixed precision.
4. **Backward**, then **clip** the gradient norm at 1 (a single hard batch cannot throw the model off).
5. **AdamW** (open_clip's betas 0.9/0.98, eps 1e-6, no weight decay on gains, biases and the logit scale),
   then the **cosine schedule with linear warm-up** (a probe of a tiny CLIP from scratch collapsed to a
   constant loss without warm-up).
6. **Clamp** the logit scale at ln 100, as open_clip does: the temperature never goes below 0.01.

We run it by hand on one copy of the model and with `train_step` on another: the weights must agree."""))

cells.append(code(r"""def one_step_by_hand(model, objective, optimizer, scheduler, batch):
    features = encode_batch(model, batch, torch.device("cpu"))               # 1. one forward pass
    features = gather_features(features, DistInfo())                          # 2. (identity: 1 process)
    losses = objective(**{k: v.float() if v.is_floating_point() else v      # 3. the loss, in float32
                          for k, v in features.items()})
    losses["loss"].backward()                                                 # 4. backward ...
    torch.nn.utils.clip_grad_norm_(model.parameters(), mm_cfg.grad_clip)      #    ... and clip
    optimizer.step()                                                          # 5. AdamW
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()                                                          #    cosine + warm-up
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))                           # 6. temperature >= 0.01
    return {k: round(float(v.detach()), 4) for k, v in losses.items()}


seed_everything(SEED)
model_a = create_clip(mm_cfg.model, image_size=profile.image_size)
model_b = copy.deepcopy(model_a)
runs = []
for m in (model_a, model_b):
    objective = ContrastiveObjective(mm_cfg.loss)
    optimizer, scheduler, scaler, amp_dtype = make_optimization(m, mm_cfg, "cpu")
    runs.append((m, objective, optimizer, scheduler, scaler, amp_dtype))

by_hand = one_step_by_hand(*runs[0][:4], batch)
m, objective, optimizer, scheduler, scaler, amp_dtype = runs[1]
library = train_step(m, objective, optimizer, scheduler, scaler, batch, mm_cfg, DistInfo(), torch.device("cpu"),
                     autocast_context(amp_dtype, "cpu"))
same = all(torch.allclose(p, q, atol=1e-6) for p, q in zip(model_a.parameters(), model_b.parameters()))
print("loss parts:", by_hand)
print("weights after the hand-written step equal train_step's:", same)
assert same"""))

cells.append(md(r"""### Mixed precision

On a GPU the forward pass runs under `torch.autocast(dtype=torch.bfloat16)`: matrix multiplications in
bf16 (twice the throughput, half the activation memory), reductions and the loss in float32. bf16 has
float32's exponent range, so unlike fp16 it needs no loss scaling (`precision="fp16"` turns on a
`GradScaler`). `precision="auto"` picks bf16 with CUDA and plain float32 on CPU, where bf16 matmuls are
slow on most processors. The cell shows the dtypes autocast produces, on CPU so it runs everywhere."""))

cells.append(code(r"""# NBVAL_CHECK_OUTPUT
small = {k: v[:2] if torch.is_tensor(v) else v[:2] for k, v in batch.items()}
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    feats = encode_batch(model_a, small, torch.device("cpu"))
print("features under bf16 autocast:", feats["image"].dtype, "| loss input:", feats["image"].float().dtype)"""))

cells.append(md(r"""### Gradient accumulation is not a bigger contrastive batch

`grad_accum=n` splits each step's batch into n micro-batches and adds their gradients before one
optimizer step, so a batch that does not fit in memory still trains. For a loss that is a sum over
*independent* samples that equals the big batch exactly. A contrastive loss is not: each micro-batch has
its own, smaller denominator, so the in-batch negatives of one micro-batch never see those of another.
open_clip's answer for CLIP is to cache the features of all micro-batches and recompute the loss over
the whole batch; we keep the simple form and say so. The numbers:"""))

cells.append(code(r"""with torch.no_grad():
    f = encode_batch(model_a, batch, torch.device("cpu"))
    whole = clip_loss(f["image"], f["text"], f["logit_scale"])
    halves = [encode_batch(model_a, mb, torch.device("cpu")) for mb in micro_batches(batch, 2)]
    accumulated = sum(clip_loss(h["image"], h["text"], h["logit_scale"]) for h in halves) / 2
print(f"CLIP loss over the batch of {batch['image'].shape[0]}: {whole:.3f}   "
      f"mean over two micro-batches of {batch['image'].shape[0] // 2}: {accumulated:.3f} (fewer negatives, lower loss)")"""))

cells.append(md(r"""## 4 · Train CLIP and MMCLIP on the same budget

`train` runs the loop above for `steps` steps with a tqdm bar (steps/s and images/s), validates every
`eval_every` steps on a slice of the *validation* split, logs to `train_log.csv` / `eval_log.csv`, and
checkpoints model, optimizer, scheduler, loss state and RNGs to `state.safetensors`. With `resume=True` a
finished run is reused and an interrupted one continues from its last checkpoint; the batch order is a
pure function of (seed, step), so the resumed run ends with the same weights (a test checks it bit for
bit). Runs live in `runs/<profile>/<run name>/`, outside git."""))

cells.append(code(r"""trained = {name: train(cfg, resume=True, device=device) for name, cfg in configs.items()}
for name, r in trained.items():
    print(f"{name:7s} {r.run_dir}  steps={r.steps_done}  resumed from step {r.resumed_from}")"""))

cells.append(code(r"""logs = pd.concat([read_csv(r.run_dir / "train_log.csv").assign(model=n) for n, r in trained.items()])
evals = pd.concat([read_csv(r.run_dir / "eval_log.csv").assign(model=n) for n, r in trained.items()])
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
sns.lineplot(data=logs, x="step", y="loss", hue="model", ax=axes[0]).set(title="Training loss (total)")
sns.lineplot(data=logs.dropna(subset=["clip_loss"]), x="step", y="clip_loss", hue="model", ax=axes[1]).set(
    title="The in-batch CLIP part of each loss")
val = evals.melt(id_vars=["step", "model"], value_vars=["i2t_fine", "i2t_r1"], var_name="metric")
sns.lineplot(data=val, x="step", y="value", hue="model", style="metric", marker="o", ax=axes[2]).set(
    title="Validation: fine-grained image→text and R@1", ylabel="accuracy")
save_fig(fig, "04_training_curves", profile=profile, seed=SEED)
plt.show()"""))

cells.append(md(r"""Read the middle panel first: both models optimise the same in-batch CLIP term, MMCLIP on fewer
positives per step (its budget also pays for image negatives). The right panel is the validation split,
never the test split: lesson 05 evaluates on the test split, once, after training.

Throughput and the share of time spent waiting for data, from each run's `summary.json` (data loading
must never be the bottleneck: PNGs are pre-rendered, decoded in a worker, and pinned on GPUs)."""))

cells.append(code(r"""throughput = pd.DataFrame({name: {k: r.summary.get(k) for k in
                                  ("positives_per_step", "images_per_step", "images_per_s", "data_wait_share",
                                   "wall_time_s", "device")}
                           for name, r in trained.items()}).T
results["training"] = throughput.to_dict(orient="index")
throughput"""))

cells.append(md(r"""## 5 · Several GPUs: torchrun and DDP

The same loop runs on N GPUs with one process each:

```bash
torchrun --nproc_per_node 4 -m mmgeo_utils train-clip --profile gpu --loss mmclip --negatives image,rule,retrieval
```

Each process takes its contiguous slice of the **global** batch (the batch order does not depend on the
number of processes), encodes it, and then `gather_features` concatenates every process's features with
`torch.distributed.nn.all_gather`, whose backward returns each process the gradient of its own slice.
Every process computes the same loss over the global batch — the contrastive denominator holds all
B·N candidates, as in open_clip's `ClipLoss(gather_with_grad=True)` — and DDP's gradient averaging then
gives exactly the single-process gradient. A test in `tests/test_distributed.py` checks that on 2 CPU
processes (gloo), and CI runs a 2-process `torchrun` smoke training. (On gloo the gradients of the
all-gather arrive through an all-to-all that mis-handles strided tensors; that test is how we found it,
and `distributed.gather` hands them back contiguous.) BatchNorm statistics are synchronised across GPUs
(`SyncBatchNorm`); gloo has none, so on CPU each process normalises its own share."""))

cells.append(code(r"""print("torchrun --nproc_per_node <GPUs> -m mmgeo_utils train-clip --profile", profile.name,
      "--loss mmclip --negatives", ",".join(configs["mmclip"].negatives),
      "--num-negatives", configs["mmclip"].resolved().num_negatives)"""))

cells.append(md(r"""## Summary

* open_clip builds our small models from JSON configs we ship; the same `create_clip` loads hub weights
  or a local checkpoint.
* A fair comparison counts images through the vision tower, negatives included, and gives both models
  the same steps.
* One step is: one forward pass over positives and negatives, gather, loss in float32, backward, clip,
  AdamW, cosine schedule with warm-up, logit-scale clamp. Mixed precision changes dtypes, not the code;
  accumulation is not a bigger contrastive batch.
* Runs checkpoint everything in safetensors and resume to the same weights; torchrun + DDP gathers
  features so the denominator spans all GPUs.

**Next: 05 evaluates these encoders** on the held-out test split — the fine-grained benchmark per
perturbation type, retrieval, robustness, and the AC score — and repeats the comparison over seeds."""))

cells.append(code(r"""seconds = time.perf_counter() - t_start
path = write_results("04_training_mmclip", results, profile=profile, seed=SEED, wall_time_s=seconds)
print(f"notebook ran in {seconds:.1f} s on profile {profile.name}; numbers in {path}")"""))

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
nb.metadata["language_info"] = {"name": "python"}
nbf.write(nb, "notebooks/04_training_mmclip.ipynb")
