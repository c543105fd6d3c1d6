"""What a schedule family is to a study, in one place: `ScheduleSpec`, one subclass per schedule.

A spec says which optimizers the schedule pairs with (the arms), the values a trial config carries (searched
and constant), how the range test seeds its search (its own `Param`s, the first point), how a trial config
becomes a schedule config (`build`), where early stopping may judge it (`judged_at`), which of its config's
fields count steps (the snippet writes them in epochs) and what the schedule gallery draws. Every registry
(the arms, the tables' hyperparameter columns, what `[search.bounds]` may set) is derived from the specs in
`families.py`: adding a schedule is a module with its spec plus a line there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from .optimizers import OPTIMIZERS, OptimizerSpec, build_optimizer
from .schedules import ScheduleConfig, ScheduleLR, at_lr_minimum, build_scheduler, lr_at, peak_lr


@dataclass(frozen=True)
class RangeSeed:
    """What a range test (with its weight-decay sweep) says for one optimizer family."""

    optimizer: str
    max_lr: float
    min_lr: float
    weight_decay: float
    weight_decay_range: tuple[float, float]
    min_loss_lr: float
    divergence_lr: float | None = None  # where the curve's divergence region starts (None: never diverged)


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a float range (log or linear) or a categorical, and why it is what it
    is."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    integer: bool = False  # whole epochs, so that cycle ends fall on epoch ends, where ASHA judges
    first: Any = None  # the range test's own suggestion, enqueued as the arm's first trial
    source: str = ""


def edge_mid(seed: RangeSeed) -> float:
    """The geometric mean of the min-loss LR and the divergence edge (the min-loss LR where the curve never
    diverged): halfway, on the log scale the search samples, between the best loss and the blow-up.

    Example:
        >>> edge_mid(RangeSeed("sgdw", 0.02, 0.002, 0.0, (1e-5, 1e-3), 0.04, divergence_lr=0.16))
        0.08
    """
    if seed.divergence_lr is None or seed.divergence_lr <= seed.min_loss_lr:
        return seed.min_loss_lr
    return math.sqrt(seed.min_loss_lr * seed.divergence_lr)


def clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


def pct_steps(pct: float, total: int) -> int:
    """A fraction of the run in whole steps, so that a budget compresses it."""
    return math.floor(pct * total + 0.5)


def warmup_then_decay(config: dict[str, Any], total: int) -> dict[str, Any]:
    """The arguments of a warm-up-then-decay schedule config (cosine, linear) from a trial config: its
    warmup_pct of `total` steps as whole steps, leaving at least one step of decay."""
    return {
        "max_lr": config["max_lr"],
        "total_steps": total,
        "warmup_steps": min(pct_steps(config["warmup_pct"], total), total - 1),
        "eta_min": config["eta_min"],
    }


def warmup_param(why: str) -> Param:
    """The linear warm-up of the schedules of current practice, as a fraction of the run."""
    return Param(
        "warmup_pct", 0.0, 0.2, False, first=0.05, source=f"linear warm-up, fraction of the run; {why}"
    )


class ScheduleSpec:
    """One schedule family (subclass per schedule; the instance is registered in `families.py`).

    The class attributes are the schedule's facts; the methods turn a range test into its search space and
    a trial config into its schedule. Defaults fit a scheduled AdamW/SGDW arm judged at every epoch end.
    """

    name: ClassVar[str] = ""
    optimizers: ClassVar[tuple[str, ...]] = ("adamw", "sgdw")  # the arms f"{name}-{optimizer}"
    # what its optimizer names mean (`optimizers.py`): the scheduled families, or the schedule-free ones
    optimizer_specs: ClassVar[dict[str, OptimizerSpec]] = OPTIMIZERS
    # The values a trial config carries: searched by Optuna (max_lr and weight_decay first), or constant.
    searched: ClassVar[tuple[str, ...]] = ("max_lr", "weight_decay")
    constants: ClassVar[tuple[str, ...]] = ()
    # its own values that `[search.bounds]` may set, and how: "log" (low > 0), "fraction" (within (0, 1)),
    # "share" (within [0, 1): a warm-up may be none) or "int" (whole epochs >= 1)
    bounds: ClassVar[dict[str, str]] = {}
    # fields of its config counted in steps (the snippet writes them in epochs)
    step_fields: ClassVar[tuple[str, ...]] = ()
    # The first max_lr (`first_max_lr`): the min-loss LR, Smith's "highest value found in the range test", or
    # the safer suggestion (min-loss LR / 3) where unmeasured; each family's choice is measured
    # (benchmarks/bench_first_point.py, docs/search_benchmark.md).
    peak_at_min_loss: ClassVar[bool] = False

    def range_family(self, optimizer: str) -> str:
        """The optimizer family whose range test seeds the arm (`OptimizerSpec.range_family`)."""
        spec = self.optimizer_specs.get(optimizer)
        return optimizer if spec is None else spec.range_family

    def seed(self, optimizer: str, seed: RangeSeed) -> RangeSeed:
        """The range test's reading on the arm's own LR scale (`OptimizerSpec.range_scale`): the test's own
        LRs, unless the optimizer steps at another scale than its range family."""
        spec = self.optimizer_specs.get(optimizer)
        k = 1.0 if spec is None else spec.range_scale
        if k == 1.0:
            return seed
        edge = None if seed.divergence_lr is None else seed.divergence_lr * k
        return replace(
            seed,
            max_lr=seed.max_lr * k,
            min_lr=seed.min_lr * k,
            min_loss_lr=seed.min_loss_lr * k,
            divergence_lr=edge,
        )

    def first_max_lr(self, optimizer: str, seed: RangeSeed) -> tuple[float, str]:
        """The first point's max_lr from the range test's reading on the arm's LR scale (`seed`, as the spec's
        `seed` returns it), and the words that say which reading it is.

        Example:
            >>> ScheduleSpec().first_max_lr("adamw", RangeSeed("adamw", 0.01, 1e-3, 0.0, (1e-6, 1e-4), 0.03))
            (0.01, 'the suggestion')
        """
        if self.peak_at_min_loss:
            return seed.min_loss_lr, "the min-loss lr"
        return seed.max_lr, "the suggestion"

    def max_lr_top(self, optimizer: str, seed: RangeSeed) -> tuple[float, str] | None:
        """A floor under the top of the max_lr box (which is the range test's divergence edge,
        `study.space.max_lr_high`) and its words: None, the edge alone, by default."""
        return None

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        """The schedule's own searched values (beyond max_lr and weight decay), its constants, and the
        sources of both (and of the schedule's shape), from the range test's `seed`."""
        return [], {}, {}

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        """The schedule config of a trial config over `total` steps; cycle lengths stored in epochs of the
        full budget are scaled by `scale` (a budget compresses the whole schedule)."""
        raise NotImplementedError

    def optimizer(
        self,
        config: dict[str, Any],
        params: Any,
        schedule: ScheduleConfig,
        total: int,
        momentum: float,
    ) -> tuple[torch.optim.Optimizer, ScheduleLR]:
        """The optimizer at the schedule's first LR, its decay scaled by the schedule, and the scheduler."""
        optimizer = build_optimizer(
            config["optimizer"],
            params,
            lr_at(schedule, 0),
            config.get("weight_decay", 0.0),
            momentum=momentum,
            peak_lr=peak_lr(schedule),
        )
        return optimizer, build_scheduler(optimizer, schedule)

    def judged_at(self, schedule: ScheduleConfig, step: int) -> bool:
        """Whether early stopping may compare a run after `step` steps (`schedules.at_lr_minimum`)."""
        return at_lr_minimum(schedule, step)

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        """Panels of the schedule gallery: title -> (a representative config, what the momentum does)."""
        return {}
