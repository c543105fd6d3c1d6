"""Reports of a loaded run (`results.load_run`): the terminal table, the figures, report.md / report.html and
verdict.json. The figures themselves are drawn in `plots.py`."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .attribution import LADDER_TITLE, attribution_lines
from .closing import last_half_line, range_test_cost_line, recommendation, run_cost_line
from .leaderboard import FULL_RUN_NOTE, baseline_calls, budget_ladder
from .run import Run, learning_curves, load_run, param_importances, schedule_curves
from .tables import diverged_search_lines, failure_lines, write_json
from .verdict import metric_text

# --------------------------------------------------------------------------------------------- output


_DIFF_POINTS, _DIFF_UNITS = "vs baseline (points, 95% CI)", "vs baseline (diff, 95% CI)"


def _headers(metric: str) -> dict[str, str]:
    """The leaderboard's column names that carry the metric: accuracy in % and points, others in its units."""
    if metric == "accuracy":
        return {"val": "val acc %", "std": "std %", "diff": _DIFF_POINTS, "test": "test acc %"}
    return {"val": f"val {metric}", "std": "std", "diff": _DIFF_UNITS, "test": f"test {metric}"}


def _display(board: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """The leaderboard for people: accuracies in % (other metrics in their units), intervals beside the means,
    "not estimable" with < 3 seeds."""
    scale, fmt, dfmt = (100, ".2f", "+.2f") if metric == "accuracy" else (1, ".4g", "+.3g")

    def num(x: float, fmt: str) -> str:
        return "" if x is None or not math.isfinite(x) else format(x, fmt)

    def interval(lo: float, hi: float, fmt: str = fmt) -> str:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "not estimable"
        return f"[{num(scale * lo, fmt)}, {num(scale * hi, fmt)}]"

    h = _headers(metric)
    columns = {
        "arm": [f"{a} *" if top else a for a, top in zip(board["arm"], board["top_group"], strict=True)],
        "seeds": board["n_seeds"],
        "failed": board["n_failed"],
        h["val"]: [num(scale * m, fmt) for m in board["mean_val_metric"]],
        "95% CI": [interval(lo, hi) for lo, hi in zip(board["ci_low"], board["ci_high"], strict=True)],
        h["std"]: [num(scale * s, fmt) or "not estimable" for s in board["std_val_metric"]],
        h["diff"]: [
            call
            if call in ("baseline", "", "not estimable") or not math.isfinite(d)
            else f"{call} {num(scale * d, dfmt)} {interval(lo, hi, dfmt[1:])}"
            for call, d, lo, hi in zip(
                board["vs_baseline"],
                board["diff_vs_baseline"],
                board["diff_ci_low"],
                board["diff_ci_high"],
                strict=True,
            )
        ],
        "val loss": [num(v, ".4f") for v in board["mean_val_loss"]],
        h["test"]: [num(scale * v, fmt) for v in board["mean_test_metric"]],
        "epochs to target": [num(v, "g") for v in board["epochs_to_target"]],
        "speed-up": board["to_target"].fillna(""),
        "first epoch at target (full run)": [num(v, "g") for v in board["first_epoch_at_target_full_run"]],
        "wall s/run": [num(v, ".3g") for v in board["wall_time_s"]],
        "best config": board["best_config"],
    }
    if metric == "loss":  # the metric is the val loss: one column of it
        columns[h["val"]] = columns.pop("val loss")
    return pd.DataFrame(columns)


def _verdict_notes(run: Run) -> list[str]:
    """The decision's terms in sentences: the rule, the tie order, the seeds and what one example is worth."""
    v = run.verdict
    notes = [v["rule"], v["order_rule"], "* marks the top group."]
    if v.get("target_meaningful") is False:
        notes.append(
            f"The baseline's accuracy is not above chance ({100 * (v['chance_accuracy'] or 0):.2f}%, always "
            "predicting the most frequent class): the target and the speed-ups mean nothing."
        )
    for arm, why in v.get("excluded", {}).items():
        notes.append(f"{arm} is left out of the verdict: {why}.")
    stopped = {c.get("arm") for c in run.final_configs if c.get("source_full_budget") is False}
    for arm in sorted(a for a in stopped if a):
        notes.append(
            f"{arm}: every search trial was stopped early by ASHA, "
            "so its best config was chosen on a shorter run."
        )
    return notes


# The terminal table in two blocks that each fit a 125-column terminal; text columns left, numbers right.
# "val", "std", "diff", "test": the metric's columns (`_headers`).
_TERMINAL_BLOCKS = (
    ("arm", "seeds", "failed", "val", "95% CI", "std", "diff", "val loss", "test"),
    ("arm", "epochs to target", "speed-up", "first epoch at target (full run)", "wall s/run"),
)
_TEXT_COLUMNS = {"arm", "95% CI", _DIFF_POINTS, _DIFF_UNITS, "speed-up", "best config"}


def _text_table(df: pd.DataFrame) -> str:
    """A plain-text table whose headers line up with their cells: text left-aligned, numbers right-aligned."""
    cells = [[str(c), *(str(v) for v in df[c])] for c in df.columns]
    widths = [max(len(v) for v in col) for col in cells]
    rows = []
    for i in range(len(df) + 1):
        parts = [
            col[i].ljust(w) if name in _TEXT_COLUMNS else col[i].rjust(w)
            for name, col, w in zip(df.columns, cells, widths, strict=True)
        ]
        rows.append("  ".join(parts).rstrip())
    return "\n".join(rows)


def format_leaderboard(run: Run) -> str:
    """The leaderboard as plain-text tables for the terminal, with the target and the words under it.

    Example:
        >>> print(format_leaderboard(load_run(run_dir)))  # doctest: +SKIP
    """
    if run.leaderboard.empty:
        return f"{run.path}: no leaderboard yet.\n" + "\n".join(f"  missing: {m}" for m in run.missing)
    target = (
        f"val {run.metric} {metric_text(run.target, run.metric)}" if math.isfinite(run.target) else "none"
    )
    shown = _display(run.leaderboard, run.metric)
    h = _headers(run.metric)
    # dict.fromkeys: with metric "loss" the metric's column is the val loss column
    blocks = [
        list(dict.fromkeys(h.get(c, c) for c in block if h.get(c, c) in shown)) for block in _TERMINAL_BLOCKS
    ]
    tables = "\n\n".join(_text_table(shown[block]) for block in blocks)
    width = max(len(a) for a in shown["arm"])
    configs = "\n".join(
        f"  {a:<{width}}  {c}" for a, c in zip(shown["arm"], shown["best config"], strict=True)
    )
    notes = "\n".join(f"  {n}" for n in _verdict_notes(run))
    calls = baseline_calls(run.verdict) if len(run.verdict.get("baselines", [])) > 1 else pd.DataFrame()
    if not calls.empty:
        tables += f"\n\n{_against(run)}:\n{_text_table(calls)}"
    return (
        f"{run.path}  (target: {target})\n{tables}\n\nbest configs:\n{configs}\n\n{run.summary}\n\n"
        f"how this was decided:\n{notes}\n"
    )


def _against(run: Run) -> str:
    n = run.verdict.get("n_baseline_comparisons", 0)
    return f"Every searched arm against every baseline (arm minus baseline, Holm over all {n} comparisons)"


def write_plots(run: Run, out_dir: str | Path) -> tuple[dict[str, Path], list[str]]:
    """Every figure of the report as PNG in `out_dir`; the notes say which were skipped and why.

    Example:
        >>> files, notes = write_plots(load_run(run_dir), run_dir / "plots")  # doctest: +SKIP
    """
    from . import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, notes = {}, []
    if not run.range_test.empty:
        files["range_test"] = plots.plot_range_curves(
            run.range_test, out_dir / "range_test.png", run.range_summaries
        )
    if run.final_configs:
        curves = schedule_curves(run.final_configs, run.epochs, int(run.config.get("steps_per_epoch", 100)))
        files["schedules"] = plots.plot_schedules(curves, out_dir / "schedules.png")
    if not run.leaderboard.empty:
        files["leaderboard"] = plots.plot_leaderboard(
            run.leaderboard, out_dir / "leaderboard.png", run.target, run.metric, run.metric_mode
        )
        files["budget_ladder"] = plots.plot_budget_ladder(
            budget_ladder(run.trials), out_dir / "budget_ladder.png", run.target, run.metric
        )
    # drawn even empty: the answer per training spent is the first thing to look at in a partial run
    half = (run.verdict.get("last_half") or {}).get("half")
    files["frontier"] = plots.plot_frontier(
        run.verdict.get("frontier", []), out_dir / "frontier.png", run.metric, half
    )
    curves = learning_curves(run.epochs)
    if not curves.empty:
        files["learning_curves"] = plots.plot_learning_curves(
            curves, out_dir / "learning_curves.png", run.target, metric=run.metric
        )
    importances, more = param_importances(run.path)
    notes += more
    if not importances.empty:
        files["importances"] = plots.plot_importances(importances, out_dir / "importances.png")
    return files, notes


def _html_table(df: pd.DataFrame, css_class: str) -> str:
    """An HTML table whose text columns (header and cells) are left-aligned, numbers right-aligned."""

    def row(tag: str, values: list) -> str:
        cells = (
            f"<{tag}{' class=l' if c in _TEXT_COLUMNS else ''}>{html.escape(str(v))}</{tag}>"
            for c, v in zip(df.columns, values, strict=True)
        )
        return f"<tr>{''.join(cells)}</tr>"

    body = "".join(row("td", list(r)) for r in df.itertuples(index=False))
    head = row("th", list(df.columns))
    return f'<table class="{css_class}"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _md_table(df: pd.DataFrame) -> str:
    cells = [[str(c) for c in df.columns]] + [
        [str(v).replace("|", "\\|") for v in r] for r in df.itertuples(False)
    ]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(df.columns))
    return "\n".join(lines)


