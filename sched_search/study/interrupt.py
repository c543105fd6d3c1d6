"""Ctrl-C and SIGTERM in the driver: one path for both, so that an interrupted study leaves a folder to resume
and never a verdict.

The first SIGINT or SIGTERM inside Ray Tune's loop asks Tune to stop as its own Ctrl-C handler does: the
loop ends, Tune saves the experiment state once more (unfinished trials stay unfinished and run again on
resume) and stops the trials; then `Interrupted` is raised, so that no stage after the Tuner runs. Outside
Tune's loop (range tests, tables) the first signal raises `Interrupted` at once, and so does a second signal.

Tune's SIGINT handler is switched off (`TUNE_DISABLE_SIGINT_HANDLER`) so that ours sees every signal; Tune's
stop is reached through the handler Tune installs for SIGUSR1, the same function as its SIGINT one
(`ray.tune.tune._setup_signal_catching`). `ray.init` installs a SIGTERM handler that calls `sys.exit` wherever
the driver is (inside Tune's loop that ended in an abort with a C++ stack): `reinstall` is called after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# signum: the first signal received (None: none); tune_usr1: (SIGUSR1's handler before Tune's loop,) or None
# outside the loop; active: our handlers are installed.
_state: dict[str, Any] = {"signum": None, "tune_usr1": None, "active": False}


class Interrupted(BaseException):  # like KeyboardInterrupt: `except Exception` lets it pass
    """SIGINT or SIGTERM reached the driver; the study stopped where it can be resumed.

    Attributes:
        signum: the signal (2 SIGINT, 15 SIGTERM).
        run_dir: the run folder to resume (None before one existed).
    """

    def __init__(self, signum: int, run_dir: Any = None):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.run_dir = run_dir

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def unwrap(error: BaseException) -> BaseException:
    """The `Interrupted` inside a `SystemError`, else `error` itself. Ray's blocking Cython calls (`ray.wait`,
    `ray.get`) run our handler in their signal check and return with its exception set, which Python
    reports as a SystemError caused by it."""
    if isinstance(error, SystemError) and isinstance(error.__cause__, Interrupted):
        return error.__cause__
    return error


def _handler(signum: int, frame: Any) -> None:
    first = _state["signum"] is None
    if first:
        _state["signum"] = signum
    tune = signal.getsignal(signal.SIGUSR1) if _state["tune_usr1"] is not None else None
    if first and callable(tune) and tune is not _state["tune_usr1"][0]:
        tune(signal.SIGUSR1, frame)  # Tune's: its loop ends after this step, saving the experiment state
        # os.write, not print: a handler may run in the middle of a print to the same stream
        os.write(2, b"interrupting: Ray Tune saves its state and stops the trials (again to stop at once)\n")
        return
    raise Interrupted(_state["signum"])


def reinstall() -> None:
    """Put our handlers back (after `ray.init`, which installs its own SIGTERM handler)."""
    if _state["active"] and threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _handler)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Our SIGINT/SIGTERM handlers for the duration (main thread only; elsewhere signals are not ours)."""
    if threading.current_thread() is not threading.main_thread() or _state["active"]:
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _state.update(signum=None, active=True)
    reinstall()
    try:
        yield
    except SystemError as e:
        if unwrap(e) is e:
            raise
        raise unwrap(e) from None
    finally:
        _state["active"] = False
        for sig, handler in before.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def tune_loop() -> Iterator[None]:
    """Around `Tuner.fit`: a first signal stops Tune gracefully; `Interrupted` is raised once fit returns."""
    if not _state["active"]:
        yield
        return
    old = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _state["tune_usr1"] = (signal.getsignal(signal.SIGUSR1),)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, _state["tune_usr1"][0])  # Tune leaves its handler installed
        _state["tune_usr1"] = None
        if old is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old
    if _state["signum"] is not None:
        raise Interrupted(_state["signum"])


__all__ = ["Interrupted", "handling", "reinstall", "tune_loop", "unwrap"]
