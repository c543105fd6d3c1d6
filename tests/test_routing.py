"""The study's searcher without a Tuner: `ArmsSearcher` over real per-arm `OptunaSearch` on Optuna studies
made as `search.run_trials` makes them, told results as Tune tells them. Which search trial the final re-runs
come from (finished trials first, best in the study's direction, ties to the lower val loss), in both
directions, and the Optuna study's own direction."""

from __future__ import annotations

import functools

import optuna
import pytest

from sched_search.routing import METRIC, ArmsSearcher, ResumableOptunaSearch
from sched_search.search import _new_optuna_study
from sched_search.space import RangeSeed, build_space, define_by_run

EPOCHS = 4
SEED = RangeSeed("sgdw", max_lr=0.1, min_lr=0.01, weight_decay=1e-4, weight_decay_range=(1e-5, 1e-3),
                 min_loss_lr=0.3)  # fmt: skip
ARMS = ("one_cycle-sgdw", "clr-sgdw")


def _searcher(
    mode: str, trials_per_arm: int, storage: optuna.storages.BaseStorage | None = None
) -> tuple[ArmsSearcher, list, optuna.storages.BaseStorage]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or optuna.storages.InMemoryStorage()
    spaces = {arm: build_space(arm, SEED, EPOCHS, 10) for arm in ARMS}
    for arm, space in spaces.items():
        _new_optuna_study(storage, arm, space, 0, mode)
    searchers = {
        arm: ResumableOptunaSearch(
            space=define_by_run(space),
            metric=METRIC,
            mode=mode,
            storage=storage,
            study_name=arm,
            sampler=optuna.samplers.TPESampler(seed=0),
        )
        for arm, space in spaces.items()
    }
    chosen: list[tuple[str, dict]] = []
    final_runs = functools.partial(_final_runs, chosen)  # picklable, as Tune saves the searcher
    searcher = ArmsSearcher(searchers, trials_per_arm, final_runs, epochs=EPOCHS, mode=mode)
    return searcher, chosen, storage


def _final_runs(chosen: list, arm: str, best: dict) -> list[dict]:
    chosen.append((arm, best))
    return [{"arm": arm, "stage": "final", "seed": s} for s in (0, 1, 2)]


def _result(goodness: float, mode: str, val_loss: float, epoch: int = EPOCHS, status: str = "ok") -> dict:
    """A search trial's last Tune result; `goodness` higher is better, turned into the metric's direction."""
    return {
        METRIC: goodness if mode == "max" else 1 - goodness,
        "val_loss": val_loss,
        "epoch": epoch,
        "status": status,
    }


