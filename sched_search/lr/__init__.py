"""Learning-rate schedules and optimizers: one pure `lr(step)` per schedule, SGDW/AdamW with decoupled
weight decay, schedule-free, Prodigy, and the arms (schedule x optimizer) built from them. Imports nothing of
ours but `config`."""

from __future__ import annotations

from .arms import (
    HYPERPARAMETERS,
    baseline_arm,
    baseline_config,
    baseline_skipped,
    build_schedule,
    optimizer_and_scheduler,
    range_family,
    split_arm,
)
from .optim import SGDW, AdamW, build_optimizer, normalized_weight_decay
from .schedule_free import is_schedule_free
from .schedules import (
    ConstantConfig,
    CyclicalConfig,
    OneCycleConfig,
    ScheduleConfig,
    ScheduleLR,
    SGDRConfig,
    at_lr_minimum,
    build_scheduler,
    lr_at,
    momentum_at,
    one_cycle,
    to_steps,
)
from .warmup_decay import CosineConfig, WSDConfig

__all__ = [
    "HYPERPARAMETERS",
    "SGDW",
    "AdamW",
    "ConstantConfig",
    "CosineConfig",
    "CyclicalConfig",
    "OneCycleConfig",
    "SGDRConfig",
    "ScheduleConfig",
    "ScheduleLR",
    "WSDConfig",
    "at_lr_minimum",
    "baseline_arm",
    "baseline_config",
    "baseline_skipped",
    "build_optimizer",
    "build_schedule",
    "build_scheduler",
    "is_schedule_free",
    "lr_at",
    "momentum_at",
    "normalized_weight_decay",
    "one_cycle",
    "optimizer_and_scheduler",
    "range_family",
    "split_arm",
    "to_steps",
]
