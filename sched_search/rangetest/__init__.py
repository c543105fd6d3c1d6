"""Leslie Smith's LR range test: the sweep (`sweep`), what it records (`result`), the curve reading (`curve`,
pure) and its figure (`plots`)."""

from __future__ import annotations

from .curve import CurveConfig, read_curve
from .plots import pyplot
from .result import RangeTestConfig, RangeTestResult
from .sweep import choose_weight_decay, range_test, run_range_test, sweep_steps, weight_decay_sweep

__all__ = [
    "CurveConfig",
    "RangeTestConfig",
    "RangeTestResult",
    "choose_weight_decay",
    "pyplot",
    "range_test",
    "read_curve",
    "run_range_test",
    "sweep_steps",
    "weight_decay_sweep",
]
