"""What an optimizer family is to a study, in one place: `OptimizerSpec`, one instance per family.

A spec says how the family is built from a trial's LR, weight decay, momentum and the schedule's peak LR (or
the warm-up of a schedule-free one), whose range test seeds it and at what LR scale, whether it runs without a
schedule (schedule-free: its own warm-up and averaging) or without an LR of its own (Prodigy: the LR
multiplies its estimated step size), and what the snippet writes for it. The registries below are the only
lists of optimizer names: `build_optimizer`, `schedule_free.build_schedule_free`, the arms' range families
(`spec.ScheduleSpec.range_family`) and the snippet (`results.snippet`) read them. Adding an optimizer family
is a spec here (its optimizer in its own module) plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from .optim import SGDW, AdamW
from .prodigy import build_prodigy

__all__ = [
    "OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "SCHEDULE_FREE_OPTIMIZERS",
    "OptimizerArgs",
    "OptimizerSpec",
    "build_optimizer",
]


@dataclass(frozen=True)
class OptimizerArgs:
    """What a trial builds its optimizer from; each family uses the values it has."""

    lr: float  # the schedule's first LR (a schedule-free optimizer's held LR; Prodigy's multiplier)
    weight_decay: float = 0.0  # the study's (`OptimizerSpec` says at which scale each family takes it)
    momentum: float = 0.9  # for the families that take one (`OptimizerSpec.momentum`)
    peak_lr: float | None = None  # the schedule's peak: AdamW's fused path scales its decay by it
    warmup_steps: int = 0  # a schedule-free optimizer's own linear warm-up


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer family: how a trial builds it, whose range test seeds it, and what the snippet writes.

    `weight_decay` is always the study's: decoupled and a per-step shrink at the peak LR for our SGDW/AdamW
    and the schedule-free ones (which convert it to their package's scale), torch's L2 for torch's SGD/Adam,
    Prodigy's own scale for Prodigy (`prodigy.build_prodigy`).
    """

    name: str  # as a trial config, an arm and the range test name it: "sgdw"
    build: Callable[[list[Tensor], OptimizerArgs], torch.optim.Optimizer]
    # the optimizer whose range test seeds its arms: its own, or the scheduled one it replaces
    range_family: str
    range_scale: float = 1.0  # its LR over its range family's at the same step size (read off that test)
    schedule_free: bool = False  # no LR schedule: its own warm-up and averaging; .train() / .eval() switches
    lr_free: bool = False  # estimates its step size itself: the LR multiplies it (1 at the schedule's peak)
    momentum: bool = False  # takes the study's momentum
    # max_lr's range in the blind space of `[search] space = "broad"` (no range test), for a range family
    broad_max_lr: tuple[float, float] | None = None
    snippet_class: str = ""  # what the snippet constructs: "SGDW", "torch.optim.Adam", "Prodigy", ...
    snippet_module: str = ""  # where the snippet imports it from ("" : torch's, imported anyway)
    snippet_args: str = ""  # the snippet's constructor arguments after lr, momentum and weight_decay

    def snippet_call(self, lr: str, weight_decay: str) -> str:
        """The constructor the snippet writes, with the LR and weight decay as text (a scheduled family's)."""
        momentum = "momentum=0.9, " if self.momentum else ""
        extra = f", {self.snippet_args}" if self.snippet_args else ""
        return (
            f"{self.snippet_class}(model.parameters(), lr={lr}, {momentum}weight_decay={weight_decay}{extra})"
        )


