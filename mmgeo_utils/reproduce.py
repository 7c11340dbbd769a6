"""``mmgeo reproduce``: every figure and table of the course, from the lessons to the 3-seed studies.

``make course`` runs the lessons, which train what each needs at seed 0 (lesson 08 a declared cheap version).
:func:`reproduce` then runs the experiments the lessons point to, every seed at the profile's full budget, and
runs lesson 08 again so that it shows their records. Every step reuses finished runs, caches and scores, and an
interrupted step resumes, so the command can be stopped and started again at any time.

====================  ===========================================================  ===============================
step                  what it makes                                                the paper
====================  ===========================================================  ===============================
``course``            lessons 00–08 at seed 0: their figures and numbers           Tables 2-7 in miniature
``clip-vs-mmclip``    ``clip_vs_mmclip.json``: CLIP vs MMCLIP, 3 seeds             Table 2's encoders
``lmm-comparison``    ``lmm_comparison.json``: blind / random / CLIP / MMCLIP LMM  Table 2 (GeoQA)
``gem-comparison``    ``gem_comparison.json``: one LM that embeds and captions     MM-GEM
``slime-comparison``  ``slime_comparison.json``: global vs local tokens (SliME)    SliME's ablations
``ablate-<study>``    ``ablation_<study>.json`` for each of lesson 08's studies    Tables 3, 6, 7, Fig. 5, CE-CLIP
``lesson-08``         lesson 08 again, now showing the 3-seed records              —
====================  ===========================================================  ===============================

:func:`reproduce` writes ``results/<profile>/reproduce.json``: each step's status and time, with the commit and
device, so the README's time of a whole reproduction is a measured one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .profiles import Profile, get_profile
from .repro import Timer, write_results


@dataclass(frozen=True)
class Step:
    name: str
    makes: str
    run: Callable[[Profile, list[int]], Any]


def _course(p: Profile, seeds: list[int]) -> None:
    from .course import run_course  # local: each step imports its own runner

    if run_course(p) != 0:
        raise RuntimeError("a lesson failed: see its error above; `mmgeo course` resumes from it")


def _lesson08(p: Profile, seeds: list[int]) -> None:
    from .course import run_course  # local: as above

    run_course(p, only=["08"], force=True)


def _comparison(p: Profile, seeds: list[int]) -> None:
    from .experiments.comparison import run_comparison  # local: a step loads only its own stack

    run_comparison(p, seeds=seeds, progress=False)


def _lmm(p: Profile, seeds: list[int]) -> None:
    from .experiments.lmm_comparison import run_lmm_comparison  # local: a step loads only its own stack

    run_lmm_comparison(p, seeds=seeds)


def _gem(p: Profile, seeds: list[int]) -> None:
    from .experiments.gem_comparison import run_gem_comparison  # local: a step loads only its own stack

    run_gem_comparison(p, seeds=seeds)


def _slime(p: Profile, seeds: list[int]) -> None:
    from .experiments.slime_comparison import run_slime_comparison  # local: a step loads only its own stack

    run_slime_comparison(p, seeds=seeds)


def _ablate(study: str) -> Callable[[Profile, list[int]], None]:
    def run(p: Profile, seeds: list[int]) -> None:
        from .experiments.ablation import run_ablation  # local: a step loads only its own stack

        run_ablation(study, p, seeds=seeds)

    return run


STUDY_NAMES = ("negatives", "k", "batching", "marks", "robustness", "ce_clip")
STEPS: tuple[Step, ...] = (
    Step("course", "lessons 00-08 at seed 0", _course),
    Step("clip-vs-mmclip", "clip_vs_mmclip.json", _comparison),
    Step("lmm-comparison", "lmm_comparison.json", _lmm),
    Step("gem-comparison", "gem_comparison.json", _gem),
    Step("slime-comparison", "slime_comparison.json", _slime),
    *(Step(f"ablate-{s}", f"ablation_{s}.json", _ablate(s)) for s in STUDY_NAMES),
    Step("lesson-08", "lesson 08 showing the 3-seed records", _lesson08),
)


def reproduce(
    profile: Profile | str | None = None,
    *,
    only: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    steps: Sequence[Step] = STEPS,
    write: bool = True,
) -> list[dict[str, Any]]:
    """Run the chosen steps in order (all by default); return and write what each made and how long it took.

    A failing step prints its traceback and stops the run (later steps read what it makes); the table so far
    is returned and written with the failure in it, and running the command again resumes.
    """
    import traceback  # local: only a failing step prints one

    from tqdm.auto import tqdm  # local: the progress bar only here

    p = get_profile(profile)
    names = [s.name for s in steps]
    unknown = [o for o in only or () if o not in names]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(names)}")
    chosen = [s for s in steps if not only or s.name in only]
    done: list[dict[str, Any]] = []
    bar = tqdm(chosen, desc=f"mmgeo reproduce ({p.name})", unit="step")
    for step in bar:
        bar.set_postfix_str(step.name)
        with Timer() as t:
            try:
                step.run(p, list(seeds))
                status = "ok"
            except Exception as e:  # recorded, and the run stops: a later step builds on this one
                traceback.print_exc()
                status = f"failed: {type(e).__name__}: {e}"[:500]
        done.append({"step": step.name, "makes": step.makes, "status": status, "seconds": round(t.seconds, 1)})
        if status != "ok":
            break
    if write:
        write_results("reproduce", {"steps": done, "seeds": list(seeds)}, profile=p, seed=None,
                      wall_time_s=sum(d["seconds"] for d in done))  # fmt: skip
    return done


def summary_table(done: Sequence[dict[str, Any]]) -> str:
    """The final table: step, what it made, status and minutes."""
    width = max(len(d["step"]) for d in done)
    lines = [f"{'step':{width}s}  {'minutes':>7s}  status  makes"]
    lines += [f"{d['step']:{width}s}  {d['seconds'] / 60:7.1f}  {d['status'][:6]:6s}  {d['makes']}" for d in done]
    return "\n".join(lines)
