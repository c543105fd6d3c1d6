"""Data you bring as DataLoaders, with your own loss and metric: the trainer, scoring, range test."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sched_search.config import ModelSection, TrainSection
from sched_search.rangetest.sweep import RangeTestConfig, run_range_test
from sched_search.training.data import LoaderData, load_data
from sched_search.training.objective import build_objective, score
from sched_search.training.train import train_epochs

ONE_CYCLE = {
    "schedule": "one_cycle",
    "optimizer": "adamw",
    "max_lr": 1e-2,
    "pct_start": 0.3,
    "div_factor": 10.0,
}
ONE_CYCLE |= {"weight_decay": 0.0, "epochs": 3, "seed": 0}


def _linear(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x @ torch.arange(1.0, 9.0) / 10 + 0.05 * torch.randn(n, generator=g))


def regression(batch_size: int = 32, test: bool = True) -> LoaderData:
    train, val, test_set = _linear(512, 0), _linear(128, 1), _linear(128, 2)
    return LoaderData(
        train=lambda: DataLoader(train, batch_size, shuffle=True, drop_last=True),
        val=lambda: DataLoader(val, 64),
        test=(lambda: DataLoader(test_set, 64)) if test else None,
        num_outputs=1,
    )


def absolute_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.squeeze(-1) - targets).abs()


def median_error(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(absolute_error(outputs, targets).median())


def test_a_regression_over_dataloaders_learns_and_reports_its_metric_per_example(monkeypatch) -> None:
    import sys
    import types

    module = types.ModuleType("loader_metrics")
    module.absolute_error = absolute_error
    monkeypatch.setitem(sys.modules, "loader_metrics", module)
    rows = list(
        train_epochs(
            ONE_CYCLE,
            regression(),
            3,
            TrainSection(batch_size=0, loss="mse", metric="loader_metrics:absolute_error", metric_mode="min"),
            ModelSection("mlp", {"hidden": 32}),
            test=True,
        )
    )
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert rows[-1]["val_metric"] < rows[0]["val_metric"] < 2.0
    values = json.loads(rows[-1]["val_examples"])  # real-valued per-example metric: a JSON list
    assert len(values) == 128
    assert sum(values) / 128 == pytest.approx(rows[-1]["val_metric"], rel=1e-4)
    assert math.isfinite(rows[-1]["test_metric"]) and rows[-1]["test_metric"] > 0


def test_loader_shuffling_follows_the_trial_seed() -> None:

    def run(seed: int) -> list[float]:
        config = {**ONE_CYCLE, "seed": seed}
        return [
            r["train_loss"]
            for r in train_epochs(
                config,
                regression(),
                2,
                TrainSection(batch_size=0, loss="mse", metric="loss"),
                ModelSection("mlp"),
            )
        ]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_a_metric_of_one_number_gives_no_per_example_values_and_no_test_split_gives_nan(monkeypatch) -> None:
    import sys
    import types

    module = types.ModuleType("loader_metrics2")
    module.median_error = median_error
    monkeypatch.setitem(sys.modules, "loader_metrics2", module)
    rows = list(
        train_epochs(
            ONE_CYCLE,
            regression(test=False),
            3,
            TrainSection(batch_size=0, loss="mse", metric="loader_metrics2:median_error", metric_mode="min"),
            ModelSection("mlp"),
            test=True,
        )
    )
    assert rows[-1]["val_examples"] is None
    assert math.isnan(rows[-1]["test_metric"]) and math.isnan(rows[-1]["test_loss"])
    assert 0 < rows[-1]["val_metric"] < rows[0]["val_metric"]


class TwoInputs(nn.Module):
    def __init__(self, input_shape=None, num_classes=2):
        super().__init__()
        self.a, self.b = nn.Linear(4, num_classes), nn.Linear(3, num_classes)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_several_inputs_as_tuple_or_dict_batches_train(kind: str, monkeypatch) -> None:
    import sys
    import types

    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(256, 4, generator=g), torch.randn(256, 3, generator=g)
    y = (left[:, 0] + right[:, 0] > 0).long()

    def batches():
        for i in range(0, 256, 32):
            if kind == "tuple":
                yield left[i : i + 32], right[i : i + 32], y[i : i + 32]
            else:
                yield {"left": left[i : i + 32], "right": right[i : i + 32], "label": y[i : i + 32]}

    data = LoaderData(train=batches, val=batches, num_outputs=2, steps_per_epoch=8)
    module = types.ModuleType("two_inputs")
    module.TwoInputs = TwoInputs
    monkeypatch.setitem(sys.modules, "two_inputs", module)
    config = {**ONE_CYCLE, "max_lr": 0.05, "epochs": 8}
    rows = list(
        train_epochs(config, data, 8, TrainSection(batch_size=0), ModelSection("two_inputs:TwoInputs"))
    )
    assert rows[-1]["val_metric"] > 0.9, rows[-1]  # accuracy, from (N, 2) outputs and int labels


def test_steps_per_epoch_sets_the_epoch_of_an_endless_loader() -> None:
    drawn = []

    def endless():
        g = torch.Generator().manual_seed(0)
        while True:
            drawn.append(1)
            x = torch.randn(16, 8, generator=g)
            yield x, x.sum(1)

    data = LoaderData(train=endless, val=lambda: [(torch.ones(4, 8), torch.ones(4) * 8)], num_outputs=1)
    data = LoaderData(**{**data.__dict__, "steps_per_epoch": 5, "input_shape": (8,)})
    rows = list(
        train_epochs(
            ONE_CYCLE, data, 2, TrainSection(batch_size=0, loss="mse", metric="loss"), ModelSection("mlp")
        )
    )
    assert len(rows) == 2 and len(drawn) == 10  # 5 batches per epoch, one stream across epochs


def test_score_keeps_per_example_losses_and_refuses_a_metric_that_is_not_a_number(monkeypatch) -> None:
    import sys
    import types

    out, y = torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0.0, 0.0, 1.0])
    result = score(build_objective("mse", "loss"), [(out[:2], y[:2]), (out[2:], y[2:])])
    assert result.per_example.tolist() == [0.0, 1.0, 4.0] and result.metric == pytest.approx(5 / 3)
    module = types.ModuleType("word_metric")
    module.word = lambda outputs, targets: "good"
    monkeypatch.setitem(sys.modules, "word_metric", module)
    with pytest.raises(TypeError, match="metric 'word' returned str; it must return a number"):
        score(build_objective("mse", "word_metric:word", "max"), [(out, y)])


def test_the_range_test_sweeps_loader_data_with_the_study_loss(monkeypatch) -> None:
    import sys
    import types

    module = types.ModuleType("loader_data")
    module.regression = regression
    monkeypatch.setitem(sys.modules, "loader_data", module)
    data = load_data("loader_data:regression")
    sweep = run_range_test(data, "mlp", "adamw", RangeTestConfig(num_steps=200), None, loss="mse")
    result = sweep.best
    assert result.steps_per_epoch == 16  # len() of the training DataLoader: 512 / 32
    assert result.verdict == "ok", result.reading.reasons
    assert result.label_entropy is None  # not a classification: no class-entropy floor


PROBE = """
import os
from pathlib import Path

