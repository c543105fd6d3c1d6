"""Interrupted, never wrong: Ctrl-C and SIGTERM stop a study where `--resume` finishes it, with no verdict
from an unfinished study and nothing recorded as failed that was only interrupted."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

# One arm, two seeds, no early stopping (results independent of timing), one baseline: 2 search trials,
# 2 final re-runs of the arm and 2 of the baseline.
TINY = """
name = "tiny"

[data]
name = "digits"

[model]
name = "mlp"
hidden = 32

[train]
epochs = 4
batch_size = 64

[search]
arms = ["one_cycle-adamw"]
trials_per_arm = 2
max_concurrent_per_arm = 2
seeds = [0, 1]
budgets = [0.5, 1.0]
baselines = ["default:adam"]
attribution = false  # its run count (RUNS) has no ladder runs
budget = "full"  # every planned run: RUNS

[early_stopping]
enabled = false

[range_test]
num_steps = 100
weight_decays = [0.0]

[resources]
num_cpus = 2
cpus_per_trial = 1
"""
RUNS = 2 + 2 + 2

# TINY raced (a budget in trainings, as the default study is) with room for every round: first points and
# baselines, one search trial, the second seed, the shorter budgets, the attribution ladder: 12.3 trainings.
RACE = TINY.replace('budget = "full"  # every planned run: RUNS', "budget = 20").replace(
    "attribution = false  # its run count (RUNS) has no ladder runs", "attribution = true"
)


class _Study:
    """`python -m sched_search study ...`, its output (stdout and stderr) read line by line as it comes."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sched_search", "study", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the test's own signals never reach it by accident
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        self.kill()
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines[-40:]))

    def finish(self, timeout: float = 300) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _assert_interrupted(study: _Study, rc: int, run_dir: Path) -> None:
    assert study.finish() == rc, study.text
    assert study.lines[-1] == f"interrupted; resume with: python -m sched_search study --resume {run_dir}"
    assert "Traceback" not in study.text and "SIGABRT" not in study.text and "Aborted" not in study.text
    assert not (run_dir / "study.lock").exists(), "the lock was not released"
    for name in ("verdict.json", "report.md", "report.html", "final_configs.json", "errors"):
        assert not (run_dir / name).exists(), f"{name} written by an interrupted study"
    if (run_dir / "trials.parquet").exists():  # what finished before the signal; nothing interrupted failed
        trials = pd.read_parquet(run_dir / "trials.parquet")
        assert set(trials.status) <= {"ok"}, trials[["trial_id", "status", "reason"]]


@pytest.mark.slow
def test_sigint_and_sigterm_leave_a_folder_that_resume_finishes(tmp_path: Path, ray_local, capsys) -> None:
    """Ctrl-C twice during the search, SIGTERM once during the finals, then --resume (with trials.parquet
    cut in half): rc 130 and 143, no verdict, no failure recorded, `report` says unfinished, and the finished
    study has no duplicates and the leaderboard of an uninterrupted one."""
    from sched_search.results.run import load_run
    from sched_search.study.driver import run_study

    study_file = tmp_path / "tiny.toml"
    study_file.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + TINY)

    # Ctrl-C as the first trial ends, and again once Tune is stopping: it stops at once, still resumable.
    first = _Study(tmp_path, str(study_file))
    run_dir = Path(first.wait_for(r"^run folder ").removeprefix("run folder "))
    first.wait_for(r"^\[1/6 ")
    os.kill(first.proc.pid, signal.SIGINT)
    first.wait_for(r"^interrupting: Ray Tune saves its state")
    os.kill(first.proc.pid, signal.SIGINT)
    _assert_interrupted(first, 130, run_dir)

    # SIGTERM (a scheduler's or `timeout`'s stop) once the arm's final re-runs started: Tune stops cleanly.
    second = _Study(tmp_path, "--resume", str(run_dir))
    second.wait_for(r"\[final one_cycle-adamw\]")
    os.kill(second.proc.pid, signal.SIGTERM)
    _assert_interrupted(second, 143, run_dir)
    assert "interrupting: Ray Tune saves its state" in second.text

    # `report` on the unfinished folder says so first and writes no verdict.
    from sched_search.cli import main

    done_runs = len(set(pd.read_parquet(run_dir / "trials.parquet").trial_id))
    assert 0 < done_runs < RUNS
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"study unfinished: {done_runs} of {RUNS} runs: no verdict written"), out
    assert not (run_dir / "verdict.json").exists()
    assert (run_dir / "report.md").read_text().count(f"study unfinished: {done_runs} of {RUNS} runs") == 1

    # A table file cut in half: `report` names the fix; --resume rebuilds it from Tune's record.
    table = run_dir / "trials.parquet"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{table} is unreadable" in err and f"study --resume {run_dir} rebuilds it" in err, err

    # The rest in this process, on the session's Ray (a third process would start Ray again).
    lines: list[str] = []
    assert run_study(resume=run_dir, echo=lines.append) == run_dir
    warning = f"warning: {table} is unreadable (ArrowInvalid); rebuilding it from Ray Tune's record"
    assert warning in lines, lines
    assert (run_dir / "verdict.json").exists() and not (run_dir / "study.lock").exists()
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert not trials.duplicated(["stage", "trial_id", "budget"]).any()
    assert trials.trial_id.nunique() == RUNS and (trials.status == "ok").all()

    # The same study uninterrupted (its range test copied: the same seeded sweep), on this session's Ray.
    clean = tmp_path / "clean"
    clean.mkdir()
    for name in ("study.toml", "range_test_adamw.json", "range_test_adamw.csv"):
        shutil.copy(run_dir / name, clean / name)
    run_study(resume=clean, echo=lambda _: None)
    columns = ["n_seeds", "n_failed", "mean_val_metric", "mean_val_loss", "mean_test_metric"]
    boards = [load_run(d).leaderboard.set_index("arm")[columns].sort_index() for d in (run_dir, clean)]
    pd.testing.assert_frame_equal(boards[0], boards[1])


