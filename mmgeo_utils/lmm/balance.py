"""Yes/no questions balanced per relation, so the relation word cannot give the answer away.

``diagrams.qa.make_qa`` (generator version 5) asks a "yes" question of any relational fact the scene
states, but builds "no" questions only for ``parallel``, ``perpendicular``, ``equal_length`` and
``on_circle``: every ``midpoint``, ``similar`` and ``congruent`` question is "yes", and the others are
far from even (a cpu build: ``on_circle`` 89 % "yes", ``perpendicular`` 19 %, ``equal_length`` 27 %).
A blind LMM learns that from the question's wording alone. (A later generator version should make
"no" questions for every relation; changing ``make_qa`` changes the dataset's bytes, so lesson 06
fixes it here, in what it reads.)

:func:`balance_yes_no` keeps, within one set of questions (a split's, or the part of it a stage or an
evaluation uses) and for each relation (the ``kind`` of the question's fact), ``min(n_yes, n_no)``
"yes" and as many "no" questions, chosen from a seed; a relation with one answer only is dropped,
and the counts say so. Questions of the other kinds (length, angle, which, shape) are all kept.
Every stage's training text, the evaluation's questions and the majority baselines go through it,
so the yes/no majority baseline is exactly 50 %.

========  ==========================================================================
version   questions the LMM stages and the evaluation use (``QA_VERSION``)
========  ==========================================================================
1         every question ``make_qa`` stored (lesson 06 as first written)
2         yes/no balanced per relation (this module)
========  ==========================================================================
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

QA_VERSION = 2  # what the LMM's questions are; stage folders and cached scores carry it
YES_NO = "yes_no"


def _answer(qa: dict) -> str:
    return str(qa["answer"]).strip().rstrip(".").lower()


def _relation(qa: dict) -> str:
    fact = qa.get("fact")
    return fact["kind"] if fact else "(no fact)"


@dataclass(frozen=True)
class YesNoSelection:
    """Which questions of a list are kept (``keep``, indices in order) and, per relation, the counts.

    ``relations[rel]``: ``yes`` and ``no`` (before), ``kept`` (of each answer, after), ``dropped``
    (questions left out). A relation with ``kept == 0`` had one answer only and is gone entirely.
    """

    keep: tuple[int, ...]
    relations: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def dropped_relations(self) -> dict[str, int]:
        """The relations left out entirely (one answer only), with how many questions they had."""
        return {rel: c["dropped"] for rel, c in self.relations.items() if c["kept"] == 0}

    @property
    def n_dropped(self) -> int:
        return sum(c["dropped"] for c in self.relations.values())

    def table(self) -> list[dict[str, Any]]:
        """One row per relation: n yes and n no before and after, dropped, and why (for a DataFrame)."""
        out = []
        for rel, c in sorted(self.relations.items()):
            why = (
                ("only 'yes'" if c["no"] == 0 else "only 'no'")
                if c["kept"] == 0
                else ("" if c["dropped"] == 0 else f"extra '{'yes' if c['yes'] > c['no'] else 'no'}'")
            )
            out.append(
                {
                    "relation": rel,
                    "yes before": c["yes"],
                    "no before": c["no"],
                    "n yes": c["kept"],
                    "n no": c["kept"],
                    "dropped": c["dropped"],
                    "why dropped": why,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "qa_version": QA_VERSION,
            "relations": self.relations,
            "dropped_relations": self.dropped_relations,
            "n_dropped": self.n_dropped,
        }


def balance_yes_no(qas: Sequence[dict], seed: int = 0) -> YesNoSelection:
    """Keep ``min(n_yes, n_no)`` yes and no questions per relation; every other question.

    ``qas`` are question dicts of dataset rows (``kind``, ``answer``, ``fact``). Deterministic in
    ``(qas, seed)``: each relation draws from its own generator (the seed and the relation's name),
    so adding a relation does not change which questions another keeps. Balancing a balanced list
    keeps all of it.
    """
    by_rel: dict[str, dict[str, list[int]]] = {}
    for i, q in enumerate(qas):
        if q["kind"] != YES_NO:
            continue
        a = _answer(q)
        if a not in ("yes", "no"):
            raise ValueError(f"yes/no question {q['question']!r} has the answer {q['answer']!r}")
        by_rel.setdefault(_relation(q), {"yes": [], "no": []})[a].append(i)
    chosen: set[int] = set()
    relations = {}
    for rel in sorted(by_rel):
        yes, no = by_rel[rel]["yes"], by_rel[rel]["no"]
        k = min(len(yes), len(no))
        rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
        for pool in (yes, no):
            chosen.update(pool[j] for j in rng.choice(len(pool), size=k, replace=False).tolist())
        relations[rel] = {"yes": len(yes), "no": len(no), "kept": k, "dropped": len(yes) + len(no) - 2 * k}
    keep = tuple(i for i, q in enumerate(qas) if q["kind"] != YES_NO or i in chosen)
    return YesNoSelection(keep, relations)


def balanced_rows(rows: Sequence[dict], seed: int = 0) -> tuple[list[dict], YesNoSelection]:
    """``rows`` with each row's ``qa`` list cut to the balanced selection over all of them (same order)."""
    flat = [(i, q) for i, r in enumerate(rows) for q in r["qa"]]
    sel = balance_yes_no([q for _, q in flat], seed)
    kept: list[list[dict]] = [[] for _ in rows]
    for k in sel.keep:
        i, q = flat[k]
        kept[i].append(q)
    return [{**r, "qa": qa} for r, qa in zip(rows, kept, strict=True)], sel


def balanced_questions(
    rows: Sequence[dict], limit: int | None = None, seed: int = 0
) -> tuple[list[tuple[int, int, dict]], YesNoSelection]:
    """``(scene index, question index in its row, qa)`` of the first ``limit`` questions, balanced.

    The limit is taken first (the questions an evaluation can afford), then the selection, so the
    scored set itself is balanced per relation: it holds ``limit`` questions less the dropped ones.
    """
    out = [(i, j, q) for i, r in enumerate(rows) for j, q in enumerate(r["qa"])]
    out = out[:limit] if limit else out
    sel = balance_yes_no([q for _, _, q in out], seed)
    return [out[k] for k in sel.keep], sel
