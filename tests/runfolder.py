"""Run folders and tables built the way a study builds them, with known numbers and no training.

The configs come from the study's own functions (`search.final_runs`, `baseline_runs`, `ladder_runs`, merged
under `search.trial_settings` as Tune merges its param_space); each trial reports its epochs as
`trial._final_run` / `trial._search_run` report them (the rows `train.train_epochs` yields, the per-budget
keys, the history as JSON); `tables.tables_from_rows` makes the trials and epochs tables and
`tables.append_tables` writes them; resolved_config.json has the keys `study._run_stages` writes and
final_configs.json is what `search.run_trials` writes. So a column the study renames or drops breaks these
folders as it breaks a real one, instead of a hand-typed copy drifting away from it.

An arm's outcome is given per budget and per seed: a vector of per-example values (the run's `val_examples`,
its mean the val metric) or one number (a metric without per-example values).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sched_search.config import BASELINES, METRICS, StudyConfig
from sched_search.lr.arms import baseline_arm, range_family
from sched_search.results.tables import append_tables, tables_from_rows, write_json
from sched_search.results.verdict import LADDER_PREFIX, is_baseline
from sched_search.study.driver import resolved_config
from sched_search.study.rangestage import arm_space, build_spaces
from sched_search.study.search import baseline_runs, final_runs, ladder_runs, trial_settings
from sched_search.study.space import ArmSpace, RangeSeed
from sched_search.study.studyfile import load_study
from sched_search.training.objective import encode_examples

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8
SPE = 10  # steps per epoch of the made-up study
START = 1_000_000.0  # the first made-up run's finished_at (Unix seconds); each later one a second on
# one range test's result, for every optimizer family (the spaces' first points, the ladder's rungs)
SEED = RangeSeed("sgdw", max_lr=0.1, min_lr=0.01, weight_decay=1e-4, weight_decay_range=(1e-5, 1e-3),
                 min_loss_lr=0.3)  # fmt: skip
SEEDS = {"adamw": replace(SEED, optimizer="adamw"), "sgdw": SEED}
_BASELINE_NAME = {baseline_arm(name): name for name in BASELINES}  # arm -> [search] baselines name

Outcomes = dict[str, dict[float, list[Any]]]  # arm -> budget -> per seed: per-example vector or one number
# (arm, seed, budget, epochs, the seed's outcome) -> the rows train.train_epochs yields for that run
Rows = Callable[[str, int, float, int, Any], list[dict]]


def study_config(
    arms: list[str],
    n_seeds: int,
    budgets: list[float],
    metric: str = "accuracy",
    mode: str = "",
    target: float | None = None,
) -> StudyConfig:
    """studies/smoke.toml made the study of `arms` (searched ones, baselines and ladder rungs by name): those
    arms and baselines, the ladder on when a rung is among them, one search trial per arm. `metric` is a
    built-in one or a user function's name ("mae": `mymetrics:mae`, loss "mse")."""
    cfg = load_study(ROOT / "studies" / "smoke.toml")
    custom = metric not in METRICS and ":" not in metric
    train = replace(
        cfg.train,
        epochs=EPOCHS,
        metric=f"mymetrics:{metric}" if custom else metric,
        metric_mode=mode if mode != METRICS.get(metric) else "",
        loss="cross_entropy" if metric == "accuracy" else "mse",
    )
    search = replace(
        cfg.search,
        arms=tuple(a for a in arms if not (is_baseline(a) or a.startswith(LADDER_PREFIX))),
        trials_per_arm=1,
        seeds=tuple(range(n_seeds)),
        budgets=tuple(sorted(budgets)),
        baselines=tuple(_BASELINE_NAME[a] for a in arms if is_baseline(a)),
        attribution=any(a.startswith(LADDER_PREFIX) for a in arms),
    )
    return replace(cfg, train=train, search=search, target=target)


def spaces_of(cfg: StudyConfig) -> dict[str, ArmSpace]:
    """The searched arms' spaces as the study builds them (`rangestage.arm_space`) from `SEEDS`."""
    return {arm: arm_space(cfg, SEEDS, arm, SPE) for arm in cfg.search.arms}


def trial_configs(
    cfg: StudyConfig, outcomes: Outcomes, best: dict[str, dict] | None = None
) -> tuple[list[dict], list[dict]]:
    """(search configs, final configs) as Tune hands them to the trials: one search trial per searched arm,
    at `best[arm]` (default: its space's first point), and the final re-runs of that config over the budgets
    `outcomes` gives for the arm; the baselines' and the ladder's runs of the arms in `outcomes`."""
    best, spaces = best or {}, spaces_of(cfg)
    searches, finals = [], []
    seeds = {f: SEEDS[f] for f in {range_family(a) for a in spaces}}  # the range tests the study ran
    for arm, rungs in outcomes.items():
        if is_baseline(arm):
            finals += [c for c in baseline_runs(cfg, seeds, SPE) if c["arm"] == arm]
        elif arm.startswith(LADDER_PREFIX):
            finals += [c for c in ladder_runs(cfg, spaces, seeds, SPE) if c["arm"] == arm]
        else:
            space = spaces[arm]
            point = {**space.first_point(), **best.get(arm, {}), "trial_id": f"search-{arm}"}
            searched = {p.name: point[p.name] for p in space.params}
            searches.append({**searched, **space.constants()})
            # the arm's final runs report only the budgets the test gives it (a study's ladder is every arm's)
            finals += [{**c, "budgets": sorted(rungs)} for c in final_runs(cfg, {arm: space}, arm, point)]
    settings = trial_settings(cfg)
    searches = [{**settings, "seed": cfg.search.search_seed, **c} for c in searches]
    return searches, [{**settings, **c} for c in finals]


