"""A budget spent by racing (study/racing.py, results/race.py): the key and the flag and their errors, the
race's test, the plan that the verdict and runs_done read, a budgeted smoke study within its budget, and the
same verdict whatever the workers' timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sched_search.cli import main
from sched_search.config import StudyFileError
from sched_search.results import race_calls
from sched_search.results.race import runs_planned, verdict_trials
from sched_search.study.racing import check_budget, minimum_budget, range_test_estimate
from sched_search.study.studyfile import load_study

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"


def _study(tmp_path: Path, budget: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(SMOKE.read_text().replace('budget = "full"', f"budget = {budget}"))
    return path


@pytest.mark.parametrize("budget", ["0", "-3", '"abc"', "true", "inf", "[5]"])
def test_bad_budget_names_file_and_key(tmp_path: Path, budget: str) -> None:
    path = _study(tmp_path, budget)
    with pytest.raises(
        StudyFileError,
        match=rf'^{path}: \[search\] budget must be a number of trainings > 0 or "full", but got',
    ):
        load_study(path)


def test_budget_full_number_and_default(tmp_path: Path) -> None:
    assert load_study(_study(tmp_path, '"full"')).search.budget == "full"
    assert load_study(_study(tmp_path, "12")).search.budget == 12.0
    assert load_study(None).search.budget == 28.0  # the default study races (docs/workflow.md)


def test_budget_below_the_first_round_is_refused(tmp_path: Path) -> None:
    cfg = load_study(_study(tmp_path, "7"))
    # smoke: 2 families x 2 weight decays x 100 steps over 4 epochs x 19 steps; 2 arms and 1 baseline
    assert range_test_estimate(cfg, 19) == pytest.approx(400 / 76)
    assert minimum_budget(cfg, 19) == pytest.approx(400 / 76 + 3)
    with pytest.raises(StudyFileError, match=r"s\.toml: \[search\] budget must be at least 8\.26 trainings"):
        check_budget(cfg, 19)
    with pytest.raises(StudyFileError, match=r"^--budget must be at least 8\.26 .* but got 7\.$"):
        check_budget(cfg, 19, flag=True)
    check_budget(replace(cfg, search=replace(cfg.search, budget=8.3)), 19)
    check_budget(replace(cfg, search=replace(cfg.search, budget="full")), 19)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan"])
def test_bad_budget_flag_is_one_error_line(value: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["study", str(SMOKE), "--budget", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert err[-1].startswith("python -m sched_search study: error: argument --budget: must be a number of")


def test_budget_flag_below_minimum_is_one_error_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + SMOKE.read_text())
    code = main(["study", str(path), "--budget", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        (
            "error: --budget must be at least 8.26 trainings (the range tests, 5.26, and "
            "one first run for each of 2 arms and 1 baselines), but got 4."
        )
    ]
    assert not (tmp_path / "runs").exists()  # before any work: no run folder


# ------------------------------------------------------------------------------------------- the race's test


def test_race_calls_one_seed_pairs_by_example() -> None:
    lead = np.array([[1.0] * 90 + [0.0] * 10])
    close = np.array([[1.0] * 88 + [0.0] * 12])
    far = np.array([[1.0] * 50 + [0.0] * 50])
    leader, calls = race_calls({"a": lead, "b": close, "c": far})
    assert leader == "a"
    assert calls["b"]["call"] == "contender" and calls["b"]["diff"] == pytest.approx(0.02)
    assert calls["c"]["call"] == "below" and calls["c"]["diff"] == pytest.approx(0.40)
    # per-example differences: 40 ones in 100, t = 0.4 / (sd / 10); Holm over 2 comparisons
    assert calls["c"]["p_holm"] < 1e-10
    # "min": lower is better, the leader is the lowest
    leader, calls = race_calls({"a": lead, "c": far}, sign=-1.0)
    assert leader == "c" and calls["a"]["call"] == "below"


def test_race_calls_without_examples_on_one_seed_calls_nothing() -> None:
    leader, calls = race_calls({"a": np.array([[0.9]]), "b": np.array([[0.1]])})
    assert leader == "a" and calls["b"]["call"] == "contender" and np.isnan(calls["b"]["p_holm"])


def test_race_calls_several_seeds_is_the_verdicts_test() -> None:
    from sched_search.results.paired import holm_family

    rng = np.random.default_rng(0)
    a = (rng.random((3, 200)) < 0.9).astype(float)
    b = (rng.random((3, 200)) < 0.6).astype(float)
    leader, calls = race_calls({"a": a, "b": b}, clip=True)
    assert leader == "a" and calls["b"]["call"] == "below"
    assert calls["b"]["p_holm"] == holm_family({"b": (a, b)}, clip=True)["b"]["p_holm"]


def test_plan_decides_what_is_planned_and_judged() -> None:
    trials = pd.DataFrame({"trial_id": ["t1", "t2", "t3"], "arm": ["a", "b", "a"]})
    plan = {
        "runs": [{"trial_id": "t1"}, {"trial_id": "t2"}, {"trial_id": None}],
        "finished": True,
        "left_out": {"t2": "b: below a"},
    }
    assert runs_planned(trials, plan) == (2, 3)
    assert runs_planned(trials, {**plan, "finished": False}) == (2, 4)  # its next round is not known yet
    assert list(verdict_trials(trials, plan)["trial_id"]) == ["t1", "t3"]
    assert verdict_trials(trials, None) is trials


# ------------------------------------------------------------------------------------------- real studies


def test_full_budget_keeps_every_planned_run(smoke_run: Path) -> None:
    from sched_search.results import load_run

    run = load_run(smoke_run)
    assert not (smoke_run / "plan.json").exists() and "race" not in run.verdict
    # 2 arms x (2 search trials + 3 seeds) and the baseline on 3 seeds, as before budgets
    assert run.trials["trial_id"].nunique() == 13 and not run.unfinished


@pytest.mark.slow
def test_budgeted_smoke_study_stays_within_its_budget(ray_local, tmp_path: Path) -> None:
    from sched_search.results import load_run
    from sched_search.study.driver import run_study

    cfg = load_study(SMOKE)
    cfg = replace(cfg, runs_dir=str(tmp_path), search=replace(cfg.search, budget=10.0))
    lines: list[str] = []
    run_dir = run_study(cfg, echo=lines.append)
    plan = json.loads((run_dir / "plan.json").read_text())
    run = load_run(run_dir)
    # what the tables hold, in trainings: every run's epochs over the study's, and the range tests' steps
    timing = json.loads((run_dir / "timing.json").read_text())
    trained = run.trials["budget_epochs"].sum() / cfg.train.epochs
    spent = trained + sum(timing["range_test_trial_equivalents"].values())
    assert spent == pytest.approx(plan["spent"]) and spent <= 10.0
    assert plan["finished"] and plan["not_run"]  # 10 trainings do not hold every seed of every candidate
    assert plan["rounds"][0]["what"] == "first points and baselines on the first seed"
    assert {(r["kind"], r["seed"]) for r in plan["rounds"][0]["runs"]} == {("first", 0), ("seed", 0)}
    assert run.verdict["race"]["not_run"] == plan["not_run"] and not run.unfinished
    assert any(line.startswith("racing spent") and "not run: " in line for line in lines)
    judged = set(verdict_trials(run.trials, plan)["arm"])
    assert set(run.verdict["arms"]) <= judged and not judged & set(plan["stopped"])


_SLOW_MODELS = """
import os, random, time

