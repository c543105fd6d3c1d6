"""The study on real Ray, Optuna and torch: spaces from the range test, the smoke run end to end, NaN trials,
ASHA on cycle ends, resume after kill -9, and joining a `ray start --head` cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sched_search.config import BASELINE_ARM
from sched_search.lr.arms import build_schedule
from sched_search.lr.schedules import at_lr_minimum
from sched_search.study.space import (
    RangeSeed,
    build_space,
    check_point_in_space,
    max_lr_high,
    seed_from_summary,
)
from sched_search.study.studyfile import load_study

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
SEED = RangeSeed(
    "sgdw",
    max_lr=0.06,
    min_lr=0.015,
    weight_decay=1e-4,
    weight_decay_range=(1e-5, 1e-3),
    min_loss_lr=0.18,
    divergence_lr=0.3,
)


# ----------------------------------------------------------------------------------- spaces (no Ray)


@pytest.mark.parametrize("arm", ["clr-sgdw", "sgdr-sgdw", "one_cycle-sgdw"])
def test_space_bounds_come_from_the_range_test(arm: str) -> None:
    space = build_space(arm, SEED, epochs=30, steps_per_epoch=19)
    params = {p.name: p for p in space.params}
    # up to where the curve diverges (divergence_lr), from a quarter of the suggestion
    assert params["max_lr"].low == pytest.approx(0.06 / 4) and params["max_lr"].high == pytest.approx(0.3)
    # Smith's cycles (one-cycle, CLR) start at the min-loss LR, SGDR with SGDW at the suggestion (measured)
    assert params["max_lr"].log
    assert params["max_lr"].first == (0.06 if arm == "sgdr-sgdw" else SEED.min_loss_lr)
    assert (params["weight_decay"].low, params["weight_decay"].high) == (1e-5, 1e-3)
    assert params["weight_decay"].first == 1e-4
    assert all(p.source for p in space.params)
    check_point_in_space(space, space.first_point())


def test_space_scales_with_the_range_test() -> None:
    small = build_space("clr-adamw", replace(SEED, max_lr=0.006, min_lr=0.0015), 30, 19)
    big = build_space("clr-adamw", SEED, 30, 19)
    assert big.params[0].low == pytest.approx(10 * small.params[0].low)


def test_clr_step_size_leaves_two_cycles() -> None:
    space = build_space("clr-sgdw", SEED, epochs=8, steps_per_epoch=19)
    step = next(p for p in space.params if p.name == "step_size_epochs")
    assert step.high <= 8 / 4


def test_first_point_outside_space_is_refused() -> None:
    space = build_space("sgdr-adamw", SEED, 30, 19)
    point = {**space.first_point(), "max_lr": 10.0}
    with pytest.raises(ValueError, match="max_lr"):
        check_point_in_space(space, point)


def test_lr_minimum_detection_on_clr_and_sgdr() -> None:
    clr = build_schedule(
        {
            "schedule": "clr",
            "max_lr": 0.1,
            "base_div": 4,
            "step_size_epochs": 1,
            "mode": "triangular",
            "gamma": 1.0,
            "epochs": 8,
        },
        8,
        10,
    )
    ends = [e for e in range(1, 9) if at_lr_minimum(clr, e * 10)]
    assert ends == [2, 4, 6, 8]  # cycle = 2 x step_size = 2 epochs
    sgdr = build_schedule(
        {"schedule": "sgdr", "max_lr": 0.1, "t_0_epochs": 1, "t_mult": 2.0, "eta_min": 0.0, "epochs": 8},
        8,
        10,
    )
    assert [e for e in range(1, 8) if at_lr_minimum(sgdr, e * 10)] == [1, 3, 7]


# -------------------------------------------------------------------------------- the smoke study, end to end


@pytest.mark.slow
def test_smoke_run_folder(smoke_run: Path) -> None:
    for name in (
        "study.toml",
        "resolved_config.json",
        "spaces.json",
        "optuna.db",
        "trials.parquet",
        "epochs.parquet",
        "range_test_sgdw.json",
        "range_test_adamw.png",
        "final_configs.json",
    ):
        assert (smoke_run / name).exists(), name
    spaces = json.loads((smoke_run / "spaces.json").read_text())
    assert set(spaces) == {"clr-sgdw", "one_cycle-adamw"}
    assert all(p["source"] for s in spaces.values() for p in s["params"])


TRIAL_LINE = re.compile(
    r"^\[(\d+)/(\d+) \| (\d+) running \| (\d+) failed \| [0-9hms]+, (?:~[0-9hms]+ left|all done)\] "
    r"\[(search|final) ([\w-]+)\] \w+ val accuracy [\d.]+ "
)


@pytest.mark.slow
def test_smoke_progress_lines_count_every_trial(smoke_study: tuple[Path, list[str]]) -> None:
    _, lines = smoke_study
    # a line as each range-test sweep ends (no terminal: no bars), two decays per optimizer family, in the
    # order the parallel tasks finish
    for opt in ("adamw", "sgdw"):
        pattern = rf"range test {opt}: sweep (\d) of 2 done \(weight decay ([\d.]+), \d+ of 100 steps, "
        ended = [m for line in lines if (m := re.match(pattern, line))]
        assert [m[1] for m in ended] == ["1", "2"] and sorted(m[2] for m in ended) == ["0", "0.0001"]
    # the range test's lines say what the search does with the chosen decay (0 is never searched)
    number = r"[\d.e+-]+"
    decays = [line for line in lines if re.match(rf"range test \w+: weight decay {number}; searched", line)]
    assert len(decays) == 2
    assert all(re.search(rf"log-uniform in \[{number}, {number}\], first trial {number}$", d) for d in decays)
    # a line per finished trial: done counts 1..total once each; total = search trials + seeds x (arms + 1)
    q = load_study(SMOKE).search
    n_search, n_final = q.trials_per_arm * len(q.arms), len(q.seeds) * (len(q.arms) + 1)
    total = n_search + n_final
    trials = [TRIAL_LINE.match(line) for line in lines if line.startswith("[") and "running" in line]
    assert trials and all(trials), [line for line in lines if line.startswith("[")]
    assert {int(m[2]) for m in trials} == {total}
    assert sorted(int(m[1]) for m in trials) == list(range(1, total + 1))
    assert all(int(m[3]) <= 2 and int(m[4]) == 0 for m in trials)  # 2 CPUs, nothing failed
    assert {m[5] for m in trials} == {"search", "final"} and lines[-1].startswith("study done")
    assert "all done" in next(line for line in lines if line.startswith(f"[{total}/{total}"))
    per_arm = f"({q.trials_per_arm} per arm x {len(q.arms)} arms)"
    head = f"trials: {n_search} search {per_arm} and {n_final} final re-runs"
    assert any(line.startswith(head) for line in lines)


@pytest.mark.slow
def test_smoke_spaces_come_from_its_range_tests(smoke_run: Path) -> None:
    spaces = json.loads((smoke_run / "spaces.json").read_text())
    for arm, space in spaces.items():
        summary = json.loads((smoke_run / f"range_test_{arm.split('-')[1]}.json").read_text())
        seed = seed_from_summary(arm.split("-")[1], summary)
        max_lr = next(p for p in space["params"] if p["name"] == "max_lr")
        assert (max_lr["low"], max_lr["high"]) == pytest.approx((seed.max_lr / 4, max_lr_high(seed)))
        first = min(summary["min_loss_lr"], max_lr["high"])  # the smoke arms' (one-cycle, CLR) first peak
        assert max_lr["first"] == pytest.approx(first)
        wd = next(p for p in space["params"] if p["name"] == "weight_decay")
        assert (wd["low"], wd["high"]) == pytest.approx(tuple(summary["weight_decay"]["range"]))


@pytest.mark.slow
def test_smoke_equal_budgets_and_same_seeds(smoke_run: Path) -> None:
    cfg = load_study(SMOKE)
    trials = pd.read_parquet(smoke_run / "trials.parquet")
    search = trials[trials.stage == "search"]
    assert search.groupby("arm").trial_id.nunique().to_dict() == {
        a: cfg.search.trials_per_arm for a in cfg.search.arms
    }
    assert set(search.seed) == {cfg.search.search_seed}
    final = trials[trials.stage == "final"]
    for arm in cfg.search.arms:
        rows = final[final.arm == arm]
        assert sorted(set(rows.seed)) == sorted(cfg.search.seeds)
        assert sorted(set(rows.budget)) == sorted(cfg.search.budgets)
    baseline = final[final.arm == "constant-adam"]
    assert sorted(baseline.seed) == sorted(cfg.search.seeds) and set(baseline.budget) == {1.0}
    assert not trials.duplicated(["stage", "trial_id", "budget"]).any()


@pytest.mark.slow
def test_smoke_finals_rerun_each_arms_best_search_trial(smoke_run: Path) -> None:
    trials = pd.read_parquet(smoke_run / "trials.parquet")
    search = trials[(trials.stage == "search") & trials.status.isin(["ok", "stopped"])]
    for arm, rows in search.groupby("arm"):
        best = rows.sort_values(["final_val_metric", "final_val_loss"], ascending=[False, True]).iloc[0]
        finals = trials[(trials.stage == "final") & (trials.arm == arm)]
        assert set(finals.source_trial) == {best.trial_id}
        assert np.allclose(finals.max_lr, best.max_lr) and np.allclose(finals.weight_decay, best.weight_decay)


@pytest.mark.slow
def test_smoke_trials_use_both_worker_slots(smoke_run: Path) -> None:
    """Tune keeps a single trial pending for a custom searcher unless capped: the study then ran one trial at
    a time, all on one reused actor. (Which stage runs on which slot is up to timing: the search may run on
    one while the baseline's runs hold the other.)"""
    progress = (smoke_run / "ray" / "study").glob("*/progress.csv")
    pids = {pid for path in progress for pid in pd.read_csv(path).pid}
    assert len(pids) == 2, pids


@pytest.mark.slow
def test_smoke_first_trial_is_the_range_test_suggestion(smoke_run: Path) -> None:
    """ray #35319: OptunaSearch ignores points_to_evaluate with define-by-run; our enqueued point must run."""
    import optuna

    spaces = json.loads((smoke_run / "spaces.json").read_text())
    storage = f"sqlite:///{smoke_run / 'optuna.db'}"
    trials = pd.read_parquet(smoke_run / "trials.parquet")
    for arm, space in spaces.items():
        first = {p["name"]: p["first"] for p in space["params"]}
        study = optuna.load_study(study_name=arm, storage=storage)
        asked_first = study.trials[0].params
        assert asked_first.keys() == first.keys()
        for name, value in first.items():
            assert asked_first[name] == (pytest.approx(value) if isinstance(value, float) else value)
        ran = trials[(trials.stage == "search") & (trials.arm == arm)]
        assert np.isclose(ran.max_lr, first["max_lr"]).any()


@pytest.mark.slow
def test_smoke_epochs_table_is_tidy(smoke_run: Path) -> None:
    epochs = pd.read_parquet(smoke_run / "epochs.parquet")
    for col in (
        "arm",
        "schedule",
        "optimizer",
        "seed",
        "max_lr",
        "weight_decay",
        "epoch",
        "val_metric",
        "lr",
    ):
        assert col in epochs.columns
    assert not epochs.duplicated(["stage", "trial_id", "budget", "epoch"]).any()
    full = epochs[(epochs.stage == "final") & (epochs.budget == 1.0)]
    assert full.groupby("trial_id").epoch.max().eq(load_study(SMOKE).train.epochs).all()


# ----------------------------------------------------------------------------------- NaN trials and ASHA


def _smoke_text() -> str:
    """The smoke study with 2 seeds, for tests of the machinery rather than of the verdict: a third seed
    costs each study 3 more final re-runs."""
    text = SMOKE.read_text()
    assert "seeds = [0, 1, 2]" in text
    return text.replace("seeds = [0, 1, 2]", "seeds = [0, 1]")


def _tiny_cfg(tmp_path: Path, **search):
    cfg = load_study(SMOKE)
    search = {"seeds": (0, 1), **search}  # the machinery, not the verdict: 2 seeds are enough
    return replace(cfg, runs_dir=str(tmp_path), search=replace(cfg.search, **search))


@pytest.mark.slow
def test_nan_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, ray_local) -> None:
    from sched_search.results.tables import tables_from_rows
    from sched_search.study.search import run_trials
    from sched_search.training.data import load_data

    cfg = _tiny_cfg(tmp_path, trials_per_arm=3)
    # LRs of 1e4..1e5 make SGDW's loss overflow at once.
    seed = replace(SEED, max_lr=3e4, min_lr=1e3, min_loss_lr=9e4, divergence_lr=None)
    space = build_space("clr-sgdw", seed, cfg.train.epochs, 19)
    lines: list[str] = []
    records = run_trials(
        cfg, tmp_path, {"clr-sgdw": space}, [ray_local.put(load_data("digits"))], lines.append
    )
    trials, _ = tables_from_rows(records)
    search = trials[trials.stage == "search"]
    assert len(search) == 3
    assert (search.status == "nan").all()
    assert search.reason.str.contains("training loss is").all()
    search_lines = [line for line in lines if "[search clr-sgdw]" in line]
    assert len(search_lines) == 3 and all("nan" in line for line in search_lines)
    # no config of the arm is usable, so it gets no final re-run; the baseline's still run
    assert set(trials[trials.stage == "final"].arm) == {BASELINE_ARM}


