"""What a trial trains on and is judged by: the loss, the metric, and the metric's direction.

Built-in losses: `cross_entropy` (class labels) and `mse` (float targets). Built-in metrics: `accuracy`
(maximised) and `loss` (the loss over the evaluation set, minimised). A user's loss is
`fn(outputs, targets) -> scalar tensor` (mean over the batch); a user's metric is
`fn(outputs, targets) -> number`, or a 1-D tensor with one value per example (its mean is the metric, and the
verdict can then pair arms example by example), called once on the whole evaluation set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import METRICS, metric_name
from .importpath import load_object


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(_like(outputs, targets), targets.to(outputs.dtype))


def _like(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 1) outputs against (N,) targets: reshaped, where mse_loss would broadcast to (N, N) silently."""
    if outputs.shape != targets.shape and outputs.numel() == targets.numel():
        return outputs.reshape(targets.shape)
    return outputs


def _per_example_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def _per_example_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    err = (_like(outputs, targets) - targets.to(outputs.dtype)) ** 2
    return err.reshape(len(err), -1).mean(1)


_LOSSES = {
    "cross_entropy": (nn.functional.cross_entropy, _per_example_cross_entropy),
    "mse": (_mse, _per_example_mse),
}


@dataclass(frozen=True)
class Objective:
    """The loss and the metric of a study, resolved to functions."""

    loss_name: str  # cross_entropy | mse | the import path
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # mean over the batch
    per_example_loss: Callable | None  # built-in losses only
    metric: str  # the name printed everywhere: accuracy, loss, or the function's name
    mode: str  # max | min
    metric_fn: Callable | None = None  # a user's metric; None for the built-ins

    def worst(self) -> float:
        """The value a diverged run gets: 0 for accuracy, else the far end of the metric's direction."""
        if self.metric == "accuracy":
            return 0.0
        return -math.inf if self.mode == "max" else math.inf


def build_objective(loss: str = "cross_entropy", metric: str = "accuracy", mode: str = "") -> Objective:
    """Resolve the study's `[train] loss`, `metric` and `metric_mode` (import paths are imported here).

    Example:
        >>> build_objective("mse", "loss").mode
        'min'
    """
    if loss in _LOSSES:
        loss_fn, per_example = _LOSSES[loss]
    else:
        loss_fn, per_example = load_object(loss, "loss"), None
    if metric in METRICS:
        return Objective(loss, loss_fn, per_example, metric, mode or METRICS[metric])
    if mode not in ("max", "min"):
        raise ValueError(f"metric {metric!r} needs metric_mode 'max' or 'min', but got {mode!r}.")
    fn = load_object(metric, "metric")
    return Objective(loss, loss_fn, per_example, metric_name(metric), mode, fn)


def forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The model on a batch's inputs: one tensor, several (a tuple: positional) or a dict (keywords)."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean loss per example
    metric: float
    per_example: torch.Tensor | None  # one metric value per example (the verdict pairs on it), if known
    n: int  # examples


@torch.no_grad()
def score(objective: Objective, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Evaluation:
    """The loss and the metric over an evaluation set given as (outputs, targets) batches.

    Per-example values: accuracy's right/wrong, the built-in losses' per-example loss for metric "loss", and a
    user metric's 1-D tensor when it returns one. A user loss gives no per-example loss; the mean is then
    weighted by batch size.
    """
    loss_sum: Any = 0.0  # a tensor on the outputs' device after the first batch: one sync at the end
    n = 0
    values: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for out, y in pairs:
        k = len(y)
        if objective.per_example_loss is not None:
            per = objective.per_example_loss(out, y)
            loss_sum = loss_sum + per.sum()
        else:
            per = None
            loss_sum = loss_sum + objective.loss(out, y).detach() * k
        n += k
        if objective.metric == "accuracy":
            values.append((out.argmax(1) == y).float())
        elif objective.metric == "loss" and per is not None:
            values.append(per.float())
        elif objective.metric_fn is not None:
            outputs.append(out)
            targets.append(y)
    if n == 0:
        raise ValueError("the evaluation set yielded no examples.")
    loss = float(loss_sum) / n
    if objective.metric_fn is not None:
        return _user_metric(objective, torch.cat(outputs), torch.cat(targets), loss)
    if values:
        per_example = torch.cat(values)
        return Evaluation(loss, float(per_example.mean()), per_example, n)
    return Evaluation(loss, loss, None, n)  # metric "loss" with a user loss


def _user_metric(
    objective: Objective, outputs: torch.Tensor, targets: torch.Tensor, loss: float
) -> Evaluation:
    value = objective.metric_fn(outputs, targets)
    n = len(targets)
    if isinstance(value, torch.Tensor) and value.dim() == 1 and len(value) == n and n > 1:
        per_example = value.detach().float()
        return Evaluation(loss, float(per_example.mean()), per_example, n)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"metric {objective.metric!r} returned {type(value).__name__}"
            f"{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}; it must return a number or a "
            f"1-D tensor of {n} per-example values."
        )
    return Evaluation(loss, float(value), None, n)


__all__ = ["Evaluation", "Objective", "build_objective", "forward", "score"]


def encode_examples(values: Any) -> str | None:
    """A final run's per-example validation values as one `val_examples` cell: '0'/'1' characters when every
    value is 0 or 1 (accuracy: right or wrong), else a JSON list of floats; None for no values.

    Example:
        >>> encode_examples([1, 0, 1]), encode_examples([0.25, 1.5]), encode_examples(None)
        ('101', '[0.25, 1.5]', None)
    """
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"encode_examples takes one value per example (1-D), but got shape {arr.shape}.")
    if arr.size == 0:
        return None
    if np.isin(arr, (0.0, 1.0)).all():
        return (arr.astype(np.uint8) + ord("0")).tobytes().decode("ascii")
    return json.dumps(arr.tolist())


def decode_examples(s: Any) -> np.ndarray | None:
    """The per-example values of a `val_examples` cell (`encode_examples`) as floats; None for None or NaN.

    Example:
        >>> decode_examples("0110").tolist(), decode_examples("[0.5, 2.0]").tolist()
        ([0.0, 1.0, 1.0, 0.0], [0.5, 2.0])
    """
    if not isinstance(s, str) or not s:
        return None
    if s.startswith("["):
        return np.asarray(json.loads(s), dtype=float)
    raw = np.frombuffer(s.encode("ascii"), dtype=np.uint8)
    if not np.isin(raw, (ord("0"), ord("1"))).all():
        raise ValueError(f"val_examples must be '0'/'1' characters or a JSON list, but got {s[:40]!r}.")
    return (raw == ord("1")).astype(float)
