"""The trainer over DataLoaders (`LoaderData`) against a bare loop over the same DataLoaders, and against the
trainer over tensors, side by side in one run.

    python benchmarks/bench_loaders.py [rounds] [epochs]

The default study's data and model (MNIST-1D, cnn1d, batch 100, one-cycle AdamW), one thread, CPU. Each round
times the three in alternating order; medians are printed with the ratios trainer / bare loop over loaders
(the trainer's own cost, target <= 1.05x) and loaders / tensors (a DataLoader's cost on a model this small).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sched_search.config import ModelSection, TrainSection
from sched_search.lr.arms import optimizer_and_scheduler
from sched_search.training.data import LoaderData, TensorData, load_mnist1d
from sched_search.training.models import build_model
from sched_search.training.train import train_epochs

CONFIG = {
    "schedule": "one_cycle",
    "optimizer": "adamw",
    "max_lr": 3e-3,
    "pct_start": 0.3,
    "div_factor": 25.0,
    "weight_decay": 1e-5,
    "seed": 0,
}
BATCH = 100


def as_loaders(data: TensorData) -> LoaderData:
    train, val = TensorDataset(data.x_train, data.y_train), TensorDataset(data.x_val, data.y_val)
    return LoaderData(
        train=lambda: DataLoader(train, BATCH, shuffle=True, drop_last=True),
        val=lambda: DataLoader(val, 1024),
        num_outputs=data.num_classes,
    )


def bare_loop(data: LoaderData, epochs: int) -> None:
    """What the trainer does over loaders, written out: train, then the val loss and accuracy per epoch."""
    torch.manual_seed(0)
    model = build_model("cnn1d", (40,), 10, seed=0)
    spe = len(data.train())
    optimizer, scheduler = optimizer_and_scheduler(
        {**CONFIG, "epochs": epochs}, model.parameters(), epochs, spe
    )
    for _ in range(epochs):
        for x, y in data.train():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            for x, y in data.val():
                out = model(x)
                float(torch.nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())
        model.train()


def trainer(data: TensorData | LoaderData, epochs: int) -> None:
    for _ in train_epochs(
        {**CONFIG, "epochs": epochs}, data, epochs, TrainSection(batch_size=BATCH), ModelSection("cnn1d")
    ):
        pass


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(1)
    tensors = load_mnist1d()
    loaders = as_loaders(tensors)
    runs = {
        "bare loop, loaders": lambda: bare_loop(loaders, epochs),
        "trainer, loaders": lambda: trainer(loaders, epochs),
        "trainer, tensors": lambda: trainer(tensors, epochs),
    }
    trainer(tensors, 1)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"CPU, 1 thread: MNIST-1D, cnn1d, batch {BATCH}, {epochs} epochs, median of {rounds} rounds")
    for name, t in med.items():
        print(f"  {name}: {t:.2f} s")
    print(f"  trainer / bare loop (loaders): {med['trainer, loaders'] / med['bare loop, loaders']:.3f}")
    print(f"  loaders / tensors (trainer): {med['trainer, loaders'] / med['trainer, tensors']:.3f}")


if __name__ == "__main__":
    main()
