"""A run folder's results, loaded: the tidy tables, the verdict, the leaderboard (`load_run`), and the tables
the figures draw (learning curves, schedules, parameter importances).

The statistics live in `verdict.py` and `leaderboard.py`; this module reads what `study.run_study` writes. A
run that is still going or was interrupted loads too: what is not there yet is listed in `Run.missing`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..lr import baseline_arm, baseline_skipped, range_family
from .attribution import UNTUNED_PREFIX, attribution, ladder_arms
from .frontier import FRONTIER_RULE, frontier, last_half, range_test_trainings, run_trainings
from .leaderboard import build_leaderboard
from .race import read_plan, runs_planned, verdict_trials
from .tables import final_rows
from .verdict import LADDER_PREFIX, decide


@dataclass(frozen=True, eq=False)
class Run:
    """One run folder, loaded: the tables, the leaderboard and its words, and what is not there yet."""

    path: Path
    config: dict  # resolved_config.json ({} when absent)
    trials: pd.DataFrame  # one row per (trial_id, budget)
    epochs: pd.DataFrame  # one row per (trial_id, budget, epoch)
    leaderboard: pd.DataFrame  # one row per arm: the top group first, then best mean final val metric first
    range_test: pd.DataFrame  # the range_test_<opt>.csv curves with an `optimizer` column
    target: float  # val metric the epochs-to-target counts to, in the metric's units (NaN when unknown)
    summary: str  # the verdict's headline: winner or top group, calls against the baseline, speed-up
    verdict: dict = field(default_factory=dict)  # verdict.decide(...), attribution, frontier: verdict.json
    missing: list[str] = field(default_factory=list)  # what is not there (yet), one line each
    range_summaries: dict = field(default_factory=dict)  # optimizer -> range_test_<opt>.json
    final_configs: list = field(default_factory=list)  # final_configs.json: one trial config per (arm, seed)
    spaces: dict = field(default_factory=dict)  # spaces.json: arm -> searched params and their sources
    metric: str = "accuracy"  # the metric's display name: "accuracy", "loss" or a custom function's name
    metric_mode: str = "max"  # "max": higher is better; "min": lower is better
    unfinished: str = ""  # "study unfinished: N of M runs" while planned runs are missing, else ""


# --------------------------------------------------------------------------------------------- figure data


def learning_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    """Full-budget final runs per (arm, epoch): median, min and max over seeds of val metric and val loss;
    the attribution ladder's runs are not arms and are left out (its steps are in the verdict's words).

    Example:
        >>> learning_curves(run.epochs).columns[:3].tolist()  # doctest: +SKIP
        ['arm', 'epoch', 'val_metric_median']
    """
    rows = _without_ladder(final_rows(epochs))
    if rows.empty:
        return pd.DataFrame(columns=["arm", "epoch"])
    g = rows.groupby(["arm", "epoch"])[["val_metric", "val_loss"]].agg(["median", "min", "max"])
    g.columns = [f"{m}_{s}" for m, s in g.columns]
    return g.reset_index()


def schedule_curves(
    final_configs: list[dict], epochs: pd.DataFrame | None = None, steps_per_epoch: int = 100
) -> pd.DataFrame:
    """LR and momentum of each arm's best config over its full budget, per step, from the pure schedules.

    `steps_per_epoch` is the run's (`resolved_config.json`; older folders lack it and get 100, the same shape
    up to rounding of cycle lengths); `epochs` (the table) adds the LR and
    momentum the runs recorded at epoch ends, and fills momentum for schedules that do not cycle it.

    Returns:
        Columns arm, epoch (fractional), lr, momentum, recorded (False: computed, True: from the table).

    Example:
        >>> schedule_curves(run.final_configs, run.epochs)  # doctest: +SKIP
    """
    from ..lr import build_schedule, lr_at, momentum_at

    out = []
    seen = set()
    for config in final_configs:
        arm = config.get("arm", "?")
        if arm in seen or arm.startswith(LADDER_PREFIX):
            continue  # seeds share the config; the attribution ladder's runs are not arms
        seen.add(arm)
        n_epochs = float(config["epochs"])
        schedule = build_schedule(config, n_epochs, steps_per_epoch)
        total = max(1, round(n_epochs * steps_per_epoch))
        for step in range(total + 1):
            m = momentum_at(schedule, step)
            out.append(
                (arm, step / steps_per_epoch, lr_at(schedule, step), math.nan if m is None else m, False)
            )
    frame = pd.DataFrame(out, columns=["arm", "epoch", "lr", "momentum", "recorded"])
    rows = _without_ladder(final_rows(epochs)) if epochs is not None else pd.DataFrame()
    if not rows.empty:
        rec = rows.groupby(["arm", "epoch"])[["lr", "momentum"]].first().reset_index()
        for arm, g in rec.groupby("arm"):
            mask = (frame["arm"] == arm) & frame["momentum"].isna()
            frame.loc[mask, "momentum"] = g["momentum"].iloc[0]  # not cycled: the optimizer's constant
        frame = pd.concat([frame, rec.assign(recorded=True)], ignore_index=True)
    return frame


_IMPORTANCE_COLUMNS = ["arm", "param", "importance", "n_trials"]


def param_importances(run_dir: str | Path, min_trials: int = 4) -> tuple[pd.DataFrame, list[str]]:
    """Optuna's fANOVA parameter importances per arm from `optuna.db`, where an arm has >= `min_trials`
    complete trials; the notes say which arms were skipped and why.

    Returns:
        (DataFrame with columns arm, param, importance, n_trials (the arm's complete trials); notes).

    Example:
        >>> importances, notes = param_importances("runs/digits-20260101-120000")  # doctest: +SKIP
    """
    db = Path(run_dir) / "optuna.db"
    if not db.exists():
        return pd.DataFrame(columns=_IMPORTANCE_COLUMNS), ["optuna.db: not there (yet)"]
    import optuna

    storage = f"sqlite:///{db.resolve()}"
    out, notes = [], []
    for summary in optuna.get_all_study_summaries(storage):
        name = summary.study_name
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < min_trials:
            notes.append(f"importances for {name}: {len(complete)} complete trials, need >= {min_trials}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fANOVA's experimental and single-value warnings
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
                values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except Exception as err:  # noqa: BLE001 - importance needs >1 distinct value per param; any failure is a note
            notes.append(f"importances for {name}: not computable ({type(err).__name__}: {err})")
            continue
        out += [(name, param, float(v), len(complete)) for param, v in values.items()]
    return pd.DataFrame(out, columns=_IMPORTANCE_COLUMNS), notes


# --------------------------------------------------------------------------------------------- loading


def runs_done(
    trials: pd.DataFrame, study: dict, recommended: str | None = None, plan: dict | None = None
) -> tuple[int, int]:
    """(done, planned) runs of a study (`study`: resolved_config.json's): its search trials and its final
    re-runs, one per arm and seed, the baselines' and the attribution ladder's included: the ladder of the
    arm whose untuned rung ran, else of `recommended` (the verdict's arm, which the study's searcher picks
    the same way: `search.recommended_ladder`). A run is done when the tables hold it, finished or failed
    with its reason; an arm none of whose search trials is usable has no config to re-run, so its final
    re-runs count as done (they failed for the search's recorded reasons).

    Example:
        >>> runs_done(run.trials, run.config["study"])  # doctest: +SKIP
        (10, 10)

    A raced study (`plan`: its `plan.json`) planned what its rounds released (`race.runs_planned`): the
    searcher that ran them wrote it, so nothing here computes the plan again.
    """
    if plan is not None:
        return runs_planned(trials, plan)
    search = study.get("search") or {}
    arms, per_arm = list(search.get("arms", [])), int(search.get("trials_per_arm", 0))
    n_seeds = len(search.get("seeds", []))
    # a range test's baseline runs where the study ran that range test (search.baseline_runs)
    tested = {range_family(a) for a in arms} if search.get("space", "seeded") == "seeded" else set()
    # a folder older than `[search] baselines` ran the constant Adam baseline alone
    names = [b for b in search.get("baselines", ["default:adam"]) if not baseline_skipped(b, tested)]
    baselines = [baseline_arm(name) for name in names]
    baselines += _ladder_arms(search, trials, recommended)  # fixed configs too: every seed, no search
    planned = len(arms) * (per_arm + n_seeds) + n_seeds * len(baselines)
    if trials.empty or not {"stage", "arm", "trial_id", "status"} <= set(trials.columns):
        return 0, planned
    done = 0
    for arm in [*arms, *baselines]:
        rows = trials[trials["arm"] == arm]
        search_rows = rows[rows["stage"] == "search"]
        n_search = min(search_rows["trial_id"].nunique(), per_arm) if arm not in baselines else 0
        n_final = min(rows[rows["stage"] == "final"]["trial_id"].nunique(), n_seeds)
        usable = search_rows["status"].isin(["ok", "stopped"]).any()
        if arm not in baselines and n_search == per_arm and not usable:
            n_final = n_seeds
        done += n_search + n_final
    return done, planned


_METRICS = {
    "trials": ("budget_epochs", "final_val_metric", "final_val_loss", "test_metric", "wall_time"),
    "epochs": ("epoch", "val_metric", "val_loss", "lr", "momentum"),
}


def _read_json(path: Path, missing: list[str], default: Any) -> Any:
    if not path.exists():
        missing.append(f"{path.name}: not there (yet)")
        return default
    return json.loads(path.read_text())


def load_run(path: str | Path, decide_verdict: bool = False) -> Run:
    """Load a run folder written by `run_study`, finished, still going or interrupted.

    Missing files give empty tables and a line in `Run.missing`, never an error; only a folder that does not
    exist raises. The verdict is the one the study wrote, `verdict.json`, so a report and the API read the
    answer the study printed; it is decided from the tables only where that file is absent (an unfinished
    folder, or one older than the file) or with `decide_verdict` (what the study does before writing it).

    Example:
        >>> run = load_run("runs/smoke-20260101-120000")  # doctest: +SKIP
        >>> run.leaderboard[
        ...     ["arm", "top_group", "mean_val_metric", "ci_low", "speedup"]
        ... ]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a run folder: it does not exist.")
    missing: list[str] = []
    config = _read_json(path / "resolved_config.json", missing, {})
    trials, epochs = _read_table(path, "trials", missing), _read_table(path, "epochs", missing)
    range_test, summaries = _read_range_tests(path, missing)
    spaces = _read_json(path / "spaces.json", missing, {})
    final_configs = _read_json(path / "final_configs.json", missing, [])
    study = config.get("study") or {}
    plan = read_plan(path)  # a raced study: the verdict judges the candidates that ran every seed
    judged = verdict_trials(trials, plan)
    searched = {arm: [p["name"] for p in s.get("params", [])] for arm, s in spaces.items()}
    written = path / "verdict.json"
    decided = decide_verdict or not written.exists()
    verdict = _decide(judged, config, plan) if decided else json.loads(written.read_text())
    board = build_leaderboard(judged, epochs, verdict, searched)
    if board.empty:
        missing.append("leaderboard: no final-stage rows at the full budget yet")
    target = math.nan if verdict["target"] is None else verdict["target"]
    if not math.isfinite(target):
        missing.append("target: no study target and no baseline result yet")
    # (folders written by hand, or before resolved_config.json named the arms, are not judged)
    done, planned = (
        runs_done(trials, study, verdict["recommended"], plan)
        if (study.get("search") or {}).get("arms")
        else (0, 0)
    )
    unfinished = f"study unfinished: {done} of {planned} runs" if done < planned else ""
    if decided:
        _add_frontier(verdict, trials, range_test, config, searched, complete=not unfinished)
    return Run(
        path=path,
        config=config,
        trials=trials,
        epochs=epochs,
        leaderboard=board,
        range_test=range_test,
        target=target,
        # unfinished: no verdict, whose headline would judge arms on the runs that are there by chance
        summary=f"{unfinished}; no verdict until every run is there" if unfinished else verdict["headline"],
        verdict=verdict,
        missing=missing,
        range_summaries=summaries,
        final_configs=final_configs,
        spaces=spaces,
        metric=config.get("metric", "accuracy"),
        metric_mode=config.get("metric_mode", "max"),
        unfinished=unfinished,
    )


def _read_table(path: Path, name: str, missing: list[str]) -> pd.DataFrame:
    """`<name>.parquet` ("trials" or "epochs") of a run folder; an empty table and a line in `missing` when
    it is not there."""
    file = path / f"{name}.parquet"
    if not file.exists():
        missing.append(f"{file.name}: not written yet (the run is still going, was interrupted, or failed)")
        return pd.DataFrame()
    try:
        table = pd.read_parquet(file)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(
            f"{file} is unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
            f"python -m sched_search study --resume {path} rebuilds it from Ray Tune's record"
        ) from None
    # A table of failed trials only lacks the metric columns; NaN keeps the arithmetic uniform.
    for col in _METRICS[name]:
        if col not in table.columns:
            table[col] = math.nan
    return table


def _read_range_tests(path: Path, missing: list[str]) -> tuple[pd.DataFrame, dict]:
    """The range_test_<opt>.csv curves in one table with an `optimizer` column, and optimizer ->
    range_test_<opt>.json."""
    curves, summaries = [], {}
    for csv in sorted(path.glob("range_test_*.csv")):
        opt = csv.stem.removeprefix("range_test_")
        curves.append(pd.read_csv(csv).assign(optimizer=opt))
        if csv.with_suffix(".json").exists():
            summaries[opt] = json.loads(csv.with_suffix(".json").read_text())
    if not curves:
        missing.append("range_test_<optimizer>.csv: not there (yet)")
    return (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()), summaries


def _decide(judged: pd.DataFrame, config: dict, plan: dict | None) -> dict:
    """The verdict of the judged trials (`verdict.decide`) with its attribution and, for a raced study, what
    the race stopped and spent; `_add_frontier` adds the rest of `verdict.json`."""
    study = config.get("study") or {}
    # older run folders: accuracy, maximised, and the target under its old name
    study_target = study.get("target") if study.get("target") is not None else study.get("target_accuracy")
    verdict = decide(
        judged,
        target=study_target,
        chance_accuracy=config.get("chance_accuracy"),
        metric=config.get("metric", "accuracy"),
        mode=config.get("metric_mode", "max"),
    )
    verdict["attribution"] = attribution(judged, verdict)
    if plan is not None:
        # an arm stopped once it had every seed is still judged
        stopped = {a: why for a, why in plan["stopped"].items() if a not in verdict["arms"]}
        verdict["excluded"].update({arm: f"stopped by the race: {why}" for arm, why in stopped.items()})
        verdict["race"] = {k: plan[k] for k in ("budget", "spent", "stopped", "not_run")}
        verdict["race"]["rounds"] = len(plan["rounds"])
    return verdict


def _add_frontier(
    verdict: dict,
    trials: pd.DataFrame,
    range_test: pd.DataFrame,
    config: dict,
    searched: dict[str, list[str]],
    complete: bool,
) -> None:
    """The verdict's `trainings` (what the range tests and the runs cost), `frontier` and `last_half`."""
    study = config.get("study") or {}
    epochs = (study.get("train") or {}).get("epochs")
    if epochs is None and "epochs" in trials.columns and not trials.empty:
        epochs = int(trials["epochs"].iloc[0])  # a folder written by hand
    spe = config.get("steps_per_epoch")
    range_cost = range_test_trainings(range_test, epochs, spe) if epochs and spe else {}
    runs = float(run_trainings(trials).sum())
    verdict["trainings"] = {"range_tests": range_cost, "runs": runs, "total": runs + sum(range_cost.values())}
    verdict["frontier_rule"] = FRONTIER_RULE.format(metric=verdict["metric"])
    verdict["frontier"] = frontier(trials, verdict, sum(range_cost.values()), searched, complete)
    verdict["last_half"] = last_half(verdict["frontier"], trials, verdict)


def _without_ladder(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[~rows["arm"].astype(str).str.startswith(LADDER_PREFIX)] if not rows.empty else rows


def _ladder_arms(search: dict, trials: pd.DataFrame, recommended: str | None) -> list[str]:
    """The attribution ladder's arm names `search.recommended_ladder` queues for a study's `[search]`: none
    when `attribution` is off or absent (folders older than the key ran none) or without a range test."""
    arms = list(search.get("arms", []))
    if not search.get("attribution", False) or search.get("space", "seeded") != "seeded":
        return []
    ran = sorted(
        {a for a in trials.get("arm", pd.Series(dtype=str)).astype(str) if a.startswith(UNTUNED_PREFIX)}
    )
    arm = ran[0].removeprefix(UNTUNED_PREFIX) if ran else recommended
    return ladder_arms([arm]) if arm in arms else []


__all__ = ["Run", "learning_curves", "load_run", "param_importances", "runs_done", "schedule_curves"]
