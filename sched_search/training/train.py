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
from typing import Any

import torch
from torch import nn

from ..lr import is_schedule_free, judged_at, optimizer_and_scheduler
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


def train_epochs(
    config: dict[str, Any],
    data: TensorData | LoaderData,
    epochs: float,
    batch_size: int,
    model_name: str = "mlp",
    model_options: dict | None = None,
    device: str = "cpu",
    test: bool = False,
    augment: str = "none",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    objective: Objective | None = None,
) -> Iterator[dict[str, Any]]:
    """Train `config` for `epochs` (seeded by config["seed"]) and yield one metrics dict per epoch.

    `augment` ("none" | "crop_flip") transforms each training batch (`data.augment_batch`). `precision`
    ("fp32" | "bf16" | "fp16", `precision.py`), `channels_last` and `compile` (torch.compile) trade exactness
    for speed on a GPU; the defaults are the reference. `objective` is the loss and metric (default:
    cross-entropy and accuracy). `data` as tensors is batched by a seeded permutation; as loaders, the
    training loader is cycled for `data_steps` batches per epoch, its shuffling seeded through torch's global
    RNG.

    Yields: epoch, train_loss, val_loss, val_metric, lr (at epoch end), momentum, cycle_epoch (the last
    epoch that ended at an LR minimum: what early stopping compares), wall_time, status ("ok" | "nan"),
    reason; with `test=True` (final runs), on the last epoch also test_loss, test_metric (NaN without a test
    split) and val_examples (`tables.encode_examples` of the per-example values, so a verdict can pair
    examples). A non-finite training loss or val metric ends the run at once.
    """
    check_precision(precision, device)
    objective = objective or build_objective()
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)  # a DataLoader's shuffle and dropout draw from the global RNG
    if isinstance(data, TensorData):
        data = data.to(device)  # whole tensors on the trial's device (a GPU trial gets its data once)
    spe = data_steps(data, batch_size)
    n_epochs = max(1, math.ceil(epochs))
    input_shape, outputs = model_shape(data)
    model = build_model(model_name, input_shape, outputs, seed=seed, **(model_options or {}))
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer, scheduler = optimizer_and_scheduler(config, model.parameters(), epochs, spe)
    schedule = scheduler.config  # arms.build_schedule's, built once
    if is_schedule_free(optimizer):
        optimizer.train()  # schedulefree: steps at y; evaluation at the average x (averaged_weights)
    refresh = _batchnorm_refresher(model, data, batch_size, seed, device, precision, channels_last)
    scaler = grad_scaler(device, precision)
    net = torch.compile(model) if compile else model
    generator = torch.Generator().manual_seed(seed)
    # a stream of its own, so that augmenting leaves a seed's batch order unchanged
    augment_generator = torch.Generator().manual_seed(7919 * seed + 1)
    stream = endless_batches(data, device) if isinstance(data, LoaderData) else None
    total_steps = max(1, round(epochs * spe))
    step, cycle_epoch, start = 0, 0, time.perf_counter()
    for epoch in range(1, n_epochs + 1):
        # --- train one epoch (the last may be partial for a fractional budget)
        loss_sum = torch.zeros((), device=device)
        n = 0
        epoch_batches = (
            batches(data.x_train, data.y_train, batch_size, generator)
            if stream is None
            else itertools.islice(stream, spe)
        )
        for x, y in epoch_batches:
            if step >= total_steps:
                break
            if augment != "none":
                x = augment_batch(x, augment, augment_generator)
            with autocast(device, precision):
                loss = objective.loss(forward(net, to_memory_format(x, channels_last)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach()
            n += 1
            step += 1
        train_loss = float(loss_sum) / max(n, 1)  # one sync per epoch, not per step
        # --- evaluate and report
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "lr": optimizer.param_groups[0]["lr"],
        }
        group = optimizer.param_groups[0]
        row["momentum"] = group.get("momentum", group.get("betas", (math.nan,))[0])
        speed = {"objective": objective, "precision": precision, "channels_last": channels_last}
        with averaged_weights(optimizer, refresh):
            val = evaluate(net, data, "val", **speed) if math.isfinite(train_loss) else None
        if val is None or not math.isfinite(val.metric):
            what = (
                f"training loss is {train_loss}" if val is None else f"val {objective.metric} is {val.metric}"
            )
            row.update(
                val_loss=math.nan if val is None else val.loss,
                val_metric=objective.worst(),
                cycle_epoch=cycle_epoch,
                status="nan",
                reason=f"{what} in epoch {epoch} (lr {row['lr']:.3g})",
                wall_time=time.perf_counter() - start,
            )
            yield row
            return
        row["val_loss"], row["val_metric"] = val.loss, val.metric
        if judged_at(config["schedule"], schedule, step) or epoch == n_epochs:
            cycle_epoch = epoch
        row.update(cycle_epoch=cycle_epoch, status="ok", reason="", wall_time=time.perf_counter() - start)
        if test and epoch == n_epochs:
            has_test = not isinstance(data, LoaderData) or data.test is not None
            with averaged_weights(optimizer, refresh):
                result = evaluate(net, data, "test", **speed) if has_test else None
            row["test_loss"] = math.nan if result is None else result.loss
            row["test_metric"] = math.nan if result is None else result.metric
            examples = None if val.per_example is None else val.per_example.cpu().numpy()
            row["val_examples"] = encode_examples(examples)
        yield row
