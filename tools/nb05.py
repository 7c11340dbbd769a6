"""Writes notebooks/05_evaluating_encoders.ipynb (sources only; refresh_notebooks.py executes it)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = []

cells.append(md(r"""# 05 · Evaluating vision encoders

Lesson 04 trained CLIP and MMCLIP on the same data and budget. This lesson measures what each learned, on
the **test split** that no choice of the course has looked at, and asks the question MMGeoLM (Sun et al.,
2025) is about: does training against hard negatives teach an encoder the fine geometric facts that plain
CLIP misses — without losing general retrieval?

**What you will learn**

1. The **fine-grained benchmark**: each diagram must prefer its true caption over its hard-negative
   captions (image→text), and each caption its true diagram over the diagrams perturbed from it
   (text→image); a tie is a miss, and every number comes with its chance level.
2. **Which facts each model confuses**, per rule error type and per perturbation type, with examples.
3. **Standard retrieval** (R@1, R@5), the per-source **Hit@1 probes** of MMGeoLM's appendix C, and
   **robustness** to 30° rotation and 0.5× downscaling (MMGeoLM Table 7).
4. **The central result over seeds**: CLIP vs MMCLIP, mean ± std, written to
   `results/<profile>/clip_vs_mmclip.json`.
5. The **AC score** of the Law of Vision Representation (Yang et al., 2024): cross-modal alignment (A)
   and correspondence (C) for every encoder we have, with C measured from the known point positions of
   our generated diagrams.

Code: [`mmgeo_utils/evaluate.py`](../mmgeo_utils/evaluate.py), [`experiments.py`](../mmgeo_utils/experiments.py),
[`ac_score.py`](../mmgeo_utils/ac_score.py); `mmgeo eval-clip` and `mmgeo experiment clip-vs-mmclip` are the
same from the shell.

**How long it takes.** `smoke`: under a minute. `cpu` (2 cores): the seed-0 models come from lesson 04;
the comparison trains seeds 1 and 2 of both models (about 40 minutes, checkpointed and resumable), then
evaluation and the AC score take a few minutes. `gpu`: not measured yet."""))

cells.append(code(r"""import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

from mmgeo_utils.ac_score import (caption_embeddings, chance_correspondence, correspondence_score,
                                  encoder_alignment, keypoint_pairs)
from mmgeo_utils.dataset import DatasetConfig, build_dataset, load_image
from mmgeo_utils.evaluate import encode_items, evaluate_clip, headline, i2t_choices, split_items, tidy_table
from mmgeo_utils.experiments import comparison_configs, comparison_table, evaluate_run, run_comparison
from mmgeo_utils.models import create_clip, get_tokenizer
from mmgeo_utils.plots import save_fig, set_style
from mmgeo_utils.profiles import get_profile
from mmgeo_utils.repro import detect_device, seed_everything, write_results
from mmgeo_utils.retrieval import load_sentence_encoder
from mmgeo_utils.train import train

profile = get_profile()
SEED = 0
seed_everything(SEED)
set_style()
device = detect_device()
torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
t_start = time.perf_counter()
results = {}
root = build_dataset(DatasetConfig.from_profile(profile), progress=False)
tokenizer = get_tokenizer(profile.clip_model)
print(f"profile {profile.name}: {profile.description}")"""))

cells.append(md(r"""## 1 · The benchmark, on lesson 04's models

Three encoders to start with: a **random** initialisation (the floor), and the seed-0 **CLIP** and
**MMCLIP** of lesson 04 (`train(..., resume=True)` finds them finished and returns at once; run lesson 04
first, or this trains them now). For every test diagram:

* **i2t_fine**: the diagram's similarity to its true caption must be *strictly* higher than to every one
  of its hard-negative captions — one rule edit of each type (label, shape, relation, number) and the
  retrieved captions. Chance: 1 / (1 + number of negatives).