from sched_search.training import build_model


def mlp(input_shape, num_classes, hidden=64):
    # a loaded machine: each trial starts after a random wait, so trials end in another order
    time.sleep(random.uniform(0, float(os.environ.get("RACE_TEST_DELAY", "0"))))
    return build_model("mlp", input_shape, num_classes, hidden=hidden)
"""


@pytest.mark.slow
def test_same_verdict_whatever_the_workers_timing(tmp_path: Path) -> None:
    (tmp_path / "slow_models.py").write_text(textwrap.dedent(_SLOW_MODELS))
    study = tmp_path / "race.toml"
    text = (
        SMOKE.read_text()
        .replace('budget = "full"', "budget = 18")
        .replace('name = "mlp"', 'name = "slow_models:mlp"')
    )
    verdicts = []
    for delay in ("0", "1.5"):
        runs = tmp_path / f"runs-{delay}"
        study.write_text(f'runs_dir = "{runs}"\n' + text)
        env = {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "RACE_TEST_DELAY": delay,
        }
        done = subprocess.run(
            [sys.executable, "-m", "sched_search", "study", str(study)],
            check=False,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        (run_dir,) = runs.iterdir()
        verdicts.append(json.loads((run_dir / "verdict.json").read_text()))
        plan = json.loads((run_dir / "plan.json").read_text())
        # raced, with search trials: Optuna is told in one order, whatever order they ended in
        assert any(r["what"].startswith("search trials") for r in plan["rounds"])
    # The answer is the same. The frontier learns the runs of one round in the order they ended (the
    # machine's timing) and names Tune's trial ids (new each run): its intermediate points may differ, its
    # end (the answer, at the trainings spent) and the baselines' points may not.
    frontiers = [v.pop("frontier") for v in verdicts]
    [v.pop("last_half") for v in verdicts]
    assert verdicts[0] == verdicts[1]
    ends = [(f[-1]["arm"], f[-1]["metric"], f[-1]["trainings"]) for f in frontiers]
    based = [sorted((p["arm"], p["metric"]) for p in f if p["kind"] == "baseline") for f in frontiers]
    assert ends[0] == ends[1] and based[0] == based[1]


@pytest.mark.slow
def test_interrupted_race_resumes_to_its_end(tmp_path: Path) -> None:
    """Ctrl-C as the first round's first run ends, then --resume: the rounds go on from Tune's saved
    searcher, the study ends within its budget, and plan.json counts every run it released."""
    from test_interrupt import TINY, _Study

    from sched_search.results import load_run

    study_file = tmp_path / "tiny.toml"
    study_file.write_text(
        f'runs_dir = "{tmp_path / "runs"}"\n' + TINY.replace('budget = "full"', "budget = 9")
    )
    first = _Study(tmp_path, str(study_file))
    run_dir = Path(first.wait_for(r"^run folder ").removeprefix("run folder "))
    first.wait_for(r"^\[1/")
    os.kill(first.proc.pid, signal.SIGINT)
    assert first.finish() == 130, first.text
    assert not (run_dir / "verdict.json").exists()
    second = _Study(tmp_path, "--resume", str(run_dir))
    assert second.finish(timeout=600) == 0, second.text
    assert any(line.startswith("racing spent") for line in second.lines)
    plan = json.loads((run_dir / "plan.json").read_text())
    run = load_run(run_dir)
    assert plan["finished"] and not run.unfinished and plan["spent"] <= 9
    assert len(plan["runs"]) == run.trials["trial_id"].nunique()  # every released run ran, once
    assert [r["what"] for r in plan["rounds"]][:2] == [
        "first points and baselines on the first seed",
        "search trials for the arms left, on the first seed",
    ]


# -------------------------------------------------------------------------------- the rounds, no Tuner


def _race(
    budget: float, plan_path: Path, baselines: tuple[str, ...] = ("default:adam",), ladder: bool = False
):
    """A RaceSearcher over real per-arm OptunaSearch, as `search.run_trials` builds it for the smoke study
    (with `baselines`, and the attribution ladder if `ladder`), with its range tests' 5.26 trainings spent."""
    import optuna

    from sched_search.study.racing import RaceSearcher
    from sched_search.study.routing import METRIC, ResumableOptunaSearch
    from sched_search.study.search import _new_optuna_study, fixed_runs, rungs_of, trial_settings
    from sched_search.study.space import RangeSeed, build_space, define_by_run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_study(SMOKE)
    cfg = replace(cfg, search=replace(cfg.search, budget=budget, baselines=baselines, attribution=ladder))
    storage = optuna.storages.InMemoryStorage()
    seeds = {
        "sgdw": RangeSeed("sgdw", 0.1, 0.01, 1e-4, (1e-5, 1e-3), 0.3),
        "adamw": RangeSeed("adamw", 0.01, 0.001, 1e-4, (1e-5, 1e-3), 0.03),
    }
    searchers, spaces = {}, {}
    for arm in cfg.search.arms:
        space = spaces[arm] = build_space(arm, seeds[arm.split("-")[1]], cfg.train.epochs, 19)
        _new_optuna_study(storage, arm, space, optuna.samplers.RandomSampler(seed=0), "max")
        searchers[arm] = ResumableOptunaSearch(
            space=define_by_run(space), metric=METRIC, mode="max", storage=storage, study_name=arm,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )  # fmt: skip
    runs, rungs = fixed_runs(cfg, spaces, seeds, 19)
    firsts = {c["arm"]: {k: v for k, v in c.items() if k not in ("stage", "seed", "budgets")} for c in runs}
    race = RaceSearcher(
        searchers, cfg, trial_settings(cfg), rungs, 400 / 76, plan_path, rungs_of, list(firsts.values())
    )
    return race, storage


