"""Mixed precision and memory format as configuration: what `[train] precision` and `channels_last` mean.

fp32 is the reference. bf16 runs the forward pass under autocast in bfloat16 (same range as fp32, no scaling
needed); fp16 also needs a gradient scaler against underflow, and a CUDA device. channels_last stores 4-D
image tensors NHWC, which tensor cores prefer; other tensors are left as they are.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..config import PRECISIONS

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: str) -> None:
    """Refuse a precision the device cannot run, naming the fix."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, but got {precision!r}.")
    kind = torch.device(device).type
    if precision == "fp16" and kind != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device, but device is {device!r}; use 'bf16' or 'fp32'."
        )
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            "precision 'bf16' is not supported by this GPU; use 'fp16' (with a scaler) or 'fp32'."
        )


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's context: torch.autocast in bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (a disabled scaler passes calls straight through)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def to_memory_format(x: Any, channels_last: bool) -> Any:
    """`x` in channels_last when asked and 4-D (images); anything else unchanged."""
    if channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