* **t2i_fine**: the caption's similarity to its true diagram must beat every diagram perturbed from it.
* Per type, each negative is a two-way choice (chance 50 %); retrieval is 1 of 1 + K.

`tidy_table` prints one row per number with its chance level beside it."""))

cells.append(code(r"""trained = {name: train(cfg, resume=True, device=device) for name, cfg in comparison_configs(profile, seed=SEED).items()}
evaluations = {name: evaluate_run(r, data_root=root, device=device) for name, r in trained.items()}
random_model = create_clip(profile.clip_model, image_size=profile.image_size, device=device)
evaluations = {"random init": evaluate_clip(random_model, tokenizer, root, image_size=profile.image_size, device=device),
               **evaluations}
table = pd.concat([tidy_table(r, model=name) for name, r in evaluations.items()])
wide = table.pivot_table(index=["benchmark", "breakdown"], columns="model", values="accuracy_%", sort=False)
wide["chance"] = table.drop_duplicates(["benchmark", "breakdown"]).set_index(["benchmark", "breakdown"])["chance_%"]
results["seed0"] = {name: headline(r) for name, r in evaluations.items()}
wide[["random init", "clip", "mmclip", "chance"]].round(1)"""))

cells.append(md(r"""## 2 · Which facts each model confuses

The same numbers per type. For image→text, each bar is "the diagram prefers its caption over the
caption with one fact of this kind edited"; for text→image, "the caption prefers its diagram over the
diagram with this perturbation". 50 % is chance for every bar but `retrieval`."""))

cells.append(code(r"""rows = []
for name, r in evaluations.items():
    for bench in ("i2t_fine", "t2i_fine"):
        for part, d in r[bench].items():
            if part != "all":
                rows.append({"model": name, "benchmark": bench, "type": part, "accuracy": 100 * d["acc"], "n": d["n"]})
per_type = pd.DataFrame(rows)
fig, axes = plt.subplots(1, 2, figsize=(16, 4.5), gridspec_kw={"width_ratios": [1, 2.4]})
for ax, bench, title in ((axes[0], "i2t_fine", "image→text: true caption vs one edited caption"),
                         (axes[1], "t2i_fine", "text→image: true diagram vs one perturbed diagram")):
    sns.barplot(data=per_type[per_type.benchmark == bench], x="type", y="accuracy", hue="model", ax=ax)
    ax.axhline(50, ls="--", c="gray", lw=1)
    ax.set(title=title, xlabel="", ylabel="accuracy %", ylim=(0, 100))
    ax.tick_params(axis="x", rotation=35)
save_fig(fig, "05_per_type", profile=profile, seed=SEED)
plt.show()"""))

cells.append(md(r"""And what the confusions look like: test diagrams where CLIP preferred a hard negative, with the caption
it chose, beside MMCLIP's choice. The kind of the chosen negative is the fact the model could not see."""))

cells.append(code(r"""items = split_items(root, "test")
choices = {}
for name in ("clip", "mmclip"):
    model = create_clip(trained[name].config.model, trained[name].model_path, image_size=profile.image_size, device=device)
    choices[name] = i2t_choices(items, *encode_items(model, tokenizer, items, profile.image_size, device=device))
confused = [i for i in range(items.n) if not choices["clip"][i]["correct"]][:3]
fig, axes = plt.subplots(1, max(1, len(confused)), figsize=(5 * max(1, len(confused)), 5), squeeze=False)
for ax, i in zip(axes[0], confused):
    ax.imshow(load_image(root, items.rows[i]))
    ax.axis("off")
    ax.set_title(f"test item {i}", fontsize=10)
    print(f"--- item {i}\n true  : {items.texts[i]}")
    for name in ("clip", "mmclip"):
        c = choices[name][i]
        print(f" {name:6s}: {'correct' if c['correct'] else 'chose a ' + c['kind'] + ' negative: ' + c['chosen']}")
plt.show()
kinds = pd.DataFrame({name: pd.Series([c["kind"] for c in ch if not c["correct"]]).value_counts()
                      for name, ch in choices.items()}).fillna(0).astype(int)
print("what the wrong choices were, per model:")
kinds"""))

