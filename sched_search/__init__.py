"""sched_search: Leslie Smith's workflow (range test -> search spaces -> schedule x optimizer trials ->
report).

The public API; heavy parts (Ray, matplotlib) are imported only where used.
"""

from __future__ import annotations

from .lr import (
    SGDW,
    AdamW,
    ConstantConfig,
    CosineConfig,
    CyclicalConfig,
    OneCycleConfig,
    ScheduleLR,
    SGDRConfig,
    WSDConfig,
    at_lr_minimum,
    build_schedule,
    build_scheduler,
    judged_at,
    lr_at,
    momentum_at,
    normalized_weight_decay,
    one_cycle,
    optimizer_and_scheduler,
)
from .rangetest import (
    CurveConfig,
    RangeTestConfig,
    range_test,
    read_curve,
    run_range_test,
    weight_decay_sweep,
)
from .training import LoaderData, TensorData, build_objective, lazy_attributes

__version__ = "0.5.0"  # 0.5: sub-packages by subject (lr, training, rangetest, results, study)


# Imported on first use: these pull in Ray, Optuna or pandas, which `import sched_search` should not pay for.
_LAZY = {
    "run_study": "study.driver",
    "load_run": "results.run",
    "search_space": "study.space",
    "cycle_asha": "study.routing",
}
__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "SGDW",
    "AdamW",
    "ConstantConfig",
    "CosineConfig",
    "CurveConfig",
    "CyclicalConfig",
    "LoaderData",
    "OneCycleConfig",
    "RangeTestConfig",
    "SGDRConfig",
    "ScheduleLR",
    "TensorData",
    "WSDConfig",
    "at_lr_minimum",
    "build_objective",
    "build_schedule",
    "build_scheduler",
    "cycle_asha",
    "judged_at",
    "load_run",
    "lr_at",
    "momentum_at",
    "normalized_weight_decay",
    "one_cycle",
    "optimizer_and_scheduler",
    "range_test",
    "read_curve",
    "run_range_test",
    "run_study",
    "search_space",
    "weight_decay_sweep",
]
