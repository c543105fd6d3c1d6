"""Tidy tables from Ray Tune results: one row per trial (and budget), one per trial-epoch, kept as parquet.

Trials report to Tune sparsely (see `trial._report`): each result carries the epochs since the previous one as
JSON in `history`, so the per-epoch rows are rebuilt here from either the live results or Ray's saved ones.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as JSON to `path` atomically: a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def final_rows(trials: pd.DataFrame, full_only: bool = True) -> pd.DataFrame:
    """The final-stage rows of a table (trials or epochs), only the full budget unless `full_only` is
    False."""
    if trials.empty or not {"stage", "arm", "budget"} <= set(trials.columns):
        return trials.iloc[0:0]
    rows = trials[trials["stage"] == "final"]
    return rows[np.isclose(rows["budget"].astype(float), 1.0)] if full_only else rows


def encode_examples(values: Any) -> str | None:
    """A final run's per-example validation values as one `val_examples` cell: '0'/'1' characters when every
    value is 0 or 1 (accuracy: right or wrong), else a JSON list of floats; None for no values.

    Example:
        >>> encode_examples([1, 0, 1]), encode_examples([0.25, 1.5]), encode_examples(None)
        ('101', '[0.25, 1.5]', None)
    """
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"encode_examples takes one value per example (1-D), but got shape {arr.shape}.")
    if arr.size == 0:
        return None
    if np.isin(arr, (0.0, 1.0)).all():
        return (arr.astype(np.uint8) + ord("0")).tobytes().decode("ascii")
    return json.dumps(arr.tolist())


def decode_examples(s: Any) -> np.ndarray | None:
    """The per-example values of a `val_examples` cell (`encode_examples`) as floats; None for None or NaN.

    Example:
        >>> decode_examples("0110").tolist(), decode_examples("[0.5, 2.0]").tolist()
        ([0.0, 1.0, 1.0, 0.0], [0.5, 2.0])
    """
    if not isinstance(s, str) or not s:
        return None
    if s.startswith("["):
        return np.asarray(json.loads(s), dtype=float)
    raw = np.frombuffer(s.encode("ascii"), dtype=np.uint8)
    if not np.isin(raw, (ord("0"), ord("1"))).all():
        raise ValueError(f"val_examples must be '0'/'1' characters or a JSON list, but got {s[:40]!r}.")
    return (raw == ord("1")).astype(float)


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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
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
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
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


def tables_from_rows(
    records: dict[tuple[str, str], tuple[dict, list[dict], Any]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy tables: one row per (trial, budget) and one row per (trial, budget, epoch)."""
    epoch_rows, trial_rows = [], []
    skip = {"stage", "model_options", "_threads", "_rungs", "budgets"}
    for (stage, trial_id), (config, results, error) in records.items():
        rows = expand_history(results)
        params = {k: v for k, v in config.items() if k not in skip and not isinstance(v, (dict, list))}
        full_error = error_text(error)
        by_budget = last_attempt(rows)
        budgets = [float(b) for b in config.get("budgets", [1.0])] if stage == "final" else [1.0]
        missing = [b for b in budgets if b not in by_budget]
        # A final run that died fails the budget it was in and every later one; those it finished stand.
        died_in = missing[0] if missing else (list(by_budget)[-1] if by_budget else 1.0)
        for budget, brows in by_budget.items():
            budget_error = error if budget == died_in else None
            run_status = _status_of(brows, budget_error, config.get("epochs", 0) * budget, stage)
            reason = next((r.get("reason") for r in brows if r.get("reason")), "") or short_reason(
                error_text(budget_error)
            )
            failed = run_status in ("error", "nan")  # a diverged run has no final metric either
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
                                "val_metric",
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
                    # A run that died has no final accuracy: its finished epochs stay in the epochs table.
                    "final_val_metric": math.nan if failed else last.get("val_metric"),
                    "final_val_loss": math.nan if failed else last.get("val_loss"),
                    "best_val_metric": _best(brows, config.get("metric_mode", "max")),
                    "test_metric": math.nan if failed else last.get("test_metric"),
                    # final runs: per-example values of the metric (encode_examples)
                    "val_examples": None if failed else last.get("val_examples"),
                    "wall_time": last.get("wall_time"),
                    "status": run_status,
                    "reason": reason,
                    "error_text": full_error if failed else "",
                }
            )
        if error is not None or not rows:
            for budget in missing or ([] if rows else [1.0]):
                trial_rows.append(
                    {
                        "stage": stage,
                        "trial_id": trial_id,
                        **params,
                        "budget": budget,
                        "budget_epochs": config.get("epochs", 0) * budget,
                        "status": "error",
                        "reason": short_reason(full_error) or "no result reported",
                        "error_text": full_error,
                    }
                )
    return pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows)


