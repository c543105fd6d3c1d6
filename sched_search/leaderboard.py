"""The leaderboard: seed statistics, epochs-to-target from the budget ladder, and the words on who won.

Pure calculation on the tidy tables (`trials.parquet`: one row per (trial, budget); `epochs.parquet`: one row per
(trial, budget, epoch)); `report.load_run` assembles it for a run folder.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .config import BASELINE_ARM

# Hyperparameter columns of the tables (NaN where an arm does not have them).
# fmt: off
HYPERPARAMETERS = (
    "max_lr", "weight_decay", "base_div", "step_size_epochs", "mode", "gamma", "t_0_epochs", "t_mult", "eta_min",
    "pct_start", "div_factor", "final_div_factor", "lr",
)
# fmt: on
FULL_RUN_NOTE = (
    "first_epoch_at_target_full_run is for reference only: one-cycle and SGDR anneal the LR at the end of their "
    "own budget, so epoch k of a full-length run is mid-schedule (LR still high), not the end of a k-epoch run; "
    "epochs_to_target comes from the budget ladder, where every run completes its compressed schedule."
)
# Student t quantiles t_{0.975, df}, used only when scipy is not installed; larger df use the next lower entry.
# fmt: off
_T975 = {
    1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
    10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098, 18: 2.1009,
    19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739, 23: 2.0687, 24: 2.0639, 25: 2.0595, 26: 2.0555, 27: 2.0518,
    28: 2.0484, 29: 2.0452, 30: 2.0423, 40: 2.0211, 60: 2.0003, 120: 1.9799,
}
# fmt: on


# --------------------------------------------------------------------------------------------- statistics


def t_quantile_975(df: float) -> float:
    """t_{0.975, df} of Student's t (scipy when installed, else a table); NaN for df < 1.

    Example:
        >>> round(t_quantile_975(2), 4)
        4.3027
    """
    if not df >= 1:
        return math.nan
    try:
        from scipy import stats
    except ImportError:
        return _T975[max(k for k in _T975 if k <= df)]
    return float(stats.t.ppf(0.975, df))


def mean_ci(values: Any) -> tuple[float, float, float, int]:
    """Mean, sample std, 95% CI half-width of the mean and n over the finite values.

    Student t interval: mean ± t_{0.975, n-1} · std / sqrt(n); the half-width is NaN for n < 2.

    Example:
        >>> [round(v, 4) for v in mean_ci([0.90, 0.92, 0.94])[:3]]
        [0.92, 0.02, 0.0497]
    """
    x = np.asarray([v for v in np.asarray(values, dtype=float) if math.isfinite(v)])
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    return float(x.mean()), std, t_quantile_975(n - 1) * std / math.sqrt(n), n


# --------------------------------------------------------------------------------------------- tables


def final_rows(trials: pd.DataFrame, full_only: bool = True) -> pd.DataFrame:
    if trials.empty or not {"stage", "arm", "budget"} <= set(trials.columns):
        return trials.iloc[0:0]
    rows = trials[trials["stage"] == "final"]
    return rows[np.isclose(rows["budget"].astype(float), 1.0)] if full_only else rows


def resolve_target(config: dict, trials: pd.DataFrame) -> tuple[float, str]:
    """The accuracy to reach and where it came from: the study's target_accuracy, else the baseline's mean final
    val accuracy at its full budget (NaN when neither is there yet).

    Example:
        >>> resolve_target({"study": {"target_accuracy": 0.93}}, pd.DataFrame())
        (0.93, "the study's target_accuracy")
    """
    target = (config.get("study") or {}).get("target_accuracy")
    if target is not None:
        return float(target), "the study's target_accuracy"
    rows = final_rows(trials)
    base = rows[rows["arm"] == BASELINE_ARM]["final_val_accuracy"] if not rows.empty else pd.Series([])
    return mean_ci(base)[0], "the baseline's mean final val accuracy"


def budget_ladder(trials: pd.DataFrame) -> pd.DataFrame:
    """Final-stage accuracy per (arm, budget_epochs): mean, std, min, max and n over seeds.

    Example:
        >>> budget_ladder(run.trials)  # doctest: +SKIP
    """
    rows = final_rows(trials, full_only=False)
    if rows.empty:
        return pd.DataFrame(columns=["arm", "budget", "budget_epochs", "mean", "std", "min", "max", "n"])
    g = rows.groupby(["arm", "budget", "budget_epochs"])["final_val_accuracy"]
    out = g.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"})
    return out.reset_index().sort_values(["arm", "budget_epochs"], ignore_index=True)


def epochs_to_target(trials: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per arm, the smallest budget (epochs) whose mean final val accuracy over seeds reaches `target`, and the
    speed-up over the baseline: baseline epochs-to-target (its full budget) / the arm's. The same comparison as
    Smith & Topin 2019 (super-convergence: the accuracy of a long constant-LR run reached in fewer epochs).

    Each rung is its own run with the whole schedule compressed into it (`train.build_schedule`), so a one-cycle
    or SGDR run ends annealed at every rung. Where the baseline never reaches a study target, its full budget is
    the reference and the speed-up a lower bound.

    Returns:
        Columns arm, epochs_to_target (NaN: not reached), speedup, to_target (text).

    Example:
        >>> epochs_to_target(run.trials, run.target)  # doctest: +SKIP
    """
    ladder = budget_ladder(trials)
    cols = ["arm", "epochs_to_target", "speedup", "to_target"]
    if ladder.empty:
        return pd.DataFrame(columns=cols)
    reached = {}
    for arm, rungs in ladder.groupby("arm"):
        # The tolerance lets the baseline reach its own mean, computed the same way on the same numbers.
        ok = rungs[rungs["mean"] >= target - 1e-12] if math.isfinite(target) else rungs.iloc[0:0]
        reached[arm] = float(ok["budget_epochs"].min()) if not ok.empty else math.nan
    full = float(ladder["budget_epochs"].max())
    reference = reached.get(BASELINE_ARM, math.nan)
    reference = reference if math.isfinite(reference) else full
    out = []
    for arm, epochs in reached.items():
        speedup = reference / epochs if math.isfinite(epochs) else math.nan
        if not math.isfinite(target):
            text = "no target"
        elif math.isfinite(epochs):
            text = f"{epochs:g} of {full:g} epochs"
        else:
            text = "not reached"
        out.append((arm, epochs, speedup, text))
    return pd.DataFrame(out, columns=cols)


