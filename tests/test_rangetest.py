"""Tests for sched_search.rangetest: regions on real training, read_curve on a built curve, sanity verdicts,
exact state restore, determinism, suggestion stability, batch formats, the weight-decay sweep and its
outputs."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from torch import nn

from sched_search.lr.optim import SGDW, AdamW
from sched_search.lr.optimizers import build_optimizer
from sched_search.rangetest.curve import CurveConfig
from sched_search.rangetest.sweep import (
    RangeTestConfig,
    RangeTestResult,
    WeightDecaySweep,
    range_test,
    read_curve,
    run_range_test,
    sweep_steps,
    weight_decay_sweep,
)
from sched_search.training.data import TensorData, batches, load_data, load_digits, load_synthetic
from sched_search.training.models import build_model


@pytest.fixture(scope="module")
def digits() -> TensorData:
    return load_digits()


@pytest.fixture(scope="module")
def digits_image() -> TensorData:
    return load_digits(image=True)


def _mlp(data: TensorData, seed: int = 0) -> nn.Module:
    return build_model("mlp", data.input_shape, data.num_classes, seed=seed)


def _sgd(model: nn.Module, **kwargs: Any) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, **kwargs)


@pytest.fixture(scope="module")
def healthy(digits: TensorData) -> RangeTestResult:
    """The reference sweep: digits MLP, SGD momentum 0.9, default config."""
    model = _mlp(digits)
    return range_test(model, _sgd(model), digits)


def _assert_equal_nested(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of state dicts: tensors bit for bit, containers by structure, other values by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: {sorted(map(str, a))} vs {b!r:.200}"
        for k in a:
            _assert_equal_nested(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, steps: int) -> None:
    gen = torch.Generator().manual_seed(123)
    done = 0
    while done < steps:
        for x, y in batches(data.x_train, data.y_train, 64, gen):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                return


# --- regions on real training -------------------------------------------------------------------------------


def test_regions_on_digits_mlp(healthy: RangeTestResult) -> None:
    r = healthy.reading
    assert r.verdict == "ok", r.reasons
    too_small, descent, divergence = r.regions.too_small, r.regions.descent, r.regions.divergence
    assert too_small is not None and descent is not None and divergence is not None
    assert too_small[0] == healthy.config.start_lr
    assert too_small[0] < too_small[1] == descent[0] < descent[1] < divergence[0] <= divergence[1]
    assert descent[1] == r.min_loss_lr
    assert r.suggested_min_lr < r.suggested_max_lr < r.min_loss_lr
    assert r.suggested_max_lr == pytest.approx(r.min_loss_lr / healthy.config.max_lr_divisor)
    assert descent[0] <= r.steepest_lr <= descent[1]
    # Plausible values for SGD momentum 0.9 on standardised digits (measured: max_lr ~0.04, min-loss LR
    # ~0.11).
    assert 0.01 < r.suggested_max_lr < 0.2
    # The loss really fell through the descent region and the sweep stopped once it rose.
    assert min(healthy.losses) < 0.5 * healthy.losses[0]
    assert healthy.stopped_early and len(healthy.losses) < healthy.config.num_steps


def _built_curve(x: np.ndarray) -> np.ndarray:
    """A logistic drop centred at lr=1e-3 (scale 0.3 decades) plus an exponential rise from ~lr=0.1."""
    return 0.2 + 2.0 / (1 + np.exp((x + 3.0) / 0.3)) + 0.05 * np.exp((x + 1.0) / 0.3)


@pytest.mark.parametrize("noise_seed", [0, 1, 2])
def test_read_curve_finds_constructed_knees(noise_seed: int) -> None:
    lrs = np.logspace(-6, 1, 300)
    losses = _built_curve(np.log10(lrs)) + 0.02 * np.random.default_rng(noise_seed).standard_normal(300)
    # The knees by read_curve's own definitions (10% of the drop), on the noise-free curve at fine resolution.
    fine = np.linspace(-6, 1, 70_001)
    clean = _built_curve(fine)
    i_min = int(np.argmin(clean))
    drop = clean[0] - clean[i_min]
    knee_descent = 10 ** fine[np.nonzero(clean <= clean[0] - 0.1 * drop)[0][0]]  # ~2.2e-4
    knee_min = 10 ** fine[i_min]  # ~0.036
    knee_div = 10 ** fine[i_min + np.nonzero(clean[i_min:] >= clean[i_min] + 0.1 * drop)[0][0]]  # ~0.28

    r = read_curve(lrs, losses, CurveConfig())
    assert r.verdict == "ok", r.reasons
    assert r.regions.too_small is not None and r.regions.divergence is not None
    assert 1 / 1.5 < r.regions.too_small[1] / knee_descent < 1.5
    assert 1 / 1.5 < r.min_loss_lr / knee_min < 1.5
    assert 1 / 1.5 < r.regions.divergence[0] / knee_div < 1.5
    assert 1 / 1.5 < r.steepest_lr / 1e-3 < 1.5  # a logistic is steepest at its centre
    assert r.suggested_max_lr == pytest.approx(r.min_loss_lr / 3)


def _our_imports(module: Any) -> list[str]:
    """The modules of ours that `module`'s source imports (relative imports, by name)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(module.__file__).read_text())
    return sorted(
        (node.module or "").removeprefix("sched_search.")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("sched_search"))
    )


