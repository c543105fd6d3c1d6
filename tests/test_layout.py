"""The package's shape: a package per subject, ranked; a module imports only from its own package or from a
package of a lower rank (no circles, nothing upward). The ranks are the map in docs/workflow.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sched_search"
# A module may import from its own package or from lower ranks only. `config` (the settings' names and
# defaults) is a leaf every package reads; `cli` and the top-level `__init__` sit above everything.
RANKS = {
    "config": 0,
    "lr": 1,
    "training": 2,
    "rangetest": 3,
    "results": 4,
    "study": 5,
    "cli": 6,
    "__init__": 6,
}
RANKS["__main__"] = 7


def _unit(path: Path) -> str:
    """The ranked unit a file belongs to: its sub-package, or its own name for a top-level module."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_units(path: Path) -> set[str]:
    """The ranked units that `path` imports anywhere (top level or inside functions)."""
    unit, nested = _unit(path), len(path.relative_to(PACKAGE).parts) > 1
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level == 1 and nested:
                continue  # a sibling in the same package
            first = (node.module or "").split(".")[0]
            found |= {first} if first else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sched_search."):
            found.add(node.module.split(".")[1])
    return found - {"__version__", unit}


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_file_belongs_to_a_ranked_unit() -> None:
    assert {_unit(f) for f in FILES} == set(RANKS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    unit = _unit(path)
    upward = {u: RANKS[u] for u in _imported_units(path) if RANKS[u] >= RANKS[unit]}
    assert not upward, f"{path.relative_to(PACKAGE)} ({unit}, rank {RANKS[unit]}) imports upward: {upward}"


def test_no_private_name_is_imported_across_modules() -> None:
    crossing = [
        f"{path.relative_to(PACKAGE)}: {alias.name} from {'.' * node.level}{node.module or ''}"
        for path in FILES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("sched_search"))
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__version__"
    ]
    assert not crossing, f"private names used outside their module: {crossing}"


MAX_LINES = 60  # a function's code, its docstring apart: about one screen
# The functions allowed past MAX_LINES, each with its length today and its reason: each may shrink, none may
# grow, and no other function may pass MAX_LINES (at most three, none over 100: issue 31).
LONG = {
    "cli.py:_add_range_test": 67,  # one argparse call per option: a list, not several ideas
}


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
    first = body[1] if has_doc and len(body) > 1 else body[0]
    return node.end_lineno - first.lineno + 1


def test_functions_read_in_one_screen() -> None:
    lengths = {
        f"{path.relative_to(PACKAGE)}:{node.name}": _code_lines(node)
        for path in FILES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    too_long = {name: n for name, n in lengths.items() if n > LONG.get(name, MAX_LINES)}
    assert not too_long, (
        f"functions over {MAX_LINES} lines of code (or grown past their LONG entry): {too_long}"
    )
    stale = {name: n for name, n in LONG.items() if lengths.get(name, 0) <= MAX_LINES}
    assert not stale, f"split or gone, drop from LONG: {stale}"
    assert len(LONG) <= 3 and max(LONG.values(), default=0) <= 100, f"at most three, none over 100: {LONG}"


def test_heavy_names_load_on_first_use() -> None:
    """`import sched_search` (and `sched_search.study`) pays for neither Ray nor Optuna; their names resolve
    on first use through the one lazy `__getattr__` (`training.lazy_attributes`), and an unknown one raises
    AttributeError naming its module."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, sched_search, sched_search.study as study\n"
        "assert not {'ray', 'optuna'} & set(sys.modules), sorted({'ray', 'optuna'} & set(sys.modules))\n"
        "assert sched_search.run_study is study.run_study and study.run_study.__module__.endswith('driver')\n"
        "assert sched_search.load_run.__module__ == 'sched_search.results.run'\n"
        "for module in (sched_search, study):\n"
        "    try:\n"
        "        module.no_such_name\n"
        "    except AttributeError as e:\n"
        "        assert str(e) == f\"module {module.__name__!r} has no attribute 'no_such_name'\", e\n"
        "    else:\n"
        "        raise AssertionError('no AttributeError')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
