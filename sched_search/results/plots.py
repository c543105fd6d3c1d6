"""matplotlib figures from results and tables: saved as PNG, never shown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..config import BASELINE_ARM
from ..rangetest import pyplot

# --------------------------------------------------------------------------------------------- report figures
# Each takes a table from `report.py` (the calculation) and only draws it; an empty table gives a labelled,
# empty figure rather than an error, so a report of an interrupted run still renders.

BASELINE_COLOR = "#888888"


def _save(fig, path: str | Path) -> Path:
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes, color="gray")


GREYS = (BASELINE_COLOR, "#4d4d4d", "#b3b3b3", "#6e6e6e", "#cccccc")


def _fixed(arm: str) -> bool:
    """A baseline (`verdict.is_baseline`) or an attribution-ladder rung: a fixed recipe, drawn in grey."""
    return arm == BASELINE_ARM or arm.startswith(("default:", "ladder:"))


def _colors(arms: Sequence[str]) -> dict[str, str]:
    """One color per searched arm, stable across figures; baselines and ladder rungs in shades of grey (the
    seed's constant Adam always the same one)."""
    palette = [f"C{i}" for i in range(10)]
    ordered = sorted(a for a in arms if not _fixed(a))
    colors = {a: palette[i % len(palette)] for i, a in enumerate(ordered)}
    fixed = sorted(a for a in set(arms) if _fixed(a) and a != BASELINE_ARM)
    colors.update({a: GREYS[1 + i % (len(GREYS) - 1)] for i, a in enumerate(fixed)})
    colors[BASELINE_ARM] = BASELINE_COLOR
    return colors


def _legend(ax, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:  # an empty figure has nothing to label
        ax.legend(**kwargs)


def _value_text(value: float, metric: str) -> str:
    # verdict.metric_text's format; plots sits on verdict's floor and cannot import it
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4g}"


def _target_line(ax, target: float | None, metric: str = "accuracy") -> None:
    if target is not None and math.isfinite(target):
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {_value_text(target, metric)}")


def plot_range_curves(range_test, path: str | Path, summaries: dict | None = None) -> Path:
    """Range-test curves from the run folder's CSVs: smoothed loss against LR (log x), one panel per
    optimizer, one line per weight decay (the chosen one bold), suggested min/max LR from the JSON summaries
    as lines.

    Args:
        range_test: `Run.range_test` (columns lr, curve, weight_decay, optimizer).
        path: the PNG to write.
        summaries: optimizer -> range_test_<opt>.json (suggested_min_lr, suggested_max_lr,
            weight_decay.chosen).
    """
    plt = pyplot()
    opts = sorted(range_test["optimizer"].unique()) if len(range_test) else []
    fig, axes = plt.subplots(1, max(1, len(opts)), figsize=(6 * max(1, len(opts)), 4.5), squeeze=False)
    if not opts:
        _no_data(axes[0][0], "range test")
    for ax, opt in zip(axes[0], opts, strict=False):
        frame = range_test[range_test["optimizer"] == opt]
        summary = (summaries or {}).get(opt, {})
        chosen = (summary.get("weight_decay") or {}).get("chosen")
        for wd, g in frame.groupby("weight_decay"):
            bold = chosen is not None and math.isclose(wd, chosen)
            ax.plot(
                g["lr"],
                g["curve"],
                lw=2.2 if bold else 1.0,
                label=f"wd={wd:g}" + (" (chosen)" if bold else ""),
            )
        for key, style in (("suggested_min_lr", "--"), ("suggested_max_lr", "-")):
            if summary.get(key):
                ax.axvline(summary[key], color="k", ls=style, lw=1, label=f"{key[10:]} = {summary[key]:.2g}")
        finite = frame["curve"][frame["curve"].map(math.isfinite)]
        if len(finite):
            # The divergence tail goes to huge values; keep the descent readable.
            ax.set_ylim(finite.min() * 0.95, min(finite.max(), 2 * finite.iloc[0]) * 1.05)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.set_title(f"range test: {opt} ({summary.get('verdict', '?')})")
        _legend(ax, fontsize=7)
    return _save(fig, path)


def plot_schedules(curves, path: str | Path) -> Path:
    """LR (log y) and momentum against epochs for each arm's best config: lines computed from the schedules,
    dots recorded by the runs at epoch ends (`report.schedule_curves`)."""
    plt = pyplot()
    fig, (ax_lr, ax_m) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    if len(curves) == 0:
        _no_data(ax_lr, "schedules")
    colors = _colors(curves["arm"].unique() if len(curves) else [])
    for arm, g in curves.groupby("arm") if len(curves) else []:
        line, dots = g[~g["recorded"].astype(bool)], g[g["recorded"].astype(bool)]
        ax_lr.plot(line["epoch"], line["lr"], color=colors[arm], label=arm)
        ax_m.plot(line["epoch"], line["momentum"], color=colors[arm], label=arm)
        ax_lr.scatter(dots["epoch"], dots["lr"], color=colors[arm], s=14, zorder=3)
        ax_m.scatter(dots["epoch"], dots["momentum"], color=colors[arm], s=14, zorder=3)
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("best config per arm: lines from the schedule, dots recorded at epoch ends")
    ax_m.set_ylabel("momentum / Adam beta1")
    ax_m.set_xlabel("epoch")
    _legend(ax_lr, fontsize=8)
    return _save(fig, path)


def plot_budget_ladder(
    ladder, path: str | Path, target: float | None = None, metric: str = "accuracy"
) -> Path:
    """Final val metric against budget in epochs (log2 x): mean over seeds with min-max error bars per arm,
    the target as a horizontal line (`leaderboard.budget_ladder`); `metric` names the axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(ladder) == 0:
        _no_data(ax, "final-stage results")
    colors = _colors(ladder["arm"].unique() if len(ladder) else [])
    for arm, g in ladder.groupby("arm") if len(ladder) else []:
        # clip: the mean of equal values can exceed their max by a rounding error, and matplotlib refuses that
        err = [(g["mean"] - g["min"]).clip(lower=0), (g["max"] - g["mean"]).clip(lower=0)]
        ax.errorbar(
            g["budget_epochs"], g["mean"], yerr=err, marker="o", capsize=3, color=colors[arm], label=arm
        )
    _target_line(ax, target, metric)
    ax.set_xscale("log", base=2)
    if len(ladder):
        ticks = sorted(ladder["budget_epochs"].unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("budget (epochs; the schedule compressed into it)")
    ax.set_ylabel(f"final val {metric} (mean, min-max over seeds)")
    ax.set_title(f"val {metric} against budget")
    _legend(ax, fontsize=8)
    return _save(fig, path)


def plot_learning_curves(
    curves,
    path: str | Path,
    target: float | None = None,
    arms: Sequence[str] | None = None,
    metric: str = "accuracy",
) -> Path:
    """Val metric and val loss (log y) against epoch of the full-budget runs: median over seeds with a
    min-max band per arm (`results.learning_curves`); `arms` picks some, `metric` names the axis."""
    plt = pyplot()
    fig, (ax_a, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    if len(curves) == 0:
        _no_data(ax_a, "full-budget runs")
    colors = _colors(curves["arm"].unique() if len(curves) else [])
    for arm, g in curves.groupby("arm") if len(curves) else []:
        if arms is not None and arm not in arms:
            continue
        for ax, col in ((ax_a, "val_metric"), (ax_l, "val_loss")):
            ax.plot(g["epoch"], g[f"{col}_median"], color=colors[arm], label=arm)
            ax.fill_between(g["epoch"], g[f"{col}_min"], g[f"{col}_max"], color=colors[arm], alpha=0.2)
    _target_line(ax_a, target, metric)
    ax_a.set_ylabel(f"val {metric} (median, min-max over seeds)")
    ax_l.set_ylabel("val loss (median, min-max over seeds)")
    ax_l.set_yscale("log")
    for ax in (ax_a, ax_l):
        ax.set_xlabel("epoch")
        _legend(ax, fontsize=8)
    ax_a.set_title("learning curves (full budget)")
    return _save(fig, path)


def plot_arm_comparison(
    curves, arms: Sequence[str], path: str | Path, target: float | None = None, metric: str = "accuracy"
) -> Path:
    """Two (or more) arms' full-budget val metric side by side, one panel each with a shared y axis."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(arms), figsize=(5.5 * len(arms), 4.2), sharey=True, squeeze=False)
    colors = _colors(curves["arm"].unique() if len(curves) else [])
    for ax, arm in zip(axes[0], arms, strict=True):
        g = curves[curves["arm"] == arm] if len(curves) else curves
        if len(g) == 0:
            _no_data(ax, f"{arm} runs")
        else:
            ax.plot(g["epoch"], g["val_metric_median"], color=colors[arm], label="median")
            ax.fill_between(
                g["epoch"],
                g["val_metric_min"],
                g["val_metric_max"],
                color=colors[arm],
                alpha=0.2,
                label="min-max over seeds",
            )
        _target_line(ax, target, metric)
        ax.set_title(arm)
        ax.set_xlabel("epoch")
        _legend(ax, fontsize=8)
    axes[0][0].set_ylabel(f"val {metric}")
    return _save(fig, path)


def plot_leaderboard(
    leaderboard, path: str | Path, target: float | None = None, metric: str = "accuracy", mode: str = "max"
) -> Path:
    """Mean final val metric per arm as bars with the verdict's 95% interval (none when not estimable); the
    top group's bars are hatched; `mode` "min" says lower is better."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(leaderboard) + 2), 4.5))
    if len(leaderboard) == 0:
        _no_data(ax, "leaderboard")
    else:
        colors = _colors(leaderboard["arm"])
        mean = leaderboard["mean_val_metric"]
        # asymmetric: bootstrap intervals need not be centred on the mean (accuracy's stay inside [0, 1])
        below = (mean - leaderboard["ci_low"]).fillna(0.0).clip(lower=0)
        above = (leaderboard["ci_high"] - mean).fillna(0.0).clip(lower=0)
        bars = ax.bar(
            leaderboard["arm"],
            mean,
            yerr=[below, above],
            capsize=4,
            color=[colors[a] for a in leaderboard["arm"]],
        )
        for bar, top in zip(bars, leaderboard["top_group"], strict=True):
            if top:
                bar.set_hatch("//")
        low, high = (mean - below).min(), (mean + above).max()
        if metric == "accuracy":
            ax.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.02))
        elif math.isfinite(low) and math.isfinite(high):
            pad = 0.1 * (high - low) or 0.05 * abs(high) or 1.0
            ax.set_ylim(max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
        ax.tick_params(axis="x", rotation=20)
    _target_line(ax, target, metric)
    ax.set_xlabel("arm (schedule-optimizer); hatched: top group")
    ax.set_ylabel(f"final val {metric} (mean, 95% CI)")
    better = "; lower is better" if mode == "min" else ""
    ax.set_title(f"leaderboard (full budget, over seeds{better})")
    _legend(ax, fontsize=8)
    return _save(fig, path)


def plot_frontier(
    points: Sequence[dict], path: str | Path, metric: str = "accuracy", half: float | None = None
) -> Path:
    """The frontier (`frontier.frontier`): the recommended config's val metric against the trainings spent
    (log x), a step at each run the study learned, a marker coloured by arm where the recommendation
    changes and its 95% interval where seeds give one; the baselines as grey diamonds at their own cost;
    `half` (trainings) as a dotted line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    study = [p for p in points if p["kind"] == "study"]
    fixed = [p for p in points if p["kind"] == "baseline"]
    if not study and not fixed:
        _no_data(ax, "recommendation")
    colors = _colors(sorted({p["arm"] for p in points}))
    if study:
        ax.step([p["trainings"] for p in study], [p["metric"] for p in study], where="post", color="k", lw=1,
                alpha=0.6, label="recommended so far")  # fmt: skip
    shown: set[str] = set()
    for i, p in enumerate(study):
        changed = i == 0 or (p["arm"], p["source_trial"], p["metric"]) != tuple(
            study[i - 1][k] for k in ("arm", "source_trial", "metric")
        )
        if changed or i == len(study) - 1:
            _interval_point(ax, p, colors[p["arm"]], "o", None if p["arm"] in shown else p["arm"])
            shown.add(p["arm"])
    for p in fixed:
        _interval_point(ax, p, colors[p["arm"]], "D", f"{p['arm']} (baseline)")
    if half is not None and study:
        ax.axvline(half, color="gray", ls=":", lw=1, label="half of the compute")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("trainings spent (a run's epochs over one full training's; range tests included)")
    ax.set_ylabel(f"val {metric} of the recommendation")
    ax.set_title("the answer per training spent")
    _legend(ax, fontsize=8)
    return _save(fig, path)


def _interval_point(ax, p: dict, color: str, marker: str, label: str | None) -> None:
    low, high = p.get("ci_low"), p.get("ci_high")
    err = None
    if low is not None and high is not None:  # clip: a bootstrap interval need not hold its mean
        err = [[max(0.0, p["metric"] - low)], [max(0.0, high - p["metric"])]]
    ax.errorbar([p["trainings"]], [p["metric"]], yerr=err, marker=marker, color=color, capsize=3, ls="none",
                label=label)  # fmt: skip


def plot_importances(importances, path: str | Path) -> Path:
    """Optuna parameter importances as horizontal bars, one panel per arm in rows of three
    (`results.param_importances`), each titled with its count of trials, the figure with a caveat: fANOVA
    on a handful of trials ranks parameters roughly at best."""
    plt = pyplot()
    arms = list(dict.fromkeys(importances["arm"])) if len(importances) else []
    cols = min(3, max(1, len(arms)))
    rows = max(1, math.ceil(len(arms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 0.6 + 2.6 * rows), squeeze=False)
    if not arms:
        _no_data(axes[0][0], "importances")
    counts = {}
    for ax, arm in zip(axes.flat, arms, strict=False):
        g = importances[importances["arm"] == arm].sort_values("importance")
        n = int(g["n_trials"].iloc[0]) if "n_trials" in g else None
        counts[arm] = n
        ax.barh(g["param"], g["importance"], color="C0")
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=9)
        ax.set_title(arm + (f" ({n} trials)" if n else ""), fontsize=10)
    for ax in axes.flat[max(1, len(arms)) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("importance (fANOVA, sums to 1)", fontsize=9)
    known = sorted({n for n in counts.values() if n})
    if known:
        span = f"{known[0]}" if len(known) == 1 else f"{known[0]}-{known[-1]}"
        fig.suptitle(f"{span} complete trials per arm: importances are rough, a hint rather than a ranking")
    return _save(fig, path)


def plot_schedule_gallery(path: str | Path, total_steps: int = 1000, steps_per_epoch: int = 50) -> Path:
    """Draw each schedule family's representative schedules (its spec's `gallery`: LR, and momentum where the
    schedule drives it) into one PNG at `path`, as the study runs them: CLR, SGDR and the warm-up schedules
    keep the optimizer's momentum (SGDW 0.9, AdamW beta1 0.9) flat, one-cycle cycles it 0.95 -> 0.85 -> 0.95
    (the paper preset). Each panel says which.
    """
    from ..lr import SPECS, lr_at, momentum_at

    panels = {k: v for spec in SPECS.values() for k, v in spec.gallery(total_steps, steps_per_epoch).items()}
    plt = pyplot()
    rows = math.ceil(len(panels) / 3)
    fig = plt.figure(figsize=(15, 3.5 * rows))
    steps = range(total_steps)
    axes = list(fig.subplots(rows, 3).flat)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, (cfg, momentum)) in zip(axes, panels.items()):
        ax.plot(steps, [lr_at(cfg, s) for s in steps], color="tab:blue")
        ax.set(
            title=f"{title}\n{momentum}",
            xlabel=f"step ({steps_per_epoch} per epoch)",
            ylabel="LR",
            ylim=(0, None),
        )
        if momentum_at(cfg, 0) is not None:
            ax2 = ax.twinx()
            ax2.plot(steps, [momentum_at(cfg, s) for s in steps], color="tab:orange", linestyle="--")
            ax2.set_ylabel("momentum (dashed)")
    return _save(fig, path)
