"""Schedules: exact values of the pure functions, agreement with torch's schedulers, and the torch wrapper."""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sched_search.lr.families import judged_at
from sched_search.lr.linear import LinearConfig
from sched_search.lr.schedules import (
    ONE_CYCLE_PRESETS,
    ConstantConfig,
    CyclicalConfig,
    OneCycleConfig,
    ScheduleLR,
    SGDRConfig,
    at_lr_minimum,
    build_scheduler,
    lr_at,
    momentum_at,
    one_cycle,
    peak_lr,
    to_steps,
)
from sched_search.lr.warmup_decay import CosineConfig, WSDConfig

FAST = settings(max_examples=60, deadline=None)
lrs = st.floats(1e-5, 10.0)
fractions = st.floats(0.0, 1.0)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def _optimizer(kind: str = "sgd") -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2))]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    return torch.optim.Adam(params, lr=0.1, betas=(0.9, 0.999))


def _trace(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[tuple[float, float]]:
    """(lr, momentum or beta1) the optimizer holds for batches 0..steps-1."""
    opt, out = scheduler.optimizer, []
    for _ in range(steps):
        group = opt.param_groups[0]
        out.append((group["lr"], group["momentum"] if "momentum" in group else group["betas"][0]))
        opt.step()  # no grads: a no-op, but torch checks the call order
        scheduler.step()
    return out


# Bounds -----------------------------------------------------------------------------------------------------


@FAST
@given(
    lrs,
    fractions,
    st.integers(1, 50),
    st.sampled_from(["triangular", "triangular2", "exp_range"]),
    st.floats(0.9, 1.0),
    st.integers(0, 10_000),
)
def test_clr_within_bounds(max_lr, frac, step_size, mode, gamma, step):
    cfg = CyclicalConfig(
        base_lr=max_lr * frac, max_lr=max_lr, step_size=step_size, mode=mode, gamma=gamma, cycle_momentum=True
    )
    assert cfg.base_lr * (1 - 1e-12) <= lr_at(cfg, step) <= cfg.max_lr * (1 + 1e-12)
    assert cfg.base_momentum - 1e-12 <= momentum_at(cfg, step) <= cfg.max_momentum + 1e-12


@FAST
@given(lrs, fractions, st.integers(1, 50), st.floats(1.0, 3.0), st.floats(0.1, 1.0), st.integers(0, 10_000))
def test_sgdr_within_bounds(max_lr, frac, t_0, t_mult, decay, step):
    cfg = SGDRConfig(max_lr=max_lr, t_0=t_0, t_mult=t_mult, eta_min=max_lr * frac, peak_decay=decay)
    assert cfg.eta_min * (1 - 1e-12) <= lr_at(cfg, step) <= cfg.max_lr * (1 + 1e-12)
    assert momentum_at(cfg, step) is None


@FAST
@given(lrs, st.integers(1, 3000), st.sampled_from(sorted(ONE_CYCLE_PRESETS)), st.integers(0, 4000))
def test_one_cycle_within_bounds(max_lr, total, preset, step):
    cfg = one_cycle(max_lr, total, preset)
    final = max_lr / cfg.div_factor / cfg.final_div_factor
    assert final * (1 - 1e-9) <= lr_at(cfg, step) <= max_lr * (1 + 1e-12)
    assert cfg.base_momentum - 1e-12 <= momentum_at(cfg, step) <= cfg.max_momentum + 1e-12


# Cyclical LR (Smith 2015) -----------------------------------------------------------------------------------


@FAST
@given(st.integers(1, 100), st.integers(0, 1000), st.integers(1, 5))
def test_triangular_is_periodic_with_period_two_step_sizes(step_size, step, k):
    cfg = CyclicalConfig(base_lr=0.01, max_lr=0.1, step_size=step_size)
    assert math.isclose(lr_at(cfg, step), lr_at(cfg, step + 2 * k * step_size), rel_tol=1e-9)
    assert lr_at(cfg, 2 * k * step_size) == pytest.approx(0.01, rel=1e-12)
    assert lr_at(cfg, (2 * k - 1) * step_size) == pytest.approx(0.1, rel=1e-12)


def test_triangular2_halves_the_amplitude_every_cycle():
    cfg = CyclicalConfig(base_lr=0.01, max_lr=0.09, step_size=10, mode="triangular2")
    peaks = [lr_at(cfg, 10 + 20 * k) - 0.01 for k in range(5)]
    assert peaks == pytest.approx([0.08 / 2**k for k in range(5)], rel=1e-12)


def test_exp_range_scales_the_amplitude_by_gamma_per_step():
    cfg = CyclicalConfig(base_lr=0.01, max_lr=0.09, step_size=10, mode="exp_range", gamma=0.99)
    assert lr_at(cfg, 30) - 0.01 == pytest.approx(0.08 * 0.99**30, rel=1e-12)


@FAST
@given(st.integers(1, 40), st.integers(0, 500))
def test_clr_momentum_is_the_lr_mirrored(step_size, step):
    cfg = CyclicalConfig(
        base_lr=0.01, max_lr=0.1, step_size=step_size, mode="triangular2", cycle_momentum=True
    )
    lr_pos = (lr_at(cfg, step) - 0.01) / 0.09
    assert (0.95 - momentum_at(cfg, step)) / 0.10 == pytest.approx(lr_pos, abs=1e-9)


# SGDR (Loshchilov & Hutter 2017) ----------------------------------------------------------------------------


def _restarts(cfg: SGDRConfig, steps: int) -> list[int]:
    # Only t_cur = 0 gives exactly the peak: cos(pi * t / t_i) < 1 in floats for 0 < t < t_i at these sizes.
    return [s for s in range(steps) if lr_at(cfg, s) == cfg.max_lr]


def test_sgdr_restarts_at_max_lr_with_float_t_mult():
    cfg = SGDRConfig(max_lr=0.1, t_0=10, t_mult=1.5, eta_min=0.001)
    # Cumulative starts 10 * (1.5**i - 1) / 0.5 = 0, 10, 25, 47.5, 81.25, 131.9 rounded half up.
    assert _restarts(cfg, 200) == [0, 10, 25, 48, 81, 132]
    assert lr_at(cfg, 47) < lr_at(cfg, 46)  # still annealing one step before the restart


@FAST
@given(st.integers(1, 30), st.floats(1.0, 3.0))
def test_sgdr_cycle_lengths_follow_t_mult(t_0, t_mult):
    cfg = SGDRConfig(max_lr=1.0, t_0=t_0, t_mult=t_mult)
    starts = _restarts(cfg, 2000)
    for i, start in enumerate(starts):
        exact = t_0 * i if t_mult == 1 else t_0 * (t_mult**i - 1) / (t_mult - 1)
        assert abs(start - exact) <= 0.5 + 1e-9


def test_sgdr_peak_decay_shrinks_each_restart_peak():
    cfg = SGDRConfig(max_lr=0.1, t_0=5, t_mult=2.0, peak_decay=0.5)
    assert [lr_at(cfg, s) for s in (0, 5, 15, 35)] == pytest.approx([0.1, 0.05, 0.025, 0.0125], rel=1e-12)


def test_sgdr_peak_never_falls_below_eta_min():
    cfg = SGDRConfig(max_lr=0.1, t_0=2, eta_min=0.01, peak_decay=0.1)
    assert lr_at(cfg, 2) == pytest.approx(0.01) and lr_at(cfg, 101) == pytest.approx(0.01)


# One-cycle (Smith & Topin) ----------------------------------------------------------------------------------


def _strictly(values: list[float], increasing: bool) -> bool:
    return all((b > a) if increasing else (b < a) for a, b in itertools.pairwise(values))


def test_paper_preset_phases_are_monotone_and_end_orders_below_the_start():
    cfg = one_cycle(0.1, 1000)  # paper: up 450 steps, down 450, annihilate the last 100
    lr = [lr_at(cfg, s) for s in range(1000)]
    assert _strictly(lr[:450], True) and _strictly(lr[449:899], False) and _strictly(lr[898:], False)
    assert lr[0] == pytest.approx(0.01) and lr[449] == pytest.approx(0.1) and lr[898] == pytest.approx(0.01)
    assert lr[-1] == pytest.approx(0.1 / 10 / 1e4, rel=1e-12)
    mom = [momentum_at(cfg, s) for s in range(1000)]
    assert mom[0] == 0.95 and mom[449] == pytest.approx(0.85) and mom[898] == pytest.approx(0.95)
    assert mom[898:] == pytest.approx([0.95] * 102)


@pytest.mark.parametrize(("preset", "final"), [("fastai", 0.1 / 1e5), ("torch", 0.1 / 25 / 1e4)])
def test_two_phase_presets_rise_then_fall_to_their_final_lr(preset, final):
    cfg = one_cycle(0.1, 400, preset)
    peak = math.ceil(cfg.pct_start * 400) - 1
    lr = [lr_at(cfg, s) for s in range(400)]
    assert _strictly(lr[: peak + 1], True) and _strictly(lr[peak:], False)
    assert (
        lr[0] == pytest.approx(0.1 / 25) and lr[peak] == pytest.approx(0.1) and lr[-1] == pytest.approx(final)
    )


def test_one_cycle_config_shows_every_resolved_value_and_takes_overrides():
    cfg = one_cycle(0.3, 500, "fastai", div_factor=20.0, base_momentum=0.8)
    assert dataclasses.asdict(cfg) == {
        "max_lr": 0.3,
        "total_steps": 500,
        "pct_start": 0.25,
        "div_factor": 20.0,
        "final_div_factor": 4e3,
        "anneal": "cos",
        "three_phase": False,
        "cycle_momentum": True,
        "base_momentum": 0.8,
        "max_momentum": 0.95,
    }
    with pytest.raises(ValueError, match="'warmup'"):
        one_cycle(0.1, 100, "warmup")


@FAST
@given(st.sampled_from(sorted(ONE_CYCLE_PRESETS)), st.integers(2, 500))
def test_one_cycle_momentum_moves_against_the_lr(preset, total):
    cfg = one_cycle(0.1, total, preset)
    for s in range(1, total):
        d_lr = lr_at(cfg, s) - lr_at(cfg, s - 1)
        d_m = momentum_at(cfg, s) - momentum_at(cfg, s - 1)
        # torch's phase ends are fractional: where the peak falls between two steps, both may move by ~1e-7.
        assert d_lr * d_m <= 0 or min(abs(d_lr), abs(d_m)) < 1e-6


def test_past_the_end_holds_the_last_value():
    cfg = one_cycle(0.1, 100, "torch")
    assert [lr_at(cfg, s) for s in (100, 101, 10**6)] == [lr_at(cfg, 99)] * 3
    scheduler = build_scheduler(_optimizer(), cfg)
    trace = _trace(scheduler, 250)  # torch's OneCycleLR raises here
    assert trace[99:] == [trace[99]] * 151


def test_constant_is_constant_without_momentum():
    cfg = ConstantConfig(lr=3e-4)
    assert {lr_at(cfg, s) for s in range(0, 10_000, 97)} == {3e-4}
    assert momentum_at(cfg, 5) is None and peak_lr(cfg) == 3e-4


# Agreement with torch ---------------------------------------------------------------------------------------

T = torch.optim.lr_scheduler


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_cyclical_matches_torch_cycliclr(mode, kind):
    cfg = CyclicalConfig(
        base_lr=0.01,
        max_lr=0.1,
        step_size=13,
        mode=mode,
        gamma=0.995,
        cycle_momentum=True,
        base_momentum=0.8,
        max_momentum=0.9,
    )
    theirs = _trace(
        T.CyclicLR(
            _optimizer(kind),
            0.01,
            0.1,
            step_size_up=13,
            mode=mode,
            gamma=0.995,
            base_momentum=0.8,
            max_momentum=0.9,
        ),
        300,
    )
    ours = _trace(ScheduleLR(_optimizer(kind), cfg), 300)
    assert all(_close(a[0], b[0]) and _close(a[1], b[1]) for a, b in zip(ours, theirs, strict=True))
    assert all(_close(lr_at(cfg, s), ours[s][0]) for s in range(300))


@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_sgdr_matches_torch_warm_restarts_for_integer_t_mult(t_mult):
    cfg = SGDRConfig(max_lr=0.1, t_0=7, t_mult=float(t_mult), eta_min=1e-3)
    theirs = _trace(T.CosineAnnealingWarmRestarts(_optimizer(), T_0=7, T_mult=t_mult, eta_min=1e-3), 400)
    ours = _trace(ScheduleLR(_optimizer(), cfg), 400)
    assert all(_close(a[0], b[0]) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(
    ("preset", "kind"),
    [("paper", "sgd"), ("torch", "sgd"), ("paper", "adam"), ("torch", "adam"), ("fastai", "sgd")],
)
def test_one_cycle_matches_torch_onecyclelr(preset, kind):
    cfg = one_cycle(0.1, 300, preset)
    theirs = _trace(
        T.OneCycleLR(
            _optimizer(kind),
            max_lr=0.1,
            total_steps=300,
            pct_start=cfg.pct_start,
            anneal_strategy=cfg.anneal,
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div_factor,
            three_phase=cfg.three_phase,
        ),
        300,
    )
    ours = _trace(ScheduleLR(_optimizer(kind), cfg), 300)
    assert all(_close(a[0], b[0]) and _close(a[1], b[1]) for a, b in zip(ours, theirs, strict=True))


# The torch scheduler ----------------------------------------------------------------------------------------


def test_scheduler_drives_sgd_momentum_and_adam_beta1():
    cfg = one_cycle(0.2, 50)
    sgd, adam = _optimizer("sgd"), _optimizer("adam")
    for opt in (sgd, adam):
        scheduler = build_scheduler(opt, cfg)
        assert opt.param_groups[0]["peak_lr"] == 0.2
        trace = _trace(scheduler, 60)
        assert trace == [(lr_at(cfg, s), momentum_at(cfg, s)) for s in range(60)]
    assert adam.param_groups[0]["betas"][1] == 0.999
    assert "momentum" not in adam.param_groups[0]


def test_scheduler_leaves_momentum_alone_when_the_schedule_does_not_cycle_it():
    opt = _optimizer("adam")
    trace = _trace(build_scheduler(opt, ConstantConfig(lr=3e-4)), 5)
    assert trace == [(3e-4, 0.9)] * 5 and opt.param_groups[0]["peak_lr"] == 3e-4


def test_scheduler_refuses_to_cycle_momentum_an_optimizer_lacks():
    opt = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="Adagrad"):
        build_scheduler(opt, one_cycle(0.1, 10))


@pytest.mark.parametrize(
    "cfg",
    [
        one_cycle(0.1, 200),
        CyclicalConfig(0.01, 0.1, 17, "triangular2", cycle_momentum=True),
        SGDRConfig(0.1, 9, 1.7, peak_decay=0.8),
        WSDConfig(0.1, 200, decay_steps=60, warmup_steps=10),
        LinearConfig(0.1, 200, warmup_steps=10),
    ],
    ids=["one_cycle", "clr", "sgdr", "wsd", "linear"],
)
def test_state_dict_round_trip_mid_cycle(cfg):
    first = ScheduleLR(_optimizer(), cfg)
    _trace(first, 77)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = ScheduleLR(_optimizer(), cfg)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert _trace(second, 30) == _trace(first, 30)
    with pytest.raises(ValueError, match="state_dict is from schedule"):
        ScheduleLR(_optimizer(), ConstantConfig(lr=0.1)).load_state_dict(first.state_dict())


def test_resume_with_last_epoch_on_a_fresh_optimizer():
    cfg = one_cycle(0.1, 100)
    opt = _optimizer()
    ScheduleLR(opt, cfg, last_epoch=41)
    assert opt.param_groups[0]["lr"] == lr_at(cfg, 42)


# Units and validation ---------------------------------------------------------------------------------------


def test_to_steps_converts_epochs_and_steps():
    assert to_steps(3, "epochs", 50) == 150
    assert to_steps(0.5, "epochs", 7) == 4  # 3.5 rounds half up
    assert to_steps(120, "steps", 50) == 120 and to_steps(120.0, "steps", 50) == 120
    assert to_steps(0.02, "epochs", 50) == 1


@pytest.mark.parametrize(
    ("value", "unit", "spe", "bad"),
    [
        (10, "epoch", 5, "'epoch'"),
        (0, "steps", 5, "0"),
        (-1.5, "epochs", 5, "-1.5"),
        (math.nan, "epochs", 5, "nan"),
        (10.5, "steps", 5, "10.5"),
        (0.001, "epochs", 10, "0.01"),
        (1, "epochs", 0, "0"),
        (True, "steps", 5, "True"),
    ],
)
def test_to_steps_errors_name_the_bad_value(value, unit, spe, bad):
    with pytest.raises(ValueError, match=f"but got {bad}"):
        to_steps(value, unit, spe)


@pytest.mark.parametrize(
    ("make", "bad"),
    [
        (lambda: CyclicalConfig(0.1, 0.01, 10), r"\(0.1, 0.01\)"),
        (lambda: CyclicalConfig(0.01, 0.1, 10, mode="cosine"), "'cosine'"),
        (lambda: SGDRConfig(0.1, 10, t_mult=0.5), "0.5"),
        (lambda: SGDRConfig(0.1, 0), "0"),
        (lambda: one_cycle(0.1, 100, "paper", pct_start=0.6), "0.6"),
        (lambda: one_cycle(0.1, 100, anneal="cosine"), "'cosine'"),
        (lambda: ConstantConfig(lr=0.0), "0.0"),
        (lambda: CosineConfig(0.1, 10, warmup_steps=10), "10"),
        (lambda: CosineConfig(0.1, 10, eta_min=0.2), r"\(0.2, 0.1\)"),
        (lambda: WSDConfig(0.1, 10, decay_steps=0), "0"),
        (lambda: WSDConfig(0.1, 10, decay_steps=4, warmup_steps=7), "7"),
        (lambda: WSDConfig(0.1, 10, decay_steps=4, decay="cosine"), "'cosine'"),
        (lambda: lr_at(ConstantConfig(lr=0.1), -1), "-1"),
        (lambda: LinearConfig(0.1, 10, warmup_steps=10), "10"),
        (lambda: LinearConfig(0.1, 10, eta_min=0.2), r"\(0.2, 0.1\)"),
        (lambda: LinearConfig(0.1, 0), "0"),
        (lambda: lr_at(LinearConfig(0.1, 10), -1), "-1"),
    ],
)
def test_configs_reject_bad_values(make, bad):
    with pytest.raises(ValueError, match=f"but got {bad}"):
        make()


# Warm-up + cosine and WSD ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize(("warmup", "eta_min"), [(0, 0.0), (7, 1e-3), (1, 0.0)])
def test_cosine_matches_torch_linear_warmup_then_cosine(kind, warmup, eta_min):
    total = 100
    opt = _optimizer(kind)
    cosine = T.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=eta_min)
    if warmup:
        warm = T.LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
        theirs = _trace(T.SequentialLR(opt, [warm, cosine], milestones=[warmup]), total + 1)
    else:
        theirs = _trace(cosine, total + 1)
    cfg = CosineConfig(max_lr=0.1, total_steps=total, warmup_steps=warmup, eta_min=eta_min)
    ours = _trace(
        ScheduleLR(_optimizer(kind), cfg), total + 1
    )  # to step total: torch's cosine turns up after
    assert all(_close(a[0], b[0]) for a, b in zip(ours, theirs, strict=True))
    assert ours[total][0] == pytest.approx(eta_min, abs=1e-15) and momentum_at(cfg, 3) is None


