"""Does the range test's seeding beat a blind search at equal compute? The study's search, seeded vs broad.

Run on demand (CPU-heavy; not in CI):
``python benchmarks/bench_search.py STUDY.toml [--reps 5] [--arms one_cycle-adamw ...] [--trials 16]
[--sampler tpe] [--out bench_search.json]``
(for studies/regression.toml put examples/ on PYTHONPATH).

Per arm and repetition r (r = the sampler seed and the search trials' training seed, as `search_seed` in a
study), both sides run the study's own search: its sampler (`sampler.build_sampler`, seeded per arm), its
spaces (`study.arm_space`: seeded from the range test with the first point enqueued, or `space = "broad"`),
and its early stopping (ASHA's own rung rule, `ray.tune.schedulers.async_hyperband._Bracket`, on
`cycle_epoch`, trials reporting at the rungs as `trial._search_epochs` does; a stopped trial is told to Optuna
with its last value, as `OptunaSearch` tells it). Trials run one after another in this process on one thread:
the same decisions as the study's Tuner with `max_concurrent_per_arm = 1`, without Ray's overhead.

Equal compute: the range test (run once per optimizer family) costs c trial-equivalents (its optimizer steps
over one full trial's, rounded up); seeded's best after k trials is set against broad's after k + c. "best" is
the study's rule (`routing.ArmsSearcher`): the best final val metric among trials that ran all epochs (stopped
ones only if none did). The best config at the study's `trials_per_arm` (broad: + c) is re-trained on 3 unseen
seeds for its test metric. Prints a table (mean ± sd over repetitions) and writes every number to `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import optuna
import torch
from ray.tune.schedulers.async_hyperband import _Bracket

from sched_search.config import metric_mode
from sched_search.lr import range_family
from sched_search.rangetest.sweep import RangeTestConfig, run_range_test, sweep_steps
from sched_search.study.driver import arm_space
from sched_search.study.sampler import arm_seed, build_sampler
from sched_search.study.search import trial_settings
from sched_search.study.space import seed_from_summary, suggest
from sched_search.study.studyfile import load_study
from sched_search.study.trial import train_trial
from sched_search.training.data import data_steps, load_data
from sched_search.training.models import IMAGE_MODELS

KS = (1, 2, 4, 8, 16)
HELD_OUT_SEEDS = (1000, 1001, 1002)  # never a search seed nor one of a study's final seeds


class _Trial:  # what ASHA's bracket keys its rungs by
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def range_seeds(cfg, data, spe: int) -> tuple[dict, dict]:
    """The study's range test per optimizer family (as `study.range_tests` runs it); its cost per family."""
    rt = cfg.range_test
    num_steps = rt.num_steps or sweep_steps(spe)
    seeds, cost = {}, {}
    for opt in sorted({range_family(a) for a in cfg.search.arms}):
        t0 = time.perf_counter()
        sweep = run_range_test(
            data,
            cfg.model.name,
            opt,
            RangeTestConfig(start_lr=rt.start_lr, end_lr=rt.end_lr, num_steps=num_steps),
            rt.weight_decays,
            cfg.train.batch_size,
            model_kwargs=dict(cfg.model.options),
            device=cfg.train.device,
            loss=cfg.train.loss,
        )
        summary = sweep.summary()
        steps = sum(len(r.lrs) for r in sweep.results)
        seeds[opt] = seed_from_summary(opt, summary)
        cost[opt] = {
            "steps": steps,
            "seconds": time.perf_counter() - t0,
            "trial_equivalents": steps / (cfg.train.epochs * spe),
            "verdict": summary["verdict"],
            "min_loss_lr": summary["min_loss_lr"],
            "divergence": summary["regions"]["divergence"],
            "weight_decay": summary["weight_decay"]["chosen"],
        }
    return seeds, cost


