"""Arms: every arm a study file may name has a space whose names its schedule takes, seeded by the range test
of its family; the eight new ones (warm-up + cosine, WSD, linear decay to zero, schedule-free) run in a
study end to end."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sched_search.config import BASELINES, DEFAULT_ARMS
from sched_search.lr import ARMS, SCHEDULE_FREE_SGD_SCALE, schedule_spec
from sched_search.lr.arms import (
    baseline_arm,
    baseline_config,
    baseline_skipped,
    build_schedule,
    hyperparameters,
    optimizer_and_scheduler,
    range_family,
)
from sched_search.lr.schedules import lr_at
from sched_search.lr.warmup_decay import CosineConfig, WSDConfig
from sched_search.results.attribution import LADDER_TITLE, ladder_rungs
from sched_search.study.space import RangeSeed, build_space, check_point_in_space
from sched_search.study.studyfile import load_study

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {
    "sgdw": RangeSeed("sgdw", 0.06, 0.015, 1e-4, (1e-5, 1e-3), 0.18),
    "adamw": RangeSeed("adamw", 4e-3, 1e-3, 1e-4, (1e-5, 1e-3), 0.012),
}
NEW_ARMS = [a for a in ARMS if a not in DEFAULT_ARMS]


def test_the_new_arms_are_eight_and_the_default_study_keeps_its_own() -> None:
    assert NEW_ARMS == [
        "cosine-adamw",
        "cosine-sgdw",
        "wsd-adamw",
        "wsd-sgdw",
        "linear-adamw",
        "linear-sgdw",
        "schedule_free-adamw",
        "schedule_free-sgd",
    ]
    assert load_study(None).search.arms == DEFAULT_ARMS


@pytest.mark.parametrize("arm", ARMS)
def test_space_and_schedule_agree_on_the_names(arm: str) -> None:
    space = build_space(arm, SEEDS[range_family(arm)], epochs=30, steps_per_epoch=19)
    spec = schedule_spec(space.schedule)
    assert tuple(p.name for p in space.params) == spec.searched
    assert tuple(space.fixed) == spec.constants
    assert all(p.source for p in space.params)
    check_point_in_space(space, space.first_point())
    config = {**space.first_point(), **space.fixed, "schedule": space.schedule, "epochs": 30}
    assert set(hyperparameters(config)) == set(spec.searched) | set(spec.constants)
    assert lr_at(build_schedule(config, 30, 19), 0) > 0  # every name the schedule needs is there


def test_range_family_seeds_schedule_free_from_the_scheduled_optimizer_it_replaces() -> None:
    assert [range_family(a) for a in NEW_ARMS] == ["adamw", "sgdw"] * 4
    sgd = {p.name: p for p in build_space("schedule_free-sgd", SEEDS["sgdw"], 20, 70).params}
    assert (
        sgd["max_lr"].first == pytest.approx(0.18 * SCHEDULE_FREE_SGD_SCALE) and SCHEDULE_FREE_SGD_SCALE == 10
    )
    sgdw = {p.name: p for p in build_space("one_cycle-sgdw", SEEDS["sgdw"], 20, 70).params}
    # SGDW's range, every bound on the schedule-free scale
    assert (sgd["max_lr"].low, sgd["max_lr"].high) == pytest.approx(
        (sgdw["max_lr"].low * 10, sgdw["max_lr"].high * 10)
    )
    assert "sgdw" in build_space("schedule_free-sgd", SEEDS["sgdw"], 20, 70).sources["max_lr"]
    adamw = {p.name: p for p in build_space("schedule_free-adamw", SEEDS["adamw"], 20, 70).params}
    assert adamw["max_lr"].first == 0.012  # the min-loss LR of AdamW's own range test
    assert adamw["weight_decay"].first == 1e-4


def test_warmup_and_cooldown_are_fractions_of_the_run_so_a_budget_compresses_them() -> None:
    config = {"schedule": "wsd", "max_lr": 0.1, "warmup_pct": 0.05, "decay_pct": 0.2, "decay": "1-sqrt"}
    full, half = (
        build_schedule({**config, "epochs": 20}, 20, 70),
        build_schedule({**config, "epochs": 20}, 10, 70),
    )
    assert isinstance(full, WSDConfig) and (full.total_steps, full.warmup_steps, full.decay_steps) == (
        1400,
        70,
        280,
    )
    assert (half.total_steps, half.warmup_steps, half.decay_steps) == (700, 35, 140)
    cosine = build_schedule(
        {"schedule": "cosine", "max_lr": 0.1, "warmup_pct": 0.05, "eta_min": 1e-4}, 20, 70
    )
    assert isinstance(cosine, CosineConfig) and cosine.warmup_steps == 70 and cosine.eta_min == 1e-4


# ----------------------------------------------------------------------------------------- baselines


def _lrs(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_adamw_cosine_baseline_is_torchs_adamw_with_warmup_and_cosine_to_zero() -> None:
    """torch's AdamW(lr=1e-3, weight_decay=0.01), LR over 5% of 400 steps up, then cosine to 0."""
    config = {**baseline_config("default:adamw-cosine"), "epochs": 4}
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer, scheduler = optimizer_and_scheduler(config, params, 4, 100)
    assert type(optimizer) is torch.optim.AdamW and config["arm"] == "default:adamw-cosine"
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.01)  # torch's scale, as people set it
    lrs = _lrs(optimizer, scheduler, 400)
    assert lrs[:20] == pytest.approx([1e-3 * (t + 1) / 21 for t in range(20)]) and lrs[20] == pytest.approx(
        1e-3
    )
    assert lrs[200] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 180 / 380)) / 2)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-7


