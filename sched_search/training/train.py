"""Train one config for N epochs, reporting per epoch: the plain loop that the range test's users and Ray Tune
share.

A trial config is a flat dict (the Ray/Optuna boundary): arm, schedule, optimizer, seed, the searched values
(max_lr, weight_decay, ...) and the arm's constants. `arms.build_schedule` turns it into a schedule config.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ModelSection, TrainSection, metric_mode
from ..lr import ScheduleLR, is_schedule_free, judged_at, optimizer_and_scheduler
from .data import (
    LoaderData,
    TensorData,
    augment_batch,
    batches,
    data_steps,
    endless_batches,
    eval_batches,
    model_shape,
)
from .models import build_model
from .objective import Evaluation, Objective, build_objective, encode_examples, forward, score
from .precision import autocast, check_precision, grad_scaler, to_memory_format


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TensorData | LoaderData,
    split: str = "val",
    objective: Objective | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Evaluation:
    """The loss and metric of `model` on a split ("val" | "test") of the data, on the model's device."""
    device = next(model.parameters()).device

    def outputs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, y in eval_batches(data, split, device):
            with autocast(device, precision):
                yield forward(model, to_memory_format(inputs, channels_last)).float(), y

    model.eval()
    try:
        return score(objective or build_objective(), outputs())
    finally:
        model.train()


