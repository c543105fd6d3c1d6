"""Arms: a schedule x optimizer pair, the values each schedule takes, and how they become a schedule config.

One place for the names that the search space (`space.py`), the trial (`train.py`), the tables and the
leaderboard share: a trial config is a flat dict at the Ray/Optuna boundary, and these are its schedule keys.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import BASELINE_ARM, BASELINES
from .families import HYPERPARAMETERS, SPECS, schedule_spec
from .schedules import ScheduleConfig, ScheduleLR

__all__ = [
    "HYPERPARAMETERS",
    "baseline_config",
    "build_schedule",
    "hyperparameters",
    "optimizer_and_scheduler",
    "range_family",
    "split_arm",
]


def split_arm(arm: str) -> tuple[str, str]:
    """ "one_cycle-sgdw" -> ("one_cycle", "sgdw")."""
    schedule, _, optimizer = arm.partition("-")
    if schedule not in SPECS or not optimizer:
        raise ValueError(f"arm {arm!r} is not 'schedule-optimizer' with a schedule in {list(SPECS)}.")
    return schedule, optimizer


def baseline_config(name: str, baseline_lr: float = 3e-4) -> dict[str, Any]:
    """A baseline recipe's trial config (`config.BASELINES`): what people train with today, no search.

    - "default:adam": torch's Adam at a constant `baseline_lr` (3e-4), arm "constant-adam" as before;
    - "default:adamw-cosine": torch's AdamW at lr 1e-3, weight_decay 0.01, linear warm-up over 5% of the
      steps, then cosine to 0 (our decay is per step at the peak LR: 1e-3 x 0.01 is torch's 0.01, `optim.py`);
    - "default:schedule_free": `schedulefree`'s AdamWScheduleFree at its default lr 0.0025, 5% warm-up, no
      decay.

    Example:
        >>> baseline_config("default:adamw-cosine")["max_lr"]
        0.001
    """
    if name == "default:adam":
        recipe = {"arm": BASELINE_ARM, "schedule": "constant", "optimizer": "adam", "lr": baseline_lr}
        return {**recipe, "weight_decay": 0.0}
    if name == "default:adamw-cosine":
        recipe = {"schedule": "cosine", "optimizer": "adamw", "max_lr": 1e-3, "weight_decay": 1e-3 * 0.01}
        return {"arm": name, **recipe, "warmup_pct": 0.05, "eta_min": 0.0}
    if name == "default:schedule_free":
        recipe = {"schedule": "schedule_free", "optimizer": "adamw", "max_lr": 0.0025, "weight_decay": 0.0}
        return {"arm": name, **recipe, "warmup_pct": 0.05}
    raise ValueError(f"unknown baseline {name!r}: expected one of {list(BASELINES)}.")


def range_family(arm: str) -> str:
    """The optimizer family whose range test seeds an arm: its own ("one_cycle-sgdw" -> "sgdw"), or for a
    schedule-free optimizer the scheduled one it replaces ("schedule_free-sgd" -> "sgdw")."""
    schedule, optimizer = split_arm(arm)
    return SPECS[schedule].range_family(optimizer)


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The schedule values of a trial config (searched and constant), by the names of its schedule."""
    spec = schedule_spec(config["schedule"])
    return {k: config[k] for k in (*spec.searched, *spec.constants) if k in config}


def build_schedule(config: dict[str, Any], epochs: float, spe: int) -> ScheduleConfig:
    """The schedule of a trial config over `epochs` (possibly a compressed budget) of `spe` steps each.

    Cycle lengths are stored in epochs of the full budget and scaled by `epochs / config["epochs"]`, so a
    budget ladder compresses the whole schedule, not just its end.
    """
    scale = epochs / config.get("epochs", epochs)
    total = max(1, round(epochs * spe))
    return schedule_spec(config["schedule"]).build(config, total, scale, spe)


def optimizer_and_scheduler(
    config: dict[str, Any], params: Any, epochs: float, steps_per_epoch: int, momentum: float = 0.9
) -> tuple[torch.optim.Optimizer, ScheduleLR]:
    """The optimizer and the per-step LR scheduler of a trial config, on your model's parameters.

    What every trial of a study trains with: `build_schedule` over `epochs`, the optimizer at the schedule's
    first LR, its decay scaled by the schedule (AdamW as torch's fused kernel with `weight_decay / peak_lr`).
    Call `scheduler.step()` after every `optimizer.step()`. A schedule-free arm gets `schedulefree`'s
    optimizer (`schedule_free.build_schedule_free`) and a scheduler that holds its LR: call
    `optimizer.train()` before training and `optimizer.eval()` before evaluating (`schedule_free.py`).

    Example:
        >>> opt, sched = optimizer_and_scheduler(config, model.parameters(), 20, 70)  # doctest: +SKIP
    """
    schedule = build_schedule(config, epochs, steps_per_epoch)
    total = max(1, round(epochs * steps_per_epoch))
    return schedule_spec(config["schedule"]).optimizer(config, params, schedule, total, momentum)