def epoch_rows(
    epochs: int,
    val_metric: float,
    val_loss: float,
    examples: Any = None,
    test_metric: float | None = None,
    wall_time: float = 1.0,
    metric_step: float = 0.0,
    loss_step: float = 0.0,
) -> list[dict]:
    """The rows `train.train_epochs(..., test=True)` yields for a run of `epochs` epochs ending at
    `val_metric` / `val_loss`: epoch e has val_metric - (epochs - e) * metric_step and val_loss +
    (epochs - e) * loss_step; the last carries the test values and the per-example record."""
    rows = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "lr": 0.01,
            "momentum": 0.9,
            "val_loss": val_loss + (epochs - e) * loss_step,
            "val_metric": val_metric - (epochs - e) * metric_step,
            "cycle_epoch": e,
            "status": "ok",
            "reason": "",
            "wall_time": wall_time * e / epochs,
        }
        for e in range(1, epochs + 1)
    ]
    test = val_metric if test_metric is None else test_metric
    rows[-1].update(test_loss=val_loss, test_metric=test, val_examples=encode_examples(examples))
    return rows


def flat_rows(loss: dict[str, float], mode: str) -> Rows:
    """Runs whose every epoch sits at the final values: val metric the outcome's mean, val loss `loss[arm]`
    (default 1 - the mean when higher is better, the mean when lower is)."""

    def rows(arm: str, seed: int, budget: float, epochs: int, outcome: Any) -> list[dict]:
        examples = outcome if isinstance(outcome, np.ndarray) else None
        m = float(np.mean(outcome))
        return epoch_rows(epochs, m, loss.get(arm, 1 - m if mode == "max" else m), examples)

    return rows


def records(
    searches: list[dict],
    finals: list[dict],
    outcomes: Outcomes,
    rows: Rows,
    died: dict[str, float] | None = None,
) -> dict[tuple[str, str], tuple[dict, list[dict], Any]]:
    """(stage, trial_id) -> (config, Tune results, error), as `tables.records_from_grid` reads a finished
    Tuner: a final run reports each budget's epochs at its end (`trial._final_run`), a search trial its
    epochs with `cycle_val_metric` at the end (`trial._search_run`, its seed-0 outcome at the full budget).
    `died`: arm -> the budget at which every seed's final run raised (that budget and later ones report
    nothing, as a worker's error leaves them)."""
    died = died or {}
    out = {}
    clock = itertools.count(START)  # each run's finished_at, in the order built: search trials first
    for config in searches:
        arm = config["arm"]
        trial = [dict(r) for r in rows(arm, 0, 1.0, config["epochs"], outcomes[arm][1.0][0])]
        for r in trial:
            r["cycle_val_metric"] = r["val_metric"]
            for key in ("test_loss", "test_metric", "val_examples"):  # a search trial is not tested
                r.pop(key, None)
        out[("search", f"search-{arm}")] = (config, [result(trial, next(clock))], None)  # final_runs' source
    for config in finals:
        arm, seed = config["arm"], config["seed"]
        results = []
        for budget in config["budgets"]:
            if budget >= died.get(arm, math.inf):
                break
            epochs = budget * config["epochs"]
            if epochs != int(epochs):
                raise ValueError(f"{arm}: budget {budget} of {config['epochs']} epochs is not whole epochs")
            extra = {"budget": budget, "budget_epochs": epochs}
            run = rows(arm, seed, budget, int(epochs), outcomes[arm][budget][seed])
            results.append(result([{**r, **extra} for r in run], next(clock)))
        error = "RuntimeError: worker died" if arm in died else None
        out[("final", f"{arm}_{seed}")] = (config, results, error)
    return out


def search_record(config: dict, epochs_run: int, value: float, loss: float | None = None) -> tuple:
    """One more search trial of `config` (a search config of `trial_configs`) for `records`' dict: it trained
    `epochs_run` epochs (fewer than the study's: stopped by ASHA) to val metric `value` (val loss `loss`,
    default 1 - value) and reported once, as `trial._search_run` does at its end."""
    rows = epoch_rows(epochs_run, value, 1 - value if loss is None else loss)
    for r in rows:
        r["cycle_val_metric"] = r["val_metric"]
        for key in ("test_loss", "test_metric", "val_examples"):
            r.pop(key, None)
    return config, [result(rows, START)], None


