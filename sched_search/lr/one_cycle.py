"""The one-cycle policy (Smith & Topin 2017, "Super-Convergence"): the spec of the `one_cycle` arms. The
schedule itself is `schedules.OneCycleConfig` (`schedules.one_cycle` builds it from a preset)."""

from __future__ import annotations

from typing import Any, ClassVar

from .schedules import ScheduleConfig, one_cycle
from .spec import Param, RangeSeed, ScheduleSpec, clip


class OneCycle(ScheduleSpec):
    """pct_start (warm-up fraction; the cycle is 2 pct_start, the rest is annihilation) in [0.25, 0.45];
    div_factor in [5, 25]; annihilation to max_lr / div_factor / 1e4 (the paper preset)."""

    name = "one_cycle"
    searched = ("max_lr", "weight_decay", "pct_start", "div_factor")
    constants = ("final_div_factor",)
    bounds: ClassVar[dict[str, str]] = {"div_factor": "log", "pct_start": "fraction"}
    step_fields = ("total_steps",)
    peak_at_min_loss = True  # a cycle spends little time at its peak

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        src = f"range test ({seed.optimizer})"
        params = [
            Param(
                "pct_start",
                0.25,
                0.45,
                False,
                first=0.45,
                source="Smith & Topin 2017: cycle = 90% of training",
            ),
            Param(
                "div_factor",
                5.0,
                25.0,
                True,
                first=clip(lr_first / seed.min_lr, 5, 25),
                source=f"{src}: first = max_lr / min_lr; range from the paper (10) to fastai/torch (25)",
            ),
        ]
        sources = {
            "final_div_factor": "Smith & Topin 2017: annihilate to max_lr / div_factor / 1e4",
            "preset": "paper (three-phase, linear, momentum 0.95-0.85)",
        }
        return params, {"final_div_factor": 1e4}, sources

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        return one_cycle(
            config["max_lr"],
            total,
            "paper",
            pct_start=config["pct_start"],
            div_factor=config["div_factor"],
            final_div_factor=config.get("final_div_factor", 1e4),
        )

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        momentum = "momentum cycled 0.95-0.85 (dashed)"
        return {"one-cycle (paper preset)": (one_cycle(0.1, total_steps, "paper"), momentum)}


SPEC = OneCycle()