@pytest.mark.slow
def test_a_study_stopped_in_its_ladder_resumes_to_the_recommended_arms_rungs(
    tmp_path: Path, ray_local
) -> None:
    """SIGTERM once the first attribution-ladder run has ended (the searcher has queued the rest, and Tune
    saves it with them): --resume runs the rest of that arm's rungs, each seed once, and no other arm's."""
    from sched_search.results.attribution import ladder_rungs
    from sched_search.results.run import load_run
    from sched_search.study.driver import run_study

    study_file = tmp_path / "tiny.toml"
    ladder_on = TINY.replace(
        "attribution = false  # its run count (RUNS) has no ladder runs", "attribution = true"
    )
    study_file.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + ladder_on)
    first = _Study(tmp_path, str(study_file))
    run_dir = Path(first.wait_for(r"^run folder ").removeprefix("run folder "))
    first.wait_for(r"\[final ladder:")
    os.kill(first.proc.pid, signal.SIGTERM)
    _assert_interrupted(first, 143, run_dir)
    rungs = {name for name, _ in ladder_rungs("one_cycle-adamw") if name.startswith("ladder:")}
    ran = pd.read_parquet(run_dir / "trials.parquet")
    assert 0 < ran.arm.isin(rungs).sum() < 2 * len(rungs), ran[["arm", "seed"]]  # stopped inside the ladder
    assert load_run(run_dir).unfinished.startswith("study unfinished: "), load_run(run_dir).unfinished

    run_study(resume=run_dir, echo=lambda _: None)
    run = load_run(run_dir)
    assert not run.unfinished and run.verdict["recommended"] == "one_cycle-adamw"
    trials = run.trials
    assert not trials.duplicated(["stage", "trial_id", "budget"]).any() and (trials.status == "ok").all()
    ladder = trials[trials.arm.str.startswith("ladder:")]
    assert set(ladder.arm) == rungs and sorted(ladder.groupby("arm").seed.apply(sorted).sum()) == [0, 0, 1, 1]
    assert trials.trial_id.nunique() == RUNS + len(ladder)
    assert run.verdict["attribution"]["missing"] == ["default:adamw-cosine"]  # TINY's one baseline is Adam's


@pytest.mark.slow
def test_sigint_and_sigterm_during_the_range_tests_exit_with_the_resume_line(tmp_path: Path) -> None:
    """Ctrl-C, then SIGTERM on the resumed folder, while the range test's Ray task sweeps (a long sweep that
    does not diverge): 130 and 143 with the resume line and no traceback (it was rc 1 and Ray's `SystemError`
    from `ray.wait`), the lock released, no range test written."""
    study_file = tmp_path / "tiny.toml"
    long_sweep = TINY.replace("num_steps = 100", "num_steps = 100000\nend_lr = 0.001")
    study_file.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + long_sweep)
    first = _Study(tmp_path, str(study_file))
    run_dir = Path(first.wait_for(r"^run folder ").removeprefix("run folder "))
    first.wait_for(r"^range tests as Ray tasks")
    time.sleep(2)  # inside ray.wait, the task started
    os.kill(first.proc.pid, signal.SIGINT)
    _assert_interrupted(first, 130, run_dir)

    second = _Study(tmp_path, "--resume", str(run_dir))
    second.wait_for(r"^range tests as Ray tasks")
    time.sleep(2)
    os.kill(second.proc.pid, signal.SIGTERM)
    _assert_interrupted(second, 143, run_dir)
    assert "SystemError" not in first.text + second.text
    assert not list(run_dir.glob("range_test_*.json")) and not (run_dir / "trials.parquet").exists()


