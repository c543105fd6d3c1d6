"""What a range test records: its settings, the curve of one sweep, a weight-decay sweep of several, and their
tables, JSON summaries and plots. `rangetest.py` runs the sweeps; `curve.py` reads the curves.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .curve import CurveConfig, CurveReading, smoothed_curve


@dataclass(frozen=True)
class RangeTestConfig:
    """How the sweep runs and how its curve is read."""

    start_lr: float = 1e-7  # first LR of the sweep
    end_lr: float = 10.0  # last LR, reached at num_steps unless the loss diverges first
    num_steps: int = 300  # optimizer steps in the sweep
    mode: str = "exp"  # "exp" (geometric) or "linear" LR increase per step
    ema_beta: float = 0.9  # bias-corrected EMA of the loss, for the stop rule only
    diverge_factor: float = 4.0  # stop once the smoothed loss exceeds this multiple of its best
    accumulation_steps: int = 1  # micro-batches per optimizer step
    val_every: int = 0  # >0: validation loss every this many steps (needs val_data)
    bandwidth: float = 0.3  # reading (CurveConfig): decades of LR, Gaussian smoothing width
    max_lr_divisor: float = 3.0  # reading: suggested max_lr = min-loss LR / this (fastai uses 10)
    min_drop: float = 0.2  # reading: the loss must fall by this fraction of its start for a descent region
    seed: int = 0  # batch order

    def __post_init__(self) -> None:
        if not 0 < self.start_lr < self.end_lr:
            raise ValueError(
                f"need 0 < start_lr < end_lr, but got start_lr={self.start_lr}, end_lr={self.end_lr}."
            )
        if self.num_steps < 10:
            raise ValueError(f"num_steps must be >= 10 to read a curve, but got {self.num_steps}.")
        if self.mode not in ("exp", "linear"):
            raise ValueError(f"mode must be 'exp' or 'linear', but got {self.mode!r}.")
        if self.diverge_factor <= 1:
            raise ValueError(f"diverge_factor must be > 1, but got {self.diverge_factor}.")
        if self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, but got {self.accumulation_steps}.")
        CurveConfig(self.bandwidth, self.max_lr_divisor, self.min_drop)  # checks the reading's settings

    @property
    def curve_config(self) -> CurveConfig:
        """The settings `read_curve` reads this sweep's curve with."""
        return CurveConfig(self.bandwidth, self.max_lr_divisor, self.min_drop)

    def lr_at(self, step: int) -> float:
        t = step / (self.num_steps - 1)
        if self.mode == "exp":
            return self.start_lr * (self.end_lr / self.start_lr) ** t
        return self.start_lr + (self.end_lr - self.start_lr) * t