@pytest.mark.slow
def test_asha_never_stops_clr_at_a_cycle_peak(tmp_path: Path, ray_local) -> None:
    from sched_search.results.tables import tables_from_rows
    from sched_search.study.search import run_trials
    from sched_search.training.data import load_data

    cfg = _tiny_cfg(tmp_path, trials_per_arm=8, max_concurrent_per_arm=2)
    cfg = replace(
        cfg,
        train=replace(cfg.train, epochs=8),
        early_stopping=replace(cfg.early_stopping, grace_period=2, reduction_factor=2),
    )
    space = build_space("clr-sgdw", SEED, 8, 19)
    records = run_trials(
        cfg, tmp_path, {"clr-sgdw": space}, [ray_local.put(load_data("digits"))], lambda _: None
    )
    trials, epochs = tables_from_rows(records)
    stopped = trials[(trials.stage == "search") & (trials.status == "stopped")]
    assert len(stopped) >= 1, "ASHA stopped nothing: the test would prove nothing"
    for trial_id in stopped.trial_id:
        rows = epochs[epochs.trial_id == trial_id].sort_values("epoch")
        last = rows.iloc[-1]
        assert last.cycle_epoch == last.epoch, f"stopped mid-cycle at epoch {last.epoch}"
        base_lr = last.max_lr / last.base_div
        assert last.lr == pytest.approx(base_lr, rel=1e-6), (
            "the last LR of a stopped CLR trial is the cycle minimum"
        )


