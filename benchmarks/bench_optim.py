"""Step time of our SGDW / AdamW against torch's foreach SGD / AdamW on a ResNet-56-shaped parameter list.

Run on demand: ``python benchmarks/bench_optim.py [--device cuda] [--steps 200] [--rounds 7]``. Prints the
median time per ``step()`` for each optimizer and the ratio ours / torch (target: <= 1.2).

The four optimizers are timed round-robin within each round, so drift in machine load hits all of them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sched_search.lr.optim import SGDW, AdamW


def resnet56_shapes(num_classes: int = 10) -> list[tuple[int, ...]]:
    """Parameter shapes of He et al.'s CIFAR ResNet-56 (3 stages x 9 blocks, widths 16/32/64; 0.85M
    params)."""
    shapes: list[tuple[int, ...]] = [(16, 3, 3, 3), (16,), (16,)]  # stem conv + BN weight, bias
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(9):
            shapes += [(width, c_in, 3, 3), (width,), (width,), (width, width, 3, 3), (width,), (width,)]
            c_in = width
    return [*shapes, (num_classes, 64), (num_classes,)]


def _make_params(device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = []
    for shape in resnet56_shapes():
        p = torch.randn(shape, generator=gen).to(device).requires_grad_()
        p.grad = torch.randn(shape, generator=gen).to(device) * 1e-2
        params.append(p)
    return params


def _time_steps(opt: torch.optim.Optimizer, steps: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    makers: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
        "SGDW": lambda p: SGDW(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
        "torch SGD": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True),
        "AdamW": lambda p: AdamW(p, lr=1e-3, weight_decay=1e-2, decay_mode="lr"),  # as torch decays
        "torch AdamW": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-2, foreach=True),
    }
    # One parameter list per optimizer, so no optimizer's state or weights feed another's.
    optimizers = {name: make(_make_params(args.device)) for name, make in makers.items()}
    for opt in optimizers.values():
        _time_steps(opt, 20, args.device)  # warm-up: state allocation, kernel caches

    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.rounds):
        for name, opt in optimizers.items():
            times[name].append(_time_steps(opt, args.steps, args.device))

    n_params = sum(p.numel() for p in optimizers["SGDW"].param_groups[0]["params"])
    n_tensors = len(resnet56_shapes())
    print(
        f"device {args.device}, torch {torch.__version__}, "
        f"{n_params / 1e6:.2f}M params in {n_tensors} tensors"
    )
    print(f"median over {args.rounds} rounds x {args.steps} steps, microseconds per step()")
    median = {name: statistics.median(ts) * 1e6 for name, ts in times.items()}
    for name, us in median.items():
        print(f"  {name:12s} {us:9.1f}")
    print(f"ratio SGDW / torch SGD:     {median['SGDW'] / median['torch SGD']:.3f}")
    print(f"ratio AdamW / torch AdamW:  {median['AdamW'] / median['torch AdamW']:.3f}")


if __name__ == "__main__":
    main()