def test_curve_reading_imports_nothing_of_ours() -> None:
    import sched_search.rangetest.curve
    import sched_search.rangetest.sweep

    assert _our_imports(sched_search.rangetest.curve) == []
    # The runner sits beside training's loop: it builds optimizers from lr, never trains through train_epochs
    # and never reaches the study.
    sweep = Path(sched_search.rangetest.sweep.__file__).read_text()
    assert "train_epochs" not in sweep and "study" not in _our_imports(sched_search.rangetest.sweep)
    assert RangeTestConfig(bandwidth=0.5, min_drop=0.3).curve_config == CurveConfig(0.5, 3.0, 0.3)


def test_read_curve_flat_and_empty() -> None:
    lrs = np.logspace(-6, 1, 100)
    flat = read_curve(lrs, np.full(100, 2.3) + 0.001 * np.sin(np.arange(100)))
    assert flat.verdict == "failed" and flat.reasons[0].startswith("no descent region")
    assert flat.suggested_max_lr is None
    nan = read_curve(lrs, np.full(100, np.nan), nan_steps=[(0, 1e-6, "nan")])
    assert nan.verdict == "failed" and nan.reasons[0].startswith("loss is NaN from lr=1e-06 (step 0)")


# --- wild points --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("magnitude", [1e3, 1e5, 1e8])
def test_one_wild_loss_after_the_minimum_moves_nothing(healthy: RangeTestResult, magnitude: float) -> None:
    i_min = int(np.nanargmin(healthy.curve))
    base = healthy.reading.suggested_max_lr
    ratios = []
    for j in range(i_min + 1, len(healthy.losses)):
        losses = list(healthy.losses)
        losses[j] = magnitude
        reading = read_curve(healthy.lrs, losses, healthy.config.curve_config, stopped_early=True)
        assert reading.verdict == "ok", (j, reading.reasons)
        ratios.append(max(reading.suggested_max_lr / base, base / reading.suggested_max_lr))
    # Measured: at most 1.064x (one step of the sweep, 8/300 decades), the same at every magnitude.
    assert len(ratios) > 20 and max(ratios) < 1.2, ratios


def test_a_sweep_left_to_run_far_into_divergence_reads_as_a_healthy_one(
    digits: TensorData, healthy: RangeTestResult
) -> None:
    # diverge_factor 1e6 lets the loss reach ~1e7 before the stop: before the losses were capped at the early
    # loss scale, the kernel dragged the whole curve up and the reading said "no descent region".
    model = _mlp(digits)
    config = RangeTestConfig(diverge_factor=1e6, end_lr=1e3)
    result = range_test(model, _sgd(model), digits, config)
    assert max(result.losses) > 1e5 and min(result.losses) < 0.2
    assert result.verdict == "ok", result.reading.reasons
    ratio = result.reading.suggested_max_lr / healthy.reading.suggested_max_lr
    assert 1 / 1.5 < ratio < 1.5  # measured 1.18: a different sweep (5 more decades), the same minimum


def _wild_at(step: int, value: float) -> Any:
    """Cross-entropy whose value at one step is `value` times the loss; its gradient stays the loss's own."""
    calls = iter(range(10**6))

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(out, y)
        return loss + (value - 1) * loss.detach() if next(calls) == step else loss

    return loss_fn


@pytest.mark.parametrize("where", ["descent", "past the minimum"])
def test_one_wild_batch_neither_stops_the_sweep_nor_moves_the_suggestion(
    digits: TensorData, healthy: RangeTestResult, where: str
) -> None:
    # the steps come from the reference sweep itself: 25 steps before its minimum, or the step after it
    i_min = int(np.argmin(np.abs(np.log(np.asarray(healthy.lrs) / healthy.reading.min_loss_lr))))
    step = i_min - 25 if where == "descent" else i_min + 1
    model = _mlp(digits)
    result = range_test(model, _sgd(model), digits, loss_fn=_wild_at(step, 1e5))
    assert result.losses[step] > 1e4
    # The stop rule caps what it averages at 10x the average: the sweep runs on to the real divergence (past
    # the minimum the spike's trace in the average can lift its best, so the rise may take a step longer).
    assert len(healthy.losses) <= len(result.losses) <= len(healthy.losses) + 2 and result.stopped_early
    assert result.verdict == "ok", result.reading.reasons
    ratio = result.reading.suggested_max_lr / healthy.reading.suggested_max_lr
    assert 1 / 1.2 < ratio < 1.2