@pytest.mark.slow
def test_raising_trial_is_recorded_as_error_and_the_study_goes_on(tmp_path: Path, ray_local) -> None:
    from sched_search.results.tables import tables_from_rows
    from sched_search.study.search import run_trials
    from sched_search.training.data import load_data

    cfg = _tiny_cfg(tmp_path, trials_per_arm=2)
    # A negative layer width makes the model factory raise inside every trial (after Ray's one retry).
    cfg = replace(cfg, model=replace(cfg.model, options={"hidden": -5}))
    space = build_space("clr-sgdw", SEED, cfg.train.epochs, 19)
    lines: list[str] = []
    records = run_trials(
        cfg, tmp_path, {"clr-sgdw": space}, [ray_local.put(load_data("digits"))], lines.append
    )
    trials, _ = tables_from_rows(records)
    assert len(trials) == 2 + len(cfg.search.seeds)  # and the baseline's re-runs, which raise too
    assert (trials.status == "error").all()
    assert trials.reason.str.len().gt(0).all()
    recorded = [line for line in lines if line.startswith("[") and "] [" in line]  # one per finished trial
    assert len(recorded) == len(trials) and all(" error (" in line for line in recorded), lines


def test_range_tests_run_on_the_study_data_and_record_its_options(tmp_path: Path, ray_local) -> None:
    from sched_search.rangetest.sweep import sweep_steps
    from sched_search.study.driver import range_tests
    from sched_search.training.data import load_data

    # Synthetic data with a non-default n (600 examples, 420 to train: 6 batches of 64) and noise (overlapping
    # clusters, else the MLP fits them perfectly: "no LR limit"). The stage used to load the data again by
    # name, dropping both (it would have trained on 1,400 examples).
    cfg = load_study(SMOKE)
    cfg = replace(
        cfg,
        data=replace(cfg.data, name="synthetic", options={"n": 600, "noise": 2.0}),
        search=replace(cfg.search, arms=("one_cycle-sgdw",)),
        range_test=replace(cfg.range_test, num_steps=0, weight_decays=(0.0,)),
    )
    data = load_data("synthetic", n=600, noise=2.0)
    lines: list[str] = []
    timing: dict[str, float] = {}
    seeds = range_tests(cfg, tmp_path, lines.append, data, timing=timing)
    record = json.loads((tmp_path / "range_test_sgdw.json").read_text())
    options = {"n": 600, "noise": 2.0}
    assert record["data"] == {
        "name": "synthetic",
        "options": options,
        "n_train": 420,
        "steps_per_epoch": 6,
        "batch_size": 64,
        "device": "cpu",
    }
    # num_steps = 0: the sweep's length comes from the data, 15 epochs of 6 steps, raised to the 300 floor.
    assert sweep_steps(6) == 300 and record["sweep"]["num_steps"] == 300
    assert record["sweep"]["steps_per_epoch"] == 6
    assert record["sweep"]["epochs"] == pytest.approx(record["sweep"]["steps"] / 6)
    assert record["verdict"] == "ok", record["reasons"]
    assert seeds["sgdw"].max_lr == record["suggested_max_lr"]
    assert lines[0] == "range tests as Ray tasks (1 CPU, 0 GPU each): sgdw x weight decay 0"
    steps = record["sweep"]["steps"]  # up to 300: the sweep stops where the loss diverges
    assert lines[1].startswith(f"range test sgdw: sweep 1 of 1 done (weight decay 0, {steps} of 300 steps, ")
    assert lines[2].startswith("range test sgdw: ok") and "(300 steps, 50 epochs;" in lines[2]
    # The sweep ran in a Ray task on this Ray's node, not in this process; its time is the stage's task time.
    (ran,) = record["ran_on"]
    assert ran["node_id"] == ray_local.get_runtime_context().get_node_id() and ran["pid"] != os.getpid()
    assert ran["weight_decay"] == 0 and ran["device"] == "cpu"
    assert timing["range_tests_task_s"] == pytest.approx(ran["seconds"], abs=1e-3)
    assert not (tmp_path / "range_test_parts").exists()  # the family's files are written: parts dropped
    # Without the loaded data each task loads it itself, options included.
    other = tmp_path / "again"
    other.mkdir()
    range_tests(cfg, other, lines.append)
    assert json.loads((other / "range_test_sgdw.json").read_text())["data"]["n_train"] == 420


