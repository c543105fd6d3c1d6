"""The study, driver side: range tests seed per-arm Optuna spaces; one Ray Tune run (OptunaSearch + ASHA);
tables.

Stages, each resumable from the run folder:
1. range test (with weight-decay sweep) per optimizer family -> `range_test_<opt>.json/csv/png`;
2. per-arm spaces -> `spaces.json`; one Optuna study per arm in `optuna.db` (the driver is its only writer);
3. search: `trials_per_arm` trials per arm, the same training seed, per-arm ASHA on cycle ends;
4. final: each arm's best config re-run on the same seeds over the budget ladder, and the Adam baseline;
   3 and 4 share one Tuner: an arm's final re-runs start as soon as its own search is done;
5. `trials.parquet` / `epochs.parquet`, merged as trials finish (`tables.Recorder`), then `verdict.json`.
Stages 3 and 4 (the Tuner) are `search.py`; what runs inside a trial is `trial.py`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .arms import split_arm
from .config import StudyConfig, load_study, metric_mode, metric_name
from .data import LoaderData, TensorData
from .runlock import run_lock
from .sampler import arm_seed, sampler_settings
from .search import run_trials
from .space import (
    ArmSpace,
    RangeSeed,
    broad_space,
    build_space,
    check_point_in_space,
    first_weight_decay,
    seed_from_summary,
    with_bounds,
)
from .tables import append_tables, tables_from_rows, write_json

log = logging.getLogger(__name__)


class StudyAborted(RuntimeError):
    """The range test's sanity check failed; no trial was spent."""


# --------------------------------------------------------------------------------------------- run folder


