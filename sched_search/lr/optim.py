"""SGDW and AdamW with decoupled, schedule-scaled weight decay.

After Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (Algorithms 1 and 2). Both
optimizers shrink the weights directly, ``theta_t = theta_{t-1} - update_t - eta_t * lambda * theta_{t-1}``,
instead of adding ``lambda * theta`` to the gradient, so the decay never passes through the momentum buffer or
Adam's second-moment normalisation.

Two readings of the decay's step size, chosen per optimizer with ``decay_mode``:

* ``"schedule"`` (the paper's): ``eta_t * lambda`` with ``eta_t = group["lr"] / group["peak_lr"]``, the
  schedule multiplier in [0, 1]. Weight decay follows the LR *schedule* but not the LR's *size*, so
  ``lambda`` and the peak LR can be tuned independently (the paper's Fig. 2). ``lambda`` is then a per-step
  shrink at peak LR: roughly ``lr * lambda_torch``.
* ``"lr"`` (torch's ``AdamW``): ``lr * lambda``. Decay scales with the LR itself, which couples the two
  hyperparameters again (pytorch/pytorch#38853).

The schedule's peak follows the scheduler in use: ``ScheduleLR`` (``schedules.py``) sets ``group["peak_lr"]``
to its max LR; torch's ``OneCycleLR`` keeps its own in ``group["max_lr"]``, which then takes precedence;
otherwise ``peak_lr`` is the group's LR at construction. Should the LR rise above that peak (another torch
scheduler, such as ``CyclicLR``), the multiplier is clamped to 1 with a one-time warning instead of decaying
harder than at the peak. Every hyperparameter (``lr``, ``momentum``, ``betas``) is read from the group at each
step, so any torch LR scheduler, including ``OneCycleLR`` with momentum cycling, drives these optimizers.

``AdamW`` shares ``torch.optim.AdamW``'s name and defaults but has no default ``decay_mode``: the same
``weight_decay`` decays about ``1 / lr`` times harder in schedule mode (1000x at lr 1e-3), so a swapped import
must not change training silently. ``docs/optimizers.md`` maps torch's ``weight_decay`` onto ours.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["SGDW", "AdamW", "normalized_weight_decay"]

_DECAY_MODES = ("schedule", "lr")


def normalized_weight_decay(lambda_norm: float, batch_size: int, n_train: int, epochs: int) -> float:
    """Raw weight decay from the normalized one, ``lambda = lambda_norm * sqrt(b / (B * T))``.

    Loshchilov & Hutter (2019), Appendix B.1: normalising by the number of weight updates per run
    (``B * T / b``) makes the best ``lambda_norm`` transfer across batch sizes and training lengths.

    Args:
        lambda_norm: Normalized weight decay (the paper's good values are of order 0.025-0.05).
        batch_size: Batch size ``b``.
        n_train: Number of training examples ``B``.
        epochs: Number of epochs ``T``.

    Returns:
        The raw ``lambda`` to pass as ``weight_decay`` with ``decay_mode="schedule"``.

    Example:
        >>> normalized_weight_decay(0.05, batch_size=128, n_train=50_000, epochs=100)  # doctest: +ELLIPSIS
        0.000252...
    """
    _check("lambda_norm", lambda_norm, lambda_norm >= 0, ">= 0")
    for name, value in (("batch_size", batch_size), ("n_train", n_train), ("epochs", epochs)):
        _check(name, value, value > 0, "> 0")
    return lambda_norm * math.sqrt(batch_size / (n_train * epochs))


def _check(name: str, value: object, ok: bool, expectation: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expectation}, but got {value!r}.")


def _check_common(lr: float, weight_decay: float, decay_mode: str) -> None:
    _check("lr", lr, lr >= 0, ">= 0")
    _check("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
    _check("decay_mode", decay_mode, decay_mode in _DECAY_MODES, f"one of {_DECAY_MODES}")


def _use_foreach(foreach: bool | None, params: list[Tensor]) -> bool:
    if foreach is not None:
        return foreach
    return all(p.device.type in ("cpu", "cuda") for p in params)


def _with_grads(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
    params = [p for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    if any(g.is_sparse for g in grads):
        raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients.")
    return params, grads


class _Decoupled(torch.optim.Optimizer):
    """Shared plumbing: every param group gets ``peak_lr`` (its LR at construction) and a ``decay_mode``."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self.param_groups[-1].setdefault("peak_lr", self.param_groups[-1]["lr"])

    def _decay_factor(self, group: dict[str, Any]) -> float:
        """The multiplier ``1 - eta_t * lambda`` (or ``1 - lr * lambda``) applied to ``theta_{t-1}``."""
        lam, lr = group["weight_decay"], group["lr"]
        if lam == 0:
            return 1.0
        if group["decay_mode"] == "lr":
            return 1 - lr * lam  # the exact expression torch.optim.AdamW uses, so the two agree bit for bit
        # torch's OneCycleLR keeps its peak in the group as "max_lr"; any other scheduler sets "peak_lr"
        # (ours) or leaves the LR at construction there.
        key = "max_lr" if "max_lr" in group else "peak_lr"
        peak = group[key]
        _check(f'group["{key}"]', peak, peak > 0, '> 0 with decay_mode="schedule"')
        if lr <= peak * (1 + 1e-9):  # a schedule's own peak can come out a rounding error above max_lr
            return 1 - min(lr / peak, 1.0) * lam
        if not getattr(self, "_warned_above_peak", False):
            self._warned_above_peak = True
            warnings.warn(
                f"{type(self).__name__}: lr={lr:.4g} is above the param group's {key}={peak:.4g}, so the "
                "decay's schedule multiplier lr / peak_lr would exceed 1; it is clamped to 1 (this warning "
                "is shown once). A scheduler other than sched_search's ScheduleLR or torch's OneCycleLR "
                'drives this optimizer: set each param group\'s "peak_lr" to its largest LR.',
                stacklevel=4,
            )
        return 1 - lam

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # A state dict saved by torch's SGD or AdamW lacks our keys: take them from this optimizer's
        # arguments.
        for group in self.param_groups:
            group.setdefault("peak_lr", group["lr"])
            for key in ("decay_mode", "foreach"):
                group.setdefault(key, self.defaults[key])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Performs one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads = _with_grads(self, group)
            if params:
                self._update_group(group, params, grads)
        return loss

    def _update_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        """Update one param group's parameters that have gradients (the optimizer's own rule)."""
        raise NotImplementedError


class SGDW(_Decoupled):
    """SGD with momentum and decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 1).

    The momentum is ``torch.optim.SGD``'s (``buf = momentum * buf + (1 - dampening) * g`` from ``buf = g_1``;
    step ``lr * buf``, or ``lr * (g + momentum * buf)`` with Nesterov), so with ``weight_decay=0`` this *is*
    torch's SGD. The decay acts on the weights, ``theta_t = theta_{t-1} - step - d_t * theta_{t-1}``, with
    ``d_t = eta_t * lambda`` (``decay_mode="schedule"``, ``eta_t = lr / peak_lr``) or ``d_t = lr * lambda``
    (``decay_mode="lr"``); unlike torch's SGD, which adds ``lambda * theta`` to the gradient, it never enters
    the momentum buffer.

    Args:
        params: Parameters or param groups; a group may set its own ``peak_lr`` (default: its ``lr``).
        lr: Learning rate (``eta_t * alpha`` in the paper).
        momentum: Momentum factor in [0, 1); read from the group each step, so ``OneCycleLR`` may cycle it.
        dampening: Dampening for momentum, in [0, 1].
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        weight_decay: ``lambda`` >= 0; its scale depends on ``decay_mode`` (see the module docstring).
        decay_mode: ``"schedule"`` (the paper's ``eta_t * lambda``) or ``"lr"`` (``lr * lambda``).
        foreach: Use torch's multi-tensor kernels; ``None`` uses them when all params are on CPU or CUDA.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = SGDW(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        decay_mode: str = "schedule",
        foreach: bool | None = None,
    ) -> None:
        _check_common(lr, weight_decay, decay_mode)
        _check("momentum", momentum, 0 <= momentum < 1, "in [0, 1)")
        _check("dampening", dampening, 0 <= dampening <= 1, "in [0, 1]")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening == 0, but got momentum={momentum!r}, "
                f"dampening={dampening!r}."
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "decay_mode": decay_mode,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        momentum = group["momentum"]
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        update = _sgdw_foreach if _use_foreach(group["foreach"], params) else _sgdw_single
        update(
            params,
            grads,
            bufs,
            lr=group["lr"],
            momentum=momentum,
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            decay=self._decay_factor(group),
        )
        if momentum != 0:
            for p, buf in zip(params, bufs):
                self.state[p]["momentum_buffer"] = buf


def _sgdw_single(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    decay: float,
) -> None:
    for i, (p, g) in enumerate(zip(params, grads)):
        if decay != 1.0:
            # Shrinking theta_{t-1} before adding the step equals Algorithm 1's line 9: the step ignores
            # theta.
            p.mul_(decay)
        if momentum != 0:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = g.detach().clone()  # torch's SGD starts the buffer at g_1, undamped
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)
            g = g.add(buf, alpha=momentum) if nesterov else buf
        p.add_(g, alpha=-lr)


def _sgdw_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    decay: float,
) -> None:
    if decay != 1.0:
        torch._foreach_mul_(params, decay)
    if momentum != 0:
        if any(buf is None for buf in bufs):
            for i, (g, buf) in enumerate(zip(grads, bufs)):
                if buf is None:
                    bufs[i] = g.detach().clone()
                else:
                    buf.mul_(momentum).add_(g, alpha=1 - dampening)
        else:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        # Out of place, unlike torch's SGD, so p.grad is left as backward() wrote it.
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs  # type: ignore[arg-type]
    torch._foreach_add_(params, grads, alpha=-lr)


class AdamW(_Decoupled):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2).

    The Adam part (moments, bias correction, ``eps`` outside the square root) is ``torch.optim.AdamW``'s,
    operation for operation. The decay is ``theta <- (1 - d_t) * theta_{t-1}`` with ``d_t = eta_t * lambda``
    (``decay_mode="schedule"``, the paper's line 12 with ``eta_t = lr / peak_lr``) or ``d_t = lr * lambda``
    (``decay_mode="lr"``, torch's: then this equals ``torch.optim.AdamW`` bit for bit). In schedule mode the
    decay does not grow or shrink with the peak LR, only with the schedule, so tune ``weight_decay`` on a
    smaller scale than torch's: ``peak_lr`` times torch's value gives the same decay at every step.

    ``decay_mode`` has no default, unlike every other argument (torch's defaults): the two modes differ by a
    factor ``1 / lr`` at the same ``weight_decay``, so replacing ``torch.optim.AdamW`` by this class must be a
    choice, never a silent change of training.

    Args:
        params: Parameters or param groups; a group may set its own ``peak_lr`` (default: its ``lr``).
        lr: Learning rate (``eta_t * alpha`` in the paper).
        betas: ``(beta1, beta2)``, each in [0, 1); read from the group each step, so ``OneCycleLR`` may cycle
            ``beta1``.
        eps: Term added to the denominator, >= 0.
        weight_decay: ``lambda`` >= 0; its scale depends on ``decay_mode`` (see above).
        decay_mode: Keyword only, required: ``"schedule"`` (the paper's ``eta_t * lambda``) or ``"lr"``
            (torch's ``lr * lambda``).
        foreach: Use torch's multi-tensor kernels; ``None`` uses them when all params are on CPU or CUDA.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4, decay_mode="schedule")
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        decay_mode: str,
        foreach: bool | None = None,
    ) -> None:
        _check_common(lr, weight_decay, decay_mode)
        _check("betas", betas, len(betas) == 2 and all(0 <= b < 1 for b in betas), "two values in [0, 1)")
        _check("eps", eps, eps >= 0, ">= 0")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decay_mode": decay_mode,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            # A Python int: torch keeps a CPU tensor here and pays a kernel per step to count.
            state["step"] += 1
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(float(state["step"]))
        beta1, beta2 = group["betas"]
        update = _adamw_foreach if _use_foreach(group["foreach"], params) else _adamw_single
        update(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            decay=self._decay_factor(group),
        )


def _adamw_single(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    decay: float,
) -> None:
    for p, g, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        if decay != 1.0:
            p.mul_(decay)  # before the Adam step, as Algorithm 2's line 12 uses theta_{t-1}
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)


def _adamw_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    decay: float,
) -> None:
    if decay != 1.0:
        torch._foreach_mul_(params, decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    step_sizes = [(lr / (1 - beta1**step)) * -1 for step in steps]
    bias_correction2_sqrt = [(1 - beta2**step) ** 0.5 for step in steps]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
