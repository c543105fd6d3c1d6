"""The study's one Ray Tune run: per-arm Optuna studies behind OptunaSearch, per-arm ASHA, and the final
re-runs.

Stages 3 and 4 of the study (`study.py` runs the others): `trials_per_arm` search trials per arm with the same
training seed, then each arm's best config re-run on the study's seeds over the budget ladder, and the
baseline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from ..config import FULL_BUDGET, RANGE_TEST_BASELINES, StudyConfig, metric_mode, metric_name
from ..lr import baseline_config, baseline_skipped, range_family
from ..results import (
    PLAN_FILE,
    decide,
    is_baseline,
    ladder_arms,
    read_plan,
    records_from_grid,
    shared_records,
    tables_from_rows,
    write_json,
)
from .interrupt import tune_loop
from .racing import RaceSearcher
from .rangestage import range_test_cost
from .recorder import Recorder
from .routing import METRIC, ArmsSearcher, PerArmASHA, ResumableOptunaSearch
from .sampler import arm_seed, build_sampler
from .space import ArmSpace, RangeSeed, build_space, define_by_run
from .trial import asha_rungs, trial_trainable


def trial_settings(cfg: StudyConfig) -> dict[str, Any]:
    """The study's run settings, merged into every trial config (Tune's param_space): `[train]` whole, its
    metric's direction resolved, and `[model]` (`trial.sections` builds them back in the worker)."""
    return {
        **asdict(replace(cfg.train, metric_mode=metric_mode(cfg.train))),
        "model": cfg.model.name,
        "model_options": dict(cfg.model.options),
        # loader data: what each worker calls itself (trial.worker_data)
        "data": {"name": cfg.data.name, "root": cfg.data.root, "options": dict(cfg.data.options)}
        # a part of the training split (tensor data, loaded by name: range tests without a loaded set)
        | ({"train_fraction": cfg.data.train_fraction} if cfg.data.train_fraction != 1 else {}),
        "_threads": max(1, int(cfg.resources.cpus_per_trial)),
        "_rungs": asha_rungs(
            cfg.train.epochs, cfg.early_stopping.grace_period, cfg.early_stopping.reduction_factor
        )
        if cfg.early_stopping.enabled
        else [],
    }


def arm_sampler(cfg: StudyConfig, arm: str) -> optuna.samplers.BaseSampler:
    """The arm's Optuna sampler: `[search] sampler` with its own seed stream (`sampler.arm_seed`)."""
    q = cfg.search
    return build_sampler(q.sampler, q.trials_per_arm, arm_seed(q.search_seed, arm))


