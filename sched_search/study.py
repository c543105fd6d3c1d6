"""The study, driver side: range tests seed per-arm Optuna spaces; one Ray Tune run (OptunaSearch + ASHA);
tables.

Stages, each resumable from the run folder:
1. range test (with weight-decay sweep) per optimizer family -> `range_test_<opt>.json/csv/png`; each sweep
   a Ray task with a trial's resources (`rangetasks.py`), so Ray starts first;
2. per-arm spaces -> `spaces.json`; one Optuna study per arm in `optuna.db` (the driver is its only writer);
3. search: `trials_per_arm` trials per arm, the same training seed, per-arm ASHA on cycle ends;
4. final: each arm's best config re-run on the same seeds over the budget ladder, and the Adam baseline;
   3 and 4 share one Tuner: an arm's final re-runs start as soon as its own search is done;
5. `trials.parquet` / `epochs.parquet`, merged as trials finish (`tables.Recorder`), then `verdict.json`.
Stages 3 and 4 (the Tuner) are `search.py`; what runs inside a trial is `trial.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .arms import range_family
from .config import StudyConfig, load_study, metric_mode, metric_name
from .data import LoaderData, TensorData
from .interrupt import Interrupted, handling, reinstall
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


class StudyUnfinished(RuntimeError):
    """Ray Tune ended, but some planned runs have no result and no recorded failure: no verdict is written."""


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
    data_ref: Any = None,
    timing: dict[str, float] | None = None,
) -> dict[str, RangeSeed]:
    """Stage 1: a range test with weight-decay sweep per optimizer family; reused when already in the folder.

    Every sweep (family x weight decay) is a Ray task with a trial's resources, run in parallel where the
    trials run (`rangetasks.py`); this needs a running Ray (`run_study` starts it first). The tasks get the
    data as trials do: tensors through the object store (`data_ref`, a list holding the ref, or `data` put
    here), loader data from the study's factory called in the task; `data` None: each task loads `cfg.data`
    itself. `[range_test] num_steps = 0` sweeps `rangetest.sweep_steps` of the data (15 epochs).
    `progress`: a tqdm bar over the sweeps (on stderr); otherwise `echo` gets a line as each sweep ends.
    `timing` (when given) gets the stage's wall seconds and its tasks' sum, when any sweep ran.
    """
    import ray

    from .models import IMAGE_MODELS
    from .rangetasks import SweepTaskError, run_sweeps, task_seconds
    from .search import trial_settings

    rt = cfg.range_test
    families = sorted({range_family(arm) for arm in cfg.search.arms})
    todo = [opt for opt in families if not (run_dir / f"range_test_{opt}.json").exists()]
    if todo:
        settings = trial_settings(cfg)
        if data_ref is None and isinstance(data, TensorData):
            data_ref = [ray.put(data)]
        elif data_ref is None and data is None:
            settings["data"] = {**settings["data"], "image": cfg.model.name in IMAGE_MODELS}
        decays = sorted({float(w) for w in rt.weight_decays})
        resources = {"cpu": cfg.resources.cpus_per_trial, "gpu": cfg.resources.gpus_per_trial}
        each = f"{resources['cpu']:g} CPU, {resources['gpu']:g} GPU each"
        echo(f"range tests as Ray tasks ({each}): {', '.join(todo)} x weight decay {_g(decays)}")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo) * len(decays), desc="range tests", unit="sweep")
        t0 = time.perf_counter()
        parts: dict[str, list] = {opt: [] for opt in todo}
        sweeps = run_sweeps(run_dir, settings, data_ref, todo, decays, rt, resources)
        try:
            for part in sweeps:
                mine = parts[part.optimizer]
                mine.append(part)
                r = part.result
                if bar is not None:
                    bar.update()
                else:
                    echo(
                        f"range test {part.optimizer}: sweep {len(mine)} of {len(decays)} done (weight "
                        f"decay {r.weight_decay:g}, {len(r.lrs)} of {r.config.num_steps} steps, "
                        f"{part.seconds:.1f} s on {part.where['hostname']}, node {part.where['node_id'][:8]}"
                        f"{'; saved by an earlier run' if part.saved else ''})"
                    )
                if len(mine) == len(decays):
                    _write_range_test(cfg, run_dir, part.optimizer, mine, echo)
                    _check_range_test(cfg, run_dir, part.optimizer, echo)
        except SweepTaskError as e:
            raise StudyAborted(f"{e}. No trial was run; finished sweeps are kept for --resume.") from None
        finally:
            sweeps.close()  # a failed sweep or family cancels the other tasks now, not when garbage-collected
            if bar is not None:
                bar.close()
        if timing is not None:
            timing["range_tests_wall_s"] = time.perf_counter() - t0
            timing["range_tests_task_s"] = task_seconds(p for ps in parts.values() for p in ps)
    seeds: dict[str, RangeSeed] = {}
    for opt in families:
        summary = _check_range_test(cfg, run_dir, opt, echo, quiet=opt in todo)
        seeds[opt] = seed_from_summary(opt, summary)
    return seeds


def _write_range_test(
    cfg: StudyConfig,
    run_dir: Path,
    opt: str,
    parts: list,
    echo: Callable[[str], None],
) -> None:
    """A family's files from its sweeps: `range_test_<opt>.csv/png/json` (the JSON last: it marks the family
    done), with the data it ran on and where each sweep ran."""
    from .rangetasks import remove_parts
    from .rangetest import choose_weight_decay

    sweep = choose_weight_decay([p.result for p in parts])
    sweep.to_frame().to_csv(run_dir / f"range_test_{opt}.csv", index=False)
    sweep.plot(run_dir / f"range_test_{opt}.png")
    first = parts[0]
    spe = first.steps_per_epoch
    # What the sweep ran on: the data as the study loaded it (options included), for the record.
    source = {
        "name": cfg.data.name,
        "options": dict(cfg.data.options),
        "n_train": first.n_train,
        "steps_per_epoch": spe,
        "batch_size": cfg.train.batch_size,
        "device": cfg.train.device,
    }
    ran = sorted(
        ({"weight_decay": p.result.weight_decay, "seconds": round(p.seconds, 3), **p.where} for p in parts),
        key=lambda w: w["weight_decay"],
    )
    sweep.to_json(run_dir / f"range_test_{opt}.json", extra={"data": source, "ran_on": ran})
    remove_parts(run_dir, opt)
    s = sweep.summary()
    num_steps = first.result.config.num_steps
    echo(
        f"range test {opt}: {s['verdict']}, max_lr {s['suggested_max_lr'] or float('nan'):.3g}, "
        f"min_lr {s['suggested_min_lr'] or float('nan'):.3g} "
        f"({num_steps} steps, {num_steps / spe:.3g} epochs; {sum(p.seconds for p in parts):.1f} s of tasks)"
    )
    echo(f"range test {opt}: {_weight_decay_words(s)}")


def _check_range_test(
    cfg: StudyConfig, run_dir: Path, opt: str, echo: Callable[[str], None], quiet: bool = False
) -> dict[str, Any]:
    """The family's summary; a failed sanity check stops the study unless allow_failed (said once, unless
    `quiet`)."""
    path = run_dir / f"range_test_{opt}.json"
    summary = json.loads(path.read_text())
    if summary["verdict"] != "ok":
        reasons = "; ".join(summary["reasons"])
        if not cfg.range_test.allow_failed or summary["suggested_max_lr"] is None:
            raise StudyAborted(
                f"range test ({opt}) failed: {reasons}. No trial was run. See {path}; set [range_test] "
                "allow_failed = true (or --allow-failed) to go on anyway."
            )
        if not quiet:
            echo(f"range test {opt} failed ({reasons}); going on because allow_failed is set")
    return summary


def _g(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


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
        space = build_space(arm, seeds[range_family(arm)], cfg.train.epochs, spe)
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
        where = (
            f"{cfg.source}: ray_address = {address!r}"
            if address == cfg.ray_address
            else f"--address {address} (in place of ray_address in {cfg.source})"
        )
        probe_address(address, where=where)  # Ray retries a dead address for minutes
        try:
            ray.init(address=address, **quiet)
            reinstall()  # ray.init's SIGTERM handler exits from anywhere; ours stops Tune first
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
    reinstall()
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
        with handling(), _interrupted_in(run_dir), run_lock(run_dir):
            cfg, data = _prepare(run_dir, study, allow_failed, address, echo)
            return _run_stages(cfg, run_dir, data, address or cfg.ray_address, echo, start, progress)
    with handling():
        cfg, data = _prepare(None, study, allow_failed, address, echo)
        run_dir = new_run_dir(cfg)
        with _interrupted_in(run_dir), run_lock(run_dir):
            if cfg.source != "<defaults>":
                shutil.copy(cfg.source, run_dir / "study.toml")
            else:
                (run_dir / "study.toml").write_text(f'name = "{cfg.name}"\n')
            echo(f"run folder {run_dir}")
            return _run_stages(cfg, run_dir, data, address or cfg.ray_address, echo, start, progress)


@contextlib.contextmanager
def _interrupted_in(run_dir: Path) -> Iterator[None]:
    """Name the run folder in an `Interrupted` that leaves it, so that the CLI can say what to resume."""
    try:
        yield
    except Interrupted as e:
        e.run_dir = run_dir
        raise


def _prepare(
    run_dir: Path | None,
    study: str | Path | StudyConfig | None,
    allow_failed: bool,
    address: str | None,
    echo: Callable[[str], None],
) -> tuple[StudyConfig, Any]:
    """Read and check the study before any work: every input (preflight.check_study) and, with an address, the
    cluster (joined here, so that a dead address or impossible resources fail before the range test)."""
    from .preflight import check_num_cpus, check_study

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
        _check_resumed_study(run_dir, study)
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
    else:
        check_num_cpus(cfg)
    return cfg, data


def _check_resumed_study(run_dir: Path, study: str | Path | StudyConfig | None) -> None:
    """A resumed study is the one in its folder: another study file given with it would be ignored."""
    if study is None:
        return
    kept = (run_dir / "study.toml").read_bytes()
    if isinstance(study, StudyConfig) or not Path(study).is_file() or Path(study).read_bytes() != kept:
        raise ValueError(
            f"--resume {run_dir} runs the study in {run_dir / 'study.toml'}, but {study} was given too and "
            "differs from it: drop it to resume, or leave out --resume to start a new study with it."
        )


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
    # Tune logs every failed attempt's full traceback (a factory that always raises: six of them); the
    # Recorder prints the first once, a line per failed trial, and every traceback goes to errors/.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    _drop_unreadable_tables(run_dir, echo)
    t0 = time.perf_counter()
    started = _start_ray(cfg, address)  # before the range tests: their sweeps are Ray tasks
    ray_started = time.perf_counter()
    stage: dict[str, float] = {}
    try:
        # tensors go once into the object store (a list, so Tune passes the ref, not the value), for the range
        # tests' tasks and the trials alike; loader data is made by each worker from the study's factory
        # (trial.worker_data)
        data_ref = [ray.put(data)] if tensors else None
        # a broad space has nothing to seed: no range test at all
        seeds = (
            range_tests(cfg, run_dir, echo, data, progress, data_ref, stage)
            if cfg.search.space == "seeded"
            else {}
        )
        spaces = build_spaces(cfg, seeds, run_dir, spe)
        trials_start = time.perf_counter()
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
            "prepare_s": t0 - start,  # checks before any work, the run folder
            "ray_start_s": ray_started - t0,
            "range_tests_s": trials_start - ray_started,  # the range-test stage and the spaces
            # the sweeps run by this call (none on a resume that found them): the stage's wall time and the
            # sum of its tasks' times (their ratio: the sweeps' parallelism)
            **stage,
            "ray_stop_s": ray_stopped - ray_stopping,
            # Ray's start, the trials, Ray's stop and the tables: what bench_study's plain loop replaces
            "trials_wall_s": (ray_started - t0) + (end - trials_start),
            "study_wall_s": end - start,
            "range_test_trial_equivalents": range_test_cost(run_dir, cfg.train.epochs, spe),
        },
    )
    from .report import write_verdict
    from .results import load_run

    run = load_run(run_dir)
    if run.unfinished:  # Tune ended with runs missing: a verdict would judge arms on what is there by chance
        raise StudyUnfinished(
            f"{run.unfinished} after Ray Tune ended; no verdict written. "
            f"Resume with: python -m sched_search study --resume {run_dir}"
        )
    write_verdict(run)
    echo(f"study done in {end - trials_start:.1f} s of trials; tables in {run_dir}")
    return run_dir


def _drop_unreadable_tables(run_dir: Path, echo: Callable[[str], None]) -> None:
    """Delete a table file that cannot be read (cut short by a full disk, say): merging new trials into it
    would fail in every trial's callback, and the tables are rebuilt from Ray Tune's record at the end."""
    import pyarrow.parquet as pq

    for path in (run_dir / "trials.parquet", run_dir / "epochs.parquet"):
        if not path.exists():
            continue
        try:
            pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - whatever pyarrow says, the file cannot be merged into
            echo(f"warning: {path} is unreadable ({type(e).__name__}); rebuilding it from Ray Tune's record")
            path.unlink()


def _version() -> str:
    from . import __version__

    return __version__


__all__ = ["StudyAborted", "StudyUnfinished", "run_study"]
