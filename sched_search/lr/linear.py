"""Linear warm-up, then linear decay to zero (D2Z): `LinearConfig` and the spec of the `linear` arms.

Bergsma et al. 2025, "Straight to Zero: Why Linearly Decaying the Learning Rate to Zero Works Best for LLMs":
at compute-optimal and longer runs, linear decay to zero matched or beat cosine (to 10% of the peak) at the
same peak LR; Defazio et al. 2023 ("When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement")
found linear decay >= cosine on 10 problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cosine import Cosine
from .schedules import ScheduleConfig
from .spec import Param, RangeSeed, pct_steps, warmup_param, warmup_then_decay
from .warmup_decay import check_step, check_warmup_then_decay, warmup_lr


@dataclass(frozen=True)
class LinearConfig:
    """Linear warm-up, then a straight line from max_lr down to `eta_min` (0: D2Z).

    Batch t < warmup_steps gets `warmup_decay.warmup_lr` (as `CosineConfig`); from warmup_steps on the LR is
    eta_min + (max_lr - eta_min) * (1 - (t - warmup_steps) / (total_steps - warmup_steps)): max_lr at
    warmup_steps, eta_min at step total_steps, one past the last batch, so the last batch still learns;
    later steps hold eta_min.
    """

    max_lr: float  # peak LR, reached at step warmup_steps, > 0
    total_steps: int  # schedule length in steps, > warmup_steps
    warmup_steps: int = 0  # linear warm-up length in steps, >= 0
    eta_min: float = 0.0  # floor LR, in [0, max_lr]; 0 is D2Z

    def __post_init__(self) -> None:
        check_warmup_then_decay(self)

    def lr_at(self, step: int) -> float:
        """The LR for batch `step` (0 = first batch); past total_steps it holds eta_min.

        Example:
            >>> LinearConfig(max_lr=0.1, total_steps=100, warmup_steps=10).lr_at(55)
            0.05
        """
        check_step(step)
        if step < self.warmup_steps:
            return warmup_lr(self.max_lr, self.warmup_steps, step)
        left = 1 - (min(step, self.total_steps) - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.eta_min + (self.max_lr - self.eta_min) * left


class Linear(Cosine):
    """Warm-up + cosine's values (warmup_pct in [0, 0.2], first 5%; the first max_lr the range test's
    min-loss LR), then a straight line to 0 instead of the cosine."""

    # Cosine's early-stopping rule too (`Cosine.judged_at`: once the LR is down to half its peak), measured on
    # its own (benchmarks/bench_rungs.py, 2026-12-05, rank correlation with the final val metric): Friedman at
    # ASHA's first rung (epoch 2 of 8) rho -0.36 (AdamW), -0.09 (SGDW), from half its peak (epoch 5) +0.46,
    # +0.43, a rung on +0.69, +0.89; MNIST-1D at epoch 4 of 20 +0.47, +0.65, at half its peak (epoch 11)
    # +0.64, +0.63; digits CNN at epoch 4 of 30 -0.20, -0.10, at half its peak (epoch 16) +0.39, +0.24.
    # Cosine's first max_lr, measured on its own (benchmarks/bench_first_point.py, 2026-12-05, final val
    # metric, suggestion -> min-loss LR): Friedman MAE 0.265 -> 0.223 (AdamW), 0.363 -> 0.287 (SGDW);
    # MNIST-1D 91.9 -> 95.4%, 92.2 -> 95.8% (2 seeds); digits CNN 98.9 -> 99.1%, 98.8 -> 99.0%.
    peak_at_min_loss = True

    name = "linear"

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        why = "Bergsma et al. 2025: linear decay to zero (D2Z)"
        return [warmup_param("first 5%, as warm-up + cosine")], {"eta_min": 0.0}, {"eta_min": why}

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        return LinearConfig(**warmup_then_decay(config, total))

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        cfg = LinearConfig(max_lr=0.1, total_steps=total_steps, warmup_steps=pct_steps(0.05, total_steps))
        return {"warm-up 5% + linear to 0 (D2Z)": (cfg, "momentum flat at 0.9")}


SPEC = Linear()

__all__ = ["SPEC", "Linear", "LinearConfig"]
