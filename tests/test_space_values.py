"""The values a search space feeds into the schedules, followed through to the LR a trial trains with
(`space.build_space` -> trial config -> `arms.build_schedule` -> `schedules.lr_at`): CLR's exp_range amplitude
halves over the whole run (gamma per step), SGDR anneals to the range test's min_lr / 10, the first point's
base LR and one-cycle start LR are the range test's min_lr, a chosen weight decay of 0 starts at the low end
of its range, and the first point lies inside the space, categoricals included."""

from __future__ import annotations

import pytest
from optuna.distributions import IntDistribution

from sched_search.lr import ARMS
from sched_search.lr.arms import build_schedule
from sched_search.lr.schedules import lr_at
from sched_search.study.space import RangeSeed, build_space, check_point_in_space, suggest, with_bounds

SPE = 7  # steps per epoch


def _seed(max_lr: float = 0.1, min_lr: float = 0.01, weight_decay: float = 1e-4) -> RangeSeed:
    return RangeSeed("sgdw", max_lr, min_lr, weight_decay, (1e-5, 1e-3), min_loss_lr=3 * max_lr)


def _smith_seed(peak: float, min_lr: float) -> RangeSeed:
    """A range test whose min-loss LR is `peak`: the first peak of Smith's cycles (one-cycle, CLR)."""
    return RangeSeed("sgdw", peak / 3, min_lr, 1e-4, (1e-5, 1e-3), min_loss_lr=peak)


def _first_config(arm: str, seed: RangeSeed, epochs: int, **changes) -> dict:
    """The arm's first trial config as Tune gets it: the first point, the arm's constants, the epochs."""
    space = build_space(arm, seed, epochs, SPE)
    return {**space.first_point(), **space.constants(), "epochs": epochs, **changes}


@pytest.mark.parametrize("epochs", [4, 20])
@pytest.mark.parametrize("budget", [0.25, 1.0])
def test_clr_exp_range_amplitude_halves_over_the_run(epochs: int, budget: float) -> None:
    """gamma is per optimizer step: at the run's last step the cycle's amplitude is half its first, at every
    budget of the ladder (a compressed run halves it too)."""
    config = _first_config("clr-sgdw", _seed(), epochs, mode="exp_range")
    schedule = build_schedule(config, epochs * budget, SPE)
    steps = round(epochs * budget * SPE)
    assert schedule.gamma**steps == pytest.approx(0.5)
    amplitude = schedule.max_lr - schedule.base_lr
    peak = max(lr_at(schedule, s) for s in range(steps - 2 * schedule.step_size, steps))
    assert (
        schedule.base_lr + 0.5 * amplitude
        <= peak
        <= schedule.base_lr + 0.5 * amplitude / schedule.gamma ** (2 * schedule.step_size)
    )


@pytest.mark.parametrize(("max_lr", "min_lr"), [(0.1, 0.01), (0.5, 0.002)])
def test_sgdr_anneals_to_a_tenth_of_the_range_tests_min_lr(max_lr: float, min_lr: float) -> None:
    epochs = 12
    config = _first_config("sgdr-sgdw", _seed(max_lr, min_lr), epochs)
    schedule = build_schedule(config, epochs, SPE)
    assert schedule.eta_min == pytest.approx(min_lr / 10)
    lowest = min(lr_at(schedule, s) for s in range(epochs * SPE))
    assert min_lr / 10 <= lowest < min_lr / 10 + 0.02 * (max_lr - min_lr / 10)


@pytest.mark.parametrize(("max_lr", "min_lr", "base_lr"), [(0.1, 0.01, 0.01), (0.1, 0.0001, 0.1 / 25),
                                                           (0.1, 0.05, 0.1 / 3)])  # fmt: skip
def test_clr_first_base_lr_is_the_range_tests_min_lr_within_its_range(
    max_lr: float, min_lr: float, base_lr: float
) -> None:
    """base_lr = max_lr / base_div with base_div in [3, 25]: the first point peaks at the min-loss LR and its
    base_lr is min_lr itself when the ratio fits, else the nearest end."""
    config = _first_config("clr-sgdw", _smith_seed(max_lr, min_lr), 20)
    schedule = build_schedule(config, 20, SPE)
    assert schedule.base_lr == pytest.approx(base_lr) and schedule.max_lr == pytest.approx(max_lr)
    assert lr_at(schedule, 0) == pytest.approx(base_lr)


@pytest.mark.parametrize(("max_lr", "min_lr", "start"), [(0.1, 0.01, 0.01), (0.1, 0.0001, 0.1 / 25),
                                                         (0.1, 0.05, 0.1 / 5)])  # fmt: skip
def test_one_cycle_first_point_starts_at_the_range_tests_min_lr(
    max_lr: float, min_lr: float, start: float
) -> None:
    """div_factor in [5, 25]: the first point's one-cycle peaks at the min-loss LR and starts at min_lr when
    their ratio fits."""
    config = _first_config("one_cycle-sgdw", _smith_seed(max_lr, min_lr), 20)
    schedule = build_schedule(config, 20, SPE)
    assert lr_at(schedule, 0) == pytest.approx(start)
    assert max(lr_at(schedule, s) for s in range(20 * SPE)) == pytest.approx(max_lr)


