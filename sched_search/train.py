"""Train one config for N epochs, reporting per epoch: the plain loop that the range test's users and Ray Tune share.

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

from .arms import build_schedule
from .data import TensorData, augment_batch, batches, steps_per_epoch
from .models import build_model
from .optim import build_optimizer
from .schedules import at_lr_minimum, build_scheduler, lr_at


@torch.no_grad()
def evaluate_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy over (x, y) and, per example, whether the prediction is right (a bool tensor)."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = []
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        loss += nn.functional.cross_entropy(out, y[i : i + batch_size], reduction="sum")
        correct.append(out.argmax(1) == y[i : i + batch_size])
    model.train()
    return float(loss) / len(x), torch.cat(correct)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y)."""
    loss, correct = evaluate_examples(model, x, y, batch_size)
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
) -> Iterator[dict[str, Any]]:
    """Train `config` for `epochs` (seeded by config["seed"]) and yield one metrics dict per epoch.

    `augment` ("none" | "crop_flip") transforms each training batch (`data.augment_batch`).

    Yields: epoch, train_loss, val_loss, val_accuracy, lr (at epoch end), momentum, cycle_epoch (the last epoch that
    ended at an LR minimum: what early stopping compares), wall_time, status ("ok" | "nan"), reason; with
    `test=True` (final runs), on the last epoch also test_loss, test_accuracy and val_correct (`correct_string`
    of the validation set, so a verdict can count examples). A non-finite training loss ends the run at once.
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
        row["val_loss"], val_correct = evaluate_examples(model, data.x_val, data.y_val)
        row["val_accuracy"] = float(val_correct.float().mean())
        if at_lr_minimum(schedule, step) or epoch == n_epochs:
            cycle_epoch = epoch
        row.update(cycle_epoch=cycle_epoch, status="ok", reason="", wall_time=time.perf_counter() - start)
        if test and epoch == n_epochs:
            row["test_loss"], row["test_accuracy"] = evaluate(model, data.x_test, data.y_test)
            row["val_correct"] = correct_string(val_correct)
        yield row