def test_clean_losses_drops_lone_spikes_and_caps_at_the_early_scale() -> None:
    from sched_search.rangetest.curve import clean_losses

    losses = np.array([2.0, 2.1, 1.9, 2.0, 1.5, 1.0, 50, 0.5, 0.4, 0.6, 1.0, 2.0, 3.0, 5.0, 9.0, np.nan, 30])
    cleaned = clean_losses(losses)
    # The spike at 50 is dropped; the steep rise stays up to twice the early loss (median 2.0); NaN stays NaN.
    expected = [2.0, 2.1, 1.9, 2.0, 1.5, 1.0, np.nan, 0.5, 0.4, 0.6, 1.0, 2.0, 3.0, 4.0, 4.0, np.nan, 4.0]
    np.testing.assert_array_equal(cleaned, expected)


# --- sanity verdicts on real training -----------------------------------------------------------------------


def test_healthy_verdict_ok(healthy: RangeTestResult) -> None:
    assert healthy.verdict == "ok"
    assert healthy.reading.reasons == ()
    assert healthy.nan_steps == ()
    assert all(math.isfinite(v) for v in healthy.losses)


def test_shuffled_labels_fail_as_nothing_learned(digits: TensorData) -> None:
    gen = torch.Generator().manual_seed(0)
    labels = digits.y_train[torch.randperm(len(digits.y_train), generator=gen)]
    model = _mlp(digits)
    result = range_test(model, _sgd(model), (digits.x_train, labels))
    assert result.verdict == "failed"
    # The labels' entropy (nats) is the loss of a model that learned only the class frequencies: the loss
    # falls barely below it (it was read as a plain "no descent region" before).
    p = torch.bincount(labels).double() / len(labels)
    entropy = float(-(p * p.log()).sum())
    assert result.label_entropy == pytest.approx(entropy)
    reason = result.reading.reasons[0]
    found = re.match(r"nothing learned from the inputs: the loss \(from ([\d.]+), lowest ([\d.]+)\)", reason)
    assert found, reason
    start, lowest = float(found[1]), float(found[2])
    assert 0.95 * entropy < lowest < start < 1.1 * entropy  # started near it, never fell clearly below it
    assert f"{entropy:.2g} nats, the entropy of the labels" in reason and "shuffled labels" in reason
    assert result.reading.suggested_max_lr is None


def test_constant_labels_carry_no_information(digits: TensorData) -> None:
    # Every label the same class: the loss falls from 2.4 to ~1e-7 and never turns up, which was read as "loss
    # never diverged ...; raise end_lr", advice that cannot help.
    model = _mlp(digits)
    result = range_test(model, _sgd(model), (digits.x_train, torch.full_like(digits.y_train, 3)))
    assert result.label_entropy == 0.0
    assert result.verdict == "failed"
    (reason,) = result.reading.reasons
    found = re.fullmatch(
        r"targets carry no information: every training label is the same class, so the loss falls from"
        r" ([\d.]+) to 0 \(here ([\d.e+-]+)\) by predicting it whatever the inputs; check the labels",
        reason,
    )
    assert found, reason
    # it starts near the loss of a uniform guess over the classes and ends near 0
    assert 0.5 * math.log(digits.num_classes) < float(found[1]) < 2 * math.log(digits.num_classes)
    assert 0 <= float(found[2]) < 1e-3


def test_separable_task_has_no_lr_limit() -> None:
    # Four clusters far apart (noise 0.05 around centres ~N(0, 1) in 32-D) under a linear model: linearly
    # separable, so every larger LR only pushes the loss further toward 0, up to end_lr = 1e4.
    data = load_synthetic(noise=0.05)
    torch.manual_seed(0)
    model = nn.Linear(32, 4)
    result = range_test(model, _sgd(model), data, RangeTestConfig(end_lr=1e4))
    assert result.verdict == "failed" and not result.stopped_early
    (reason,) = result.reading.reasons
    found = re.match(r"no LR limit in this range: the loss fell from ([\d.]+) to 0 by lr=([\d.e+-]+)", reason)
    assert found, reason
    assert float(found[1]) > 1  # a linear model's first loss on four classes: about ln 4
    assert 1e-7 <= float(found[2]) <= 1e4 / 10  # levelled off a decade or more before end_lr
    assert "raising end_lr will not find a limit" in reason and "linearly separable" in reason
    assert result.reading.regions.divergence is None and result.reading.notes == ()


