"""What runs inside a Ray trial: train a trial config, report to Tune at ASHA's rungs and at the end.

The worker side of the study: a search trial trains for the study's epochs, a final re-run trains one seed
over the budget ladder. Everything here runs in a Tune worker process; the driver side is `study.py`.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from typing import Any

from ..config import ModelSection, TrainSection, metric_mode


def set_threads(config: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(max(1, int(config.get("_threads", 1))))  # two trials must not fight over cores


def asha_rungs(epochs: int, grace_period: int, reduction_factor: int) -> list[int]:
    """The epochs at which ASHA decides (grace_period * rf^k below max_t = epochs)."""
    rungs, t = [], grace_period
    while t < epochs:
        rungs.append(t)
        t *= reduction_factor
    return rungs


def _report(row: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """One Tune result carrying every epoch since the last one (as JSON, so progress.csv keeps it intact).

    Each `tune.report` costs about 6 ms of driver time (measured: 8 trials x 30 reports), which dwarfs an
    epoch of a small model; reporting only where ASHA decides and at the end keeps the driver out of the way.
    """
    import ray
    from ray import tune

    # node_id: where the trial ran (Tune's node_ip and hostname are one value for every node of one machine);
    # finished_at: when (Tune's own timestamp has whole seconds, and a smoke trial lasts about one)
    node = ray.get_runtime_context().get_node_id()
    tune.report({**row, "node_id": node, "finished_at": time.time(), "history": json.dumps(history)})


_LOADED: dict[str, Any] = {}  # loader data by its factory call, once per worker process


def worker_data(config: dict[str, Any], data_ref: Any = None) -> Any:
    """The trial's data: tensors from the object store (`data_ref`), or, for loader data (`data_ref` None),
    the study's data factory called here, in the worker, so that the data never passes through Ray."""
    if data_ref is not None:
        import ray

        return ray.get(data_ref[0])
    from ..training import load_data

    spec = config["data"]
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _LOADED:
        image = spec.get("image", False)  # built-in digits as 8x8 images (range tests loading data by name)
        _LOADED[key] = load_data(
            spec["name"],
            root=spec.get("root"),
            image=image,
            train_fraction=spec.get("train_fraction", 1.0),
            **spec.get("options", {}),
        )
    return _LOADED[key]


def trial_trainable(config: dict[str, Any], data_ref: Any = None) -> None:
    """One trial of the study's single Tuner: a search config, or a final re-run (`stage` = "final")."""
    set_threads(config)
    data = worker_data(config, data_ref)
    if config.get("stage") == "final":
        _final_run(config, data)
    else:
        _search_run(config, data)


def _report_failure(history: list[dict[str, Any]], error: Exception) -> None:
    """Report the epochs finished since the last report before the error propagates, so a failed run keeps
    them."""
    if history:
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]
        _report({**history[-1], "status": "error", "reason": reason}, history)


def _search_run(config: dict[str, Any], data: Any) -> None:
    """Train for the study's epochs; report at ASHA's rungs (on cycle ends) and at the end."""
    history: list[dict[str, Any]] = []
    try:
        _search_epochs(config, data, history)
    except Exception as error:
        _report_failure(history, error)
        raise


def _search_epochs(config: dict[str, Any], data: Any, history: list[dict[str, Any]]) -> None:
    rungs = list(config.get("_rungs", []))
    at_cycle_end = _objective(config).worst()
    for row in train_trial(config, data, config["epochs"]):
        if row["cycle_epoch"] == row["epoch"]:
            at_cycle_end = row["val_metric"]
        # ASHA reads the metric at the last LR minimum (cycle end), never a mid-cycle value.
        row["cycle_val_metric"] = at_cycle_end
        history.append(row)
        at_rung = bool(rungs) and row["cycle_epoch"] >= rungs[0]
        while rungs and row["cycle_epoch"] >= rungs[0]:
            rungs.pop(0)
        if at_rung or row["epoch"] >= config["epochs"] or row["status"] != "ok":
            _report(row, history)
            history.clear()


def _final_run(config: dict[str, Any], data: Any) -> None:
    """One seed of one arm's best config over every budget of the ladder (shortest first)."""
    for budget in config["budgets"]:
        epochs = budget * config["epochs"]
        extra = {"budget": budget, "budget_epochs": epochs}
        rows: list[dict[str, Any]] = []
        try:
            for row in train_trial(config, data, epochs, test=True):
                rows.append({**row, **extra})
        except Exception as error:
            _report_failure(rows, error)
            raise
        _report(rows[-1], rows)


def sections(config: dict[str, Any]) -> tuple[TrainSection, ModelSection]:
    """The study's `[train]` and `[model]` settings back from a trial config, where `search.trial_settings`
    flattened them for Ray: the one place they cross the boundary as a dict."""
    train = TrainSection(**{f.name: config[f.name] for f in fields(TrainSection)})
    return train, ModelSection(name=config["model"], options=dict(config["model_options"]))


def train_trial(config: dict[str, Any], data: Any, epochs: float, test: bool = False) -> Any:
    """`train_epochs` with the study's settings a trial config carries: what every trial trains."""
    from ..training import train_epochs

    return train_epochs(config, data, epochs, *sections(config), test=test)


def _objective(config: dict[str, Any]) -> Any:
    from ..training import build_objective

    train, _ = sections(config)
    return build_objective(train.loss, train.metric, metric_mode(train))
