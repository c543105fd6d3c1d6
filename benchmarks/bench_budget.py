"""What a budget buys: the study raced at several budgets, each against the full study (`budget = "full"`).

Run on demand (CPU-heavy; not in CI):
``python benchmarks/bench_budget.py STUDY.toml --budgets 28 40 [--reps 3] [--full RUN_DIR] [--out FILE]``
(for studies/regression.toml put examples/ on PYTHONPATH).

Per budget and repetition r (r = `search_seed`: the samplers' seeds), the whole study runs as
`python -m sched_search study --budget B` would (`study.run_study`, one Ray for all). Per run: the
recommended arm and its config, whether that arm is in the full study's top group (`--full`: a finished full
run folder; else the full study runs once first), the recommended arm's mean test metric over its final runs,
the trainings spent (every run's epochs over the study's, and the range tests' steps), and every baseline's
mean val metric where the race kept it to the end. Prints one table (mean and spread over repetitions) and
writes every number to `--out`. The recommended arm's test metric is on the finals' seeds, not on unseen ones.
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

from sched_search.results import load_run, read_plan
from sched_search.study.driver import run_study
from sched_search.study.studyfile import load_study


def spent(run_dir: Path, epochs: int) -> float:
    """Trainings a finished run folder spent: its runs' epochs over the study's, and the range tests."""
    run = load_run(run_dir)
    timing = json.loads((run_dir / "timing.json").read_text())
    return run.trials["budget_epochs"].sum() / epochs + sum(timing["range_test_trial_equivalents"].values())


def outcome(run_dir: Path, epochs: int, top_group: list[str] | None) -> dict[str, Any]:
    """One run folder's numbers for the table."""
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

    full_dir = Path(args.full) if args.full else run_study(cfg, echo=quiet, budget="full")
    full = outcome(full_dir, epochs, None)
    top = load_run(full_dir).verdict["top_group"]
    rows: dict[str, list[dict[str, Any]]] = {"full": [full]}
    for budget in args.budgets:
        for rep in range(args.reps):
            t0 = time.perf_counter()
            run_cfg = replace(cfg, search=replace(cfg.search, search_seed=rep))
            run_dir = run_study(run_cfg, echo=quiet, budget=budget)
            rows.setdefault(f"{budget:g}", []).append(outcome(run_dir, epochs, top))
            print(f"budget {budget:g} rep {rep}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("| budget | trainings | recommended (runs) | in full top group | test metric | wall s |")
    print("|---|---|---|---|---|---|")
    for name, group in rows.items():
        arms = statistics.multimode([r["recommended"] for r in group])
        in_top = [r["in_full_top_group"] for r in group if r["in_full_top_group"] is not None]
        print(
            f"| {name} | {_spread([r['trainings'] for r in group])} | {', '.join(arms)} ({len(group)}) | "
            f"{f'{sum(in_top)}/{len(in_top)}' if in_top else 'reference'} | "
            f"{_spread([r['test_metric'] for r in group])} | {_spread([r['wall_s'] for r in group])} |"
        )
    Path(args.out).write_text(
        json.dumps({"study": args.study, "full_top_group": top, "runs": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
