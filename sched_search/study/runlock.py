"""One study at a time per run folder: an exclusive `flock` on a lock file naming the holder (pid, host,
process start time).

Two `--resume` of one folder would both run every unfinished trial and both write optuna.db. A lock file
left by a killed study is stale and taken over when its holder is provably gone: same host, and no process
with that pid and start time. The takeover happens under the flock, so two takers cannot both win. A lock
from another host cannot be checked from here, so it is refused with the way to clear it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_NAME = "study.lock"


class RunFolderLocked(RuntimeError):
    """Another live study holds the run folder."""


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux /proc), so a reused pid is not taken for the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the parenthesised command name


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or _start_time(pid) in (None, started)


def _holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"


def _on_takeover(holder: dict[str, Any]) -> None:
    """Called between finding a stale lock and taking it over (tests pause here to race two takers)."""


def _open_locked(path: Path) -> int | None:
    """A descriptor of `path` with an exclusive `flock` on it, or None when another process holds it. The
    kernel drops a flock when its holder dies, however it dies, so a held flock is a live holder."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder released (unlinked) it between our open and our flock: open the new one


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/study.lock` for the duration; raise `RunFolderLocked` if a live study holds it.

    The lock is an exclusive `flock` on the file, which also names the holder: of two studies that find a
    killed study's lock at once, exactly one gets the flock and takes the file over; the other is refused.

    Example:
        >>> with run_lock(Path("runs/smoke-20260101-120000")):  # doctest: +SKIP
        ...     ...  # resume the study
    """
    path = run_dir / LOCK_NAME
    pid = os.getpid()
    mine = {
        "pid": pid,
        "host": socket.gethostname(),
        "started": _start_time(pid),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    fd = _open_locked(path)
    if fd is None:  # a held flock: its holder is alive (it may be the taker of a stale lock, just now)
        raise RunFolderLocked(_in_use(run_dir, path, _holder(path) or {}, live=True))
    try:
        holder = _holder(path)
        if holder:  # left by a study that did not release it: killed, or alive on another host
            holder_pid = holder.get("pid")
            live = (
                isinstance(holder_pid, int) and holder_pid > 0 and _alive(holder_pid, holder.get("started"))
            )
            if holder.get("host") != mine["host"] or live:  # another host's flock may not reach us
                raise RunFolderLocked(_in_use(run_dir, path, holder, live=live))
            log.warning("taking over the stale lock of %s: %s is gone", run_dir, _describe(holder))
            _on_takeover(holder)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        # while holding the flock: a taker that opened it sees it is gone. Only our own file: one deleted by
        # hand while we ran may have been replaced by another study's lock.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)


def _in_use(run_dir: Path, path: Path, holder: dict[str, Any], live: bool) -> str:
    """`live`: the holder is known to run (deleting its lock would let two studies write one folder)."""
    head = f"run folder {run_dir} is in use by a study ({_describe(holder)}; lock file {path}). "
    if live:
        return head + "Wait for it to finish (or stop it: Ctrl-C, or kill -TERM its pid), then --resume."
    host = holder.get("host", "?")
    return head + f"Wait for it to finish; if that process is gone (on host {host}), delete {path}."


def live_holder(run_dir: Path) -> dict[str, Any] | None:
    """The holder of `run_dir`'s lock when it is a live study on this host (pid, host, since); None when the
    folder is not locked, or its lock is stale or another host's (which cannot be checked from here).

    Example:
        >>> live_holder(Path("runs/smoke-20260101-120000"))  # doctest: +SKIP
        {'pid': 4242, 'host': 'vm', 'started': '1234', 'since': '2026-01-01 12:00:00'}
    """
    holder = _holder(run_dir / LOCK_NAME)
    if not holder or holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    return holder if isinstance(pid, int) and pid > 0 and _alive(pid, holder.get("started")) else None


__all__ = ["LOCK_NAME", "RunFolderLocked", "live_holder", "run_lock"]
