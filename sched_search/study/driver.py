"""The study, driver side: range tests seed per-arm Optuna spaces; one Ray Tune run (OptunaSearch + ASHA);
tables.

Stages, each resumable from the run folder:
1. range test (with weight-decay sweep) per optimizer family -> `range_test_<opt>.json/csv/png`; each sweep
   a Ray task with a trial's resources (`rangetasks.py`), so Ray starts first;
2. per-arm spaces -> `spaces.json`; one Optuna study per arm in `optuna.db` (the driver is its only writer);
3. search: `trials_per_arm` trials per arm, the same training seed, per-arm ASHA on cycle ends;
4. final: each arm's best config re-run on the same seeds over the budget ladder, and the Adam baseline;
   3 and 4 share one Tuner: an arm's final re-runs start as soon as its own search is done;
5. `trials.parquet` / `epochs.parquet`, merged as trials finish (`recorder.Recorder`), then `verdict.json`.
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

from ..config import StudyConfig, metric_mode, metric_name
from ..results import append_tables, tables_from_rows, write_json
from ..training import TensorData, data_steps
from .diskfull import DiskFull, disk_full, no_space, quiet_ray
from .interrupt import Interrupted, handling, reinstall, unwrap
from .racing import check_budget

# arm_space and range_tests are re-exported: the benchmarks and tests call them as study's stages
from .rangestage import StudyAborted, arm_space, build_spaces, range_test_cost, range_tests
from .runlock import run_lock
from .search import run_trials
from .studyfile import load_study, with_train_fraction

log = logging.getLogger(__name__)


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
    budget: float | str | None = None,
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
        budget: trainings to race with, or "full", in place of the study's `[search] budget` (the CLI's
            `--budget`); a resumed study keeps the budget it started with.

    Example:
        >>> run_dir = run_study("studies/smoke.toml")  # doctest: +SKIP
        >>> load_run(run_dir).leaderboard  # doctest: +SKIP
    """
    start = time.perf_counter()
    # the stage under way, for a full disk's line; a new study's folder is removed while still "setting up"
    where = {"stage": _SETUP}
    run_dir = None
    try:
        if resume is not None:
            run_dir = Path(resume)
            if not (run_dir / "study.toml").exists():
                raise FileNotFoundError(f"{run_dir} is not a run folder: it has no study.toml.")
            with handling(), _interrupted_in(run_dir), run_lock(run_dir):
                cfg, data = _prepare(run_dir, study, allow_failed, address, echo, budget)
                return _run_stages(
                    cfg, run_dir, data, address or cfg.ray_address, echo, start, progress, where
                )
        with handling():
            cfg, data = _prepare(None, study, allow_failed, address, echo, budget)
            run_dir = new_run_dir(cfg)
            with _interrupted_in(run_dir), run_lock(run_dir):
                if cfg.source != "<defaults>":
                    shutil.copy(cfg.source, run_dir / "study.toml")
                else:
                    (run_dir / "study.toml").write_text(f'name = "{cfg.name}"\n')
                _keep_train_fraction(cfg, run_dir / "study.toml")
                echo(f"run folder {run_dir}")
                return _run_stages(
                    cfg, run_dir, data, address or cfg.ray_address, echo, start, progress, where
                )
    except Exception as e:
        full = no_space(e)
        if full is None:
            raise
        resumable = resume is not None or where["stage"] != _SETUP
        if not resumable and run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)  # made by this call, and nothing ran in it
        raise disk_full(full, run_dir, where["stage"], resumable) from None


_SETUP = "the study's set-up"


def _keep_train_fraction(cfg: StudyConfig, kept: Path) -> None:
    """A train_fraction set outside the study file (`--train-fraction`) written into the run folder's copy,
    which a resume reads."""
    if load_study(kept).data.train_fraction == cfg.data.train_fraction:
        return
    kept.write_text(with_train_fraction(kept.read_text(encoding="utf-8"), cfg.data.train_fraction))
    if load_study(kept).data.train_fraction != cfg.data.train_fraction:
        raise ValueError(
            f"could not write train_fraction = {cfg.data.train_fraction} into {kept}: "
            "set [data] train_fraction in the study file instead."
        )


@contextlib.contextmanager
def _interrupted_in(run_dir: Path) -> Iterator[None]:
    """Name the run folder in an `Interrupted` that leaves it, so that the CLI can say what to resume."""
    try:
        yield
    except Interrupted as e:
        e.run_dir = run_dir
        raise
    except SystemError as e:  # a signal inside one of Ray's blocking calls (`interrupt.unwrap`)
        inner = unwrap(e)
        if not isinstance(inner, Interrupted):
            raise
        inner.run_dir = run_dir
        raise inner from None


