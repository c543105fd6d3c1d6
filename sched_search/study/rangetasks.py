"""The study's range tests as Ray tasks: one task per (optimizer family, weight decay) sweep, with a trial's
resources, so the sweeps run in parallel where the trials run (a cluster's workers, its GPUs).

The task loads the data as a trial does (`trial.worker_data`: tensors from the object store, or the study's
loader factory called in the worker) and returns its sweep, where it ran and the data's steps per epoch; the
driver (`rangestage.range_tests`) needs neither the data nor a GPU. Each finished sweep is saved at once under
`range_test_parts/`, so a killed stage resumes per sweep.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..rangetest import RangeTestConfig, RangeTestResult

PARTS = "range_test_parts"  # the run folder's sub-folder of finished sweeps, until their family is written
ONE_TASK_PER_DECAY = True  # False: one task per family, its decays one after another (for measurements)
MAX_RETRIES = 1  # a task whose worker dies is run once more (as Tune retries a trial once), then reported


@dataclass(frozen=True)
class SweepPart:
    """One weight decay's sweep as a task ran it."""

    optimizer: str
    result: RangeTestResult
    where: dict[str, Any]  # node_id, hostname, pid, device, gpu_ids of the task
    seconds: float  # the task's time for this sweep (its first sweep includes getting the data)
    steps_per_epoch: int  # the data's, as the trials will step through it (`data.data_steps`)
    n_train: int | None  # training examples of tensor data (None for loaders)
    saved: bool = False  # read back from `range_test_parts/` (run by an earlier, killed call)


class SweepTaskError(RuntimeError):
    """A sweep's task raised (e.g. in the user's data factory) or was lost beyond its retries."""


# --------------------------------------------------------------------------------------------- worker side


def sweep_task(
    settings: dict[str, Any],
    data_ref: Any,
    optimizer: str,
    weight_decays: tuple[float, ...],
    start_lr: float,
    end_lr: float,
    num_steps: int,
) -> list[SweepPart]:
    """Sweep `weight_decays` one after another in this worker; `num_steps` 0: `rangetest.sweep_steps` of the
    data. `settings` are the trials' (`search.trial_settings`)."""
    import ray

    from ..rangetest import run_range_test, sweep_steps
    from ..training import TensorData, data_steps
    from .trial import set_threads, worker_data

    start = time.perf_counter()
    set_threads(settings)
    data = worker_data(settings, data_ref)
    spe = data_steps(data, settings["batch_size"])
    config = RangeTestConfig(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps or sweep_steps(spe))
    where = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "device": settings["device"],
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }
    parts = []
    for wd in weight_decays:
        sweep = run_range_test(
            data,
            settings["model"],
            optimizer,
            config,
            (wd,),
            settings["batch_size"],
            model_kwargs=settings["model_options"],
            device=settings["device"],
            precision=settings["precision"],  # where the loss diverges can depend on it
            channels_last=settings["channels_last"],
            loss=settings["loss"],  # the range test reads the loss the trials train on
        )
        now = time.perf_counter()
        n_train = len(data.x_train) if isinstance(data, TensorData) else None
        parts.append(SweepPart(optimizer, sweep.results[0], where, now - start, spe, n_train))
        start = now
    return parts


# --------------------------------------------------------------------------------------------- driver side


def run_sweeps(
    run_dir: Path,
    settings: dict[str, Any],
    data_ref: Any,
    families: Iterable[str],
    weight_decays: Iterable[float],
    range_test: Any,
    resources: dict[str, float],
) -> Iterator[SweepPart]:
    """Every sweep of `families` x `weight_decays`, as it finishes: those saved under `range_test_parts/` by
    an earlier, killed call first, then the others from Ray tasks run in parallel (`resources`: a trial's
    {"cpu", "gpu"}). Each is saved before it is yielded. A task that raises, or is lost beyond
    `MAX_RETRIES`, cancels the others and raises `SweepTaskError` naming the sweep and where it ran.

    `range_test` is the study's `[range_test]` section (start_lr, end_lr, num_steps).
    """
    import ray

    decays = sorted({float(w) for w in weight_decays})
    todo = []
    for opt in families:
        missing = []
        for wd in decays:
            part = load_part(run_dir, opt, wd, range_test)
            if part is None:
                missing.append(wd)
            else:
                yield part
        units = [(wd,) for wd in missing] if ONE_TASK_PER_DECAY else ([tuple(missing)] if missing else [])
        todo += [(opt, unit) for unit in units]
    if not todo:
        return
    task = ray.remote(sweep_task).options(
        num_cpus=resources["cpu"],
        num_gpus=resources["gpu"],
        max_retries=MAX_RETRIES,
        name="range_test",
    )
    lrs = (range_test.start_lr, range_test.end_lr, range_test.num_steps)
    refs = {task.remote(settings, data_ref, opt, unit, *lrs): (opt, unit) for opt, unit in todo}
    try:
        while refs:
            # half-second waits: Ctrl-C's handler runs when the driver is back in Python, and a wait without a
            # timeout did not come back (nor run it) for as long as the sweep lasted
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            if not ready:
                continue
            done = ready[0]
            opt, unit = refs.pop(done)
            try:
                parts = ray.get(done)
            except ray.exceptions.RayError as e:
                raise SweepTaskError(_failure(opt, unit, e)) from None
            for part in parts:
                save_part(run_dir, part)
                yield part
    finally:
        for ref in refs:  # a failed sweep, or the consumer stopped: the others would run for nothing
            ray.cancel(ref, force=True)