def run_trial(config: dict, data, rungs: list[int], bracket: _Bracket | None, trial_id: str, sign: float):
    """One search trial as the study runs it: epochs, reports at rungs (on cycle ends), ASHA's decision."""
    at_cycle_end = -math.inf * sign
    last = None
    epochs = 0
    pending = list(rungs)
    for row in train_trial(config, data, config["epochs"]):
        epochs = row["epoch"]
        if row["cycle_epoch"] == row["epoch"]:
            at_cycle_end = row["val_metric"]
        last = row
        at_rung = bool(pending) and row["cycle_epoch"] >= pending[0]
        while pending and row["cycle_epoch"] >= pending[0]:
            pending.pop(0)
        if row["status"] != "ok":
            break
        judged = at_rung and bracket is not None and row["epoch"] < config["epochs"]
        if judged and bracket.on_result(_Trial(trial_id), row["cycle_epoch"], sign * at_cycle_end) == "STOP":
            return last, epochs, "stopped"
    return last, epochs, "ok" if last and last["status"] == "ok" else "failed"


def search(cfg, space, data, settings: dict, rep: int, n_trials: int) -> list[dict]:
    """The arm's search for one repetition: `n_trials` trials in order, each with its outcome."""
    mode = metric_mode(cfg.train)
    sign = 1.0 if mode == "max" else -1.0
    sampler = build_sampler(cfg.search.sampler, cfg.search.trials_per_arm, arm_seed(rep, space.arm))
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize", sampler=sampler)
    if space.first_point() is not None:
        study.enqueue_trial(space.first_point())
    e = cfg.early_stopping
    bracket = _Bracket(e.grace_period, cfg.train.epochs, e.reduction_factor, s=0) if e.enabled else None
    out = []
    for i in range(n_trials):
        trial = study.ask()
        constants = suggest(trial, space.to_dict())
        config = {**settings, **constants, **trial.params, "seed": rep}
        last, epochs, status = run_trial(config, data, settings["_rungs"], bracket, str(i), sign)
        value = last["val_metric"]
        try:
            study.tell(trial, value)
        except ValueError:  # NaN: OptunaSearch logs it and the trial stays running
            pass
        out.append(
            {
                "params": dict(trial.params),
                "val": value,
                "val_loss": last["val_loss"],
                "epochs": epochs,
                "status": status,
                "complete": status == "ok" and epochs >= cfg.train.epochs,
            }
        )
    return out


def best_of(trials: list[dict], sign: float) -> dict | None:
    """`routing.ArmsSearcher`'s choice: full-budget trials first, then the val metric, then lower val loss."""
    ok = [t for t in trials if t["status"] != "failed"]
    if not ok:
        return None
    return max(ok, key=lambda t: (t["complete"], sign * t["val"], -t["val_loss"]))


def held_out(cfg, data, config: dict, cache: dict) -> float:
    """A trial config's (its settings, constants and values, no seed) mean test metric over `HELD_OUT_SEEDS`,
    full budget, trained here; `cache` keeps it per config."""
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in cache:
        values = []
        for seed in HELD_OUT_SEEDS:
            rows = list(train_trial({**config, "seed": seed}, data, cfg.train.epochs, test=True))
            values.append(rows[-1].get("test_metric", math.nan) if rows[-1]["status"] == "ok" else math.nan)
        cache[key] = statistics.fmean(values)
    return cache[key]


