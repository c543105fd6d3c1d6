"""The study's searcher without a Tuner: `ArmsSearcher` over real per-arm `OptunaSearch` on Optuna studies
made as `search.run_trials` makes them, told results as Tune tells them. Which search trial the final re-runs
come from (finished trials first, best in the study's direction, ties to the lower val loss), in both
directions, and the Optuna study's own direction."""

from __future__ import annotations

import functools

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter

from sched_search.study.routing import METRIC, ArmsSearcher, PerArmASHA, ResumableOptunaSearch
from sched_search.study.search import _fail_unclaimed, _new_optuna_study
from sched_search.study.space import RangeSeed, build_space, define_by_run

EPOCHS = 4
SEED = RangeSeed("sgdw", max_lr=0.1, min_lr=0.01, weight_decay=1e-4, weight_decay_range=(1e-5, 1e-3),
                 min_loss_lr=0.3)  # fmt: skip
ARMS = ("one_cycle-sgdw", "clr-sgdw")


def _searcher(
    mode: str,
    trials_per_arm: int,
    storage: optuna.storages.BaseStorage | None = None,
    arms: tuple[str, ...] = ARMS,
    max_concurrent: int = 0,
) -> tuple[ArmsSearcher, list, optuna.storages.BaseStorage]:
    """As `search.run_trials` builds it; `max_concurrent` > 0 puts each arm's searcher under Tune's
    ConcurrencyLimiter, as the study does."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or optuna.storages.InMemoryStorage()
    spaces = {arm: build_space(arm, SEED, EPOCHS, 10) for arm in arms}
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
    if max_concurrent:
        searchers = {
            arm: ConcurrencyLimiter(s, max_concurrent=max_concurrent) for arm, s in searchers.items()
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


def _last_runs(told: list, records: dict) -> list[dict]:
    told.append(records)
    return [{"arm": "ladder:untuned-clr-sgdw", "stage": "final", "seed": s} for s in (0, 1)]


def test_last_runs_wait_for_every_other_run_and_see_their_results(tmp_path) -> None:
    """The attribution ladder's hook: asked once, after every search trial, baseline and final run has ended
    (failed ones included), with what those runs reported; its runs are the last, and a searcher saved before
    it was asked still asks it when restored."""
    searcher, _, _ = _searcher("max", trials_per_arm=1)
    told: list[dict] = []
    searcher.last_runs = functools.partial(_last_runs, told)
    searcher.queue = [{"arm": "constant-adam", "stage": "final", "seed": s} for s in (0, 1)]
    assert searcher.suggest("b0")["arm"] == searcher.suggest("b1")["arm"] == "constant-adam"
    searcher.on_trial_result("b0", {"val_metric": 0.5, "epoch": 4})
    searcher.on_trial_complete("b0", {"val_metric": 0.5, "epoch": 4})
    searcher.on_trial_complete("b1", None, error=True)
    s0, s1 = searcher.suggest("s0"), searcher.suggest("s1")
    assert isinstance(s0, dict) and isinstance(s1, dict)
    searcher.on_trial_complete("s0", _result(0.6, "max", 0.4))
    searcher.on_trial_complete("s1", _result(0.7, "max", 0.4))
    finals = [searcher.suggest(f"f{i}") for i in range(6)]  # both arms' finals, 3 seeds each
    assert all(c["stage"] == "final" for c in finals)
    for i in range(5):
        searcher.on_trial_result(f"f{i}", {"val_metric": 0.9, "epoch": 4, "seed": i})
        searcher.on_trial_complete(f"f{i}", {"val_metric": 0.9})
    assert searcher.suggest("early") is None and told == []  # one final run still running
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = ArmsSearcher({}, trials_per_arm=1, final_runs=list)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.last_runs = searcher.last_runs  # the partial's list was pickled as a copy: watch this one
    restored.on_trial_complete("f5", None, error=True)
    assert restored.suggest("l0") == {"arm": "ladder:untuned-clr-sgdw", "stage": "final", "seed": 0}
    (records,) = told
    assert set(records) == {("final", t) for t in ("b0", "b1", *(f"f{i}" for i in range(6)))}
    config, results, error = records[("final", "b0")]
    assert config["arm"] == "constant-adam" and results == [{"val_metric": 0.5, "epoch": 4}] and error is None
    assert records[("final", "b1")][2] and records[("final", "f5")][2]  # failed: the tables' error rows
    assert [r["seed"] for r in records[("final", "f2")][1]] == [2]
    assert restored.suggest("l1")["seed"] == 1
    assert restored.suggest("done") == "FINISHED" and len(told) == 1  # Tune lets the running ones end


def test_a_fixed_run_has_ended_for_last_runs_at_its_last_budgets_result() -> None:
    """Tune tells a run's completion a step after its last result; the last budget's result is all the
    verdict needs, so the ladder is queued while that run's worker finishes: Tune keeps both slots warm."""
    searcher, _, _ = _searcher("max", trials_per_arm=1, arms=("clr-sgdw",))
    told: list[dict] = []
    searcher.last_runs = functools.partial(_last_runs, told)
    assert isinstance(searcher.suggest("s0"), dict)
    searcher.on_trial_complete("s0", _result(0.6, "max", 0.4))
    finals = [searcher.suggest(f"f{i}") for i in range(3)]
    for config in finals:
        config["budgets"] = [0.5, 1.0]  # as `search.final_runs` gives them
    for i in range(3):
        searcher.on_trial_result(f"f{i}", {"val_metric": 0.8, "epoch": 2, "budget": 0.5})
    searcher.on_trial_complete("f0", {"val_metric": 0.9})
    searcher.on_trial_complete("f1", {"val_metric": 0.9})
    assert searcher.suggest("early") is None and told == []  # f2 has reported budget 0.5 only
    searcher.on_trial_result("f2", {"val_metric": 0.9, "epoch": 4, "budget": 1.0})
    assert searcher.suggest("l0")["arm"] == "ladder:untuned-clr-sgdw"  # before f2's complete event
    (records,) = told
    assert [r["budget"] for r in records[("final", "f2")][1]] == [0.5, 1.0]
    searcher.on_trial_complete("f2", {"val_metric": 0.9})  # then comes, and changes nothing
    assert searcher.suggest("l1")["seed"] == 1 and len(told) == 1


