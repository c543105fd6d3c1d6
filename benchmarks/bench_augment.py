"""Cost of `augment_batch("crop_flip")` against the training step it feeds (CIFAR-shaped batch, ResNet-20).

    python benchmarks/bench_augment.py [batch_size] [device]

Prints the median time of the augmentation and of one forward/backward/step, and their ratio.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sched_search.lr.optim import SGDW
from sched_search.training.data import augment_batch
from sched_search.training.models import build_model


def median_ms(fn, repeats: int = 15, device: str = "cpu") -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(10, (batch,), device=device)
    model = build_model("resnet", (3, 32, 32), 10, depth=20).to(device)
    opt = SGDW(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    aug = median_ms(lambda: augment_batch(x, "crop_flip", g), device=device)
    train = median_ms(step, device=device)
    print(
        f"batch {batch} on {device}: crop_flip {aug:.2f} ms | ResNet-20 train step {train:.1f} ms | "
        f"augmentation / step = {aug / train:.3f}"
    )


if __name__ == "__main__":
    main()