@dataclass(frozen=True)
class RangeTestResult:
    """One sweep: per-step record plus its reading."""

    config: RangeTestConfig
    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # raw training loss per step (nan where not finite)
    smoothed: tuple[float, ...]  # the stop rule's bias-corrected EMA (of losses capped at 10x it)
    val_losses: tuple[float | None, ...]
    nan_steps: tuple[tuple[int, float, str], ...]  # (step, lr, "nan" | "inf") for every non-finite loss
    stopped_early: bool
    weight_decay: float
    reading: CurveReading
    steps_per_epoch: float | None = (
        None  # optimizer steps per pass over the data (None for an unsized iterable)
    )
    label_entropy: float | None = None  # nats; cross-entropy on class labels only (see read_curve)

    @property
    def epochs(self) -> float | None:
        """Passes over the data the sweep made (None when the data's length is unknown)."""
        return len(self.lrs) / self.steps_per_epoch if self.steps_per_epoch else None

    @property
    def verdict(self) -> str:
        return self.reading.verdict

    @cached_property
    def curve(self) -> np.ndarray:
        """The loss smoothed in log(lr) as `read_curve` reads it; computed once for the plots, tables and
        sweep."""
        return smoothed_curve(self.lrs, self.losses, self.config.curve_config)

    def to_frame(self):
        """One row per step: step, lr, loss, smoothed_loss, curve (the reading's smoothing), val_loss,
        finite."""
        import pandas as pd

        return pd.DataFrame(
            {
                "step": range(len(self.lrs)),
                "lr": self.lrs,
                "loss": self.losses,
                "smoothed_loss": self.smoothed,
                "curve": self.curve,
                "val_loss": [np.nan if v is None else v for v in self.val_losses],
                "finite": [math.isfinite(v) for v in self.losses],
                "weight_decay": self.weight_decay,
            }
        )

    def summary(self) -> dict[str, Any]:
        r = self.reading
        return {
            "verdict": r.verdict,
            "reasons": list(r.reasons),
            "notes": list(r.notes),
            "suggested_min_lr": r.suggested_min_lr,
            "suggested_max_lr": r.suggested_max_lr,
            "steepest_lr": r.steepest_lr,
            "heuristics": {
                "steepest": r.steepest_lr,
                "valley": r.valley_lr,
                "min_loss_div10": r.min_loss_lr_div10,
            },
            "min_loss_lr": r.min_loss_lr,
            "regions": asdict(r.regions),
            "nan_steps": [{"step": s, "lr": lr, "kind": k} for s, lr, k in self.nan_steps],
            "stopped_early": self.stopped_early,
            "sweep": {
                "num_steps": self.config.num_steps,
                "steps": len(self.lrs),
                "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs,
            },
            "label_entropy": self.label_entropy,
            "weight_decay_used": self.weight_decay,
            "config": asdict(self.config),
        }

    def to_json(self, path: str | Path | None = None, extra: dict[str, Any] | None = None) -> str:
        """`summary()` and any `extra` keys (e.g. the data it ran on) as JSON text, also written to `path`."""
        return _summary_json({**self.summary(), **(extra or {})}, path)

    def plot(self, path: str | Path) -> Path:
        from .plots import plot_range_test

        return plot_range_test([self], path)


@dataclass(frozen=True)
class WeightDecaySweep:
    """The range test repeated per weight decay (Smith 2018, Sec. 4.3); `best` is the chosen decay's
    result."""

    results: tuple[RangeTestResult, ...]
    chosen: float
    search_range: tuple[float, float]  # log-uniform bounds for the later search
    reason: str

    @property
    def best(self) -> RangeTestResult:
        return next(r for r in self.results if r.weight_decay == self.chosen)

    def to_frame(self):
        import pandas as pd

        return pd.concat([r.to_frame() for r in self.results], ignore_index=True)

    def summary(self) -> dict[str, Any]:
        out = self.best.summary()
        out["weight_decay"] = {
            "chosen": self.chosen,
            "range": list(self.search_range),
            "reason": self.reason,
            "per_decay": [
                {
                    "weight_decay": r.weight_decay,
                    "min_loss": nanmin(r.curve),
                    "min_loss_lr": r.reading.min_loss_lr,
                    "suggested_max_lr": r.reading.suggested_max_lr,
                    "verdict": r.verdict,
                }
                for r in self.results
            ],
        }
        return out

    def to_json(self, path: str | Path | None = None, extra: dict[str, Any] | None = None) -> str:
        """`summary()` and any `extra` keys (e.g. the data it ran on) as JSON text, also written to `path`."""
        return _summary_json({**self.summary(), **(extra or {})}, path)

    def plot(self, path: str | Path) -> Path:
        from .plots import plot_range_test

        return plot_range_test(list(self.results), path, highlight=self.chosen)


def nanmin(values: Any) -> float:
    """The smallest finite value (inf when there is none)."""
    arr = np.asarray(values, dtype=float)
    return float(np.nanmin(arr)) if np.isfinite(arr).any() else math.inf


def _summary_json(summary: dict[str, Any], path: str | Path | None) -> str:
    """The summary as JSON text, also written to `path` when given."""
    text = json.dumps(summary, indent=2, default=_json_default)
    if path is not None:
        Path(path).write_text(text)
    return text


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
