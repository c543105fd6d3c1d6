"""Wall time of `range_test` against a bare training loop of the same steps on the same model and data.

Run on demand:
``python benchmarks/bench_rangetest.py [--models mlp cnn] [--steps 300] [--rounds 7] [--threads 1]``.
Prints the median and the fastest time of each and the ratio range test / bare loop of the medians
(target: <= 1.10).
On a shared machine pass ``--threads 1``: intra-op threads that wait on a busy core make both timings erratic.

The range test runs with `end_lr=1e-2`, below where the digits loss turns up, so it takes all `--steps` steps
and the two sides do the same number of optimizer steps. The bare loop is what a user would write: seeded
permutation batches (`sched_search.training.data.batches`), zero_grad, forward, backward, step, nothing
else. The two alternate within each round, so drift in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from sched_search.rangetest.sweep import RangeTestConfig, range_test
from sched_search.training.data import TensorData, batches, load_digits
from sched_search.training.models import build_model

BATCH_SIZE = 64


def _bare_loop(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, steps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    done = 0
    while done < steps:
        for x, y in batches(data.x_train, data.y_train, BATCH_SIZE, gen):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                return


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, steps: int, rounds: int) -> tuple[list[float], list[float]]:
    data = load_digits(image=name == "cnn")
    model = build_model(name, data.input_shape, data.num_classes, seed=0)
    initial = copy.deepcopy(model.state_dict())
    config = RangeTestConfig(num_steps=steps, end_lr=1e-2)

    def run_range_test() -> None:
        result = range_test(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), data, config)
        assert len(result.losses) == steps, f"stopped after {len(result.losses)} of {steps} steps"

    def run_bare() -> None:
        model.load_state_dict(initial)  # each repetition from the same start as the range test
        _bare_loop(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), data, steps)

    run_range_test(), run_bare()  # warm-up: allocator, lazy init, first-call imports
    rt, bare = [], []
    for _ in range(rounds):
        rt.append(_time(run_range_test))
        bare.append(_time(run_bare))
    return rt, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps, batch {BATCH_SIZE}"
    )
    print(f"{'model':<6} {'range test median/min (s)':>26} {'bare loop median/min (s)':>25} {'ratio':>6}")
    for name in args.models:
        rt, bare = bench(name, args.steps, args.rounds)
        rt_med, bare_med = statistics.median(rt), statistics.median(bare)
        print(
            f"{name:<6} {rt_med:>17.4f} / {min(rt):.4f} {bare_med:>16.4f} / {min(bare):.4f} "
            f"{rt_med / bare_med:>6.3f}"
        )


if __name__ == "__main__":
    main()