@pytest.mark.parametrize("mode", ["max", "min"])
def test_finals_rerun_the_best_finished_search_trial(mode: str) -> None:
    """Per arm: a stopped trial scored best but ran fewer epochs, a diverged one scored better still; of the
    finished ones two tie and the lower val loss wins. An arm whose trials were all stopped takes its best
    stopped one and says so."""
    searcher, chosen, storage = _searcher(mode, trials_per_arm=5)
    ids = [f"t{i}" for i in range(10)]
    configs = {i: searcher.suggest(i) for i in ids}
    arm_of = dict(searcher.arm_of)
    assert [arm_of[i] for i in ids] == list(ARMS) * 5  # round robin
    a = [i for i in ids if arm_of[i] == ARMS[0]]
    b = [i for i in ids if arm_of[i] == ARMS[1]]
    spaces = {arm: build_space(arm, SEED, EPOCHS, 10) for arm in ARMS}
    for arm, first in ((ARMS[0], a[0]), (ARMS[1], b[0])):  # the range test's suggestion is asked first
        point = spaces[arm].first_point()
        assert {k: configs[first][k] for k in point} == pytest.approx(point)
    outcomes = {
        a[0]: _result(0.70, mode, 0.40),
        a[1]: _result(0.95, mode, 0.20, epoch=2),  # stopped by ASHA
        a[2]: _result(0.80, mode, 0.50),
        a[3]: _result(0.80, mode, 0.30),  # ties a[2], lower val loss
        a[4]: _result(0.99, mode, 0.10, status="nan"),  # diverged: never chosen, whatever it reports
        b[0]: _result(0.60, mode, 0.40, epoch=1),
        b[1]: _result(0.75, mode, 0.40, epoch=2),
        b[2]: _result(0.65, mode, 0.40, epoch=2),
        b[3]: _result(0.50, mode, 0.40, epoch=1),
        b[4]: _result(0.55, mode, 0.40, epoch=1),
    }
    for i in ids:
        searcher.on_trial_complete(i, outcomes[i])
    best = dict(chosen)
    assert best[ARMS[0]]["trial_id"] == a[3] and best[ARMS[0]]["full_budget"] is True
    assert best[ARMS[1]]["trial_id"] == b[1] and best[ARMS[1]]["full_budget"] is False
    assert {k: best[ARMS[0]][k] for k in configs[a[3]]} == configs[a[3]]
    # the finals are queued before any new search trial
    assert searcher.suggest("f0") == {"arm": ARMS[0], "stage": "final", "seed": 0}

    # Optuna's own record (what TPE learns from) reads the metric in the study's direction
    study = optuna.load_study(study_name=ARMS[0], storage=storage)
    assert study.direction == (
        optuna.study.StudyDirection.MAXIMIZE if mode == "max" else optuna.study.StudyDirection.MINIMIZE
    )
    assert study.best_value == outcomes[a[4]][METRIC]  # its best in its direction (it knows no status)
    assert study.user_attrs["first_point_source"] == "range test suggestion"


def test_no_finals_before_an_arms_last_search_trial_ends() -> None:
    searcher, chosen, _ = _searcher("max", trials_per_arm=2)
    ids = [f"t{i}" for i in range(4)]
    for i in ids:
        searcher.suggest(i)
    assert searcher.suggest("extra") is None  # every arm's budget is used; trials still running
    searcher.on_trial_complete("t0", _result(0.5, "max", 0.4))
    assert chosen == []
    searcher.on_trial_complete("t2", _result(0.6, "max", 0.4))
    assert [arm for arm, _ in chosen] == [ARMS[0]] and chosen[0][1]["trial_id"] == "t2"
    searcher.on_trial_complete("t1", None, error=True)  # an errored trial counts as ended, never chosen
    searcher.on_trial_complete("t3", _result(0.1, "max", 0.4))
    assert [arm for arm, _ in chosen] == list(ARMS) and chosen[1][1]["trial_id"] == "t3"
    for _ in range(6):
        assert searcher.suggest("f")["stage"] == "final"
    assert searcher.suggest("done") == "FINISHED"


def test_restore_fails_the_optuna_trials_asked_after_the_saved_state(tmp_path) -> None:
    """kill -9 between Tune saving the searcher and Tune saving the next: Optuna asked trials the restored
    searcher never started. Restored, it fails exactly those; the trials it knows stay running for Tune to
    re-run, and each arm again holds its budget of live trials."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher, _, _ = _searcher("max", trials_per_arm=2, storage=storage)
    known = [searcher.suggest(f"t{i}") for i in range(2)]  # one per arm
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("t2")
    searcher.suggest("t3")  # the orphans: one more per arm

    restored = ArmsSearcher({}, trials_per_arm=2, final_runs=list)  # Tune makes it anew, then restores it
    restored.restore(str(tmp_path / "searcher.pkl"))
    running, fail = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    for arm in ARMS:
        assert [t.state for t in optuna.load_study(study_name=arm, storage=storage).trials] == [running, fail]
    assert all(c is not None and c != ArmsSearcher.FINISHED for c in known)
    for i in (4, 5):
        assert isinstance(restored.suggest(f"t{i}"), dict)  # each arm's second trial, asked again
    for arm in ARMS:
        trials = optuna.load_study(study_name=arm, storage=storage).trials
        assert [t.state for t in trials] == [running, fail, running]
