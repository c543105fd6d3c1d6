"""Reports from a run folder: pandas tables, a seed-aware leaderboard, epochs-to-target, the words, md/html.

Everything here is calculation on the tidy tables that `tune.run_study` writes (`trials.parquet`, one row per
(trial, budget); `epochs.parquet`, one row per (trial, budget, epoch)); figures live in `plots.py`. A run that is
still going or was interrupted loads too: what is not there yet is listed in `Run.missing`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass(frozen=True, eq=False)
class Run:
    """One run folder, loaded: the tables, the leaderboard and its words, and what is not there yet."""

    path: Path
    config: dict  # resolved_config.json ({} when absent)
    trials: pd.DataFrame  # one row per (trial_id, budget)
    epochs: pd.DataFrame  # one row per (trial_id, budget, epoch)
    leaderboard: pd.DataFrame  # one row per arm, best mean final val accuracy first
    range_test: pd.DataFrame  # the range_test_<opt>.csv curves with an `optimizer` column
    target: float  # accuracy the epochs-to-target counts to (NaN when unknown)
    summary: str  # the words: winner, margins against the seed-to-seed spread, fastest to target
    missing: list[str] = field(default_factory=list)  # what is not there (yet), one line each
    range_summaries: dict = field(default_factory=dict)  # optimizer -> range_test_<opt>.json
    final_configs: list = field(default_factory=list)  # final_configs.json: one trial config per (arm, seed)
    spaces: dict = field(default_factory=dict)  # spaces.json: arm -> searched params and their sources


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


def _final_rows(trials: pd.DataFrame, full_only: bool = True) -> pd.DataFrame:
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
    rows = _final_rows(trials)
    base = rows[rows["arm"] == BASELINE_ARM]["final_val_accuracy"] if not rows.empty else pd.Series([])
    return mean_ci(base)[0], "the baseline's mean final val accuracy"


def budget_ladder(trials: pd.DataFrame) -> pd.DataFrame:
    """Final-stage accuracy per (arm, budget_epochs): mean, std, min, max and n over seeds.

    Example:
        >>> budget_ladder(run.trials)  # doctest: +SKIP
    """
    rows = _final_rows(trials, full_only=False)
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
    rows = _final_rows(epochs)
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

    Columns: arm, n_seeds, mean/std of final val accuracy and loss, ci95_accuracy (Student t half-width of the mean
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
    rows = _final_rows(trials)
    out = []
    for arm, g in rows.groupby("arm") if not rows.empty else []:
        acc, acc_std, acc_ci, n = mean_ci(g["final_val_accuracy"])
        loss, loss_std, _, _ = mean_ci(g["final_val_loss"])
        test = mean_ci(g["test_accuracy"])[0] if "test_accuracy" in g else math.nan
        out.append(
            {
                "arm": arm,
                "n_seeds": n,
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
    rows = _final_rows(trials)
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


# --------------------------------------------------------------------------------------------- figure data


def learning_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    """Full-budget final runs per (arm, epoch): median, min and max over seeds of val accuracy and val loss.

    Example:
        >>> learning_curves(run.epochs).columns[:3].tolist()  # doctest: +SKIP
        ['arm', 'epoch', 'val_accuracy_median']
    """
    rows = _final_rows(epochs)
    if rows.empty:
        return pd.DataFrame(columns=["arm", "epoch"])
    g = rows.groupby(["arm", "epoch"])[["val_accuracy", "val_loss"]].agg(["median", "min", "max"])
    g.columns = [f"{m}_{s}" for m, s in g.columns]
    return g.reset_index()


def schedule_curves(
    final_configs: list[dict], epochs: pd.DataFrame | None = None, steps_per_epoch: int = 100
) -> pd.DataFrame:
    """LR and momentum of each arm's best config over its full budget, per step, from the pure schedules.

    `steps_per_epoch` is the run's (`resolved_config.json`; older folders lack it and get 100, the same shape up to
    rounding of cycle lengths); `epochs` (the table) adds the LR and
    momentum the runs recorded at epoch ends, and fills momentum for schedules that do not cycle it.

    Returns:
        Columns arm, epoch (fractional), lr, momentum, recorded (False: computed, True: from the table).

    Example:
        >>> schedule_curves(run.final_configs, run.epochs)  # doctest: +SKIP
    """
    from .schedules import lr_at, momentum_at
    from .train import build_schedule

    out = []
    seen = set()
    for config in final_configs:
        arm = config.get("arm", "?")
        if arm in seen:
            continue  # seeds share the config
        seen.add(arm)
        n_epochs = float(config["epochs"])
        schedule = build_schedule(config, n_epochs, steps_per_epoch)
        total = max(1, round(n_epochs * steps_per_epoch))
        for step in range(total + 1):
            m = momentum_at(schedule, step)
            out.append(
                (arm, step / steps_per_epoch, lr_at(schedule, step), math.nan if m is None else m, False)
            )
    frame = pd.DataFrame(out, columns=["arm", "epoch", "lr", "momentum", "recorded"])
    rows = _final_rows(epochs) if epochs is not None else pd.DataFrame()
    if not rows.empty:
        rec = rows.groupby(["arm", "epoch"])[["lr", "momentum"]].first().reset_index()
        for arm, g in rec.groupby("arm"):
            mask = (frame["arm"] == arm) & frame["momentum"].isna()
            frame.loc[mask, "momentum"] = g["momentum"].iloc[0]  # not cycled: the optimizer's constant
        frame = pd.concat([frame, rec.assign(recorded=True)], ignore_index=True)
    return frame


def param_importances(run_dir: str | Path, min_trials: int = 4) -> tuple[pd.DataFrame, list[str]]:
    """Optuna's fANOVA parameter importances per arm from `optuna.db`, where an arm has >= `min_trials` complete
    trials; the notes say which arms were skipped and why.

    Returns:
        (DataFrame with columns arm, param, importance; notes).

    Example:
        >>> importances, notes = param_importances("runs/digits-20260101-120000")  # doctest: +SKIP
    """
    db = Path(run_dir) / "optuna.db"
    if not db.exists():
        return pd.DataFrame(columns=["arm", "param", "importance"]), ["optuna.db: not there (yet)"]
    import optuna

    storage = f"sqlite:///{db.resolve()}"
    out, notes = [], []
    for summary in optuna.get_all_study_summaries(storage):
        name = summary.study_name
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < min_trials:
            notes.append(f"importances for {name}: {len(complete)} complete trials, need >= {min_trials}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fANOVA's experimental and single-value warnings
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
                values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except Exception as err:  # noqa: BLE001 - importance needs >1 distinct value per param; any failure is a note
            notes.append(f"importances for {name}: not computable ({type(err).__name__}: {err})")
            continue
        out += [(name, param, float(v)) for param, v in values.items()]
    return pd.DataFrame(out, columns=["arm", "param", "importance"]), notes


# --------------------------------------------------------------------------------------------- loading


_METRICS = {
    "trials": ("budget_epochs", "final_val_accuracy", "final_val_loss", "test_accuracy", "wall_time"),
    "epochs": ("epoch", "val_accuracy", "val_loss", "lr", "momentum"),
}


def _read_json(path: Path, missing: list[str], default: Any) -> Any:
    if not path.exists():
        missing.append(f"{path.name}: not there (yet)")
        return default
    return json.loads(path.read_text())


def load_run(path: str | Path) -> Run:
    """Load a run folder written by `run_study`, finished, still going or interrupted.

    Missing files give empty tables and a line in `Run.missing`, never an error; only a folder that does not
    exist raises.

    Example:
        >>> run = load_run("runs/smoke-20260101-120000")  # doctest: +SKIP
        >>> run.leaderboard[["arm", "mean_val_accuracy", "ci95_accuracy", "speedup"]]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a run folder: it does not exist.")
    missing: list[str] = []
    config = _read_json(path / "resolved_config.json", missing, {})
    tables = {}
    for name in ("trials", "epochs"):
        file = path / f"{name}.parquet"
        if file.exists():
            tables[name] = pd.read_parquet(file)
            # A table of failed trials only lacks the metric columns; NaN keeps the arithmetic uniform.
            for col in _METRICS[name]:
                if col not in tables[name].columns:
                    tables[name][col] = math.nan
        else:
            tables[name] = pd.DataFrame()
            missing.append(
                f"{file.name}: not written yet (the run is still going, was interrupted, or failed)"
            )
    trials, epochs = tables["trials"], tables["epochs"]
    curves, summaries = [], {}
    for csv in sorted(path.glob("range_test_*.csv")):
        opt = csv.stem.removeprefix("range_test_")
        curves.append(pd.read_csv(csv).assign(optimizer=opt))
        if csv.with_suffix(".json").exists():
            summaries[opt] = json.loads(csv.with_suffix(".json").read_text())
    if not curves:
        missing.append("range_test_<optimizer>.csv: not there (yet)")
    spaces = _read_json(path / "spaces.json", missing, {})
    final_configs = _read_json(path / "final_configs.json", missing, [])
    target, source = resolve_target(config, trials)
    searched = {arm: [p["name"] for p in s.get("params", [])] for arm, s in spaces.items()}
    board = build_leaderboard(trials, epochs, target, searched)
    if board.empty:
        missing.append("leaderboard: no final-stage rows at the full budget yet")
    if not math.isfinite(target):
        missing.append("target: no study target_accuracy and no baseline result yet")
    return Run(
        path=path,
        config=config,
        trials=trials,
        epochs=epochs,
        leaderboard=board,
        range_test=pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        target=target,
        summary=summarise(board, target, source),
        missing=missing,
        range_summaries=summaries,
        final_configs=final_configs,
        spaces=spaces,
    )


