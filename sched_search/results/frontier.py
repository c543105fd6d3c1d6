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
    if "finished_at" not in trials.columns:
        return trials
    keyed = trials.assign(_position=range(len(trials)))
    return keyed.sort_values(["finished_at", "_position"], na_position="last").drop(columns="_position")


# --------------------------------------------------------------------------------------------- the points


def _known(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _text(x: Any) -> str | None:
    return str(x) if _known(x) else None


def _config(row: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    names = names or [h for h in (*HYPERPARAMETERS, "lr") if h in row]
    return {
        n: row[n].item() if isinstance(row[n], np.generic) else row[n] for n in names if _known(row.get(n))
    }


def _full_final(row: dict[str, Any]) -> bool:
    """A finished final run at the full budget with its metric: what the verdict compares."""
    full = row["stage"] == "final" and math.isclose(float(row["budget"]), 1.0)
    return full and row["status"] == "ok" and _known(row.get("final_val_metric"))


def _interval(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """The 95% bootstrap interval of the mean of finished final runs, over their seeds and validation
    examples (`verdict.decide`'s), over seeds only when a run has no per-example values."""
    values = [decode_examples(r.get("val_examples")) for r in runs]
    if not all(v is not None for v in values) or len({len(v) for v in values}) != 1:
        values = [np.array([r["final_val_metric"]], float) for r in runs]
    matrix = np.stack(values)
    boot = resampled_means(matrix, *bootstrap_weights(*matrix.shape))
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


class _Learned:
    """What the study knows after a prefix of its runs, learned one run at a time: per searched arm its best
    full-length search trial, per arm its finished full-budget finals, and each arm's candidate from them
    (`FRONTIER_RULE`); each set of finals bootstrapped once."""

    def __init__(self, sign: float, searched: dict[str, list[str]]) -> None:
        self.sign, self.searched = sign, searched
        self.best_search: dict[str, tuple[tuple, dict[str, Any]]] = {}
        self.finals: dict[str, list[dict[str, Any]]] = {}
        self.candidates: dict[str, dict[str, Any]] = {}
        self.intervals: dict[tuple, tuple[float, float]] = {}

    def learn(self, row: dict[str, Any]) -> None:
        arm = str(row["arm"])
        if arm.startswith(LADDER_PREFIX):
            return
        if _full_final(row):
            self.finals.setdefault(arm, []).append(row)
        elif row["stage"] == "search" and row["status"] == "ok" and _known(row.get("final_val_metric")):
            # the searcher's pick (routing.ArmsSearcher): best val metric, then lower val loss, then trial id
            loss = row.get("final_val_loss")
            key = (
                self.sign * row["final_val_metric"],
                -loss if _known(loss) else -math.inf,
                str(row["trial_id"]),
            )
            if arm not in self.best_search or key > self.best_search[arm][0]:
                self.best_search[arm] = (key, row)
        else:
            return
        self.candidates[arm] = self._candidate(arm)

    def _candidate(self, arm: str) -> dict[str, Any]:
        done = self.finals.get(arm, [])
        if not done:
            row = self.best_search[arm][1]
            return self._point(arm, [row], _text(row["trial_id"]), "search trial")
        source = None if is_baseline(arm) else _text(done[-1].get("source_trial"))
        if source is not None:  # the finals of the config its search picked last
            done = [r for r in done if _text(r.get("source_trial")) == source]
        n = len(done)
        return self._point(arm, done, source, f"final runs on {n} seed{'s' if n != 1 else ''}")

    def _point(
        self, arm: str, runs: list[dict[str, Any]], source: str | None, evidence: str
    ) -> dict[str, Any]:
        low = high = None
        if evidence != "search trial" and len(runs) >= MIN_SEEDS:
            key = (arm, source, tuple(str(r["trial_id"]) for r in runs))
            if key not in self.intervals:
                self.intervals[key] = _interval(runs)
            low, high = self.intervals[key]
        losses = [r["final_val_loss"] for r in runs if _known(r.get("final_val_loss"))]
        return {
            "arm": arm,
            "config": _config(runs[-1], self.searched.get(arm)),
            "source_trial": source,
            "metric": float(np.mean([r["final_val_metric"] for r in runs])),
            "ci_low": low,
            "ci_high": high,
            "n_seeds": len(runs),
            "evidence": evidence,
            "_loss": float(np.mean(losses)) if losses else math.inf,
        }

    def best(self) -> dict[str, Any] | None:
        if not self.candidates:
            return None
        best = min(self.candidates.values(), key=lambda c: (-self.sign * c["metric"], c["_loss"], c["arm"]))
        return {k: v for k, v in best.items() if k != "_loss"}

    def verdict_point(self, verdict: dict[str, Any]) -> dict[str, Any] | None:
        """The verdict's recommendation as a point: its mean and interval over the verdict's seeds."""
        arm = verdict.get("recommended")
        if arm is None or arm not in verdict.get("arms", {}):
            return None
        done = self.finals.get(arm, [])
        sources = [_text(r.get("source_trial")) for r in done]
        stats = verdict["arms"][arm]
        return {
            "arm": arm,
            "config": _config(done[-1], self.searched.get(arm)) if done else {},
            "source_trial": None if is_baseline(arm) or not done else sources[-1],
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
    if trials.empty or not {"stage", "arm", "trial_id", "status", "budget"} <= set(trials.columns):
        return []
    ordered = learned_order(trials)
    costs = run_trainings(ordered).tolist()
    rows = ordered.assign(_cost=costs).to_dict("records")
    for column in ("final_val_metric", "final_val_loss", "source_trial", "val_examples"):
        for r in rows:
            r.setdefault(column, None)
    inputs = [
        i for i, r in enumerate(rows) if r["stage"] == "final" and not str(r["arm"]).startswith(LADDER_PREFIX)
    ]
    # the run after which every input of the verdict is there (none in an unfinished study)
    inputs_done = (inputs[-1] if inputs else -1) if complete else len(rows)
    known = _Learned(1.0 if verdict.get("mode", "max") == "max" else -1.0, searched or {})
    points, spent = [], range_trainings
    for i, row in enumerate(rows):
        spent += 0.0 if _known(row.get("shared_from")) else row["_cost"]  # a shared run was paid for once
        known.learn(row)
        best = known.verdict_point(verdict) if i >= inputs_done else None
        best = best or known.best()
        if best is None:
            continue
        where = {"trainings": spent, "run": str(row["trial_id"]), "stage": str(row["stage"])}
        points.append({"kind": "study", **where, "budget": float(row["budget"]), **best})
    return points + _baseline_points(rows, verdict, searched or {})


def _baseline_points(
    rows: list[dict[str, Any]], verdict: dict[str, Any], searched: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Each baseline of the verdict at its own cost: one training per seed."""
    out = []
    for arm in verdict.get("baselines", []):
        runs = [r for r in rows if r["arm"] == arm and _full_final(r)]
        if not runs:
            continue
        stats = verdict["arms"][arm]
        out.append(
            {
                "kind": "baseline",
                "trainings": float(np.mean([r["_cost"] for r in runs])),
                "arm": arm,
                "config": _config(runs[-1], searched.get(arm)),
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
    rows = trials[trials["arm"] == half["arm"]].to_dict("records")
    sources = {_text(r.get("source_trial")) for r in rows if _full_final(r)}
    rerun = is_baseline(half["arm"]) or half["source_trial"] in sources
    if not rerun:
        out["why"] = (
            f"the config recommended at half ({half['arm']}, search trial {half['source_trial']}) was "
            "never re-run on the verdict's seeds"
        )
        return out
    if half["arm"] not in matrices or end["arm"] not in matrices:
        out["why"] = f"{half['arm']} has no finished final runs on the verdict's seeds"
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