def new_run_dir(cfg: StudyConfig) -> Path:
    """A new folder `<runs_dir>/<name>-<timestamp>`; `-2`, `-3`, ... when studies start within the same
    second."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    Path(cfg.runs_dir).mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = Path(cfg.runs_dir) / (f"{cfg.name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir()  # atomic: of two studies asking for one name, exactly one gets it
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{cfg.runs_dir}: 999 run folders named {cfg.name}-{stamp}-* already exist.")


# --------------------------------------------------------------------------------------------- stages


def range_tests(
    cfg: StudyConfig,
    run_dir: Path,
    echo: Callable[[str], None],
    data: TensorData | LoaderData | None = None,
    progress: bool = False,
) -> dict[str, RangeSeed]:
    """Stage 1: a range test with weight-decay sweep per optimizer family; reused when already in the folder.

    `data` is the study's loaded data (None loads it from `cfg.data`, options included); the sweep runs on
    `cfg.train.device`. `[range_test] num_steps = 0` sweeps `rangetest.sweep_steps` of this data (15 epochs).
    `progress`: a tqdm bar per sweep (on stderr); otherwise `echo` gets a line as each sweep starts.
    """
    from .data import data_steps, load_data
    from .models import IMAGE_MODELS
    from .rangetest import RangeTestConfig, run_range_test, sweep_steps

    if data is None:
        image = cfg.model.name in IMAGE_MODELS
        data = load_data(cfg.data.name, root=cfg.data.root, image=image, **cfg.data.options)
    spe = data_steps(data, cfg.train.batch_size)
    rt = cfg.range_test
    num_steps = rt.num_steps or sweep_steps(spe)
    seeds: dict[str, RangeSeed] = {}
    families = sorted({split_arm(arm)[1] for arm in cfg.search.arms})
    for opt in families:
        path = run_dir / f"range_test_{opt}.json"
        if not path.exists():
            config = RangeTestConfig(start_lr=rt.start_lr, end_lr=rt.end_lr, num_steps=num_steps)
            t0 = time.perf_counter()

            def sweep_line(i: int, n: int, weight_decay: float, opt: str = opt) -> None:
                echo(f"range test {opt}: sweep {i} of {n} (weight decay {weight_decay:g}, {num_steps} steps)")

            sweep = run_range_test(
                data,
                cfg.model.name,
                opt,
                config,
                rt.weight_decays,
                cfg.train.batch_size,
                model_kwargs=dict(cfg.model.options),
                device=cfg.train.device,
                precision=cfg.train.precision,  # where the loss diverges can depend on it
                channels_last=cfg.train.channels_last,
                progress=progress,
                on_sweep=None if progress else sweep_line,
                loss=cfg.train.loss,  # the range test reads the loss the trials train on
            )
            sweep.to_frame().to_csv(run_dir / f"range_test_{opt}.csv", index=False)
            sweep.plot(run_dir / f"range_test_{opt}.png")
            # What the sweep ran on: the data as the study loaded it (options included), for the record.
            source = {
                "name": cfg.data.name,
                "options": dict(cfg.data.options),
                "n_train": len(data.x_train) if isinstance(data, TensorData) else None,
                "steps_per_epoch": spe,
                "batch_size": cfg.train.batch_size,
                "device": cfg.train.device,
            }
            sweep.to_json(path, extra={"data": source})
            s = sweep.summary()
            echo(
                f"range test {opt}: {s['verdict']}, max_lr {s['suggested_max_lr'] or float('nan'):.3g}, "
                f"min_lr {s['suggested_min_lr'] or float('nan'):.3g} "
                f"({num_steps} steps, {num_steps / spe:.3g} epochs; {time.perf_counter() - t0:.1f} s)"
            )
            echo(f"range test {opt}: {_weight_decay_words(s)}")
        summary = json.loads(path.read_text())
        if summary["verdict"] != "ok":
            reasons = "; ".join(summary["reasons"])
            if not cfg.range_test.allow_failed or summary["suggested_max_lr"] is None:
                raise StudyAborted(
                    f"range test ({opt}) failed: {reasons}. No trial was run. See {path}; set [range_test] "
                    "allow_failed = true (or --allow-failed) to go on anyway."
                )
            echo(f"range test {opt} failed ({reasons}); going on because allow_failed is set")
        seeds[opt] = seed_from_summary(opt, summary)
    return seeds


def range_test_cost(run_dir: Path, epochs: int, steps_per_epoch: int) -> dict[str, float]:
    """Each optimizer family's range test in trial-equivalents: its optimizer steps (every weight decay's
    sweep, from `range_test_<opt>.csv`) over one full trial's (`epochs * steps_per_epoch`); {} without one.

    Steps, not seconds: the ratio does not move with the machine's load, and a range-test step costs about a
    training step (benchmarks/bench_rangetest.py).
    """
    import pandas as pd

    trial_steps = max(1, epochs * steps_per_epoch)
    return {
        csv.stem.removeprefix("range_test_"): len(pd.read_csv(csv, usecols=["step"])) / trial_steps
        for csv in sorted(run_dir.glob("range_test_*.csv"))
    }


def _weight_decay_words(summary: dict[str, Any]) -> str:
    """What the search does with the sweep's weight decay: 0 is never searched (the range is log-uniform)."""
    wd = summary["weight_decay"]
    low, high = wd["range"]
    first = first_weight_decay(wd["chosen"], low, high)
    searched = f"searched log-uniform in [{low:.3g}, {high:.3g}], first trial {first:.3g}"
    return f"weight decay {wd['chosen']:g}; {searched}"


def build_spaces(
    cfg: StudyConfig, seeds: dict[str, RangeSeed], run_dir: Path, spe: int
) -> dict[str, ArmSpace]:
    """Stage 2: per-arm spaces from the range tests, written to `spaces.json` with the source of every
    bound."""
    spaces = {}
    for arm in cfg.search.arms:
        spaces[arm] = arm_space(cfg, seeds, arm, spe)
    write_json(run_dir / "spaces.json", {arm: s.to_dict() for arm, s in spaces.items()})
    return spaces