def _optuna_storage(run_dir: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{run_dir.resolve() / 'optuna.db'}")


def _new_optuna_study(storage: Any, arm: str, space: ArmSpace, sampler: Any, mode: str) -> None:
    """(Re)create the arm's Optuna study and enqueue the range test's suggestion as its first trial.

    Ray's OptunaSearch drops `points_to_evaluate` for define-by-run spaces (ray #35319); an enqueued trial in
    the study it loads is asked first instead, and the define-by-run `suggest_*` calls return the enqueued
    values. A study left by a run killed before Tune saved any state is dropped: its trials are not in Tune's
    record.
    """
    if arm in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        optuna.delete_study(study_name=arm, storage=storage)
    study = optuna.create_study(
        storage=storage,
        study_name=arm,
        direction="maximize" if mode == "max" else "minimize",
        sampler=sampler,
    )
    if space.first_point() is not None:  # a broad space has none
        study.set_user_attr("first_point_source", "range test suggestion")
        study.enqueue_trial(space.first_point())


def _restorable(path: Path) -> bool:
    """Tune saved its state there: `can_restore` alone also says yes for a folder killed before the first
    save."""
    from ray import tune

    return tune.Tuner.can_restore(str(path.resolve())) and any(path.glob("experiment_state-*.json"))


def _state_cut_short(path: Path) -> str | None:
    """The newest of Tune's saved state files (the ones `Tuner.restore` reads) that is cut short, as a write
    on a full disk leaves it; None when they are whole. Restored from such files, Tune ran trials without
    their settings."""
    import pickletools

    # search_gen_state-*.json is a pickle too, despite its name
    for pattern in ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl"):
        newest = max(path.glob(pattern), default=None)
        if newest is None:
            continue
        try:
            if pattern.startswith("experiment_state"):
                json.loads(newest.read_text())
            else:
                for _ in pickletools.genops(newest.read_bytes()):  # the opcodes, up to STOP; nothing run
                    pass
        except (ValueError, OSError):
            return newest.name
    return None


def final_runs(cfg: StudyConfig, spaces: dict[str, ArmSpace], arm: str, best: dict[str, Any]) -> list[dict]:
    """An arm's final re-runs: its best search config (`best`, with its trial_id) on every seed, over the
    ladder."""
    space = spaces[arm]
    config = {**{p.name: best[p.name] for p in space.params}, **space.constants()}
    return [
        {
            **config,
            "stage": "final",
            "seed": s,
            "budgets": list(cfg.search.budgets),
            "source_trial": best["trial_id"],
            # False: every search trial was stopped by ASHA, and the best config comes from a shorter run
            "source_full_budget": best.get("full_budget", True),
        }
        for s in cfg.search.seeds
    ]


def baseline_runs(
    cfg: StudyConfig, seeds: dict[str, RangeSeed] | None = None, steps_per_epoch: int = 0
) -> list[dict]:
    """The study's baselines (`[search] baselines`: constant Adam 3e-4 and the recipes users run in one
    training) on every seed, full budget only. A range test's baseline (`config.RANGE_TEST_BASELINES`:
    fastai's lr_find + fit_one_cycle) trains its arm's first point from the range tests' `seeds` (as
    `build_space` reads them, before `[search.bounds]`: the reading alone) over `steps_per_epoch`; without
    that range test it is left out (`skipped_baselines` says why)."""
    seeds = seeds or {}
    configs = []
    for name in cfg.search.baselines:
        if baseline_skipped(name, seeds):
            continue
        first = None
        if name in RANGE_TEST_BASELINES:
            arm = RANGE_TEST_BASELINES[name]
            space = build_space(arm, seeds[range_family(arm)], cfg.train.epochs, steps_per_epoch)
            first = {**space.first_point(), **space.constants()}
        configs.append(baseline_config(name, cfg.search.baseline_lr, first))
    return [
        {**config, "stage": "final", "seed": s, "budgets": [1.0]}
        for config in configs
        for s in cfg.search.seeds
    ]


def skipped_baselines(cfg: StudyConfig, seeds: dict[str, RangeSeed] | None = None) -> dict[str, str]:
    """The study's baselines that `baseline_runs` leaves out, each with its reason (`lr.baseline_skipped`)."""
    why = {name: baseline_skipped(name, seeds or {}) for name in cfg.search.baselines}
    return {name: reason for name, reason in why.items() if reason}


def ladder_runs(
    cfg: StudyConfig, spaces: dict[str, ArmSpace], seeds: dict[str, RangeSeed], steps_per_epoch: int
) -> list[dict]:
    """The attribution ladder's own runs (`attribution.py`) on every seed, full budget only: per optimizer
    family of the arms, warm-up + cosine at the cosine arm's first point (`ladder:cosine-<family>`; max_lr
    the range test's min-loss LR), and per arm its schedule at its first point from the range test without
    search (`ladder:untuned-<arm>`, its space's first point: what the search started from; not for a cosine
    arm, whose first point is the cosine rung)."""
    configs: dict[str, dict] = {}
    wanted = set(ladder_arms(list(spaces)))
    for arm, space in spaces.items():
        family = range_family(arm)
        if family in seeds:
            cosine = build_space(f"cosine-{family}", seeds[family], cfg.train.epochs, steps_per_epoch)
            configs[f"ladder:cosine-{family}"] = {**cosine.first_point(), **cosine.constants()}
        untuned = f"ladder:untuned-{arm}"
        if untuned in wanted and space.first_point() is not None:  # a broad space has no suggestion
            configs[untuned] = {**space.first_point(), **space.constants()}
    return [
        {**config, "arm": name, "stage": "final", "seed": s, "budgets": [1.0]}
        for name, config in sorted(configs.items())
        for s in cfg.search.seeds
    ]


def rungs_of(arm: str | None, ladder: list[dict]) -> list[dict]:
    """The runs of `ladder` (`ladder_runs`) on `arm`'s attribution ladder: none for a baseline or no arm."""
    if not arm or is_baseline(arm):
        return []
    names = set(ladder_arms([arm]))
    return [c for c in ladder if c["arm"] in names]


def recommended_ladder(cfg: StudyConfig, ladder: list[dict], records: dict) -> list[dict]:
    """The ladder's runs (`ladder_runs`) of the arm the verdict recommends, from the records of every final
    and baseline run (`tables.tables_from_rows`'s input): the verdict leaves the ladder's own runs out, so
    these finals decide the arm exactly as the study's verdict will. The other arms' rungs would never be
    reported (about a fifth of the default study's epochs). A searcher's configs are its suggestions: Tune
    merges the study's settings into them (`trial_settings`, the budgets' epochs among them), so here too."""
    settings = trial_settings(cfg)
    trials, _ = tables_from_rows({k: ({**settings, **c}, r, e) for k, (c, r, e) in records.items()})
    verdict = decide(
        trials, target=cfg.target, metric=metric_name(cfg.train.metric), mode=metric_mode(cfg.train)
    )
    return rungs_of(verdict["recommended"], ladder)


def fixed_runs(
    cfg: StudyConfig,
    spaces: dict[str, ArmSpace],
    seeds: dict[str, RangeSeed] | None = None,
    steps_per_epoch: int = 0,
) -> tuple[list[dict], list[dict]]:
    """The runs the Tuner queues before any search trial, the baselines', and the attribution ladder's
    candidates, when `[search] attribution` is on and the range tests' `seeds` are given (None: a caller
    without the range-test stage; a broad space's `{}` gives no ladder rung that needs a suggestion): of
    those, only the recommended arm's rungs run, last (`recommended_ladder`).

    Returns:
        (baseline runs, ladder runs), each a list of trial configs.
    """
    ladder = []
    if cfg.search.attribution and seeds is not None:
        ladder = ladder_runs(cfg, spaces, seeds, steps_per_epoch)
    return baseline_runs(cfg, seeds, steps_per_epoch), ladder


def run_trials(
    cfg: StudyConfig,
    run_dir: Path,
    spaces: dict[str, ArmSpace],
    data_ref: Any,
    echo: Callable[[str], None],
    seeds: dict[str, RangeSeed] | None = None,
    steps_per_epoch: int = 0,
) -> dict:
    """Stages 3 and 4 in one Tuner: per arm an OptunaSearch on its own Optuna study and ASHA on cycle ends; as
    soon as an arm's search is done, its best config's final re-runs join the queue (the baselines' from the
    start); when all have ended, the attribution ladder of the arm they recommend (`fixed_runs`, given the
    range tests' `seeds` and the data's `steps_per_epoch`).

    One Tuner keeps both worker slots busy across the stages: a second Tuner cost about 3 s of start-up (fresh
    workers importing torch) plus the idle tail of the search, against about 12 s of work per slot.
    """
    from ray import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _optuna_storage(run_dir)
    mode = metric_mode(cfg.train)
    trainable = tune.with_resources(
        tune.with_parameters(trial_trainable, data_ref=data_ref),
        {"cpu": cfg.resources.cpus_per_trial, "gpu": cfg.resources.gpus_per_trial},
    )
    plan = _plan(cfg, run_dir, spaces, seeds, steps_per_epoch, echo)
    recorder = Recorder(run_dir, echo, total=0 if plan.racing else plan.n_most)
    path = (run_dir / "ray" / "study").resolve()  # Ray reads a relative path as a URI without a scheme
    damaged = _state_cut_short(path) if _restorable(path) else None
    if damaged:
        echo(
            f"warning: Ray Tune's saved state {path / damaged} is cut short (a full disk?): it cannot be "
            "restored, so the trials run again from the start"
        )
    if _restorable(path) and not damaged:
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        shutil.rmtree(path, ignore_errors=True)
        for arm, space in spaces.items():
            _new_optuna_study(storage, arm, space, arm_sampler(cfg, arm), mode)
        searcher = _searcher(cfg, spaces, storage, plan, run_dir)
        tuner = _tuner(cfg, trainable, searcher, plan, recorder, run_dir, len(spaces))
    try:
        # Ctrl-C or SIGTERM: Tune saves its state, then Interrupted skips what follows
        with tune_loop(), _quiet():
            grid = tuner.fit()
        records = records_from_grid(grid)
    finally:
        recorder.write()
    _fail_unclaimed(storage, list(spaces))
    if plan.racing:
        race = read_plan(run_dir)
        records.update(shared_records(records, race))
        echo(_race_words(race))
    finals = [c for (stage, _), (c, _, _) in records.items() if stage == "final"]
    write_json(run_dir / "final_configs.json", sorted(finals, key=lambda c: (c["arm"], c["seed"])))
    return records


def _fail_unclaimed(storage: Any, arms: list[str]) -> None:
    """Once Tune has ended: tell Optuna FAIL for each trial still RUNNING. Such a trial was asked by a run
    killed before Tune saved the ask, and no ask of the resumed run took it (`ResumableOptunaSearch.
    adopt_lost`: a resumed race that decided otherwise asked fewer); no trial will ever finish it, and left
    RUNNING it would read as a trial in flight. Every trial Tune ran has been told by now."""
    running, failed = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    for arm in arms:
        study = optuna.load_study(study_name=arm, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(running,)):
            why = "asked by a study killed before Ray Tune saved the ask; its resumed study did not ask again"
            optuna.trial.Trial(study, trial._trial_id).set_user_attr("fail_reason", why)
            study.tell(trial.number, state=failed)


@dataclass(frozen=True)
class _RunPlan:
    """What the one Tuner is to run besides the search: computed once, before it starts or is restored."""

    baselines: list[dict]  # the baselines' runs, every seed
    ladder: list[dict]  # the attribution ladder's candidate runs (`ladder_runs`)
    racing: bool  # a budget in trainings (`racing.RaceSearcher`), not "full"
    spent: float  # the range tests' cost in trainings (racing)
    n_most: int  # Tune's num_samples: every run the searcher may release


def _plan(
    cfg: StudyConfig,
    run_dir: Path,
    spaces: dict[str, ArmSpace],
    seeds: dict[str, RangeSeed] | None,
    steps_per_epoch: int,
    echo: Callable[[str], None],
) -> _RunPlan:
    """The run plan, and the line that announces it."""
    for reason in skipped_baselines(cfg, seeds).values():
        echo(f"baseline {reason}")
    baselines, ladder = fixed_runs(cfg, spaces, seeds, steps_per_epoch)
    n_baselines = len({c["arm"] for c in baselines})
    n_seeds = len(cfg.search.seeds)
    n_ladder = max((len(rungs_of(arm, ladder)) for arm in spaces), default=0)
    if cfg.search.budget == FULL_BUDGET:
        n_search = cfg.search.trials_per_arm * len(spaces)
        n_final = n_seeds * (len(spaces) + n_baselines)
        echo(
            f"trials: {n_search} search ({cfg.search.trials_per_arm} per arm x {len(spaces)} arms) and "
            f"{n_final} final re-runs ({n_seeds} seeds x {len(spaces)} arms and "
            + ("the baseline)" if n_baselines == 1 else f"{n_baselines} baselines)")
            + (_ladder_words(n_ladder, n_seeds) if n_ladder else "")
        )
        return _RunPlan(baselines, ladder, False, 0.0, n_search + n_final + n_ladder)
    spent = sum(range_test_cost(run_dir, cfg.train.epochs, steps_per_epoch).values())
    echo(
        f"racing: a budget of {cfg.search.budget:g} trainings"
        + (f" ({spent:.3g} spent by the range tests)" if spent else "")
        + f", in rounds: {len(spaces)} arms' first points and {n_baselines} baselines "
        "on the first seed, then search trials and seeds for the candidates a paired test keeps"
    )
    # the most a race can run: every search trial (the first point among them), one more first-seed run for
    # an arm whose search replaced its config, every seed of every candidate, the recommended arm's shorter
    # budgets on every seed, its ladder
    n_most = (
        len(spaces) * (cfg.search.trials_per_arm + 1) + (len(spaces) + n_baselines + 1) * n_seeds + n_ladder
    )
    return _RunPlan(baselines, ladder, True, spent, n_most)


def _searcher(
    cfg: StudyConfig, spaces: dict[str, ArmSpace], storage: Any, plan: _RunPlan, run_dir: Path
) -> Any:
    """The Tuner's searcher: the race's rounds, or per-arm OptunaSearch beside the fixed runs
    (`ArmsSearcher`)."""
    from ray.tune.search import ConcurrencyLimiter

    mode = metric_mode(cfg.train)

    def optuna_search(arm: str, space: ArmSpace) -> ResumableOptunaSearch:
        return ResumableOptunaSearch(
            space=define_by_run(space),
            metric=METRIC,
            mode=mode,
            storage=storage,
            study_name=arm,
            sampler=arm_sampler(cfg, arm),
        )

    if plan.racing:
        drop = ("stage", "seed", "budgets")
        firsts = {c["arm"]: {k: v for k, v in c.items() if k not in drop} for c in plan.baselines}
        searchers = {arm: optuna_search(arm, space) for arm, space in spaces.items()}
        settings = trial_settings(cfg)
        plan_path = run_dir / PLAN_FILE
        baselines = list(firsts.values())
        return RaceSearcher(searchers, cfg, settings, plan.ladder, plan.spent, plan_path, rungs_of, baselines)
    limit = cfg.search.max_concurrent_per_arm
    return ArmsSearcher(
        {arm: ConcurrencyLimiter(optuna_search(arm, s), max_concurrent=limit) for arm, s in spaces.items()},
        cfg.search.trials_per_arm,
        final_runs=functools.partial(final_runs, cfg, spaces),  # picklable: Tune saves the searcher
        first_runs=plan.baselines,
        epochs=cfg.train.epochs,
        mode=mode,
        last_runs=functools.partial(recommended_ladder, cfg, plan.ladder) if plan.ladder else None,
    )


def _tuner(
    cfg: StudyConfig,
    trainable: Any,
    searcher: Any,
    plan: _RunPlan,
    recorder: Recorder,
    run_dir: Path,
    n_arms: int,
) -> Any:
    """The study's one Tuner; ASHA judges only a full study's search (a race's rounds run whole: ASHA's calls
    follow which trial reaches a rung first)."""
    from ray import tune

    scheduler = None
    if cfg.early_stopping.enabled and not plan.racing:
        scheduler = PerArmASHA(
            metric="cycle_val_metric",
            mode=metric_mode(cfg.train),
            max_t=cfg.train.epochs,
            grace_period=cfg.early_stopping.grace_period,
            reduction_factor=cfg.early_stopping.reduction_factor,
        )
    return tune.Tuner(
        trainable,
        param_space={**trial_settings(cfg), "seed": cfg.search.search_seed},
        tune_config=tune.TuneConfig(
            num_samples=plan.n_most,
            search_alg=searcher,
            scheduler=scheduler,
            reuse_actors=True,
            # Without a cap Tune keeps one trial pending for a custom searcher, which ran trials one at a
            # time.
            max_concurrent_trials=n_arms * cfg.search.max_concurrent_per_arm,
        ),
        run_config=tune.RunConfig(
            name="study",
            storage_path=str((run_dir / "ray").resolve()),
            callbacks=[recorder.callback],
            failure_config=tune.FailureConfig(max_failures=1),  # retry a trial once when its worker is lost
            verbose=0,
        ),
    )


# Said by Ray or Optuna during the fit, and said better (or not worth saying) by the study: Tune's list of
# trials it did not finish (the study's "unfinished" or "failed runs" lines); a GP sampler's suggestion that
# took over a second on a loaded machine (its one-time set-up, ~1.1 s); a result Optuna already had for that
# step (a restored trial reporting again).
_QUIET_WARNINGS = (
    r"Define-by-run function passed in the `space` argument took",
    r"The reported value is ignored because this `step=",
)
_QUIET_LOGS = {"ray.tune.tune": "Trials did not complete"}


class _Drop(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.text)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Around `Tuner.fit`: the lines of `_QUIET_WARNINGS` and `_QUIET_LOGS` do not reach the console."""
    filters = [(logging.getLogger(name), _Drop(text)) for name, text in _QUIET_LOGS.items()]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)


def _race_words(plan: dict | None) -> str:
    """The race's closing line: what it spent, what it stopped and what the budget left unrun."""
    if not plan:
        return "racing: no plan.json written"
    line = f"racing spent {plan['spent']:.3g} of {plan['budget']:g} trainings in {len(plan['rounds'])} rounds"
    if plan.get("shared"):
        line += f"; {len(plan['shared'])} runs shared with another name's same training, trained once"
    if plan["stopped"]:
        line += f"; stopped {len(plan['stopped'])}: " + ", ".join(sorted(plan["stopped"]))
    line += "; not run: " + ("; ".join(plan["not_run"]) if plan["not_run"] else "nothing the budget cut")
    return line + " (plan.json)"


def _ladder_words(n_ladder: int, n_seeds: int) -> str:
    """The trials line's tail: and up to 6 ladder runs (3 seeds x 2 rungs of the recommended arm, last)."""
    return (
        f" and up to {n_ladder} ladder runs ({n_seeds} seeds x {n_ladder // n_seeds} rungs of the "
        "recommended arm, once its final re-runs and the baselines' decide it)"
    )


__all__ = [
    "baseline_runs",
    "final_runs",
    "fixed_runs",
    "ladder_runs",
    "recommended_ladder",
    "run_trials",
    "rungs_of",
    "skipped_baselines",
    "trial_settings",
]