cells.append(md(r"""## 3 · Retrieval, probes and robustness

Hard negatives must not cost the general skill: **R@1 / R@5** over the whole test split, each diagram
against every caption (chance k / N). The **Hit@1 probes** of MMGeoLM's appendix C take the positive
among its negatives of *one source* only; each kind of negative should help most on its own probe.
**Robustness** repeats the fine-grained benchmark on diagrams rotated 30° and downscaled 0.5× (then
brought back to the model's size); the paper found image negatives more robust to downscaling than text
negatives."""))

cells.append(code(r"""def block(prefix):
    keep = wide.index.get_level_values("benchmark").str.startswith(prefix)
    return wide[keep][["random init", "clip", "mmclip", "chance"]].round(1)

display(block("retrieval"), block("probes"), block("i2t_fine@").droplevel("breakdown"), block("t2i_fine@").droplevel("breakdown"))"""))

cells.append(md(r"""## 4 · The central result, over seeds

One seed is an anecdote. `run_comparison` trains CLIP and MMCLIP for each of the profile's seeds (seed 0
is lesson 04's, reused; on `cpu` three seeds), evaluates each on the test split, and writes per-seed
numbers with mean ± std to `results/<profile>/clip_vs_mmclip.json`. Same data, same images per step, same
steps; the recipe was chosen on the validation split."""))

cells.append(code(r"""record = run_comparison(profile, seeds=range(profile.seeds), device=device)
comparison_table(record)"""))

cells.append(code(r"""rows = []
for name in ("clip", "mmclip"):
    for entry in record[name]:
        for bench in ("i2t_fine_by_type", "t2i_fine_by_type"):
            for t, acc in entry[bench].items():
                rows.append({"model": name, "benchmark": bench.replace("_by_type", ""), "type": t, "accuracy": 100 * acc})
seeds_df = pd.DataFrame(rows)
fig, axes = plt.subplots(1, 2, figsize=(16, 4.5), gridspec_kw={"width_ratios": [1, 2.4]})
for ax, bench in zip(axes, ("i2t_fine", "t2i_fine")):
    sns.barplot(data=seeds_df[seeds_df.benchmark == bench], x="type", y="accuracy", hue="model", errorbar="sd", ax=ax)
    ax.axhline(50, ls="--", c="gray", lw=1)
    ax.set(title=f"{bench} per type, mean ± std over {len(record['seeds'])} seed(s)", xlabel="", ylabel="accuracy %",
           ylim=(0, 100))
    ax.tick_params(axis="x", rotation=35)
save_fig(fig, "05_clip_vs_mmclip_per_type", profile=profile, seed=None)
plt.show()
results["comparison_gap"] = record["gap_mmclip_minus_clip"]"""))

cells.append(md(r"""## 5 · The AC score: alignment and correspondence

The Law of Vision Representation (Yang et al., 2024) predicts an LMM's benchmark score from two
properties of its vision encoder, measured before the LMM is trained:

* **A — cross-modal alignment.** In the paper (v3), the frozen LLM's log-likelihood of the true caption
  given the encoder's features after training only a projector. Our LMM arrives in lesson 06, so we keep
  the idea with a frozen *sentence encoder* (MiniLM) as the language side: a ridge-regression projector
  from the encoder's image embedding to the caption's sentence embedding, fitted on training pairs; A is
  the mean centred cosine on test pairs (0 = no better than predicting the average caption).
* **C — correspondence.** In the paper, PCK@0.10 of zero-shot keypoint matching on SPair-71k. Our
  diagrams come with exact keypoints: pair each test diagram with its image negatives (same frame and
  letters, some points moved by the perturbation), take the encoder's local feature at each *moved*
  point, find the most similar location in the other diagram, and count a hit within 0.10 × image size.

Every encoder we have: random init, and each seed of CLIP and MMCLIP. The paper fits a quadratic in
(A, C) to downstream LMM scores; with a handful of encoders and no LMM yet we only measure and plot here
— lesson 08 fits it."""))

