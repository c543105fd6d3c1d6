"""Train one config for N epochs, reporting per epoch: the plain loop that the range test's users and Ray Tune share.

A trial config is a flat dict (the Ray/Optuna boundary): arm, schedule, optimizer, seed, the searched values
(max_lr, weight_decay, ...) and the arm's constants. `build_schedule` turns it into a schedule config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .data import TensorData, augment_batch, batches, steps_per_epoch
from .models import build_model
from .optim import build_optimizer
from .schedules import (
    ConstantConfig,
    CyclicalConfig,
    ScheduleConfig,
    SGDRConfig,
    build_scheduler,
    lr_at,
    one_cycle,
    to_steps,
)


def build_schedule(config: dict[str, Any], epochs: float, spe: int) -> ScheduleConfig:
    """The schedule of a trial config over `epochs` (possibly a compressed budget) of `spe` steps each.

    Cycle lengths are stored in epochs of the full budget and scaled by `epochs / config["epochs"]`, so a budget
    ladder compresses the whole schedule, not just its end.
    """
    scale = epochs / config.get("epochs", epochs)
    total = max(1, round(epochs * spe))
    schedule = config["schedule"]
    if schedule == "constant":
        return ConstantConfig(lr=config["lr"])
    if schedule == "clr":
        max_lr = config["max_lr"]
        return CyclicalConfig(
            base_lr=max_lr / config["base_div"],
            max_lr=max_lr,
            step_size=to_steps(config["step_size_epochs"] * scale, "epochs", spe),
            mode=config["mode"],
            gamma=config["gamma"] ** (1 / scale) if config["mode"] == "exp_range" else 1.0,
        )
    if schedule == "sgdr":
        return SGDRConfig(
            max_lr=config["max_lr"],
            t_0=to_steps(config["t_0_epochs"] * scale, "epochs", spe),
            t_mult=config["t_mult"],
            eta_min=config["eta_min"],
        )
    if schedule == "one_cycle":
        return one_cycle(
            config["max_lr"],
            total,
            "paper",
            pct_start=config["pct_start"],
            div_factor=config["div_factor"],
            final_div_factor=config.get("final_div_factor", 1e4),
        )
    raise ValueError(f"unknown schedule {schedule!r}: expected constant, clr, sgdr or one_cycle.")


def at_lr_minimum(schedule: ScheduleConfig, step: int) -> bool:
    """Whether `step` (a count of steps done) ends a cycle: the LR is at a local minimum there.

    Early stopping must compare cyclical schedules at these points, not mid-cycle where the LR peaks.
    """
    if not isinstance(schedule, (CyclicalConfig, SGDRConfig)):
        return True
    a, b, c = (lr_at(schedule, max(0, s)) for s in (step - 2, step - 1, step))
    d = lr_at(schedule, step + 1)
    return (b <= a and c > b) or (c <= b and d > c)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y)."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        loss += nn.functional.cross_entropy(out, y[i : i + batch_size], reduction="sum")
        correct += (out.argmax(1) == y[i : i + batch_size]).sum()
    model.train()
    return float(loss) / len(x), float(correct) / len(x)


def train_epochs(
    config: dict[str, Any],
    data: TensorData,
    epochs: float,
    batch_size: int,
    model_name: str = "mlp",
    model_options: dict | None = None,
    device: str = "cpu",
    test: bool = False,
    augment: str = "none",
) -> Iterator[dict[str, Any]]:
    """Train `config` for `epochs` (seeded by config["seed"]) and yield one metrics dict per epoch.

    `augment` ("none" | "crop_flip") transforms each training batch (`data.augment_batch`).

    Yields: epoch, train_loss, val_loss, val_accuracy, lr (at epoch end), momentum, cycle_epoch (the last epoch that
    ended at an LR minimum: what early stopping compares), wall_time, status ("ok" | "nan"), reason; with
    `test=True`, test_loss and test_accuracy on the last epoch. A non-finite training loss ends the run at once.
    """
    seed = int(config.get("seed", 0))
    data = data.to(
        device
    )  # whole tensors on the trial's device (a GPU trial gets its data once from the store)
    spe = steps_per_epoch(len(data.x_train), batch_size)
    n_epochs = max(1, math.ceil(epochs))
    schedule = build_schedule(config, epochs, spe)
    model = build_model(model_name, data.input_shape, data.num_classes, seed=seed, **(model_options or {}))
    model = model.to(device)
    lr0 = lr_at(schedule, 0)
    optimizer = build_optimizer(config["optimizer"], model.parameters(), lr0, config.get("weight_decay", 0.0))
    scheduler = build_scheduler(optimizer, schedule)
    generator = torch.Generator().manual_seed(seed)
    # a stream of its own, so that augmenting leaves a seed's batch order unchanged
    augment_generator = torch.Generator().manual_seed(7919 * seed + 1)
    total_steps = max(1, round(epochs * spe))
    step, cycle_epoch, start = 0, 0, time.perf_counter()
    for epoch in range(1, n_epochs + 1):
        # --- train one epoch (the last may be partial for a fractional budget)
        loss_sum = torch.zeros((), device=device)
        n = 0
        for x, y in batches(data.x_train, data.y_train, batch_size, generator):
            if step >= total_steps:
                break
            x = augment_batch(x, augment, augment_generator)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
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
        if not math.isfinite(train_loss):
            row.update(
                val_loss=math.nan,
                val_accuracy=0.0,
                cycle_epoch=cycle_epoch,
                status="nan",
                reason=f"training loss is {train_loss} in epoch {epoch} (lr {row['lr']:.3g})",
                wall_time=time.perf_counter() - start,
            )
            yield row
            return
        row["val_loss"], row["val_accuracy"] = evaluate(model, data.x_val, data.y_val)
        if at_lr_minimum(schedule, step) or epoch == n_epochs:
            cycle_epoch = epoch
        row.update(cycle_epoch=cycle_epoch, status="ok", reason="", wall_time=time.perf_counter() - start)
        if test and epoch == n_epochs:
            row["test_loss"], row["test_accuracy"] = evaluate(model, data.x_test, data.y_test)
        yield row