def first_epoch_at_target(epochs: pd.DataFrame, target: float) -> pd.Series:
    """Per arm, the first epoch of the full-budget final runs at which the mean val accuracy over seeds reaches
    `target` (NaN: never). For reference only, see `FULL_RUN_NOTE`.

    Example:
        >>> first_epoch_at_target(run.epochs, run.target)  # doctest: +SKIP
    """
    if epochs.empty or not math.isfinite(target) or "stage" not in epochs.columns:
        return pd.Series(dtype=float, name="first_epoch_at_target_full_run")
    rows = final_rows(epochs)
    curve = rows.groupby(["arm", "epoch"])["val_accuracy"].mean().reset_index()
    hits = curve[curve["val_accuracy"] >= target - 1e-12].groupby("arm")["epoch"].min()
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
    target: float,
    searched: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """One row per arm from the final-stage runs at the full budget, over seeds, the baseline included.

    Columns: arm, n_seeds, n_failed (seeds whose run errored or diverged), mean/std of final val accuracy and
    loss, ci95_accuracy (Student t half-width of the mean
    accuracy, NaN for one seed), mean_test_accuracy, epochs_to_target, speedup, to_target,
    first_epoch_at_target_full_run, wall_time_s (mean per run), best_config. Best mean accuracy first.

    Args:
        trials: the trials table.
        epochs: the epochs table (for first_epoch_at_target_full_run; may be empty).
        target: the accuracy the epochs-to-target counts to.
        searched: arm -> names of its searched hyperparameters (spaces.json), for the best_config text.

    Example:
        >>> build_leaderboard(run.trials, run.epochs, run.target)  # doctest: +SKIP
    """
    rows = final_rows(trials)
    out = []
    for arm, g in rows.groupby("arm") if not rows.empty else []:
        acc, acc_std, acc_ci, n = mean_ci(g["final_val_accuracy"])
        loss, loss_std, _, _ = mean_ci(g["final_val_loss"])
        test = mean_ci(g["test_accuracy"])[0] if "test_accuracy" in g else math.nan
        out.append(
            {
                "arm": arm,
                "n_seeds": n,
                "n_failed": int((g["status"] != "ok").sum()) if "status" in g else 0,
                "mean_val_accuracy": acc,
                "std_val_accuracy": acc_std,
                "ci95_accuracy": acc_ci,
                "mean_val_loss": loss,
                "std_val_loss": loss_std,
                "mean_test_accuracy": test,
                "wall_time_s": mean_ci(g["wall_time"])[0] if "wall_time" in g else math.nan,
                "best_config": _best_config(g.iloc[0], (searched or {}).get(arm)),
            }
        )
    columns = [
        "arm",
        "n_seeds",
        "n_failed",
        "mean_val_accuracy",
        "std_val_accuracy",
        "ci95_accuracy",
        "mean_val_loss",
        "std_val_loss",
        "mean_test_accuracy",
        "epochs_to_target",
        "speedup",
        "to_target",
        "first_epoch_at_target_full_run",
        "wall_time_s",
        "best_config",
    ]
    if not out:
        return pd.DataFrame(columns=columns)
    board = pd.DataFrame(out).merge(epochs_to_target(trials, target), on="arm", how="left")
    board = board.merge(first_epoch_at_target(epochs, target), left_on="arm", right_index=True, how="left")
    board = board.sort_values("mean_val_accuracy", ascending=False, ignore_index=True, na_position="last")
    return board[columns]


# --------------------------------------------------------------------------------------------- the words


def _pts(x: float) -> str:
    return f"{100 * x:.2f}"


