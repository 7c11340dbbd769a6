"""Scoring an LMM: greedy answers, exact match after normalisation, and every answer re-checked on the scene.

Exact match (:func:`normalize`): an answer counts when it equals the truth after the forms that
mean the same are made one: numbers (``5``, ``5.0``, ``5°``, ``5 degrees`` → ``5``), yes/no (case,
a trailing full stop), point names in canonical order (``DA`` and ``AD`` name one segment), shape
names in lower case. Reported per question kind next to each kind's *majority-answer baseline*
(the most common training answer of that kind, e.g. ``90`` or ``right triangle``): accuracy below
it means the image taught nothing.

Yes/no questions are balanced per relation (:mod:`~mmgeo_utils.lmm.balance`) in the scored questions
and in the training questions the majority answers come from, so the yes/no baseline is 50 % and a
relation's wording cannot give its answer away; what the selection left out is in the result.

The re-check (:func:`claimed_fact`). Each answer is turned back into the fact it asserts and
tested against the scene's coordinates with :func:`~mmgeo_utils.diagrams.facts.check_fact`: "no" to "Is AB
∥ CD?" asserts *not* ``parallel(A,B,C,D)``; "DE" to "Which segment is the altitude from D to
BC?" asserts ``altitude(D,E,B,C)``; "7" to "What is the length of AB?" asserts
``length(A,B) = 7``. So a wrong answer says *which fact* the model got wrong, and an answer that
differs from the stored one but is also true (a second altitude foot name) would show up as such.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import load_split
from ..diagrams.facts import REL_TOL, check_fact, describe_fact
from ..diagrams.scene import Fact, Scene
from ..profiles import get_lmm_sizes
from ..repro import atomic_write_text
from . import data as D
from .balance import balance_yes_no, balanced_questions
from .vision_language_model import load_lmm

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize(answer: str, kind: str) -> str:
    """The canonical form of an answer of question kind ``kind`` (see the module docstring)."""
    a = answer.strip().rstrip(".").strip()
    if kind in ("length", "angle"):
        m = _NUMBER.search(a.replace(",", ""))
        return f"{float(m.group()):g}" if m else a.lower()
    if kind == "yes_no":
        word = a.split()[0].lower().strip(",.!") if a.split() else ""
        return word
    if kind == "which":
        letters = re.sub(r"[^A-Z]", "", a)
        return "".join(sorted(letters)) if letters else a
    return " ".join(a.lower().split())


def exact_match(prediction: str, truth: str, kind: str) -> bool:
    return normalize(prediction, kind) == normalize(truth, kind)


def claimed_fact(qa: dict, prediction: str) -> tuple[str, bool | None]:
    """``(the fact the answer asserts, whether it holds on the scene)``; ``None`` when it asserts nothing."""
    kind, fact = qa["kind"], Fact.from_dict(qa["fact"])
    scene = qa["_scene"]
    p = normalize(prediction, kind)
    try:
        if kind in ("length", "angle"):
            value = float(p)
            tol = {"rel_tol": max(REL_TOL, 0.051 / max(abs(value), 1e-9))} if "decimal" in qa["question"] else {}
            claim = Fact(kind, fact.args, value)
            return describe_fact(claim), check_fact(scene, claim, **tol)
        if kind == "yes_no":
            if p not in ("yes", "no"):
                return f"'{prediction}' (neither yes nor no)", None
            holds = check_fact(scene, fact)
            return ("" if p == "yes" else "not ") + describe_fact(fact), holds == (p == "yes")
        if kind == "which":
            letters = re.sub(r"[^A-Z]", "", prediction)
            if len(letters) != 2 or any(x not in scene.points for x in letters):
                return f"'{prediction}' (not a segment of the figure)", None
            claims = [Fact(fact.kind, (a, b, *fact.args[2:]), fact.value) for a, b in (letters, letters[::-1])]
            ok = [c for c in claims if check_fact(scene, c)]
            return describe_fact(ok[0] if ok else claims[0]), bool(ok)
        claim = Fact("shape", fact.args, p)
        return describe_fact(claim), check_fact(scene, claim)
    except (ValueError, KeyError) as e:
        return f"'{prediction}' ({e})", None


def questions(rows: Sequence[dict], limit: int | None = None, seed: int = 0) -> list[tuple[int, int, dict]]:
    """``(scene index, question index, qa)`` of the split's first ``limit`` questions, yes/no balanced."""
    return balanced_questions(rows, limit, seed)[0]


