"""The search: the sampler learns at the study's size, bounds hold the divergence edge, a user's bounds and
the broad space are honoured, bad bounds stop before any work."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from sched_search.config import StudyFileError
from sched_search.rangetest.curve import read_curve
from sched_search.study.driver import arm_space
from sched_search.study.sampler import arm_seed, build_sampler, startup_trials
from sched_search.study.space import BROAD_MAX_LR, BROAD_WEIGHT_DECAY, RangeSeed, search_space
from sched_search.study.studyfile import load_study

ROOT = Path(__file__).resolve().parents[1]
SEED = RangeSeed("sgdw", 0.06, 0.015, 1e-4, (1e-5, 1e-3), 0.18, 0.3)


# ------------------------------------------------------------------------------------------------- sampler


def _distance_after_startup(sampler: optuna.samplers.BaseSampler, n: int, optimum: float) -> float:
    """Mean |log10(x / optimum)| of the trials after the startup ones, on a toy peaked at optimum."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("max_lr", 1e-4, 1.0, log=True)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        study.tell(trial, -((math.log10(x / optimum)) ** 2) - 0.1 * (math.log10(wd / 1e-4)) ** 2)
    late = study.trials[startup_trials(n) :]
    return float(np.mean([abs(math.log10(t.params["max_lr"] / optimum)) for t in late]))


def test_default_sampler_concentrates_near_the_optimum_after_startup() -> None:
    # 10 trials, as a study with trials_per_arm = 10: after its 2 startup trials the proposals should sit
    # nearer the optimum than uniform draws do (a uniform log draw over 4 decades sits ~1 decade from 0.01)
    gp = [_distance_after_startup(build_sampler("gp", 10, s), 10, 0.01) for s in range(3)]
    uniform = [_distance_after_startup(build_sampler("random", 10, s), 10, 0.01) for s in range(3)]
    assert np.mean(gp) < 0.8 * np.mean(uniform), (gp, uniform)


def test_every_arm_draws_its_own_stream() -> None:
    def first_draws(arm: str) -> list[float]:
        study = optuna.create_study(sampler=build_sampler("tpe", 8, arm_seed(0, arm)))
        return [study.ask().suggest_float("x", 0, 1) for _ in range(2)]

    assert first_draws("clr-sgdw") != first_draws("clr-adamw")
    assert first_draws("clr-sgdw") == first_draws("clr-sgdw")  # reproducible from search_seed
    assert arm_seed(0, "clr-sgdw") != arm_seed(1, "clr-sgdw")


# ------------------------------------------------------------------------------------------------- bounds


def test_bounds_from_a_synthetic_curve_contain_its_divergence_edge() -> None:
    # a loss that falls until lr 0.1 and climbs steeply past it: the divergence region starts a little above
    lrs = np.geomspace(1e-6, 10, 600)
    t = np.log10(lrs)
    losses = 2.3 - 2.0 / (1 + np.exp(-3 * (t + 3))) + np.where(t > -1, 8 * (t + 1) ** 2, 0.0)
    reading = read_curve(lrs, losses)
    assert reading.verdict == "ok", reading.reasons
    edge = reading.regions.divergence[0]
    summary = {
        "verdict": "ok",
        "suggested_max_lr": reading.suggested_max_lr,
        "suggested_min_lr": reading.suggested_min_lr,
        "min_loss_lr": reading.min_loss_lr,
        "regions": {"divergence": list(reading.regions.divergence)},
        "weight_decay": {"chosen": 0.0, "range": [1e-6, 1e-4]},
    }
    max_lr = search_space("one_cycle-adamw", summary, 20, 70).params[0]
    assert max_lr.name == "max_lr" and max_lr.low < reading.suggested_max_lr < reading.min_loss_lr < edge
    assert max_lr.high == pytest.approx(edge)  # up to the edge, not the old 2 x suggestion
    assert max_lr.high > 2 * reading.suggested_max_lr
    # Smith's cycles start at the min-loss LR, and so (measured) do cosine, WSD and SGDR with AdamW
    assert max_lr.first == reading.min_loss_lr
    for arm in ("clr-sgdw", "sgdr-adamw", "cosine-adamw", "wsd-adamw", "sgdr-sgdw"):
        first = search_space(arm, summary, 20, 70).params[0].first
        assert first == (reading.suggested_max_lr if arm == "sgdr-sgdw" else reading.min_loss_lr), arm