def append_tables(run_dir: Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Merge new rows into trials.parquet / epochs.parquet; a re-run trial replaces its earlier rows. The full
    text of each failed run's error goes to `errors/<stage>-<trial_id>.log` (the table keeps a one-line
    reason)."""
    if "error_text" in trials:
        for row in trials[trials["error_text"].fillna("") != ""].itertuples():
            (run_dir / "errors").mkdir(exist_ok=True)
            (run_dir / "errors" / f"{row.stage}-{row.trial_id}.log").write_text(_ANSI.sub("", row.error_text))
        trials = trials.drop(columns="error_text")
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


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_text(done: int, total: int, running: int, failed: int, elapsed: float, done_here: int) -> str:
    """`[done/total | running | failed | elapsed, ~left]` for a trial line. Time left is the pace so far
    (`elapsed` over the `done_here` trials finished in it) times the trials not done: rough, since ASHA stops
    many search trials early and a final re-run trains over the whole budget ladder.

    Example:
        >>> progress_text(12, 48, 2, 1, 65.0, 12)
        '[12/48 | 2 running | 1 failed | 1m05s, ~3m15s left]'
    """
    left = total - done
    if left <= 0:
        when = f"{_duration(elapsed)}, all done"
    elif done_here:
        when = f"{_duration(elapsed)}, ~{_duration(elapsed / done_here * left)} left"
    else:
        when = _duration(elapsed)
    return f"[{done}/{total} | {running} running | {failed} failed | {when}]"


class Recorder:
    """A Tune callback: keeps every reported row, prints one line per finished trial, merges finished trials
    into the tables at most every `write_every_s`. (A merge rewrites both parquet files, about 30 ms of driver
    CPU; merging after every trial took 2.2 s of the driver's 8.2 s of CPU in the default study, on the cores
    the trials use.)

    Each line starts with the counts of `progress_text`: `total` is the trials the Tuner will run (search
    trials and final re-runs); trials finished before a resume count as done, from Tune's own record.
    """

    write_every_s = 2.0

    def __init__(self, run_dir: Path, echo: Callable[[str], None], total: int = 0):
        from ray.tune import Callback

        self.run_dir, self.echo, self.total = run_dir, echo, total
        self.rows: dict[str, list[dict]] = {}
        self.unwritten: dict[tuple[str, str], tuple[dict, list[dict], Any]] = {}
        self.written_at = self.started = time.monotonic()
        self.done_here = 0  # trials finished since this Recorder started (the pace of time left)
        self.diverged = 0  # trials whose loss went NaN: failed, though Tune saw them end normally
        self.traceback_shown = False  # the first failed trial's traceback is printed, once
        recorder = self

        class _CB(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                recorder.rows.setdefault(trial.trial_id, []).append(dict(result))

            def on_trial_complete(self, iteration, trials, trial, **info):
                recorder.finished(trial, None, trials)

            def on_trial_error(self, iteration, trials, trial, **info):
                recorder.finished(trial, trial.error_file, trials)

        self.callback = _CB()

    def finished(self, trial: Any, error_file: str | None, trials: list | None = None) -> None:
        rows = expand_history(self.rows.get(trial.trial_id, []))
        config = trial.config
        stage = config.get("stage", "search")
        last = rows[-1] if rows else {}
        final = last.get("val_metric", math.nan)  # what selection and the leaderboard use, not the best
        status = f"error ({short_reason(error_text(error_file))})" if error_file else last.get("status", "ok")
        if status == "ok" and stage == "search" and last.get("epoch", 0) < config.get("epochs", 0):
            status = f"stopped by ASHA at epoch {last.get('epoch')}"
        self.done_here += 1
        self.diverged += status == "nan"
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in config.items()
            if k
            in ("max_lr", "weight_decay", "lr", "seed", "mode", "t_0_epochs", "pct_start", "step_size_epochs")
        )
        self.echo(
            f"{self._counts(trial, trials or [])} [{stage} {config.get('arm', '?')}] {trial.trial_id} "
            f"val {config.get('metric', 'accuracy').rpartition(':')[2]} {final:.4g} {status} ({shown})"
        )
        if error_file and not getattr(self, "traceback_shown", False):  # (absent in an older pickled one)
            self.traceback_shown = True
            text = _ANSI.sub("", error_text(error_file)).rstrip()
            self.echo(f"traceback of {trial.trial_id} (every failed run's is in errors/):\n{text}")
        self.unwritten[(stage, trial.trial_id)] = (config, self.rows.get(trial.trial_id, []), error_file)
        if time.monotonic() - self.written_at >= self.write_every_s:
            self.write()

    def _counts(self, trial: Any, trials: list) -> str:
        """The progress counts from Tune's trials: `trial` has just ended (Tune marks a completed one after
        the callback, an errored one before it)."""
        others = [t for t in trials if t is not trial]
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in others)
        running = sum(t.status == "RUNNING" for t in others)
        failed = sum(t.status == "ERROR" for t in trials) + self.diverged
        total = max(self.total, done + running)
        return progress_text(done, total, running, failed, time.monotonic() - self.started, self.done_here)

    def write(self) -> None:
        """Merge the trials finished since the last write into trials.parquet / epochs.parquet."""
        if self.unwritten:
            append_tables(self.run_dir, *tables_from_rows(self.unwritten))
        self.unwritten, self.written_at = {}, time.monotonic()
