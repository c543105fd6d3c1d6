"""Learning-rate schedules and optimizers: one spec per schedule family (`spec.ScheduleSpec`, registered in
`families.py`), one per optimizer family (`optimizers.OptimizerSpec`), each schedule a pure `lr(step)`,
SGDW/AdamW with decoupled weight decay, schedule-free, Prodigy, and the arms (schedule x optimizer) built
from them. Imports nothing of ours but `config`."""

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
from .families import (
    ARMS,
    BOUNDABLE,
    SCHEDULES,
    SPECS,
    STEP_FIELDS,
    judged_at,
    optimizer_spec,
    schedule_spec,
)
from .linear import LinearConfig
from .optim import SGDW, AdamW, normalized_weight_decay
from .optimizers import OPTIMIZERS, SCHEDULE_FREE_OPTIMIZERS, OptimizerArgs, OptimizerSpec, build_optimizer
from .schedule_free import SCHEDULE_FREE_SGD_SCALE, is_schedule_free
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
from .spec import Param, RangeSeed, ScheduleSpec, clip
from .warmup_decay import CosineConfig, WSDConfig

__all__ = [
    "ARMS",
    "BOUNDABLE",
    "HYPERPARAMETERS",
    "OPTIMIZERS",
    "SCHEDULES",
    "SCHEDULE_FREE_OPTIMIZERS",
    "SCHEDULE_FREE_SGD_SCALE",
    "SGDW",
    "SPECS",
    "STEP_FIELDS",
    "AdamW",
    "ConstantConfig",
    "CosineConfig",
    "CyclicalConfig",
    "LinearConfig",
    "OneCycleConfig",
    "OptimizerArgs",
    "OptimizerSpec",
    "Param",
    "RangeSeed",
    "SGDRConfig",
    "ScheduleConfig",
    "ScheduleLR",
    "ScheduleSpec",
    "WSDConfig",
    "at_lr_minimum",
    "baseline_arm",
    "baseline_config",
    "baseline_skipped",
    "build_optimizer",
    "build_schedule",
    "build_scheduler",
    "clip",
    "is_schedule_free",
    "judged_at",
    "lr_at",
    "momentum_at",
    "normalized_weight_decay",
    "one_cycle",
    "optimizer_and_scheduler",
    "optimizer_spec",
    "range_family",
    "schedule_spec",
    "split_arm",
    "to_steps",
]