def _answer(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """What a resumed study must give exactly as an uninterrupted one: its leaderboard and verdict.json. Of
    the verdict's path (`frontier`, `last_half`: each run in the order the runs ended, named by Tune's random
    trial ids) only what the order cannot change is kept: its runs' kinds, stages and budgets, the trainings
    at its end and what the study recommended there. Two uninterrupted runs differ in the rest too (which run
    of a round ends first is the machine's timing)."""
    from sched_search.results.run import load_run

    columns = ["n_seeds", "n_failed", "mean_val_metric", "mean_val_loss", "mean_test_metric"]
    board = load_run(run_dir).leaderboard.set_index("arm")[columns].sort_index()
    verdict = json.loads((run_dir / "verdict.json").read_text())
    points = verdict.pop("frontier")
    verdict["frontier"] = sorted((p["kind"], p.get("stage"), p.get("budget")) for p in points)
    verdict["frontier_trainings"] = max(p["trainings"] for p in points)
    end = verdict.pop("last_half")["at_end"]
    verdict["last_half_at_end"] = (end["arm"], end["trainings"], end["metric"])
    return board, verdict


def _assert_optuna_is_the_table(run_dir: Path) -> None:
    """Each arm's Optuna study: a COMPLETE trial per row the table has of its Optuna asks (the search trials,
    and a race's first point), and no trial left RUNNING."""
    import optuna

    from sched_search.results.run import load_run

    trials = load_run(run_dir).trials
    assert (trials.status == "ok").all() and not trials.duplicated(["stage", "trial_id", "budget"]).any()
    asked = trials[(trials.stage == "search") | (trials.source_trial == "first point")]
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    arms = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert arms == set(asked.arm), (run_dir, arms)
    for arm, rows in asked.groupby("arm"):
        states = [t.state.name for t in optuna.load_study(study_name=arm, storage=storage).trials]
        assert states.count("COMPLETE") == rows.trial_id.nunique(), (run_dir, states)
        assert "RUNNING" not in states, (run_dir, states)


def _killed_folder(clean: Path, run_dir: Path) -> Path:
    """A run folder that starts as `clean` did: its study and its range test (the same seeded sweep), so that
    each kill costs no range test and every study runs on the same one."""
    run_dir.mkdir()
    for name in ("study.toml", "range_test_adamw.json", "range_test_adamw.csv"):
        shutil.copy(clean / name, run_dir / name)
    return run_dir


def _kill_9(run_dir: Path, cwd: Path, pattern: str, env: dict[str, str] | None = None) -> None:
    """`study --resume run_dir` in a process of its own, killed with the Ray it started (SIGKILL to its
    process group) as it prints a line matching `pattern`."""
    killed = _Study(cwd, "--resume", str(run_dir), env=env)
    killed.wait_for(pattern)
    killed.kill()


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_leaderboard(tmp_path: Path, ray_local) -> None:
    """A full study (`budget = "full"`): kill -9 of the driver and its Ray as the first run ends, then of the
    resumed one as the arm's first final run ends; the study resumed after both has the leaderboard and
    verdict of an uninterrupted run, its `trials_per_arm` search rows per arm, Optuna as many COMPLETE trials
    and none RUNNING. A kill can land between Optuna's record of a trial and Tune's saved state; the resumed
    search then hands the lost Optuna trials to Tune's new asks (the deterministic case is
    tests/test_routing.py's), where it drew new configs and changed the answer."""
    from sched_search.study.driver import run_study

    study_file = tmp_path / "tiny.toml"
    study_file.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + TINY)
    clean = run_study(study_file, echo=lambda _: None)  # uninterrupted, on this session's Ray
    run_dir = _killed_folder(clean, tmp_path / "killed")
    for point in (r"^\[1/6 ", r"\[final one_cycle-adamw\]"):
        _kill_9(run_dir, tmp_path, point)
    run_study(resume=run_dir, echo=lambda _: None)
    trials = pd.read_parquet(run_dir / "trials.parquet")
    search = trials[trials.stage == "search"]
    assert search.groupby("arm").trial_id.nunique().to_dict() == {"one_cycle-adamw": 2}
    assert trials.trial_id.nunique() == RUNS
    _assert_optuna_is_the_table(run_dir)
    (board, verdict), (reference, reference_verdict) = _answer(run_dir), _answer(clean)
    pd.testing.assert_frame_equal(board, reference)
    assert verdict == reference_verdict