def test_schedule_free_baseline_is_the_packages_defaults_with_a_warmup() -> None:
    import schedulefree

    config = {**baseline_config("default:schedule_free"), "epochs": 4}
    optimizer, _ = optimizer_and_scheduler(config, [torch.nn.Parameter(torch.zeros(3))], 4, 100)
    assert type(optimizer) is schedulefree.AdamWScheduleFree
    group, defaults = optimizer.param_groups[0], schedulefree.AdamWScheduleFree([torch.zeros(1)]).defaults
    assert (
        group["lr"] == defaults["lr"] == 0.0025 and group["warmup_steps"] == 20 and group["weight_decay"] == 0
    )
    assert group["betas"] == defaults["betas"]


def test_the_seeds_baseline_keeps_its_arm_name_and_lr() -> None:
    assert baseline_config("default:adam", 1e-3) == {
        "arm": "constant-adam",
        "schedule": "constant",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
    }
    assert {baseline_arm(b) for b in BASELINES}.isdisjoint(ARMS)  # never a searched arm's name
    assert [baseline_arm(b) for b in BASELINES] == ["constant-adam", *BASELINES[1:]]
    with pytest.raises(ValueError, match="unknown baseline 'default:sgd'"):
        baseline_config("default:sgd")
    with pytest.raises(ValueError, match="unknown baseline 'default:sgd'"):
        baseline_arm("default:sgd")


def test_the_range_tests_baseline_trains_the_point_it_is_given_and_needs_its_range_test() -> None:
    """default:lr_find-one_cycle is one_cycle-adamw at the first point the study reads off its AdamW range
    test (study.search.baseline_runs builds it); without an AdamW range test it is skipped, with a reason."""
    point = {"schedule": "one_cycle", "optimizer": "adamw", "max_lr": 4e-3, "weight_decay": 1e-5}
    assert baseline_config("default:lr_find-one_cycle", first_point=point) == {
        **point,
        "arm": "default:lr_find-one_cycle",
    }
    with pytest.raises(ValueError, match="one_cycle-adamw's first point from the range test"):
        baseline_config("default:lr_find-one_cycle")
    assert baseline_skipped("default:lr_find-one_cycle", ["sgdw", "adamw"]) is None
    assert baseline_skipped("default:prodigy", []) is None  # a fixed recipe needs no range test
    why = baseline_skipped("default:lr_find-one_cycle", ["sgdw"])
    assert why is not None and why.startswith("default:lr_find-one_cycle needs an adamw range test")


