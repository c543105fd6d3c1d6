"""Tables are a function of what finished: one row per (trial, budget, epoch), the last attempt winning;
failed runs keep their epochs, a one-line reason and their full traceback in errors/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sched_search.results.leaderboard import build_leaderboard
from sched_search.results.tables import (
    append_tables,
    failed_arms,
    failure_lines,
    failures,
    short_reason,
    tables_from_rows,
)
from sched_search.results.verdict import decide
from sched_search.study.recorder import progress_text
from sched_search.training.objective import decode_examples, encode_examples

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


def _result(rows: list[dict], **stamp: float) -> dict:
    return {**rows[-1], **stamp, "history": json.dumps(rows)}


def test_a_retried_trial_keeps_only_its_last_attempt() -> None:
    first = [_result([_epoch(1, 0.1), _epoch(2, 0.2)])]  # the worker died in epoch 3
    second = [_result([_epoch(1, 0.3), _epoch(2, 0.4)]), _result([_epoch(3, 0.5), _epoch(4, 0.6)])]
    config = {"arm": "clr-sgdw", "epochs": 4, "seed": 0}
    trials, epochs = tables_from_rows({("search", "t1"): (config, first + second, None)})
    assert not epochs.duplicated(["trial_id", "budget", "epoch"]).any()
    assert epochs.sort_values("epoch").val_metric.tolist() == [0.3, 0.4, 0.5, 0.6]
    assert trials.status.tolist() == ["ok"] and trials.final_val_metric.tolist() == [0.6]


def test_a_run_ends_at_its_last_results_stamp_or_else_at_tunes_timestamp() -> None:
    """`finished_at` orders the study's runs (`frontier.learned_order`): a retried run's is its last
    attempt's; a result from before the stamp falls back to Tune's whole-second `timestamp`; a budget that
    never reported has none."""
    first = [_result([_epoch(1, 0.1)], finished_at=5.5)]  # the worker died in epoch 2
    second = [_result([_epoch(1, 0.3)], finished_at=7.25), _result([_epoch(2, 0.5)], finished_at=9.75)]
    config = {"arm": "clr-sgdw", "epochs": 2, "seed": 0}
    trials, _ = tables_from_rows({("search", "t1"): (config, first + second, None)})
    assert trials.finished_at.tolist() == [9.75]
    unstamped = [_result([_epoch(1, 0.3), _epoch(2, 0.4)], timestamp=1700000001)]
    old = {("search", "t2"): (config, unstamped, None)}
    assert tables_from_rows(old)[0].finished_at.tolist() == [1700000001.0]
    final = {**config, "stage": "final", "budgets": [0.5, 1.0]}
    half = [_result([_epoch(1, 0.3, budget=0.5)], finished_at=3.0)]
    died = tables_from_rows({("final", "f1"): (final, half, "RuntimeError: worker died")})[0]
    assert died.budget.tolist() == [0.5, 1.0] and died.finished_at.tolist()[0] == 3.0
    assert math.isnan(died.finished_at.tolist()[1])


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
    from sched_search.results.tables import diverged_search_lines

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


# ------------------------------------------------------------------ every column, from the epoch it came from

PARAMS = {"arm": "clr-sgdw", "epochs": 4, "seed": 3, "max_lr": 0.1, "metric_mode": "min"}
LEFT_OUT = {"model_options": {"hidden": 8}, "_threads": 1, "_rungs": [2], "weight_decays": [0.0, 1e-4]}
EPOCH_KEYS = ("epoch", "train_loss", "val_loss", "val_metric", "lr", "momentum", "cycle_epoch", "wall_time")


def _distinct_epoch(epoch: int, budget: float) -> dict:
    """An epoch whose every value is its own (budget x 100 + epoch + a per-key fraction), so a column
    filled from the wrong key or the wrong epoch shows; val_metric falls, so its best (mode "min") is the
    last epoch's and its max the first's."""
    base = 100 * budget + epoch
    return {
        "epoch": epoch,
        "budget": budget,
        "train_loss": base + 0.1,
        "val_loss": base + 0.2,
        "val_metric": 1000 - base,
        "lr": base + 0.4,
        "momentum": base + 0.5,
        "cycle_epoch": epoch - 1,
        "wall_time": base + 0.6,
        "test_metric": base + 0.7,
        "val_examples": f"{epoch % 2}1",
        "status": "ok",
        "reason": "",
        "not_a_column": base,
    }


def test_every_column_of_both_tables_comes_from_its_epoch() -> None:
    """A final run over two budgets, each its own Tune result: one trials row per budget from the budget's
    last epoch (its best val metric in the study's direction), one epochs row per epoch, the trial's
    params beside them and nothing that is not a param."""
    config = {**PARAMS, **LEFT_OUT, "stage": "final", "budgets": [0.5, 1.0]}
    epochs_of = {b: [_distinct_epoch(e, b) for e in range(1, int(4 * b) + 1)] for b in (0.5, 1.0)}
    results = [_result(epochs_of[b], finished_at=1e6 + b) for b in (0.5, 1.0)]
    trials, epochs = tables_from_rows({("final", "f7"): (config, results, None)})
    key = {"stage": "final", "trial_id": "f7", **PARAMS}
    expected_trials = [
        {
            **key,
            "budget": b,
            "budget_epochs": 4 * b,
            "epochs_run": rows[-1]["epoch"],
            "final_val_metric": rows[-1]["val_metric"],
            "final_val_loss": rows[-1]["val_loss"],
            "best_val_metric": min(r["val_metric"] for r in rows),
            "test_metric": rows[-1]["test_metric"],
            "val_examples": rows[-1]["val_examples"],
            "wall_time": rows[-1]["wall_time"],
            "finished_at": 1e6 + b,
            "status": "ok",
            "reason": "",
            "error_text": "",
        }
        for b, rows in epochs_of.items()
    ]
    assert trials.to_dict("records") == expected_trials
    expected_epochs = [
        {**key, "budget": b, **{k: r[k] for k in EPOCH_KEYS}} for b, rows in epochs_of.items() for r in rows
    ]
    assert epochs.to_dict("records") == expected_epochs
    # in "max" the best is the first epoch's
    maxed = tables_from_rows({("final", "f7"): ({**config, "metric_mode": "max"}, results, None)})[0]
    assert maxed.best_val_metric.tolist() == [epochs_of[b][0]["val_metric"] for b in (0.5, 1.0)]


@pytest.mark.parametrize(
    ("stage", "last", "error", "status"),
    [
        ("search", {"epoch": 4}, None, "ok"),
        ("search", {"epoch": 2}, None, "stopped"),  # ASHA stopped it before its epochs
        ("final", {"epoch": 2}, None, "ok"),  # a final run is never "stopped": its budget is its epochs
        ("search", {"epoch": 4, "status": "nan"}, None, "nan"),
        ("search", {"epoch": 4, "status": "error"}, None, "error"),
        ("search", {"epoch": 4}, "RuntimeError: worker died", "error"),
    ],
)
def test_status_of_a_run(stage: str, last: dict, error: str | None, status: str) -> None:
    rows = [_epoch(1, 0.5), {**_epoch(last["epoch"], 0.6), **last}]
    config = {"arm": "clr-sgdw", "epochs": 4, "seed": 0, "budgets": [1.0]}
    trials, _ = tables_from_rows({(stage, "t"): (config, [_result(rows)], error)})
    assert trials.status.tolist() == [status]
    failed = status in ("nan", "error")
    assert math.isnan(trials.final_val_metric[0]) == failed
    if error:
        assert trials.reason[0] == error and trials.error_text[0] == error


def test_results_without_history_and_a_run_that_reported_nothing() -> None:
    """A result without `history` counts as one epoch when it has one; one without either is no epoch. A run
    with no epoch at all (no error either) is one error row: "no result reported"."""
    config = {"arm": "clr-sgdw", "epochs": 2, "seed": 0}
    plain = [{**_epoch(1, 0.5), "history": ""}, {"training_iteration": 1}, _epoch(2, 0.7)]
    trials, epochs = tables_from_rows(
        {("search", "a"): (config, plain, None), ("search", "b"): (config, [], None)}
    )
    assert epochs[epochs.trial_id == "a"].epoch.tolist() == [1, 2]
    by_id = trials.set_index("trial_id")
    assert by_id.loc["a", "status"] == "ok" and by_id.loc["a", "final_val_metric"] == 0.7
    assert by_id.loc["b", ["status", "reason", "budget"]].tolist() == ["error", "no result reported", 1.0]
    assert (epochs.trial_id == "b").sum() == 0


def test_error_text_reads_tunes_error_file_and_keeps_other_text(tmp_path: Path) -> None:
    from sched_search.results.tables import error_text

    log = tmp_path / "error.txt"
    log.write_text(TRACEBACK)
    assert error_text(None) == "" and error_text(str(log)) == TRACEBACK and error_text(log) == TRACEBACK
    assert error_text(str(tmp_path / "absent.txt")) == str(tmp_path / "absent.txt")
    assert error_text(ValueError("boom")) == "boom"
    long = "x" * 5000  # too long to be a path: never looked up
    assert error_text(long) == long
    assert short_reason("") == "" and short_reason("no error line\n  last line  ") == "last line"
    assert short_reason("RuntimeError: " + "y" * 400) == ("RuntimeError: " + "y" * 400)[:300]
    assert short_reason("KeyboardInterrupt\nSystemExit: 2\nnot an error") == "SystemExit: 2"


def test_append_tables_merges_by_trial_and_keeps_what_it_does_not_replace(tmp_path: Path) -> None:
    config = {"arm": "clr-sgdw", "epochs": 2, "seed": 0}
    first = tables_from_rows(
        {("search", "a"): (config, [_result([_epoch(1, 0.1), _epoch(2, 0.2)])], None),
         ("search", "b"): (config, [_result([_epoch(1, 0.3), _epoch(2, 0.4)])], None)}
    )  # fmt: skip
    append_tables(tmp_path, *first)
    again = tables_from_rows({("search", "a"): (config, [_result([_epoch(1, 0.5), _epoch(2, 0.6)])], None)})
    append_tables(tmp_path, *again)
    append_tables(tmp_path, pd.DataFrame(), pd.DataFrame())  # nothing new: nothing lost
    trials = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")
    assert trials.final_val_metric.to_dict() == {"b": 0.4, "a": 0.6}
    epochs = pd.read_parquet(tmp_path / "epochs.parquet")
    assert sorted(zip(epochs.trial_id, epochs.val_metric, strict=True)) == [
        ("a", 0.5), ("a", 0.6), ("b", 0.3), ("b", 0.4)
    ]  # fmt: skip
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "errors").exists()


def test_records_from_grid_keys_by_stage_and_trial_id(tmp_path: Path) -> None:
    """What a ResultGrid iterates (Tune's own `Result`s): each trial's progress rows, config and error,
    keyed (stage, trial_id); a trial with no metrics is named by its folder and has no rows."""
    from ray.tune import Result

    from sched_search.results.tables import records_from_grid

    rows = [_epoch(1, 0.5), _epoch(2, 0.6)]
    search = {"arm": "clr-sgdw", "stage": "search"}
    ok = Result(
        metrics={**rows[-1], "trial_id": "s1", "config": search},
        checkpoint=None,
        error=None,
        path=str(tmp_path / "trial_s1"),
        metrics_dataframe=pd.DataFrame(rows),
    )
    error = RuntimeError("worker died")
    final = {"arm": "clr-sgdw", "stage": "final"}  # Tune's last result of a trial that never reported
    died = Result(metrics={"config": final}, checkpoint=None, error=error, path=str(tmp_path / "trial_f9"))
    records = records_from_grid([ok, died])
    assert list(records) == [("search", "s1"), ("final", "trial_f9")]
    config, got, err = records[("search", "s1")]
    assert config == search and got == rows and err is None
    assert records[("final", "trial_f9")] == (final, [], error)
    unstaged = Result(  # a config without a stage is a search trial's
        metrics={"trial_id": "s2", "config": {"arm": "clr-sgdw"}},
        checkpoint=None,
        error=None,
        path=str(tmp_path / "trial_s2"),
        metrics_dataframe=pd.DataFrame(),
    )
    assert records_from_grid([unstaged]) == {("search", "s2"): ({"arm": "clr-sgdw"}, [], None)}