cells.append(code(r"""encoders = {"random init": random_model}
for name in ("clip", "mmclip"):
    for entry in record[name]:
        run = trained[name] if entry["seed"] == SEED else None
        path = (run.model_path if run else os.path.join(entry["run"], "model.safetensors"))
        encoders[f"{name} s{entry['seed']}"] = create_clip(profile.clip_model, path, image_size=profile.image_size,
                                                           device=device)
captions = caption_embeddings(root, load_sentence_encoder(profile.sentence_encoder),
                              n_train=min(1000, profile.n_train), n_test=min(500, profile.n_test))
pairs = keypoint_pairs(root, "test", max_pairs=300)
fine = {"random init": evaluations["random init"]["i2t_fine"]["all"]["acc"]}
fine.update({f"{n} s{e['seed']}": e["i2t_fine"] for n in ("clip", "mmclip") for e in record[n]})
ac = pd.DataFrame([{"encoder": name, "A": encoder_alignment(m, root, captions, profile.image_size, device=device),
                    "C": correspondence_score(m, pairs, profile.image_size, device=device),
                    "i2t_fine %": 100 * fine[name]} for name, m in encoders.items()]).set_index("encoder")
c_chance = chance_correspondence(pairs, profile.image_size)
results["ac"] = {"table": ac.to_dict(orient="index"), "c_chance": c_chance, "keypoint_pairs": len(pairs)}
print(f"{len(pairs)} keypoint pairs; C of a random matcher: {c_chance:.3f}")
ac.round(3)"""))

cells.append(code(r"""fig, ax = plt.subplots(figsize=(7, 5))
kind = ac.index.str.split(" ").str[0]
sns.scatterplot(data=ac.assign(model=kind), x="A", y="C", hue="model", size="i2t_fine %", sizes=(40, 300), ax=ax)
ax.axhline(c_chance, ls="--", c="gray", lw=1, label="C of a random matcher")
for name, row in ac.iterrows():
    ax.annotate(name, (row["A"], row["C"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
ax.set(title="Alignment vs correspondence of every encoder", xlabel="A (centred cosine to MiniLM, ridge projector)",
       ylabel="C (PCK@0.10 of moved points)")
ax.legend(fontsize=8, loc="best")
save_fig(fig, "05_ac_scores", profile=profile, seed=None)
plt.show()"""))

cells.append(md(r"""## Summary

* The fine-grained benchmark needs no labels: every negative is known to be false. Ties are misses, and
  chance is printed beside every number.
* Per type, plain CLIP sees coarse structure (shape, auxiliary lines) and struggles with what needs
  reading the diagram closely; MMCLIP's hard negatives aim exactly there. The comparison over seeds, with
  the same data, images per step and steps, is in `results/<profile>/clip_vs_mmclip.json`.
* Retrieval R@1/R@5, the per-source probes and the robustness rows say what the hard negatives cost or
  buy beyond the fine-grained benchmark.
* A (alignment, via a projector to a frozen language space) and C (correspondence, from the exact
  keypoints of generated diagrams) place every encoder on the Law of Vision Representation's map.

**Next: 06 plugs the MMCLIP vision tower into a small LLaVA-style LMM** (a projector and LoRA on a causal
LM) that answers geometry questions, and asks whether the better encoder gives the better LMM."""))

cells.append(code(r"""seconds = time.perf_counter() - t_start
path = write_results("05_evaluating_encoders", results, profile=profile, seed=SEED, wall_time_s=seconds)
print(f"notebook ran in {seconds:.1f} s on profile {profile.name}; numbers in {path}")"""))

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
nb.metadata["language_info"] = {"name": "python"}
nbf.write(nb, "notebooks/05_evaluating_encoders.ipynb")
