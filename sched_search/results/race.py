"""A raced study's record and its test: `plan.json` (what the race ran, stopped and left unrun), read by the
verdict and by `runs_done`, and the paired test that stops candidates below the leader between rounds.

Racing (Maron & Moore's Hoeffding races, Birattari et al.'s F-Race): every candidate runs on one seed, then
a paired test against the leader stops those already below it, and only the others get more seeds or
search trials. The driver side, which runs the rounds, is `study/racing.py`; this module is pure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .paired import ALPHA, holm, holm_family

PLAN_FILE = "plan.json"


def read_plan(run_dir: str | Path) -> dict[str, Any] | None:
    """`plan.json` of a raced study (`[search] budget` a number), or None: a full study writes none."""
    path = Path(run_dir) / PLAN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def verdict_trials(trials: pd.DataFrame, plan: dict[str, Any] | None) -> pd.DataFrame:
    """The rows the verdict judges: without the runs the race left out of it (`plan["left_out"]`, trial id ->
    why: a candidate stopped before it had every seed, or a config its arm's search replaced)."""
    left_out = set((plan or {}).get("left_out", {}))
    if not left_out or trials.empty or "trial_id" not in trials.columns:
        return trials
    return trials[~trials["trial_id"].isin(left_out)]


def runs_planned(trials: pd.DataFrame, plan: dict[str, Any]) -> tuple[int, int]:
    """(done, planned) runs of a raced study: the runs its rounds released, each done when the tables hold its
    trial; one more is planned while the race has not ended (its next round is not known yet)."""
    ran = set(trials["trial_id"]) if not trials.empty and "trial_id" in trials.columns else set()
    runs = plan.get("runs", [])
    done = sum(1 for r in runs if r.get("trial_id") in ran)
    return done, len(runs) + (0 if plan.get("finished") else 1)


def shared_records(records: dict, plan: dict[str, Any] | None) -> dict:
    """The runs the race recorded under a second name (`plan["shared"]`: the alias's trial id -> the trial
    that trained it and the alias's own config), as `tables.tables_from_rows` reads records: the trained
    run's record (with the settings Tune merged into its config) under the alias's name and labels, marked
    `shared_from` so that its cost counts once."""
    out = {}
    for alias, shared in (plan or {}).get("shared", {}).items():
        trained = records.get(("final", shared["of"]))
        if trained is not None:
            settings = {
                k: v for k, v in trained[0].items() if k not in ("source_trial", "source_full_budget")
            }
            config = {**settings, **shared["config"], "shared_from": shared["of"]}
            out[("final", alias)] = (config, *trained[1:])
    return out


def race_calls(
    full: dict[str, np.ndarray], sign: float = 1.0, clip: bool = False
) -> tuple[str | None, dict[str, dict[str, float | str]]]:
    """The leader of `full` (candidate -> seeds x examples matrix, the same seeds for all) and every other
    candidate against it: "below" when the paired difference is called at `ALPHA` after Holm's correction
    over those comparisons, else "contender".

    With two or more seeds this is the verdict's own test (`paired.holm_family`: seeds and examples). With one
    seed the seed-to-seed part of the variance is not estimable: the test is paired by example only (the
    per-example differences' t test), which knows the evaluation set's noise but not the seed's, so it calls
    only gaps that are large against the set's noise; the verdict's own test judges what stays. Without
    per-example values and one seed nothing is called.

    Returns:
        (leader, candidate -> {"diff": leader minus candidate, "p_holm", "call"}).

    Example:
        >>> a = np.array([[1.0] * 90 + [0.0] * 10]); b = np.array([[1.0] * 40 + [0.0] * 60])
        >>> race_calls({"a": a, "b": b})[1]["b"]["call"]
        'below'
    """
    if not full:
        return None, {}
    leader = max(sorted(full), key=lambda k: sign * float(full[k].mean()))
    others = [k for k in sorted(full) if k != leader]
    s, n = full[leader].shape
    if s >= 2:
        family = holm_family({k: (full[leader], full[k]) for k in others}, clip)
        diffs = {k: family[k]["diff"] for k in others}
        p_holm = {k: family[k]["p_holm"] for k in others}
    else:
        diffs, p = {}, {}
        for k in others:
            d = (full[leader] - full[k]).mean(0)
            diffs[k] = float(d.mean())
            se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
            if se == 0:
                p[k] = 1.0 if diffs[k] == 0 else 0.0
            else:
                p[k] = float(2 * stats.t.sf(abs(diffs[k]) / se, n - 1)) if math.isfinite(se) else math.nan
        p_holm = holm(p) if all(math.isfinite(v) for v in p.values()) else dict.fromkeys(others, math.nan)
    calls = {}
    for k in others:
        below = math.isfinite(p_holm[k]) and p_holm[k] < ALPHA and sign * diffs[k] > 0
        calls[k] = {"diff": diffs[k], "p_holm": p_holm[k], "call": "below" if below else "contender"}
    return leader, calls


__all__ = ["PLAN_FILE", "race_calls", "read_plan", "runs_planned", "shared_records", "verdict_trials"]