def _sgdw(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    return SGDW(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)


def _adamw(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    """With the schedule's `peak_lr` known, torch's fused `AdamW` with `weight_decay / peak_lr`: torch decays
    by `lr * weight_decay`, which is then `(lr / peak_lr) * lambda = eta_t * lambda`, Algorithm 2's decay, on
    its fastest kernel (about 3x our foreach step on CPU, `benchmarks/bench_optim.py`). Without it, ours."""
    if a.peak_lr is None:
        return AdamW(params, lr=a.lr, weight_decay=a.weight_decay, decay_mode="schedule")
    if not a.peak_lr > 0:
        raise ValueError(f"peak_lr must be > 0, but got {a.peak_lr}.")
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay / a.peak_lr, fused=fused or None)


def _sgd(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)


def _adam(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=a.lr, weight_decay=a.weight_decay)


def _prodigy(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    return build_prodigy(params, lr=a.lr, weight_decay=a.weight_decay)


def _schedule_free_decay(a: OptimizerArgs) -> float:
    """The arguments of a schedule-free optimizer checked, and our decay on the package's scale
    (`schedule_free.build_schedule_free` says why `weight_decay / lr`)."""
    for name, value, ok in (
        ("lr", a.lr, a.lr > 0),
        ("weight_decay", a.weight_decay, a.weight_decay >= 0),
        ("warmup_steps", a.warmup_steps, a.warmup_steps >= 0),
    ):
        if not ok:
            raise ValueError(f"{name} must be {'> 0' if name == 'lr' else '>= 0'}, but got {value!r}.")
    return a.weight_decay / a.lr


def _sf_adamw(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    import schedulefree

    decay = _schedule_free_decay(a)
    return schedulefree.AdamWScheduleFree(params, lr=a.lr, weight_decay=decay, warmup_steps=a.warmup_steps)


def _sf_sgd(params: list[Tensor], a: OptimizerArgs) -> torch.optim.Optimizer:
    import schedulefree

    decay = _schedule_free_decay(a)
    return schedulefree.SGDScheduleFree(
        params, lr=a.lr, momentum=a.momentum, weight_decay=decay, warmup_steps=a.warmup_steps
    )


SGDW_SPEC = OptimizerSpec(
    "sgdw",
    _sgdw,
    "sgdw",
    momentum=True,
    broad_max_lr=(1e-4, 1.0),
    snippet_class="SGDW",
    snippet_module="sched_search",
)
ADAMW_SPEC = OptimizerSpec(
    "adamw",
    _adamw,
    "adamw",
    broad_max_lr=(1e-5, 1e-1),  # a decade below SGDW's: Adam's steps are normalised
    snippet_class="AdamW",
    snippet_module="sched_search",
    snippet_args='decay_mode="schedule"',
)
# torch's own, with L2 decay: the range test's and the constant Adam baseline's
SGD_SPEC = OptimizerSpec("sgd", _sgd, "sgd", momentum=True, snippet_class="torch.optim.SGD")
ADAM_SPEC = OptimizerSpec("adam", _adam, "adam", snippet_class="torch.optim.Adam")
PRODIGY_SPEC = OptimizerSpec(
    "prodigy",
    _prodigy,
    "prodigy",
    lr_free=True,
    snippet_class="Prodigy",
    snippet_module="prodigyopt",
    snippet_args="decouple=True, safeguard_warmup=True, d_coef=1.0",  # prodigy.build_prodigy's
)
SF_ADAMW_SPEC = OptimizerSpec(
    "adamw",
    _sf_adamw,
    "adamw",
    schedule_free=True,
    snippet_class="AdamWScheduleFree",
    snippet_module="schedulefree",
)
# Schedule-free SGD steps z by lr * g with no momentum buffer, and its gradients are taken at y, which moves
# (1 - beta) of each z step: SGDW's step at momentum 0.9 is reached at about lr / (1 - 0.9) = 10x SGDW's lr
# (the package's README: "10x to 50x larger than classical rates"). Hence "sgd", seeded by the SGDW test.
SF_SGD_SPEC = OptimizerSpec(
    "sgd",
    _sf_sgd,
    "sgdw",
    range_scale=10.0,  # 1 / (1 - 0.9)
    schedule_free=True,
    momentum=True,
    snippet_class="SGDScheduleFree",
    snippet_module="schedulefree",
)

# The optimizers a schedule drives (`build_optimizer`), and those that run without one (the schedule_free
# arms, `schedule_free.build_schedule_free`): the same name can be either ("adamw"), so two registries.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    s.name: s for s in (SGDW_SPEC, ADAMW_SPEC, SGD_SPEC, ADAM_SPEC, PRODIGY_SPEC)
}
SCHEDULE_FREE_OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in (SF_ADAMW_SPEC, SF_SGD_SPEC)}
OPTIMIZER_NAMES = tuple(OPTIMIZERS)


def build_optimizer(
    name: str,
    params: Iterable[Tensor],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    peak_lr: float | None = None,
) -> torch.optim.Optimizer:
    """The scheduled optimizer `name` (`OPTIMIZERS`) as a trial builds it: `sgdw` and `adamw` decay decoupled
    and schedule-scaled; `sgd` and `adam` are torch's (L2 decay); `prodigy` is `prodigyopt`'s with decoupled
    decay at its own scale (`prodigy.build_prodigy`), `lr` the multiplier of its estimated step size (1 at the
    schedule's peak, its README's).

    With the schedule's `peak_lr` known, `adamw` is torch's fused `AdamW` with `weight_decay / peak_lr` (the
    same decay, `eta_t * lambda`, on torch's fastest kernel); without it, our `AdamW`.

    Example:
        >>> build_optimizer("sgdw", torch.nn.Linear(2, 1).parameters(), lr=0.1).defaults["momentum"]
        0.9
    """
    params = list(params)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {OPTIMIZER_NAMES}.")
    return OPTIMIZERS[name].build(params, OptimizerArgs(lr, weight_decay, momentum, peak_lr))
