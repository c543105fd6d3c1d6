"""The leaderboard: one row per arm, its val metric interval, its standing in the verdict, its speed-up.

Pure calculation on the tidy tables (`trials.parquet`: one row per (trial, budget); `epochs.parquet`: one row
per (trial, budget, epoch)) and the verdict (`verdict.decide`), which decides every call; `report.load_run`
assembles it for a run folder.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..config import BASELINE_ARM
from ..lr import HYPERPARAMETERS
from .tables import final_rows
from .verdict import LADDER_PREFIX, difference_text, speedup_text

FULL_RUN_NOTE = (
    "'First epoch at target (full run)' is for reference only: one-cycle and SGDR anneal the LR at the end "
    "of their own budget, so epoch k of a full-length run is mid-schedule (LR still high), not the end of a "
    "k-epoch run; 'to target' comes from the budget ladder, where every run completes its compressed "
    "schedule, and a budget counts as reached when the mean val metric over seeds at that budget is at "
    "least the target (at most, for a metric where lower is better)."
)
COLUMNS = [
    "arm",
    "n_seeds",
    "n_failed",
    "top_group",
    "mean_val_metric",
    "ci_low",
    "ci_high",
    "std_val_metric",
    "vs_baseline",
    "diff_vs_baseline",
    "diff_ci_low",
    "diff_ci_high",
    "mean_val_loss",
    "mean_test_metric",
    "epochs_to_target",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "speedup_lower_bound",
    "to_target",
    "first_epoch_at_target_full_run",
    "wall_time_s",
    "best_config",
]


# --------------------------------------------------------------------------------------------- tables


def budget_ladder(trials: pd.DataFrame) -> pd.DataFrame:
    """Final-stage val metric (`final_val_metric`) per (arm, budget_epochs): mean, std, min, max and n over
    seeds; without the attribution ladder's runs, which are not arms.

    Example:
        >>> budget_ladder(run.trials)  # doctest: +SKIP
    """
    rows = final_rows(trials, full_only=False)
    rows = rows[~rows["arm"].astype(str).str.startswith(LADDER_PREFIX)] if not rows.empty else rows
    if rows.empty:
        return pd.DataFrame(columns=["arm", "budget", "budget_epochs", "mean", "std", "min", "max", "n"])
    g = rows.groupby(["arm", "budget", "budget_epochs"])["final_val_metric"]
    out = g.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"})
    return out.reset_index().sort_values(["arm", "budget_epochs"], ignore_index=True)


def first_epoch_at_target(epochs: pd.DataFrame, target: float, mode: str = "max") -> pd.Series:
    """Per arm, the first epoch of the full-budget final runs at which the mean val metric over seeds
    reaches `target`: at least it for `mode` "max", at most for "min" (NaN: never). For reference only, see
    `FULL_RUN_NOTE`.

    Example:
        >>> first_epoch_at_target(run.epochs, run.target, run.metric_mode)  # doctest: +SKIP
    """
    if epochs.empty or not math.isfinite(target) or "stage" not in epochs.columns:
        return pd.Series(dtype=float, name="first_epoch_at_target_full_run")
    rows = final_rows(epochs)
    curve = rows.groupby(["arm", "epoch"])["val_metric"].mean().reset_index()
    sign = 1.0 if mode == "max" else -1.0
    hits = curve[sign * (curve["val_metric"] - target) >= -1e-12].groupby("arm")["epoch"].min()
    return hits.reindex(curve["arm"].unique()).astype(float).rename("first_epoch_at_target_full_run")


def _best_config(row: pd.Series, searched: list[str] | None) -> str:
    names = searched if searched else [h for h in HYPERPARAMETERS if h in row.index and h != "lr"]
    if row.get("arm") == BASELINE_ARM:
        names = ["lr"]
    parts = []
    for name in names:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        parts.append(f"{name}={value:.3g}" if isinstance(value, (float, np.floating)) else f"{name}={value}")
    return ", ".join(parts)


def build_leaderboard(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    verdict: dict[str, Any],
    searched: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """One row per arm from the final runs at the full budget, the baseline included, in the verdict's order:
    the top group first (ordered by `verdict.ORDER_RULE`), then the other arms by mean val metric, best first
    (highest for the verdict's mode "max", lowest for "min").

    Intervals and calls come from the verdict (bootstrap over seeds and examples; paired tests); with fewer
    than three seeds the spread and intervals are NaN ("not estimable"). `n_failed` counts the seeds whose run
    errored or diverged.

    Args:
        trials: the trials table.
        epochs: the epochs table (for first_epoch_at_target_full_run; may be empty).
        verdict: `verdict.decide(trials, ...)`.
        searched: arm -> names of its searched hyperparameters (spaces.json), for the best_config text.

    Example:
        >>> build_leaderboard(run.trials, run.epochs, run.verdict)  # doctest: +SKIP
    """
    rows = final_rows(trials)
    rows = rows[~rows["arm"].astype(str).str.startswith(LADDER_PREFIX)] if not rows.empty else rows
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    arms_v = verdict.get("arms", {})
    target, mode = verdict.get("target"), verdict.get("mode", "max")
    out = []
    for arm, g in rows.groupby("arm"):
        v = arms_v.get(arm, {})
        base = v.get("vs_baseline", {})
        sp = verdict.get("speedup", {}).get(arm)
        ok = g[g["status"] == "ok"] if "status" in g.columns else g
        out.append(
            {
                "arm": arm,
                "n_seeds": int(ok["final_val_metric"].notna().sum()),
                "n_failed": int((g["status"] != "ok").sum()) if "status" in g else 0,  # errored or diverged
                "top_group": arm in verdict.get("top_group", []),
                "mean_val_metric": v.get("mean", ok["final_val_metric"].mean()),
                "ci_low": _nan(v.get("ci_low")),
                "ci_high": _nan(v.get("ci_high")),
                "std_val_metric": _nan(v.get("std_over_seeds")),
                "vs_baseline": base.get("call", "baseline" if arm in _baselines(verdict) else ""),
                "diff_vs_baseline": _nan(base.get("diff")),
                "diff_ci_low": _nan(base.get("ci_low")),
                "diff_ci_high": _nan(base.get("ci_high")),
                "mean_val_loss": ok["final_val_loss"].mean(),
                "mean_test_metric": ok["test_metric"].mean() if "test_metric" in ok else math.nan,
                "epochs_to_target": _nan((sp or {}).get("epochs_to_target")),
                "speedup": _nan((sp or {}).get("estimate")),
                "speedup_ci_low": _nan((sp or {}).get("ci_low")),
                "speedup_ci_high": _nan((sp or {}).get("ci_high")),
                "speedup_lower_bound": bool((sp or {}).get("lower_bound", False)),
                "to_target": speedup_text(sp)
                if sp
                else ("reference" if arm == verdict.get("baseline") else ""),
                "wall_time_s": ok["wall_time"].mean() if "wall_time" in ok else math.nan,
                "best_config": _best_config(g.iloc[0], (searched or {}).get(arm)),
            }
        )
    board = pd.DataFrame(out)
    board = board.merge(
        first_epoch_at_target(epochs, math.nan if target is None else target, mode),
        left_on="arm",
        right_index=True,
        how="left",
    )
    order = {arm: i for i, arm in enumerate(verdict.get("top_group", []))}
    board["_group"] = [order.get(a, len(order)) for a in board["arm"]]
    best_first = [True, mode == "min"]
    board = board.sort_values(["_group", "mean_val_metric"], ascending=best_first, na_position="last")
    return board.reset_index(drop=True)[COLUMNS]


def call_text(c: dict[str, Any] | None, metric: str) -> str:
    """A call against a baseline with its difference and simultaneous interval: "better +3.20 points
    [+1.10, +5.30]"; "not estimable" alone with fewer than 3 seeds (a number would read as a call)."""
    if not c or c.get("diff") is None:
        return ""
    if c["call"] == "not estimable" or c.get("ci_low") is None:
        return "not estimable"
    lo, hi = (difference_text(c[k], metric).removesuffix(" points") for k in ("ci_low", "ci_high"))
    return f"{c['call']} {difference_text(c['diff'], metric)} [{lo}, {hi}]"


def baseline_calls(verdict: dict[str, Any]) -> pd.DataFrame:
    """Every searched arm against every baseline (one family, Holm over all of them): one row per arm in the
    verdict's order, one column per baseline, strongest first; cells as `call_text` writes them.

    Example:
        >>> baseline_calls(run.verdict).columns.tolist()  # doctest: +SKIP
        ['arm', 'default:schedule_free', 'default:adamw-cosine', 'constant-adam']
    """
    arms = verdict.get("arms", {})
    rows = [
        {"arm": a, **{b: call_text(v[b], verdict.get("metric", "accuracy")) for b in verdict["baselines"]}}
        for a, v in ((a, arms[a].get("vs_baselines")) for a in _arm_order(verdict))
        if v
    ]
    return pd.DataFrame(rows, columns=["arm", *verdict.get("baselines", [])])


def _arm_order(verdict: dict[str, Any]) -> list[str]:
    sign = 1.0 if verdict.get("mode", "max") == "max" else -1.0
    group = list(verdict.get("top_group", []))
    rest = sorted(set(verdict.get("arms", {})) - set(group), key=lambda a: -sign * verdict["arms"][a]["mean"])
    return group + rest


def _baselines(verdict: dict[str, Any]) -> list[str]:
    return list(verdict.get("baselines") or [verdict.get("baseline")])


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)