# --------------------------------------------------------------------------------------------- output


def _display(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard for people: accuracies in %, the CI beside the mean, rounded numbers."""

    def num(x: float, fmt: str) -> str:
        return "" if x is None or not math.isfinite(x) else format(x, fmt)

    return pd.DataFrame(
        {
            "arm": board["arm"],
            "seeds": board["n_seeds"],
            "val acc % (95% CI)": [
                f"{num(100 * m, '.2f')} ± {num(100 * c, '.2f')}" if math.isfinite(c) else num(100 * m, ".2f")
                for m, c in zip(board["mean_val_accuracy"], board["ci95_accuracy"], strict=True)
            ],
            "std %": [num(100 * s, ".2f") for s in board["std_val_accuracy"]],
            "val loss": [num(v, ".4f") for v in board["mean_val_loss"]],
            "test acc %": [num(100 * v, ".2f") for v in board["mean_test_accuracy"]],
            "to target": board["to_target"].fillna(""),
            "speedup": [num(v, ".2f") for v in board["speedup"]],
            "first epoch at target (full run)": [
                num(v, "g") for v in board["first_epoch_at_target_full_run"]
            ],
            "wall s/run": [num(v, ".3g") for v in board["wall_time_s"]],
            "best config": board["best_config"],
        }
    )


def format_leaderboard(run: Run) -> str:
    """The leaderboard as a plain-text table for the terminal, with the target and the words under it.

    Example:
        >>> print(format_leaderboard(load_run(run_dir)))  # doctest: +SKIP
    """
    if run.leaderboard.empty:
        return f"{run.path}: no leaderboard yet.\n" + "\n".join(f"  missing: {m}" for m in run.missing)
    target = f"{100 * run.target:.2f}%" if math.isfinite(run.target) else "none"
    shown = _display(run.leaderboard)
    table = shown.drop(columns="best config").to_string(index=False)
    width = max(len(a) for a in shown["arm"])
    configs = "\n".join(
        f"  {a:<{width}}  {c}" for a, c in zip(shown["arm"], shown["best config"], strict=True)
    )
    return f"{run.path}  (target {target})\n{table}\n\nbest configs:\n{configs}\n\n{run.summary}\n"


def write_plots(run: Run, out_dir: str | Path) -> tuple[dict[str, Path], list[str]]:
    """Every figure of the report as PNG in `out_dir`; the notes say which were skipped and why.

    Example:
        >>> files, notes = write_plots(load_run(run_dir), run_dir / "plots")  # doctest: +SKIP
    """
    from . import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, notes = {}, []
    if not run.range_test.empty:
        files["range_test"] = plots.plot_range_curves(
            run.range_test, out_dir / "range_test.png", run.range_summaries
        )
    if run.final_configs:
        curves = schedule_curves(run.final_configs, run.epochs, int(run.config.get("steps_per_epoch", 100)))
        files["schedules"] = plots.plot_schedules(curves, out_dir / "schedules.png")
    if not run.leaderboard.empty:
        files["leaderboard"] = plots.plot_leaderboard(
            run.leaderboard, out_dir / "leaderboard.png", run.target
        )
        ladder = budget_ladder(run.trials)
        files["budget_ladder"] = plots.plot_budget_ladder(ladder, out_dir / "budget_ladder.png", run.target)
    curves = learning_curves(run.epochs)
    if not curves.empty:
        files["learning_curves"] = plots.plot_learning_curves(
            curves, out_dir / "learning_curves.png", run.target
        )
    importances, more = param_importances(run.path)
    notes += more
    if not importances.empty:
        files["importances"] = plots.plot_importances(importances, out_dir / "importances.png")
    return files, notes


def _md_table(df: pd.DataFrame) -> str:
    cells = [[str(c) for c in df.columns]] + [
        [str(v).replace("|", "\\|") for v in r] for r in df.itertuples(False)
    ]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(df.columns))
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;"
    "text-align:right}th{background:#f0f0f0}td:first-child,td:last-child{text-align:left}"
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#555;font-size:13px}"
)


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write the report of a run folder: report.md, a self-contained report.html (figures inlined as base64 PNG),
    leaderboard.csv, trials.csv, epochs.csv and the figures under plots/.

    Returns:
        name -> path of every file written ("report.md", "report.html", "leaderboard.csv", ..., "plot:<name>").

    Example:
        >>> write_report("runs/smoke-20260101-120000")["report.html"]  # doctest: +SKIP
    """
    run = load_run(run_dir)
    path = run.path
    written: dict[str, Path] = {}
    for name, table in (("leaderboard", run.leaderboard), ("trials", run.trials), ("epochs", run.epochs)):
        written[f"{name}.csv"] = path / f"{name}.csv"
        table.to_csv(written[f"{name}.csv"], index=False)
    figures, notes = write_plots(run, path / "plots")
    written.update({f"plot:{k}": v for k, v in figures.items()})
    notes = run.missing + notes
    study = run.config.get("study", {})
    title = f"Report: {study.get('name', path.name)} ({path.name})"
    target = f"{100 * run.target:.2f}%" if math.isfinite(run.target) else "none"
    shown = _display(run.leaderboard)
    captions = {
        "leaderboard": "Mean final val accuracy per arm at the full budget, 95% CI over seeds",
        "budget_ladder": "Final val accuracy against budget (each rung a full, compressed schedule)",
        "learning_curves": "Full-budget learning curves: median over seeds, min-max band",
        "schedules": "LR and momentum of each arm's best config",
        "range_test": "LR range test (smoothed loss per weight decay)",
        "importances": "Optuna fANOVA parameter importances per arm",
    }
    md = [f"# {title}", "", run.summary, "", f"Target accuracy: {target}.", "", "## Leaderboard", ""]
    md += [_md_table(shown), "", f"_{FULL_RUN_NOTE}_", ""]
    md += [
        line for k, f in figures.items() for line in (f"## {captions[k]}", "", f"![{k}](plots/{f.name})", "")
    ]
    md += ["## Notes", ""] + [f"- {n}" for n in notes] if notes else []
    written["report.md"] = path / "report.md"
    written["report.md"].write_text("\n".join(md) + "\n")

    def img(f: Path) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(f.read_bytes()).decode("ascii")}" alt="{f.stem}">'

    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(run.summary)}</p>",
        f"<p>Target accuracy: {target}.</p>",
        "<h2>Leaderboard</h2>",
        shown.to_html(index=False, border=0, classes="leaderboard"),
        f'<p class="note">{html.escape(FULL_RUN_NOTE)}</p>',
    ]
    body += [f"<h2>{html.escape(captions[k])}</h2>{img(f)}" for k, f in figures.items()]
    if not run.trials.empty:
        body += [
            "<details><summary>All trials</summary>",
            run.trials.to_html(index=False, border=0),
            "</details>",
        ]
    if notes:
        body += ["<h2>Notes</h2><ul>", *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    written["report.html"] = path / "report.html"
    written["report.html"].write_text(page)
    return written


__all__ = [
    "Run",
    "budget_ladder",
    "build_leaderboard",
    "compare_arms",
    "epochs_to_target",
    "first_epoch_at_target",
    "format_leaderboard",
    "learning_curves",
    "load_run",
    "mean_ci",
    "param_importances",
    "resolve_target",
    "schedule_curves",
    "summarise",
    "t_quantile_975",
    "write_plots",
    "write_report",
]
