"""sched_search: Leslie Smith's workflow (range test -> search spaces -> schedule x optimizer trials ->
report).

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

__version__ = "0.3.0"  # 0.3: final runs record val_correct; run folders get verdict.json


def __getattr__(name: str):
    """`run_study` and `load_run` on first use: they import Ray, Optuna and pandas, which `import
    sched_search` should not pay for."""
    if name == "run_study":
        from .study import run_study

        return run_study
    if name == "load_run":
        from .results import load_run

        return load_run
    raise AttributeError(f"module 'sched_search' has no attribute {name!r}")


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
    "load_run",
    "lr_at",
    "momentum_at",
    "normalized_weight_decay",
    "one_cycle",
    "range_test",
    "read_curve",
    "run_range_test",
    "run_study",
    "weight_decay_sweep",
]