def test_cosine_by_formula():
    cfg = CosineConfig(max_lr=0.2, total_steps=40, warmup_steps=9, eta_min=0.01)
    for t in range(9):
        assert _close(lr_at(cfg, t), 0.2 * (t + 1) / 10)  # no step at LR 0
    for t in range(9, 41):
        assert _close(lr_at(cfg, t), 0.01 + 0.19 * (1 + math.cos(math.pi * (t - 9) / 31)) / 2)
    assert lr_at(cfg, 9) == 0.2 and lr_at(cfg, 24) == pytest.approx(
        0.01 + 0.19 * (1 + math.cos(math.pi * 15 / 31)) / 2
    )
    assert [lr_at(cfg, t) for t in (40, 41, 10**6)] == [pytest.approx(0.01)] * 3 and peak_lr(cfg) == 0.2


@pytest.mark.parametrize("decay", ["1-sqrt", "linear"])
def test_wsd_by_formula(decay):
    cfg = WSDConfig(max_lr=0.3, total_steps=50, decay_steps=10, warmup_steps=4, eta_min=0.003, decay=decay)
    shape = (lambda x: 1 - math.sqrt(x)) if decay == "1-sqrt" else (lambda x: 1 - x)
    for t in range(60):
        if t < 4:
            expected = 0.3 * (t + 1) / 5
        elif t < 40:
            expected = 0.3  # stable
        else:
            expected = 0.003 + 0.297 * shape(min(t - 40, 10) / 10)
        assert _close(lr_at(cfg, t), expected), t
    assert _close(lr_at(cfg, 45), 0.003 + 0.297 * shape(0.5)) and lr_at(cfg, 50) == pytest.approx(0.003)
    ours = _trace(ScheduleLR(_optimizer(), cfg), 60)
    assert all(_close(lr, lr_at(cfg, t)) for t, (lr, _) in enumerate(ours)) and peak_lr(cfg) == 0.3


