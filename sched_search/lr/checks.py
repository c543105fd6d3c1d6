"""Argument checks shared by the schedule configs: errors that carry the bad value and the expectation."""

from __future__ import annotations

import numbers


def check(ok: bool, name: str, expected: str, value: object) -> None:
    """Raise `ValueError("<name> must be <expected>, but got <value>.")` unless `ok`.

    Example:
        >>> check(3 > 0, "step_size", "an int >= 1", 3)
    """
    if not ok:
        raise ValueError(f"{name} must be {expected}, but got {value!r}.")


def is_int(value: object) -> bool:
    """An integer that is not a bool (True would pass as 1 step otherwise)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