def _prepare(
    run_dir: Path | None,
    study: str | Path | StudyConfig | None,
    allow_failed: bool,
    address: str | None,
    echo: Callable[[str], None],
    budget: float | str | None = None,
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
        _check_layout(run_dir)
        _check_resumed_study(run_dir, study)
        cfg = load_study(run_dir / "study.toml")
        cfg = replace(cfg, source=str(run_dir / "study.toml"))
        _check_unchanged(run_dir, cfg)
        if budget is not None:
            raise ValueError(f"--budget cannot change the budget of {run_dir}: resume it without --budget.")
        budget = _started_budget(run_dir)
        echo(f"resuming {run_dir}")
    else:
        cfg = study if isinstance(study, StudyConfig) else load_study(study)
    if allow_failed:
        cfg = replace(cfg, range_test=replace(cfg.range_test, allow_failed=True))
    if budget is not None:
        cfg = replace(cfg, search=replace(cfg.search, budget=budget))
    data = check_study(cfg)
    # the least budget needs the data's steps per epoch (the range tests' length): after the data, before work
    check_budget(cfg, data_steps(data, cfg.train.batch_size), flag=budget is not None and run_dir is None)
    address = address or cfg.ray_address
    if address:
        _start_ray(cfg, address)
    else:
        check_num_cpus(cfg)
    return cfg, data


def _started_budget(run_dir: Path) -> float | str | None:
    """The budget a run folder's study started with (`--budget` is not in its study.toml); None: unknown."""
    try:
        return json.loads((run_dir / "resolved_config.json").read_text())["study"]["search"]["budget"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# The version that moved the flat modules into sub-packages (lr, training, rangetest, results, study).
_LAYOUT_VERSION = (0, 5)


def _check_layout(run_dir: Path) -> None:
    """Ray Tune's saved searcher names our classes by module path; those of a version before the sub-packages
    no longer import, so such a run folder is refused before anything touches it."""
    resolved = run_dir / "resolved_config.json"
    if not (run_dir / "ray" / "study").exists() or not resolved.is_file():
        return  # nothing pickled yet: a resume starts the Tuner afresh
    try:
        written = str(json.loads(resolved.read_text()).get("version", "0"))
    except (json.JSONDecodeError, AttributeError):
        return  # a damaged resolved_config.json is rewritten by the resume; Tune's restore has its own errors
    if tuple(int(x) for x in written.split(".")[:2] if x.isdigit()) < _LAYOUT_VERSION:
        raise ValueError(
            f"{run_dir} was written by sched_search {written}, whose modules have since moved into "
            "sub-packages; Ray Tune's saved searcher names the old modules, so this version cannot resume "
            "it. "
            f"Finish it with sched_search {written}, or start a new study."
        )


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


# Not the study's settings: where the file was read from and where new run folders go (a resume has its
# folder), and allow_failed, which `--allow-failed` sets on the command line.
_NOT_COMPARED = {"source", "runs_dir", "[range_test] allow_failed"}


def _flat_study(cfg: StudyConfig) -> dict[str, Any]:
    """The study as resolved_config.json records it (JSON values), one entry per key: `[section] key`."""
    flat: dict[str, Any] = {}
    for key, value in json.loads(json.dumps(cfg.to_dict(), default=str)).items():
        if isinstance(value, dict):
            flat.update({f"[{key}] {k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _check_unchanged(run_dir: Path, cfg: StudyConfig) -> None:
    """A resumed study is the one that started: Tune's restored trials keep their old settings, so an edit
    of study.toml after the start would mix two studies (and never finish). resolved_config.json records
    the study as it started; a folder without one has run nothing yet."""
    try:
        recorded = json.loads((run_dir / "resolved_config.json").read_text())["study"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    was = _flat_study(StudyConfig(name=cfg.name))  # a key the recording version did not have: its default
    for key, value in recorded.items():
        if isinstance(value, dict):
            was.update({f"[{key}] {k}": v for k, v in value.items()})
        else:
            was[key] = value
    now = _flat_study(cfg)
    changed = [
        f"{key} {was[key]!r} -> {now[key]!r}"
        for key in now
        if key not in _NOT_COMPARED and key in was and was[key] != now[key]
    ]
    if changed:
        raise ValueError(
            f"{run_dir / 'study.toml'} changed after the study started ({'; '.join(changed)}): --resume "
            "finishes the study as it started. Undo the edit to resume it, or start a new study with it: "
            f"python -m sched_search study {run_dir / 'study.toml'}"
        )


def resolved_config(
    cfg: StudyConfig,
    steps_per_epoch: int,
    input_shape: tuple[int, ...] | None,
    num_outputs: int,
    n_train: int | None,
    n_val: int | None,
    chance_accuracy: float | None,
) -> dict[str, Any]:
    """resolved_config.json: the study as run, with what the data told (the snippet's toy batch has the
    model's `input_shape` and `num_outputs`; `n_train`/`n_val` None for loader data)."""
    return {
        "study": cfg.to_dict(),
        "steps_per_epoch": steps_per_epoch,
        "input_shape": list(input_shape) if input_shape else None,
        "num_outputs": num_outputs,
        "n_train": n_train,
        "n_val": n_val,
        "metric": metric_name(cfg.train.metric),
        "metric_mode": metric_mode(cfg.train),
        "loss": cfg.train.loss,
        "chance_accuracy": chance_accuracy,
        "version": _version(),
    }


def _run_stages(
    cfg: StudyConfig,
    run_dir: Path,
    data: Any,
    address: str | None,
    echo: Callable[[str], None],
    start: float,
    progress: bool = False,
    where: dict[str, str] | None = None,
) -> Path:
    """The stages of `run_study` in order, in a locked run folder; `where["stage"]`: the one under way."""
    import ray

    from ..training import data_steps

    where = where if where is not None else {}
    spe = data_steps(data, cfg.train.batch_size)
    write_json(run_dir / "resolved_config.json", _resolved_from_data(cfg, data, spe))
    _tune_defaults()
    _drop_unreadable_tables(run_dir, echo)
    t0 = time.perf_counter()
    started = _start_ray(cfg, address)  # before the range tests: their sweeps are Ray tasks
    ray_started = time.perf_counter()
    stage: dict[str, float] = {}
    try:
        # tensors go once into the object store (a list, so Tune passes the ref, not the value), for the range
        # tests' tasks and the trials alike; loader data is made by each worker from the study's factory
        # (trial.worker_data)
        data_ref = [ray.put(data)] if isinstance(data, TensorData) else None
        # a broad space has nothing to seed: no range test at all
        where["stage"] = "the range tests"
        seeds = (
            range_tests(cfg, run_dir, echo, data, progress, data_ref, stage)
            if cfg.search.space == "seeded"
            else {}
        )
        spaces = build_spaces(cfg, seeds, run_dir, spe)
        trials_start = time.perf_counter()
        where["stage"] = "the trials (Ray Tune)"
        with quiet_ray():
            records = run_trials(cfg, run_dir, spaces, data_ref, echo, seeds, spe)
        where["stage"] = "the tables and the verdict"
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
    marks = {"t0": t0, "ray_started": ray_started, "trials_start": trials_start, "ray_stopping": ray_stopping,
             "ray_stopped": ray_stopped, "end": end}  # fmt: skip
    write_json(run_dir / "timing.json", _timing(cfg, run_dir, spe, start, marks, stage))
    _write_verdict(run_dir)
    echo(f"study done in {end - trials_start:.1f} s of trials; tables in {run_dir}")
    return run_dir


def _resolved_from_data(cfg: StudyConfig, data: Any, steps_per_epoch: int) -> dict[str, Any]:
    """`resolved_config`, with what the data tells: its shapes, sizes and the chance accuracy."""
    from ..training import model_shape

    tensors = isinstance(data, TensorData)
    input_shape, num_outputs = model_shape(data)
    # always predicting the most frequent validation class: a baseline at or below this learned nothing
    chance = (
        float(data.y_val.bincount().max()) / len(data.y_val)
        if tensors and cfg.train.metric == "accuracy"
        else None
    )
    return resolved_config(
        cfg,
        steps_per_epoch,
        input_shape,
        num_outputs,
        n_train=len(data.x_train) if tensors else None,
        n_val=len(data.y_val) if tensors else None,
        chance_accuracy=chance,
    )


def _tune_defaults() -> None:
    # Tune saves its experiment state at most every 10 s by default, so a kill would lose every trial of a
    # short study; every second keeps a crash's loss to the trials in flight and those finished in the last
    # second.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # Tune logs every failed attempt's full traceback (a factory that always raises: six of them); the
    # Recorder prints the first once, a line per failed trial, and every traceback goes to errors/.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def _timing(
    cfg: StudyConfig,
    run_dir: Path,
    steps_per_epoch: int,
    start: float,
    marks: dict[str, float],
    stage: dict[str, float],
) -> dict[str, float]:
    """timing.json: where the study's wall time went, from the clock `marks` of `_run_stages`."""
    m = marks
    return {
        "prepare_s": m["t0"] - start,  # checks before any work, the run folder
        "ray_start_s": m["ray_started"] - m["t0"],
        "range_tests_s": m["trials_start"] - m["ray_started"],  # the range-test stage and the spaces
        # the sweeps run by this call (none on a resume that found them): the stage's wall time and the
        # sum of its tasks' times (their ratio: the sweeps' parallelism)
        **stage,
        "ray_stop_s": m["ray_stopped"] - m["ray_stopping"],
        # Ray's start, the trials, Ray's stop and the tables: what bench_study's plain loop replaces
        "trials_wall_s": (m["ray_started"] - m["t0"]) + (m["end"] - m["trials_start"]),
        "study_wall_s": m["end"] - start,
        "range_test_trial_equivalents": range_test_cost(run_dir, cfg.train.epochs, steps_per_epoch),
    }


def _write_verdict(run_dir: Path) -> None:
    from ..results import load_run, write_verdict

    run = load_run(run_dir, decide_verdict=True)  # a resumed folder may hold an earlier verdict.json
    if run.unfinished:  # Tune ended with runs missing: a verdict would judge arms on what is there by chance
        raise StudyUnfinished(
            f"{run.unfinished} after Ray Tune ended; no verdict written. "
            f"Resume with: python -m sched_search study --resume {run_dir}"
        )
    write_verdict(run)


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
    from .. import __version__

    return __version__


__all__ = [
    "DiskFull",
    "StudyAborted",
    "StudyUnfinished",
    "arm_space",
    "range_test_cost",
    "range_tests",
    "resolved_config",
    "run_study",
]
