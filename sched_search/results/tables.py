"""Tidy tables from Ray Tune results: one row per trial (and budget), one per trial-epoch, kept as parquet.

Trials report to Tune sparsely (see `trial._report`): each result carries the epochs since the previous one as
JSON in `history`, so the per-epoch rows are rebuilt here from either the live results or Ray's saved ones.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..training import decode_examples


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as JSON to `path` atomically: a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no half file behind


def final_rows(trials: pd.DataFrame, full_only: bool = True) -> pd.DataFrame:
    """The final-stage rows of a table (trials or epochs), only the full budget unless `full_only` is
    False."""
    if trials.empty or not {"stage", "arm", "budget"} <= set(trials.columns):
        return trials.iloc[0:0]
    rows = trials[trials["stage"] == "final"]
    return rows[np.isclose(rows["budget"].astype(float), 1.0)] if full_only else rows


def outcomes(
    trials: pd.DataFrame,
) -> tuple[dict[str, dict[float, np.ndarray]], list[int], dict[str, str], bool]:
    """Per arm and budget (in epochs), the seeds x examples metric values of the finished final runs.

    Only seeds that every arm finished at its full budget are kept, so every comparison is paired; a rung that
    lacks one of them is left out. Arms with no finished full-budget run are returned as excluded, with why.
    When any of those runs has no per-example values (or their lengths differ), every run is one column: its
    `final_val_metric`, so arms are paired by seed only.

    Returns:
        (arm -> budget_epochs -> matrix, the seeds used, arm -> reason it was left out, paired by example).
    """
    excluded: dict[str, str] = {}
    if trials.empty or "arm" not in trials.columns:
        return {}, [], excluded, False
    rows = final_rows(trials, full_only=False)
    finals = rows["arm"].unique()
    cells = rows["val_examples"] if "val_examples" in rows.columns else pd.Series(None, rows.index, object)
    metric = (
        rows["final_val_metric"] if "final_val_metric" in rows.columns else pd.Series(math.nan, rows.index)
    )
    ok = rows["status"] == "ok" if "status" in rows.columns else True
    keep = ok & (cells.notna() | metric.notna())
    rows, cells, metric = rows[keep], cells[keep], metric[keep]
    values = [decode_examples(c) for c in cells]
    by_example = bool(values) and all(v is not None for v in values) and len({len(v) for v in values}) == 1
    if not by_example:
        rows = rows[metric.notna()]
        values = [np.array([v], float) for v in metric[metric.notna()]]
    rows = rows.assign(_values=pd.Series(values, index=rows.index, dtype=object))
    full = final_rows(rows)
    seeds_of = {arm: set(g["seed"].astype(int)) for arm, g in full.groupby("arm")}
    for arm in finals:
        if arm not in seeds_of:
            excluded[str(arm)] = "no final run finished at the full budget"
    common = sorted(set.intersection(*seeds_of.values())) if seeds_of else []
    matrices: dict[str, dict[float, np.ndarray]] = {}
    for (arm, epochs), g in rows.groupby(["arm", "budget_epochs"]):
        by_seed = dict(zip(g["seed"].astype(int), g["_values"], strict=True))
        if arm in seeds_of and common and all(s in by_seed for s in common):
            matrices.setdefault(str(arm), {})[float(epochs)] = np.stack([by_seed[s] for s in common])
    return matrices, common, excluded, by_example


def expand_history(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch rows from Tune results (each carries the epochs since the previous one in `history`)."""
    rows = []
    for r in results:
        history = r.get("history")
        if isinstance(history, str) and history:
            rows += json.loads(history)
        elif "epoch" in r:
            rows.append(r)
    return rows