def test_wsd_one_minus_sqrt_sits_below_linear_through_the_cooldown():
    make = functools.partial(WSDConfig, max_lr=1.0, total_steps=100, decay_steps=20, warmup_steps=5)
    sqrt, linear = make(decay="1-sqrt"), make(decay="linear")
    assert all(lr_at(sqrt, t) == lr_at(linear, t) for t in range(81))
    assert all(lr_at(sqrt, t) < lr_at(linear, t) for t in range(81, 100))


def test_linear_by_formula():
    cfg = LinearConfig(max_lr=0.2, total_steps=40, warmup_steps=9, eta_min=0.01)
    for t in range(9):
        assert _close(lr_at(cfg, t), 0.2 * (t + 1) / 10)  # the warm-up of warm-up + cosine
    for t in range(9, 41):
        assert _close(lr_at(cfg, t), 0.01 + 0.19 * (1 - (t - 9) / 31))
    assert lr_at(cfg, 9) == 0.2 and [lr_at(cfg, t) for t in (40, 41, 10**6)] == [pytest.approx(0.01)] * 3
    d2z = LinearConfig(max_lr=0.1, total_steps=100)
    assert lr_at(d2z, 0) == 0.1 and lr_at(d2z, 99) == pytest.approx(0.001) and lr_at(d2z, 100) == 0.0
    ours = _trace(ScheduleLR(_optimizer(), cfg), 45)
    assert all(_close(lr, lr_at(cfg, t)) for t, (lr, _) in enumerate(ours)) and peak_lr(cfg) == 0.2