# Headers align with their cells (text columns left); leaderboard cells keep to one line (the table scrolls
# sideways in a narrow window).
_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;"
    "text-align:right}th{background:#f0f0f0;vertical-align:bottom}td:first-child{text-align:left}"
    ".l{text-align:left}.wide{overflow-x:auto}.leaderboard td{white-space:nowrap}"
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#555;font-size:13px}"
    "pre{background:#f6f8fa;border:1px solid #ddd;padding:0.8em 1em;overflow-x:auto;font-size:13px}"
)


RUN_FILES = ("resolved_config.json", "study.toml")  # what `run_study` writes first into every run folder


def check_run_folder(path: str | Path) -> None:
    """Raise FileNotFoundError, saying what to pass instead, unless `path` is a folder `run_study` wrote."""
    path = Path(path)
    fix = "pass a folder that `python -m sched_search study` wrote, such as runs/<name>-<date>-<time>"
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist; {fix}.")
    if not any((path / name).exists() for name in RUN_FILES):
        raise FileNotFoundError(f"{path} is not a run folder (it has no {' or '.join(RUN_FILES)}); {fix}.")


def write_verdict(run: Run) -> Path:
    """Write `verdict.json` (the machine-readable answer: winner, top group, calls, speed-ups) into the run
    folder."""
    write_json(run.path / "verdict.json", run.verdict)
    return run.path / "verdict.json"