def majority_answers(train_rows: Sequence[dict], seed: int = 0) -> dict[str, str]:
    """Each kind's most common (normalised) training answer, over the balanced training questions.

    A tie (yes/no after balancing) goes to the answer met first; either scores 50 % on a balanced set.
    """
    qas = [q for r in train_rows for q in r["qa"]]
    counts: dict[str, Counter] = {}
    for k in balance_yes_no(qas, seed).keep:
        q = qas[k]
        counts.setdefault(q["kind"], Counter())[normalize(q["answer"], q["kind"])] += 1
    return {k: c.most_common(1)[0][0] for k, c in counts.items()}


@torch.no_grad()
def answer(
    model,
    tokenizer,
    prompts: Sequence[str],
    features: dict[str, torch.Tensor] | None,
    *,
    n_image_tokens: int,
    max_new_tokens: int,
    context_length: int,
) -> list[str]:
    """Greedy answers to ``prompts`` (left-padded into one batch)."""
    ids = [D.prompt_ids(tokenizer, p, n_image_tokens) for p in prompts]
    longest = max(len(x) for x in ids)
    if longest + max_new_tokens > context_length:
        raise ValueError(
            f"a prompt of {longest} tokens plus {max_new_tokens} answer tokens exceeds the context "
            f"of {context_length}: shorten the question"
        )
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (longest - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (longest - len(x)) + [1] * len(x) for x in ids])
    new = model.generate(input_ids, mask, features, max_new_tokens, tokenizer.eos_token_id)
    out = []
    for row in new.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