BN_BATCHES = 50  # training batches over which BatchNorm statistics are recomputed (schedulefree's README)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, inputs: Iterable[Any]) -> None:
    """BatchNorm running statistics recomputed at the model's current weights: a cumulative average over
    `inputs` (batches of model inputs).

    A schedule-free optimizer evaluates at its averaged weights x while the statistics were gathered at the
    training weights y; its README recomputes them at x in train mode over a few batches before evaluating.
    """
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return
    momenta, was_training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: torch's cumulative moving average, every batch weighs the same
    model.train()
    try:
        for x in inputs:
            forward(model, x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


@contextmanager
def averaged_weights(
    optimizer: torch.optim.Optimizer, refresh_batchnorm: Callable[[], None] | None = None
) -> Iterator[None]:
    """Inside: the weights to evaluate or save. A schedule-free optimizer swaps in its average x
    (`optimizer.eval()`) and `refresh_batchnorm` recomputes BatchNorm statistics there; back to the training
    weights y on leaving. Any other optimizer: nothing to do."""
    if not is_schedule_free(optimizer):
        yield
        return
    optimizer.eval()
    try:
        if refresh_batchnorm is not None:
            refresh_batchnorm()
        yield
    finally:
        optimizer.train()


def _batchnorm_refresher(
    model: nn.Module,
    data: TensorData | LoaderData,
    batch_size: int,
    seed: int,
    device: str,
    precision: str,
    channels_last: bool,
) -> Callable[[], None] | None:
    """`recompute_batchnorm` over the same BN_BATCHES training batches every time (drawn with their own
    generator, so the training order is untouched); None for a model without BatchNorm."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None

    def refresh() -> None:
        if isinstance(data, LoaderData):
            with torch.random.fork_rng(devices=[]):  # a shuffling loader draws from the global RNG
                chosen = [x for x, _ in itertools.islice(endless_batches(data, device), BN_BATCHES)]
        else:
            stream = batches(data.x_train, data.y_train, batch_size, torch.Generator().manual_seed(seed))
            chosen = [x for x, _ in itertools.islice(stream, BN_BATCHES)]
        with autocast(device, precision):
            recompute_batchnorm(model, [to_memory_format(x, channels_last) for x in chosen])

    return refresh


@dataclass
class _Run:
    """What one training run holds while it trains: built once by `_start_run`, read by every epoch."""

    model: nn.Module
    net: nn.Module  # the model as called: compiled or the model itself
    optimizer: torch.optim.Optimizer
    scheduler: ScheduleLR
    scaler: Any  # the gradient scaler (a no-op outside fp16)
    refresh: Callable[[], None] | None  # BatchNorm statistics at the averaged weights (schedule-free)
    objective: Objective
    steps_per_epoch: int
    total_steps: int
    generator: torch.Generator  # the batch order of tensor data
    augment_generator: torch.Generator
    stream: Iterator[Any] | None  # loader data's endless batches
    step: int = 0


def train_epochs(
    config: dict[str, Any],
    data: TensorData | LoaderData,
    epochs: float,
    train: TrainSection,
    model: ModelSection,
    test: bool = False,
) -> Iterator[dict[str, Any]]:
    """Train `config` for `epochs` (seeded by config["seed"]) and yield one metrics dict per epoch.

    Args:
        config: a trial config: arm, schedule, optimizer, seed and the schedule's values.
        data: `TensorData`, batched by a seeded permutation, or `LoaderData`, whose training loader is cycled
            for `data_steps` batches per epoch, its shuffling seeded through torch's global RNG.
        epochs: the budget (a fraction runs a partial last epoch); the schedule is compressed into it.
        train: the study's `[train]` settings, whole: batch size, device, augmentation, precision,
            channels_last, compile (the defaults are the reference; the others trade exactness for speed on
            a GPU), and the loss and metric.
        model: the study's `[model]`: the model and its options.
        test: also evaluate the test split and record the per-example validation values (final runs).

    Yields: epoch, train_loss, val_loss, val_metric, lr (at epoch end), momentum, cycle_epoch (the last
    epoch that ended where the schedule may be judged: what early stopping compares), wall_time, status
    ("ok" | "nan"), reason; with `test=True` (final runs), on the last epoch also test_loss, test_metric (NaN
    without a test split) and val_examples (`objective.encode_examples` of the per-example values, so a
    verdict can pair examples). A non-finite training loss or val metric ends the run at once.

    Example:
        >>> train, model = TrainSection(batch_size=100), ModelSection("cnn1d")
        >>> rows = list(train_epochs(config, data, 20, train, model))  # doctest: +SKIP
    """
    check_precision(train.precision, train.device)
    if isinstance(data, TensorData):
        data = data.to(train.device)  # whole tensors on the trial's device (a GPU trial gets its data once)
    run = _start_run(config, data, epochs, train, model)
    n_epochs = max(1, math.ceil(epochs))
    cycle_epoch, start = 0, time.perf_counter()
    for epoch in range(1, n_epochs + 1):
        train_loss = _train_epoch(run, data, train)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, **_lr_and_momentum(run.optimizer)}
        speed = {
            "objective": run.objective,
            "precision": train.precision,
            "channels_last": train.channels_last,
        }
        with averaged_weights(run.optimizer, run.refresh):
            val = evaluate(run.net, data, "val", **speed) if math.isfinite(train_loss) else None
        if val is None or not math.isfinite(val.metric):
            what = (
                f"training loss is {train_loss}"
                if val is None
                else f"val {run.objective.metric} is {val.metric}"
            )
            row.update(
                val_loss=math.nan if val is None else val.loss,
                val_metric=run.objective.worst(),
                cycle_epoch=cycle_epoch,
                status="nan",
                reason=f"{what} in epoch {epoch} (lr {row['lr']:.3g})",
                wall_time=time.perf_counter() - start,
            )
            yield row
            return
        row["val_loss"], row["val_metric"] = val.loss, val.metric
        if judged_at(config["schedule"], run.scheduler.config, run.step) or epoch == n_epochs:
            cycle_epoch = epoch
        row.update(cycle_epoch=cycle_epoch, status="ok", reason="", wall_time=time.perf_counter() - start)
        if test and epoch == n_epochs:
            row.update(_test_columns(run, data, val, speed))
        yield row


def _start_run(
    config: dict[str, Any],
    data: TensorData | LoaderData,
    epochs: float,
    train: TrainSection,
    model: ModelSection,
) -> _Run:
    """The seeded model on its device, the optimizer and scheduler of `config` over `epochs`, the batch
    streams."""
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)  # a DataLoader's shuffle and dropout draw from the global RNG
    spe = data_steps(data, train.batch_size)
    input_shape, outputs = model_shape(data)
    net = build_model(model.name, input_shape, outputs, seed=seed, **dict(model.options))
    net = net.to(
        train.device, memory_format=torch.channels_last if train.channels_last else torch.preserve_format
    )
    optimizer, scheduler = optimizer_and_scheduler(config, net.parameters(), epochs, spe)
    if is_schedule_free(optimizer):
        optimizer.train()  # schedulefree: steps at y; evaluation at the average x (averaged_weights)
    return _Run(
        model=net,
        net=torch.compile(net) if train.compile else net,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=grad_scaler(train.device, train.precision),
        refresh=_batchnorm_refresher(
            net, data, train.batch_size, seed, train.device, train.precision, train.channels_last
        ),
        objective=build_objective(train.loss, train.metric, metric_mode(train)),
        steps_per_epoch=spe,
        total_steps=max(1, round(epochs * spe)),
        generator=torch.Generator().manual_seed(seed),
        # a stream of its own, so that augmenting leaves a seed's batch order unchanged
        augment_generator=torch.Generator().manual_seed(7919 * seed + 1),
        stream=endless_batches(data, train.device) if isinstance(data, LoaderData) else None,
    )


def _train_epoch(run: _Run, data: TensorData | LoaderData, train: TrainSection) -> float:
    """One epoch of steps (the last may be partial for a fractional budget); its mean training loss."""
    loss_sum = torch.zeros((), device=train.device)
    n = 0
    epoch_batches = (
        batches(data.x_train, data.y_train, train.batch_size, run.generator)
        if run.stream is None
        else itertools.islice(run.stream, run.steps_per_epoch)
    )
    for x, y in epoch_batches:
        if run.step >= run.total_steps:
            break
        if train.augment != "none":
            x = augment_batch(x, train.augment, run.augment_generator)
        with autocast(train.device, train.precision):
            out = forward(run.net, to_memory_format(x, train.channels_last))
            loss = run.objective.loss(out.float(), y)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        loss_sum += loss.detach()
        n += 1
        run.step += 1
    return float(loss_sum) / max(n, 1)  # one sync per epoch, not per step


def _lr_and_momentum(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    group = optimizer.param_groups[0]
    return {"lr": group["lr"], "momentum": group.get("momentum", group.get("betas", (math.nan,))[0])}


def _test_columns(
    run: _Run, data: TensorData | LoaderData, val: Evaluation, speed: dict[str, Any]
) -> dict[str, Any]:
    """A final run's last epoch: the test loss and metric (NaN without a test split) and the per-example
    validation values."""
    has_test = not isinstance(data, LoaderData) or data.test is not None
    with averaged_weights(run.optimizer, run.refresh):
        result = evaluate(run.net, data, "test", **speed) if has_test else None
    examples = None if val.per_example is None else val.per_example.cpu().numpy()
    return {
        "test_loss": math.nan if result is None else result.loss,
        "test_metric": math.nan if result is None else result.metric,
        "val_examples": encode_examples(examples),
    }