def _margin(a: pd.Series, b: pd.Series) -> str:
    """The gap between two leaderboard rows against their pooled seed-to-seed std."""
    gap = a["mean_val_accuracy"] - b["mean_val_accuracy"]
    pooled = math.sqrt((a["std_val_accuracy"] ** 2 + b["std_val_accuracy"] ** 2) / 2)
    if not math.isfinite(pooled):
        return f"{_pts(gap)} points (fewer than two seeds: no seed-to-seed spread to compare with)"
    # Accuracies are multiples of 1/n_val, so a gap can equal the std to the last bit: treat near-ties as within.
    word = "larger than" if gap > pooled * (1 + 1e-6) + 1e-12 else "within"
    return f"{_pts(gap)} points, {word} the seed-to-seed spread (pooled std {_pts(pooled)} points)"


def summarise(leaderboard: pd.DataFrame, target: float, target_source: str = "") -> str:
    """The leaderboard in words: the winner, its margin over the runner-up and over the baseline in accuracy
    points, whether each margin is larger than the seed-to-seed spread, and the fastest arm to the target.

    A margin counts as "larger than the seed-to-seed spread" when the gap in mean final val accuracy exceeds the
    pooled std sqrt((s1^2 + s2^2) / 2) of the two arms' seeds, else it is "within" it: a plain reading, not a test.

    Example:
        >>> summarise(run.leaderboard, run.target)  # doctest: +SKIP
        'Winner: one_cycle-adamw, mean final val accuracy 97.77% (95% CI ± 0.00) over 2 seeds. Over the ...'
    """
    board = (
        leaderboard[np.isfinite(leaderboard["mean_val_accuracy"].astype(float))] if len(leaderboard) else []
    )
    if len(board) == 0:
        return "No finished final-stage results at the full budget yet: nothing to compare."
    win = board.iloc[0]
    ci = f" (95% CI ± {_pts(win['ci95_accuracy'])})" if math.isfinite(win["ci95_accuracy"]) else ""
    base_tag = " (the baseline)" if win["arm"] == BASELINE_ARM else ""
    seeds = f"{win['n_seeds']} seed{'s' if win['n_seeds'] != 1 else ''}"
    lines = [
        f"Winner: {win['arm']}{base_tag}, mean final val accuracy {_pts(win['mean_val_accuracy'])}%{ci} over {seeds}."
    ]
    if len(board) > 1:
        runner = board.iloc[1]
        lines.append(f"Over the runner-up {runner['arm']}: {_margin(win, runner)}.")
    base = board[board["arm"] == BASELINE_ARM]
    if (
        not base.empty
        and win["arm"] != BASELINE_ARM
        and (len(board) < 2 or board.iloc[1]["arm"] != BASELINE_ARM)
    ):
        lines.append(f"Over the baseline {BASELINE_ARM}: {_margin(win, base.iloc[0])}.")
    if not math.isfinite(target):
        lines.append("No target accuracy (no study target and no baseline result): no epochs-to-target.")
        return " ".join(lines)
    source = f", {target_source}" if target_source else ""
    arms = board[(board["arm"] != BASELINE_ARM) & np.isfinite(board["epochs_to_target"].astype(float))]
    if arms.empty:
        lines.append(f"No arm reached the target ({_pts(target)}%{source}) on any budget.")
    else:
        fast = arms.sort_values("epochs_to_target", kind="stable").iloc[0]
        base_reached = (not base.empty) and math.isfinite(base.iloc[0]["epochs_to_target"])
        bound = "" if base_reached or base.empty else " (the baseline never reached it: a lower bound)"
        lines.append(
            f"Fastest to the target ({_pts(target)}%{source}): {fast['arm']} at {fast['to_target']}, "
            f"a {fast['speedup']:.3g}x speed-up over the baseline{bound}."
        )
    return " ".join(lines)


def compare_arms(trials: pd.DataFrame, a: str, b: str) -> dict[str, float]:
    """Mean final val accuracy of arm `a` minus arm `b` at the full budget, with a Welch 95% CI of the difference.

    Returns:
        diff, ci95 (half-width; NaN with fewer than two seeds in either arm), and each arm's mean and ci95
        (keys mean_<arm>, ci95_<arm>).

    Example:
        >>> compare_arms(run.trials, "one_cycle-adamw", "constant-adam")["diff"]  # doctest: +SKIP
    """
    rows = final_rows(trials)
    xa = rows[rows["arm"] == a]["final_val_accuracy"].astype(float).dropna().to_numpy()
    xb = rows[rows["arm"] == b]["final_val_accuracy"].astype(float).dropna().to_numpy()
    ma, sa, ca, na = mean_ci(xa)
    mb, sb, cb, nb = mean_ci(xb)
    half = math.nan
    if na > 1 and nb > 1:
        va, vb = sa**2 / na, sb**2 / nb
        se = math.sqrt(va + vb)
        # Welch-Satterthwaite degrees of freedom; equal zero variances leave nothing to estimate.
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if se > 0 else na + nb - 2
        half = t_quantile_975(df) * se
    return {"diff": ma - mb, "ci95": half, f"mean_{a}": ma, f"ci95_{a}": ca, f"mean_{b}": mb, f"ci95_{b}": cb}