@pytest.mark.parametrize("warmup", [0, 7])
def test_linear_matches_torch_linear_warmup_then_linear_decay(warmup):
    total = 100
    opt = _optimizer()
    decay = T.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=total - warmup)
    if warmup:
        warm = T.LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
        theirs = _trace(T.SequentialLR(opt, [warm, decay], milestones=[warmup]), total + 1)
    else:
        theirs = _trace(decay, total + 1)
    cfg = LinearConfig(max_lr=0.1, total_steps=total, warmup_steps=warmup)
    ours = _trace(ScheduleLR(_optimizer(), cfg), total + 1)
    assert all(_close(a[0], b[0]) for a, b in zip(ours, theirs, strict=True))


def test_peak_lr_is_max_lr():
    assert peak_lr(one_cycle(0.3, 10)) == 0.3 and peak_lr(SGDRConfig(0.2, 5)) == 0.2
    assert peak_lr(CyclicalConfig(0.01, 0.4, 5)) == 0.4
    assert isinstance(one_cycle(0.3, 10), OneCycleConfig)


def test_plot_schedule_gallery_writes_a_png(tmp_path):
    from sched_search.results.plots import plot_schedule_gallery

    path = plot_schedule_gallery(tmp_path / "schedules.png", total_steps=300, steps_per_epoch=20)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