def arm_space(cfg: StudyConfig, seeds: dict[str, RangeSeed], arm: str, spe: int) -> ArmSpace:
    """One arm's space as the study searches it: seeded (or broad), `[search.bounds]` applied, its sampler
    recorded; what `build_spaces` writes and `benchmarks/bench_search.py` searches."""
    q = cfg.search
    if q.space == "broad":
        space = broad_space(arm, cfg.train.epochs, spe)
    else:
        space = build_space(arm, seeds[split_arm(arm)[1]], cfg.train.epochs, spe)
    if q.bounds:
        space = with_bounds(space, q.bounds, cfg.source)
    if space.first_point() is not None:
        check_point_in_space(space, space.first_point())
    seed = arm_seed(q.search_seed, arm)
    sampler = {"name": q.sampler, "settings": sampler_settings(q.sampler, q.trials_per_arm, seed)}
    return replace(space, sampler=sampler)


def _start_ray(cfg: StudyConfig, address: str | None) -> bool:
    """Join `address`, or start a quiet local Ray on 127.0.0.1; True if this call started it (and must stop
    it)."""
    import ray

    from .preflight import auth_hint, check_cluster, probe_address

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address:
        probe_address(address)  # Ray retries a dead address for minutes
        try:
            ray.init(address=address, **quiet)
        except (
            ConnectionError,
            RuntimeError,
        ) as e:  # AuthenticationError arrives wrapped in a ConnectionError
            raise auth_hint(address, e) from None
        try:
            check_cluster(cfg, address)
        except BaseException:
            ray.shutdown()
            raise
        return False
    ray.init(
        address="local",  # a new local Ray, even when a `ray start --head` cluster runs on this machine
        num_cpus=cfg.resources.num_cpus,
        num_gpus=cfg.resources.num_gpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        **quiet,
    )
    return True


def run_study(
    study: str | Path | StudyConfig | None = None,
    resume: str | Path | None = None,
    address: str | None = None,
    allow_failed: bool = False,
    echo: Callable[[str], None] = log.info,
    progress: bool = False,
) -> Path:
    """Run (or resume) a study and return its run folder.

    Args:
        study: a study file, a `StudyConfig`, or None for the default (digits) study.
        resume: a run folder from an earlier, interrupted call: finished trials are kept, the rest run.
        address: join an existing Ray cluster ("host:port" or "auto") instead of starting a local Ray.
        allow_failed: go on when the range test's sanity check fails.
        echo: where progress lines go (the CLI passes print): a line per range-test sweep, per range test,
            per finished trial (with counts and time left) and at the end.
        progress: tqdm bars for the range-test sweeps instead of their lines (the CLI: when on a terminal).

    Example:
        >>> run_dir = run_study("studies/smoke.toml")
        >>> load_run(run_dir).leaderboard
    """
    start = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "study.toml").exists():
            raise FileNotFoundError(f"{run_dir} is not a run folder: it has no study.toml.")
        with run_lock(run_dir):
            cfg, data = _prepare(run_dir, study, allow_failed, address, echo)
            return _run_stages(cfg, run_dir, data, address or cfg.ray_address, echo, start, progress)
    cfg, data = _prepare(None, study, allow_failed, address, echo)
    run_dir = new_run_dir(cfg)
    with run_lock(run_dir):
        if cfg.source != "<defaults>":
            shutil.copy(cfg.source, run_dir / "study.toml")
        else:
            (run_dir / "study.toml").write_text(f'name = "{cfg.name}"\n')
        echo(f"run folder {run_dir}")
        return _run_stages(cfg, run_dir, data, address or cfg.ray_address, echo, start, progress)