@pytest.mark.parametrize(
    ("start_lr", "reason"),
    [
        # Before: "ok" with max_lr 0.091 and min_lr 0.030, both below the sweep's first LR, or "too noisy".
        (0.1, "start_lr too high: the loss already falls at the first LR (lr=0.1), so the sweep has no"),
        # Before: "curve too noisy to read", the wrong reason.
        (1.0, "start_lr too high: the loss already falls at the first LR (lr=1), so the sweep has no"),
        (10.0, "start_lr too high: the loss blew up within 3 steps of the first LR (lr=10), leaving no"),
    ],
)
def test_start_lr_too_high(digits: TensorData, start_lr: float, reason: str) -> None:
    model = _mlp(digits)
    result = range_test(model, _sgd(model), digits, RangeTestConfig(start_lr=start_lr, end_lr=100.0))
    assert result.verdict == "failed"
    assert result.reading.reasons[0].startswith(reason), result.reading.reasons
    assert f"lower start_lr by a few decades (e.g. to {start_lr * 1e-4:.0e})" in result.reading.reasons[0]
    assert not any("noisy" in r or "raise end_lr" in r for r in result.reading.reasons)
    assert result.reading.regions.too_small is None


@pytest.fixture(scope="module")
def mnist1d() -> TensorData:
    return load_data("mnist1d")


def _mnist1d_sweep(data: TensorData, num_steps: int) -> RangeTestResult:
    model = build_model("cnn1d", data.input_shape, data.num_classes, seed=0)
    optimizer = build_optimizer("sgdw", model.parameters(), lr=1e-7)
    return range_test(model, optimizer, data, RangeTestConfig(num_steps=num_steps), batch_size=100)


def test_sweep_too_short_for_mnist1d_names_num_steps(mnist1d: TensorData) -> None:
    # The paper's 1-D CNN with SGDW, batch 100 (70 steps per epoch): 300 steps let the loss fall under 20%
    # before the LR outgrows it. It read as "no descent region ... check labels, data and model, or raise
    # end_lr".
    short = _mnist1d_sweep(mnist1d, 300)
    assert short.verdict == "failed"
    (reason,) = short.reading.reasons
    found = re.match(r"sweep too short for this task: the loss fell only (\d+)% \(from ([\d.]+) to", reason)
    assert found, reason
    assert 0 < int(found[1]) < 20  # the rule: turned up before a 20% fall
    assert "after 300 steps (4.29 epochs of 70 steps)" in reason
    assert reason.endswith("raise num_steps (e.g. to 900)")
    assert short.steps_per_epoch == 70 and short.epochs == pytest.approx(300 / 70)
    sweep = {"num_steps": 300, "steps": 300, "steps_per_epoch": 70.0, "epochs": 300 / 70}
    assert short.summary()["sweep"] == sweep
    # The default sweep length for this data (15 epochs: 1050 steps) reads the curve; it stops on the rise.
    full = _mnist1d_sweep(mnist1d, sweep_steps(70))
    assert full.verdict == "ok", full.reading.reasons
    assert 0.02 < full.reading.suggested_max_lr < 0.1  # one-cycle SGDW at max_lr 0.1 trains it to 95%


def test_nan_in_every_batch_fails(digits: TensorData) -> None:
    x = digits.x_train.clone()
    x[:, 3] = math.nan
    model = _mlp(digits)
    result = range_test(model, _sgd(model), (x, digits.y_train))
    assert result.verdict == "failed"
    assert "loss is NaN" in result.reading.reasons[0], result.reading.reasons
    assert len(result.losses) == 5  # five non-finite steps in a row end the sweep
    assert [s for s, _, _ in result.nan_steps] == [0, 1, 2, 3, 4]


def test_nan_in_some_batches_leaves_gaps(digits: TensorData) -> None:
    x = digits.x_train.clone()
    x[[5, 500, 1000], 3] = math.nan  # 3 rows of 1259: about 3 batches of 64 in every epoch of 19
    model = _mlp(digits)
    before = copy.deepcopy(model.state_dict())
    result = range_test(model, _sgd(model), (x, digits.y_train))
    assert 10 < len(result.nan_steps) < len(result.losses) / 2
    for step, lr, kind in result.nan_steps:
        assert kind == "nan"
        assert lr == result.lrs[step] == pytest.approx(result.config.lr_at(step))
        assert math.isnan(result.losses[step])
        if step > 0:
            assert (
                result.smoothed[step] == result.smoothed[step - 1]
            )  # the gap carries the last smoothed value
    # The NaN batches were skipped, not stepped on: every other step has a finite loss, and the loss still
    # fell.
    nan_set = {s for s, _, _ in result.nan_steps}
    i_min = int(np.nanargmin(result.losses))
    assert all(math.isfinite(v) for i, v in enumerate(result.losses[:i_min]) if i not in nan_set)
    assert np.nanmin(result.losses) < 0.5 * np.nanmedian(result.losses[:10])
    assert result.verdict == "failed" and "loss is NaN" in result.reading.reasons[0]
    assert "before the loss minimum" in result.reading.reasons[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    _assert_equal_nested(before, model.state_dict())


def test_nan_first_batch_still_stops_on_the_rise(digits: TensorData) -> None:
    first_batch = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(0))[:64]
    x = digits.x_train.clone()
    x[first_batch[0], 3] = math.nan
    model = _mlp(digits)
    result = range_test(model, _sgd(model), (x, digits.y_train))
    assert result.nan_steps[0][:2] == (0, 1e-7)
    # The rise rule compares against the first finite loss; a NaN at step 0 must not switch it off, leaving
    # only the five-NaNs-in-a-row rule to stop a sweep whose loss has already exploded.
    assert result.stopped_early and math.isfinite(result.losses[-1])
    assert result.losses[-1] < 100