@pytest.mark.parametrize("preset", sorted(ONE_CYCLE_PRESETS))
@pytest.mark.parametrize("pct_start", [0.25, 0.45])
def test_one_cycle_is_judged_only_once_its_lr_is_down_to_half_its_peak(preset: str, pct_start: float) -> None:
    """Early stopping may compare a one-cycle run only after its peak, once the LR has come down to half of
    it: not in the warm-up, where the LR is also low, and not just past the peak."""
    cfg = one_cycle(0.4, 400, preset, pct_start=pct_start)
    lrs = [lr_at(cfg, s) for s in range(401)]
    peak = max(range(401), key=lrs.__getitem__)
    judged = [s for s in range(401) if at_lr_minimum(cfg, s)]
    assert judged == list(range(judged[0], 401))  # from the first judged step to the end
    assert judged[0] > peak and lrs[judged[0]] <= 0.2 < lrs[judged[0] - 1]
    assert lrs[0] <= 0.2 and not at_lr_minimum(cfg, 0)  # a low LR in the warm-up is not comparable


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd"])
@pytest.mark.parametrize("warmup_steps", [0, 40])
def test_a_decay_from_a_peak_is_judged_only_once_its_lr_is_down_to_half_of_it(
    schedule: str, warmup_steps: int
) -> None:
    """Warm-up + cosine, linear decay and WSD, like one-cycle, are compared by early stopping only once
    their LR has come down to half its peak: not in the warm-up, not through a held peak (WSD's stable
    phase)."""
    configs = {
        "cosine": CosineConfig(max_lr=0.4, total_steps=400, warmup_steps=warmup_steps),
        "linear": LinearConfig(max_lr=0.4, total_steps=400, warmup_steps=warmup_steps),
        "wsd": WSDConfig(max_lr=0.4, total_steps=400, decay_steps=100, warmup_steps=warmup_steps),
    }
    cfg = configs[schedule]
    lrs = [lr_at(cfg, s) for s in range(401)]
    judged = [s for s in range(401) if judged_at(schedule, cfg, s)]
    assert judged == list(range(judged[0], 401))
    assert lrs[judged[0]] <= 0.2 < lrs[judged[0] - 1]
    assert judged[0] > (300 if schedule == "wsd" else warmup_steps)  # WSD holds its peak until step 300
    if warmup_steps:
        assert lrs[0] <= 0.2 and not judged_at(schedule, cfg, 0)  # a low LR in the warm-up is not comparable
