"""Checks that need the data, the model, torch or Ray, run before a study creates its run folder.

`config.validate` checks a study file on its own; these check it against the world: the runs folder can be
written, the device exists, the data and model factories accept their options and build, the labels fit the
classes, a joined cluster is reachable and has the resources a trial asks for. Every error is a
`StudyFileError` naming the file, the key, the value and what was expected, so the CLI prints one line and
exits 2.
"""

from __future__ import annotations

import errno
import inspect
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import StudyConfig, StudyFileError
from ..training import check_precision

CONNECT_TIMEOUT_S = 10.0  # a TCP connect to a live head on a LAN takes milliseconds


class ClusterError(RuntimeError):
    """A Ray cluster that cannot be joined or can never run a trial; the message names the address."""


def _err(cfg: StudyConfig, key: str, message: str) -> StudyFileError:
    return StudyFileError(f"{cfg.source}: {key} {message}")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


# --------------------------------------------------------------------------------------------- the study


def check_runs_dir(cfg: StudyConfig) -> None:
    """The runs folder is a folder (or can be made one) that this user can write."""
    path = Path(cfg.runs_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise _err(
            cfg,
            "runs_dir",
            f"must be a folder, but {str(existing)!r} is a file (runs_dir = {cfg.runs_dir!r}).",
        )
    try:
        with tempfile.TemporaryFile(
            dir=existing
        ) as f:  # os.access says yes to root even on read-only file systems
            f.write(b"\0")  # a full disk still makes an empty file
            f.flush()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the study says so in its own line (`diskfull.py`)
            raise OSError(e.errno, e.strerror, str(existing)) from None
        raise _err(
            cfg,
            "runs_dir",
            f"must be a writable folder, but {str(existing)!r} is not ({e.strerror}; "
            f"runs_dir = {cfg.runs_dir!r}).",
        ) from None


def check_device(cfg: StudyConfig) -> None:
    """`[train] device` names a device this torch can use."""
    import torch

    device = cfg.train.device
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        build = (
            "a CPU-only build"
            if torch.version.cuda is None
            else f"CUDA {torch.version.cuda}, but no GPU is visible"
        )
        raise _err(
            cfg, "[train] device", f"is {device!r}, but this torch {torch.__version__} is {build}; use 'cpu'."
        )
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise _err(
            cfg,
            "[train] device",
            f"is {device!r}, but this machine has {torch.cuda.device_count()} GPU(s) (cuda:0..).",
        )
    try:
        check_precision(cfg.train.precision, device)
    except ValueError as e:
        raise _err(cfg, "[train] precision", str(e)) from None


def _check_options(
    cfg: StudyConfig, section: str, what: str, factory: Callable, fixed: dict, options: dict
) -> None:
    """The options bind to the factory's signature (beyond the arguments the study passes itself)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return  # a builtin or C callable: its own error will say
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [
        n for n, p in params.items() if n not in fixed and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    for key, value in options.items():
        if key not in allowed:
            raise _err(
                cfg,
                f"[{section}] {key}",
                f"= {value!r} is not an option of {what}; expected one of {allowed} (or none).",
            )


def load_checked_data(cfg: StudyConfig) -> Any:
    """The study's data, loaded once, with its options, labels and sizes checked."""
    from ..training import IMAGE_MODELS, load_object
    from ..training import data as data_mod

    name, options = cfg.data.name, dict(cfg.data.options)
    image = cfg.model.name in IMAGE_MODELS
    builtins = {
        "mnist1d": (data_mod.load_mnist1d, {}),
        "digits": (data_mod.load_digits, {"image": image}),
        "synthetic": (data_mod.load_synthetic, {}),
        "cifar10": (data_mod.load_cifar10, {"root": cfg.data.root}),
    }
    try:
        factory, fixed = builtins[name] if name in builtins else (load_object(name, "data"), {})
    except (ImportError, ValueError, TypeError) as e:
        raise _err(cfg, "[data] name", f"= {name!r} cannot be loaded: {e}") from None
    _check_options(cfg, "data", f"data {name!r}", factory, fixed, options)
    try:
        data = data_mod.load_data(name, root=cfg.data.root, image=image, **options)
    except TypeError as e:  # a factory that returns something else
        raise _err(cfg, "[data] name", f"= {name!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 (a user factory may raise anything; say which key led there)
        raise _err(
            cfg, "[data]", f"name = {name!r} with options {options} failed to load: {_one_line(e)}"
        ) from None
    if isinstance(data, data_mod.LoaderData):
        _check_loaders(cfg, data)
    else:
        _check_tensors(cfg, data)
    return _train_fraction(cfg, data)


def _train_fraction(cfg: StudyConfig, data: Any) -> Any:
    """The data with `[data] train_fraction` of its training split (tensor data only)."""
    from ..training import LoaderData, data_split_seed, subsample_train

    fraction = cfg.data.train_fraction
    if fraction == 1:
        return data
    if isinstance(data, LoaderData):
        raise _err(
            cfg,
            "[data] train_fraction",
            f"= {fraction} needs tensor data, but {cfg.data.name!r} gives loaders (LoaderData): subsample "
            "in your data factory instead (e.g. a torch.utils.data.Subset), or return TensorData.",
        )
    return subsample_train(data, fraction, data_split_seed(cfg.data.name, dict(cfg.data.options)))


def _check_loaders(cfg: StudyConfig, data: Any) -> None:
    """Each loader is a zero-argument callable whose iterable yields batches that split into (inputs,
    targets); the epoch has a length."""
    from ..training import data as data_mod

    name = cfg.data.name
    for split in ("train", "val", "test"):
        make = getattr(data, split)
        if make is None and split == "test":
            continue
        if not callable(make):
            raise _err(
                cfg,
                "[data] name",
                f"= {name!r}: LoaderData.{split} is a {type(make).__name__}; expected a zero-argument "
                "callable returning a DataLoader (e.g. lambda: DataLoader(...)).",
            )
        try:
            batch = data_mod.first_batch(make())
            if batch is None:
                raise ValueError(f"the {split} loader yielded no batches")
            data_mod.split_batch(batch)
        except Exception as e:  # noqa: BLE001 (the user's loader: say which split led there)
            raise _err(cfg, "[data] name", f"= {name!r}: LoaderData.{split}: {_one_line(e)}.") from None
    try:
        steps = data_mod.loader_steps(data)
    except TypeError as e:
        raise _err(cfg, "[data] name", f"= {name!r}: {e}") from None
    if steps < 1:
        raise _err(cfg, "[data] name", f"= {name!r}: the training loader has {steps} batches per epoch.")
    if cfg.train.augment != "none":
        raise _err(
            cfg,
            "[train] augment",
            f"= {cfg.train.augment!r} works on tensor data only; {name!r} gives loaders: augment in its "
            "Dataset or DataLoader instead.",
        )


def _check_tensors(cfg: StudyConfig, data: Any) -> None:
    import torch

    name = cfg.data.name
    k = data.num_classes
    if cfg.train.loss != "cross_entropy":  # labels are the loss's business (mse: float targets)
        k = None
    elif not isinstance(k, int) or k < 2:
        raise _err(cfg, "[data] name", f"= {name!r} gives num_classes = {k!r}; expected an integer >= 2.")
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(x) == 0 or len(x) != len(y):
            raise _err(
                cfg,
                "[data] name",
                f"= {name!r}: the {split} split has {len(x)} inputs and {len(y)} labels; "
                "expected the same number, at least 1.",
            )
        if k is None:
            continue
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise _err(
                cfg,
                "[data] name",
                f"= {name!r}: y_{split} has dtype {y.dtype}; expected integer class labels.",
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= k:
            raise _err(
                cfg,
                "[data] name",
                f"= {name!r}: y_{split} holds labels in [{low}, {high}]; expected labels in "
                f"[0, num_classes) = [0, {k}).",
            )
    n = len(data.x_train)
    if cfg.train.batch_size > n:
        raise _err(
            cfg,
            "[train] batch_size",
            f"must be at most the {n} training examples of {name!r}, but got {cfg.train.batch_size}.",
        )
    if cfg.train.augment != "none" and data.x_train.dim() != 4:
        raise _err(
            cfg,
            "[train] augment",
            f"= {cfg.train.augment!r} needs image data (N, C, H, W), but {name!r} with model "
            f"{cfg.model.name!r} gives inputs of shape {tuple(data.x_train.shape[1:])}.",
        )


def check_model(cfg: StudyConfig, data: Any) -> None:
    """The model factory accepts its options, builds, and maps a first training batch to outputs (on CPU) that
    the loss and the metric take."""
    import torch

    from ..training import TensorData, forward, load_object, model_shape, models

    name, options = cfg.model.name, dict(cfg.model.options)
    fixed = {"input_shape": None, "num_classes": None}
    try:
        factory = getattr(models, name) if name in models.MODELS else load_object(name, "model")
    except (ImportError, ValueError, TypeError) as e:
        raise _err(cfg, "[model] name", f"= {name!r} cannot be loaded: {e}") from None
    _check_options(cfg, "model", f"model {name!r}", factory, fixed, options)
    train_batch, val_batch = _sample_batches(data)
    try:
        model = models.build_model(name, *model_shape(data), **options)
        model.eval()
        with torch.no_grad():
            out = forward(model, train_batch[0])
    except Exception as e:  # noqa: BLE001 (the factory or its forward pass: say which options led there)
        raise _err(
            cfg, "[model]", f"name = {name!r} with options {options} failed to build or run: {_one_line(e)}"
        ) from None
    n = len(train_batch[1])
    if (
        isinstance(data, TensorData)
        and cfg.train.loss == "cross_entropy"
        and tuple(out.shape)
        != (
            n,
            data.num_classes,
        )
    ):
        raise _err(
            cfg,
            "[model] name",
            f"= {name!r} maps a batch of {n} to shape {tuple(out.shape)}; expected "
            f"({n}, num_classes={data.num_classes}).",
        )
    check_objective(cfg, model, out, train_batch, val_batch)


def _sample_batches(data: Any) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """A few (inputs, targets) of the training and of the validation split."""
    from ..training import TensorData, first_batch, split_batch

    if isinstance(data, TensorData):
        return (data.x_train[:2], data.y_train[:2]), (data.x_val[:8], data.y_val[:8])
    return split_batch(first_batch(data.train())), split_batch(first_batch(data.val()))


def check_objective(cfg: StudyConfig, model: Any, out: Any, train_batch: tuple, val_batch: tuple) -> None:
    """`[train] loss` gives a finite scalar on a training batch, `[train] metric` a number on a validation
    batch: a wrong function fails here, not in every trial."""
    import math

    import torch

    from ..config import metric_mode
    from ..training import build_objective, forward, score

    t = cfg.train
    try:
        loss_fn = build_objective(t.loss).loss
    except (ImportError, ValueError, TypeError) as e:
        raise _err(cfg, "[train] loss", f"= {t.loss!r} cannot be loaded: {e}") from None
    try:
        objective = build_objective(t.loss, t.metric, metric_mode(t))
    except (ImportError, ValueError, TypeError) as e:
        raise _err(cfg, "[train] metric", f"= {t.metric!r} cannot be loaded: {e}") from None
    targets = train_batch[1]
    if t.metric == "accuracy" and (
        not isinstance(targets, torch.Tensor) or targets.is_floating_point() or out.dim() != 2
    ):
        raise _err(
            cfg,
            "[train] metric",
            f"= 'accuracy' needs integer class targets and (N, classes) outputs, but the model gives "
            f'{tuple(out.shape)} for targets {_described(targets)}; set metric = "loss" or your own.',
        )
    try:
        with torch.no_grad():
            value = loss_fn(out.float(), targets)
    except Exception as e:  # noqa: BLE001 (the user's loss or a mismatch with the targets)
        raise _err(
            cfg,
            "[train] loss",
            f"= {t.loss!r} failed on outputs {tuple(out.shape)} and targets {_described(targets)}: "
            f"{_one_line(e)}",
        ) from None
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not math.isfinite(float(value)):
        raise _err(
            cfg,
            "[train] loss",
            f"= {t.loss!r} must return a finite scalar tensor (the mean over the batch), but returned "
            f"{_described(value)}.",
        )
    try:
        with torch.no_grad():
            score(objective, [(forward(model, val_batch[0]).float(), val_batch[1])])
    except Exception as e:  # noqa: BLE001 (the user's metric)
        raise _err(cfg, "[train] metric", f"= {t.metric!r} on a validation batch: {_one_line(e)}") from None


def _described(x: Any) -> str:
    import torch

    if isinstance(x, torch.Tensor):
        return f"{x.dtype} {tuple(x.shape)}" if x.numel() != 1 else f"{x.dtype} {x.item()!r}"
    return f"{type(x).__name__} {x!r}"[:80]


def check_num_cpus(cfg: StudyConfig) -> None:
    """A local Ray's `num_cpus` is at most the machine's CPUs (Ray takes any number and oversubscribes)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cfg.resources.num_cpus > cores:
        raise _err(
            cfg,
            "[resources] num_cpus",
            f"= {cfg.resources.num_cpus}, but this machine has {cores} CPUs (a local Ray runs on them); "
            f"use at most {cores}, or join a cluster with ray_address.",
        )


def check_study(cfg: StudyConfig) -> Any:
    """Every check that needs the world, before any work; returns the loaded data (loaded once)."""
    check_runs_dir(cfg)
    check_device(cfg)
    data = load_checked_data(cfg)
    check_model(cfg, data)
    return data


# --------------------------------------------------------------------------------------------- a Ray cluster


def probe_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S, where: str = "") -> None:
    """A Ray GCS answers at `address` as given (Ray retries a dead address, or a port that is not Ray's, for
    minutes): a TCP connect, then the GCS's `GetClusterId` over gRPC, each within `timeout_s`; UNAUTHENTICATED
    is Ray too (ray.init says what is missing). "auto" is Ray's to resolve. `where` starts the error."""
    if address == "auto":
        return
    where = where or f"Ray address {address!r}"
    scheme, _, hostport = address.rpartition("://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"{where} must be host:port (e.g. 127.0.0.1:6379) or 'auto'.")
    fix = f"Start one there (ray start --head --port {port}) or fix the address"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        why = "nothing listens there" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
        raise ClusterError(f"{where}: cannot reach a Ray cluster at {address}: {why}. {fix}.") from None
    if scheme:  # ray:// is the Ray Client server, not the GCS
        return
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(hostport) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise ClusterError(
                    f"{where}: something listens at {address}, but it is not a Ray cluster's GCS (gRPC: "
                    f"{e.code().name}). {fix} (the head's GCS port, 6379 by default)."
                ) from None


def auth_hint(address: str, error: BaseException) -> ClusterError:
    """The error for a failed `ray.init(address=...)`, telling the likely cause. Ray 2.60 reports a missing
    token only in its C++ log ("InvalidAuthToken"); the exception says just "Failed to connect"."""
    text = str(error)
    if "uthenticat" in text or os.environ.get("RAY_AUTH_MODE", "") != "token":
        return ClusterError(
            f"cannot join the Ray cluster at {address} ({_one_line(error)}); it probably requires token "
            "authentication (Ray 2.60's default): set RAY_AUTH_MODE=token in this shell (the token is read "
            "from ~/.ray/auth_token, or RAY_AUTH_TOKEN)."
        )
    return ClusterError(f"cannot join the Ray cluster at {address}: {_one_line(error)}")


def check_cluster(cfg: StudyConfig, address: str) -> None:
    """Some live node of the joined cluster can hold one trial; otherwise Tune would wait for ever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, need in (("CPU", cfg.resources.cpus_per_trial), ("GPU", cfg.resources.gpus_per_trial)):
        most = max((n.get(key, 0.0) for n in nodes), default=0.0)
        if need > most:
            field = "cpus_per_trial" if key == "CPU" else "gpus_per_trial"
            raise _err(
                cfg,
                f"[resources] {field}",
                f"= {need:g}, but the largest node of the cluster at {address} has "
                f"{most:g} {key}s: no trial could ever be scheduled.",
            )


__all__ = ["ClusterError", "check_cluster", "check_study", "probe_address"]
