"""One study per run folder: a live holder refuses a second study; a killed holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sched_search.study.runlock import LOCK_NAME, RunFolderLocked, run_lock

ROOT = Path(__file__).resolve().parents[1]


def test_second_holder_is_refused_and_the_lock_is_released(tmp_path: Path) -> None:
    with run_lock(tmp_path):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with (
            pytest.raises(RunFolderLocked, match=rf"in use by a study \(pid {os.getpid()} on host"),
            run_lock(tmp_path),
        ):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # released, no temporary file left


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "1"})
    )
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_reused_pid_is_not_taken_for_the_holder(tmp_path: Path) -> None:
    """A live pid with another start time is a different process: the lock is stale."""
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "1"})
    )
    with run_lock(tmp_path):
        pass


def test_lock_from_another_host_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "1"}))
    with (
        pytest.raises(RunFolderLocked, match=r"on host elsewhere .* delete .*study.lock"),
        run_lock(tmp_path),
    ):
        pass


@pytest.mark.slow  # a study process of its own
def test_resume_of_a_locked_folder_exits_2_in_seconds(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text((ROOT / "studies" / "smoke.toml").read_text())
    with run_lock(tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "sched_search", "study", "--resume", str(tmp_path)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,  # a bound for a hang, not a speed claim
            check=False,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is in use by a study" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "resolved_config.json").exists()


# runlock is a leaf of the standard library only: loaded by its path, the taker need not import torch
TAKER = """
import importlib.util, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("runlock", sys.argv[2])
runlock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runlock)

def pause(holder):
    print("taking over", flush=True)
    sys.stdin.readline()  # the test says when to go on

runlock._on_takeover = pause
try:
    with runlock.run_lock(Path(sys.argv[1])):
        print("held", flush=True)
except runlock.RunFolderLocked as e:
    print("refused:", e, flush=True)
"""


def test_two_takers_of_a_stale_lock_exactly_one_holds_it(tmp_path: Path) -> None:
    """The first taker is paused between finding the dead holder's lock and writing its own; the second comes
    exactly then. Before the flock, both took the lock over (the second deleted the first's)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "1"})
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    taker = [sys.executable, "-c", TAKER, str(tmp_path), str(ROOT / "sched_search" / "study" / "runlock.py")]
    first = subprocess.Popen(taker, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "taking over\n"
        second = subprocess.run(
            taker, env=env, input="\n", capture_output=True, text=True, timeout=60, check=False
        )
        out, _ = first.communicate("\n", timeout=60)
    finally:
        first.kill()
    assert second.stdout.startswith("refused: run folder"), second.stdout + second.stderr
    assert "delete" not in second.stdout and "or stop it" in second.stdout  # the new holder is alive
    assert out == "held\n"
    assert not (tmp_path / LOCK_NAME).exists()


_HOLD = """
import sys, time
from pathlib import Path
from sched_search.study.runlock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's lock until its stdin closes; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_refused_study_leaves_the_holders_lock_alone(tmp_path: Path) -> None:
    from sched_search.study.runlock import live_holder

    assert live_holder(tmp_path) is None
    holder = _holder(tmp_path)
    try:
        assert live_holder(tmp_path)["pid"] == holder.pid
        for _ in range(2):  # the second attempt is refused too: the first released nothing
            with pytest.raises(RunFolderLocked, match=rf"pid {holder.pid} "), run_lock(tmp_path):
                pass
    finally:
        holder.communicate("", timeout=60)
    with run_lock(tmp_path):  # released by its holder
        pass


def test_leaving_releases_only_our_own_lock(tmp_path: Path) -> None:
    """The lock file deleted by hand while we hold it (as a refusal tells a user to do) and taken by another
    study: when we leave, that study's lock stays."""
    with run_lock(tmp_path):
        (tmp_path / LOCK_NAME).unlink()
        other = _holder(tmp_path)
    try:
        with pytest.raises(RunFolderLocked, match=rf"pid {other.pid} "), run_lock(tmp_path):
            pass
    finally:
        other.communicate("", timeout=60)


def test_a_damaged_lock_file_without_a_holder_is_taken_over(tmp_path: Path) -> None:
    """A lock file cut short or overwritten (not what run_lock ever leaves) names no live holder."""
    for damaged in ("", '{"pid": 12', "not json"):
        (tmp_path / LOCK_NAME).write_text(damaged)
        with run_lock(tmp_path):
            pass


@pytest.mark.parametrize(
    ("holder", "said"),
    [
        ({"pid": 1, "host": "elsewhere"}, "pid 1 on host elsewhere since ?"),
        (
            {"host": "elsewhere", "since": "2026-01-01 12:00:00"},
            "pid ? on host elsewhere since 2026-01-01 12:00:00",
        ),
        ({"pid": 1}, "pid 1 on host ? since ?"),  # no host: cannot be checked from here either
    ],
)
def test_a_holder_that_cannot_be_checked_is_refused_saying_what_is_known(
    tmp_path: Path, holder: dict, said: str
) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(RunFolderLocked) as refused, run_lock(tmp_path):
        pass
    assert f"in use by a study ({said}; lock file {tmp_path / LOCK_NAME})" in str(refused.value)
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == holder  # left as it was


def test_start_time_is_the_kernels_field_22() -> None:
    """proc(5): field 22 of /proc/PID/stat, the start time in clock ticks: fixed for a process's life."""
    from sched_search.study.runlock import _start_time

    fields = Path(f"/proc/{os.getpid()}/stat").read_text().split()  # this process's name has no spaces
    assert _start_time(os.getpid()) == fields[21]
    assert _start_time(2**22 + 1) is None  # no such process


def test_a_live_pid_without_a_recorded_start_time_holds_its_lock() -> None:
    """A lock written without the holder's start time (an older one) trusts the pid alone; with a start time,
    a reused pid (another start time) does not hold it."""
    from sched_search.study.runlock import _alive, _start_time

    assert _alive(os.getpid(), None)
    assert _alive(os.getpid(), _start_time(os.getpid()))
    if _start_time(os.getpid()) is not None:  # /proc is there: the start time tells a reused pid apart
        assert not _alive(os.getpid(), "0")
