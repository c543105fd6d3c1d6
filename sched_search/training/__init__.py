"""Training: data (tensors or DataLoaders), models, the loss and metric, precision, and the plain loop a
trial and a range test share. Imports `lr` and `config` only."""

from __future__ import annotations

from .data import (
    LoaderData,
    TensorData,
    batches,
    data_split_seed,
    data_steps,
    first_batch,
    load_data,
    loader_steps,
    model_shape,
    split_batch,
    subsample_train,
    to_device,
)
from .importpath import lazy_attributes, load_object
from .models import IMAGE_MODELS, build_model
from .objective import build_objective, decode_examples, encode_examples, forward, score
from .precision import autocast, check_precision, grad_scaler, to_memory_format
from .train import train_epochs

__all__ = [
    "IMAGE_MODELS",
    "LoaderData",
    "TensorData",
    "autocast",
    "batches",
    "build_model",
    "build_objective",
    "check_precision",
    "data_split_seed",
    "data_steps",
    "decode_examples",
    "encode_examples",
    "first_batch",
    "forward",
    "grad_scaler",
    "lazy_attributes",
    "load_data",
    "load_object",
    "loader_steps",
    "model_shape",
    "score",
    "split_batch",
    "subsample_train",
    "to_device",
    "to_memory_format",
    "train_epochs",
]
