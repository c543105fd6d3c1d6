"""Reports from a run folder: `load_run` (tables, leaderboard, words), figure data, report.md / report.html.

The statistics live in `leaderboard.py`, the figures in `plots.py`; this module loads the tidy tables that
`study.run_study` writes. A run that is still going or was interrupted loads too: what is not there yet is listed
in `Run.missing`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .leaderboard import (
    FULL_RUN_NOTE,
    budget_ladder,
    build_leaderboard,
    first_epoch_at_target,
)
from .tables import failure_lines, final_rows
from .verdict import decide


@dataclass(frozen=True, eq=False)
class Run:
    """One run folder, loaded: the tables, the leaderboard and its words, and what is not there yet."""

    path: Path
    config: dict  # resolved_config.json ({} when absent)
    trials: pd.DataFrame  # one row per (trial_id, budget)
    epochs: pd.DataFrame  # one row per (trial_id, budget, epoch)
    leaderboard: pd.DataFrame  # one row per arm: the top group first, then by mean final val accuracy
    range_test: pd.DataFrame  # the range_test_<opt>.csv curves with an `optimizer` column
    target: float  # accuracy the epochs-to-target counts to (NaN when unknown)
    summary: str  # the verdict's headline: winner or top group, calls against the baseline, speed-up
    verdict: dict = field(default_factory=dict)  # verdict.decide(...): what verdict.json holds
    missing: list[str] = field(default_factory=list)  # what is not there (yet), one line each
    range_summaries: dict = field(default_factory=dict)  # optimizer -> range_test_<opt>.json
    final_configs: list = field(default_factory=list)  # final_configs.json: one trial config per (arm, seed)
    spaces: dict = field(default_factory=dict)  # spaces.json: arm -> searched params and their sources


# --------------------------------------------------------------------------------------------- figure data


def learning_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    """Full-budget final runs per (arm, epoch): median, min and max over seeds of val accuracy and val loss.

    Example:
        >>> learning_curves(run.epochs).columns[:3].tolist()  # doctest: +SKIP
        ['arm', 'epoch', 'val_accuracy_median']
    """
    rows = final_rows(epochs)
    if rows.empty:
        return pd.DataFrame(columns=["arm", "epoch"])
    g = rows.groupby(["arm", "epoch"])[["val_accuracy", "val_loss"]].agg(["median", "min", "max"])
    g.columns = [f"{m}_{s}" for m, s in g.columns]
    return g.reset_index()


def schedule_curves(
    final_configs: list[dict], epochs: pd.DataFrame | None = None, steps_per_epoch: int = 100
) -> pd.DataFrame:
    """LR and momentum of each arm's best config over its full budget, per step, from the pure schedules.

    `steps_per_epoch` is the run's (`resolved_config.json`; older folders lack it and get 100, the same shape up to
    rounding of cycle lengths); `epochs` (the table) adds the LR and
    momentum the runs recorded at epoch ends, and fills momentum for schedules that do not cycle it.

    Returns:
        Columns arm, epoch (fractional), lr, momentum, recorded (False: computed, True: from the table).

    Example:
        >>> schedule_curves(run.final_configs, run.epochs)  # doctest: +SKIP
    """
    from .arms import build_schedule
    from .schedules import lr_at, momentum_at

    out = []
    seen = set()
    for config in final_configs:
        arm = config.get("arm", "?")
        if arm in seen:
            continue  # seeds share the config
        seen.add(arm)
        n_epochs = float(config["epochs"])
        schedule = build_schedule(config, n_epochs, steps_per_epoch)
        total = max(1, round(n_epochs * steps_per_epoch))
        for step in range(total + 1):
            m = momentum_at(schedule, step)
            out.append(
                (arm, step / steps_per_epoch, lr_at(schedule, step), math.nan if m is None else m, False)
            )
    frame = pd.DataFrame(out, columns=["arm", "epoch", "lr", "momentum", "recorded"])
    rows = final_rows(epochs) if epochs is not None else pd.DataFrame()
    if not rows.empty:
        rec = rows.groupby(["arm", "epoch"])[["lr", "momentum"]].first().reset_index()
        for arm, g in rec.groupby("arm"):
            mask = (frame["arm"] == arm) & frame["momentum"].isna()
            frame.loc[mask, "momentum"] = g["momentum"].iloc[0]  # not cycled: the optimizer's constant
        frame = pd.concat([frame, rec.assign(recorded=True)], ignore_index=True)
    return frame


def param_importances(run_dir: str | Path, min_trials: int = 4) -> tuple[pd.DataFrame, list[str]]:
    """Optuna's fANOVA parameter importances per arm from `optuna.db`, where an arm has >= `min_trials` complete
    trials; the notes say which arms were skipped and why.

    Returns:
        (DataFrame with columns arm, param, importance; notes).

    Example:
        >>> importances, notes = param_importances("runs/digits-20260101-120000")  # doctest: +SKIP
    """
    db = Path(run_dir) / "optuna.db"
    if not db.exists():
        return pd.DataFrame(columns=["arm", "param", "importance"]), ["optuna.db: not there (yet)"]
    import optuna

    storage = f"sqlite:///{db.resolve()}"
    out, notes = [], []
    for summary in optuna.get_all_study_summaries(storage):
        name = summary.study_name
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < min_trials:
            notes.append(f"importances for {name}: {len(complete)} complete trials, need >= {min_trials}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fANOVA's experimental and single-value warnings
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
                values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except Exception as err:  # noqa: BLE001 - importance needs >1 distinct value per param; any failure is a note
            notes.append(f"importances for {name}: not computable ({type(err).__name__}: {err})")
            continue
        out += [(name, param, float(v)) for param, v in values.items()]
    return pd.DataFrame(out, columns=["arm", "param", "importance"]), notes


# --------------------------------------------------------------------------------------------- loading


_METRICS = {
    "trials": ("budget_epochs", "final_val_accuracy", "final_val_loss", "test_accuracy", "wall_time"),
    "epochs": ("epoch", "val_accuracy", "val_loss", "lr", "momentum"),
}


def _read_json(path: Path, missing: list[str], default: Any) -> Any:
    if not path.exists():
        missing.append(f"{path.name}: not there (yet)")
        return default
    return json.loads(path.read_text())


def load_run(path: str | Path) -> Run:
    """Load a run folder written by `run_study`, finished, still going or interrupted.

    Missing files give empty tables and a line in `Run.missing`, never an error; only a folder that does not
    exist raises.

    Example:
        >>> run = load_run("runs/smoke-20260101-120000")  # doctest: +SKIP
        >>> run.leaderboard[["arm", "top_group", "mean_val_accuracy", "acc_ci_low", "speedup"]]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a run folder: it does not exist.")
    missing: list[str] = []
    config = _read_json(path / "resolved_config.json", missing, {})
    tables = {}
    for name in ("trials", "epochs"):
        file = path / f"{name}.parquet"
        if file.exists():
            tables[name] = pd.read_parquet(file)
            # A table of failed trials only lacks the metric columns; NaN keeps the arithmetic uniform.
            for col in _METRICS[name]:
                if col not in tables[name].columns:
                    tables[name][col] = math.nan
        else:
            tables[name] = pd.DataFrame()
            missing.append(
                f"{file.name}: not written yet (the run is still going, was interrupted, or failed)"
            )
    trials, epochs = tables["trials"], tables["epochs"]
    curves, summaries = [], {}
    for csv in sorted(path.glob("range_test_*.csv")):
        opt = csv.stem.removeprefix("range_test_")
        curves.append(pd.read_csv(csv).assign(optimizer=opt))
        if csv.with_suffix(".json").exists():
            summaries[opt] = json.loads(csv.with_suffix(".json").read_text())
    if not curves:
        missing.append("range_test_<optimizer>.csv: not there (yet)")
    spaces = _read_json(path / "spaces.json", missing, {})
    final_configs = _read_json(path / "final_configs.json", missing, [])
    verdict = decide(
        trials,
        target_accuracy=(config.get("study") or {}).get("target_accuracy"),
        chance_accuracy=config.get("chance_accuracy"),
    )
    target = math.nan if verdict["target_accuracy"] is None else verdict["target_accuracy"]
    searched = {arm: [p["name"] for p in s.get("params", [])] for arm, s in spaces.items()}
    board = build_leaderboard(trials, epochs, verdict, searched)
    if board.empty:
        missing.append("leaderboard: no final-stage rows at the full budget yet")
    if not math.isfinite(target):
        missing.append("target: no study target_accuracy and no baseline result yet")
    return Run(
        path=path,
        config=config,
        trials=trials,
        epochs=epochs,
        leaderboard=board,
        range_test=pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        target=target,
        summary=verdict["headline"],
        verdict=verdict,
        missing=missing,
        range_summaries=summaries,
        final_configs=final_configs,
        spaces=spaces,
    )


