"""Prodigy (Mishchenko & Defazio 2024, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner"), from the
`prodigyopt` package: Adam whose step size `d` the optimizer estimates itself, so the LR is a multiplier.

Its README's recipe, which `arms.baseline_config("default:prodigy")` trains with: keep `lr=1` (steer with
`d_coef` instead), anneal it with a cosine over the whole run, and with a warm-up set `safeguard_warmup=True`
(the estimate of `d` then leaves the warm-up's small LR out of its denominator). Any of our schedules drives
it as it drives the others (`schedules.ScheduleLR` sets the group's `lr`, here the multiplier of `d`): a trial
config names it as `"optimizer": "prodigy"` with a schedule whose `max_lr` is 1.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["build_prodigy"]


def build_prodigy(
    params: Iterable[Tensor],
    lr: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = True,
    d_coef: float = 1.0,
) -> torch.optim.Optimizer:
    """`prodigyopt.Prodigy` with decoupled weight decay (AdamW's), as a trial trains with it.

    Args:
        params: the model's parameters.
        lr: the multiplier of Prodigy's estimated step size `d` (its README: 1; a schedule then scales it).
        weight_decay: Prodigy's own scale, >= 0: with `decouple=True` the weights shrink by
            `d * lr * weight_decay` per step, torch AdamW's decay with `d` as its LR (not our per-step shrink
            at the peak LR: `d` is not known before training).
        safeguard_warmup: leave the LR out of the denominator of `d`'s estimate, as its README asks for
            with a warm-up.
        d_coef: the coefficient of `d`'s estimate, the README's preferred knob (0.5 and 2 "typically work").

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = build_prodigy(model.parameters(), lr=1.0)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()
    """
    from prodigyopt import Prodigy

    for name, value, ok, expected in (
        ("lr", lr, lr > 0, "> 0"),
        ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
        ("d_coef", d_coef, d_coef > 0, "> 0"),
    ):
        if not ok:
            raise ValueError(f"{name} must be {expected}, but got {value!r}.")
    # Prodigy prints "Using decoupled weight decay" when it has some: library code does not print (STYLE.md)
    with contextlib.redirect_stdout(io.StringIO()):
        return Prodigy(
            params,
            lr=lr,
            weight_decay=weight_decay,
            decouple=True,
            safeguard_warmup=safeguard_warmup,
            d_coef=d_coef,
        )
