"""A constant LR: the seed's Adam 3e-4 baseline (arm "constant-adam"), never searched."""

from __future__ import annotations

from typing import Any

from .schedules import ConstantConfig, ScheduleConfig
from .spec import ScheduleSpec


class Constant(ScheduleSpec):
    name = "constant"
    optimizers = ()  # no searched arm: `arms.baseline_config` builds its one config
    searched = ()
    constants = ("lr", "weight_decay")

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        return ConstantConfig(lr=config["lr"])

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        return {"constant (Adam 3e-4)": (ConstantConfig(lr=3e-4), "Adam's beta1 0.9, flat")}


SPEC = Constant()
