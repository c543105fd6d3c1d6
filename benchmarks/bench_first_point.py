"""Where should a seeded arm's first point put its peak LR? The first point over a grid of the range test's
readings.

Run on demand (CPU-heavy; not in CI):
``python benchmarks/bench_first_point.py STUDY.toml [--arms cosine-adamw ...] [--seeds 0 1]
[--out bench_first_point.json]`` (for studies/regression.toml put examples/ on PYTHONPATH).

The study's range test runs once per optimizer family (`bench_search.range_seeds`, as `study.range_tests`
runs it). Per arm, its seeded space's first point (`study.arm_space(...).first_point()`, the trial the study
enqueues first) is trained for the study's full epochs by the study's own trainer (`study.trial.train_trial`),
once per seed, with max_lr replaced by each point of a grid of the readings on the arm's LR scale (its spec's
`seed`; schedule-free SGD's is SGDW's x10): the suggestion (min-loss LR / 3), the min-loss LR, the geometric
mean of the min-loss LR and the divergence LR, the divergence LR, and 3x and 10x the min-loss LR (the
schedulefree README puts schedule-free AdamW's LR at 1-10x a scheduled AdamW's). Every other value is the
first point's. Prints arm x grid point -> mean ± sd of the final val metric and of the test metric over the
seeds, and writes every number to `--out`, with each run's val metric per epoch (`curve`) and the epochs where
early stopping may judge it (`judged`), which `bench_rungs.py` reads.

`--weight-decays 0 1e-4 1e-3 ...` trains a second grid per arm: the first point (its max_lr included) with its
weight decay replaced by each value, to measure where the seeded weight-decay box should reach.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import optuna
import torch
from bench_search import _ms, range_seeds

from sched_search.config import metric_mode
from sched_search.lr import range_family, schedule_spec, split_arm
from sched_search.lr.spec import RangeSeed
from sched_search.study.driver import arm_space
from sched_search.study.search import trial_settings
from sched_search.study.studyfile import load_study
from sched_search.study.trial import train_trial
from sched_search.training.data import data_steps, load_data
from sched_search.training.models import IMAGE_MODELS

GRID = ("suggestion", "min_loss", "geo_mid", "divergence", "3x_min_loss", "10x_min_loss")


def grid(seed: RangeSeed, points: tuple[str, ...]) -> dict[str, float]:
    """The grid's max_lr values from a reading on the arm's LR scale (no divergence points when the curve
    never diverged)."""
    m, d = seed.min_loss_lr, seed.divergence_lr
    values = {
        "suggestion": seed.max_lr,
        "min_loss": m,
        "geo_mid": math.sqrt(m * d) if d else None,
        "divergence": d,
        "3x_min_loss": 3 * m,
        "10x_min_loss": 10 * m,
    }
    return {p: values[p] for p in points if values[p] is not None}


def train_point(cfg, data, settings: dict, config: dict, seed: int) -> dict:
    """One full training of a config: its final val metric, val loss and test metric."""
    rows = list(train_trial({**settings, **config, "seed": seed}, data, cfg.train.epochs, test=True))
    last = rows[-1]
    ok = last["status"] == "ok"
    return {
        "seed": seed,
        "status": last["status"],
        "val": last["val_metric"] if ok else math.nan,
        "val_loss": last["val_loss"] if ok else math.nan,
        "test": last.get("test_metric", math.nan) if ok else math.nan,
        "curve": [r["val_metric"] if r["status"] == "ok" else math.nan for r in rows],
        "judged": [r["epoch"] for r in rows if r["status"] == "ok" and r["cycle_epoch"] == r["epoch"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study")
    parser.add_argument("--arms", nargs="*")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--grid", nargs="+", choices=GRID, default=list(GRID[:4]))
    parser.add_argument(
        "--wide-grid-arms", nargs="*", default=["schedule_free-adamw"], help="arms given every GRID point"
    )
    parser.add_argument("--weight-decays", nargs="*", type=float, default=[], help="a weight-decay grid too")
    parser.add_argument("--out", default="bench_first_point.json")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print saved runs' tables")
    args = parser.parse_args()
    if args.table:
        for path in args.table:
            _table(json.loads(Path(path).read_text()))
        return
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_study(args.study)
    cfg = replace(cfg, search=replace(cfg.search, arms=tuple(args.arms or cfg.search.arms)))
    data = load_data(
        cfg.data.name, root=cfg.data.root, image=cfg.model.name in IMAGE_MODELS, **cfg.data.options
    )
    spe = data_steps(data, cfg.train.batch_size)
    settings = {**trial_settings(cfg), "_threads": 1}
    seeds, cost = range_seeds(cfg, data, spe)
    print(f"range tests: {json.dumps(cost)}", flush=True)
    result = {
        "study": args.study,
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "metric_mode": metric_mode(cfg.train),
        "seeds": args.seeds,
        "range_test": cost,
        "arms": {},
    }
    for arm in cfg.search.arms:
        schedule, optimizer = split_arm(arm)
        reading = schedule_spec(schedule).seed(optimizer, seeds[range_family(arm)])
        space = arm_space(cfg, seeds, arm, spe)
        first = {**space.constants(), **space.first_point()}
        points = grid(reading, tuple(GRID) if arm in args.wide_grid_arms else tuple(args.grid))
        decays = {f"wd={wd:g}": wd for wd in args.weight_decays}
        arm_out = {"first_point": first, "grid": points, "runs": {}, "wd_grid": decays, "wd_runs": {}}
        result["arms"][arm] = arm_out
        todo = [("runs", n, {**first, "max_lr": lr}) for n, lr in points.items()]
        todo += [("wd_runs", n, {**first, "weight_decay": wd}) for n, wd in decays.items()]
        for kind, name, config in todo:
            t0 = time.perf_counter()
            runs = [train_point(cfg, data, settings, config, s) for s in args.seeds]
            arm_out[kind][name] = runs
            print(
                f"{arm} {name} max_lr {config['max_lr']:.3g} wd {config['weight_decay']:.3g}: val "
                f"{_ms([r['val'] for r in runs])} test {_ms([r['test'] for r in runs])} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    _table(result)


def _table(result: dict) -> None:
    better = "lower" if result["metric_mode"] == "min" else "higher"
    print(f"\n{result['study']}  seeds {result['seeds']}  {result['date']}  ({better} is better)")
    print("arm | first max_lr | " + " | ".join(GRID) + "   (final val metric mean±sd; test below)")
    for arm, a in result["arms"].items():
        first = a["first_point"]["max_lr"]
        for kind in ("val", "test"):
            cells = " | ".join(
                _ms([r[kind] for r in a["runs"][p]]) + (f" @{a['grid'][p]:.3g}" if kind == "val" else "")
                if p in a["runs"]
                else "-"
                for p in GRID
            )
            print(f"{arm} {kind} | {first:.3g} | {cells}")
    if any(a.get("wd_runs") for a in result["arms"].values()):
        _wd_table(result)


def _wd_table(result: dict) -> None:
    decays = next(a["wd_grid"] for a in result["arms"].values() if a.get("wd_grid"))
    print("\narm | first max_lr, wd | " + " | ".join(decays) + "   (final val metric mean±sd; test below)")
    for arm, a in result["arms"].items():
        first = a["first_point"]
        for kind in ("val", "test"):
            cells = " | ".join(_ms([r[kind] for r in a["wd_runs"].get(n, [])]) for n in decays)
            print(f"{arm} {kind} | {first['max_lr']:.3g}, {first['weight_decay']:.3g} | {cells}")


if __name__ == "__main__":
    sys.exit(main())
