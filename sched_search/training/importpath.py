"""Resolve a user's `"package.module:factory"` import path, with errors that name the path."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def load_object(path: str, what: str) -> Callable:
    """Import `"package.module:attribute"` and return the attribute, with an error naming the path on
    failure."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} import path must look like 'package.module:factory', but got {path!r}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"{what} import path {path!r}: cannot import module {module_name!r} ({e}).") from e
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ImportError(
            f"{what} import path {path!r}: module {module_name!r} has no attribute {attr!r}."
        ) from None
    if not callable(obj):
        raise TypeError(f"{what} import path {path!r} names a {type(obj).__name__}, not a callable factory.")
    return obj
