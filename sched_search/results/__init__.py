"""A run folder's answer: tidy tables, the statistics (paired tests, Holm, bootstrap), the verdict, the
attribution, the leaderboard, report.md/html, the figures and the torch snippet."""

from __future__ import annotations

from .attribution import ladder_arms
from .race import PLAN_FILE, race_calls, read_plan, shared_records
from .report import write_verdict
from .run import load_run
from .tables import (
    ANSI_ESCAPE,
    append_tables,
    error_text,
    expand_history,
    outcomes,
    records_from_grid,
    short_reason,
    tables_from_rows,
    write_json,
)
from .verdict import decide, is_baseline

__all__ = [
    "ANSI_ESCAPE",
    "PLAN_FILE",
    "append_tables",
    "decide",
    "error_text",
    "expand_history",
    "is_baseline",
    "ladder_arms",
    "load_run",
    "outcomes",
    "race_calls",
    "read_plan",
    "records_from_grid",
    "shared_records",
    "short_reason",
    "tables_from_rows",
    "write_json",
    "write_verdict",
]
