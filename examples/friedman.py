"""Your own data, loss and metric in a study: a regression task served by DataLoaders.

Friedman's #1 regression problem (scikit-learn's `make_friedman1`: 10 uniform inputs, 5 of them used,
y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise), generated offline. `studies/regression.toml`
names these functions; run it with this folder on the import path, for the driver and every Ray worker:

    PYTHONPATH=examples python -m sched_search study studies/regression.toml
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from sched_search import LoaderData


def loaders(n: int = 3000, noise: float = 1.0, batch_size: int = 64, seed: int = 0) -> LoaderData:
    """Train / val / test DataLoaders (70/15/15) over standardised inputs and targets.

    Called in the driver and once in each Ray worker: the loaders are made where they are used.
    """
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n, noise=noise, random_state=seed)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)
    n_train, n_val = int(0.7 * n), int(0.15 * n)
    mean, std = y[:n_train].mean(), y[:n_train].std()
    y = (y - mean) / std  # standardised: an MAE of 1.0 is one standard deviation of the training targets
    splits = {
        "train": (x[:n_train], y[:n_train]),
        "val": (x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        "test": (x[n_train + n_val :], y[n_train + n_val :]),
    }

    def loader(split: str, shuffle: bool = False):
        return lambda: DataLoader(
            TensorDataset(*splits[split]), batch_size, shuffle=shuffle, drop_last=shuffle
        )

    return LoaderData(
        train=loader("train", shuffle=True),
        val=loader("val"),
        test=loader("test"),
        num_outputs=1,
        name="friedman1",
    )


def huber(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss: Huber on (N, 1) outputs against (N,) targets, the mean over the batch."""
    return torch.nn.functional.huber_loss(outputs.squeeze(-1), targets)


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The metric (minimised): absolute error per example; the study's value is its mean over the set."""
    return (outputs.squeeze(-1) - targets).abs()