def test_failed_range_test_stops_the_study_before_any_trial(tmp_path: Path, monkeypatch) -> None:
    import ray

    from sched_search.study.driver import StudyAborted, run_study

    (tmp_path / "shuffled_digits.py").write_text(
        "import torch\n"
        "from sched_search.training.data import TensorData, load_digits\n"
        "def make():\n"
        "    d = load_digits()\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    y = d.y_train[torch.randperm(len(d.y_train), generator=g)]\n"
        "    return TensorData(d.x_train, y, d.x_val, d.y_val, d.x_test, d.y_test, 10, 'shuffled')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_study(SMOKE)
    cfg = replace(cfg, runs_dir=str(tmp_path / "runs"), data=replace(cfg.data, name="shuffled_digits:make"))
    was_running = ray.is_initialized()
    with pytest.raises(StudyAborted, match="nothing learned from the inputs") as err:
        run_study(cfg)
    assert "No trial was run" in str(err.value)
    run_dir = next((tmp_path / "runs").glob("smoke-*"))
    assert not (run_dir / "trials.parquet").exists() and not (run_dir / "ray").exists()
    assert ray.is_initialized() == was_running


# ----------------------------------------------------------------------------------- resume after kill -9


def _study_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sched_search", "study", *args]


def _terminated_in_saved_state(run_dir: Path) -> dict[str, Path]:
    """Trials that Tune's last saved experiment state lists as TERMINATED: trial_id -> its progress.csv."""
    done = {}
    for state in (run_dir / "ray" / "study").glob("experiment_state-*.json"):
        try:
            trials = json.loads(state.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):
            return {}  # being written: ask again
        for trial_json, _ in trials:
            trial = json.loads(trial_json)
            if trial["status"] == "TERMINATED":
                done[trial["trial_id"]] = (
                    run_dir / "ray" / "study" / trial["relative_logdir"] / "progress.csv"
                )
    return done


@pytest.mark.slow
def test_resume_after_kill_9_keeps_what_finished_and_a_second_resume_is_refused(tmp_path: Path) -> None:
    """kill -9 of a study once Tune's saved state lists a finished trial: the first --resume takes over the
    stale lock and keeps that trial (not run again); a second --resume meanwhile is refused naming the
    first."""
    import optuna

    study = tmp_path / "smoke.toml"
    study.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + _smoke_text())  # top-level keys go first
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _study_cmd(str(study)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    # The signal: Tune's saved state lists a finished trial. Kill -9 at once; what that state holds must be
    # kept.
    deadline, saved = time.time() + 600, {}  # a bound for a hang; the event ends the wait
    while time.time() < deadline and proc.poll() is None and not saved:
        runs = list((tmp_path / "runs").glob("smoke-*"))
        saved = _terminated_in_saved_state(runs[0]) if runs else {}
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and the local Ray it started
    proc.wait()
    assert saved, f"no finished trial in Tune's saved state before the deadline: {proc.stdout.read()[-2000:]}"
    run_dir = runs[0]
    assert (run_dir / "study.lock").exists(), "the killed study left no lock: the test would prove nothing"
    rows_at_kill = {tid: len(pd.read_csv(path)) for tid, path in saved.items()}
    a = subprocess.Popen(
        _study_cmd("--resume", str(run_dir)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 600  # its own bound: the first wait may have used most of the other
        while time.time() < deadline and f'"pid": {a.pid},' not in _read(run_dir / "study.lock"):
            time.sleep(0.1)
        b = subprocess.run(
            _study_cmd("--resume", str(run_dir)),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,  # a bound for a hang: it is refused in seconds
            check=False,
        )
        assert a.poll() is None, "the first resume ended before the second started: nothing was concurrent"
        assert b.returncode == 2 and f"in use by a study (pid {a.pid}" in b.stderr, b.stdout + b.stderr
        assert "Traceback" not in b.stderr
        out, _ = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
    assert a.returncode == 0 and "resuming" in out, out
    assert not (run_dir / "study.lock").exists()
    after = pd.read_parquet(run_dir / "trials.parquet")
    cfg = load_study(study)
    assert not after.duplicated(["stage", "trial_id", "budget"]).any()
    search = after[after.stage == "search"]
    assert search.groupby("arm").trial_id.nunique().to_dict() == {
        a: cfg.search.trials_per_arm for a in cfg.search.arms
    }
    final = after[after.stage == "final"]
    assert len(final) == len(cfg.search.arms) * len(cfg.search.seeds) * len(cfg.search.budgets) + len(
        cfg.search.seeds
    )
    for trial_id, path in saved.items():
        assert trial_id in set(after.trial_id), f"{trial_id} finished before the kill and is missing"
        assert len(pd.read_csv(path)) == rows_at_kill[trial_id], (
            f"{trial_id} finished before the kill and ran again"
        )
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    # A trial asked after Tune's last save is handed to the trial Tune asks in its place, and keeps its result
    # if it had finished (test_routing builds both cases): one Optuna trial per search trial, each finished.
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    for arm in cfg.search.arms:
        states = [t.state for t in optuna.load_study(study_name=arm, storage=storage).trials]
        assert len(states) == cfg.search.trials_per_arm and set(states) <= finished, states


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


FLAKY_WORKER = """
import os, signal, torch
import ray
from sched_search.training.models import mlp

MARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "killed")
BUILT = {}  # trial id -> models built in this worker: a final re-run builds one per budget


class Net(torch.nn.Module):
    \"\"\"The smoke study's MLP (same weights from the same seed). With MODE 'kill', the first final re-run to
    reach the 20th step of its second budget kills its Ray worker with SIGKILL, as an OOM killer or an
    operator would, after it reported its first budget. With MODE 'raise' every trial in a worker
    raises.\"\"\"

    def __init__(self, input_shape, num_classes, hidden=64):
        super().__init__()
        self.body = mlp(input_shape, num_classes, hidden)
        self.steps = 0
        self.nth = 0
        # a Tune trial runs in an actor; the range test's sweeps are plain Ray tasks, left alone
        if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
            if os.environ.get("MODE") == "raise":
                raise ValueError("this layer has no kernel on this worker")
            trial = ray.tune.get_context().get_trial_id()
            self.nth = BUILT[trial] = BUILT.get(trial, 0) + 1

    def forward(self, x):
        if self.training and self.nth == 2:
            self.steps += 1
            if self.steps == 20 and os.environ.get("MODE") == "kill":
                try:
                    os.close(os.open(MARK, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    return self.body(x)
                os.kill(os.getpid(), signal.SIGKILL)
        return self.body(x)
"""


def _flaky_study(tmp_path: Path, name: str, mode: str, **changes: str) -> subprocess.CompletedProcess:
    """The smoke study (2 seeds) on `flaky:Net`, with `changes` (old=new lines) made to its text."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "flaky.py").write_text(FLAKY_WORKER)
    text = (
        _smoke_text()
        .replace('name = "mlp"', 'name = "flaky:Net"')
        .replace("[early_stopping]", "[early_stopping]\nenabled = false")
    )  # no ASHA: results independent of timing
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / "smoke.toml").write_text(f'runs_dir = "{folder / "runs"}"\n' + text)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{folder}", "MODE": mode}
    return subprocess.run(
        _study_cmd(str(folder / "smoke.toml")),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_killed_trial_worker_leaves_no_duplicate_rows_and_the_runs_a_plain_loop_gives(
    tmp_path: Path, monkeypatch
) -> None:
    """A final re-run whose worker is killed mid-run is retried: no duplicate rows, and every final run's
    metrics are those of the same config trained again here in a plain loop (what an unkilled study gives)."""
    from sched_search.study.search import trial_settings
    from sched_search.study.trial import train_trial
    from sched_search.training.data import load_data

    killed = _flaky_study(tmp_path, "killed", "kill")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert (tmp_path / "killed" / "killed").exists(), "no worker was killed: the test would prove nothing"
    run_dir = next((tmp_path / "killed" / "runs").glob("smoke-*"))
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "budget", "epoch"]).any()
    progress = [pd.read_csv(p) for p in (run_dir / "ray" / "study").glob("*/progress.csv")]
    assert max(p.pid.nunique() for p in progress) == 2, "Tune did not retry the killed trial in a new worker"
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert (trials.status.isin(["ok"])).all(), trials[["trial_id", "status", "reason"]]
    monkeypatch.syspath_prepend(str(tmp_path / "killed"))  # flaky:Net, a plain MLP outside a Tune trial
    cfg = load_study(run_dir / "study.toml")
    data = load_data("digits")
    finals = trials[trials.stage == "final"].set_index(["arm", "seed", "budget"])
    configs = json.loads((run_dir / "final_configs.json").read_text())
    assert len(configs) == len(finals.index.droplevel("budget").unique())
    for config in configs:
        config = {**trial_settings(cfg), **config}
        for budget in config["budgets"]:
            rows = list(train_trial(config, data, budget * cfg.train.epochs, test=True))
            got = finals.loc[(config["arm"], config["seed"], budget)]
            assert got.final_val_metric == pytest.approx(rows[-1]["val_metric"], abs=1e-9), (config, budget)
            assert got.final_val_loss == pytest.approx(rows[-1]["val_loss"], rel=1e-5), (config, budget)


@pytest.mark.slow
def test_every_run_failing_exits_4_with_short_reasons_and_tracebacks_in_errors(tmp_path: Path) -> None:
    # one search trial per arm, one seed and no range test: every run fails either way, each in two attempts
    one_each = {"trials_per_arm = 2": 'trials_per_arm = 1\nspace = "broad"', "seeds = [0, 1]": "seeds = [0]"}
    done = _flaky_study(tmp_path, "raise", "raise", **one_each)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "error: every run of clr-sgdw, constant-adam, one_cycle-adamw failed" in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1].startswith("error: every run of") and "study done" in done.stdout
    )
    # "[done/total | ...] [stage arm] id val accuracy x error (reason) (config)"
    recorded = [line for line in done.stdout.splitlines() if "] [search " in line or "] [final " in line]
    assert recorded and all(
        " error (ValueError: this layer has no kernel on this worker) (" in line for line in recorded
    ), recorded
    # the first failure's traceback once (Tune's own, one per failed attempt, are off); all are in errors/
    assert done.stdout.count("traceback of ") == 1 and "Trial task failed" not in done.stderr
    run_dir = next((tmp_path / "raise" / "runs").glob("smoke-*"))
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert (trials.status == "error").all()
    assert (trials.reason == "ValueError: this layer has no kernel on this worker").all(), (
        trials.reason.tolist()
    )
    logs = list((run_dir / "errors").glob("*.log"))
    text = logs[0].read_text()
    assert len(logs) == trials.trial_id.nunique() and 'raise ValueError("this layer has no kernel' in text
    assert "\x1b" not in text
    assert "Failed runs: clr-sgdw: " in (run_dir / "report.md").read_text()


def test_augmenting_flat_inputs_is_refused_before_any_work(tmp_path: Path) -> None:
    import ray

    from sched_search.study.driver import run_study

    cfg = load_study(SMOKE)
    cfg = replace(cfg, runs_dir=str(tmp_path), train=replace(cfg.train, augment="crop_flip"))
    was_running = ray.is_initialized()
    with pytest.raises(ValueError, match=r"augment = 'crop_flip' needs image data .* shape \(64,\)"):
        run_study(cfg)
    assert not list(tmp_path.glob("*/range_test_*")) and ray.is_initialized() == was_running


def test_resume_refuses_a_run_folder_of_the_two_experiment_layout(tmp_path: Path) -> None:
    from sched_search.study.driver import run_study

    (tmp_path / "study.toml").write_text(SMOKE.read_text())
    (tmp_path / "ray" / "search").mkdir(parents=True)
    with pytest.raises(ValueError, match="older sched_search"):
        run_study(resume=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ray",
        "study.toml",
    ]  # nothing written, nothing lost


def test_resume_refuses_a_run_folder_of_the_flat_layout(tmp_path: Path) -> None:
    from sched_search.study.driver import run_study

    (tmp_path / "study.toml").write_text(SMOKE.read_text())
    (tmp_path / "ray" / "study").mkdir(parents=True)
    (tmp_path / "resolved_config.json").write_text(json.dumps({"version": "0.4.0"}))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=r"written by sched_search 0\.4\.0, whose modules have since moved"):
        run_study(resume=tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, nothing lost


def _started_folder(root: Path, text: str) -> Path:
    """A run folder as a study leaves it once it started: its study.toml and the resolved_config.json that
    `driver._run_stages` writes before the range tests."""
    from sched_search.results.tables import write_json
    from sched_search.study.driver import resolved_config

    root.mkdir()
    (root / "study.toml").write_text(text)
    cfg = load_study(root / "study.toml")
    write_json(root / "resolved_config.json", resolved_config(cfg, 20, (64,), 10, 1259, 270, 0.1))
    return root


def test_resume_refuses_a_study_toml_edited_after_the_start_naming_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Epochs 4 -> 6 and one more seed in the run folder's study.toml: `--resume` would run Tune's restored
    trials on the old settings and end "unfinished" for ever; it is refused with what changed and how to run
    the edited study, and nothing in the folder is rewritten."""
    from sched_search.cli import main

    run_dir = _started_folder(tmp_path / "run", SMOKE.read_text())
    recorded = (run_dir / "resolved_config.json").read_bytes()
    edited = SMOKE.read_text().replace("epochs = 4", "epochs = 6").replace("[0, 1, 2]", "[0, 1, 2, 3]")
    (run_dir / "study.toml").write_text(edited)
    assert main(["study", "--resume", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert err == (
        f"error: {run_dir}/study.toml changed after the study started ([train] epochs 4 -> 6; [search] seeds "
        "[0, 1, 2] -> [0, 1, 2, 3]): --resume finishes the study as it started. Undo the edit to resume it, "
        f"or start a new study with it: python -m sched_search study {run_dir}/study.toml\n"
    ), err
    assert out == ""  # refused before "resuming ..."
    assert (run_dir / "resolved_config.json").read_bytes() == recorded
    assert sorted(p.name for p in run_dir.iterdir()) == ["resolved_config.json", "study.toml"]


def test_resume_accepts_a_study_toml_whose_edit_changes_no_setting(tmp_path: Path) -> None:
    """A comment, or `runs_dir` (a resume has its folder), changes nothing that runs."""
    from sched_search.study.driver import _prepare

    run_dir = _started_folder(tmp_path / "run", SMOKE.read_text())
    (run_dir / "study.toml").write_text('runs_dir = "elsewhere"  # moved\n' + SMOKE.read_text())
    cfg, _ = _prepare(run_dir, None, False, None, lambda line: None)
    assert cfg.train.epochs == 4 and cfg.runs_dir == "elsewhere"


# ----------------------------------------------------------------------------------- a real Ray head


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_outside_ray_range() -> int:
    port = _free_port()
    while 10002 <= port <= 19999:  # Ray's default worker-port range
        port = _free_port()
    return port


@pytest.mark.slow  # a study process of its own
def test_dead_address_fails_in_seconds_naming_it(tmp_path: Path) -> None:
    """Ray itself retries "Failed to connect to GCS" for minutes, ignoring SIGTERM; the study must not."""
    port = _port_outside_ray_range()
    study = tmp_path / "smoke.toml"
    study.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + SMOKE.read_text())
    done = subprocess.run(
        _study_cmd(str(study), "--address", f"127.0.0.1:{port}"),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,  # a bound for a hang, not a speed claim: it ends in seconds
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot reach a Ray cluster at 127.0.0.1:{port}: nothing listens there" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() and "range test" not in done.stdout


@pytest.mark.slow
def test_ray_job_submit_as_documented_lands_a_resumable_run_folder(tmp_path: Path) -> None:
    """A head as Ray 2.60 starts it (token authentication on) refuses a study without RAY_AUTH_MODE=token
    (with the fix) and one whose trial no node can hold; then docs/gpu_and_cluster.md's `ray job submit`: the
    entrypoint names the interpreter that has sched_search, `runs_dir` is an absolute path, and `--resume` of
    the run folder it wrote works from the submitting machine."""
    ray_bin = Path(sys.executable).with_name("ray")
    port, dashboard = _port_outside_ray_range(), _port_outside_ray_range()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(ROOT)}
    head = [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    head += ["--num-cpus", "2", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1"]
    head += ["--dashboard-port", str(dashboard), "--disable-usage-stats"]
    # The session's own Ray holds the agents' default ports: this head's agents get free ones of their own.
    for flag in (
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
        "--ray-client-server-port",
    ):
        head += [flag, str(_port_outside_ray_range())]
    subprocess.run(head, check=True, env=env, capture_output=True, timeout=180)
    try:
        runs = tmp_path / "shared" / "runs"
        study = tmp_path / "smoke.toml"
        study.write_text(f'runs_dir = "{runs}"\n' + _smoke_text())
        address = f"127.0.0.1:{port}"
        no_token = subprocess.run(
            _study_cmd(str(study), "--address", address),
            cwd=tmp_path,
            env={k: v for k, v in env.items() if k != "RAY_AUTH_MODE"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert no_token.returncode == 2, no_token.stdout + no_token.stderr
        last = no_token.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: cannot join the Ray cluster at {address}") and (
            "requires token authentication (Ray 2.60's default): set RAY_AUTH_MODE=token" in last
        ), last
        big = tmp_path / "big.toml"
        big.write_text(
            f'runs_dir = "{runs}"\nray_address = "{address}"\n'
            + _smoke_text().replace("cpus_per_trial = 1", "cpus_per_trial = 3")
        )
        too_big = subprocess.run(
            _study_cmd(str(big)),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert too_big.returncode == 2, too_big.stdout + too_big.stderr
        assert "[resources] cpus_per_trial = 3, but the largest node of the cluster" in too_big.stderr
        assert "Traceback" not in no_token.stderr + too_big.stderr and not runs.exists()
        submit = [str(ray_bin), "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--"]
        submit += [sys.executable, "-m", "sched_search", "study", str(study), "--address", "auto"]
        for _ in range(10):  # the head's job agent comes up some seconds after `ray start` returns
            job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600, check=False)
            if "No available agent to submit job" not in job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout
        (run_dir,) = runs.glob("smoke-*")
        assert (run_dir / "verdict.json").exists() and (run_dir / "trials.parquet").exists()
        before = pd.read_parquet(run_dir / "trials.parquet")
        again = subprocess.run(
            _study_cmd("--resume", str(run_dir), "--address", f"127.0.0.1:{port}"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        after = pd.read_parquet(run_dir / "trials.parquet")
        assert sorted(after.trial_id) == sorted(before.trial_id)  # finished: nothing ran again
        assert _head_processes(port), "the head's processes were not found: _stop_head would leave them"
    finally:
        _stop_head(port)


PROBE_DIGITS = """
import os
from pathlib import Path

from torch.utils.data import DataLoader, TensorDataset

from sched_search.training.data import LoaderData, load_digits


def loaders(probe: str, mode: str) -> LoaderData:
    # the first caller is the driver's preflight; every later one a Ray worker: it raises (mode "raise"), or
    # the first of them dies as a killed worker would (mode "kill_once")
    calls = Path(probe)
    calls.mkdir(exist_ok=True)
    worker = any(calls.iterdir())
    (calls / str(os.getpid())).touch()
    if worker and mode == "raise":
        raise RuntimeError("the data is not on this node")
    if worker and mode == "kill_once" and not (calls.parent / "killed").exists():
        (calls.parent / "killed").touch()
        os._exit(1)
    d = load_digits()
    sets = {s: TensorDataset(getattr(d, "x_" + s), getattr(d, "y_" + s)) for s in ("train", "val", "test")}
    return LoaderData(
        train=lambda: DataLoader(sets["train"], 64, shuffle=True, drop_last=True),
        val=lambda: DataLoader(sets["val"], 256),
        test=lambda: DataLoader(sets["test"], 256),
        num_outputs=10,
    )
"""


CLUSTER = """
import json, sys
from ray.cluster_utils import Cluster

port, agents = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
KEYS = ("dashboard_agent_listen_port", "metrics_agent_port", "runtime_env_agent_port", "metrics_export_port")
def node(i, **args):
    ports = dict(zip(KEYS, agents[4 * i :]))
    return {"node_ip_address": "127.0.0.1", "include_dashboard": False, **ports, **args}
cluster = Cluster(True, head_node_args=node(0, gcs_server_port=port, num_cpus=0), shutdown_at_exit=True)
worker = cluster.add_node(**node(1, num_cpus=2))
cluster.wait_for_nodes()
ids = {"head": cluster.head_node.node_id, "worker": worker.node_id}
print(json.dumps({"address": cluster.address, **ids}), flush=True)
sys.stdin.read()  # until the test closes it
cluster.shutdown()
"""


@pytest.mark.slow
def test_range_tests_and_trials_run_on_the_workers_of_a_cluster(tmp_path: Path) -> None:
    """A head that offers no CPU (as a cluster's head often has no GPU) and a worker node: every sweep and
    every trial runs on the worker, which calls the loader factory itself. A factory that raises there stops
    the study before any trial with the sweep's error; a worker killed in a sweep is retried.

    The two nodes come from Ray's `cluster_utils.Cluster`, not `ray start`: with Ray's single-machine switch
    (loopback only, conftest) `ray start --address` refuses to add a node, and without it Ray replaces
    127.0.0.1 by the machine's address."""
    port = _port_outside_ray_range()
    agents = [str(_port_outside_ray_range()) for _ in range(8)]
    (tmp_path / "probe_digits.py").write_text(PROBE_DIGITS)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    with (tmp_path / "cluster.log").open("w") as log:
        cluster = subprocess.Popen(
            [sys.executable, "-c", CLUSTER, str(port), *agents],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
        )
    try:
        line = cluster.stdout.readline()
        assert line, (tmp_path / "cluster.log").read_text()[-3000:]
        nodes = json.loads(line)
        address, worker = nodes["address"], nodes["worker"]
        assert address == f"127.0.0.1:{port}" and worker != nodes["head"]

        def study(mode: str) -> subprocess.CompletedProcess:
            toml = SMOKE.read_text().replace(
                'name = "digits"',
                f'name = "probe_digits:loaders"\nprobe = "{tmp_path / mode}"\nmode = "{mode}"',
            )
            (tmp_path / f"{mode}.toml").write_text(f'runs_dir = "{tmp_path / mode}-runs"\n' + toml)
            return subprocess.run(
                _study_cmd(str(tmp_path / f"{mode}.toml"), "--address", address),
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )

        failed = study("raise")
        assert failed.returncode == 3, failed.stdout + failed.stderr
        pattern = (
            r"range test (adamw|sgdw) \(weight decay [\d.]+\) raised in its Ray task: RuntimeError: the data"
        )
        assert re.search(pattern, failed.stderr) and "No trial was run" in failed.stderr, failed.stderr
        (run_dir,) = (tmp_path / "raise-runs").glob("smoke-*")
        assert not (run_dir / "ray").exists() and "Traceback" not in failed.stderr

        done = study("kill_once")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert (tmp_path / "killed").exists()  # a sweep's worker died, and its retry finished the sweep
        (run_dir,) = (tmp_path / "kill_once-runs").glob("smoke-*")
        cfg = load_study(SMOKE)
        ran_on = {
            o: json.loads((run_dir / f"range_test_{o}.json").read_text())["ran_on"] for o in ("adamw", "sgdw")
        }
        for ran in ran_on.values():
            assert sorted(r["weight_decay"] for r in ran) == sorted(cfg.range_test.weight_decays)
            assert {r["node_id"] for r in ran} == {worker}, ran
        progress = list((run_dir / "ray" / "study").glob("*/progress.csv"))
        trials = pd.read_parquet(run_dir / "trials.parquet")
        assert len(progress) == trials.trial_id.nunique() and (trials.status != "error").all()
        assert {n for f in progress for n in pd.read_csv(f).node_id} == {worker}
        # the sweeps' and the trials' processes called the factory themselves
        calls = {int(p.name) for p in (tmp_path / "kill_once").iterdir()}
        sweeps = {r["pid"] for opt in ("adamw", "sgdw") for r in ran_on[opt]}
        assert sweeps | {pid for f in progress for pid in pd.read_csv(f).pid} <= calls
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=120)
        _stop_head(port)


def _head_processes(port: int) -> list[int]:
    """The head's processes: by their GCS port on the command line, and every process with a file open in
    that head's session folder (the dashboard and runtime-env agents rename themselves and daemonise)."""
    mark = re.compile(rb"(--gcs[-_]address=[^\x00 ]*:%d|--gcs_server_port=%d)(\x00| |$)" % (port, port))
    procs = [p for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
    pids, sessions = set(), set()
    for proc in procs:
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if mark.search(cmdline):
            pids.add(int(proc.name))
            sessions |= set(re.findall(rb"/tmp/ray/session_[0-9_-]+", cmdline))
    for proc in procs if sessions else []:
        try:
            opened = [os.readlink(fd).encode() for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(f.startswith(s) for f in opened for s in sessions):
            pids.add(int(proc.name))
    return sorted(pids)


def _stop_head(port: int) -> None:
    """Stop only this head's processes: `ray stop` would also kill the session's own Ray (and pytest with
    it)."""
    pids = _head_processes(port)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)


# ----------------------------------------------------------------------------------- the default study


@pytest.mark.slow
@pytest.mark.default_study
def test_default_study_end_to_end_gives_a_verdict_that_holds(tmp_path: Path) -> None:
    """`python -m sched_search study` with no file: MNIST-1D, every arm, 3 seeds, on real Ray (a few
    minutes)."""
    env = {**os.environ, "RAY_ADDRESS": "local"}
    done = subprocess.run(
        [sys.executable, "-m", "sched_search", "study"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("mnist1d-*")
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["eval_examples"] == 1500 and verdict["n_seeds"] == 3 and verdict["target_meaningful"]
    # the reference: the strongest recipe of one training (docs/workflow.md, "The baselines": 95.4%, 91.8%)
    assert verdict["strongest_baseline"] == verdict["baseline"]
    assert verdict["baseline"] in ("default:lr_find-one_cycle", "default:prodigy"), verdict["headline"]
    searched = [a for a in verdict["arms"] if a not in verdict["baselines"]]
    rec = verdict["arms"][verdict["recommended"]]
    assert rec["vs_baseline"]["ci_low"] <= rec["vs_baseline"]["diff"] <= rec["vs_baseline"]["ci_high"]
    # the default study races (budget 28): constant Adam 3e-4, far from converged at 20 epochs, is stopped
    # after the first seed, 40+ points below the leader; the race stays within its budget
    assert "constant-adam" in verdict["race"]["stopped"] and "constant-adam" not in verdict["arms"]
    assert verdict["race"]["spent"] <= verdict["race"]["budget"] == 28
    assert all(verdict["arms"][a]["mean"] > 0.9 for a in searched)  # every arm left is within reach
    final = [point for point in verdict["frontier"] if point["kind"] == "study"][-1]
    assert final["arm"] == verdict["recommended"] and final["trainings"] <= 28.5  # 570 epochs
    assert verdict["headline"] in done.stdout and "report.html" in done.stdout
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["study_wall_s"] > timing["trials_wall_s"] > 0


def test_search_space_from_a_range_test_for_your_own_tuner() -> None:
    from sched_search import search_space

    summary = {
        "verdict": "ok",
        "reasons": [],
        "suggested_max_lr": 0.06,
        "suggested_min_lr": 0.015,
        "min_loss_lr": 0.18,
        "regions": {"divergence": [0.3, 10.0]},
        "weight_decay": {"chosen": 1e-4, "range": [1e-5, 1e-3]},
    }
    space = search_space("one_cycle-sgdw", summary, epochs=20, steps_per_epoch=70)
    dists = space.distributions()
    assert set(dists) == {"max_lr", "weight_decay", "pct_start", "div_factor"}
    # from a quarter of the suggestion up to where the divergence region starts
    assert dists["max_lr"].log and (dists["max_lr"].low, dists["max_lr"].high) == pytest.approx((0.015, 0.3))
    assert all(dists[k]._contains(dists[k].to_internal_repr(v)) for k, v in space.first_point().items())
    assert space.constants() == {
        "arm": "one_cycle-sgdw",
        "schedule": "one_cycle",
        "optimizer": "sgdw",
        "final_div_factor": 1e4,
    }
    with pytest.raises(ValueError, match=r"sanity check failed \(no descent\).*allow_failed=True"):
        search_space("clr-sgdw", {**summary, "verdict": "failed", "reasons": ["no descent"]}, 20, 70)
    assert search_space("clr-sgdw", {**summary, "verdict": "failed"}, 20, 70, allow_failed=True).params
