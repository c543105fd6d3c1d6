"""Arms: a schedule x optimizer pair, the values each schedule takes, and how they become a schedule config.

One place for the names that the search space (`space.py`), the trial (`train.py`), the tables and the
leaderboard share: a trial config is a flat dict at the Ray/Optuna boundary, and these are its schedule keys.
"""

from __future__ import annotations

from typing import Any

import torch

from .optim import build_optimizer
from .schedules import (
    ConstantConfig,
    CyclicalConfig,
    ScheduleConfig,
    ScheduleLR,
    SGDRConfig,
    build_scheduler,
    lr_at,
    one_cycle,
    peak_lr,
    to_steps,
)

# Per schedule: the values a trial config carries. "searched" come from Optuna (space.build_space builds their
# distributions); "constants" are fixed per arm by the space; the decay is every arm's and searched
# everywhere.
SCHEDULE_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "clr": {
        "searched": ("max_lr", "weight_decay", "base_div", "step_size_epochs", "mode"),
        "constants": ("gamma",),
    },
    "sgdr": {"searched": ("max_lr", "weight_decay", "t_0_epochs", "t_mult"), "constants": ("eta_min",)},
    "one_cycle": {
        "searched": ("max_lr", "weight_decay", "pct_start", "div_factor"),
        "constants": ("final_div_factor",),
    },
    "constant": {"searched": (), "constants": ("lr", "weight_decay")},  # the Adam baseline
}
# Every hyperparameter column of the tables, in a stable order (NaN where an arm does not have it).
HYPERPARAMETERS = tuple(
    dict.fromkeys(n for v in SCHEDULE_VALUES.values() for n in (*v["searched"], *v["constants"]))
)


def split_arm(arm: str) -> tuple[str, str]:
    """ "one_cycle-sgdw" -> ("one_cycle", "sgdw")."""
    schedule, _, optimizer = arm.partition("-")
    if schedule not in SCHEDULE_VALUES or not optimizer:
        raise ValueError(
            f"arm {arm!r} is not 'schedule-optimizer' with a schedule in {list(SCHEDULE_VALUES)}."
        )
    return schedule, optimizer


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The schedule values of a trial config (searched and constant), by the names of its schedule."""
    names = SCHEDULE_VALUES[config["schedule"]]
    return {k: config[k] for k in (*names["searched"], *names["constants"]) if k in config}


def build_schedule(config: dict[str, Any], epochs: float, spe: int) -> ScheduleConfig:
    """The schedule of a trial config over `epochs` (possibly a compressed budget) of `spe` steps each.

    Cycle lengths are stored in epochs of the full budget and scaled by `epochs / config["epochs"]`, so a
    budget ladder compresses the whole schedule, not just its end.
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
    raise ValueError(f"unknown schedule {schedule!r}: expected one of {list(SCHEDULE_VALUES)}.")


def optimizer_and_scheduler(
    config: dict[str, Any], params: Any, epochs: float, steps_per_epoch: int, momentum: float = 0.9
) -> tuple[torch.optim.Optimizer, ScheduleLR]:
    """The optimizer and the per-step LR scheduler of a trial config, on your model's parameters.

    What every trial of a study trains with: `build_schedule` over `epochs`, the optimizer at the schedule's
    first LR, its decay scaled by the schedule (AdamW as torch's fused kernel with `weight_decay / peak_lr`).
    Call `scheduler.step()` after every `optimizer.step()`.

    Example:
        >>> opt, sched = optimizer_and_scheduler(config, model.parameters(), 20, 70)  # doctest: +SKIP
    """
    schedule = build_schedule(config, epochs, steps_per_epoch)
    optimizer = build_optimizer(
        config["optimizer"],
        params,
        lr_at(schedule, 0),
        config.get("weight_decay", 0.0),
        momentum=momentum,
        peak_lr=peak_lr(schedule),
    )
    return optimizer, build_scheduler(optimizer, schedule)
