"""Schedules of current practice: a linear warm-up, then cosine decay (`CosineConfig`) or WSD (`WSDConfig`).

Frozen configs like those of `schedules.py`, each with its own pure `lr_at(step)`, which `schedules.lr_at`
calls, so `ScheduleLR` drives them and their values can be tested exactly. Steps count batches from 0. The
warm-up gives batch t < warmup_steps the LR max_lr * (t + 1) / (warmup_steps + 1): torch's
LinearLR(start_factor=1 / (W + 1), total_iters=W), so no step is spent at LR 0.

Example:
    cfg = WSDConfig(max_lr=0.1, total_steps=1000, decay_steps=200, warmup_steps=50)
    scheduler = build_scheduler(optimizer, cfg)  # schedules.build_scheduler
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .checks import check, is_int

WSD_DECAYS = ("1-sqrt", "linear")  # Hagele et al. 2024's cooldown shapes; 1-sqrt beat linear there


def check_step(step: int) -> None:
    check(is_int(step) and step >= 0, "step", "an int >= 0", step)


def check_warmup_then_decay(cfg: Any) -> None:
    """`check_peak_and_length`, and a warm-up that leaves at least one step of decay: 0 <= warmup_steps <
    total_steps (cosine, linear)."""
    check_peak_and_length(cfg)
    check(
        is_int(cfg.warmup_steps) and 0 <= cfg.warmup_steps < cfg.total_steps,
        "warmup_steps",
        f"an int in [0, total_steps={cfg.total_steps})",
        cfg.warmup_steps,
    )


def check_peak_and_length(cfg: Any) -> None:
    """What every warm-up schedule requires of `cfg` (its max_lr, eta_min and total_steps): 0 <= eta_min <=
    max_lr, max_lr > 0, whole steps >= 1."""
    check(
        0 <= cfg.eta_min <= cfg.max_lr and cfg.max_lr > 0,
        "eta_min, max_lr",
        "0 <= eta_min <= max_lr with max_lr > 0",
        (cfg.eta_min, cfg.max_lr),
    )
    check(is_int(cfg.total_steps) and cfg.total_steps >= 1, "total_steps", "an int >= 1", cfg.total_steps)


@dataclass(frozen=True)
class CosineConfig:
    """Linear warm-up, then cosine decay to `eta_min` (nanoGPT's `get_lr`; torch's LinearLR then
    CosineAnnealingLR).

    Batch t < warmup_steps gets max_lr * (t + 1) / (warmup_steps + 1), so no step is wasted at LR 0; from
    warmup_steps on, the cosine of SGDR's eq. 5 (Loshchilov & Hutter 2017) falls from max_lr and reaches
    eta_min at step total_steps, one past the last batch; later steps hold eta_min.
    """

    max_lr: float  # peak LR, reached at step warmup_steps, > 0
    total_steps: int  # schedule length in steps, > warmup_steps
    warmup_steps: int = 0  # linear warm-up length in steps, >= 0
    eta_min: float = 0.0  # floor LR, in [0, max_lr]

    def __post_init__(self) -> None:
        check_warmup_then_decay(self)

    def lr_at(self, step: int) -> float:
        """The LR for batch `step` (0 = first batch); past total_steps it holds eta_min.

        Example:
            >>> CosineConfig(max_lr=0.1, total_steps=100, warmup_steps=9).lr_at(9)
            0.1
        """
        check_step(step)
        return _cosine(self, step)


@dataclass(frozen=True)
class WSDConfig:
    """Warm-up, stable, decay (Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations", arXiv:2405.18392): linear warm-up, max_lr held, then a cooldown over the last
    `decay_steps` to `eta_min`.

    The warm-up is `CosineConfig`'s. The cooldown starts at step s = total_steps - decay_steps with max_lr and
    follows eta_min + (max_lr - eta_min) * f((t - s) / decay_steps), f(x) = 1 - sqrt(x) ("1-sqrt", the
    paper's recommended shape, its Sec. 3: it beat linear) or 1 - x ("linear"); it reaches eta_min at
    total_steps, one past the last batch, and holds it after.
    """

    max_lr: float  # the stable LR, > 0
    total_steps: int  # schedule length in steps, >= warmup_steps + decay_steps
    decay_steps: int  # cooldown length in steps, >= 1
    warmup_steps: int = 0  # linear warm-up length in steps, >= 0
    eta_min: float = 0.0  # floor LR at the end of the cooldown, in [0, max_lr]
    decay: str = "1-sqrt"  # cooldown shape, one of WSD_DECAYS

    def __post_init__(self) -> None:
        check_peak_and_length(self)
        check(
            is_int(self.decay_steps) and self.decay_steps >= 1,
            "decay_steps",
            "an int >= 1",
            self.decay_steps,
        )
        check(
            is_int(self.warmup_steps) and 0 <= self.warmup_steps <= self.total_steps - self.decay_steps,
            "warmup_steps",
            f"an int in [0, total_steps - decay_steps = {self.total_steps - self.decay_steps}]",
            self.warmup_steps,
        )
        check(self.decay in WSD_DECAYS, "decay", f"one of {WSD_DECAYS}", self.decay)

    def lr_at(self, step: int) -> float:
        """The LR for batch `step` (0 = first batch); past total_steps it holds eta_min.

        Example:
            >>> WSDConfig(max_lr=0.1, total_steps=100, decay_steps=20).lr_at(50)
            0.1
        """
        check_step(step)
        return _wsd(self, step)


def warmup_lr(max_lr: float, warmup_steps: int, step: int) -> float:
    """The warm-up's LR at batch `step` < warmup_steps: max_lr * (step + 1) / (warmup_steps + 1)."""
    return max_lr * (step + 1) / (warmup_steps + 1)


def _cosine(c: CosineConfig, step: int) -> float:
    if step < c.warmup_steps:
        return warmup_lr(c.max_lr, c.warmup_steps, step)
    t = min(step, c.total_steps) - c.warmup_steps
    return (
        c.eta_min
        + (c.max_lr - c.eta_min) * (1 + math.cos(math.pi * t / (c.total_steps - c.warmup_steps))) / 2
    )


def _wsd(c: WSDConfig, step: int) -> float:
    start = c.total_steps - c.decay_steps
    if step < c.warmup_steps:
        return warmup_lr(c.max_lr, c.warmup_steps, step)
    if step < start:
        return c.max_lr
    x = min(step - start, c.decay_steps) / c.decay_steps
    return c.eta_min + (c.max_lr - c.eta_min) * (1 - (math.sqrt(x) if c.decay == "1-sqrt" else x))


__all__ = [
    "WSD_DECAYS",
    "CosineConfig",
    "WSDConfig",
    "check_peak_and_length",
    "check_step",
    "check_warmup_then_decay",
    "warmup_lr",
]
