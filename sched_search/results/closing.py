"""The last words of a study in the terminal: the verdict in a sentence, the arm to use and its torch code,
what the range tests cost, where the report is. `report.py` writes the same answer into report.md/html."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .attribution import LADDER_TITLE, attribution_lines
from .leaderboard import call_text
from .run import Run
from .snippet import Recommendation, ToyBatch, recommend
from .verdict import LADDER_PREFIX, difference_text, is_baseline, metric_text


def recommendation(run: Run) -> Recommendation | None:
    """The arm to use and its torch code (`snippet.recommend` on the run's verdict and final configs); None
    for an unfinished study."""
    if run.unfinished:
        return None
    return recommend(
        run.verdict,
        run.final_configs,
        run.config.get("steps_per_epoch"),
        run.config.get("n_train"),
        run.path.name,
        toy=ToyBatch.of(run.config),
    )


def _first_sentence(text: str) -> str:
    match = re.match(r"(.*?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def format_closing(run: Run, report_html: Path) -> str:
    """The last words of a study in the terminal: the verdict in a sentence, the arm to use with its torch
    code, and where the report is.

    Example:
        >>> print(format_closing(run, run.path / "report.html"))  # doctest: +SKIP
    """
    rec = recommendation(run)
    lines = [f"answer: {_first_sentence(run.summary)}"]
    if rec is None:
        lines.append("recommended: none yet (no final runs with a verdict in this folder)")
    else:
        lines.append(f"recommended: {rec.arm} ({rec.why})")
        v, m = run.verdict, run.metric
        for b in v.get("baselines", []) if len(v.get("baselines", [])) > 1 else []:
            c = v["arms"].get(rec.arm, {}).get("vs_baselines", {}).get(b)
            strongest = " (the strongest baseline)" if b == v.get("strongest_baseline") else ""
            mean = metric_text(v["arms"][b]["mean"], m)
            lines.append(f"  vs {b}{strongest}, val {m} {mean}: {call_text(c, m) or 'itself'}")
        if ladder := attribution_lines(run.verdict.get("attribution")):
            lines += [f"{LADDER_TITLE}:", *[f"  {line}" for line in ladder]]
        lines += [
            "",
            f"--- {rec.arm} in your own training loop (runs as written; replace the '# your ...' lines) ---",
            rec.code.rstrip("\n"),
            "---",
        ]
    cost = [line for line in (range_test_cost_line(run), run_cost_line(run), last_half_line(run)) if line]
    lines += ["", *cost] if cost else []
    lines += ["", f"report: {report_html.resolve()}  (open it in a browser)", f"run folder: {run.path}"]
    return "\n".join(lines)


def range_test_cost_line(run: Run) -> str | None:
    """What the range tests cost, in trials of this study (timing.json); None before the study ends."""
    path = run.path / "timing.json"
    if not path.exists():
        return None
    cost = json.loads(path.read_text()).get("range_test_trial_equivalents")
    if cost is None:
        return None
    if not cost:
        return "range test: none (broad space)"
    parts = ", ".join(f"{opt} {x:.2g}" for opt, x in cost.items())
    return f"range test cost: {sum(cost.values()):.2g} trial-equivalents ({parts}; steps over one trial's)"


def last_half_line(run: Run) -> str | None:
    """What the last half of the study's compute bought, in one line (the verdict's `last_half`): the
    answer minus what the study recommended at half its trainings, with the paired 95% interval, or why it
    is not measurable; None before any recommendation."""
    half = run.verdict.get("last_half") or {}
    if half.get("total") is None:
        return None
    m = run.metric
    head = f"last half of the compute ({half['half']:.3g} to {half['total']:.3g} trainings): "
    if half["diff"] is None:
        return head + f"not measurable: {half['why']}"
    at, end = half["at_half"], half["at_end"]
    if (at["arm"], at["source_trial"]) == (end["arm"], end["source_trial"]):
        return head + (
            f"{difference_text(0.0, m)}: the answer {end['arm']} was already recommended at "
            f"{at['trainings']:.3g} trainings"
        )
    if half["ci_low"] is None:
        interval = f" ({half['why']})"
    elif m == "accuracy":
        interval = f" [{100 * half['ci_low']:+.2f}, {100 * half['ci_high']:+.2f}]"
    else:
        interval = f" [{half['ci_low']:+.3g}, {half['ci_high']:+.3g}]"
    n = len(run.verdict.get("seeds", []))
    seeds = f"{n} seed{'s' if n != 1 else ''}" + ("; lower is better" if run.metric_mode == "min" else "")
    return head + (
        f"{difference_text(half['diff'], m)}{interval} for {end['arm']} (the answer) over {at['arm']} "
        f"(recommended at {at['trainings']:.3g} trainings), paired over {seeds}"
    )


# What each kind of training run is in the trials table, in the order the cost line lists them.
RUN_KINDS = (
    ("search", "search trials"),
    ("finals", "finals of the searched arms"),
    ("budget ladder", "shorter budgets of those finals (epochs to target)"),
    ("baselines", "baselines"),
    ("attribution", "attribution ladder"),
)


def run_kinds(trials: pd.DataFrame) -> pd.Series:
    """Each row's kind of run (`RUN_KINDS`): a search trial, a searched arm's final at the full budget or at
    a shorter one, a baseline, or an attribution-ladder rung."""
    final = trials.stage == "final"
    kinds = pd.Series("search", index=trials.index)
    kinds[final & (trials.budget >= 1.0)] = "finals"
    kinds[final & (trials.budget < 1.0)] = "budget ladder"
    kinds[final & trials.arm.map(is_baseline)] = "baselines"
    kinds[final & trials.arm.str.startswith(LADDER_PREFIX)] = "attribution"
    return kinds


def run_cost_line(run: Run) -> str | None:
    """Where the study's training time went, per kind of run, with its share: what the extra final runs
    (baselines, budget ladder, attribution) cost beside the search. None without trials."""
    trials = run.trials
    if trials.empty or "wall_time" not in trials:
        return None
    seconds = trials.wall_time.fillna(0.0).groupby(run_kinds(trials)).agg(["size", "sum"])
    total = float(seconds["sum"].sum()) or 1.0
    parts = [
        f"{name} {int(seconds.loc[kind, 'size'])} runs, {seconds.loc[kind, 'sum']:.0f} s "
        f"({seconds.loc[kind, 'sum'] / total:.0%})"
        for kind, name in RUN_KINDS
        if kind in seconds.index
    ]
    return f"training time: {total:.0f} s in all runs: " + "; ".join(parts)


__all__ = [
    "format_closing",
    "last_half_line",
    "range_test_cost_line",
    "recommendation",
    "run_cost_line",
    "run_kinds",
]
