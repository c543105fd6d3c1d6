"""Overhead of Ray Tune + Optuna over the work itself: the same trials through the study and as a plain loop.

    python benchmarks/bench_study.py [studies/mnist1d.toml]

Runs the study (range tests excluded from the timing), then re-trains exactly the trials it ran (same configs,
same epochs, ASHA's early stops included) one after another in this process with `train_trial`, as each trial
trains them, and prints
    ratio = study wall time / (plain wall time / parallel trial slots)
i.e. how much slower each trial-core is under the study than the ideal split of the plain loop.
Target: <= 1.3x.
The study wall time is Ray's start, the trials, Ray's stop and the tables (the range tests, which run between
Ray's start and the trials, excluded); the ratio without Ray's own start and stop (which a study joining a
running cluster with `--address` does not pay) is printed too.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sched_search.study.driver import run_study
from sched_search.study.search import trial_settings
from sched_search.study.studyfile import load_study
from sched_search.study.trial import train_trial
from sched_search.training.data import load_data


def plain_loop(run_dir: Path, cfg) -> float:
    """Re-train every trial of the run sequentially, each for the epochs it ran; return the wall time."""
    data = load_data(
        cfg.data.name, root=cfg.data.root, image=cfg.model.name in ("cnn", "resnet"), **cfg.data.options
    )
    trials = pd.read_parquet(run_dir / "trials.parquet")
    finals = {(c["arm"], c["seed"]): c for c in json.loads((run_dir / "final_configs.json").read_text())}
    torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial)))
    start = time.perf_counter()
    for row in trials.to_dict("records"):
        if row["stage"] == "final":
            config = finals[(row["arm"], row["seed"])]
        else:
            config = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        config = {**trial_settings(cfg), **config, "epochs": cfg.train.epochs}
        epochs = row["budget"] * cfg.train.epochs
        rows = train_trial(config, data, epochs)
        for ran, _ in enumerate(rows, start=1):
            if ran >= row["epochs_run"]:
                break
    return time.perf_counter() - start


def main() -> None:
    study = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "studies" / "mnist1d.toml")
    cfg = load_study(study)
    run_dir = run_study(cfg, echo=lambda line: None)
    timing = json.loads((run_dir / "timing.json").read_text())
    study_s = timing["trials_wall_s"]  # Ray start, trials, Ray stop, tables: what the plain loop replaces
    plain_s = plain_loop(run_dir, cfg)
    slots = max(1, int(cfg.resources.num_cpus // cfg.resources.cpus_per_trial))
    n = len(pd.read_parquet(run_dir / "trials.parquet"))
    print(f"study: {study}  runs (trial x budget): {n}  parallel slots: {slots}")
    print(
        f"study trials wall {study_s:.1f} s | plain sequential loop {plain_s:.1f} s | "
        f"ideal parallel {plain_s / slots:.1f} s"
    )
    print(f"overhead ratio (study / ideal): {study_s / (plain_s / slots):.2f}x   target <= 1.3x")
    fixed = timing["ray_start_s"] + timing["ray_stop_s"]
    print(
        f"  of which Ray start {timing['ray_start_s']:.1f} s + stop {timing['ray_stop_s']:.1f} s; "
        f"without them: {(study_s - fixed) / (plain_s / slots):.2f}x"
    )
    print(f"whole command: {timing['study_wall_s']:.1f} s (range tests {timing['range_tests_s']:.1f} s)")
    if "range_tests_task_s" in timing:  # the sweeps as parallel Ray tasks
        print(
            f"  range-test sweeps: {timing['range_tests_task_s']:.1f} s of tasks in "
            f"{timing['range_tests_wall_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
