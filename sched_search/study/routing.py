"""One Ray Tune run for all arms: a searcher that routes trials to per-arm OptunaSearch, and ASHA per arm.

Tune takes one search algorithm and one scheduler per Tuner; these small adapters keep each arm's Optuna study
and early stopping separate inside that one Tuner. Nothing else wraps Ray or Optuna.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

METRIC = "val_metric"  # what Optuna optimises: a trial's final val metric, in the study's direction


class ResumableOptunaSearch(OptunaSearch):
    """`OptunaSearch` that tolerates a resumed trial which Optuna has already finished, and one it never will.

    After a kill -9, Tune's experiment checkpoint can lag Optuna's database: Tune re-runs a trial Optuna was
    already told about, and `OptunaSearch.on_trial_result` (`ot_trial.report`) raises
    UpdateFinishedTrialError; its `on_trial_complete` already only logs such errors. The first outcome stays
    in Optuna; the tables take Tune's. A trial asked after the checkpoint is handed to a trial Tune asks for
    in its place (`adopt_lost`).
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def adopt_lost(self) -> None:
        """After a resume: line up the Optuna trials asked after Tune last saved this searcher, to be handed,
        in the order they were asked, to the trials Tune asks for again (`suggest`).

        Tune's restored state never started those trials, so it asks for new ones. Each gets a lost trial's
        config (its Optuna trial, finished or not: one record per trial, and Optuna's COMPLETE trials per arm
        stay the arm's budget), not a new sample: the first of them may have taken the range test's enqueued
        first point, and a random config in its place changed a resumed study's answer. Trials the saved
        state knows are re-run by Tune and told as usual.
        """
        known = {t.number for t in self._ot_trials.values()}
        self._lost = [
            t._trial_id  # Optuna's storage id of the trial (FrozenTrial keeps it private)
            for t in sorted(self._ot_study.get_trials(deepcopy=False), key=lambda t: t.number)
            if t.number not in known and t.state != optuna.trial.TrialState.WAITING
        ]

    def suggest(self, trial_id: str) -> dict | None:
        lost = getattr(self, "_lost", [])
        if trial_id not in self._ot_trials and lost:
            # its define-by-run suggestions return the values that trial already holds
            self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, lost.pop(0))
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self._ot_trials.get(trial_id)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if trial is not None and trial.number in {
            t.number for t in self._ot_study.get_trials(deepcopy=False, states=finished)
        }:
            self._completed_trials.add(trial_id)  # Optuna has its outcome from before the kill: keep that one
            return
        super().on_trial_complete(trial_id, result, error)


