"""What each idea bought: the recommended arm's gain over Adam 3e-4 split into its causes.

The ladder climbs from the seed's default to the tuned config, one cause per rung, every rung trained on the
same seeds at the full budget, so each step is a paired difference (`paired.paired_difference`) with its
interval:

1. constant Adam 3e-4 -> `default:adamw-cosine` (the common default): what today's recipe buys;
2. -> warm-up + cosine with the arm's optimizer at its first point from the range test (max_lr the min-loss
   LR; `ladder:cosine-<family>`): what the range test bought;
3. -> the arm's schedule at its first point from the range test, no search (`ladder:untuned-<arm>`): what
   the schedule bought (no such rung for a warm-up + cosine arm: its first point is rung 2);
4. -> the tuned config (the arm's final runs): what the search bought.

A rung that did not run merges the steps on either side (the step then says what it bundles). Calls are
Holm-corrected over the steps, each interval at its step's Holm level (`paired.holm_family`); a step that is
not significant "bought nothing measurable here", a useful answer (the range test's reading may be enough).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from ..config import BASELINE_ARM
from ..lr import range_family
from .paired import ALPHA, holm_family
from .tables import outcomes
from .verdict import LADDER_PREFIX, MIN_SEEDS, difference_text, is_baseline

LADDER_TITLE = "What each step bought (paired on the same seeds, Holm-adjusted 95% intervals)"
UNTUNED_PREFIX = f"{LADDER_PREFIX}untuned-"  # the schedule's rung: `ladder_rungs`


def ladder_rungs(arm: str) -> list[tuple[str, str]]:
    """The ladder of a searched arm: (the rung's arm name in the trials table, what its step up buys).

    Example:
        >>> [name for name, _ in ladder_rungs("one_cycle-sgdw")][2:]
        ['ladder:cosine-sgdw', 'ladder:untuned-one_cycle-sgdw', 'one_cycle-sgdw']
    """
    cosine = f"cosine-{range_family(arm)}"
    return [
        (BASELINE_ARM, "the seed's default"),
        ("default:adamw-cosine", "the common default (AdamW 1e-3, warm-up + cosine)"),
        (f"{LADDER_PREFIX}{cosine}", "the range test's LR"),
        *([(f"{UNTUNED_PREFIX}{arm}", "the schedule")] if arm != cosine else []),
        (arm, "the search"),
    ]


def ladder_arms(arms: list[str] | tuple[str, ...]) -> list[str]:
    """The names of the ladder's own runs for a study's searched arms (`search.ladder_runs` queues them).

    Example:
        >>> ladder_arms(["cosine-adamw", "clr-sgdw"])
        ['ladder:cosine-adamw', 'ladder:cosine-sgdw', 'ladder:untuned-clr-sgdw']
    """
    return sorted({name for arm in arms for name, _ in ladder_rungs(arm) if name.startswith(LADDER_PREFIX)})


def attribution(trials: pd.DataFrame, verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The attribution ladder of the verdict's recommended arm, from the full-budget final runs.

    Returns:
        None without a recommended searched arm; else `arm`, `rungs` (those that ran, in ladder order),
        `missing` (those that did not), and `steps`: per step `from`, `to`, `bought`, `diff` (the upper rung
        minus the lower, in the metric's units), `ci_low`, `ci_high`, `p`, `p_holm`, `call` ("gain", "loss",
        "not measurable" or "not estimable") and `text`.

    Example:
        >>> [s["text"] for s in attribution(run.trials, run.verdict)["steps"]]  # doctest: +SKIP
    """
    arm = verdict.get("recommended")
    if not arm or is_baseline(arm):
        return None
    matrices, seeds, _, _ = outcomes(trials)
    full = {a: m[max(m)] for a, m in matrices.items()}
    rungs = ladder_rungs(arm)
    present = [(name, bought) for name, bought in rungs if name in full]
    out: dict[str, Any] = {
        "arm": arm,
        "rungs": [name for name, _ in present],
        "missing": [name for name, _ in rungs if name not in full],
        "steps": [],
    }
    if len(present) < 2:
        return out
    accuracy, sign = verdict.get("metric") == "accuracy", 1.0 if verdict.get("mode", "max") == "max" else -1.0
    names = [name for name, _ in rungs]
    estimable = len(seeds) >= MIN_SEEDS
    pairs = list(itertools.pairwise(present))
    family = holm_family(
        {i: (full[hi], full[lo]) for i, ((lo, _), (hi, _)) in enumerate(pairs)}, accuracy, estimable
    )
    for i, ((lo, _), (hi, _)) in enumerate(pairs):
        bought = [b for name, b in rungs[names.index(lo) + 1 : names.index(hi) + 1]]
        out["steps"].append({"from": lo, "to": hi, "bought": " and ".join(bought), **family[i]})
    for step in out["steps"]:
        step.pop("df")
        step["p_holm"] = step["p_holm"] if estimable else None
        if not estimable:
            step["call"] = "not estimable"
        elif step["p_holm"] >= ALPHA:
            step["call"] = "not measurable"
        else:
            step["call"] = "gain" if sign * step["diff"] > 0 else "loss"
        step["text"] = _step_text(step, verdict.get("metric", "accuracy"))
        step.update({key: _finite(step[key]) for key in ("diff", "ci_low", "ci_high", "p")})
    return out


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _step_text(step: dict[str, Any], metric: str) -> str:
    """One step in words: "the range test's LR bought +32.10 points [+28.00, +36.20]" or "... nothing
    measurable here"."""
    diff = difference_text(step["diff"], metric)
    if step["call"] == "not estimable":
        return f"{step['bought']}: {diff} (fewer than {MIN_SEEDS} seeds: not estimable)"
    lo, hi = (difference_text(step[k], metric).removesuffix(" points") for k in ("ci_low", "ci_high"))
    if step["call"] == "not measurable":
        enough = ": the range test's reading is enough" if step["bought"] == "the search" else ""
        return f"{step['bought']} bought nothing measurable here ({diff} [{lo}, {hi}]){enough}"
    verb = "bought" if step["call"] == "gain" else "cost"
    return f"{step['bought']} {verb} {diff} [{lo}, {hi}]"


def attribution_lines(att: dict[str, Any] | None) -> list[str]:
    """The ladder as lines for the terminal and the report; [] without one."""
    if not att or not att["steps"]:
        return []
    lines = [f"{s['from']} -> {s['to']}: {s['text']}" for s in att["steps"]]
    if att["missing"]:
        lines.append(f"not run (their steps merged with the next): {', '.join(att['missing'])}")
    return lines


__all__ = [
    "LADDER_TITLE",
    "UNTUNED_PREFIX",
    "attribution",
    "attribution_lines",
    "ladder_arms",
    "ladder_rungs",
]
