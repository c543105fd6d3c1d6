"""One study at a time per run folder: a lock file naming the holder (pid, host, process start time).

Two `--resume` of one folder would both run every unfinished trial and both write optuna.db. A lock left by a
killed study is stale and taken over when its holder is provably gone: same host, and no process with that pid
and start time. A lock from another host cannot be checked from here, so it is refused with the way to clear
it.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/study.lock` for the duration; raise `RunFolderLocked` if a live study holds it.

    Example:
        >>> with run_lock(Path("runs/smoke-20260101-120000")):
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
    tmp = run_dir / f".{LOCK_NAME}.{pid}"
    tmp.write_text(json.dumps(mine))
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)  # atomic, and fails if the lock exists: never a half-written lock
                break
            except FileExistsError:
                holder = _holder(path)
                if holder is None:
                    continue  # released between our two calls
                holder_pid = holder.get("pid")
                live = (
                    isinstance(holder_pid, int)
                    and holder_pid > 0
                    and _alive(holder_pid, holder.get("started"))
                )
                # a damaged file ({}) is no run_lock's: it links a complete file into place, never writes one
                if holder and (holder.get("host") != mine["host"] or live):
                    raise RunFolderLocked(
                        f"run folder {run_dir} is in use by a study ({_describe(holder)}; lock file {path}). "
                        "Wait for it to finish; if that process is gone (e.g. on another host), delete "
                        f"{path}."
                    ) from None
                log.warning("taking over the stale lock of %s: %s is gone", run_dir, _describe(holder))
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        else:
            raise RunFolderLocked(f"run folder {run_dir}: could not take the lock {path} (contended).")
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield
    finally:
        if _holder(path) == mine:
            path.unlink(missing_ok=True)


__all__ = ["LOCK_NAME", "RunFolderLocked", "run_lock"]