class ArmsSearcher(Searcher):
    """Round-robin over per-arm searchers, then each arm's final re-runs: the whole study in one Tuner.

    Tune takes one search algorithm per Tuner, and a Tuner cost about 3-4 s of start-up (fresh worker
    processes importing torch), against about 2 s of training per arm on the digits study. This routes each
    new search trial to the next arm with budget left (equal trials per arm) and every result back to that
    arm's searcher; when an arm's last search trial ends, `final_runs(arm, best_config)` queues its re-runs.
    Fixed runs (`first_runs`, the baseline, and the finals) go before new search trials, longest work first.
    `last_runs`, when given, is called once after every other run has ended, with their records
    (`tables.tables_from_rows`'s input): the runs it returns are the study's last (the attribution ladder of
    the arm the verdict recommends, which only the finals decide).

    The best config has the best final val metric (in `mode`'s direction) among trials that ran all `epochs`
    (ASHA-stopped trials are judged on a shorter run and are eligible only when none completed), ties to the
    lower val loss.
    """

    def __init__(
        self,
        searchers: dict[str, Searcher],
        trials_per_arm: int,
        final_runs: Callable[[str, dict], list[dict]],
        first_runs: list[dict] = (),
        epochs: int = 0,
        mode: str = "max",
        last_runs: Callable[[dict], list[dict]] | None = None,
    ):
        super().__init__(metric=METRIC, mode=mode)
        self.sign = 1.0 if mode == "max" else -1.0
        self.searchers = searchers
        self.trials_per_arm = trials_per_arm
        self.epochs = epochs
        self.final_runs = final_runs
        self.queue = list(first_runs)
        self.started = dict.fromkeys(searchers, 0)
        self.ended = dict.fromkeys(searchers, 0)
        self.outcomes: dict[str, list[tuple]] = {arm: [] for arm in searchers}
        self.arm_of: dict[str, str] = {}
        self.configs: dict[str, dict] = {}
        self.turn = 0
        self.last_runs = last_runs
        # a started fixed or final run's trial id -> [its results, its error or None]
        self.fixed: dict[str, list] = {}
        self.fixed_running: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # every arm's searcher already has its space, metric and mode

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self.queue and self.last_runs is not None and self._all_ended():
            last_runs, self.last_runs = self.last_runs, None
            self.queue += last_runs(self._records())
        if self.queue:
            config = self.queue.pop(0)
            self.configs[trial_id], self.fixed[trial_id] = config, [[], None]
            self.fixed_running.add(trial_id)
            return config
        arms = list(self.searchers)
        for i in range(len(arms)):
            arm = arms[(self.turn + i) % len(arms)]
            if self.started[arm] >= self.trials_per_arm:
                continue
            config = self.searchers[arm].suggest(trial_id)  # None: that arm is at its concurrency cap
            if config is None or config == Searcher.FINISHED:
                continue
            self.started[arm] += 1
            self.arm_of[trial_id] = arm
            self.configs[trial_id] = config
            self.turn = (arms.index(arm) + 1) % len(arms)
            return config
        return Searcher.FINISHED if self._search_ended() and self.last_runs is None else None

    def _search_ended(self) -> bool:
        return all(n >= self.trials_per_arm for n in self.ended.values())

    def _all_ended(self) -> bool:
        return self._search_ended() and not self.fixed_running

    def _records(self) -> dict[tuple[str, str], tuple[dict, list[dict], Any]]:
        return {
            (self.configs[t].get("stage", "search"), t): (self.configs[t], results, error)
            for t, (results, error) in self.fixed.items()
        }

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.arm_of:
            self.searchers[self.arm_of[trial_id]].on_trial_result(trial_id, result)
        elif trial_id in self.fixed and self.last_runs is not None:
            self.fixed[trial_id][0].append(result)
            # Its last budget's result is all the verdict needs of it. Waiting for Tune's complete event cost
            # a step: Tune then held no trial for the idle slot and let its warm actor go, and the default
            # study's ladder ran on one slot (13 s instead of 7).
            if result.get("budget") == self.configs[trial_id].get("budgets", [1.0])[-1]:
                self.fixed_running.discard(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        arm = self.arm_of.get(trial_id)
        if arm is None:  # a fixed or final run: not Optuna's business
            self.fixed_running.discard(trial_id)
            if trial_id in self.fixed and error:
                self.fixed[trial_id][1] = "the run failed (its error is in the trials table)"
            return
        self.searchers[arm].on_trial_complete(trial_id, result, error)
        self.ended[arm] += 1
        if result and not error and result.get("status") == "ok":
            complete = result["epoch"] >= self.epochs
            score = self.sign * result[METRIC]
            self.outcomes[arm].append((complete, score, -result["val_loss"], trial_id))
        if self.ended[arm] == self.trials_per_arm and self.outcomes[arm]:
            complete, *_, best_id = max(self.outcomes[arm])
            best = {**self.configs[best_id], "trial_id": best_id, "full_budget": complete}
            self.queue += self.final_runs(arm, best)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)  # as OptunaSearch.save does for itself

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        for searcher in self.searchers.values():
            inner = getattr(searcher, "searcher", searcher)  # under a ConcurrencyLimiter
            if isinstance(inner, ResumableOptunaSearch):
                inner.adopt_lost()


def cycle_asha(
    metric: str, mode: str, max_t: int, grace_period: int = 4, reduction_factor: int = 3
) -> ASHAScheduler:
    """ASHA that judges cyclical schedules only at cycle ends, for your own `Tuner`.

    Mid-cycle the LR peaks and the accuracy dips, so comparing trials there stops good CLR/SGDR trials. Report
    `cycle_epoch` (the last epoch that ended where the schedule may be judged: its spec's `judged_at`, every
    epoch for a schedule without cycles) and the metric as it was at that epoch; ASHA counts time in
    `cycle_epoch`.

    Example:
        >>> tune.TuneConfig(scheduler=cycle_asha("cycle_val_metric", "max", max_t=20))  # doctest: +SKIP
    """
    return ASHAScheduler(
        time_attr="cycle_epoch",
        metric=metric,
        mode=mode,
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )


class PerArmASHA(FIFOScheduler):
    """ASHA per arm: a trial is only ever compared with trials of its own schedule x optimizer; finals run
    out."""

    def __init__(self, **asha: Any):
        super().__init__()
        self.asha = asha
        self.by_arm: dict[str, ASHAScheduler] = {}
        self.final = FIFOScheduler()

    def _of(self, trial: Any) -> FIFOScheduler:
        if trial.config.get("stage") == "final":
            return self.final  # final re-runs are never stopped early
        arm = trial.config.get("arm", "?")
        if arm not in self.by_arm:
            self.by_arm[arm] = cycle_asha(**self.asha)
        return self.by_arm[arm]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)