def _study_file(tmp_path: Path, search: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(
        'name = "t"\n[data]\nname = "digits"\n[model]\nname = "mlp"\n[train]\nepochs = 2\n'
        "[early_stopping]\ngrace_period = 1\n"
        f'[search]\narms = ["one_cycle-sgdw"]\ntrials_per_arm = 2\nseeds = [0]\n{search}'
    )
    return path


def test_bounds_override_is_honoured_and_recorded(tmp_path: Path) -> None:
    path = _study_file(tmp_path, "[search.bounds]\nmax_lr = [1e-4, 0.02]\npct_start = [0.3, 0.4]\n")
    cfg = load_study(path)
    space = arm_space(cfg, {"sgdw": SEED}, "one_cycle-sgdw", 19)
    params = {p.name: p for p in space.params}
    assert (params["max_lr"].low, params["max_lr"].high) == (1e-4, 0.02)
    assert params["max_lr"].first == 0.02  # the first point (min-loss LR 0.18) moves into the bounds
    assert (params["pct_start"].low, params["pct_start"].high) == (0.3, 0.4)
    assert str(path) in params["max_lr"].source and "[search.bounds] max_lr" in params["max_lr"].source
    assert "range test" in params["weight_decay"].source  # the others keep the range test's bounds
    record = json.loads(json.dumps(space.to_dict()))  # what spaces.json holds
    assert record["sampler"]["name"] == "gp"  # the default
    assert record["sampler"]["settings"]["n_startup_trials"] == startup_trials(2)
    assert record["sampler"]["settings"]["seed"] == arm_seed(cfg.search.search_seed, "one_cycle-sgdw")


def test_broad_space_is_fixed_and_has_no_first_point(tmp_path: Path) -> None:
    cfg = load_study(_study_file(tmp_path, 'space = "broad"\nsampler = "qmc"\n'))
    space = arm_space(cfg, {}, "one_cycle-sgdw", 19)  # no range-test seeds needed
    dists = space.distributions()
    assert (dists["max_lr"].low, dists["max_lr"].high) == BROAD_MAX_LR["sgdw"]
    assert (dists["weight_decay"].low, dists["weight_decay"].high) == BROAD_WEIGHT_DECAY
    assert space.first_point() is None and space.sampler["name"] == "qmc"


@pytest.mark.parametrize(
    ("bounds", "words"),
    [
        ("max_lr = [0.1, 0.01]", "low < high"),
        ("weight_decay = [0.0, 1e-3]", "low > 0"),
        ("momentum = [0.8, 0.99]", "unknown key [search.bounds] momentum"),
        ("max_lr = [0.1]", "two finite numbers"),
        ("warmup_pct = [-0.1, 0.1]", "within [0, 1)"),
        ("decay_pct = [0.0, 0.3]", "within (0, 1)"),
    ],
)
def test_bad_bounds_are_refused_naming_file_and_key(tmp_path: Path, bounds: str, words: str) -> None:
    path = _study_file(tmp_path, f"[search.bounds]\n{bounds}\n")
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    assert str(path) in str(e.value) and "[search.bounds]" in str(e.value) and words in str(e.value)


def test_bad_bounds_stop_the_cli_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from sched_search.cli import main

    path = _study_file(tmp_path, "[search.bounds]\nmax_lr = [-1, 1]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["study", str(path)]) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert "[search.bounds] max_lr" in captured.err and str(path) in captured.err
    assert not (tmp_path / "runs").exists()  # no run folder, no range test


@pytest.mark.parametrize(
    ("line", "key"), [('sampler = "cmaes"', "[search] sampler"), ('space = "wide"', "[search] space")]
)
def test_unknown_sampler_or_space_is_refused(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(StudyFileError, match=re.escape(key)):
        load_study(_study_file(tmp_path, f"{line}\n"))


def test_range_test_cost_counts_every_sweep_step(tmp_path: Path) -> None:
    from sched_search.rangetest.sweep import RangeTestConfig, run_range_test
    from sched_search.study.driver import range_test_cost

    sweep = run_range_test("digits", "mlp", "sgdw", RangeTestConfig(num_steps=40), weight_decays=(0.0, 1e-4))
    sweep.to_frame().to_csv(tmp_path / "range_test_sgdw.csv", index=False)
    steps = sum(len(r.lrs) for r in sweep.results)  # both sweeps, each possibly stopped early
    assert range_test_cost(tmp_path, epochs=4, steps_per_epoch=19) == {"sgdw": pytest.approx(steps / 76)}
    assert range_test_cost(tmp_path / "nothing", 4, 19) == {}


def test_the_ladder_is_a_cosine_run_per_family_and_an_untuned_run_per_arm_on_every_seed() -> None:
    from sched_search.lr.arms import range_family
    from sched_search.results.run import runs_done
    from sched_search.study.search import fixed_runs, rungs_of

    smoke = load_study(ROOT / "studies" / "smoke.toml")  # attribution = false
    arms = ("clr-sgdw", "one_cycle-adamw", "schedule_free-sgd", "cosine-adamw")
    seeds = {"sgdw": SEED, "adamw": replace(SEED, optimizer="adamw", max_lr=4e-3, min_lr=1e-3)}
    cfg = replace(smoke, search=replace(smoke.search, arms=arms, attribution=True))
    spaces = {arm: arm_space(cfg, seeds, arm, 19) for arm in arms}
    baselines, ladder = fixed_runs(cfg, spaces, seeds, 19)
    families = sorted({range_family(arm) for arm in arms})
    n_seeds = len(cfg.search.seeds)
    untuned = arms[:3]  # cosine-adamw's untuned run would be ladder:cosine-adamw again
    assert len(ladder) == (len(families) + len(untuned)) * n_seeds
    names = {*(f"ladder:cosine-{f}" for f in families), *(f"ladder:untuned-{a}" for a in untuned)}
    assert {c["arm"] for c in ladder} == names
    assert sorted((c["arm"], c["seed"]) for c in ladder) == sorted(
        (n, s) for n in names for s in cfg.search.seeds
    )
    assert all(c["stage"] == "final" and c["budgets"] == [1.0] for c in ladder)
    for arm in untuned:  # the arm's schedule at the search's first point
        untuned = next(c for c in ladder if c["arm"] == f"ladder:untuned-{arm}")
        assert {k: untuned[k] for k in spaces[arm].first_point()} == spaces[arm].first_point()
        assert untuned["schedule"] == spaces[arm].schedule
    cosine = next(c for c in ladder if c["arm"] == "ladder:cosine-adamw")
    # at cosine's first point: the min-loss LR (docs/search_benchmark.md, "First points ...")
    assert cosine["optimizer"] == "adamw" and cosine["max_lr"] == pytest.approx(seeds["adamw"].min_loss_lr)
    first = {
        **spaces["cosine-adamw"].first_point(),
        **spaces["cosine-adamw"].constants(),
        "arm": cosine["arm"],
    }
    assert {k: cosine[k] for k in first} == first  # the cosine arm's untuned run: the ladder skips no step
    # the study runs those of the recommended arm only (`rungs_of`): a cosine arm's ladder has no untuned rung
    assert {c["arm"] for c in rungs_of("clr-sgdw", ladder)} == {
        "ladder:cosine-sgdw",
        "ladder:untuned-clr-sgdw",
    }
    assert {c["arm"] for c in rungs_of("cosine-adamw", ladder)} == {"ladder:cosine-adamw"}
    assert rungs_of("default:adamw-cosine", ladder) == rungs_of(None, ladder) == []
    # the run folder counts them as planned runs, so that a study killed before they ran is unfinished
    planned = len(arms) * (cfg.search.trials_per_arm + n_seeds) + n_seeds * len(cfg.search.baselines)
    assert runs_done(pd.DataFrame(), cfg.to_dict()) == (0, planned)  # no verdict yet: no arm to climb
    assert runs_done(pd.DataFrame(), cfg.to_dict(), "clr-sgdw") == (0, planned + 2 * n_seeds)
    assert runs_done(pd.DataFrame(), cfg.to_dict(), "cosine-adamw") == (0, planned + n_seeds)
    # an untuned rung that ran names the ladder's arm, whatever the verdict says now
    ran = pd.DataFrame(
        {"arm": ["ladder:untuned-one_cycle-adamw"], "stage": ["final"], "trial_id": ["x"], "status": ["ok"]}
    )
    assert runs_done(ran, cfg.to_dict(), "clr-sgdw") == (1, planned + 2 * n_seeds)
    # off (the smoke study), without the range tests' seeds, or with a broad space: no ladder run
    assert fixed_runs(smoke, spaces, seeds, 19) == (baselines, [])
    assert fixed_runs(cfg, spaces, None, 19) == (baselines, [])
    broad = replace(cfg, search=replace(cfg.search, space="broad"))
    assert fixed_runs(broad, {arm: arm_space(broad, {}, arm, 19) for arm in arms}, {}, 19)[1] == []
    assert runs_done(pd.DataFrame(), broad.to_dict())[1] == planned


def test_every_baseline_runs_on_every_seed_and_the_range_tests_one_needs_its_range_test() -> None:
    """The default baselines: four fixed recipes, and fastai's lr_find + one-cycle, which is one_cycle-adamw
    at its range test's first point (the attribution ladder's untuned rung of that arm, by another name); a
    study without an AdamW range test (no AdamW arm, or a broad space) leaves it out and says why, and its
    run folder does not wait for it."""
    from sched_search.lr.arms import range_family
    from sched_search.results.run import runs_done
    from sched_search.study.search import baseline_runs, ladder_runs, skipped_baselines

    cfg = load_study(None)  # the default study: its six arms, every baseline
    seeds = {"sgdw": SEED, "adamw": replace(SEED, optimizer="adamw", max_lr=4e-3, min_lr=1e-3)}
    runs = baseline_runs(cfg, seeds, 70)
    n_seeds = len(cfg.search.seeds)
    names = ["constant-adam", *cfg.search.baselines[1:]]
    assert [c["arm"] for c in runs] == [a for a in names for _ in range(n_seeds)]
    assert all(c["stage"] == "final" and c["budgets"] == [1.0] for c in runs)
    assert [c["seed"] for c in runs] == list(cfg.search.seeds) * len(names)
    spaces = {arm: arm_space(cfg, seeds, arm, 70) for arm in cfg.search.arms}
    untuned = [c for c in ladder_runs(cfg, spaces, seeds, 70) if c["arm"] == "ladder:untuned-one_cycle-adamw"]
    lr_find = [c for c in runs if c["arm"] == "default:lr_find-one_cycle"]
    assert [{**c, "arm": "x"} for c in lr_find] == [{**c, "arm": "x"} for c in untuned]
    assert lr_find[0]["max_lr"] == spaces["one_cycle-adamw"].first_point()["max_lr"]
    assert skipped_baselines(cfg, seeds) == {}
    planned = len(cfg.search.arms) * (cfg.search.trials_per_arm + n_seeds) + len(runs)
    assert runs_done(pd.DataFrame(), cfg.to_dict()) == (0, planned)
    # only SGDW arms: no AdamW range test, so no lr_find baseline
    sgdw = replace(cfg, search=replace(cfg.search, arms=("clr-sgdw", "one_cycle-sgdw")))
    tested = {f: seeds[f] for f in {range_family(a) for a in sgdw.search.arms}}
    runs = baseline_runs(sgdw, tested, 70)
    assert {c["arm"] for c in runs} == set(names) - {"default:lr_find-one_cycle"}
    (why,) = skipped_baselines(sgdw, tested).values()
    assert why.startswith("default:lr_find-one_cycle needs an adamw range test") and why.endswith("skipped")
    assert runs_done(pd.DataFrame(), sgdw.to_dict())[1] == 2 * (cfg.search.trials_per_arm + n_seeds) + len(
        runs
    )
    broad = replace(cfg, search=replace(cfg.search, space="broad"))
    assert len(baseline_runs(broad, {}, 70)) == len(runs) and list(skipped_baselines(broad, {})) == [
        "default:lr_find-one_cycle"
    ]
    assert runs_done(pd.DataFrame(), broad.to_dict())[1] == planned - n_seeds


def test_the_searcher_picks_the_ladder_of_the_arm_the_verdict_recommends() -> None:
    """`recommended_ladder` judges the records the searcher holds (its suggestions, which lack the study's
    settings Tune merges in) as the study's verdict judges the tables: speed-ups on a budget ladder."""
    from sched_search.results.tables import tables_from_rows
    from sched_search.results.verdict import decide
    from sched_search.study.search import (
        baseline_runs,
        final_runs,
        fixed_runs,
        recommended_ladder,
        rungs_of,
        trial_settings,
    )

    smoke = load_study(ROOT / "studies" / "smoke.toml")
    arms = ("clr-sgdw", "one_cycle-adamw")
    seeds = {"sgdw": SEED, "adamw": replace(SEED, optimizer="adamw", max_lr=4e-3, min_lr=1e-3)}
    cfg = replace(smoke, search=replace(smoke.search, arms=arms, attribution=True, budgets=(0.5, 1.0)))
    spaces = {arm: arm_space(cfg, seeds, arm, 19) for arm in arms}
    _, ladder = fixed_runs(cfg, spaces, seeds, 19)
    configs = baseline_runs(cfg) + [
        c
        for arm in arms
        for c in final_runs(cfg, spaces, arm, {"trial_id": "t0", **spaces[arm].first_point()})
    ]
    final = {"clr-sgdw": 0.95, "one_cycle-adamw": 0.85, "constant-adam": 0.8}  # mean final val accuracy
    records = {}
    for i, c in enumerate(configs):
        results = [
            {
                "budget": b,
                "epoch": e,
                "val_metric": final[c["arm"]] * (0.9 + 0.1 * e / (4 * b)) + 0.01 * c["seed"],
            }
            for b in c["budgets"]
            for e in range(1, int(cfg.train.epochs * b) + 1)
        ]
        records[("final", f"t{i}")] = (c, results, None)
    picked = recommended_ladder(cfg, ladder, records)
    assert picked == rungs_of("clr-sgdw", ladder) and {c["arm"] for c in picked} == {
        "ladder:cosine-sgdw",
        "ladder:untuned-clr-sgdw",
    }
    # the same records as Tune's trials (settings merged) give the study's verdict: with speed-ups
    merged = {k: ({**trial_settings(cfg), **c}, r, e) for k, (c, r, e) in records.items()}
    v = decide(tables_from_rows(merged)[0], metric="accuracy", mode="max")
    assert v["recommended"] == "clr-sgdw"
    assert v["speedup"]["clr-sgdw"]["epochs_to_target"] == 2.0  # half the budget already beats 0.8


# ------------------------------------------------------------------------------------------------- studies


@pytest.mark.slow
@pytest.mark.parametrize("budget", ['"full"', "8"])
def test_broad_study_runs_without_a_range_test(tmp_path: Path, ray_local, budget: str) -> None:
    from sched_search.study.driver import run_study

    cfg = load_study(_study_file(tmp_path, f'space = "broad"\nbudget = {budget}\n'))
    cfg = replace(cfg, runs_dir=str(tmp_path / "runs"))
    lines: list[str] = []
    run_dir = run_study(cfg, echo=lines.append)
    assert not list(run_dir.glob("range_test_*")) and not any(line.startswith("range test") for line in lines)
    # the one baseline that needs a range test says why it is left out; the four others ran
    assert sum("default:lr_find-one_cycle needs an adamw range test" in line for line in lines) == 1
    spaces = json.loads((run_dir / "spaces.json").read_text())
    max_lr = next(p for p in spaces["one_cycle-sgdw"]["params"] if p["name"] == "max_lr")
    assert [max_lr["low"], max_lr["high"]] == list(BROAD_MAX_LR["sgdw"]) and max_lr["first"] is None
    assert json.loads((run_dir / "timing.json").read_text())["range_test_trial_equivalents"] == {}
    trials = pd.read_parquet(run_dir / "trials.parquet")
    if budget == '"full"':
        assert (trials.stage == "search").sum() == 2
        finals = trials[trials.stage == "final"]
        assert set(finals.arm) == {"one_cycle-sgdw", "constant-adam", *cfg.search.baselines[1:4]}
    else:  # raced: the arm's first trial (Optuna's first sample, no suggestion) is its first seed's final run
        first = json.loads((run_dir / "plan.json").read_text())["rounds"][0]["runs"]
        assert [r["arm"] for r in first if r["kind"] == "first"] == ["one_cycle-sgdw"]
        assert {r["arm"] for r in first} == {"one_cycle-sgdw", "constant-adam", *cfg.search.baselines[1:4]}
    # attribution is on by default, yet without a range test no ladder run is queued
    assert load_study(_study_file(tmp_path, "")).search.attribution
    assert not trials.arm.str.startswith("ladder:").any()


@pytest.mark.slow
def test_range_test_cost_in_trial_equivalents(smoke_run: Path) -> None:
    cfg = json.loads((smoke_run / "resolved_config.json").read_text())
    trial_steps = cfg["study"]["train"]["epochs"] * cfg["steps_per_epoch"]
    cost = json.loads((smoke_run / "timing.json").read_text())["range_test_trial_equivalents"]
    for opt in ("sgdw", "adamw"):
        steps = len(pd.read_csv(smoke_run / f"range_test_{opt}.csv"))
        assert cost[opt] == pytest.approx(steps / trial_steps) and cost[opt] > 0


@pytest.mark.parametrize(
    ("arm", "bounds"),
    [
        ("cosine-adamw", {"warmup_pct": [0.0, 0.1]}),
        ("wsd-sgdw", {"warmup_pct": [0.0, 0.1], "decay_pct": [0.15, 0.3]}),
        ("schedule_free-adamw", {"warmup_pct": [0.02, 0.1]}),
    ],
)
def test_the_warm_up_and_cooldown_of_current_schedules_take_bounds(
    tmp_path: Path, arm: str, bounds: dict[str, list[float]]
) -> None:
    """warmup_pct and decay_pct are searched values like the others: `[search.bounds]` sets their ranges."""
    lines = "".join(f"{k} = {v}\n" for k, v in bounds.items())
    path = _study_file(tmp_path, f"[search.bounds]\n{lines}")
    path.write_text(path.read_text().replace('arms = ["one_cycle-sgdw"]', f'arms = ["{arm}"]'))
    cfg = load_study(path)
    family = "sgdw" if arm.endswith("sgdw") else "adamw"
    space = arm_space(cfg, {family: SEED}, arm, 19)
    params = {p.name: p for p in space.params}
    for name, (low, high) in bounds.items():
        assert (params[name].low, params[name].high) == (low, high)
        assert low <= params[name].first <= high and "[search.bounds]" in params[name].source


def test_tunes_and_optunas_noise_is_kept_off_the_console(caplog: pytest.LogCaptureFixture) -> None:
    """Inside the fit: Ray's list of unfinished trials (the study says "unfinished" itself), the warning of a
    slow define-by-run suggestion (a loaded machine) and Optuna's already-reported step are dropped; other
    warnings and Ray's other errors are not."""
    import logging
    import warnings

    from sched_search.study.search import _quiet

    tune_log = logging.getLogger("ray.tune.tune")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # every warning shown, as on a first occurrence
        with _quiet():
            warnings.warn("Define-by-run function passed in the `space` argument took 1.2 seconds to run.")
            warnings.warn("The reported value is ignored because this `step=1` is already reported.")
            warnings.warn("something else")
            tune_log.error("Trials did not complete: %s", ["trial_1"])
            tune_log.error("a real problem")
    assert [str(w.message) for w in seen] == ["something else"]
    assert [r.getMessage() for r in caplog.records if r.name == "ray.tune.tune"] == ["a real problem"]
    assert not tune_log.filters  # removed on the way out
