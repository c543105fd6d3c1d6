"""sched_search: Leslie Smith's workflow (range test -> search spaces -> schedule x optimizer trials -> report).

The public API; heavy parts (Ray, matplotlib) are imported only where used.
"""

from __future__ import annotations

from .curve import CurveConfig
from .optim import SGDW, AdamW, normalized_weight_decay
from .rangetest import RangeTestConfig, range_test, read_curve, run_range_test, weight_decay_sweep
from .schedules import (
    ConstantConfig,
    CyclicalConfig,
    OneCycleConfig,
    ScheduleLR,
    SGDRConfig,
    build_scheduler,
    lr_at,
    momentum_at,
    one_cycle,
)

__version__ = "0.2.0"

__all__ = [
    "SGDW",
    "AdamW",
    "ConstantConfig",
    "CurveConfig",
    "CyclicalConfig",
    "OneCycleConfig",
    "RangeTestConfig",
    "SGDRConfig",
    "ScheduleLR",
    "build_scheduler",
    "lr_at",
    "momentum_at",
    "normalized_weight_decay",
    "one_cycle",
    "range_test",
    "read_curve",
    "run_range_test",
    "weight_decay_sweep",
]
