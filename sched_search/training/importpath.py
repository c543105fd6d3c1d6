"""Resolve a user's `"package.module:factory"` import path, with errors that name the path; and our packages'
names that are imported on first use (`lazy_attributes`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


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


def lazy_attributes(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` (PEP 562) for `package`: `name` is imported from the module `where[name]`
    (relative to `package`) on first use, so importing the package does not pay for that module's imports.

    Example:
        >>> __getattr__ = lazy_attributes(__name__, {"run_study": "driver"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f".{where[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