def _final_result(tid: str, config: dict, right: int, n: int = 100) -> list[dict]:
    """What Tune reports for a final run: one result per budget, `right` of `n` validation examples right."""
    from sched_search.training.objective import encode_examples

    examples = [1] * right + [0] * (n - right)
    return [
        {"trial_id": tid, "epoch": 4 * b, "budget": b, "budget_epochs": 4 * b, "status": "ok",
         "val_metric": right / n, "val_loss": 1 - right / n, "test_metric": right / n,
         "val_examples": encode_examples(examples)}
        for b in config["budgets"]
    ]  # fmt: skip


@pytest.mark.parametrize("order", [1, -1])
def test_rounds_wait_for_every_run_and_spend_within_the_budget(order: int, tmp_path: Path) -> None:
    """Round 1 ends in either order with the same decisions: the far-behind arm stops, the baseline (the
    verdict's reference) keeps its place until the budget cannot hold its seeds; the leader gets its seeds,
    then its shorter budgets; Optuna is told each first point; the race ends within its budget."""
    from ray.tune.search import Searcher

    race, storage = _race(12.0, tmp_path / "plan.json")
    accuracy = {"one_cycle-adamw": 95, "clr-sgdw": 60, "constant-adam": 70}
    n = 0

    def ask() -> tuple[str, dict] | None:
        nonlocal n
        config = race.suggest(f"t{n}")
        if not isinstance(config, dict):
            return config
        n += 1
        return f"t{n - 1}", config

    round1 = [ask() for _ in range(3)]
    assert ask() is None  # the next round waits for this one
    assert sorted(c["arm"] for _, c in round1) == sorted(accuracy)
    assert {(c["stage"], c["seed"], tuple(c["budgets"])) for _, c in round1} == {("final", 0, (1.0,))}
    for tid, config in round1[::order]:
        for result in _final_result(tid, config, accuracy[config["arm"]]):
            race.on_trial_result(tid, result)
        race.on_trial_complete(tid, result)
    assert race.stopped["clr-sgdw"].startswith("below one_cycle-adamw after 1 seed(s): +35.00 points")
    import optuna

    for arm in ("clr-sgdw", "one_cycle-adamw"):  # the first point, told once the round had ended
        (trial,) = optuna.load_study(study_name=arm, storage=storage).trials
        assert trial.state.name == "COMPLETE" and trial.value == accuracy[arm] / 100
    rounds = []
    while (got := ask()) not in (None, Searcher.FINISHED):
        batch = [got]
        while (more := ask()) not in (None, Searcher.FINISHED):
            batch.append(more)
        rounds.append([(c["arm"], c["seed"], tuple(c["budgets"])) for _, c in batch])
        for tid, config in batch[::order]:
            for result in _final_result(tid, config, accuracy[config["arm"]] - config["seed"]):
                race.on_trial_result(tid, result)
    # 12 - 5.26 - 3 = 3.74 left: no search trial (the leader's 2 seeds and its shorter budgets need 3.5)
    assert rounds == [
        [("one_cycle-adamw", 1, (1.0,))],
        [("one_cycle-adamw", 2, (1.0,))],
        [("one_cycle-adamw", s, (0.5,)) for s in (0, 1, 2)],
    ]
    assert race.stopped["constant-adam"].startswith(
        "the budget left (1.74 trainings) does not hold its 2 seeds"
    )
    plan = race.plan()
    assert plan["finished"] and plan["recommended"] == "one_cycle-adamw"
    assert plan["spent"] == pytest.approx(400 / 76 + 3 + 2 + 1.5) and plan["spent"] <= 12
    assert plan["not_run"] == ["constant-adam: seeds [1, 2]"]
    assert set(plan["left_out"]) == {tid for tid, c in round1 if c["arm"] != "one_cycle-adamw"}
    assert ask() == Searcher.FINISHED
    assert json.loads((tmp_path / "plan.json").read_text()) == json.loads(json.dumps(plan))  # as written