# --------------------------------------------------------------------------------------------- output


def _display(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard for people: accuracies in %, intervals beside the means, "not estimable" with < 3 seeds."""

    def num(x: float, fmt: str) -> str:
        return "" if x is None or not math.isfinite(x) else format(x, fmt)

    def interval(lo: float, hi: float, scale: float = 100, fmt: str = ".2f") -> str:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "not estimable"
        return f"[{num(scale * lo, fmt)}, {num(scale * hi, fmt)}]"

    return pd.DataFrame(
        {
            "arm": [f"{a} *" if top else a for a, top in zip(board["arm"], board["top_group"], strict=True)],
            "seeds": board["n_seeds"],
            "failed": board["n_failed"],
            "val acc %": [num(100 * m, ".2f") for m in board["mean_val_accuracy"]],
            "95% CI": [interval(lo, hi) for lo, hi in zip(board["acc_ci_low"], board["acc_ci_high"], strict=True)],
            "std %": [num(100 * s, ".2f") or "not estimable" for s in board["std_val_accuracy"]],
            "vs baseline (points, 95% CI)": [
                call if call in ("baseline", "") or not math.isfinite(d) else f"{call} {100 * d:+.2f} {interval(lo, hi)}"
                for call, d, lo, hi in zip(
                    board["vs_baseline"],
                    board["diff_vs_baseline"],
                    board["diff_ci_low"],
                    board["diff_ci_high"],
                    strict=True,
                )
            ],
            "val loss": [num(v, ".4f") for v in board["mean_val_loss"]],
            "test acc %": [num(100 * v, ".2f") for v in board["mean_test_accuracy"]],
            "epochs to target": [num(v, "g") for v in board["epochs_to_target"]],
            "speed-up": board["to_target"].fillna(""),
            "first epoch at target (full run)": [num(v, "g") for v in board["first_epoch_at_target_full_run"]],
            "wall s/run": [num(v, ".3g") for v in board["wall_time_s"]],
            "best config": board["best_config"],
        }
    )


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
            f"{arm}: every search trial was stopped early by ASHA, so its best config was chosen on a shorter run."
        )
    return notes


def format_leaderboard(run: Run) -> str:
    """The leaderboard as a plain-text table for the terminal, with the target and the words under it.

    Example:
        >>> print(format_leaderboard(load_run(run_dir)))  # doctest: +SKIP
    """
    if run.leaderboard.empty:
        return f"{run.path}: no leaderboard yet.\n" + "\n".join(f"  missing: {m}" for m in run.missing)
    target = f"{100 * run.target:.2f}%" if math.isfinite(run.target) else "none"
    shown = _display(run.leaderboard)
    table = shown.drop(columns="best config").to_string(index=False)
    width = max(len(a) for a in shown["arm"])
    configs = "\n".join(
        f"  {a:<{width}}  {c}" for a, c in zip(shown["arm"], shown["best config"], strict=True)
    )
    notes = "\n".join(f"  {n}" for n in _verdict_notes(run))
    return (
        f"{run.path}  (target {target})\n{table}\n\nbest configs:\n{configs}\n\n{run.summary}\n\n"
        f"how this was decided:\n{notes}\n"
    )


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
            run.leaderboard, out_dir / "leaderboard.png", run.target
        )
        ladder = budget_ladder(run.trials)
        files["budget_ladder"] = plots.plot_budget_ladder(ladder, out_dir / "budget_ladder.png", run.target)
    curves = learning_curves(run.epochs)
    if not curves.empty:
        files["learning_curves"] = plots.plot_learning_curves(
            curves, out_dir / "learning_curves.png", run.target
        )
    importances, more = param_importances(run.path)
    notes += more
    if not importances.empty:
        files["importances"] = plots.plot_importances(importances, out_dir / "importances.png")
    return files, notes


def _md_table(df: pd.DataFrame) -> str:
    cells = [[str(c) for c in df.columns]] + [
        [str(v).replace("|", "\\|") for v in r] for r in df.itertuples(False)
    ]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(df.columns))
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;"
    "text-align:right}th{background:#f0f0f0}td:first-child,td:last-child{text-align:left}"
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#555;font-size:13px}"
)


def write_verdict(run: Run) -> Path:
    """Write `verdict.json` (the machine-readable answer: winner, top group, calls, speed-ups) into the run folder."""
    path = run.path / "verdict.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run.verdict, indent=2, allow_nan=False, default=str))
    tmp.replace(path)
    return path


def write_report(run_dir: str | Path, run: Run | None = None) -> dict[str, Path]:
    """Write the report of a run folder: report.md, a self-contained report.html (figures inlined as base64 PNG),
    leaderboard.csv, trials.csv, epochs.csv and the figures under plots/. `run`: that folder already loaded.

    Returns:
        name -> path of every file written ("report.md", "report.html", "leaderboard.csv", ..., "plot:<name>").

    Example:
        >>> write_report("runs/smoke-20260101-120000")["report.html"]  # doctest: +SKIP
    """
    run = run if run is not None else load_run(run_dir)
    path = run.path
    written: dict[str, Path] = {}
    for name, table in (("leaderboard", run.leaderboard), ("trials", run.trials), ("epochs", run.epochs)):
        written[f"{name}.csv"] = path / f"{name}.csv"
        table.drop(columns="val_correct", errors="ignore").to_csv(written[f"{name}.csv"], index=False)
    written["verdict.json"] = write_verdict(run)
    figures, notes = write_plots(run, path / "plots")
    written.update({f"plot:{k}": v for k, v in figures.items()})
    notes = [f"Failed runs: {line}" for line in failure_lines(run.trials)] + run.missing + notes
    study = run.config.get("study", {})
    title = f"Report: {study.get('name', path.name)} ({path.name})"
    target = f"{100 * run.target:.2f}%" if math.isfinite(run.target) else "none"
    shown = _display(run.leaderboard)
    captions = {
        "leaderboard": "Mean final val accuracy per arm at the full budget, 95% CI over seeds",
        "budget_ladder": "Final val accuracy against budget (each rung a full, compressed schedule)",
        "learning_curves": "Full-budget learning curves: median over seeds, min-max band",
        "schedules": "LR and momentum of each arm's best config",
        "range_test": "LR range test (smoothed loss per weight decay)",
        "importances": "Optuna fANOVA parameter importances per arm",
    }
    decided = _verdict_notes(run) if run.verdict.get("arms") else []
    md = [f"# {title}", "", f"**{run.summary}**", "", f"Target accuracy: {target}.", "", "## Leaderboard", ""]
    md += [_md_table(shown), "", *[f"- {n}" for n in decided], "", f"_{FULL_RUN_NOTE}_", ""]
    md += [
        line for k, f in figures.items() for line in (f"## {captions[k]}", "", f"![{k}](plots/{f.name})", "")
    ]
    md += ["## Notes", ""] + [f"- {n}" for n in notes] if notes else []
    written["report.md"] = path / "report.md"
    written["report.md"].write_text("\n".join(md) + "\n")

    def img(f: Path) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(f.read_bytes()).decode("ascii")}" alt="{f.stem}">'

    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p><strong>{html.escape(run.summary)}</strong></p>",
        f"<p>Target accuracy: {target}.</p>",
        "<h2>Leaderboard</h2>",
        shown.to_html(index=False, border=0, classes="leaderboard"),
        "<ul class=\"note\">", *[f"<li>{html.escape(n)}</li>" for n in decided], "</ul>",
        f'<p class="note">{html.escape(FULL_RUN_NOTE)}</p>',
    ]
    body += [f"<h2>{html.escape(captions[k])}</h2>{img(f)}" for k, f in figures.items()]
    if not run.trials.empty:
        body += [
            "<details><summary>All trials</summary>",
            run.trials.drop(columns="val_correct", errors="ignore").to_html(index=False, border=0),
            "</details>",
        ]
    if notes:
        body += ["<h2>Notes</h2><ul>", *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    written["report.html"] = path / "report.html"
    written["report.html"].write_text(page)
    return written


__all__ = [
    "Run",
    "budget_ladder",
    "build_leaderboard",
    "first_epoch_at_target",
    "format_leaderboard",
    "learning_curves",
    "load_run",
    "param_importances",
    "schedule_curves",
    "write_plots",
    "write_report",
    "write_verdict",
]