def write_report(run_dir: str | Path, run: Run | None = None) -> dict[str, Path]:
    """Write the report of a run folder: report.md, a self-contained report.html (figures inlined as base64
    PNG), leaderboard.csv, trials.csv, epochs.csv and the figures under plots/. `run`: that folder already
    loaded.

    Returns:
        name -> path of every file written ("report.md", "report.html", "leaderboard.csv", ...,
            "plot:<name>").

    Example:
        >>> write_report("runs/smoke-20260101-120000")["report.html"]  # doctest: +SKIP
    """
    check_run_folder(run_dir)
    run = run if run is not None else load_run(run_dir)
    path = run.path
    written: dict[str, Path] = {}
    for name, table in (("leaderboard", run.leaderboard), ("trials", run.trials), ("epochs", run.epochs)):
        written[f"{name}.csv"] = path / f"{name}.csv"
        table.drop(columns="val_examples", errors="ignore").to_csv(written[f"{name}.csv"], index=False)
    if not run.unfinished:  # a verdict only from a complete study
        written["verdict.json"] = write_verdict(run)
    figures, notes = write_plots(run, path / "plots")
    written.update({f"plot:{k}": v for k, v in figures.items()})
    parts = _report_parts(run, figures, notes)
    written["report.md"] = path / "report.md"
    written["report.md"].write_text(_markdown(parts))
    written["report.html"] = path / "report.html"
    written["report.html"].write_text(_html(parts, run.trials))
    return written