def test_a_search_trial_that_beats_the_first_point_takes_its_place(tmp_path: Path) -> None:
    """With room for one search trial, the leader's beats its first point on the first seed: the arm takes
    that config, its first-point run leaves the verdict, and the new config runs every seed."""
    import optuna

    race, storage = _race(16.0, tmp_path / "plan.json")
    accuracy = {"one_cycle-adamw": 95, "clr-sgdw": 60, "constant-adam": 70}
    first = {f"t{i}": race.suggest(f"t{i}") for i in range(3)}
    for tid, config in first.items():
        for result in _final_result(tid, config, accuracy[config["arm"]]):
            race.on_trial_result(tid, result)
    # 16 - 5.26 - 3 = 7.74 left, 5.5 reserved: one search trial (the first point was the arm's first of 2)
    search = race.suggest("s0")
    assert search["arm"] == "one_cycle-adamw" and search["seed"] == 0 and "stage" not in search
    assert race.suggest("s1") is None
    race.on_trial_result(
        "s0", {"trial_id": "s0", "epoch": 4, "val_metric": 0.97, "val_loss": 0.1, "status": "ok"}
    )
    (t0,) = [t for t, c in first.items() if c["arm"] == "one_cycle-adamw"]
    assert race.left_out[t0].startswith("one_cycle-adamw: its search found a better config (trial s0)")
    trials = optuna.load_study(study_name="one_cycle-adamw", storage=storage).trials
    assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 0.95), ("COMPLETE", 0.97)]
    seeds_round = [race.suggest("u0"), race.suggest("u1")]
    assert [(c["arm"], c["seed"]) for c in seeds_round] == [("one_cycle-adamw", 0), ("constant-adam", 1)]
    assert {k: seeds_round[0][k] for k in ("max_lr", "weight_decay")} == {
        k: search[k] for k in ("max_lr", "weight_decay")
    }
    assert race.candidates["one_cycle-adamw"]["config"]["source_trial"] == "s0"