class _Overflow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * 1e38


def test_overflowing_output_fails(digits: TensorData) -> None:
    torch.manual_seed(0)
    model = _Overflow()
    result = range_test(model, _sgd(model), digits)
    assert result.verdict == "failed"
    reason = result.reading.reasons[0]
    assert "inf" in reason or "NaN" in reason, reason
    assert result.nan_steps and result.nan_steps[0][0] == 0


def test_loss_never_diverged(digits: TensorData) -> None:
    # AdamW descends from ~3e-4 and turns up near ~1e-2: stopping at 3e-3 sees a descent but no divergence.
    model = _mlp(digits)
    result = range_test(model, torch.optim.AdamW(model.parameters()), digits, RangeTestConfig(end_lr=3e-3))
    assert result.verdict == "failed"
    assert any(reason.startswith("loss never diverged") for reason in result.reading.reasons), result.reading
    assert result.reading.regions.divergence is None
    assert not result.stopped_early and len(result.losses) == result.config.num_steps


def test_tiny_end_lr_asks_for_a_larger_end_lr(digits: TensorData) -> None:
    # With SGD up to 1e-3 the loss barely moves: no descent yet, and the advice is to raise end_lr.
    model = _mlp(digits)
    result = range_test(model, _sgd(model), digits, RangeTestConfig(end_lr=1e-3))
    assert result.verdict == "failed"
    assert "raise end_lr" in result.reading.reasons[0], result.reading.reasons


def test_batch_larger_than_data_raises(digits: TensorData) -> None:
    model = _mlp(digits)
    with pytest.raises(ValueError, match="batch_size=64"):
        range_test(
            model, _sgd(model), (digits.x_train[:50], digits.y_train[:50]), RangeTestConfig(num_steps=10)
        )


# --- exact state restore ------------------------------------------------------------------------------------


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda p: torch.optim.Adam(p, lr=2e-3, weight_decay=1e-4),
        lambda p: SGDW(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
        lambda p: AdamW(p, lr=2e-3, weight_decay=1e-2, decay_mode="schedule"),
    ],
    ids=["sgd", "adam", "sgdw", "adamw"],
)
@pytest.mark.parametrize("training", [True, False])
def test_state_restored_exactly(digits_image: TensorData, make_optimizer, training: bool) -> None:
    model = build_model("cnn", digits_image.input_shape, 10, seed=0)
    optimizer = make_optimizer(model.parameters())
    _train_steps(model, optimizer, digits_image, 3)  # momentum buffers / Adam moments / BN running stats
    assert optimizer.state, "the optimizer should hold state before the test"
    model.train(training)
    model_before = copy.deepcopy(model.state_dict())
    optim_before = copy.deepcopy(optimizer.state_dict())
    group_keys = [set(g) for g in optimizer.param_groups]
    rng_before = torch.get_rng_state()
    hooks_before = _hooks(model)

    result = range_test(
        model, optimizer, digits_image, RangeTestConfig(num_steps=20, end_lr=1.0), weight_decay=0.1
    )
    assert len(result.losses) > 5 and result.weight_decay == 0.1

    _assert_equal_nested(model_before, model.state_dict(), "model")
    assert model.state_dict()["2.num_batches_tracked"].item() == 3  # BN counted only the 3 training steps
    _assert_equal_nested(optim_before, optimizer.state_dict(), "optimizer")
    assert optimizer.param_groups[0]["lr"] == optim_before["param_groups"][0]["lr"]
    assert optimizer.param_groups[0]["weight_decay"] == optim_before["param_groups"][0]["weight_decay"] != 0.1
    assert [set(g) for g in optimizer.param_groups] == group_keys  # no scheduler's initial_lr, nothing added
    assert all(m.training == training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _hooks(model) == hooks_before == 0
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    # The optimizer still drives the model's own parameters after load_state_dict.
    params = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert params == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_schedule_free_optimizer_sweeps_and_is_restored_in_its_mode(digits: TensorData, name: str) -> None:
    """schedulefree refuses to step outside train mode: the test switches it, then restores it in eval mode
    (the averaged weights) as it found it."""
    from sched_search.lr.schedule_free import build_schedule_free

    model = _mlp(digits)
    optimizer = build_schedule_free(name, model.parameters(), lr=1e-3, warmup_steps=2)
    optimizer.train()
    _train_steps(model, optimizer, digits, 3)
    optimizer.eval()
    model_before = copy.deepcopy(model.state_dict())
    optim_before = copy.deepcopy(optimizer.state_dict())
    result = range_test(model, optimizer, digits, RangeTestConfig(num_steps=40, end_lr=1.0))
    assert len(result.losses) > 5 and all(math.isfinite(loss) for loss in result.losses[:5])
    _assert_equal_nested(model_before, model.state_dict(), "model")
    _assert_equal_nested(optim_before, optimizer.state_dict(), "optimizer")
    assert optimizer.param_groups[0]["train_mode"] is False


def test_global_rng_untouched_with_dropout(digits: TensorData) -> None:
    torch.manual_seed(42)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))
    expected_next = torch.rand(5, generator=torch.Generator().set_state(torch.get_rng_state()))
    range_test(model, _sgd(model), digits, RangeTestConfig(num_steps=30, end_lr=1.0))
    assert torch.equal(torch.rand(5), expected_next)


