"""Schedule-free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"), from the `schedulefree`
package, with our decoupled weight decay, and the train/eval switch every trainer must honour.

The optimizer steps at y (between its iterate z and their average x) and must be put in train mode before
training steps (`optimizer.train()`) and in eval mode, at x, before evaluating or saving (`optimizer.eval()`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from .optimizers import SCHEDULE_FREE_OPTIMIZERS, OptimizerArgs, OptimizerSpec
from .schedules import ConstantConfig, ScheduleConfig, ScheduleLR, build_scheduler
from .spec import Param, RangeSeed, ScheduleSpec, edge_mid, pct_steps, warmup_param

__all__ = [
    "SCHEDULE_FREE_NAMES",
    "SCHEDULE_FREE_SGD_SCALE",
    "SPEC",
    "build_schedule_free",
    "is_schedule_free",
]


SCHEDULE_FREE_NAMES = tuple(SCHEDULE_FREE_OPTIMIZERS)


def build_schedule_free(
    name: str,
    params: Iterable[Tensor],
    lr: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Schedule-Free AdamW or SGD (Defazio et al. 2024, "The Road Less Scheduled"; the `schedulefree`
    package; their specs: `optimizers.SCHEDULE_FREE_OPTIMIZERS`): no LR schedule, the optimizer's own linear
    warm-up over `warmup_steps` and its averaging.

    `weight_decay` is ours (decoupled, a per-step shrink at the peak LR, as the range test's sweep measures
    it). The package's own decay is torch's scale: it adds `wd * y` to the (normalised) gradient of the `z`
    step, so `z` shrinks by `lr_t * wd` per step, `lr_t` being the warmed-up LR. Passing `wd = weight_decay /
    lr` makes that `(lr_t / lr) * weight_decay = eta_t * lambda`: our schedule-scaled decoupled decay, with
    the warm-up as the schedule. The optimizer must be switched with `.train()` before training steps and
    `.eval()` before evaluating or saving (the trainer does, `train.py`).

    Example:
        >>> opt = build_schedule_free("adamw", model.parameters(), lr=3e-3, warmup_steps=50)  # doctest: +SKIP
        >>> opt.train()  # doctest: +SKIP
    """
    if name not in SCHEDULE_FREE_OPTIMIZERS:
        raise ValueError(f"unknown schedule-free optimizer {name!r}: expected one of {SCHEDULE_FREE_NAMES}.")
    args = OptimizerArgs(lr, weight_decay, momentum, warmup_steps=warmup_steps)
    return SCHEDULE_FREE_OPTIMIZERS[name].build(list(params), args)


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer keeps separate training and evaluation weights (`schedulefree`'s `.train()` /
    `.eval()`): evaluation and saving must then happen after `.eval()`."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


SCHEDULE_FREE_SGD_SCALE = SCHEDULE_FREE_OPTIMIZERS["sgd"].range_scale  # 10: `optimizers.SF_SGD_SPEC` says why


class ScheduleFree(ScheduleSpec):
    """No schedule: the optimizer's own linear warm-up (warmup_pct in [0, 0.2], first 5%, as the package's
    README recommends) and its averaging; max_lr is its lr, held constant. Seeded by the range test of the
    scheduled optimizer it replaces (SGDScheduleFree's z-step has no momentum buffer, which is why it is
    "sgd", seeded by the SGDW test with momentum 0.9 and SCHEDULE_FREE_SGD_SCALE)."""

    name = "schedule_free"
    optimizers = SCHEDULE_FREE_NAMES
    optimizer_specs: ClassVar[dict[str, OptimizerSpec]] = SCHEDULE_FREE_OPTIMIZERS
    searched = ("max_lr", "weight_decay", "warmup_pct")
    bounds: ClassVar[dict[str, str]] = {"warmup_pct": "share"}

    def first_max_lr(self, optimizer: str, seed: RangeSeed) -> tuple[float, str]:
        # Halfway (log) between the min-loss LR and the divergence edge (benchmarks/bench_first_point.py,
        # 2026-12-05, the first point's final val metric; suggestion -> min-loss -> edge_mid): AdamW
        # Friedman MAE 0.253 -> 0.211 -> 0.202, MNIST-1D 89.5 -> 93.8 -> 94.1%, digits CNN 98.5 -> 99.1 ->
        # 99.1%; SGD (SGDW's reading x10) 0.367 -> 0.294 -> 0.264, 89.9 -> 75.3 (one seed of 2 at 56%) ->
        # 94.0%, 98.6 -> 99.1 -> 99.4%.
        return edge_mid(seed), "halfway (log) from the min-loss lr to the edge"

    def max_lr_top(self, optimizer: str, seed: RangeSeed) -> tuple[float, str] | None:
        # Schedule-free AdamW trains past AdamW's divergence edge (the package's README: 1-10x a scheduled
        # AdamW's LR). At 3x the min-loss LR (1.05-1.6x the edge) its first point scored within the spread
        # of the best grid point on all three workloads (Friedman MAE 0.203, MNIST-1D 94.5%, digits CNN
        # 99.4%); at 10x it broke on two (0.333, 82.5%): the box reaches 3x (bench_first_point.py,
        # 2026-12-05).
        if optimizer != "adamw":
            return None
        return 3 * seed.min_loss_lr, f"3 x the min-loss lr ({3 * seed.min_loss_lr:.3g}; past AdamW's edge)"

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        if seed.optimizer == "sgdw":
            lr_source = (
                f"range test (sgdw) x {SCHEDULE_FREE_SGD_SCALE:g}: schedule-free SGD has no momentum buffer, "
                "its gradients are taken at y, which moves (1 - 0.9) of each z step"
            )
        else:
            lr_source = (
                f"range test ({seed.optimizer}): the step size of a scheduled AdamW; the package's README "
                "puts schedule-free AdamW's at 1x-10x that"
            )
        sources = {
            "max_lr": lr_source,
            "schedule": "none: the optimizer's own warm-up and averaging (Defazio et al. 2024)",
        }
        return [warmup_param("first 5%; the package's README recommends a warm-up")], {}, sources

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        return ConstantConfig(lr=config["max_lr"])  # the optimizer warms up and averages by itself

    def optimizer(
        self, config: dict[str, Any], params: Any, schedule: ScheduleConfig, total: int, momentum: float
    ) -> tuple[torch.optim.Optimizer, ScheduleLR]:
        # The scheduler then holds the LR constant: the warm-up lives in the optimizer (warmup_steps).
        optimizer = build_schedule_free(
            config["optimizer"],
            params,
            schedule.lr,
            config.get("weight_decay", 0.0),
            warmup_steps=pct_steps(config["warmup_pct"], total),
            momentum=momentum,
        )
        return optimizer, build_scheduler(optimizer, schedule)

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        what = "no schedule: the optimizer warms up and averages"
        return {"schedule-free (lr held; AdamW 0.0025)": (ConstantConfig(lr=0.0025), what)}


SPEC = ScheduleFree()