def test_a_run_two_candidates_share_trains_once_and_counts_once(tmp_path: Path) -> None:
    """fastai's recipe is the one-cycle arm's first point: round 1 trains it once and records it under both
    names at the cost of one; so are the later seeds while the arm keeps that config, and the ladder's
    untuned rung. The tables get a row per name (`shared_records`), the shared one marked `shared_from`."""
    from ray.tune.search import Searcher

    from sched_search.results import shared_records
    from sched_search.study.racing import _key, run_cost

    twin = "default:lr_find-one_cycle"
    race, _ = _race(40.0, tmp_path / "plan.json", ("default:adam", twin), ladder=True)
    race.trials_per_arm = 1  # no search trials: the first points stand
    accuracy = {"one_cycle-adamw": 95, "clr-sgdw": 60, "constant-adam": 70, twin: 95}
    handed: dict[str, dict] = {}
    n = 0
    while True:
        batch = []
        while isinstance(config := race.suggest(f"t{n}"), dict):
            handed[f"t{n}"] = config
            batch.append(f"t{n}")
            n += 1
        if config == Searcher.FINISHED:
            break
        for tid in batch:
            for result in _final_result(tid, handed[tid], accuracy.get(handed[tid]["arm"], 80)):
                race.on_trial_result(tid, result)
    keys = [_key(c) for c in handed.values()]
    assert len(keys) == len(set(keys))  # no training handed to Tune twice
    plan = race.plan()
    shared = plan["shared"]
    assert handed[min(handed)]["arm"] == "clr-sgdw" and not any(s["of"] == "t2" for s in shared.values())
    for name in (twin, "one_cycle-adamw"):  # every seed, trained under one of the two names
        runs = race.candidates[name]["runs"]
        assert sorted(runs) == [0, 1, 2] and all((t in handed) != (t in shared) for t in runs.values())
    assert {twin, "one_cycle-adamw"} == {handed[s["of"]]["arm"] for s in shared.values()} | {
        c["config"]["arm"] for c in shared.values() if c["config"]["arm"] in (twin, "one_cycle-adamw")
    }
    untuned = [s for s in shared.values() if s["config"]["arm"] == "ladder:untuned-one_cycle-adamw"]
    assert len(untuned) == 3  # the ladder's untuned rung is the arm at its first point: already trained
    last = plan["rounds"][-1]  # the speed-up and the ladder wait for the same thing: one round
    assert {r["kind"] for r in last["runs"]} == {"rungs", "ladder"} and len(last["runs"]) == 3 + 6
    for alias, s in shared.items():  # the same training: config and seed, but its own name
        assert _key(s["config"]) == _key(handed[s["of"]]) and alias not in handed
    paid = sum(r["cost"] for r in plan["runs"])
    assert plan["spent"] == pytest.approx(400 / 76 + paid)
    assert paid == pytest.approx(sum(run_cost(c) for c in handed.values()))  # what Tune trained, once
    assert all(r["cost"] == 0 for r in plan["runs"] if r.get("shared"))
    records = {("final", t): (c, _final_result(t, c, 90), None) for t, c in handed.items()}
    rows = shared_records(records, plan)
    assert {k[1] for k in rows} == set(shared)
    for (_, alias), (config, results, _) in rows.items():  # the trained run's results, the alias's labels
        assert (
            config["shared_from"] == shared[alias]["of"] and config["arm"] == shared[alias]["config"]["arm"]
        )
        assert results == records[("final", shared[alias]["of"])][1]
        assert config.get("source_trial") == shared[alias]["config"].get("source_trial")