def _ms(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g}±{sd:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--arms", nargs="*")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--sampler", help="override the study's [search] sampler")
    parser.add_argument("--out", default="bench_search.json")
    parser.add_argument("--sides", nargs="+", default=["seeded", "broad"], choices=["seeded", "broad"])
    parser.add_argument("--first-rep", type=int, default=0, help="run repetitions first-rep.. (split runs)")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print saved runs' table, reps merged")
    args = parser.parse_args()
    if args.table:
        result = merge([json.loads(Path(p).read_text()) for p in args.table])
        _table(result, [k for k in KS if any(str(k) in r["best_at"] for r in _all_reps(result))])
        return
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_study(args.study)
    search_cfg = replace(cfg.search, arms=tuple(args.arms or cfg.search.arms))
    if args.sampler:
        search_cfg = replace(search_cfg, sampler=args.sampler)
    cfg = replace(cfg, search=search_cfg)
    data = load_data(
        cfg.data.name, root=cfg.data.root, image=cfg.model.name in IMAGE_MODELS, **cfg.data.options
    )
    spe = data_steps(data, cfg.train.batch_size)
    settings = {**trial_settings(cfg), "_threads": 1}
    sign = 1.0 if metric_mode(cfg.train) == "max" else -1.0
    seeds, cost = range_seeds(cfg, data, spe)
    print(f"range tests: {json.dumps(cost)}", flush=True)
    ks = [k for k in KS if k <= args.trials]
    k_study = cfg.search.trials_per_arm
    result = {
        "study": args.study,
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "sampler": cfg.search.sampler,
        "metric_mode": metric_mode(cfg.train),
        "trials_per_arm": k_study,
        "reps": args.reps,
        "range_test": cost,
        "arms": {},
    }
    cache: dict = {}
    for arm in cfg.search.arms:
        charge = math.ceil(cost[range_family(arm)]["trial_equivalents"] - 1e-9)
        sides = {
            "seeded": (arm_space(cfg, seeds, arm, spe), args.trials, 0),
            "broad": (
                arm_space(replace(cfg, search=replace(cfg.search, space="broad")), {}, arm, spe),
                args.trials + charge,
                charge,
            ),
        }
        arm_out = {
            "charge_trials": charge,
            "sides": {side: {"space": sp.to_dict(), "reps": []} for side, (sp, _, _) in sides.items()},
        }
        result["arms"][arm] = arm_out
        # both sides per repetition: a run cut short still compares like with like
        for rep in range(args.first_rep, args.first_rep + args.reps):
            for side, (space, n, extra) in sides.items():
                if side not in args.sides:
                    continue
                t0 = time.perf_counter()
                trials = search(cfg, space, data, settings, rep, n)
                curve = {k: best_of(trials[: k + extra], sign) for k in ks}
                chosen = best_of(trials[: k_study + extra], sign)
                config = {**settings, **space.constants(), **chosen["params"]} if chosen else None
                test = held_out(cfg, data, config, cache) if config else math.nan
                row = {
                    "rep": rep,
                    "best_at": {k: (b["val"] if b else None) for k, b in curve.items()},
                    "failed": sum(t["status"] == "failed" for t in trials[: k_study + extra]),
                    "stopped": sum(t["status"] == "stopped" for t in trials),
                    "chosen": chosen["params"] if chosen else None,
                    "held_out_test": test,
                    "trials": trials,
                    "seconds": time.perf_counter() - t0,
                }
                arm_out["sides"][side]["reps"].append(row)
                print(
                    f"{arm} {side} rep {rep}: best@k {row['best_at']} test {test:.4g} "
                    f"({row['seconds']:.0f} s)",
                    flush=True,
                )
                Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    _table(result, ks)


def _at(best_at: dict, k: int) -> float | None:
    return best_at.get(k, best_at.get(str(k)))


def _all_reps(result: dict) -> list[dict]:
    return [r for a in result["arms"].values() for s in a["sides"].values() for r in s["reps"]]


def merge(results: list[dict]) -> dict:
    """Runs of one study split over processes (`--first-rep`): their repetitions side by side."""
    out = json.loads(json.dumps(results[0]))
    for other in results[1:]:
        for arm, a in other["arms"].items():
            if arm not in out["arms"]:
                out["arms"][arm] = a
                continue
            for side, s in a["sides"].items():
                out["arms"][arm]["sides"][side]["reps"] += s["reps"]
    out["reps"] = max(len(s["reps"]) for a in out["arms"].values() for s in a["sides"].values())
    return out


def _table(result: dict, ks: list[int]) -> None:
    k_study = result["trials_per_arm"]
    print(f"\n{result['study']}  sampler {result['sampler']}  reps {result['reps']}  {result['date']}")
    better = "lower" if result.get("metric_mode") == "min" else "higher"
    print(f"best-so-far val metric at k trials ({better} is better; broad at k + c trials, c the range")
    print("test's cost in trials), mean±sd over repetitions")
    head = " | ".join(f"k={k}" for k in ks)
    print(f"arm | side | {head} | held-out test @{k_study} | failed @{k_study}")
    for arm, a in result["arms"].items():
        for side, s in a["sides"].items():
            reps = s["reps"]
            cells = " | ".join(_ms([_at(r["best_at"], k) for r in reps]) for k in ks)
            label = side if side == "seeded" else f"broad (+{a['charge_trials']})"
            failed = sum(r["failed"] for r in reps)
            print(f"{arm} | {label} | {cells} | {_ms([r['held_out_test'] for r in reps])} | {failed}")


if __name__ == "__main__":
    sys.exit(main())
