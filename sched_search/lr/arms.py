"""Arms: a schedule x optimizer pair, the values each schedule takes, and how they become a schedule config.

One place for the names that the search space (`space.py`), the trial (`train.py`), the tables and the
leaderboard share: a trial config is a flat dict at the Ray/Optuna boundary, and these are its schedule keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..config import BASELINE_ARM, BASELINES, RANGE_TEST_BASELINES
from .families import HYPERPARAMETERS, SPECS, schedule_spec
from .schedules import ScheduleConfig, ScheduleLR

__all__ = [
    "HYPERPARAMETERS",
    "baseline_arm",
    "baseline_config",
    "baseline_skipped",
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


def baseline_config(name: str, baseline_lr: float = 3e-4, first_point: dict | None = None) -> dict[str, Any]:
    """A baseline recipe's trial config (`config.BASELINES`): what people train with today, in one training.

    - "default:adam": torch's Adam at a constant `baseline_lr` (3e-4), arm "constant-adam" as before;
    - "default:adamw-cosine": torch's AdamW at lr 1e-3, weight_decay 0.01, linear warm-up over 5% of the
      steps, then cosine to 0 (our decay is per step at the peak LR: 1e-3 x 0.01 is torch's 0.01, `optim.py`);
    - "default:schedule_free": `schedulefree`'s AdamWScheduleFree at its default lr 0.0025, 5% warm-up, no
      decay;
    - "default:prodigy": `prodigyopt`'s Prodigy at lr 1, no weight decay, `safeguard_warmup=True`, 5% linear
      warm-up, then cosine to 0 over the rest of the run (`prodigy.py`; its README's recipe);
    - "default:lr_find-one_cycle" (`config.RANGE_TEST_BASELINES`): fastai's `lr_find` + `fit_one_cycle`, the
      one_cycle-adamw arm at its first point, read off the study's AdamW range test, no search; that point
      (with the space's constants) is `first_point`, which the study builds (`study.search.baseline_runs`).

    Example:
        >>> baseline_config("default:adamw-cosine")["max_lr"]
        0.001
    """
    if name in RANGE_TEST_BASELINES:
        if first_point is None:
            raise ValueError(
                f"baseline {name!r} trains {RANGE_TEST_BASELINES[name]}'s first point from the range test: "
                "pass it as first_point."
            )
        return {**first_point, "arm": name}
    if name == "default:adam":
        recipe = {"arm": BASELINE_ARM, "schedule": "constant", "optimizer": "adam", "lr": baseline_lr}
        return {**recipe, "weight_decay": 0.0}
    if name == "default:adamw-cosine":
        recipe = {"schedule": "cosine", "optimizer": "adamw", "max_lr": 1e-3, "weight_decay": 1e-3 * 0.01}
        return {"arm": name, **recipe, "warmup_pct": 0.05, "eta_min": 0.0}
    if name == "default:schedule_free":
        # schedulefree's README (github.com/facebookresearch/schedule_free, "Caveats"): "Using learning rate
        # warmup is recommended" (warmup_steps; it gives no length: ours is the other recipes' 5%), and for
        # AdamW an LR "1x-10x larger than with schedule-based approaches": its default 0.0025, the one of its
        # MNIST example, is 2.5x default:adamw-cosine's 1e-3. Weight decay: the package's default, 0.
        recipe = {"schedule": "schedule_free", "optimizer": "adamw", "max_lr": 0.0025, "weight_decay": 0.0}
        return {"arm": name, **recipe, "warmup_pct": 0.05}
    if name == "default:prodigy":
        # prodigyopt's README: lr 1 (the schedule's peak multiplies the estimated step size), cosine over the
        # whole run, safeguard_warmup with a warm-up (prodigy.build_prodigy sets it). Measured without the
        # warm-up one seed of three stayed at chance (docs/optimizers.md).
        recipe = {"schedule": "cosine", "optimizer": "prodigy", "max_lr": 1.0, "weight_decay": 0.0}
        return {"arm": name, **recipe, "warmup_pct": 0.05, "eta_min": 0.0}
    raise ValueError(f"unknown baseline {name!r}: expected one of {list(BASELINES)}.")


def baseline_arm(name: str) -> str:
    """The arm name a baseline's runs carry in the tables: its own, but "constant-adam" for "default:adam".

    Example:
        >>> baseline_arm("default:adam")
        'constant-adam'
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}: expected one of {list(BASELINES)}.")
    return BASELINE_ARM if name == "default:adam" else name


def baseline_skipped(name: str, families: Iterable[str]) -> str | None:
    """Why a baseline cannot run in a study whose range tests cover the optimizer `families`; None: it can.

    Only the range test's baselines (`config.RANGE_TEST_BASELINES`) need one: a study of `space = "broad"`
    runs none, and one without an arm of that family runs none of that family.

    Example:
        >>> baseline_skipped("default:lr_find-one_cycle", ["sgdw"])  # doctest: +ELLIPSIS
        'default:lr_find-one_cycle needs an adamw range test, ...'
    """
    arm = RANGE_TEST_BASELINES.get(name)
    if arm is None or range_family(arm) in set(families):
        return None
    family = range_family(arm)
    return (
        f"{name} needs an {family} range test, which this study does not run (it runs one for its "
        f'{family} arms with space = "seeded"): skipped'
    )


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
