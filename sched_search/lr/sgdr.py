"""SGDR: cosine annealing with warm restarts (Loshchilov & Hutter 2017): the spec of the `sgdr` arms. The
schedule itself is `schedules.SGDRConfig`."""

from __future__ import annotations

from typing import Any, ClassVar

from .schedules import ScheduleConfig, SGDRConfig, to_steps
from .spec import Param, RangeSeed, ScheduleSpec


class SGDR(ScheduleSpec):
    """t_0 in [1, epochs/3] whole epochs, t_mult in {1, 2}; eta_min the curve's min_lr / 10."""

    name = "sgdr"
    searched = ("max_lr", "weight_decay", "t_0_epochs", "t_mult")
    constants = ("eta_min",)
    bounds: ClassVar[dict[str, str]] = {"t_0_epochs": "int"}
    step_fields = ("t_0",)

    def first_max_lr(self, optimizer: str, seed: RangeSeed) -> tuple[float, str]:
        # benchmarks/bench_first_point.py, 2026-12-05, the first point's final val metric: with AdamW the
        # min-loss LR beat the suggestion (Friedman MAE 0.269 -> 0.243, MNIST-1D 91.8 -> 94.7%; digits CNN
        # 99.5 -> 99.1%, one image in 269). With SGDW every restart returns to the peak: at the min-loss LR
        # one MNIST-1D seed of 2 fell to 82.7% (93.2 -> 88.0% mean; Friedman 0.370 -> 0.304, digits CNN
        # 98.9 -> 99.0%), so SGDW keeps the suggestion.
        if optimizer == "adamw":
            return seed.min_loss_lr, "the min-loss lr"
        return seed.max_lr, "the suggestion"

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        t_hi = max(1, epochs // 3)
        t_0, t_mult = first_cycles(epochs, t_hi)
        params = [
            Param(
                "t_0_epochs",
                1,
                t_hi,
                integer=True,
                first=t_0,
                source="Loshchilov & Hutter 2017: T_0 of 1-10 epochs; capped at epochs/3",
            ),
            # The schedule takes any float T_mult; the search keeps the paper's 1 and 2 so that, with
            # whole-epoch T_0, every restart falls on an epoch end, where ASHA compares trials.
            Param(
                "t_mult", choices=(1.0, 2.0), first=t_mult, source="Loshchilov & Hutter 2017: T_mult 1 or 2"
            ),
        ]
        fixed = {"eta_min": seed.min_lr / 10}
        return (
            params,
            fixed,
            {"eta_min": f"range test ({seed.optimizer}): suggested min_lr {seed.min_lr:.3g} / 10"},
        )

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        return SGDRConfig(
            max_lr=config["max_lr"],
            t_0=to_steps(config["t_0_epochs"] * scale, "epochs", steps_per_epoch),
            t_mult=config["t_mult"],
            eta_min=config["eta_min"],
        )

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        half = to_steps(2, "epochs", steps_per_epoch)
        flat = "momentum flat at 0.9 (not cycled)"
        return {"SGDR (t_0 2 epochs, t_mult 2)": (SGDRConfig(max_lr=0.1, t_0=half, t_mult=2.0), flat)}


def first_cycles(epochs: int, t_hi: int) -> tuple[int, float]:
    """The first point's (t_0 in epochs, t_mult): the run ends as its last cycle ends, at its lowest LR, with
    about three cycles; ties to t_mult 2, then the longer t_0.

    Loshchilov & Hutter (2017) read SGDR where a cycle ends. A run that stops just past a restart ends near
    its peak LR: the earlier first point (t_0 a sixth of the run, t_mult 2) did so on the regression study
    (cycles of 1, 2 and 4 epochs, then 1 epoch of an 8-epoch cycle), where its final MAE spread over seeds was
    0.243 +- 0.040 (docs/search_benchmark.md). t_0 = 1 with t_mult 1 always qualifies.

    Example:
        >>> first_cycles(8, 2), first_cycles(20, 6), first_cycles(21, 7)
        ((2, 1.0), (5, 1.0), (3, 2.0))
    """
    fits = {}
    for t_mult in (2.0, 1.0):
        for t_0 in range(1, t_hi + 1):
            n, end = _cycles(epochs, t_0, t_mult)
            if end == epochs:
                fits[t_0, t_mult] = n
    return min(fits, key=lambda f: (abs(fits[f] - 3), f[1] != 2.0, -f[0]))


def _cycles(epochs: int, t_0: int, t_mult: float) -> tuple[int, float]:
    """How many cycles of t_0, t_0 * t_mult, ... epochs a run of `epochs` starts, and where the last ends."""
    n, end, length = 0, 0.0, float(t_0)
    while end < epochs:
        n, end, length = n + 1, end + length, length * t_mult
    return n, end


SPEC = SGDR()
