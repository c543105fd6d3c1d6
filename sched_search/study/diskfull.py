"""A full disk during a study: one line that says where, in which stage, and whether `--resume` finishes it.

Every stage writes into the run folder: our files (tables, JSON), Optuna's SQLite database, Ray Tune's
experiment state and the trials' checkpoints. Each reports a full disk its own way (an `OSError` with errno
28 from Python or pyarrow, SQLite's "database or disk is full", Ray Tune re-raising a failed sync), so the
error is recognised along its chain of causes, and the tracebacks Ray Tune logs on the way are dropped
(`quiet_ray`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_TEXTS = ("No space left on device", "Disk quota exceeded", "database or disk is full")
# where Ray Tune logs a failed write with its traceback before raising it: a failed save of the experiment
# state, a trial that cannot be stopped (its result not saved)
_RAY_LOGGERS = ("ray.tune.execution.experiment_state", "ray.tune.execution.tune_controller")


class DiskFull(OSError):
    """The disk (or a quota) filled during a study; the message says where, in which stage, and what to do.

    Attributes:
        resumable: the run folder can be resumed once there is space (False: nothing was started, and no run
            folder is left).
    """

    def __init__(self, message: str, resumable: bool):
        super().__init__(errno.ENOSPC, message)
        self.resumable = resumable

    def __str__(self) -> str:
        return self.strerror


def no_space(error: BaseException | None) -> BaseException | None:
    """The exception along `error`'s causes that says the disk or a quota is full; None if none does."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _ERRNOS:
            return error
        if any(text in str(error) for text in _TEXTS):
            return error
        error = error.__cause__ or error.__context__
    return None


def disk_full(error: BaseException, run_dir: Path | None, stage: str, resumable: bool) -> DiskFull:
    """The one line for a full disk met in `stage`: the file when the error names one (else the run folder),
    the space left there, and `--resume` when `resumable`."""
    # a copy's error names its source first and the file it was writing second
    filename = getattr(error, "filename2", None) or getattr(error, "filename", None)
    where = Path(filename) if filename else run_dir
    place = f"writing {where}" if filename else (f"under {where}" if where else "")
    free = _free(where)
    head = f"no space left on device {place}{free} during {stage}".replace("  ", " ")
    if resumable and run_dir is not None:
        tail = "what finished is kept: free space, then resume with: "
        tail += f"python -m sched_search study --resume {run_dir}"
    else:
        tail = "nothing was started and no run folder is left: free space and run the study again"
    return DiskFull(f"{head}; {tail}", resumable)


def _free(path: Path | None) -> str:
    while path is not None and not path.exists() and path != path.parent:
        path = path.parent
    if path is None:
        return ""
    try:
        return f" ({shutil.disk_usage(path).free / 2**20:.0f} MiB free)"
    except OSError:
        return ""


class _DropDiskFull(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and no_space(record.exc_info[1]))


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Drop the full-disk tracebacks Ray Tune logs before it raises the error (our line says it once)."""
    drop = _DropDiskFull()
    loggers = [logging.getLogger(name) for name in _RAY_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


__all__ = ["DiskFull", "disk_full", "no_space", "quiet_ray"]
