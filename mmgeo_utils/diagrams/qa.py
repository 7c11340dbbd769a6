"""Question–answer pairs about a scene, measured from its coordinates: the questions of lesson 06's LMM.

Questions (:func:`make_qa`) are computed from the coordinates, not copied from the
caption: lengths and angles the figure does not state (a hypotenuse from a
Pythagorean triple, an alternate angle, Thales' right angle), yes/no questions
answered "yes" (the scene's relational facts) or "no" (false ones checked false by
:func:`~mmgeo_utils.diagrams.facts.check_fact`), which-segment and shape questions. "No" questions exist only
for parallel, perpendicular, equal length and on-circle: a midpoint, similar or congruent question is always
"yes" (lesson 06 balances yes/no per relation, :mod:`~mmgeo_utils.lmm.balance`). Lesson 01 stores them with every dataset row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import geometry as g
from .captions import _centre_names, _shape_noun
from .facts import check_fact, shape_name
from .families.draft import format_number, is_nice
from .families.legibility import drawn_sides
from .scene import AngleMark, Circle, Fact, RightAngleMark, Scene, typed_value, untyped_value

__all__ = ["QA", "QA_QUOTAS", "make_qa"]


@dataclass(frozen=True)
class QA:
    """A question about a scene with its exact answer.

    ``kind`` is one of ``length``, ``angle``, ``yes_no``, ``which``, ``shape``;
    ``value`` is the answer as a number (lengths, angles) or string; ``fact`` is the
    fact the question asks about (for yes/no questions possibly a false one), so the
    answer can be re-checked against the coordinates.
    """

    question: str
    answer: str
    kind: str
    value: float | str | None
    fact: Fact | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metadata row's form: the value typed as in :meth:`Fact.to_dict`."""
        return {
            "question": self.question,
            "answer": self.answer,
            "kind": self.kind,
            **typed_value(self.value),
            "fact": None if self.fact is None else self.fact.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QA:
        fact = d.get("fact")
        return cls(
            d["question"], d["answer"], d["kind"], untyped_value(d), None if fact is None else Fact.from_dict(fact)
        )


WHOLE_TOL = 1e-4  # a measured angle within this of a whole degree is an exact, derivable value
EXACT_LENGTH_TOL = 1e-4  # coordinates are stored to 6 decimals: measured lengths are exact to about this
VISIBLY_UNEQUAL = 0.05  # 'no' to "is AB = CD?" only when they differ by 5 % or more
VISIBLY_SKEW_DEG = 5.0  # 'no' to parallel/perpendicular only when off by 5° or more


def _chains(scene: Scene) -> list[list[str]]:
    """Points on each drawn straight stroke, in order along it (a side with its feet and midpoints)."""
    xy = {k: np.asarray(v, dtype=float) for k, v in scene.points.items()}
    chains = []
    for a, b in drawn_sides(scene):
        d = xy[b] - xy[a]
        on = [p for p in xy if g.on_segment(xy[p], xy[a], xy[b], tol=1e-6)]
        chains.append(sorted(on, key=lambda p: float(np.dot(xy[p] - xy[a], d))))
    return chains


def _drawn_pairs(scene: Scene) -> list[tuple[str, str]]:
    """Pairs of points joined by a drawn stroke (possibly part of a longer side)."""
    pairs: list[tuple[str, str]] = []
    for chain in _chains(scene):
        for p, q in itertools.combinations(chain, 2):
            if (p, q) not in pairs and (q, p) not in pairs:
                pairs.append((p, q))
    return pairs


def _rays(scene: Scene) -> dict[str, list[str]]:
    """For each point, one representative point per drawn ray leaving it (the nearest along it)."""
    out: dict[str, list[str]] = {p: [] for p in scene.points}
    for chain in _chains(scene):
        for i, p in enumerate(chain):
            for q in (chain[i - 1] if i > 0 else None, chain[i + 1] if i + 1 < len(chain) else None):
                if q is not None and q not in out[p]:
                    out[p].append(q)
    return out


def _marked(scene: Scene, f: Fact) -> bool:
    """Whether the figure already marks this angle (a right-angle square or an arc on the same arms)."""
    a, v, b = f.args
    return any(
        isinstance(el, (RightAngleMark, AngleMark)) and el.vertex == v and {el.a, el.b} == {a, b}
        for el in scene.elements
    )


def _length_questions(scene: Scene) -> list[QA]:
    """Lengths of drawn segments the scene does not state, when it states one (so the scale is known)."""
    if not any(f.kind == "length" for f in scene.facts):
        return []
    stated = {frozenset(f.args) for f in scene.facts if f.kind == "length"}
    out = []
    for a, b in _drawn_pairs(scene):
        v = scene.unit * g.dist(scene.xy(a), scene.xy(b))
        if frozenset((a, b)) in stated:
            continue
        if is_nice(v, EXACT_LENGTH_TOL):
            value = float(format_number(v))
            out.append(
                QA(f"What is the length of {a}{b}?", format_number(v), "length", value, Fact("length", (a, b), value))
            )
        else:
            value = round(v, 1)
            out.append(
                QA(
                    f"What is the length of {a}{b}, to one decimal place?",
                    f"{value:.1f}",
                    "length",
                    value,
                    Fact("length", (a, b), value),
                )
            )
    return out


def _angle_questions(scene: Scene) -> list[QA]:
    """Whole-degree angles between drawn rays that the scene does not state (sums, parallels, Thales)."""
    stated = {f.canonical().args for f in scene.facts if f.kind == "angle"}
    out = []
    for v, ends in _rays(scene).items():
        for a, b in itertools.combinations(sorted(ends), 2):
            m = g.angle_at(scene.xy(v), scene.xy(a), scene.xy(b))
            value = round(m)
            if abs(m - value) > WHOLE_TOL or value in (0, 180):
                continue
            f = Fact("angle", (a, v, b), int(value))
            if f.canonical().args in stated:
                continue
            out.append(QA(f"What is the measure of ∠{a}{v}{b} in degrees?", f"{int(value)}°", "angle", float(value), f))
    return out


def _yes_no_questions(scene: Scene) -> tuple[list[QA], list[QA]]:
    """True questions from the scene's relational facts; false ones built from other drawn segments."""
    yes, no = [], []
    for f in scene.facts:
        q = _yes_no_text(f)
        if q:
            yes.append(QA(q, "yes", "yes_no", "yes", f))
    pairs = _drawn_pairs(scene)
    xy = scene.xy
    for (a, b), (c, d) in itertools.combinations(pairs, 2):
        if len({a, b, c, d}) < 3:
            continue
        disjoint = len({a, b, c, d}) == 4  # lines through a shared point: "parallel?" would be trivial
        ang = g.line_angle_between(xy(a), xy(b), xy(c), xy(d))
        la, lc = g.dist(xy(a), xy(b)), g.dist(xy(c), xy(d))
        candidates = []
        if disjoint and ang >= VISIBLY_SKEW_DEG:
            candidates.append(Fact("parallel", (a, b, c, d)))
        if disjoint and abs(ang - 90) >= VISIBLY_SKEW_DEG:
            candidates.append(Fact("perpendicular", (a, b, c, d)))
        if abs(la - lc) >= VISIBLY_UNEQUAL * max(la, lc):
            candidates.append(Fact("equal_length", (a, b, c, d)))
        for f in candidates:
            if not check_fact(scene, f):
                no.append(QA(_yes_no_text(f), "no", "yes_no", "no", f))
    for o in _centre_names(scene):
        for p in scene.points:
            f = Fact("on_circle", (p, o)) if p != o else None
            if (
                f
                and not check_fact(scene, f)
                and abs(g.dist(xy(p), xy(o)) - _radius(scene, o)) > VISIBLY_UNEQUAL * _radius(scene, o)
            ):
                no.append(QA(_yes_no_text(f), "no", "yes_no", "no", f))
    return yes, no


def _radius(scene: Scene, o: str) -> float:
    return next(el.radius for el in scene.elements if isinstance(el, Circle) and el.center == o)


def _yes_no_text(f: Fact) -> str | None:
    a = f.args
    texts = {
        "parallel": lambda: f"Is {a[0]}{a[1]} parallel to {a[2]}{a[3]}?",
        "perpendicular": lambda: f"Is {a[0]}{a[1]} perpendicular to {a[2]}{a[3]}?",
        "equal_length": lambda: f"Is {a[0]}{a[1]} equal in length to {a[2]}{a[3]}?",
        "on_circle": lambda: f"Does {a[0]} lie on the circle centred at {a[1]}?",
        "midpoint": lambda: f"Is {a[0]} the midpoint of {a[1]}{a[2]}?",
        "similar": lambda: f"Is △{''.join(a[:3])} similar to △{''.join(a[3:])}?",
        "congruent": lambda: f"Is △{''.join(a[:3])} congruent to △{''.join(a[3:])}?",
    }
    return texts[f.kind]() if f.kind in texts else None


def _which_questions(scene: Scene) -> list[QA]:
    """Name the segment that plays a role: the altitude, the median, the bisector, the tangent, the diameter."""
    out = []
    for f in scene.facts:
        a = f.args
        if f.kind == "altitude":
            q = f"Which segment is the altitude from {a[0]} to {a[2]}{a[3]}?"
        elif f.kind == "median":
            q = f"Which segment is the median from {a[0]} to {a[2]}{a[3]}?"
        elif f.kind == "bisector":
            q = f"Which segment bisects ∠{a[2]}{a[0]}{a[3]}?"
        elif f.kind == "tangent":
            q = f"Which line is tangent to the circle centred at {a[2]} at {a[1]}?"
        elif f.kind == "diameter":
            q = f"Which segment is a diameter of the circle centred at {a[2]}?"
        else:
            continue
        out.append(QA(q, a[0] + a[1], "which", a[0] + a[1], f))
    return out


def _shape_questions(scene: Scene) -> list[QA]:
    out = []
    for f in scene.facts:
        if f.kind == "shape":
            noun = _shape_noun(str(f.value), len(f.args))
            name = shape_name([scene.xy(p) for p in f.args])  # from the coordinates, not the fact
            out.append(
                QA(f"What kind of {noun} is {''.join(f.args)}?", name, "shape", name, Fact("shape", f.args, name))
            )
    return out


# How many questions of each kind a scene gets at most (fewer when it has none to ask).
QA_QUOTAS = {"length": 2, "angle": 2, "yes": 1, "no": 1, "which": 1, "shape": 1}


def make_qa(scene: Scene, seed: int = 0) -> list[QA]:
    """Question–answer pairs about ``scene`` whose answers are measured from its coordinates.

    Deterministic in ``(scene, seed)``; exact (whole or one-decimal) lengths and
    whole-degree angles come first. Yes/no questions come in both polarities only for parallel,
    perpendicular, equal length and on-circle (see the module docstring).
    """
    rng = np.random.default_rng(seed)
    yes, no = _yes_no_questions(scene)
    pools = {
        "length": _length_questions(scene),
        "angle": _angle_questions(scene),
        "yes": yes,
        "no": no,
        "which": _which_questions(scene),
        "shape": _shape_questions(scene),
    }
    chosen: list[QA] = []
    for kind, pool in pools.items():
        if kind == "length":  # keep exact answers first, then pick among them
            exact = [q for q in pool if "decimal" not in q.question]
            pool = exact or pool
        if kind == "angle":  # angles the figure does not mark are the interesting ones
            pool = [q for q in pool if not _marked(scene, q.fact)] or pool
        k = min(QA_QUOTAS[kind], len(pool))
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False).tolist())] if k else []
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]
