"""What a budget buys: the study raced at several budgets, each against the full study (`budget = "full"`).

Run on demand (CPU-heavy; not in CI):
``python benchmarks/bench_budget.py STUDY.toml --budgets 28 40 [--reps 3] [--full RUN_DIR] [--out FILE]``
(for studies/regression.toml put examples/ on PYTHONPATH).

Per budget and repetition r, the whole study runs as `python -m sched_search study --budget B` would
(`study.run_study`, one Ray for all), with `search_seed` r (the samplers' seeds) and its training seeds moved
by r x their number (r = 1: seeds [3, 4, 5] for [0, 1, 2]): a race whose rounds run no search trial is
otherwise the same run each time, and the seeds' noise is what can change its calls. Per run: the
recommended arm and its config, whether that arm is in the full study's top group (`--full`: a finished full
run folder; else the full study runs once first, on the study's own seeds), the recommended config's mean
test metric over its final runs and over 3 unseen seeds (`bench_search.held_out`, trained here, one thread),
the trainings spent (every run's epochs over the study's, a run shared by two names once, and the range tests'
steps), and every baseline's mean val metric where the race kept it to the end. Prints one table (mean and
spread over repetitions) and writes every number to `--out`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_search import held_out

from sched_search.results import load_run, read_plan
from sched_search.study.driver import run_study
from sched_search.study.search import trial_settings
from sched_search.study.studyfile import load_study
from sched_search.training.data import load_data
from sched_search.training.models import IMAGE_MODELS


def spent(run_dir: Path, epochs: int) -> float:
    """Trainings a finished run folder spent: its runs' epochs over the study's (a shared run once), and the
    range tests."""
    trials = load_run(run_dir).trials
    if "shared_from" in trials.columns:
        trials = trials[trials["shared_from"].isna()]
    timing = json.loads((run_dir / "timing.json").read_text())
    return trials["budget_epochs"].sum() / epochs + sum(timing["range_test_trial_equivalents"].values())


def outcome(run_dir: Path, epochs: int, top_group: list[str] | None, test: Any) -> dict[str, Any]:
    """One run folder's numbers for the table (`test`: a config's held-out test metric)."""
    run = load_run(run_dir)
    v = run.verdict
    arm = v["recommended"]
    finals = run.trials[(run.trials["stage"] == "final") & (run.trials["budget"] == 1.0)]
    config = next((c for c in run.final_configs if c.get("arm") == arm), {})
    plan = read_plan(run_dir) or {}
    return {
        "run_dir": str(run_dir),
        "recommended": arm,
        "config": {k: config[k] for k in ("max_lr", "weight_decay", "lr") if k in config},
        "in_full_top_group": None if top_group is None else arm in top_group,
        "test_metric": float(finals[finals["arm"] == arm]["test_metric"].mean()),
        "held_out_test": test(config),
        "trainings": spent(run_dir, epochs),
        "wall_s": json.loads((run_dir / "timing.json").read_text())["study_wall_s"],
        "baselines": {b: v["arms"][b]["mean"] for b in v["baselines"]},
        "stopped": sorted(plan.get("stopped", {})),
        "not_run": plan.get("not_run", []),
    }


def _spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.4g}" + (f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("study", help="a study file")
    p.add_argument("--budgets", nargs="+", type=float, required=True, help="budgets in trainings")
    p.add_argument("--reps", type=int, default=3, help="repetitions per budget (search_seed 0..reps-1)")
    p.add_argument("--full", default=None, help="a finished run folder of the study at budget = 'full'")
    p.add_argument("--runs-dir", default="runs/bench_budget", help="where the run folders go")
    p.add_argument("--out", default="bench_budget.json", help="every number, as JSON")
    args = p.parse_args(argv)
    cfg = replace(load_study(args.study), runs_dir=args.runs_dir)
    epochs = cfg.train.epochs

    def quiet(line: str) -> None:  # the table is the output
        pass

    data, cache = _data(cfg), {}

    def test(config: dict[str, Any]) -> float:  # the recommended config, as a trial runs it
        trained = {k: v for k, v in config.items() if k not in ("seed", "stage", "budgets", "source_trial")}
        return held_out(cfg, data, {**trial_settings(cfg), "_threads": 1, **trained}, cache)

    full_dir = Path(args.full) if args.full else run_study(cfg, echo=quiet, budget="full")
    full = outcome(full_dir, epochs, None, test)
    top = load_run(full_dir).verdict["top_group"]
    rows: dict[str, list[dict[str, Any]]] = {"full": [full]}
    for budget in args.budgets:
        for rep in range(args.reps):
            t0 = time.perf_counter()
            seeds = [s + rep * len(cfg.search.seeds) for s in cfg.search.seeds]
            run_cfg = replace(cfg, search=replace(cfg.search, search_seed=rep, seeds=seeds))
            run_dir = run_study(run_cfg, echo=quiet, budget=budget)
            rows.setdefault(f"{budget:g}", []).append(outcome(run_dir, epochs, top, test))
            print(f"budget {budget:g} rep {rep}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("| budget | trainings | recommended (runs) | in full top group | test | held-out test | wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, group in rows.items():
        arms = statistics.multimode([r["recommended"] for r in group])
        in_top = [r["in_full_top_group"] for r in group if r["in_full_top_group"] is not None]
        print(
            f"| {name} | {_spread([r['trainings'] for r in group])} | {', '.join(arms)} ({len(group)}) | "
            f"{f'{sum(in_top)}/{len(in_top)}' if in_top else 'reference'} | "
            f"{_spread([r['test_metric'] for r in group])} | "
            f"{_spread([r['held_out_test'] for r in group])} | "
            f"{_spread([r['wall_s'] for r in group])} |"
        )
    Path(args.out).write_text(
        json.dumps({"study": args.study, "full_top_group": top, "runs": rows}, indent=1)
    )
    return 0


def _data(cfg):
    """The study's data, as its trials load it (tensor data, or the factory's loaders)."""
    d = cfg.data
    image = cfg.model.name in IMAGE_MODELS
    return load_data(d.name, root=d.root, image=image, train_fraction=d.train_fraction, **d.options)


if __name__ == "__main__":
    raise SystemExit(main())
