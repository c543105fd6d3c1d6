"""Linear warm-up then cosine decay, the schedule of current practice (nanoGPT's `get_lr`): the spec of the
`cosine` arms. The schedule itself is `warmup_decay.CosineConfig`."""

from __future__ import annotations

from typing import Any, ClassVar

from .schedules import ScheduleConfig
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

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        cfg = CosineConfig(max_lr=0.1, total_steps=total_steps, warmup_steps=pct_steps(0.05, total_steps))
        return {"warm-up 5% + cosine": (cfg, "momentum flat at 0.9")}


SPEC = Cosine()
