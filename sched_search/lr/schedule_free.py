"""Schedule-free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"), from the `schedulefree`
package, with our decoupled weight decay, and the train/eval switch every trainer must honour.

The optimizer steps at y (between its iterate z and their average x) and must be put in train mode before
training steps (`optimizer.train()`) and in eval mode, at x, before evaluating or saving (`optimizer.eval()`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["SCHEDULE_FREE_NAMES", "build_schedule_free", "is_schedule_free"]


SCHEDULE_FREE_NAMES = ("adamw", "sgd")


def build_schedule_free(
    name: str,
    params: Iterable[Tensor],
    lr: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Schedule-Free AdamW or SGD (Defazio et al. 2024, "The Road Less Scheduled"; the `schedulefree`
    package): no LR schedule, the optimizer's own linear warm-up over `warmup_steps` and its averaging.

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
    import schedulefree

    for name_, value, ok in (
        ("lr", lr, lr > 0),
        ("weight_decay", weight_decay, weight_decay >= 0),
        ("warmup_steps", warmup_steps, warmup_steps >= 0),
    ):
        if not ok:
            raise ValueError(f"{name_} must be {'> 0' if name_ == 'lr' else '>= 0'}, but got {value!r}.")
    decay = weight_decay / lr
    if name == "adamw":
        return schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=decay, warmup_steps=warmup_steps)
    if name == "sgd":
        return schedulefree.SGDScheduleFree(
            params, lr=lr, momentum=momentum, weight_decay=decay, warmup_steps=warmup_steps
        )
    raise ValueError(f"unknown schedule-free optimizer {name!r}: expected one of {SCHEDULE_FREE_NAMES}.")


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer keeps separate training and evaluation weights (`schedulefree`'s `.train()` /
    `.eval()`): evaluation and saving must then happen after `.eval()`."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))