def evaluate_lmm(
    model_dir: Path | str,
    root: Path | str,
    *,
    split: str = "test",
    limit: int | None = None,
    train_rows: Sequence[dict] | None = None,
    batch_size: int = 32,
    cache_dir: Path | str | None = None,
    context_length: int | None = None,
    max_new_tokens: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy overall and per kind, majority baselines, and every answer with the fact it asserts.

    The scored questions are the split's first ``limit``, yes/no balanced per relation with ``seed``
    (``yes_no_selection`` in the result says what was left out).
    """

    model, tok, info = load_lmm(model_dir)
    sizes = get_lmm_sizes(info["profile"])
    rows = load_split(root, split)
    qs, selection = scored_questions(rows, split, limit, seed)
    feats = None
    if model.tower is not None:
        needed = max(i for i, _, _ in qs) + 1
        feats, _ = D.cached_features(model.tower, root, split, needed, cache_dir or Path(model_dir).parent / "features")
    return score(
        model,
        tok,
        rows,
        qs,
        selection,
        feats,
        train_rows if train_rows is not None else load_split(root, "train"),
        seed=seed,
        n_image_tokens=info.get("image_tokens", 0),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens or sizes.max_answer_tokens,
        context_length=context_length or sizes.context_length,
    )


def scored_questions(rows: Sequence[dict], split: str, limit: int | None, seed: int):
    """The questions a split is scored on (its first ``limit``, yes/no balanced with ``seed``) and the selection."""
    qs, selection = balanced_questions(rows, limit, seed)
    if not qs:
        raise ValueError(f"no {split} questions to score (limit {limit}, after balancing yes/no)")
    return qs, selection


def score(
    model,
    tokenizer,
    rows: Sequence[dict],
    qs: Sequence[tuple[int, int, dict]],
    selection,
    features: dict[str, torch.Tensor] | None,
    train_rows: Sequence[dict],
    *,
    seed: int,
    n_image_tokens: int,
    batch_size: int,
    max_new_tokens: int,
    context_length: int,
) -> dict[str, Any]:
    """Answer ``qs`` and summarise: per-kind accuracy beside the training majority answers, and the selection.

    The one scoring path of lessons 06 and 07 (:func:`evaluate_lmm`, ``lmm.slime.evaluate_slime``).
    """
    records = answer_questions(
        model,
        tokenizer,
        rows,
        qs,
        features,
        n_image_tokens=n_image_tokens,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        context_length=context_length,
    )
    return {**summarize(records, majority_answers(train_rows, seed)), "yes_no_selection": selection.to_dict()}


def answer_questions(
    model,
    tokenizer,
    rows: Sequence[dict],
    qs: Sequence[tuple[int, int, dict]],
    features: dict[str, torch.Tensor] | None,
    *,
    n_image_tokens: int,
    batch_size: int,
    max_new_tokens: int,
    context_length: int,
) -> list[dict]:
    """One record per question of ``qs``: the greedy answer, whether it is right, and the fact it asserts.

    ``features`` are indexed by scene (every key's first dimension), so lesson 07's local-crop features
    travel with the global ones.
    """
    records = []
    for b in range(0, len(qs), batch_size):
        chunk = qs[b : b + batch_size]
        f = (
            None
            if features is None
            else {k: v[torch.tensor([i for i, _, _ in chunk])].float() for k, v in features.items()}
        )
        preds = answer(
            model,
            tokenizer,
            [D.sft_prompt(q["question"], features is not None) for _, _, q in chunk],
            f,
            n_image_tokens=n_image_tokens,
            max_new_tokens=max_new_tokens,
            context_length=context_length,
        )
        for (i, j, q), pred in zip(chunk, preds, strict=True):
            scene = Scene.from_dict(rows[i]["scene"])
            claim, holds = claimed_fact({**q, "_scene": scene}, pred)
            records.append(
                {
                    "scene": rows[i]["id"],
                    "index": i,
                    "qa": j,
                    "kind": q["kind"],
                    "relation": q["fact"]["kind"],
                    "question": q["question"],
                    "truth": q["answer"],
                    "prediction": pred,
                    "correct": exact_match(pred, q["answer"], q["kind"]),
                    "claim": claim,
                    "claim_holds": holds,
                }
            )
    return records


def summarize(records: list[dict], majority: dict[str, str]) -> dict[str, Any]:
    by_kind = {}
    for kind in D.QUESTION_KINDS:
        rs = [r for r in records if r["kind"] == kind]
        if not rs:
            continue
        maj = majority.get(kind, "")
        by_kind[kind] = {
            "accuracy": sum(r["correct"] for r in rs) / len(rs),
            "n": len(rs),
            "majority_answer": maj,
            "majority_baseline": sum(normalize(r["truth"], kind) == maj for r in rs) / len(rs),
        }
    # yes/no per relation, with how often "yes" is the truth: a relation whose questions are almost always
    # "yes" (or "no") lets a blind model answer from the question's wording alone
    by_relation = {}
    for rel in sorted({r["relation"] for r in records if r["kind"] == "yes_no"}):
        rs = [r for r in records if r["kind"] == "yes_no" and r["relation"] == rel]
        by_relation[rel] = {
            "accuracy": sum(r["correct"] for r in rs) / len(rs),
            "n": len(rs),
            "yes_share": sum(normalize(r["truth"], "yes_no") == "yes" for r in rs) / len(rs),
        }
    checked = [r for r in records if r["claim_holds"] is not None]
    return {
        "overall": sum(r["correct"] for r in records) / max(len(records), 1),
        "n": len(records),
        "overall_majority_baseline": sum(normalize(r["truth"], r["kind"]) == majority.get(r["kind"]) for r in records)
        / max(len(records), 1),
        "by_kind": by_kind,
        "yes_no_by_relation": by_relation,
        "claims_that_hold": sum(r["claim_holds"] for r in checked) / len(checked) if checked else None,
        "claims_checked": len(checked),
        "answers": records,
    }


def write_eval(result: dict[str, Any], path: Path | str) -> Path:

    atomic_write_text(Path(path), json.dumps(result, indent=1) + "\n")
    return Path(path)
