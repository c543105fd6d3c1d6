"""The package's shape: imports point down one way (no circles, no lower module importing a higher one) and no
module grows past about 400 lines. The floors are the module map in docs/workflow.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sched_search"
# A module may import only modules on lower floors.
# fmt: off
FLOORS = {
    # the leaves: nothing of ours
    "config": 0, "_importpath": 0, "schedules": 0, "optim": 0, "curve": 0, "tables": 0, "runlock": 0,
    "routing": 0, "paired": 0, "interrupt": 0, "schedule_free": 0, "warmup_decay": 0,
    "sampler": 1,
    # the parts
    "data": 1, "models": 1, "arms": 1, "plots": 1, "verdict": 1, "precision": 1, "objective": 1,
    "studyfile": 1, "recorder": 1,
    "rangeresult": 2, "space": 2, "train": 2, "preflight": 2, "leaderboard": 2, "snippet": 2,
    "attribution": 2,
    "rangetest": 3, "trial": 3, "results": 3,
    # the answer and the Tuner
    "closing": 4, "search": 4, "rangetasks": 4, "report": 5,
    # the driver: stages 1-2 (range tests, spaces), then the study in order
    "rangestage": 5, "study": 6,
    # the entry points
    "cli": 7, "__init__": 7, "__main__": 8,
}
# fmt: on


def _imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sched_search."):
            found.add(node.module.split(".")[1])
    return found - {"__version__", path.stem}


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_every_module_has_a_floor() -> None:
    assert sorted(FLOORS) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down(module: str) -> None:
    upward = {m: FLOORS[m] for m in _imports(PACKAGE / f"{module}.py") if FLOORS[m] >= FLOORS[module]}
    assert not upward, f"{module} (floor {FLOORS[module]}) imports modules on its floor or above: {upward}"


@pytest.mark.parametrize("module", MODULES)
def test_modules_stay_readable_in_one_sitting(module: str) -> None:
    lines = len((PACKAGE / f"{module}.py").read_text().splitlines())
    assert lines <= 450, f"{module}.py has {lines} lines: probably two ideas"
