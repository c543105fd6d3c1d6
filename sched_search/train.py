"""Train one config for N epochs, reporting per epoch: the plain loop that the range test's users and Ray Tune
share.

A trial config is a flat dict (the Ray/Optuna boundary): arm, schedule, optimizer, seed, the searched values
(max_lr, weight_decay, ...) and the arm's constants. `arms.build_schedule` turns it into a schedule config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .arms import optimizer_and_scheduler
from .data import TensorData, augment_batch, batches, steps_per_epoch
from .models import build_model
from .precision import autocast, check_precision, grad_scaler, to_memory_format
from .schedules import at_lr_minimum


@torch.no_grad()
def evaluate_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1024,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy over (x, y) and, per example, whether the prediction is right (a bool tensor)."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = []
    for i in range(0, len(x), batch_size):
        with autocast(x.device, precision):
            out = model(to_memory_format(x[i : i + batch_size], channels_last)).float()
        loss += nn.functional.cross_entropy(out, y[i : i + batch_size], reduction="sum")
        correct.append(out.argmax(1) == y[i : i + batch_size])
    model.train()
    return float(loss) / len(x), torch.cat(correct)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, **speed: Any
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y); `speed` as in `evaluate_examples`."""
    loss, correct = evaluate_examples(model, x, y, batch_size, **speed)
    return loss, float(correct.float().mean())


def correct_string(correct: torch.Tensor) -> str:
    """Per-example correctness as "0110..." (one character per example): what the verdict pairs arms on."""
    return "".join("01"[int(v)] for v in correct.cpu().tolist())


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
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
) -> Iterator[dict[str, Any]]:
    """Train `config` for `epochs` (seeded by config["seed"]) and yield one metrics dict per epoch.

    `augment` ("none" | "crop_flip") transforms each training batch (`data.augment_batch`). `precision`
    ("fp32" | "bf16" | "fp16", `precision.py`), `channels_last` and `compile` (torch.compile) trade exactness
    for speed on a GPU; the defaults are the reference.

    Yields: epoch, train_loss, val_loss, val_metric, lr (at epoch end), momentum, cycle_epoch (the last
    epoch that ended at an LR minimum: what early stopping compares), wall_time, status ("ok" | "nan"),
    reason; with `test=True` (final runs), on the last epoch also test_loss, test_metric and val_examples
    (`correct_string` of the validation set, so a verdict can count examples). A non-finite training loss ends
    the run at once.
    """
    check_precision(precision, device)
    seed = int(config.get("seed", 0))
    # whole tensors on the trial's device (a GPU trial gets its data once from the store)
    data = data.to(device)
    spe = steps_per_epoch(len(data.x_train), batch_size)
    n_epochs = max(1, math.ceil(epochs))
    model = build_model(model_name, data.input_shape, data.num_classes, seed=seed, **(model_options or {}))
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer, scheduler = optimizer_and_scheduler(config, model.parameters(), epochs, spe)
    schedule = scheduler.config  # arms.build_schedule's, built once
    scaler = grad_scaler(device, precision)
    forward = torch.compile(model) if compile else model
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
            x = to_memory_format(augment_batch(x, augment, augment_generator), channels_last)
            with autocast(device, precision):
                loss = nn.functional.cross_entropy(forward(x).float(), y)
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
        if not math.isfinite(train_loss):
            row.update(
                val_loss=math.nan,
                val_metric=0.0,
                cycle_epoch=cycle_epoch,
                status="nan",
                reason=f"training loss is {train_loss} in epoch {epoch} (lr {row['lr']:.3g})",
                wall_time=time.perf_counter() - start,
            )
            yield row
            return
        speed = {"precision": precision, "channels_last": channels_last}
        row["val_loss"], val_examples = evaluate_examples(forward, data.x_val, data.y_val, **speed)
        row["val_metric"] = float(val_examples.float().mean())
        if at_lr_minimum(schedule, step) or epoch == n_epochs:
            cycle_epoch = epoch
        row.update(cycle_epoch=cycle_epoch, status="ok", reason="", wall_time=time.perf_counter() - start)
        if test and epoch == n_epochs:
            row["test_loss"], row["test_metric"] = evaluate(forward, data.x_test, data.y_test, **speed)
            row["val_examples"] = correct_string(val_examples)
        yield row