_CAPTIONS = {
    "leaderboard": "Mean final val {m} per arm at the full budget, 95% CI over seeds",
    "budget_ladder": "Final val {m} against budget (each rung a full, compressed schedule)",
    "frontier": "The answer per training spent: val {m} of what the study would have recommended",
    "learning_curves": "Full-budget learning curves: median over seeds, min-max band",
    "schedules": "LR and momentum of each arm's best config",
    "range_test": "LR range test (smoothed loss per weight decay)",
    "importances": "Optuna fANOVA parameter importances per arm",
}


@dataclass(frozen=True)
class _Parts:
    """What report.md and report.html both say, computed once from the loaded run."""

    title: str
    summary: str
    target_line: str  # "Target (val accuracy): 95.00%."
    bought: str  # what the last half of the compute bought, a sentence; "" when not said
    shown: pd.DataFrame  # the leaderboard as displayed
    decided: list[str]  # the verdict's notes under the leaderboard
    calls: pd.DataFrame  # each arm against every baseline
    against: str  # the strongest baseline, in words
    ladder: list[str]  # the attribution ladder's lines
    rec: Any  # snippet.Recommendation or None
    use: str  # how to use the recommended code
    figures: dict[str, Path]
    captions: dict[str, str]
    below: dict[str, str]  # a note under a figure
    notes: list[str]


def _report_parts(run: Run, figures: dict[str, Path], plot_notes: list[str]) -> _Parts:
    notes = [f"Failed runs: {line}" for line in failure_lines(run.trials)] + run.missing + plot_notes
    notes = [f"Search: {line}" for line in diverged_search_lines(run.trials)] + notes
    for cost in (range_test_cost_line(run), run_cost_line(run)):
        notes += [cost[0].upper() + cost[1:]] if cost else []
    study = run.config.get("study", {})
    m = run.metric
    target = metric_text(run.target, m) if math.isfinite(run.target) else "none"
    rec = recommendation(run)
    bought = last_half_line(run)  # what the last half of the compute bought (the frontier's figure)
    use = (
        f"{rec.arm}: {rec.why}. The code runs as written on random data; replace the lines marked "
        f"'# your ...' with your model and DataLoader. It assumes the study's {rec.steps_per_epoch} steps "
        "per epoch; the cycle lengths are written in epochs times steps_per_epoch, so they follow yours."
        if rec
        else ""
    )
    calls = baseline_calls(run.verdict) if run.verdict.get("baselines") else pd.DataFrame()
    return _Parts(
        title=f"Report: {study.get('name', run.path.name)} ({run.path.name})",
        summary=run.summary,
        target_line=f"Target (val {m}): {target}.",
        bought=f"{bought[0].upper()}{bought[1:]}." if bought else "",
        shown=_display(run.leaderboard, m),
        decided=_verdict_notes(run) if run.verdict.get("arms") and not run.unfinished else [],
        calls=calls,
        against=_against(run) if not calls.empty else "",
        ladder=attribution_lines(run.verdict.get("attribution")),
        rec=rec,
        use=use,
        figures=figures,
        captions={k: c.format(m=m) for k, c in _CAPTIONS.items()},
        below={
            "frontier": run.verdict.get("frontier_rule", ""),
            "importances": "Search trials only, a handful per arm (the panel titles give each count): "
            "importances from so few trials are rough, a hint of which values mattered rather than a "
            "ranking.",
        },
        notes=notes,
    )


