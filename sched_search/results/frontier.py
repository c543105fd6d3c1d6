"""The answer per training spent (the frontier): after each run the study learned, what it would have
recommended had it stopped there, against the trainings it had spent; and each baseline at its own cost.

Costs are in trainings. A run costs its epochs over one full training's (`run_trainings`): a search trial
that ASHA stopped at epoch 2 of 8 costs 0.25, each budget of a final re-run its own epochs; the range tests
cost their optimizer steps over one training's (`range_test_trainings`). The order is the one the study
learned its runs in: when each ended (`finished_at`, `learned_order`). Pure calculation on the tables and the
verdict; `load_run` puts `frontier` and `last_half` into the verdict.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..lr import HYPERPARAMETERS
from ..training import decode_examples
from .paired import ALPHA, bootstrap_weights, paired_difference, resampled_means
from .tables import outcomes
from .verdict import LADDER_PREFIX, MIN_SEEDS, is_baseline

FRONTIER_RULE = (
    "The frontier: one point per run in the order the study learned them (when each ended), at the "
    "trainings spent by then (range tests included; a run costs its epochs over one full training's). Its "
    "arm and config are what the study would have recommended had it stopped there: each searched arm's "
    "config, measured by the mean final val {metric} of its finished full-budget final re-runs once any has "
    "finished, else by its best full-length search trial so far (the searcher's rule: best val {metric}, "
    "then lower val loss); each baseline by the mean of its finished runs; the best of these wins. Once "
    "every final run the verdict uses has finished (the attribution ladder's runs come after), the point "
    "is the verdict's recommendation with its mean and interval. Baselines are points at their own cost: "
    "one training per seed."
)


# --------------------------------------------------------------------------------------------- costs


def run_trainings(trials: pd.DataFrame) -> pd.Series:
    """Each row's cost in trainings: its epochs run over the study's full training (`epochs`); a run that
    recorded no epoch costs 0 (a retried run's lost attempt is not in the tables either).

    Example:
        >>> t = pd.DataFrame({"epochs": [8, 8, 8], "epochs_run": [8, 2, float("nan")]})
        >>> run_trainings(t).tolist()
        [1.0, 0.25, 0.0]
    """
    if trials.empty or not {"epochs", "epochs_run"} <= set(trials.columns):
        return pd.Series(0.0, index=trials.index)
    return (trials["epochs_run"].astype(float) / trials["epochs"].astype(float)).fillna(0.0)


def range_test_trainings(range_test: pd.DataFrame, epochs: int, steps_per_epoch: int) -> dict[str, float]:
    """Each optimizer family's range test in trainings: its optimizer steps (a row per step of every weight
    decay's sweep, `Run.range_test`) over one full training's; {} without range tests.

    Example:
        >>> curves = pd.DataFrame({"optimizer": ["sgdw"] * 150, "step": range(150)})
        >>> range_test_trainings(curves, epochs=4, steps_per_epoch=25)
        {'sgdw': 1.5}
    """
    if range_test.empty or "optimizer" not in range_test.columns:
        return {}
    steps = max(1, int(epochs) * int(steps_per_epoch))
    return {str(opt): len(g) / steps for opt, g in range_test.groupby("optimizer", sort=True)}


def learned_order(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table's rows in the order the study learned them: by `finished_at` (a run's end), ties
    and rows without it (older tables; a budget that never reported) in table order, those last."""
    position = pd.Series(range(len(trials)), index=trials.index, name="_position")
    if "finished_at" not in trials.columns:
        return trials
    keyed = trials.assign(_position=position)
    return keyed.sort_values(["finished_at", "_position"], na_position="last", kind="stable").drop(
        columns="_position"
    )


# --------------------------------------------------------------------------------------------- the points


def _config(row: pd.Series, names: list[str] | None) -> dict[str, Any]:
    names = names or [h for h in (*HYPERPARAMETERS, "lr") if h in row.index]
    out = {}
    for name in names:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[name] = value.item() if isinstance(value, np.generic) else value
    return out


def _full_finals(rows: pd.DataFrame) -> pd.DataFrame:
    ok = (rows["stage"] == "final") & np.isclose(rows["budget"].astype(float), 1.0) & (rows["status"] == "ok")
    return rows[ok & rows["final_val_metric"].notna()]


class _Evidence:
    """The means and intervals of finished final runs, each set of seeds bootstrapped once."""

    def __init__(self) -> None:
        self.cache: dict[tuple, tuple[float | None, float | None]] = {}

    def interval(self, key: tuple, runs: pd.DataFrame) -> tuple[float | None, float | None]:
        if len(runs) < MIN_SEEDS:
            return None, None
        if key not in self.cache:
            cells = runs["val_examples"] if "val_examples" in runs.columns else [None] * len(runs)
            values = [decode_examples(c) for c in cells]
            if not all(v is not None for v in values) or len({len(v) for v in values}) != 1:
                values = [np.array([m], float) for m in runs["final_val_metric"]]
            matrix = np.stack(values)
            boot = resampled_means(matrix, *bootstrap_weights(*matrix.shape))
            self.cache[key] = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
        return self.cache[key]


def _candidates(
    seen: pd.DataFrame, sign: float, searched: dict[str, list[str]], evidence: _Evidence
) -> list[dict[str, Any]]:
    """What the study knows at a prefix of its runs (`seen`): one candidate per arm (see `FRONTIER_RULE`)."""
    out = []
    arms = seen[~seen["arm"].astype(str).str.startswith(LADDER_PREFIX)]
    finals = _full_finals(arms)
    for arm, g in arms.groupby("arm", sort=True):
        arm = str(arm)
        done = finals[finals["arm"] == arm]
        if not done.empty:
            source = done["source_trial"].iloc[-1] if "source_trial" in done.columns else None
            source = None if is_baseline(arm) or pd.isna(source) else str(source)
            if source is not None:  # the finals of the config its search picked last
                done = done[done["source_trial"].astype(str) == source]
            low, high = evidence.interval((arm, source, tuple(done["trial_id"])), done)
            n = len(done)
            out.append(
                {
                    "arm": arm,
                    "config": _config(done.iloc[-1], searched.get(arm)),
                    "source_trial": source,
                    "metric": float(done["final_val_metric"].mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "n_seeds": n,
                    "evidence": f"final runs on {n} seed{'s' if n != 1 else ''}",
                    "_loss": float(done["final_val_loss"].mean()),
                }
            )
            continue
        search = g[(g["stage"] == "search") & (g["status"] == "ok") & g["final_val_metric"].notna()]
        if search.empty:
            continue
        # the searcher's pick (routing.ArmsSearcher): best val metric, then lower val loss, then trial id
        loss = search["final_val_loss"].fillna(math.inf)
        key = pd.DataFrame({"m": sign * search["final_val_metric"], "l": -loss, "t": search["trial_id"]})
        row = search.loc[key.sort_values(["m", "l", "t"], kind="stable").index[-1]]
        out.append(
            {
                "arm": arm,
                "config": _config(row, searched.get(arm)),
                "source_trial": str(row["trial_id"]),
                "metric": float(row["final_val_metric"]),
                "ci_low": None,
                "ci_high": None,
                "n_seeds": 1,
                "evidence": "search trial",
                "_loss": float(row["final_val_loss"]),
            }
        )
    return out


def _verdict_point(
    verdict: dict[str, Any], seen: pd.DataFrame, searched: dict[str, list[str]]
) -> dict[str, Any] | None:
    """The verdict's recommendation as a point: its mean and interval over the verdict's seeds."""
    arm = verdict.get("recommended")
    if arm is None or arm not in verdict.get("arms", {}):
        return None
    done = _full_finals(seen[seen["arm"] == arm])
    source = None
    if not is_baseline(arm) and "source_trial" in done.columns and done["source_trial"].notna().any():
        source = str(done["source_trial"].dropna().iloc[-1])
    stats = verdict["arms"][arm]
    return {
        "arm": arm,
        "config": _config(done.iloc[-1], searched.get(arm)) if not done.empty else {},
        "source_trial": source,
        "metric": stats["mean"],
        "ci_low": stats["ci_low"],
        "ci_high": stats["ci_high"],
        "n_seeds": verdict["n_seeds"],
        "evidence": "the verdict",
    }


def frontier(
    trials: pd.DataFrame,
    verdict: dict[str, Any],
    range_trainings: float = 0.0,
    searched: dict[str, list[str]] | None = None,
    complete: bool = True,
) -> list[dict[str, Any]]:
    """The study's frontier: what it would have recommended after each run it learned, at the trainings
    spent by then, then each baseline at its own cost (`FRONTIER_RULE` in words).

    A study point is there from the first run after which the study has something to recommend: a
    full-length search trial or a finished full-budget final run. Before every final run the verdict uses
    has finished, the recommendation is the best candidate by its mean val metric in the study's direction
    (ties: lower val loss, then the arm's name): per searched arm, the config its finals re-run (the
    search trial in their `source_trial`) measured by the mean of its finished full-budget finals, or
    before any, its best full-length search trial so far; per baseline, the mean of its finished runs. From
    the run that completes the verdict's inputs on (a `complete` study only), it is the verdict's
    recommendation, its mean and 95% interval. Intervals (bootstrap over seeds and validation examples, as
    the verdict's) need `MIN_SEEDS` finished seeds; a search trial's point has none.

    Args:
        trials: the trials table (`finished_at` orders it: `learned_order`).
        verdict: `decide`'s answer on the same table (its mode, its recommendation, its baselines).
        range_trainings: what the range tests cost in trainings, spent before any run.
        searched: arm -> names of its searched hyperparameters (spaces.json): a point's `config`.
        complete: every planned run is in the table (`Run.unfinished` empty); otherwise no point is the
            verdict's.

    Returns:
        A JSON-ready list. Study points (`kind` "study") in the order learned: `trainings` (cumulative),
        `run`, `stage` and `budget` (the run just learned), `arm`, `config`, `source_trial`, `metric`,
        `ci_low`, `ci_high`, `n_seeds`, `evidence` ("search trial", "final runs on N seeds", "the
        verdict"). Then one point per baseline of the verdict (`kind` "baseline"): `trainings` its cost
        per seed, its mean and interval over the verdict's seeds.

    Example:
        >>> points = frontier(run.trials, run.verdict, range_trainings=2.7)  # doctest: +SKIP
        >>> [(p["trainings"], p["arm"], p["metric"]) for p in points][-1]  # doctest: +SKIP
    """
    searched = searched or {}
    if trials.empty or not {"stage", "arm", "trial_id", "status", "budget"} <= set(trials.columns):
        return []
    sign = 1.0 if verdict.get("mode", "max") == "max" else -1.0
    ordered = learned_order(trials)
    cost = run_trainings(ordered).cumsum() + range_trainings
    verdict_rows = (ordered["stage"] == "final") & ~ordered["arm"].astype(str).str.startswith(LADDER_PREFIX)
    # the position of the run after which every input of the verdict is there
    inputs_done = max((i for i, v in enumerate(verdict_rows) if v), default=-1) if complete else len(ordered)
    evidence, points = _Evidence(), []
    for i in range(len(ordered)):
        seen = ordered.iloc[: i + 1]
        best = _verdict_point(verdict, seen, searched) if i >= inputs_done else None
        if best is None:
            found = _candidates(seen, sign, searched, evidence)
            if not found:
                continue
            best = min(found, key=lambda c: (-sign * c["metric"], c["_loss"], c["arm"]))
            best = {k: v for k, v in best.items() if k != "_loss"}
        run = ordered.iloc[i]
        points.append(
            {
                "kind": "study",
                "trainings": float(cost.iloc[i]),
                "run": str(run["trial_id"]),
                "stage": str(run["stage"]),
                "budget": float(run["budget"]),
                **best,
            }
        )
    return points + _baseline_points(ordered, verdict, searched)


def _baseline_points(
    trials: pd.DataFrame, verdict: dict[str, Any], searched: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Each baseline of the verdict at its own cost: one training per seed."""
    out = []
    for arm in verdict.get("baselines", []):
        runs = _full_finals(trials[trials["arm"] == arm])
        if runs.empty:
            continue
        stats = verdict["arms"][arm]
        out.append(
            {
                "kind": "baseline",
                "trainings": float(run_trainings(runs).mean()),
                "arm": arm,
                "config": _config(runs.iloc[-1], searched.get(arm)),
                "source_trial": None,
                "metric": stats["mean"],
                "ci_low": stats["ci_low"],
                "ci_high": stats["ci_high"],
                "n_seeds": verdict["n_seeds"],
                "evidence": "the verdict",
            }
        )
    return out


# --------------------------------------------------------------------------------------------- the last half


def last_half(points: list[dict[str, Any]], trials: pd.DataFrame, verdict: dict[str, Any]) -> dict[str, Any]:
    """What the last half of the study's compute bought: the recommendation at the end (the last study
    point) minus the one at half the trainings (the last point at or below half), paired over the
    verdict's seeds (and validation examples) with its 95% interval (`paired.paired_difference`).

    Measurable when the end's point is the verdict's and the config recommended at half was re-run on the
    verdict's seeds (a baseline, or a searched arm's config its finals re-ran); otherwise `diff` is None
    and `why` says what is missing. The same recommendation at both is a difference of 0.

    Returns:
        total and half (trainings), at_half and at_end (arm, source_trial, trainings), diff (end minus
        half, in the metric's units), ci_low, ci_high (None with fewer than `MIN_SEEDS` seeds), why.
    """
    study = [p for p in points if p["kind"] == "study"]
    out: dict[str, Any] = {"total": None, "half": None, "at_half": None, "at_end": None, "diff": None,
                           "ci_low": None, "ci_high": None, "why": ""}  # fmt: skip
    if not study:
        out["why"] = "no recommendation yet"
        return out
    end = study[-1]
    total = end["trainings"]
    out.update(total=total, half=total / 2, at_end=_where(end))
    halfway = [p for p in study if p["trainings"] <= total / 2]
    if end["evidence"] != "the verdict":
        out["why"] = "the study has no verdict yet"
        return out
    if not halfway:
        out["why"] = f"nothing to recommend until {study[0]['trainings']:.3g} of {total:.3g} trainings"
        return out
    half = halfway[-1]
    out["at_half"] = _where(half)
    if (half["arm"], half["source_trial"]) == (end["arm"], end["source_trial"]):
        out.update(diff=0.0, ci_low=0.0, ci_high=0.0, why="the same recommendation at half as at the end")
        return out
    matrices, _, _, _ = outcomes(trials)
    finals = _full_finals(trials[trials["arm"] == half["arm"]])
    sources = finals["source_trial"].astype(str) if "source_trial" in finals.columns else pd.Series([])
    rerun = is_baseline(half["arm"]) or (sources == half["source_trial"]).any()
    if not rerun or half["arm"] not in matrices or end["arm"] not in matrices:
        out["why"] = (
            f"the config recommended at half ({half['arm']}, search trial {half['source_trial']}) was "
            "never re-run on the verdict's seeds"
        )
        return out
    a, b = matrices[end["arm"]], matrices[half["arm"]]
    c = paired_difference(a[max(a)], b[max(b)], ALPHA, clip=verdict.get("metric") == "accuracy")
    estimable = len(verdict.get("seeds", [])) >= MIN_SEEDS and math.isfinite(c["ci_low"])
    out.update(
        diff=c["diff"],
        ci_low=c["ci_low"] if estimable else None,
        ci_high=c["ci_high"] if estimable else None,
        why="" if estimable else f"fewer than {MIN_SEEDS} seeds: no interval",
    )
    return out


def _where(point: dict[str, Any]) -> dict[str, Any]:
    return {k: point[k] for k in ("arm", "source_trial", "trainings", "metric")}


__all__ = [
    "FRONTIER_RULE",
    "frontier",
    "last_half",
    "learned_order",
    "range_test_trainings",
    "run_trainings",
]