def _line_ending(plan: dict, kind: str) -> str:
    """The progress line `[n/` of the race's first round (after the first) with a run of `kind`, as its runs
    end: n - 1 counts the runs handed to Tune before its first run of `kind` (a round's runs are handed in
    order; the rounds before it all end before it starts; a shared run is never handed to Tune)."""
    done = 0
    for entry in plan["rounds"]:
        kinds = [run["kind"] for run in entry["runs"] if not run.get("shared")]
        if entry["round"] > 1 and kind in kinds:
            return rf"^\[{done + kinds.index(kind) + 1}/"
        done += len(kinds)
    raise AssertionError(f"no round of {kind} runs: {plan['rounds']}")


def _tune_saved(run_dir: Path) -> list[str]:
    """The trials' states in Tune's newest saved experiment state."""
    newest = max((run_dir / "ray" / "study").glob("experiment_state-*.json"))
    return [json.loads(trial)["status"] for trial, _ in json.loads(newest.read_text())["trial_data"]]


@pytest.mark.slow
def test_kill_9_anywhere_in_a_race_then_resume_gives_the_uninterrupted_answer(
    tmp_path: Path, ray_local
) -> None:
    """A raced study (RACE: every round runs) killed with kill -9 (the driver and its Ray) five times, each
    kill in the study resumed after the one before, as the first run of a round ends: the search round, with
    Tune's state saved only at its first step (its save period, TUNE_GLOBAL_CHECKPOINT_S, an hour in that
    run), so that the kill lands every time, not by chance of the 1 s period, between results the searcher
    acted on (Optuna told of the first point and the search trial, the next round asked) and the save that
    would hold them; then, at the 1 s period, the search round again, the second seed's round (finals), the
    shorter budgets' and the attribution ladder's. Before the last resume an Optuna trial is asked as a killed
    driver asks one that its resumed race never asks again (here its search is over; a race that decided
    otherwise asks fewer): the resume must fail it. The study resumed to its end has the uninterrupted run's
    leaderboard and verdict, and Optuna's record is its table's (`_assert_optuna_is_the_table`)."""
    import optuna

    from sched_search.study.driver import run_study

    study_file = tmp_path / "race.toml"
    study_file.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + RACE)
    clean = run_study(study_file, echo=lambda _: None)
    plan = json.loads((clean / "plan.json").read_text())
    kinds = [run["kind"] for entry in plan["rounds"] for run in entry["runs"]]
    assert plan["finished"] and not plan["not_run"] and {"search", "rungs", "ladder"} <= set(kinds), plan
    _assert_optuna_is_the_table(clean)

    run_dir = _killed_folder(clean, tmp_path / "killed")
    _kill_9(run_dir, tmp_path, _line_ending(plan, "search"), env={"TUNE_GLOBAL_CHECKPOINT_S": "3600"})
    record = optuna.load_study(study_name="one_cycle-adamw", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert record.get_trials(states=(optuna.trial.TrialState.COMPLETE,))  # Optuna has outcomes ...
    assert "TERMINATED" not in _tune_saved(run_dir)  # ... that Tune's saved state lacks
    for kind in ("search", "seed", "rungs", "ladder"):
        _kill_9(run_dir, tmp_path, _line_ending(plan, kind))
    record.ask()
    run_study(resume=run_dir, echo=lambda _: None)
    _assert_optuna_is_the_table(run_dir)
    (board, verdict), (reference, reference_verdict) = _answer(run_dir), _answer(clean)
    pd.testing.assert_frame_equal(board, reference)
    assert verdict == reference_verdict


def test_address_of_a_server_that_is_not_ray_fails_in_seconds_naming_the_key(tmp_path: Path) -> None:
    """A port that accepts TCP but is not Ray's GCS (here a loopback `http.server`): one bounded gRPC call, rc
    2 with the file, the key and the fix, instead of Ray's minutes of "Failed to connect to GCS"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "Serving HTTP" in server.stdout.readline()
        study = tmp_path / "tiny.toml"
        study.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + TINY)
        done = subprocess.run(
            [sys.executable, "-m", "sched_search", "study", str(study), "--address", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,  # Ray's own retries took more than 5 minutes
            check=False,
        )
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 2, done.stdout + done.stderr
    where = f"--address 127.0.0.1:{port} (in place of ray_address in {study})"
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {where}: something listens at 127.0.0.1:{port}, but it is not a Ray cluster's GCS (gRPC: "
        f"UNAVAILABLE). Start one there (ray start --head --port {port}) or fix the address (the head's GCS "
        "port, 6379 by default)."
    ), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()