def _prepare(
    run_dir: Path | None,
    study: str | Path | StudyConfig | None,
    allow_failed: bool,
    address: str | None,
    echo: Callable[[str], None],
) -> tuple[StudyConfig, Any]:
    """Read and check the study before any work: every input (preflight.check_study) and, with an address, the
    cluster (joined here, so that a dead address or impossible resources fail before the range test)."""
    from .preflight import check_study

    if run_dir is not None:
        if not (run_dir / "ray" / "study").exists() and any(
            (run_dir / "ray" / s).exists() for s in ("search", "final")
        ):
            # sched_search 0.1 ran the search and the final re-runs as two Tune experiments; this one cannot
            # restore them, and starting afresh would overwrite their tables.
            raise ValueError(
                f"{run_dir} was written by an older sched_search (ray/search and ray/final experiments), "
                "which this version cannot resume without losing its finished trials; "
                "start a new study instead."
            )
        cfg = load_study(run_dir / "study.toml")
        cfg = replace(cfg, source=str(run_dir / "study.toml"))
        echo(f"resuming {run_dir}")
    else:
        cfg = study if isinstance(study, StudyConfig) else load_study(study)
    if allow_failed:
        cfg = replace(cfg, range_test=replace(cfg.range_test, allow_failed=True))
    data = check_study(cfg)
    address = address or cfg.ray_address
    if address:
        _start_ray(cfg, address)
    return cfg, data


def _run_stages(
    cfg: StudyConfig,
    run_dir: Path,
    data: Any,
    address: str | None,
    echo: Callable[[str], None],
    start: float,
    progress: bool = False,
) -> Path:
    """The stages of `run_study` in order, in a locked run folder."""
    import ray

    from .data import data_steps

    spe = data_steps(data, cfg.train.batch_size)
    tensors = isinstance(data, TensorData)
    resolved = {
        "study": cfg.to_dict(),
        "steps_per_epoch": spe,
        "n_train": len(data.x_train) if tensors else None,
        "n_val": len(data.y_val) if tensors else None,
        "metric": metric_name(cfg.train.metric),
        "metric_mode": metric_mode(cfg.train),
        "loss": cfg.train.loss,
        # always predicting the most frequent validation class: a baseline at or below this learned nothing
        "chance_accuracy": float(data.y_val.bincount().max()) / len(data.y_val)
        if tensors and cfg.train.metric == "accuracy"
        else None,
        "version": _version(),
    }
    write_json(run_dir / "resolved_config.json", resolved)
    # Tune saves its experiment state at most every 10 s by default, so a kill would lose every trial of a
    # short study; every second keeps a crash's loss to the trials in flight and those finished in the last
    # second.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # a broad space has nothing to seed: no range test at all
    seeds = range_tests(cfg, run_dir, echo, data, progress) if cfg.search.space == "seeded" else {}
    spaces = build_spaces(cfg, seeds, run_dir, spe)
    t0 = time.perf_counter()
    started = _start_ray(cfg, address)
    ray_started = time.perf_counter()
    try:
        # tensors go once into the object store (a list, so Tune passes the ref, not the value); loader data
        # is made by each worker from the study's factory (trial.worker_data)
        data_ref = [ray.put(data)] if tensors else None
        records = run_trials(cfg, run_dir, spaces, data_ref, echo)
    finally:
        ray_stopping = time.perf_counter()
        if started:
            ray.shutdown()
        ray_stopped = time.perf_counter()
    trials, epochs = tables_from_rows(records)
    for path in (run_dir / "trials.parquet", run_dir / "epochs.parquet"):
        path.unlink(missing_ok=True)  # the Ray results are the full record: rewrite without stale rows
    append_tables(run_dir, trials, epochs)
    end = time.perf_counter()
    write_json(
        run_dir / "timing.json",
        {
            "range_tests_s": t0 - start,
            "ray_start_s": ray_started - t0,
            "ray_stop_s": ray_stopped - ray_stopping,
            "trials_wall_s": end - t0,
            "study_wall_s": end - start,
            "range_test_trial_equivalents": range_test_cost(run_dir, cfg.train.epochs, spe),
        },
    )
    from .report import write_verdict
    from .results import load_run

    write_verdict(load_run(run_dir))
    echo(f"study done in {end - t0:.1f} s of trials; tables in {run_dir}")
    return run_dir


def _version() -> str:
    from . import __version__

    return __version__


__all__ = ["StudyAborted", "run_study"]