def test_restored_after_an_error(digits: TensorData) -> None:
    model = _mlp(digits)
    optimizer = _sgd(model)
    _train_steps(model, optimizer, digits, 2)
    model_before, optim_before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    good = list(batches(digits.x_train, digits.y_train, 64, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="no target key"):
        range_test(
            model, optimizer, [*good[:3], {"inputs": digits.x_train[:64]}], RangeTestConfig(num_steps=20)
        )
    _assert_equal_nested(model_before, model.state_dict())
    _assert_equal_nested(optim_before, optimizer.state_dict())


def test_on_a_trained_model(digits: TensorData) -> None:
    model = _mlp(digits)
    optimizer = _sgd(model, weight_decay=5e-4)
    optimizer.param_groups[0]["lr"] = 0.03
    _train_steps(model, optimizer, digits, 2 * (len(digits.x_train) // 64))  # two epochs
    trained = copy.deepcopy(model.state_dict())
    result = range_test(model, optimizer, digits)
    assert result.losses[0] < 1.0  # starts from the trained weights (a fresh MLP starts near ln 10 = 2.3)
    i_min = int(np.argmin(result.losses))
    assert i_min > 0 and all(math.isfinite(v) for v in result.losses[: i_min + 1])
    assert np.isfinite(result.to_frame()["curve"]).all()
    assert result.verdict == "ok", result.reading.reasons
    _assert_equal_nested(trained, model.state_dict())


# --- determinism and stability ------------------------------------------------------------------------------


def test_same_seed_same_losses(digits: TensorData, healthy: RangeTestResult) -> None:
    model = _mlp(digits)
    optimizer = _sgd(model)
    first = range_test(model, optimizer, digits)
    second = range_test(model, optimizer, digits)  # the same model again: restored, so the same sweep
    assert first.losses == second.losses == healthy.losses
    assert first.reading == healthy.reading
    other = range_test(model, optimizer, digits, RangeTestConfig(seed=1))
    assert other.losses[:50] != first.losses[:50]


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.AdamW(p)],
    ids=["sgd-momentum", "adamw"],
)
def test_suggested_max_lr_is_stable(digits: TensorData, make_optimizer) -> None:
    suggestions = []
    for seed in range(4):
        for num_steps in (200, 300, 400):
            model = _mlp(digits, seed=seed)
            result = range_test(
                model,
                make_optimizer(model.parameters()),
                digits,
                RangeTestConfig(num_steps=num_steps, seed=seed),
            )
            assert result.verdict == "ok", (seed, num_steps, result.reading.reasons)
            suggestions.append(result.reading.suggested_max_lr)
    # Measured 1.39 (SGD) and 1.36 (AdamW); torch-lr-finder's steepest point moves ~8x over the same grid.
    assert max(suggestions) / min(suggestions) <= 1.5, suggestions


# --- batch formats, accumulation, validation ----------------------------------------------------------------


class _TwoInput(nn.Module):
    """Left and right halves of a digit through separate layers, summed."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.left_proj = nn.Linear(32, 64)
        self.right_proj = nn.Linear(32, 64)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(64, 10))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.head(self.left_proj(left) + self.right_proj(right))


class _Served:
    """A re-iterable list of batches (as a DataLoader is) that counts what it hands out."""

    def __init__(self, items: list[Any]) -> None:
        self.items, self.served = items, 0

    def __iter__(self):
        for item in self.items:
            self.served += 1
            yield item


def _split_batches(data: TensorData) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(x[:, :32], x[:, 32:], y) for x, y in batches(data.x_train, data.y_train, 64, gen)]


@pytest.mark.parametrize("form", ["tuple", "dict", "dict+batch_fn"])
def test_multi_input_batches(digits: TensorData, form: str) -> None:
    split = _split_batches(digits)
    kwargs: dict[str, Any] = {}
    if form == "tuple":
        items: list[Any] = split
    elif form == "dict":
        items = [{"left": a, "right": b, "label": y} for a, b, y in split]
    else:
        items = [{"pixels": (a, b), "digit": y} for a, b, y in split]
        kwargs["batch_fn"] = lambda batch: (batch["pixels"], batch["digit"])
    data = _Served(items)
    config = RangeTestConfig(num_steps=40, end_lr=0.3)
    model = _TwoInput()
    result = range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), data, config, **kwargs)
    assert len(result.losses) == 40 and all(math.isfinite(v) for v in result.losses)
    assert data.served == 40  # cycled past the 19 batches of one epoch
    # Every form carries the same batches to the same model: the same losses, exactly.
    model = _TwoInput()
    reference = range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), _Served(split), config)
    assert result.losses == reference.losses


def test_gradient_accumulation(digits: TensorData) -> None:
    config = RangeTestConfig(num_steps=30, end_lr=1e-2, accumulation_steps=2)
    data = _Served(list(batches(digits.x_train, digits.y_train, 32, torch.Generator().manual_seed(0))))
    model = _mlp(digits)
    result = range_test(model, _sgd(model), data, config)
    assert len(result.losses) == 30 and all(math.isfinite(v) for v in result.losses)
    assert data.served == 60
    # Two micro-batches of 32 make the same step as one batch of 64 over the same examples (the seeded
    # permutation lists the same indices first), so the losses agree until the epochs' ends differ.
    whole = range_test(model, _sgd(model), digits, replace(config, accumulation_steps=1), batch_size=64)
    halves = range_test(model, _sgd(model), digits, config, batch_size=32)
    np.testing.assert_allclose(halves.losses[:15], whole.losses[:15], rtol=1e-5)


def test_validation_losses(digits: TensorData) -> None:
    model = _mlp(digits)
    config = RangeTestConfig(num_steps=50, end_lr=0.1, val_every=10)
    result = range_test(model, _sgd(model), digits, config, val_data=(digits.x_val, digits.y_val))
    assert len(result.val_losses) == len(result.losses) == 50
    recorded = [i for i, v in enumerate(result.val_losses) if v is not None]
    assert recorded == [0, 10, 20, 30, 40]
    assert all(math.isfinite(result.val_losses[i]) for i in recorded)
    assert result.val_losses[40] < result.val_losses[0]  # training at up to 0.1 helps the held-out loss too
    frame = result.to_frame()
    assert frame["val_loss"].notna().sum() == 5
    # Without val_data no validation loss is recorded.
    bare = range_test(model, _sgd(model), digits, config)
    assert all(v is None for v in bare.val_losses)
    assert bare.losses == result.losses  # validation draws nothing and changes nothing


# --- modes and config validation ----------------------------------------------------------------------------


def test_linear_mode(digits: TensorData) -> None:
    model = _mlp(digits)
    config = RangeTestConfig(start_lr=1e-3, end_lr=1.0, num_steps=100, mode="linear")
    result = range_test(model, _sgd(model), digits, config)
    lrs = np.array(result.lrs)
    assert lrs[0] == 1e-3
    np.testing.assert_allclose(np.diff(lrs), (1.0 - 1e-3) / 99, rtol=1e-9)
    assert config.lr_at(99) == pytest.approx(1.0)
    assert result.reading.min_loss_lr in result.lrs
    assert min(result.losses) < 0.5 * result.losses[0]


def test_exp_mode_is_geometric() -> None:
    config = RangeTestConfig(start_lr=1e-6, end_lr=1.0, num_steps=61)
    lrs = np.array([config.lr_at(s) for s in range(61)])
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], 10**0.1, rtol=1e-9)
    assert lrs[0] == 1e-6 and lrs[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_lr": 1.0, "end_lr": 0.5}, "start_lr=1.0, end_lr=0.5"),
        ({"start_lr": 0.1, "end_lr": 0.1}, "start_lr=0.1, end_lr=0.1"),
        ({"start_lr": 0.0}, "start_lr=0.0"),
        ({"num_steps": 9}, "but got 9"),
        ({"mode": "cosine"}, "'cosine'"),
        ({"diverge_factor": 1.0}, "but got 1.0"),
        ({"accumulation_steps": 0}, "but got 0"),
        ({"bandwidth": 0.0}, "bandwidth must be > 0 decades, but got 0.0"),
        ({"min_drop": 1.0}, r"min_drop must be in \(0, 1\), but got 1.0"),
        ({"max_lr_divisor": 0.5}, "max_lr_divisor must be >= 1, but got 0.5"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RangeTestConfig(**kwargs)


# --- weight-decay sweep and outputs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(digits: TensorData):
    model = _mlp(digits)
    optimizer = _sgd(model, weight_decay=5e-4)
    grid = (0.0, 1e-4, 1e-3, 1e-2)
    result = weight_decay_sweep(model, optimizer, digits, grid, RangeTestConfig(num_steps=200))
    return result, optimizer, grid


def test_weight_decay_sweep(sweep) -> None:
    result, optimizer, grid = sweep
    assert result.chosen in grid
    assert [r.weight_decay for r in result.results] == list(grid)
    assert optimizer.param_groups[0]["weight_decay"] == 5e-4  # the caller's decay is back
    low, high = result.search_range
    centre = result.chosen if result.chosen > 0 else 1e-5
    assert 0 < low < centre < high
    assert result.best.weight_decay == result.chosen
    assert str(result.chosen) in result.reason or f"{result.chosen:g}" in result.reason
    # The chosen decay's curve reaches the lowest loss of the grid, or within 2% of it.
    lowest = {r.weight_decay: np.nanmin(r.to_frame()["curve"]) for r in result.results}
    assert lowest[result.chosen] <= min(lowest.values()) * 1.02 + 1e-12


def test_sweep_to_json_and_frame(sweep, tmp_path) -> None:
    result, _, grid = sweep
    text = result.to_json(tmp_path / "sweep.json")
    assert (tmp_path / "sweep.json").read_text() == text
    out = json.loads(text)
    assert {
        "verdict",
        "reasons",
        "suggested_min_lr",
        "suggested_max_lr",
        "steepest_lr",
        "regions",
        "weight_decay",
        "nan_steps",
    } <= out.keys()
    assert out["weight_decay"]["chosen"] == result.chosen
    assert out["weight_decay"]["range"] == list(result.search_range)
    assert [d["weight_decay"] for d in out["weight_decay"]["per_decay"]] == list(grid)
    assert out["suggested_max_lr"] == result.best.reading.suggested_max_lr
    assert set(out["regions"]) == {"too_small", "descent", "divergence"}
    frame = result.to_frame()
    assert len(frame) == sum(len(r.lrs) for r in result.results)
    for r in result.results:
        rows = frame[frame["weight_decay"] == r.weight_decay]
        assert list(rows["step"]) == list(range(len(r.lrs)))
        np.testing.assert_array_equal(rows["lr"].to_numpy(), np.array(r.lrs))


def test_run_range_test_always_returns_a_sweep() -> None:
    config = RangeTestConfig(num_steps=40, end_lr=0.1)
    single = run_range_test("digits", "mlp", "sgdw", config, weight_decays=None)
    assert isinstance(single, WeightDecaySweep)
    assert [r.weight_decay for r in single.results] == [0.0] and single.chosen == 0.0
    assert single.reason == "one weight decay tried (0): no sweep"
    pair = run_range_test("digits", "mlp", "sgdw", config, weight_decays=(0.0, 1e-3))
    assert isinstance(pair, WeightDecaySweep) and [r.weight_decay for r in pair.results] == [0.0, 1e-3]
    # A sweep of one is the plain range test at that decay, loss for loss.
    assert single.results[0].losses == pair.results[0].losses


def test_result_to_json(healthy: RangeTestResult) -> None:
    out = json.loads(healthy.to_json())
    assert out["verdict"] == "ok" and out["reasons"] == []
    assert out["suggested_max_lr"] == healthy.reading.suggested_max_lr
    assert out["regions"]["descent"] == list(healthy.reading.regions.descent)
    assert out["nan_steps"] == []
    assert out["config"]["num_steps"] == 300


def test_plot_writes_png(healthy: RangeTestResult, sweep, tmp_path) -> None:
    for name, obj in (("one.png", healthy), ("sweep.png", sweep[0])):
        path = obj.plot(tmp_path / name)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(path)[..., :3]
        height, width, _ = image.shape
        assert width > 400 and height > 300
        drawn = (image < 0.9).any(axis=-1)  # not white: axes, labels and the curve
        assert 0.01 < drawn.mean() < 0.5
        assert drawn[:, width // 4 : 3 * width // 4].any(axis=0).mean() > 0.9  # a curve across the middle


def test_sweep_progress_a_bar_or_a_line_per_sweep(digits: TensorData, capsys: pytest.CaptureFixture) -> None:
    model = _mlp(digits)
    config = RangeTestConfig(num_steps=20)
    seen: list[tuple[int, int, float]] = []
    weight_decay_sweep(model, _sgd(model), digits, (0.0, 1e-4), config, on_sweep=lambda *a: seen.append(a))
    assert seen == [(1, 2, 0.0), (2, 2, 1e-4)]
    assert capsys.readouterr().err == ""  # quiet without progress
    weight_decay_sweep(model, _sgd(model), digits, (0.0, 1e-4), config, progress=True, desc="range test sgd")
    err = capsys.readouterr().err
    assert "range test sgd: sweep 1 of 2, wd 0:" in err and "range test sgd: sweep 2 of 2, wd 0.0001:" in err
    assert err.count("20/20") >= 2  # each bar ran to the end and stays
