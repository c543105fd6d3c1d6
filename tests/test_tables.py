"""Tables are a function of what finished: one row per (trial, budget, epoch), the last attempt winning;
failed runs keep their epochs, a one-line reason and their full traceback in errors/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sched_search.leaderboard import build_leaderboard
from sched_search.recorder import progress_text
from sched_search.tables import (
    append_tables,
    decode_examples,
    encode_examples,
    failed_arms,
    failure_lines,
    failures,
    short_reason,
    tables_from_rows,
)
from sched_search.verdict import decide

TRACEBACK = (
    "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=123, ip=127.0.0.1)\n"
    '  File "sched_search/trial.py", line 40, in trial_trainable\n'
    "    _search_run(config, data)\n"
    "ray.exceptions.RayTaskError(ValueError): \x1b[31mValueError: hidden must be > 0\x1b[0m\n"
    "\nThe above exception was the direct cause of the following exception:\n"
    "ValueError: hidden must be > 0, but got -5\n"
)


def _epoch(epoch: int, acc: float, budget: float | None = None, **extra) -> dict:
    row = {
        "epoch": epoch,
        "val_metric": acc,
        "val_loss": 1 - acc,
        "train_loss": 1.0,
        "lr": 0.1,
        "cycle_epoch": epoch,
        "wall_time": float(epoch),
        "status": "ok",
        "reason": "",
        **extra,
    }
    return row if budget is None else {**row, "budget": budget}


def _result(rows: list[dict]) -> dict:
    return {**rows[-1], "history": json.dumps(rows)}


def test_a_retried_trial_keeps_only_its_last_attempt() -> None:
    first = [_result([_epoch(1, 0.1), _epoch(2, 0.2)])]  # the worker died in epoch 3
    second = [_result([_epoch(1, 0.3), _epoch(2, 0.4)]), _result([_epoch(3, 0.5), _epoch(4, 0.6)])]
    config = {"arm": "clr-sgdw", "epochs": 4, "seed": 0}
    trials, epochs = tables_from_rows({("search", "t1"): (config, first + second, None)})
    assert not epochs.duplicated(["trial_id", "budget", "epoch"]).any()
    assert epochs.sort_values("epoch").val_metric.tolist() == [0.3, 0.4, 0.5, 0.6]
    assert trials.status.tolist() == ["ok"] and trials.final_val_metric.tolist() == [0.6]


def test_a_failed_final_run_keeps_its_epochs_and_fails_the_budgets_it_did_not_finish(tmp_path: Path) -> None:
    config = {"arm": "clr-sgdw", "epochs": 4, "seed": 1, "budgets": [0.5, 1.0]}
    results = [
        _result([_epoch(1, 0.5, 0.5), _epoch(2, 0.6, 0.5)]),
        _result([_epoch(1, 0.4, 1.0), _epoch(2, 0.45, 1.0, status="error", reason="RuntimeError: boom")]),
    ]
    trials, epochs = tables_from_rows({("final", "t2"): (config, results, TRACEBACK)})
    assert len(epochs) == 4  # the failed budget's finished epochs stay
    by_budget = trials.set_index("budget")
    assert by_budget.loc[0.5, "status"] == "ok" and by_budget.loc[0.5, "final_val_metric"] == 0.6
    assert by_budget.loc[1.0, "status"] == "error" and math.isnan(by_budget.loc[1.0, "final_val_metric"])
    assert by_budget.loc[1.0, "epochs_run"] == 2 and by_budget.loc[1.0, "reason"] == "RuntimeError: boom"
    append_tables(tmp_path, trials, epochs)
    assert "error_text" not in pd.read_parquet(tmp_path / "trials.parquet").columns
    log = (tmp_path / "errors" / "final-t2.log").read_text()
    assert "ValueError: hidden must be > 0, but got -5" in log and "\x1b" not in log


def test_reason_is_one_line_without_colours() -> None:
    assert short_reason(TRACEBACK) == "ValueError: hidden must be > 0, but got -5"
    config = {"arm": "clr-sgdw", "epochs": 4, "seed": 0, "budgets": [0.5, 1.0]}
    trials, _ = tables_from_rows({("final", "t3"): (config, [], TRACEBACK)})
    assert trials.budget.tolist() == [0.5, 1.0] and (trials.status == "error").all()
    assert (trials.reason == "ValueError: hidden must be > 0, but got -5").all()
    assert "\x1b" not in "".join(trials.reason)


def _finals(arm: str, statuses: list[str]) -> list[dict]:
    return [
        {
            "stage": "final",
            "trial_id": f"{arm}-{i}",
            "arm": arm,
            "seed": i,
            "budget": 1.0,
            "budget_epochs": 4,
            "final_val_metric": 0.9 if s == "ok" else math.nan,
            "final_val_loss": 0.1,
            "test_metric": 0.9,
            "wall_time": 1.0,
            "status": s,
            "reason": "" if s == "ok" else "ValueError: bad seed",
        }
        for i, s in enumerate(statuses)
    ]


def test_failures_per_arm_in_the_leaderboard_and_the_exit() -> None:
    trials = pd.DataFrame(
        _finals("clr-sgdw", ["ok", "error"])
        + _finals("constant-adam", ["ok", "ok"])
        + _finals("sgdr-adamw", ["error", "error"])
    )
    board = build_leaderboard(trials, pd.DataFrame(), decide(trials)).set_index("arm")
    assert board.loc["clr-sgdw", ["n_seeds", "n_failed"]].tolist() == [1, 1]
    assert board.loc["constant-adam", "n_failed"] == 0 and board.loc["sgdr-adamw", "n_failed"] == 2
    assert failures(trials).set_index("arm").loc["clr-sgdw", "n_failed"] == 1
    assert failed_arms(trials) == ["sgdr-adamw"]
    lines = failure_lines(trials)
    assert len(lines) == 2 and lines[0].startswith("clr-sgdw: 1 of 2 runs failed (ValueError: bad seed)")


def test_progress_text_counts_and_time_left() -> None:
    # 12 of 48 done in 65 s: 36 left at 65/12 s each
    assert progress_text(12, 48, 2, 1, 65.0, 12) == "[12/48 | 2 running | 1 failed | 1m05s, ~3m15s left]"
    # after a resume the pace comes from this session's trials only (3 in 30 s), not the 40 done before
    assert progress_text(43, 48, 2, 0, 30.0, 3) == "[43/48 | 2 running | 0 failed | 30s, ~50s left]"
    assert progress_text(48, 48, 0, 0, 4000.0, 48) == "[48/48 | 0 running | 0 failed | 1h06m, all done]"
    assert progress_text(0, 48, 2, 0, 5.0, 0) == "[0/48 | 2 running | 0 failed | 5s]"


def test_examples_round_trip_compact_for_0_1_and_json_for_floats() -> None:
    right = np.array([1, 0, 0, 1, 1], dtype=bool)
    assert encode_examples(right) == "10011" and encode_examples([1.0, 0.0]) == "10"
    assert decode_examples("10011").tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    errors = np.array([0.5, 0.0, 1.0, 2.25, 1e-7])  # squared errors: not all 0/1, so JSON
    text = encode_examples(errors)
    assert text.startswith("[") and decode_examples(text).tolist() == errors.tolist()  # exact
    assert encode_examples(np.float32([0.1, 3.0])).startswith("[")
    assert encode_examples(None) is None and encode_examples([]) is None
    assert decode_examples(None) is None and decode_examples(math.nan) is None
    with pytest.raises(ValueError, match="1-D"):
        encode_examples(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'0'/'1' characters"):
        decode_examples("0120")


def test_a_diverged_run_has_no_final_metric_and_no_pointer_to_tracebacks() -> None:
    from sched_search.tables import diverged_search_lines

    nan = {"reason": "training loss is nan at epoch 2"}
    records = {
        ("final", "f1"): (
            {"arm": "clr-sgdw", "epochs": 4, "seed": 0, "budgets": [1.0]},
            [_result([_epoch(1, 0.5, 1.0), _epoch(2, 0.0, 1.0, status="nan", **nan)])],
            None,
        ),
        ("search", "s1"): ({"arm": "clr-sgdw", "epochs": 4, "seed": 0}, [_result([_epoch(1, 0.7)])], None),
        ("search", "s2"): (
            {"arm": "clr-sgdw", "epochs": 4, "seed": 0},
            [_result([_epoch(1, 0.0, status="nan", **nan)])],
            None,
        ),
    }
    trials, _ = tables_from_rows(records)
    final = trials[trials.stage == "final"].iloc[0]
    assert final.status == "nan" and math.isnan(final.final_val_metric)  # not the 0.0 of its last epoch
    (line,) = failure_lines(trials)
    assert line == "clr-sgdw: 1 of 1 runs failed (training loss is nan at epoch 2)"  # no errors/ to point to
    assert diverged_search_lines(trials) == [
        "clr-sgdw: 1 of 2 search trials diverged (training loss is nan at epoch 2)"
    ]