def _markdown(p: _Parts) -> str:
    md = [f"# {p.title}", "", f"**{p.summary}**", "", p.target_line, ""]
    md += [p.bought, ""] if p.bought else []
    md += ["## Leaderboard", "", _md_table(p.shown), "", *[f"- {n}" for n in p.decided], ""]
    md += [f"_{FULL_RUN_NOTE}_", ""]
    if not p.calls.empty:
        md += ["## Against every baseline", "", f"{p.against}.", "", _md_table(p.calls), ""]
    if p.ladder:
        md += [f"## {LADDER_TITLE}", "", *[f"- {line}" for line in p.ladder], ""]
    if p.rec:
        md += ["## Use it in your own training loop", "", p.use, "", "```python", p.rec.code.rstrip("\n")]
        md += ["```", ""]
    for k, f in p.figures.items():
        md += [f"## {p.captions[k]}", "", f"![{k}](plots/{f.name})", ""]
        md += [f"_{p.below[k]}_", ""] if p.below.get(k) else []
    md += ["## Notes", ""] + [f"- {n}" for n in p.notes] if p.notes else []
    return "\n".join(md) + "\n"


def _img(f: Path) -> str:
    data = base64.b64encode(f.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{f.stem}">'


def _html(p: _Parts, trials: pd.DataFrame) -> str:
    body = [
        f"<h1>{html.escape(p.title)}</h1>",
        f"<p><strong>{html.escape(p.summary)}</strong></p>",
        f"<p>{html.escape(p.target_line)}</p>",
        *([f"<p>{html.escape(p.bought)}</p>"] if p.bought else []),
        "<h2>Leaderboard</h2>",
        f'<div class="wide">{_html_table(p.shown.drop(columns="best config"), "leaderboard")}</div>',
        '<ul class="note">',
        *[f"<li>{html.escape(n)}</li>" for n in p.decided],
        "</ul>",
        f'<p class="note">{html.escape(FULL_RUN_NOTE)}</p>',
        "<h3>Best config per arm</h3>",
        _html_table(p.shown[["arm", "best config"]], "configs"),
    ]
    if not p.calls.empty:
        body += ["<h2>Against every baseline</h2>", f"<p>{html.escape(p.against)}.</p>"]
        body.append(f'<div class="wide">{_html_table(p.calls, "leaderboard")}</div>')
    if p.ladder:
        body += [f"<h2>{LADDER_TITLE}</h2><ul>", *[f"<li>{html.escape(x)}</li>" for x in p.ladder], "</ul>"]
    if p.rec:
        body += ["<h2>Use it in your own training loop</h2>", f"<p>{html.escape(p.use)}</p>"]
        body.append(f"<pre><code>{html.escape(p.rec.code)}</code></pre>")
    for k, f in p.figures.items():
        body.append(f"<h2>{html.escape(p.captions[k])}</h2>{_img(f)}")
        body += [f'<p class="note">{html.escape(p.below[k])}</p>'] if p.below.get(k) else []
    if not trials.empty:
        table = trials.drop(columns="val_examples", errors="ignore").to_html(index=False, border=0)
        body += ["<details><summary>All trials</summary>", f'<div class="wide">{table}</div>', "</details>"]
    if p.notes:
        body += ["<h2>Notes</h2><ul>", *[f"<li>{html.escape(n)}</li>" for n in p.notes], "</ul>"]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(p.title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


__all__ = [
    "RUN_FILES",
    "check_run_folder",
    "format_leaderboard",
    "write_plots",
    "write_report",
    "write_verdict",
]
