"""Linear warm-up then cosine decay, the schedule of current practice (nanoGPT's `get_lr`): the spec of the
`cosine` arms. The schedule itself is `warmup_decay.CosineConfig`."""

from __future__ import annotations

from typing import Any, ClassVar

from .schedules import ScheduleConfig, decayed_to_half
from .spec import Param, RangeSeed, ScheduleSpec, pct_steps, warmup_param, warmup_then_decay
from .warmup_decay import CosineConfig


class Cosine(ScheduleSpec):
    """warmup_pct in [0, 0.2] (first 5%); eta_min the curve's min_lr / 10, as SGDR's."""

    name = "cosine"
    searched = ("max_lr", "weight_decay", "warmup_pct")
    constants = ("eta_min",)
    bounds: ClassVar[dict[str, str]] = {"warmup_pct": "share"}
    step_fields = ("total_steps", "warmup_steps")
    # The first max_lr at the min-loss LR, not the suggestion (benchmarks/bench_first_point.py, 2026-12-05,
    # the first point's final val metric over 3 seeds): Friedman MAE 0.269 -> 0.226 (AdamW), 0.364 -> 0.309
    # (SGDW); MNIST-1D 91.7 -> 95.5%, 93.1 -> 95.4%; digits CNN 98.9 -> 99.3%, 98.8 -> 99.0% (one image in
    # 269: noise).
    peak_at_min_loss = True

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        why = f"range test ({seed.optimizer}): suggested min_lr {seed.min_lr:.3g} / 10, as SGDR's"
        params = [warmup_param("first 5%, the common recipe (e.g. AdamW 1e-3 + 5% warm-up + cosine)")]
        return params, {"eta_min": seed.min_lr / 10}, {"eta_min": why}

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        return CosineConfig(**warmup_then_decay(config, total))

    def judged_at(self, schedule: ScheduleConfig, step: int) -> bool:
        """Once its LR has come down to half its peak (`schedules.decayed_to_half`), as one-cycle.

        Rank correlation of a run's val metric with its final one over the first point's max_lr and
        weight-decay grids (benchmarks/bench_rungs.py, 2026-12-05): Friedman, at ASHA's first rung (epoch 2
        of 8, warm-up just over) rho -0.13 (AdamW) and +0.19 (SGDW), at half its peak (epoch 5) +0.58 and
        +0.48, a rung later +0.85 and +0.99; MNIST-1D, epoch 4 of 20 +0.68 and +0.79, at half its peak
        (epoch 11) +0.76 and +0.90; digits CNN, epoch 4 of 30 -0.55 and -0.10, at half its peak (epoch 16)
        +0.55 and +0.63.
        """
        return decayed_to_half(schedule, step, schedule.warmup_steps)

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        cfg = CosineConfig(max_lr=0.1, total_steps=total_steps, warmup_steps=pct_steps(0.05, total_steps))
        return {"warm-up 5% + cosine": (cfg, "momentum flat at 0.9")}


SPEC = Cosine()