@pytest.mark.slow
def test_a_study_of_the_eight_new_arms_runs_end_to_end(tmp_path: Path, ray_local) -> None:
    """The smoke study's data and model with the eight new arms, the five baselines and the attribution
    ladder's runs: 1 trial per arm, 2 seeds, the full budget."""
    from sched_search.results.leaderboard import budget_ladder
    from sched_search.results.report import write_report
    from sched_search.results.run import learning_curves, load_run, schedule_curves
    from sched_search.study.driver import run_study

    smoke = load_study(ROOT / "studies" / "smoke.toml")
    cfg = replace(
        smoke,
        name="modern-smoke",
        runs_dir=str(tmp_path),
        search=replace(
            smoke.search,
            arms=tuple(NEW_ARMS),
            trials_per_arm=1,
            budgets=(1.0,),
            seeds=(0, 1),
            baselines=BASELINES,
            attribution=True,
        ),
        early_stopping=replace(smoke.early_stopping, enabled=False),
    )
    start = time.perf_counter()
    lines: list[str] = []
    run_dir = run_study(cfg, echo=lines.append)
    print(f"eight-arm study: {time.perf_counter() - start:.1f} s")  # the report's figure (pytest -s)
    assert sorted(p.name for p in run_dir.glob("range_test_*.json")) == [
        "range_test_adamw.json",
        "range_test_sgdw.json",
    ]  # schedule_free-sgd is seeded by SGDW's range test: no third one
    run = load_run(run_dir)
    assert not run.unfinished
    finals = run.trials[run.trials.stage == "final"]
    baselines = {baseline_arm(b) for b in BASELINES}
    v = run.verdict
    assert v["recommended"] in NEW_ARMS, v["recommended"]  # 2 seeds: no baseline beats every arm
    # the ladder ran last, for the arm the finals recommend: the searcher's pick is the verdict's
    ladder = {name for name, _ in ladder_rungs(v["recommended"]) if name.startswith("ladder:")}
    assert set(finals.arm) == {*NEW_ARMS, *baselines, *ladder}
    assert any(line.startswith("trials: ") and "and up to 4 ladder runs" in line for line in lines)
    assert (finals.groupby("arm").seed.nunique() == 2).all() and (finals.status == "ok").all()
    means = finals.groupby("arm").final_val_metric.mean()
    print(means.round(3).to_dict())
    assert (means[NEW_ARMS] > 0.5).all(), means  # digits, 4 epochs of the first point; chance is 10%
    assert set(run.leaderboard.arm) == {*NEW_ARMS, *baselines}  # the ladder's runs are no arms
    assert not ladder & {*v["arms"], *v["top_group"], *v["baselines"]}
    att = v["attribution"]  # every rung of the recommended arm ran, so no step is merged
    assert att["arm"] == v["recommended"] and att["missing"] == []
    assert att["rungs"] == [name for name, _ in ladder_rungs(v["recommended"])]
    assert len(att["steps"]) == len(att["rungs"]) - 1
    assert all(s["ci_low"] is not None and s["ci_low"] <= s["diff"] <= s["ci_high"] for s in att["steps"])
    figures = [  # what the report's and the notebook's figures draw: arms and baselines only
        budget_ladder(run.trials),
        learning_curves(run.epochs),
        schedule_curves(run.final_configs, run.epochs, 10),
    ]
    assert all(set(f.arm) == {*NEW_ARMS, *baselines} for f in figures), [set(f.arm) for f in figures]
    spaces = json.loads((run_dir / "spaces.json").read_text())
    assert "sgdw" in spaces["schedule_free-sgd"]["sources"]["max_lr"]
    written = write_report(run_dir)
    assert all(Path(p).exists() for p in (written.values() if isinstance(written, dict) else [written]))
    report = (run_dir / "report.md").read_text()
    assert LADDER_TITLE in report and "not run (their steps merged" not in report