def in_order(recs: dict, order: list[tuple[str, str, float]]) -> dict:
    """`recs` whose runs ended in `order`, (stage, trial_id, budget) each: the k-th ends at START + k
    seconds (its result's `finished_at`). Every result of `recs` must be in `order`."""
    at = {key: START + k for k, key in enumerate(order)}
    out = {}
    for (stage, trial_id), (config, results, error) in recs.items():
        stamped = [{**r, "finished_at": at[(stage, trial_id, float(r.get("budget", 1.0)))]} for r in results]
        out[(stage, trial_id)] = (config, stamped, error)
    if sum(len(r) for _, r, _ in out.values()) != len(order):
        raise ValueError(f"order has {len(order)} runs, recs another number")
    return out


def result(rows: list[dict], finished_at: float) -> dict:
    """One Tune result carrying its epochs, stamped with when it ended (`trial._report`)."""
    return {**rows[-1], "node_id": "node-0", "finished_at": finished_at, "history": json.dumps(rows)}


def _made_up(
    outcomes: Outcomes,
    metric: str,
    mode: str,
    target: float | None = None,
    best: dict[str, dict] | None = None,
    rows: Rows | None = None,
    loss: dict[str, float] | None = None,
    died: dict[str, float] | None = None,
) -> tuple[StudyConfig, dict, list[dict]]:
    """The made-up study of `outcomes` (every arm on the same seeds): its config, its Tune records and its
    final configs."""
    budgets = sorted({b for rungs in outcomes.values() for b in rungs})
    n_seeds = len(next(iter(next(iter(outcomes.values())).values())))
    cfg = study_config(list(outcomes), n_seeds, budgets, metric, mode, target)
    searches, finals = trial_configs(cfg, outcomes, best)
    recs = records(searches, finals, outcomes, rows or flat_rows(loss or {}, mode), died)
    return cfg, recs, finals


def study_tables(
    outcomes: Outcomes,
    loss: dict[str, float] | None = None,
    died: dict[str, float] | None = None,
    metric: str = "accuracy",
    mode: str = "max",
) -> tuple[StudyConfig, dict, pd.DataFrame, pd.DataFrame, list[dict]]:
    """A made-up study of `outcomes`: (its config, its Tune records, the trials table, the epochs table, its
    final configs). `loss`: an arm's final val loss; `died`: see `records`."""
    cfg, recs, finals = _made_up(outcomes, metric, mode, loss=loss, died=died)
    trials, epochs = tables_from_rows(recs)
    return cfg, recs, trials, epochs, finals


def write_run(
    root: Path,
    cfg: StudyConfig,
    recs: dict,
    n_val: int | None,
    chance: float | None,
    tables: tuple[str, ...] = ("trials", "epochs"),
    spaces: bool = True,
) -> Path:
    """What a finished study leaves in `root`: resolved_config.json (the keys `study._run_stages` writes, for
    digits-like data: 64 inputs, 10 classes), the `tables` named, final_configs.json and, with `spaces`,
    spaces.json (`rangestage.build_spaces`)."""
    root.mkdir(parents=True, exist_ok=True)
    resolved = resolved_config(cfg, SPE, (64,), 10, SPE * cfg.train.batch_size, n_val, chance)
    write_json(root / "resolved_config.json", resolved)
    trials, epochs = tables_from_rows(recs)
    empty = pd.DataFrame()
    append_tables(root, trials if "trials" in tables else empty, epochs if "epochs" in tables else empty)
    if spaces:
        finals = [c for (stage, _), (c, _, _) in recs.items() if stage == "final"]
        write_json(root / "final_configs.json", sorted(finals, key=lambda c: (c["arm"], c["seed"])))
        build_spaces(cfg, SEEDS, root, SPE)
    return root


def run_folder(
    root: Path,
    outcomes: Outcomes,
    chance: float | None = 0.1,
    target: float | None = None,
    metric: str = "accuracy",
    mode: str = "max",
    loss: dict[str, float] | None = None,
    best: dict[str, dict] | None = None,
    rows: Rows | None = None,
    died: dict[str, float] | None = None,
    n_val: int | None = None,
    tables: tuple[str, ...] = ("trials", "epochs"),
    spaces: bool = True,
) -> Path:
    """A run folder of a made-up study of `outcomes` (every arm on the same seeds): see `write_run`. `best`:
    arm -> its searched values (default its space's first point); `rows`: each run's epochs (default
    `flat_rows(loss, mode)`); `died`: see `records`; `n_val`: default the per-example vectors' length."""
    cfg, recs, _ = _made_up(outcomes, metric, mode, target, best, rows, loss, died)
    first = next(iter(next(iter(outcomes.values())).values()))[0]
    n_val = n_val if n_val is not None or not isinstance(first, np.ndarray) else len(first)
    return write_run(root, cfg, recs, n_val, chance if metric == "accuracy" else None, tables, spaces)