def last_attempt(rows: list[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    """Per budget, the epochs of the last attempt only: Tune retries a trial whose worker died, from epoch 1
    (no checkpoint), and keeps every attempt's results; an epoch that does not follow the previous one starts
    a new attempt, which replaces what came before it."""
    by_budget: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        kept = by_budget.setdefault(float(r.get("budget", 1.0)), [])
        if kept and (r.get("epoch") or 0) <= (kept[-1].get("epoch") or 0):
            kept.clear()
        kept.append(r)
    return by_budget


def _known(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def finish_times(results: list[dict[str, Any]]) -> dict[float, float]:
    """Per budget, when its run ended (Unix seconds): its last Tune result's `finished_at` (`trial._report`
    stamps every result), else Tune's own `timestamp` (whole seconds: results older than the stamp). The
    order the study learned its runs in (`frontier.learned_order`)."""
    out: dict[float, float] = {}
    for r in results:  # a retried run's later attempt comes later: its time replaces the first one's
        at = next((float(v) for v in (r.get("finished_at"), r.get("timestamp")) if _known(v)), None)
        if at is not None:
            out[float(r["budget"]) if _known(r.get("budget")) else 1.0] = at
    return out


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(\([\w.]*\))?)(:.*)?$")


def _best(rows: list[dict[str, Any]], mode: str) -> float:
    """The best val metric of a run's epochs in the metric's direction (NaN when none is known)."""
    values = [v for r in rows if (v := r.get("val_metric")) is not None and not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def error_text(error: Any) -> str:
    """The full text of a trial's error: Tune's error file (a path, from the callback) or the exception
    itself."""
    if error is None:
        return ""
    if isinstance(error, str | os.PathLike) and len(str(error)) < 4096 and Path(error).is_file():
        return Path(error).read_text(errors="replace")
    return str(error)


def short_reason(text: str) -> str:
    """One line for the tables: the last `SomeError: message` line of a traceback, without terminal
    colours."""
    lines = [line.strip() for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    found = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = found[-1] if found else (lines[-1] if lines else "")
    return line[:300]


def _status_of(rows: list[dict], error: Any, epochs: float, stage: str) -> str:
    if error is not None or any(r.get("status") == "error" for r in rows):
        return "error"
    last = rows[-1] if rows else {}
    if last.get("status") == "nan":
        return "nan"
    if stage == "search" and last.get("epoch", 0) < epochs:
        return "stopped"
    return "ok"


_EPOCH_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_metric",
    "lr",
    "momentum",
    "cycle_epoch",
    "wall_time",
)
_NOT_COLUMNS = {"stage", "model_options", "_threads", "_rungs", "budgets"}  # a trial config's keys not kept


def tables_from_rows(
    records: dict[tuple[str, str], tuple[dict, list[dict], Any]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy tables: one row per (trial, budget) and one row per (trial, budget, epoch)."""
    epoch_rows, trial_rows = [], []
    for (stage, trial_id), (config, results, error) in records.items():
        rows = expand_history(results)
        params = {
            k: v for k, v in config.items() if k not in _NOT_COLUMNS and not isinstance(v, (dict, list))
        }
        key = {"stage": stage, "trial_id": trial_id, **params}
        full_error = error_text(error)
        by_budget = last_attempt(rows)
        finished = finish_times(results)
        budgets = [float(b) for b in config.get("budgets", [1.0])] if stage == "final" else [1.0]
        missing = [b for b in budgets if b not in by_budget]
        # A final run that died fails the budget it was in and every later one; those it finished stand.
        died_in = missing[0] if missing else (list(by_budget)[-1] if by_budget else 1.0)
        for budget, brows in by_budget.items():
            epoch_rows += [{**key, "budget": budget, **{k: r.get(k) for k in _EPOCH_COLUMNS}} for r in brows]
            budget_error = error if budget == died_in else None
            row = _budget_row(config, stage, brows, budget_error, full_error, budget)
            trial_rows.append({**key, "budget": budget, **row})
            trial_rows[-1]["finished_at"] = finished.get(budget, math.nan)
        if error is not None or not rows:
            for budget in missing or ([] if rows else [1.0]):
                trial_rows.append(
                    {
                        **key,
                        "budget": budget,
                        "budget_epochs": config.get("epochs", 0) * budget,
                        "status": "error",
                        "reason": short_reason(full_error) or "no result reported",
                        "error_text": full_error,
                    }
                )
    return pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows)


def _budget_row(
    config: dict, stage: str, brows: list[dict], budget_error: Any, full_error: str, budget: float
) -> dict[str, Any]:
    """The trials table's columns of one run at one budget, from its epochs' rows (`brows`)."""
    run_status = _status_of(brows, budget_error, config.get("epochs", 0) * budget, stage)
    reason = next((r.get("reason") for r in brows if r.get("reason")), "") or short_reason(
        error_text(budget_error)
    )
    failed = run_status in ("error", "nan")  # a diverged run has no final metric either
    last = brows[-1]
    return {
        "budget_epochs": config.get("epochs", 0) * budget,
        "epochs_run": last.get("epoch"),
        # A run that died has no final accuracy: its finished epochs stay in the epochs table.
        "final_val_metric": math.nan if failed else last.get("val_metric"),
        "final_val_loss": math.nan if failed else last.get("val_loss"),
        "best_val_metric": _best(brows, config.get("metric_mode", "max")),
        "test_metric": math.nan if failed else last.get("test_metric"),
        # final runs: per-example values of the metric (encode_examples)
        "val_examples": None if failed else last.get("val_examples"),
        "wall_time": last.get("wall_time"),
        "finished_at": math.nan,  # when the run reported this budget (`finish_times`), set by the caller
        "status": run_status,
        "reason": reason,
        "error_text": full_error if failed else "",
    }


def append_tables(run_dir: Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Merge new rows into trials.parquet / epochs.parquet; a re-run trial replaces its earlier rows. The full
    text of each failed run's error goes to `errors/<stage>-<trial_id>.log` (the table keeps a one-line
    reason)."""
    if "error_text" in trials:
        for row in trials[trials["error_text"].fillna("") != ""].itertuples():
            (run_dir / "errors").mkdir(exist_ok=True)
            (run_dir / "errors" / f"{row.stage}-{row.trial_id}.log").write_text(
                ANSI_ESCAPE.sub("", row.error_text)
            )
        trials = trials.drop(columns="error_text")
    for name, new in (("trials", trials), ("epochs", epochs)):
        path = run_dir / f"{name}.parquet"
        if path.exists() and not new.empty:
            old = pd.read_parquet(path)
            old = old[~old["trial_id"].isin(set(new["trial_id"]))]
            new = pd.concat([old, new], ignore_index=True)
        if not new.empty:
            tmp = path.with_suffix(".tmp")
            try:
                new.to_parquet(tmp, index=False)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no half file behind


def records_from_grid(grid: Any) -> dict:
    """(stage, trial_id) -> (config, results, error) for every trial of a Tune ResultGrid."""
    records = {}
    for result in grid:
        df = result.metrics_dataframe
        rows = [] if df is None or df.empty else df.to_dict("records")
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        records[(result.config.get("stage", "search"), trial_id)] = (result.config, rows, result.error)
    return records


def failures(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arm, the final runs at the full budget that failed (status error or nan) and the first reason.

    Columns: arm, n_runs, n_failed, reason. An arm whose search found no usable config has no final runs: it
    counts its search trials instead, all failed.
    """
    columns = ["arm", "n_runs", "n_failed", "reason"]
    if trials.empty or not {"stage", "arm", "status", "budget"} <= set(trials.columns):
        return pd.DataFrame(columns=columns)
    out = []
    for arm, g in trials.groupby("arm"):
        final = g[(g["stage"] == "final") & (g["budget"].astype(float) == 1.0)]
        runs = final if not final.empty else g[g["stage"] == "search"]
        failed = runs[~runs["status"].isin(["ok", "stopped"])]
        reasons = failed["reason"].fillna("") if "reason" in failed else pd.Series([], dtype=str)
        out.append((arm, len(runs), len(failed), next((r for r in reasons if r), "")))
    return pd.DataFrame(out, columns=columns)


def failed_arms(trials: pd.DataFrame) -> list[str]:
    """Arms every one of whose runs failed: the study has no result for them."""
    f = failures(trials)
    return sorted(f[(f["n_runs"] > 0) & (f["n_failed"] == f["n_runs"])]["arm"])


def failure_lines(trials: pd.DataFrame) -> list[str]:
    """One line per arm with failed runs, for the report and the terminal; the pointer to errors/ only where
    a run raised (a diverged run has its reason, no traceback)."""
    raised = set(trials["arm"][trials["status"] == "error"]) if {"arm", "status"} <= set(trials) else set()
    return [
        f"{r.arm}: {r.n_failed} of {r.n_runs} runs failed ({r.reason or 'no reason recorded'})"
        + ("; full tracebacks in errors/ of the run folder" if r.arm in raised else "")
        for r in failures(trials).itertuples()
        if r.n_failed
    ]


def diverged_search_lines(trials: pd.DataFrame) -> list[str]:
    """One line per arm with search trials whose loss went NaN/inf: lost to the search, and worth a note even
    when the arm's final runs are fine."""
    if trials.empty or not {"stage", "arm", "status", "reason"} <= set(trials.columns):
        return []
    search = trials[trials["stage"] == "search"]
    return [
        f"{arm}: {(g['status'] == 'nan').sum()} of {len(g)} search trials diverged ({g['reason'].iloc[0]})"
        for arm, g in search.sort_values("status", key=lambda s: s != "nan").groupby("arm", sort=True)
        if (g["status"] == "nan").any()
    ]