def test_restore_hands_the_optuna_trials_asked_after_the_saved_state_to_tunes_new_asks(tmp_path) -> None:
    """kill -9 between Tune saving the searcher and Tune saving the next: Optuna asked trials the restored
    searcher never started. Tune asks again; each new ask gets a lost Optuna trial, in order, with its own
    config (no new Optuna trial: COMPLETE trials per arm stay the arm's budget), a lost trial that finished
    keeps its result, and the trials the saved state knows stay running for Tune to re-run."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher, _, _ = _searcher("max", trials_per_arm=3, storage=storage, max_concurrent=3)
    known = [searcher.suggest(f"t{i}") for i in range(2)]  # one per arm
    searcher.save(str(tmp_path / "searcher.pkl"))
    lost = [searcher.suggest(f"t{i}") for i in range(2, 6)]  # after the save: a 2nd and a 3rd per arm
    searcher.on_trial_complete("t4", _result(0.5, "max", 0.4))  # ARMS[0]'s third finished before the kill

    restored = ArmsSearcher({}, trials_per_arm=3, final_runs=list)  # Tune makes it anew, then restores it
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert all(c is not None and c != ArmsSearcher.FINISHED for c in known)
    again = [restored.suggest(f"t{i}") for i in range(6, 10)]  # each arm's second and third, asked again
    assert again == lost
    for i in range(6, 10):
        restored.on_trial_complete(f"t{i}", _result(0.6, "max", 0.3))
    running, complete = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE
    studies = {arm: optuna.load_study(study_name=arm, storage=storage) for arm in ARMS}
    assert {arm: [t.state for t in s.trials] for arm, s in studies.items()} == {
        arm: [running, complete, complete] for arm in ARMS
    }
    assert studies[ARMS[0]].trials[2].value == 0.5  # told before the kill: that outcome is kept


def test_restore_asks_the_lost_trials_configs_again_first_point_included(tmp_path) -> None:
    """kill -9 after Optuna's first trial of an arm (the range test's enqueued first point) finished but
    before Tune saved it: the resumed search must ask that config again, not a random one in its place (which
    changed a resumed study's answer), then the config sampled after it; a second kill hands over only what
    the second run lost."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher, _, _ = _searcher("max", trials_per_arm=3, storage=storage, arms=ARMS[:1], max_concurrent=3)
    searcher.save(str(tmp_path / "searcher.pkl"))  # before any trial: the first point is still queued
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    searcher.on_trial_complete("t0", _result(0.5, "max", 0.4))
    space = build_space(ARMS[0], SEED, EPOCHS, 10)
    assert {k: first[k] for k in space.first_point()} == space.first_point() and second != first

    restored = ArmsSearcher({}, trials_per_arm=3, final_runs=list)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("r0") == first and restored.suggest("r1") == second
    restored.save(str(tmp_path / "searcher2.pkl"))
    third = restored.suggest("r2")  # lost to a second kill; r0 and r1 were saved
    again = ArmsSearcher({}, trials_per_arm=3, final_runs=list)
    again.restore(str(tmp_path / "searcher2.pkl"))
    assert again.suggest("a2") == third
    assert len(optuna.load_study(study_name=ARMS[0], storage=storage).trials) == 3  # one per trial


def test_a_lost_trial_no_resumed_ask_took_is_failed_once_tune_ends(tmp_path) -> None:
    """Two Optuna trials asked after Tune's save, and the resumed search asks once more only (a race that
    decided otherwise): the first lost trial is handed over and finishes; the other, which nothing will
    finish, is told FAIL with its reason once Tune has ended (`search._fail_unclaimed`), not left RUNNING."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher, _, _ = _searcher("max", trials_per_arm=3, storage=storage, arms=ARMS[:1], max_concurrent=3)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", _result(0.5, "max", 0.4))
    searcher.save(str(tmp_path / "searcher.pkl"))
    lost = [searcher.suggest("t1"), searcher.suggest("t2")]

    restored = ArmsSearcher({}, trials_per_arm=3, final_runs=list)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("r1") == lost[0]
    restored.on_trial_complete("r1", _result(0.6, "max", 0.3))
    _fail_unclaimed(storage, list(ARMS[:1]))
    trials = optuna.load_study(study_name=ARMS[0], storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[2].user_attrs["fail_reason"].startswith("asked by a study killed before Ray Tune saved")


def test_round_robin_serves_the_next_arm_with_room() -> None:
    """Three arms, one trial at a time each: new trials go round the arms in order; an arm at its
    concurrency cap or at its budget is passed over for the next one in turn, not for the end of the
    round."""
    arms = ("one_cycle-sgdw", "clr-sgdw", "sgdr-sgdw")

    def start(searcher: ArmsSearcher, trial_id: str) -> str:
        assert isinstance(searcher.suggest(trial_id), dict), trial_id
        return searcher.arm_of[trial_id]

    searcher, _, _ = _searcher("max", trials_per_arm=2, arms=arms, max_concurrent=1)
    assert [start(searcher, f"t{i}") for i in range(3)] == list(arms)
    assert searcher.suggest("none") is None  # every arm at its cap of 1
    searcher.on_trial_complete("t1", _result(0.5, "max", 0.4))
    searcher.on_trial_complete("t2", _result(0.5, "max", 0.4))
    assert start(searcher, "t3") == arms[1]  # arms[0] has the turn but is at its cap: the next one in order

    searcher, _, _ = _searcher("max", trials_per_arm=2, arms=arms, max_concurrent=1)
    for i in range(3):
        start(searcher, f"t{i}")
    searcher.on_trial_complete("t1", _result(0.5, "max", 0.4))
    assert start(searcher, "t3") == arms[1]  # arms[1]'s last: it keeps running, at its budget
    searcher.on_trial_complete("t0", _result(0.5, "max", 0.4))
    assert start(searcher, "t4") == arms[0]  # arms[2] at its cap; the turn is arms[1]'s next
    searcher.on_trial_complete("t2", _result(0.5, "max", 0.4))
    assert start(searcher, "t5") == arms[2]  # the turn's arms[1] is at its budget: passed over
    assert searcher.started == dict.fromkeys(arms, 2)


def test_results_reach_the_arms_optuna_trial_and_errors_fail_it() -> None:
    """Tune's intermediate results are reported to the arm's Optuna trial (a final re-run's are not Optuna's
    business); an errored trial is failed in Optuna; a result for a trial Optuna already finished (a resumed
    trial re-run) is ignored, not raised."""
    searcher, _, storage = _searcher("max", trials_per_arm=2)
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.on_trial_result("t0", {METRIC: 0.25, "training_iteration": 1})
    searcher.on_trial_result("final-0", {METRIC: 0.5, "training_iteration": 1})
    first = optuna.load_study(study_name=ARMS[0], storage=storage).trials[0]
    assert first.intermediate_values == {1: 0.25}
    searcher.on_trial_complete("t1", None, error=True)
    assert optuna.load_study(study_name=ARMS[1], storage=storage).trials[0].state.name == "FAIL"
    searcher.on_trial_complete("t0", _result(0.5, "max", 0.4))
    searcher.on_trial_result("t0", {METRIC: 0.75, "training_iteration": 2})  # Tune re-runs it after a resume
    first = optuna.load_study(study_name=ARMS[0], storage=storage).trials[0]
    assert first.state.name == "COMPLETE" and first.value == 0.5 and first.intermediate_values == {1: 0.25}


def _asha_trial(trial_id: str, arm: str, stage: str = "search") -> Trial:
    return Trial("trial_trainable", config={"arm": arm, "stage": stage}, trial_id=trial_id, stub=True)


def _at(cycle_epoch: int, metric: float) -> dict:
    """A Tune result at a cycle end; the epoch count and the plain val metric differ on purpose, so that
    ASHA judging on either would show."""
    return {
        "cycle_epoch": cycle_epoch,
        "cycle_val_metric": metric,
        "training_iteration": cycle_epoch + 1,
        "epoch": cycle_epoch + 1,
        METRIC: 1 - metric,
    }


@pytest.mark.parametrize("mode", ["max", "min"])
def test_per_arm_asha_judges_a_trial_only_against_its_own_arm(mode: str) -> None:
    """At the first rung (cycle_epoch 2) a poor trial of a second arm goes on, the same poor value in the
    arm that already has a better trial is stopped; a value before the rung is not judged; finals run out;
    a finished trial's result is counted for the next."""
    good, poor = (0.9, 0.1) if mode == "max" else (0.1, 0.9)
    asha = PerArmASHA(metric="cycle_val_metric", mode=mode, max_t=8, grace_period=2, reduction_factor=2)
    asha.set_search_properties("cycle_val_metric", mode)
    a1, b1, a2, final = (
        _asha_trial("a1", "clr-sgdw"),
        _asha_trial("b1", "sgdr-sgdw"),
        _asha_trial("a2", "clr-sgdw"),
        _asha_trial("f", "clr-sgdw", stage="final"),
    )
    for t in (a1, b1, a2, final):
        asha.on_trial_add(None, t)
    go, stop = TrialScheduler.CONTINUE, TrialScheduler.STOP
    assert asha.on_trial_result(None, a1, _at(1, good)) == go
    assert asha.on_trial_result(None, a2, _at(1, poor)) == go  # before the first rung (grace period 2)
    assert asha.on_trial_result(None, a1, _at(2, good)) == go
    assert asha.on_trial_result(None, b1, _at(2, poor)) == go  # sgdr-sgdw's first at the rung
    assert asha.on_trial_result(None, a2, _at(2, poor)) == stop  # below clr-sgdw's rung
    assert asha.on_trial_result(None, final, _at(2, poor)) == go
    asha.on_trial_remove(None, a2)
    a3 = _asha_trial("a3", "clr-sgdw")
    asha.on_trial_add(None, a3)
    assert asha.on_trial_result(None, a1, _at(4, good)) == go
    assert asha.on_trial_result(None, a3, _at(2, good)) == go
    assert asha.on_trial_result(None, a3, _at(4, poor)) == stop  # the second rung (reduction factor 2)
    assert asha.on_trial_result(None, a1, _at(8, good)) == stop  # max_t: done
    asha.on_trial_complete(None, b1, _at(8, good))
    b2 = _asha_trial("b2", "sgdr-sgdw")
    asha.on_trial_add(None, b2)
    assert asha.on_trial_result(None, b2, _at(2, (good + poor) / 2)) == go  # above b1's poor 2-epoch value
    assert set(asha.by_arm) == {"clr-sgdw", "sgdr-sgdw"}
