"""Every docstring example in the package is true: the examples are run, not just read (those marked
`+SKIP` need a model, data or a study run and stay illustrations)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import sched_search

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(sched_search.__path__, "sched_search.")
    if m.name != "sched_search.__main__"  # importing it runs the CLI
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name files as from the repository root (studies/smoke.toml)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail (run doctest)"
