"""`recorder.Recorder`, Tune's callback that writes the tables while a study runs, driven with Tune's own
`Trial` objects: finished trials are merged into trials.parquet / epochs.parquet (never overwriting what an
earlier write put there), a retried trial replaces its rows, writes wait for `write_every_s`, a failed trial's
traceback goes to errors/."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from ray.tune.experiment import Trial

from sched_search.study.recorder import Recorder

EPOCHS = 3


def _trial(trial_id: str, arm: str) -> Trial:
    config = {"arm": arm, "stage": "search", "epochs": EPOCHS, "max_lr": 0.1, "metric": "accuracy"}
    return Trial("trial_trainable", config=config, trial_id=trial_id, stub=True)


def _report(rec: Recorder, trial: Trial, trials: list[Trial], accuracies: list[float]) -> None:
    """The trial's epochs in one Tune result (as `trial._report` sends them at the end), then its end."""
    rows = [
        {"epoch": e + 1, "val_metric": a, "val_loss": 1 - a, "cycle_epoch": e + 1, "status": "ok"}
        for e, a in enumerate(accuracies)
    ]
    trial.set_status(Trial.RUNNING)
    rec.callback.on_trial_result(0, trials, trial, {**rows[-1], "history": json.dumps(rows)})
    rec.callback.on_trial_complete(0, trials, trial)
    trial.set_status(Trial.TERMINATED)


def _table(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(run_dir / f"{name}.parquet")


def test_finished_trials_are_merged_as_they_finish(tmp_path: Path) -> None:
    lines: list[str] = []
    a, b = _trial("a", "clr-sgdw"), _trial("b", "sgdr-sgdw")
    rec = Recorder(tmp_path, lines.append, total=2)
    rec.write_every_s = 0.0  # merge at every finished trial
    b.set_status(Trial.RUNNING)
    _report(rec, a, [a, b], [0.5, 0.6, 0.7])
    assert _table(tmp_path, "trials")["trial_id"].tolist() == ["a"]
    _report(rec, b, [a, b], [0.4, 0.8, 0.9])
    trials = _table(tmp_path, "trials").set_index("trial_id")
    assert sorted(trials.index) == ["a", "b"]  # b merged in beside a, not written over it
    assert trials.loc["a", "final_val_metric"] == 0.7 and trials.loc["b", "final_val_metric"] == 0.9
    assert (trials["status"] == "ok").all() and (trials["epochs_run"] == EPOCHS).all()
    assert len(_table(tmp_path, "epochs")) == 2 * EPOCHS
    assert [line.split(" | ")[:3] for line in lines] == [
        ["[1/2", "1 running", "0 failed"],
        ["[2/2", "0 running", "0 failed"],
    ]
    assert "[search clr-sgdw] a val accuracy 0.7 ok" in lines[0]

    # Tune retries `a` after its worker died: the new attempt replaces its rows
    rec.rows.pop("a")
    _report(rec, a, [a, b], [0.3, 0.2, 0.1])
    trials = _table(tmp_path, "trials")
    assert sorted(trials["trial_id"]) == ["a", "b"]
    assert trials.set_index("trial_id").loc["a", "final_val_metric"] == 0.1
    epochs = _table(tmp_path, "epochs")
    assert len(epochs) == 2 * EPOCHS and epochs[epochs.trial_id == "a"]["val_metric"].tolist() == [
        0.3,
        0.2,
        0.1,
    ]


def test_writes_wait_for_write_every_s_and_the_last_write_keeps_everything(tmp_path: Path) -> None:
    a, b = _trial("a", "clr-sgdw"), _trial("b", "clr-sgdw")
    rec = Recorder(tmp_path, lambda line: None)
    rec.write_every_s = 3600.0
    _report(rec, a, [a, b], [0.5, 0.6, 0.7])
    _report(rec, b, [a, b], [0.5, 0.6, 0.8])
    assert not (tmp_path / "trials.parquet").exists()  # not yet: merging costs the driver's CPU
    rec.write()
    assert sorted(_table(tmp_path, "trials")["trial_id"]) == ["a", "b"]
    rec.write()  # nothing new: the tables stay as they are
    assert len(_table(tmp_path, "trials")) == 2


def test_a_failed_trial_is_recorded_with_its_traceback(tmp_path: Path) -> None:
    lines: list[str] = []
    a = _trial("a", "clr-sgdw")
    rec = Recorder(tmp_path, lines.append, total=1)
    rec.write_every_s = 0.0
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  ...\nValueError: hidden must be > 0\n")
    a.set_status(Trial.ERROR)
    rec.finished(a, str(error), [a])
    row = _table(tmp_path, "trials").iloc[0]
    assert (row["status"], row["reason"]) == ("error", "ValueError: hidden must be > 0")
    assert "hidden must be > 0" in (tmp_path / "errors" / "search-a.log").read_text()
    assert "1 failed" in lines[0] and "error (ValueError: hidden must be > 0)" in lines[0]