@pytest.mark.parametrize("epochs", [1, 4, 6, 8, 12, 20, 21, 30, 40])
def test_sgdr_first_cycles_end_with_the_run(epochs: int) -> None:
    """The first point's run ends at the end of a cycle, where the LR is lowest (Loshchilov & Hutter read
    SGDR there), with t_0 within its range."""
    config = _first_config("sgdr-sgdw", _seed(), epochs)
    schedule = build_schedule(config, epochs, SPE)
    total = epochs * SPE
    assert 1 <= config["t_0_epochs"] <= max(1, epochs // 3)
    assert lr_at(schedule, total - 1) < lr_at(schedule, total - 2)  # still coming down at the last batch
    assert lr_at(schedule, total) > lr_at(schedule, total - 1)  # the next step would have restarted
    assert epochs < 3 or schedule.t_0 < total  # at least one restart where the run has room for it


@pytest.mark.parametrize("chosen", [0.0, 1e-4])
def test_first_weight_decay_is_the_sweeps_choice_or_the_low_end_for_0(chosen: float) -> None:
    space = build_space("one_cycle-adamw", _seed(weight_decay=chosen), 20, SPE)
    wd = next(p for p in space.params if p.name == "weight_decay")
    assert (wd.low, wd.high) == (1e-5, 1e-3)
    assert space.first_point()["weight_decay"] == (chosen if chosen > 0 else wd.low)


# The first max_lr per arm from a reading (suggestion 0.02, min-loss LR 0.06, divergence edge 0.24), as
# measured per family (docs/search_benchmark.md, "First points of the families that hold their peak").
FIRST_MAX_LR = {arm: 0.06 for arm in ARMS} | {
    "sgdr-sgdw": 0.02,
    "schedule_free-adamw": 0.12,
    "schedule_free-sgd": 1.2,
}


@pytest.mark.parametrize("arm", ARMS)
def test_first_max_lr_is_each_familys_measured_reading(arm: str) -> None:
    """Smith's cycles, cosine, WSD, linear decay and SGDR with AdamW start at the min-loss LR; SGDR with SGDW
    at the suggestion (min-loss LR / 3); schedule-free halfway (log) from the min-loss LR to the divergence
    edge, SGD's on its own scale (SGDW's x 10). Never past the top of the box."""
    seed = RangeSeed("sgdw", 0.02, 0.002, 1e-4, (1e-5, 1e-3), min_loss_lr=0.06, divergence_lr=0.24)
    space = build_space(arm, seed, 20, SPE)
    max_lr = space.params[0]
    assert max_lr.first == pytest.approx(FIRST_MAX_LR[arm])
    assert max_lr.high == pytest.approx(10 * 0.24 if arm == "schedule_free-sgd" else 0.24)
    assert max_lr.low < max_lr.first < max_lr.high


def test_schedule_free_adamw_searches_up_to_3x_the_min_loss_lr_past_the_edge() -> None:
    """AdamW's divergence edge at 1.5x its min-loss LR: schedule-free AdamW's box reaches 3x, its first point
    stays halfway (log) to the edge; scheduled AdamW's box stops at the edge."""
    seed = RangeSeed("adamw", 0.01, 1e-3, 0.0, (1e-6, 1e-4), min_loss_lr=0.03, divergence_lr=0.045)
    free = build_space("schedule_free-adamw", seed, 20, SPE).params[0]
    assert free.high == pytest.approx(0.09) and "3 x the min-loss lr" in free.source
    assert free.first == pytest.approx((0.03 * 0.045) ** 0.5)
    assert build_space("cosine-adamw", seed, 20, SPE).params[0].high == pytest.approx(0.045)


@pytest.mark.parametrize("arm", ["clr-sgdw", "sgdr-adamw", "one_cycle-sgdw"])
@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 8, 13, 40])
def test_first_point_lies_in_the_space(arm: str, epochs: int) -> None:
    space = build_space(arm, _seed(), epochs, SPE)
    check_point_in_space(space, space.first_point())


@pytest.mark.parametrize(
    ("arm", "name", "bad"),
    [
        ("clr-sgdw", "mode", "sawtooth"),
        ("sgdr-sgdw", "t_mult", 3.0),
        ("clr-sgdw", "step_size_epochs", 0),
        ("one_cycle-sgdw", "pct_start", 0.9),
        ("one_cycle-sgdw", "weight_decay", 0.0),  # log-uniform: 0 is outside
    ],
)
def test_a_point_outside_the_space_is_refused(arm: str, name: str, bad: object) -> None:
    space = build_space(arm, _seed(), 20, SPE)
    with pytest.raises(ValueError, match=f"first point {name}={bad!r} lies outside its space"):
        check_point_in_space(space, {**space.first_point(), name: bad})