def _failure(opt: str, unit: tuple[float, ...], error: BaseException) -> str:
    """One line: which sweep, why (the user's exception when there is one), and the retries for a lost
    task."""
    import ray

    decays = ", ".join(f"{w:g}" for w in unit)
    cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) else None
    if cause is not None:
        why = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
        return f"range test {opt} (weight decay {decays}) raised in its Ray task: {why}"
    why = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    lost = f"its Ray task was lost after {MAX_RETRIES} retry"
    return f"range test {opt} (weight decay {decays}): {lost} ({why})"


def task_seconds(parts: Iterable[SweepPart]) -> float:
    """The sum of the tasks' times for these sweeps, those run by this call only."""
    return sum(p.seconds for p in parts if not p.saved)


# --------------------------------------------------------------------------------------------- parts on disk


def _part_path(run_dir: Path, opt: str, wd: float) -> Path:
    return run_dir / PARTS / opt / f"wd{wd:g}.json"


def save_part(run_dir: Path, part: SweepPart) -> None:
    """The sweep's whole record (its reading is recomputed from it), written atomically."""
    r = part.result
    record = {
        "optimizer": part.optimizer,
        "where": part.where,
        "seconds": part.seconds,
        "steps_per_epoch": part.steps_per_epoch,
        "n_train": part.n_train,
        "config": asdict(r.config),
        "lrs": r.lrs,
        "losses": r.losses,
        "smoothed": r.smoothed,
        "val_losses": r.val_losses,
        "nan_steps": r.nan_steps,
        "stopped_early": r.stopped_early,
        "weight_decay": r.weight_decay,
        "result_steps_per_epoch": r.steps_per_epoch,
        "label_entropy": r.label_entropy,
    }
    path = _part_path(run_dir, part.optimizer, r.weight_decay)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(record))  # NaN losses as NaN: json reads them back
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no half file behind


def remove_parts(run_dir: Path, opt: str) -> None:
    """Drop a family's saved sweeps once its files are written (its JSON keeps where each ran)."""
    import shutil

    shutil.rmtree(run_dir / PARTS / opt, ignore_errors=True)
    try:
        (run_dir / PARTS).rmdir()
    except OSError:
        pass  # another family's sweeps are still there, or there never were any


def load_part(run_dir: Path, opt: str, wd: float, range_test: Any) -> SweepPart | None:
    """A sweep saved by an earlier call with the same sweep settings; None when there is none."""
    from ..rangetest import read_curve

    path = _part_path(run_dir, opt, wd)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    config = RangeTestConfig(**rec["config"])
    if (config.start_lr, config.end_lr) != (range_test.start_lr, range_test.end_lr) or (
        range_test.num_steps and config.num_steps != range_test.num_steps
    ):
        return None
    nan_steps = tuple(tuple(s) for s in rec["nan_steps"])
    spe = rec["result_steps_per_epoch"]
    losses = tuple(math.nan if v is None else v for v in rec["losses"])
    reading = read_curve(
        rec["lrs"], losses, config.curve_config, nan_steps, rec["stopped_early"], spe, rec["label_entropy"]
    )
    result = RangeTestResult(
        config,
        tuple(rec["lrs"]),
        losses,
        tuple(rec["smoothed"]),
        tuple(rec["val_losses"]),
        nan_steps,
        rec["stopped_early"],
        rec["weight_decay"],
        reading,
        spe,
        rec["label_entropy"],
    )
    return SweepPart(opt, result, rec["where"], rec["seconds"], rec["steps_per_epoch"], rec["n_train"], True)


__all__ = ["SweepPart", "SweepTaskError", "run_sweeps", "sweep_task"]
