"""Reference models (MLP, MNIST-1D's 1-D CNN, small CNN, CIFAR ResNet-20/56) and a user model by import
path."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import MODELS
from .importpath import load_object

IMAGE_MODELS = ("cnn", "resnet")  # 2-D convolutions: built-in image data is shaped (N, C, H, W) for them


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128, depth: int = 2) -> nn.Module:
    """A plain MLP: `depth` hidden layers of `hidden` units with ReLU."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn1d(input_shape: tuple[int, ...], num_classes: int, channels: int = 25) -> nn.Module:
    """The 1-D CNN of MNIST-1D (Greydanus 2020): three Conv1d layers (kernel 5, 3, 3; stride 2; padding 1) of
    `channels` with ReLU, then a linear head; 5,210 parameters on 40-point signals (the paper: 94% test
    accuracy).

    Inputs are (N, L) signals for `input_shape` (L,), or (N, 1, L) for (1, L).
    """
    if channels < 1:
        raise ValueError(f"cnn1d channels must be >= 1, but got {channels}.")
    length = input_shape[-1]
    for kernel in (5, 3, 3):
        length = (length + 2 - kernel) // 2 + 1
    if length < 1:
        raise ValueError(f"cnn1d needs signals of at least 4 points, but got input shape {input_shape}.")
    return nn.Sequential(
        nn.Unflatten(1, (1, input_shape[0])) if len(input_shape) == 1 else nn.Identity(),
        nn.Conv1d(1, channels, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * length, num_classes),
    )


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> nn.Module:
    """A small CNN: two conv-BN-ReLU blocks with pooling, global average pool, linear head."""
    channels = input_shape[0] if len(input_shape) == 3 else 1
    return nn.Sequential(
        nn.Unflatten(1, (1, input_shape[0])) if len(input_shape) == 2 else nn.Identity(),
        nn.Conv2d(channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            # He et al.'s option B (1x1 projection) rather than zero-padding option A: same depth, simpler
            # code.
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet(input_shape: tuple[int, ...], num_classes: int, depth: int = 20, width: int = 16) -> nn.Module:
    """CIFAR ResNet (He et al. 2016, Sec. 4.2): depth 6n+2, three stages of n blocks, widths 16/32/64.

    ResNet-56 is the network of the super-convergence paper (Smith & Topin 2017).
    """
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ValueError(f"resnet depth must be 6n+2 (20, 32, 44, 56, 110), but got {depth}.")
    n = (depth - 2) // 6
    channels = input_shape[0] if len(input_shape) == 3 else 1
    layers: list[nn.Module] = [
        nn.Conv2d(channels, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    c = width
    for stage, c_out in enumerate((width, 2 * width, 4 * width)):
        for block in range(n):
            layers.append(_BasicBlock(c, c_out, 2 if stage > 0 and block == 0 else 1))
            c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int = 0, **kwargs
) -> nn.Module:
    """Build a reference model (`mlp`, `cnn1d`, `cnn`, `resnet`) or a user's `"pkg.mod:factory"`, initialised
    from `seed`.

    A user factory is called as `factory(input_shape=..., num_classes=..., **kwargs)` and must return an
    nn.Module.

    Example:
        >>> model = build_model("mlp", (64,), 10, hidden=64)
    """
    factories = {"mlp": mlp, "cnn1d": cnn1d, "cnn": cnn, "resnet": resnet}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weights from the seed, without touching the caller's global RNG
        if name in factories:
            return factories[name](input_shape, num_classes, **kwargs)
        if ":" not in name:
            raise ValueError(f"unknown model {name!r}: expected one of {MODELS} or 'package.module:factory'.")
        model = load_object(name, "model")(input_shape=input_shape, num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model factory {name!r} returned {type(model).__name__}; it must return a torch nn.Module."
        )
    return model