# the broad space's documented LR and decay ranges (docs/search_benchmark.md), and the schedules' own ones
BROAD_LR = {"adamw": (1e-5, 0.1), "sgdw": (1e-4, 1.0)}
BROAD_SHAPE = {"base_div": (3.0, 25.0), "div_factor": (5.0, 25.0)}  # ratios of the broad top LR's stand-in


@pytest.mark.parametrize("arm", ARMS)
def test_broad_space_fixes_lr_and_decay_and_suggests_nothing(arm: str) -> None:
    """No range test: max_lr and weight decay over the documented fixed ranges, log-uniform, each source
    saying so; no first point; SGDR/cosine anneal to 0; the schedule's own parameters as the seeded space
    has them, their Optuna distributions of the right kind."""
    import optuna

    from sched_search.lr.arms import range_family, split_arm
    from sched_search.study.space import broad_space

    space = broad_space(arm, 20, 70)
    schedule, optimizer = split_arm(arm)
    assert (space.arm, space.schedule, space.optimizer) == (arm, schedule, optimizer)
    params = {p.name: p for p in space.params}
    fixed = {"max_lr": BROAD_LR[range_family(arm)], "weight_decay": (1e-6, 1e-2)}
    for name, (low, high) in fixed.items():
        p = params[name]
        assert (p.low, p.high, p.log) == (low, high, True)
        assert p.source == f"broad space ({optimizer}): fixed [{low:g}, {high:g}]"
    assert space.first_point() is None and all(p.first is None for p in space.params)
    seeded = build_space(arm, _seed(), 20, 70)
    assert [p.name for p in space.params] == [p.name for p in seeded.params]
    for p in seeded.params:
        if p.name in fixed:
            continue
        mine = params[p.name]
        if p.name in BROAD_SHAPE:
            assert (mine.low, mine.high) == BROAD_SHAPE[p.name]
            assert mine.source.startswith("broad space: ") and "range test" not in mine.source
        else:
            assert (mine.low, mine.high, mine.choices, mine.source) == (p.low, p.high, p.choices, p.source)
    kinds = {name: type(d).__name__.removesuffix("Distribution") for name, d in space.distributions().items()}
    for p in space.params:
        assert kinds[p.name] == ("Categorical" if p.choices else "Int" if p.integer else "Float"), p.name
        dist = space.distributions()[p.name]
        if p.choices:
            assert list(dist.choices) == list(p.choices)
        else:
            assert (dist.low, dist.high) == (p.low, p.high)
            assert not isinstance(dist, optuna.distributions.FloatDistribution) or dist.log == p.log
    if "range test" in seeded.sources.get("eta_min", ""):
        assert space.fixed["eta_min"] == 0.0 and seeded.fixed["eta_min"] > 0
        assert space.sources["eta_min"] == "broad space: 0 (no range test to set it)"
    else:
        # an eta_min not read off a range test (linear's 0, from the paper) keeps its value and source
        assert space.fixed == seeded.fixed and space.sources.get("eta_min") == seeded.sources.get("eta_min")


@pytest.mark.parametrize("arm", ARMS)
def test_suggest_asks_every_parameter_and_returns_the_constants(arm: str) -> None:
    """What a define-by-run trial gets: Optuna asked once per searched parameter, in its range, and the arm's
    constants (its name, schedule, optimizer, fixed values) back for the config."""
    import optuna

    space = build_space(arm, _seed(), 20, SPE)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert suggest(trial, space.to_dict()) == space.constants()
    assert set(trial.params) == {p.name for p in space.params}
    check_point_in_space(space, trial.params)


def test_whole_epoch_bounds_stay_integers() -> None:
    """`[search.bounds]` on a whole-epoch parameter gives an integer range (TOML may hold 3.0)."""
    space = with_bounds(build_space("clr-sgdw", _seed(), 40, SPE), {"step_size_epochs": [3.0, 6]}, "s.toml")
    dist = space.distributions()["step_size_epochs"]
    assert isinstance(dist, IntDistribution) and (dist.low, dist.high) == (3, 6)


@pytest.mark.parametrize(("epochs", "half_cycle"), [(8, 2), (12, 2), (20, 2), (30, 3), (42, 3), (9, 2)])
def test_clr_first_half_cycle_ends_the_run_at_a_cycle_end_where_one_fits(
    epochs: int, half_cycle: int
) -> None:
    """The first point's cycles end with the run, at the LR's minimum (Smith 2015), with the half-cycle
    nearest Smith's 2 epochs; where no whole half-cycle in range fits (9 epochs), 2."""
    config = _first_config("clr-sgdw", _seed(), epochs)
    assert config["step_size_epochs"] == half_cycle
    schedule = build_schedule(config, epochs, SPE)
    at_end = lr_at(schedule, epochs * SPE)
    assert (at_end == pytest.approx(schedule.base_lr)) == (
        epochs != 9
    )  # the bottom of a cycle where one fits