import friedman


def loaders(**options):
    # each process that makes the loaders leaves its pid: the driver (preflight) and the workers (range tests,
    # trials)
    (Path(os.environ["PROBE_DIR"]) / str(os.getpid())).touch()
    return friedman.loaders(**options)
"""


@pytest.mark.slow
def test_regression_study_over_a_dataloader_factory_end_to_end(tmp_path) -> None:
    """studies/regression.toml as documented (examples/friedman.py): DataLoaders made in each worker, a user
    loss, a minimised user metric; range test, search, finals, verdict and report all speak of that metric."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from sched_search.results.run import load_run

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "pids").mkdir()
    study = (root / "studies" / "regression.toml").read_text()
    assert 'name = "friedman:loaders"' in study
    study = study.replace('name = "friedman:loaders"', 'name = "probe:loaders"')
    # fewer runs than documented (the machinery, not the answer): 2 trials per arm, the seed's baseline only,
    # no attribution ladder (15 runs more)
    study = study.replace(
        "trials_per_arm = 3", 'trials_per_arm = 2\nbaselines = ["default:adam"]\nattribution = false'
    )
    (tmp_path / "regression.toml").write_text(f'runs_dir = "{tmp_path / "runs"}"\n' + study)
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}:{root / 'examples'}:{tmp_path}",
        "PROBE_DIR": str(tmp_path / "pids"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "sched_search", "study", str(tmp_path / "regression.toml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = next((tmp_path / "runs").glob("regression-*"))
    # the workers called the factory themselves: pids beyond the driver's, and they are the trials' pids
    pids = {int(p.name) for p in (tmp_path / "pids").iterdir()}
    trial_pids = {
        int(pid) for f in (run_dir / "ray" / "study").glob("*/progress.csv") for pid in pd.read_csv(f).pid
    }
    assert trial_pids and trial_pids <= pids, (trial_pids, pids)
    # the range tests' sweeps ran in Ray tasks, which called the factory too; the driver only in preflight
    sweep_pids = {
        r["pid"] for f in run_dir.glob("range_test_*.json") for r in json.loads(f.read_text())["ran_on"]
    }
    assert sweep_pids and sweep_pids <= pids, (sweep_pids, pids)
    assert len(pids - trial_pids - sweep_pids) == 1  # the driver: preflight only
    # the range test swept the user's loss over the loaders, and passed its sanity check
    sweep = json.loads((run_dir / "range_test_adamw.json").read_text())
    assert sweep["verdict"] == "ok" and sweep["data"]["steps_per_epoch"] == 32  # 2100 / 64, drop_last
    # selection, the verdict and the report follow the metric, lower being better
    run = load_run(run_dir)
    assert run.config["metric"] == "mae" and run.config["metric_mode"] == "min"
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["metric"] == "mae" and verdict["mode"] == "min" and verdict["paired_by_example"]
    assert verdict["eval_examples"] == 450
    means = run.leaderboard.set_index("arm")["mean_val_metric"]
    leader = verdict["leader"]
    assert means[leader] == means.min()
    assert "mae" in verdict["headline"] + verdict["rule"] and "accuracy" not in verdict["rule"]
    report = (run_dir / "report.md").read_text()
    assert "mae" in report
    assert "acc %" not in report and "Target accuracy" not in report
    trials = run.trials[run.trials.stage == "final"]
    assert trials.val_examples.str.startswith("[").all()  # real-valued per-example errors, paired by example
    # the console named the metric on every trial line
    lines = [line for line in done.stdout.splitlines() if "] [search " in line or "] [final " in line]
    assert lines and all(" val mae " in line for line in lines)
