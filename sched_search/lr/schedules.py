"""LR schedules stepped once per batch: cyclical (CLR), SGDR, one-cycle and constant (warm-up + cosine and
WSD: `warmup_decay.py`).

Each schedule is a frozen config plus a pure function of the step (`lr_at`, `momentum_at`), so every curve can
be tested for exact values without training; `ScheduleLR` wraps that function once into a torch LR scheduler.
Steps count batches from 0 (the first batch); `to_steps` converts epochs to steps.

Example:
    cfg = one_cycle(max_lr=0.1, total_steps=to_steps(20, "epochs", steps_per_epoch))  # the "paper" preset
    scheduler = build_scheduler(optimizer, cfg)  # then scheduler.step() after each optimizer.step()
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .checks import check, is_int

CLR_MODES = ("triangular", "triangular2", "exp_range")
ANNEALS = ("linear", "cos")
STEP_UNITS = ("steps", "epochs")


@dataclass(frozen=True)
class CyclicalConfig:
    """Cyclical LR (Smith 2015, arXiv:1506.01186), one cycle = 2 * `step_size` steps."""

    base_lr: float  # lower LR bound, >= 0
    max_lr: float  # upper LR bound, >= base_lr
    step_size: int  # half-cycle in steps, >= 1
    mode: str = "triangular"  # one of CLR_MODES
    gamma: float = 1.0  # exp_range: amplitude factor gamma**step, in (0, 1]
    cycle_momentum: bool = False  # cycle momentum inversely to the LR
    base_momentum: float = 0.85  # momentum at max_lr
    max_momentum: float = 0.95  # momentum at base_lr

    def __post_init__(self) -> None:
        check(
            0 <= self.base_lr <= self.max_lr and self.max_lr > 0,
            "base_lr, max_lr",
            "0 <= base_lr <= max_lr with max_lr > 0",
            (self.base_lr, self.max_lr),
        )
        check(is_int(self.step_size) and self.step_size >= 1, "step_size", "an int >= 1", self.step_size)
        check(self.mode in CLR_MODES, "mode", f"one of {CLR_MODES}", self.mode)
        check(0 < self.gamma <= 1, "gamma", "in (0, 1]", self.gamma)
        check(
            0 <= self.base_momentum <= self.max_momentum < 1,
            "base_momentum, max_momentum",
            "0 <= base_momentum <= max_momentum < 1",
            (self.base_momentum, self.max_momentum),
        )


@dataclass(frozen=True)
class SGDRConfig:
    """SGDR: cosine annealing with warm restarts (Loshchilov & Hutter 2017, arXiv:1608.03983)."""

    max_lr: float  # peak LR of the first cycle (eta_max), > 0
    t_0: int  # first cycle length in steps, >= 1
    t_mult: float = 1.0  # cycle length factor per restart, >= 1; floats allowed (torch requires an int)
    eta_min: float = 0.0  # floor LR, in [0, max_lr]
    peak_decay: float = 1.0  # peak multiplier per restart, in (0, 1]; the peak never goes below eta_min

    def __post_init__(self) -> None:
        check(
            0 <= self.eta_min <= self.max_lr and self.max_lr > 0,
            "eta_min, max_lr",
            "0 <= eta_min <= max_lr with max_lr > 0",
            (self.eta_min, self.max_lr),
        )
        check(is_int(self.t_0) and self.t_0 >= 1, "t_0", "an int >= 1", self.t_0)
        check(self.t_mult >= 1, "t_mult", ">= 1", self.t_mult)
        check(0 < self.peak_decay <= 1, "peak_decay", "in (0, 1]", self.peak_decay)


@dataclass(frozen=True)
class OneCycleConfig:
    """One-cycle (Smith & Topin 2019, arXiv:1708.07120; Smith 2018, arXiv:1803.09820), torch's phase layout.

    The LR starts at max_lr / div_factor and ends at max_lr / div_factor / final_div_factor (final_div_factor
    is relative to the start LR, as in torch's OneCycleLR). Build it with `one_cycle` to get a named preset.
    """

    max_lr: float  # peak LR, > 0
    total_steps: int  # schedule length in steps, >= 1; later steps hold the final LR
    pct_start: float  # warm-up fraction of total_steps; <= 0.5 when three_phase
    div_factor: float  # start LR = max_lr / div_factor, >= 1
    final_div_factor: float  # final LR = start LR / final_div_factor, >= 1
    anneal: str  # "linear" or "cos"
    three_phase: bool  # True: up, down to the start LR, annihilate; False: up, anneal straight to the end
    cycle_momentum: bool = True  # cycle momentum (or Adam's beta1) inversely to the LR
    base_momentum: float = 0.85  # momentum at max_lr
    max_momentum: float = 0.95  # momentum at the start and the end

    def __post_init__(self) -> None:
        check(self.max_lr > 0, "max_lr", "> 0", self.max_lr)
        check(
            is_int(self.total_steps) and self.total_steps >= 1,
            "total_steps",
            "an int >= 1",
            self.total_steps,
        )
        top = 0.5 if self.three_phase else 1.0
        check(0 <= self.pct_start <= top, "pct_start", f"in [0, {top}]", self.pct_start)
        check(self.div_factor >= 1, "div_factor", ">= 1", self.div_factor)
        check(self.final_div_factor >= 1, "final_div_factor", ">= 1", self.final_div_factor)
        check(self.anneal in ANNEALS, "anneal", f"one of {ANNEALS}", self.anneal)
        check(
            0 <= self.base_momentum <= self.max_momentum < 1,
            "base_momentum, max_momentum",
            "0 <= base_momentum <= max_momentum < 1",
            (self.base_momentum, self.max_momentum),
        )


@dataclass(frozen=True)
class ConstantConfig:
    """A constant LR: the baseline arm (Adam at 3e-4)."""

    lr: float  # > 0

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", "> 0", self.lr)


ScheduleConfig = CyclicalConfig | SGDRConfig | OneCycleConfig | ConstantConfig

# All three keep torch's meaning of final_div_factor (relative to the start LR max_lr / div_factor).
ONE_CYCLE_PRESETS: dict[str, dict[str, Any]] = {
    # Smith 2018: one linear cycle "smaller than the total number of iterations" from max_lr/10, then the LR
    # falls "several orders of magnitude" below the start; pct_start 0.45 leaves the last 10% to that fall.
    "paper": {
        "pct_start": 0.45,
        "div_factor": 10.0,
        "final_div_factor": 1e4,
        "anneal": "linear",
        "three_phase": True,
    },
    # fastai fit_one_cycle: div 25, div_final 1e5 relative to lr_max, i.e. 1e5 / 25 = 4000 relative to the
    # start.
    "fastai": {
        "pct_start": 0.25,
        "div_factor": 25.0,
        "final_div_factor": 4e3,
        "anneal": "cos",
        "three_phase": False,
    },
    # torch OneCycleLR defaults.
    "torch": {
        "pct_start": 0.3,
        "div_factor": 25.0,
        "final_div_factor": 1e4,
        "anneal": "cos",
        "three_phase": False,
    },
}


def one_cycle(max_lr: float, total_steps: int, preset: str = "paper", **overrides: Any) -> OneCycleConfig:
    """A one-cycle config from a named preset in `ONE_CYCLE_PRESETS`, with any field overridden.

    Args:
        max_lr: Peak LR (from the range test).
        total_steps: Training length in steps (see `to_steps`).
        preset: "paper" (Smith & Topin, three-phase linear), "fastai" or "torch" (two-phase cosine).
        **overrides: Any other `OneCycleConfig` field, e.g. `div_factor=20.0`.

    Returns:
        The config, every resolved value in its fields (`dataclasses.asdict` shows them all).

    Example:
        >>> one_cycle(0.1, 1000, "torch").div_factor
        25.0
    """
    if preset not in ONE_CYCLE_PRESETS:
        raise ValueError(f"preset must be one of {sorted(ONE_CYCLE_PRESETS)}, but got {preset!r}.")
    return OneCycleConfig(
        max_lr=max_lr, total_steps=total_steps, **{**ONE_CYCLE_PRESETS[preset], **overrides}
    )


def to_steps(value: float, unit: str, steps_per_epoch: int) -> int:
    """A duration in steps from `value` steps or epochs (fractional epochs round to the nearest step).

    Example:
        >>> to_steps(2.5, "epochs", steps_per_epoch=10)
        25
    """
    check(is_int(steps_per_epoch) and steps_per_epoch >= 1, "steps_per_epoch", "an int >= 1", steps_per_epoch)
    check(unit in STEP_UNITS, "unit", f"one of {STEP_UNITS}", unit)
    check(
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0,
        f"a duration in {unit}",
        "a finite number > 0",
        value,
    )
    if unit == "steps":
        check(float(value).is_integer(), "a duration in steps", "a whole number", value)
        return int(value)
    steps = math.floor(value * steps_per_epoch + 0.5)
    check(
        steps >= 1,
        f"{value} epochs x {steps_per_epoch} steps per epoch",
        "at least 1 step",
        value * steps_per_epoch,
    )
    return steps


def peak_lr(config: ScheduleConfig) -> float:
    """The schedule's largest LR; optimizers use lr / peak_lr as the schedule multiplier eta_t."""
    return config.lr if isinstance(config, ConstantConfig) else config.max_lr


def _clr_shape(c: CyclicalConfig, step: int) -> tuple[float, float]:
    # Smith 2015's triangle (its pseudo-code) in [0, 1], times the mode's amplitude scale. Written as
    # torch's CyclicLR computes it so the two agree to the last bit.
    total = 2.0 * c.step_size
    cycle = math.floor(1 + step / total)
    x = 1.0 + step / total - cycle
    triangle = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
    if c.mode == "triangular2":
        return triangle, 0.5 ** (cycle - 1)  # = torch's 1 / 2**(cycle - 1), which overflows after 1024 cycles
    return triangle, c.gamma**step if c.mode == "exp_range" else 1.0


def _sgdr_start(c: SGDRConfig, i: int) -> int:
    # Restart i at t_0 * (1 + t_mult + ... + t_mult**(i-1)), rounded: float t_mult still restarts on a step.
    if c.t_mult == 1:
        return c.t_0 * i
    return math.floor(c.t_0 * (c.t_mult**i - 1) / (c.t_mult - 1) + 0.5)


def _sgdr_cycle(c: SGDRConfig, step: int) -> tuple[int, int, int]:
    if c.t_mult == 1:
        return step // c.t_0, step % c.t_0, c.t_0
    i = int(math.log(step / c.t_0 * (c.t_mult - 1) + 1, c.t_mult))
    while i > 0 and _sgdr_start(c, i) > step:  # the log can land one off either way
        i -= 1
    while _sgdr_start(c, i + 1) <= step:
        i += 1
    start = _sgdr_start(c, i)
    return i, step - start, _sgdr_start(c, i + 1) - start


def _one_cycle_point(c: OneCycleConfig, step: int) -> tuple[float, float]:
    # torch OneCycleLR's phases (end steps are floats) so the "torch" preset and three_phase match it exactly.
    start_lr = c.max_lr / c.div_factor
    final_lr = start_lr / c.final_div_factor
    lo_m, hi_m = c.base_momentum, c.max_momentum
    up = (float(c.pct_start * c.total_steps) - 1, start_lr, c.max_lr, hi_m, lo_m)
    if c.three_phase:
        phases = [
            up,
            (float(2 * c.pct_start * c.total_steps) - 2, c.max_lr, start_lr, lo_m, hi_m),
            (c.total_steps - 1, start_lr, final_lr, hi_m, hi_m),
        ]
    else:
        phases = [up, (c.total_steps - 1, c.max_lr, final_lr, lo_m, hi_m)]
    step = min(step, c.total_steps - 1)  # hold the final value where torch would raise
    begin = 0.0
    for k, (end, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end or k == len(phases) - 1:
            pct = (step - begin) / (end - begin) if end > begin else 1.0
            if c.anneal == "cos":
                w = math.cos(math.pi * pct) + 1
                return lr1 + (lr0 - lr1) / 2.0 * w, m1 + (m0 - m1) / 2.0 * w
            return (lr1 - lr0) * pct + lr0, (m1 - m0) * pct + m0
        begin = end
    raise AssertionError("unreachable")


def lr_at(config: ScheduleConfig, step: int) -> float:
    """The LR for batch `step` (0 = first batch); past a schedule's end it holds the last value.

    Implements Smith 2015's triangle with the triangular2/exp_range amplitude scales, SGDR
    (Loshchilov & Hutter 2017, eq. 5) with restarts at integer steps and the peak times peak_decay**restart,
    and one-cycle in torch's OneCycleLR phase layout.

    Example:
        >>> lr_at(CyclicalConfig(base_lr=0.01, max_lr=0.1, step_size=10), 10)
        0.1
    """
    check(is_int(step) and step >= 0, "step", "an int >= 0", step)
    if isinstance(config, CyclicalConfig):
        triangle, scale = _clr_shape(config, step)
        return config.base_lr + (config.max_lr - config.base_lr) * triangle * scale
    if isinstance(config, SGDRConfig):
        i, t_cur, t_i = _sgdr_cycle(config, step)
        peak = max(config.eta_min, config.max_lr * config.peak_decay**i)
        return config.eta_min + (peak - config.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
    if isinstance(config, OneCycleConfig):
        return _one_cycle_point(config, step)[0]
    if isinstance(config, ConstantConfig):
        return config.lr
    if callable(getattr(config, "lr_at", None)):  # a config that computes its own (warmup_decay.py)
        return config.lr_at(step)
    raise TypeError(f"config must be one of {ScheduleConfig}, but got {type(config).__name__}.")


def momentum_at(config: ScheduleConfig, step: int) -> float | None:
    """Momentum (or Adam's beta1) for batch `step`, cycled inversely to the LR; None if the schedule does not.

    Example:
        >>> momentum_at(one_cycle(0.1, 100), 0)
        0.95
    """
    check(is_int(step) and step >= 0, "step", "an int >= 0", step)
    if isinstance(config, CyclicalConfig) and config.cycle_momentum:
        triangle, scale = _clr_shape(config, step)
        return config.max_momentum - (config.max_momentum - config.base_momentum) * triangle * scale
    if isinstance(config, OneCycleConfig) and config.cycle_momentum:
        return _one_cycle_point(config, step)[1]
    return None


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """A torch LR scheduler driven by `lr_at` / `momentum_at`; call `step()` after each `optimizer.step()`.

    Every param group gets the same LR, `peak_lr` (read by our optimizers to scale weight decay) and, when the
    schedule cycles momentum, `momentum` (SGD-like groups) or `betas[0]` (Adam-like groups).

    Args:
        optimizer: The optimizer to drive.
        config: The schedule.
        last_epoch: Index of the last batch seen; -1 starts at step 0.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: ScheduleConfig, last_epoch: int = -1
    ) -> None:
        self.config = config
        cycles = momentum_at(config, 0) is not None
        for k, group in enumerate(optimizer.param_groups):
            if cycles and "momentum" not in group and "betas" not in group:
                raise ValueError(
                    f"{type(config).__name__} cycles momentum, but param group {k} of "
                    f"{type(optimizer).__name__} has neither 'momentum' nor 'betas'."
                )
            group["peak_lr"] = peak_lr(config)
            # torch demands initial_lr to resume with last_epoch >= 0; we never read it, so any value will do.
            group.setdefault("initial_lr", group["lr"])
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [lr_at(self.config, self.last_epoch)] * len(self.optimizer.param_groups)

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        self._set_momentum()

    def _set_momentum(self) -> None:
        momentum = momentum_at(self.config, self.last_epoch)
        if momentum is None:
            return
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                group["momentum"] = momentum
            else:
                group["betas"] = (momentum, *group["betas"][1:])

    def state_dict(self) -> dict[str, Any]:
        # The config goes in as plain values so torch.load(weights_only=True) can read it back.
        state = super().state_dict()
        state["config"] = {"kind": type(self.config).__name__, **asdict(self.config)}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved, mine = state.pop("config", None), self.state_dict()["config"]
        if saved is not None and saved != mine:
            raise ValueError(f"state_dict is from schedule {saved}, but this scheduler runs {mine}.")
        super().load_state_dict(state)
        # Put the groups at the loaded step even if the optimizer's own state is loaded later or not at all.
        lr = lr_at(self.config, self.last_epoch)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [
            g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]  # torch never aliases
            for g in self.optimizer.param_groups
        ]
        self._set_momentum()


# a run decaying from one peak is comparable once its LR is at or below this fraction of it
DECAY_JUDGED_AT = 0.5


def decayed_to_half(schedule: ScheduleConfig, step: int, peak_step: float) -> bool:
    """Whether a run whose LR decays from one peak, reached at step `peak_step`, may be compared after `step`
    steps: once past the peak its LR has come down to half of it (DECAY_JUDGED_AT).

    Mid-warm-up, at the peak and through a held peak (WSD's stable phase) the runs with the largest LRs look
    worst and the ranking flips as the LR comes down: judged there, early stopping cut the very runs that
    ended best (docs/workflow.md, "3. Trials"; the rank correlations per epoch in docs/search_benchmark.md).

    Example:
        >>> [decayed_to_half(one_cycle(0.1, 100), s, peak_step=45) for s in (20, 45, 68, 69)]
        [False, False, False, True]
    """
    return step >= peak_step and lr_at(schedule, step) <= DECAY_JUDGED_AT * peak_lr(schedule)


def at_lr_minimum(schedule: ScheduleConfig, step: int) -> bool:
    """Whether `step` (a count of steps done) ends a cycle: the LR is at a local minimum there.

    Early stopping must compare cyclical schedules at these points, not mid-cycle where the LR peaks.
    One-cycle counts once its LR has come down to half its peak (`decayed_to_half`).
    """
    if isinstance(schedule, OneCycleConfig):
        return decayed_to_half(schedule, step, schedule.pct_start * schedule.total_steps)
    if not isinstance(schedule, (CyclicalConfig, SGDRConfig)):
        return True
    a, b, c = (lr_at(schedule, max(0, s)) for s in (step - 2, step - 1, step))
    d = lr_at(schedule, step + 1)
    return (b <= a and c > b) or (c <= b and d > c)


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig) -> ScheduleLR:
    """The torch scheduler for `config`, starting at step 0 (sets the optimizer's LR for the first batch)."""
    return ScheduleLR(optimizer, config)
