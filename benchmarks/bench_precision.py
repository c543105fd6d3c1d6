"""The trainer against a bare loop at each precision, and bf16 against fp32, side by side in one run.

    python benchmarks/bench_precision.py [device] [epochs] [rounds] [precisions, e.g. fp32,bf16]

CIFAR-shaped stand-in data (no download), ResNet-20, one-cycle SGDW, batch 512 on a GPU (128 on a CPU). Each
round times, per precision, `train.train_epochs` (the study's trainer: evaluation per epoch included) and a
bare loop doing the same steps (autocast, channels_last on a GPU, the same optimizer and scheduler, one
evaluation per epoch). Rounds alternate the order; medians are printed with the ratios trainer / bare loop
(target <= 1.05x) and bf16 / fp32. fp16 runs on CUDA only.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sched_search.config import ModelSection, TrainSection
from sched_search.lr.arms import build_schedule, optimizer_and_scheduler
from sched_search.training.data import TensorData, batches, steps_per_epoch
from sched_search.training.models import build_model
from sched_search.training.precision import autocast, grad_scaler, to_memory_format
from sched_search.training.train import evaluate, train_epochs

CONFIG = {
    "schedule": "one_cycle",
    "optimizer": "sgdw",
    "max_lr": 0.4,
    "pct_start": 0.3,
    "div_factor": 10.0,
    "weight_decay": 5e-4,
    "seed": 0,
}


def stand_in_data(n_train: int, device: str) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 1000, 3, 32, 32, generator=g)
    y = torch.randint(10, (n_train + 1000,), generator=g)
    return TensorData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], x[:10], y[:10], 10, "stand-in").to(
        device
    )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_loop(data: TensorData, epochs: int, batch: int, device: str, precision: str, nhwc: bool) -> None:
    """What the trainer does, written out: the reference the trainer's overhead is measured against."""
    spe = steps_per_epoch(len(data.x_train), batch)
    config = {**CONFIG, "epochs": epochs}
    model = build_model("resnet", (3, 32, 32), 10, seed=0, depth=20)
    model = model.to(device, memory_format=torch.channels_last if nhwc else torch.preserve_format)
    optimizer, scheduler = optimizer_and_scheduler(config, model.parameters(), epochs, spe)
    scaler = grad_scaler(device, precision)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for x, y in batches(data.x_train, data.y_train, batch, generator):
            with autocast(device, precision):
                loss = torch.nn.functional.cross_entropy(model(to_memory_format(x, nhwc)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
        evaluate(model, data, "val", precision=precision, channels_last=nhwc)
    sync(device)


def trainer(data: TensorData, epochs: int, batch: int, device: str, precision: str, nhwc: bool) -> None:
    config = {**CONFIG, "epochs": epochs}
    rows = train_epochs(
        config,
        data,
        epochs,
        TrainSection(batch_size=batch, device=device, precision=precision, channels_last=nhwc),
        ModelSection("resnet", {"depth": 20}),
    )
    for _ in rows:
        pass
    sync(device)


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    gpu = device.startswith("cuda")
    batch, n_train, nhwc = (512, 45_000, True) if gpu else (128, 2_048, False)
    precisions = ["fp32", "bf16"] + (["fp16"] if gpu else [])
    if len(sys.argv) > 4:  # bf16 on a CPU without bf16 units is slow: "fp32" alone times the trainer there
        precisions = sys.argv[4].split(",")
    data = stand_in_data(n_train, device)
    assert build_schedule({**CONFIG, "epochs": epochs}, epochs, steps_per_epoch(n_train, batch)).max_lr == 0.4
    trainer(data, 1, batch, device, "fp32", nhwc)  # warm-up: kernels, allocator
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for precision in precisions if r % 2 == 0 else precisions[::-1]:
            for name, fn in (("trainer", trainer), ("bare", bare_loop))[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                fn(data, epochs, batch, device, precision, nhwc)
                times.setdefault((name, precision), []).append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{torch.cuda.get_device_name() if gpu else 'CPU'}: ResNet-20, {n_train} images, batch {batch}, "
        f"{epochs} epochs, channels_last {nhwc}, median of {rounds} rounds"
    )
    for precision in precisions:
        t, b = med[("trainer", precision)], med[("bare", precision)]
        print(f"  {precision}: trainer {t:.2f} s, bare loop {b:.2f} s, trainer / bare = {t / b:.3f}")
    if {"bf16", "fp32"} <= set(precisions):
        print(f"  bf16 / fp32 (trainer): {med[('trainer', 'bf16')] / med[('trainer', 'fp32')]:.3f}")


if __name__ == "__main__":
    main()
