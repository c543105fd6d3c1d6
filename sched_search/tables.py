"""Tidy tables from Ray Tune results: one row per trial (and budget), one per trial-epoch, kept as parquet.

Trials report to Tune sparsely (see `tune._report`): each result carries the epochs since the previous one as JSON
in `history`, so the per-epoch rows are rebuilt here from either the live results or Ray's saved ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd


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


def _status_of(rows: list[dict], error: Any, epochs: float, stage: str) -> str:
    if error is not None:
        return "error"
    last = rows[-1] if rows else {}
    if last.get("status") == "nan":
        return "nan"
    if stage == "search" and last.get("epoch", 0) < epochs:
        return "stopped"
    return "ok"


def tables_from_rows(
    records: dict[tuple[str, str], tuple[dict, list[dict], Any]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy tables: one row per (trial, budget) and one row per (trial, budget, epoch)."""
    epoch_rows, trial_rows = [], []
    skip = {"stage", "model_options", "_threads", "_rungs", "budgets"}
    for (stage, trial_id), (config, results, error) in records.items():
        rows = expand_history(results)
        params = {k: v for k, v in config.items() if k not in skip and not isinstance(v, (dict, list))}
        by_budget: dict[float, list[dict]] = {}
        for r in rows:
            by_budget.setdefault(float(r.get("budget", 1.0)), []).append(r)
        for budget, brows in by_budget.items():
            run_status = _status_of(brows, error, config.get("epochs", 0) * budget, stage)
            reason = next((r.get("reason") for r in brows if r.get("reason")), "") or (
                "" if not error else str(error)
            )
            for r in brows:
                epoch_rows.append(
                    {
                        "stage": stage,
                        "trial_id": trial_id,
                        **params,
                        "budget": budget,
                        **{
                            k: r.get(k)
                            for k in (
                                "epoch",
                                "train_loss",
                                "val_loss",
                                "val_accuracy",
                                "lr",
                                "momentum",
                                "cycle_epoch",
                                "wall_time",
                            )
                        },
                    }
                )
            last = brows[-1]
            trial_rows.append(
                {
                    "stage": stage,
                    "trial_id": trial_id,
                    **params,
                    "budget": budget,
                    "budget_epochs": config.get("epochs", 0) * budget,
                    "epochs_run": last.get("epoch"),
                    "final_val_accuracy": last.get("val_accuracy"),
                    "final_val_loss": last.get("val_loss"),
                    "best_val_accuracy": max((r.get("val_accuracy") or 0.0) for r in brows),
                    "test_accuracy": last.get("test_accuracy"),
                    "wall_time": last.get("wall_time"),
                    "status": run_status,
                    "reason": reason,
                }
            )
        if not rows:
            trial_rows.append(
                {
                    "stage": stage,
                    "trial_id": trial_id,
                    **params,
                    "budget": 1.0,
                    "status": "error",
                    "reason": str(error or "no result reported"),
                }
            )
    return pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows)


def append_tables(run_dir: Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Merge new rows into trials.parquet / epochs.parquet; a re-run trial replaces its earlier rows."""
    for name, new in (("trials", trials), ("epochs", epochs)):
        path = run_dir / f"{name}.parquet"
        if path.exists() and not new.empty:
            old = pd.read_parquet(path)
            old = old[~old["trial_id"].isin(set(new["trial_id"]))]
            new = pd.concat([old, new], ignore_index=True)
        if not new.empty:
            tmp = path.with_suffix(".tmp")
            new.to_parquet(tmp, index=False)
            os.replace(tmp, path)


def records_from_grid(grid: Any) -> dict:
    """(stage, trial_id) -> (config, results, error) for every trial of a Tune ResultGrid."""
    records = {}
    for result in grid:
        df = result.metrics_dataframe
        rows = [] if df is None or df.empty else df.to_dict("records")
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        records[(result.config.get("stage", "search"), trial_id)] = (result.config, rows, result.error)
    return records
