"""Stages 1 and 2 of a study, driver side: the range tests (every sweep a Ray task, `rangetasks.py`) and the
per-arm search spaces they seed (`spaces.json`). `study.py` runs them in order before the Tuner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import StudyConfig
from ..lr import range_family
from ..results import write_json
from ..training import LoaderData, TensorData
from .sampler import arm_seed, sampler_settings
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


class StudyAborted(RuntimeError):
    """The range test's sanity check failed; no trial was spent."""


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

    from ..training import IMAGE_MODELS
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
    from ..rangetest import choose_weight_decay
    from .rangetasks import remove_parts

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


__all__ = ["StudyAborted", "arm_space", "build_spaces", "range_test_cost", "range_tests"]
