"""The verdict: which arms cannot be told apart from the best, which beat the baseline, and how much sooner.

Every number here carries two sources of noise. The seeds: every arm runs the same seeds, so arms are compared
paired by seed. The finite evaluation set: every final run records its metric per validation example
(`val_examples`: right or wrong for accuracy, a float otherwise), so arms are compared paired by example, and
a gap of one example is known to be one example. Runs whose metric gives no per-example values are compared
paired by seed only. "Better" follows the metric's direction (`mode`: "max" or "min"). The tests and the
bootstrap are in `paired.py`. Pure calculation on the trials table; `results.load_run` calls `decide` and
`verdict.json` stores its answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .config import BASELINE_ARM
from .paired import ALPHA, bootstrap_weights, holm, paired_difference, resampled_means
from .tables import decode_examples, final_rows

MIN_SEEDS = 3  # below this the seed-to-seed spread is not estimable and no winner or "better" is called
ORDER_RULE = (
    "Inside the top group arms are listed by fewer epochs to the target, then lower mean val loss; "
    "that order is a tie-break, not a win."
)


# --------------------------------------------------------------------------------------------- the outcomes


def outcomes(
    trials: pd.DataFrame,
) -> tuple[dict[str, dict[float, np.ndarray]], list[int], dict[str, str], bool]:
    """Per arm and budget (in epochs), the seeds x examples metric values of the finished final runs.

    Only seeds that every arm finished at its full budget are kept, so every comparison is paired; a rung that
    lacks one of them is left out. Arms with no finished full-budget run are returned as excluded, with why.
    When any of those runs has no per-example values (or their lengths differ), every run is one column: its
    `final_val_metric`, so arms are paired by seed only.

    Returns:
        (arm -> budget_epochs -> matrix, the seeds used, arm -> reason it was left out, paired by example).
    """
    excluded: dict[str, str] = {}
    if trials.empty or "arm" not in trials.columns:
        return {}, [], excluded, False
    rows = final_rows(trials, full_only=False)
    finals = rows["arm"].unique()
    cells = rows["val_examples"] if "val_examples" in rows.columns else pd.Series(None, rows.index, object)
    metric = (
        rows["final_val_metric"] if "final_val_metric" in rows.columns else pd.Series(math.nan, rows.index)
    )
    ok = rows["status"] == "ok" if "status" in rows.columns else True
    keep = ok & (cells.notna() | metric.notna())
    rows, cells, metric = rows[keep], cells[keep], metric[keep]
    values = [decode_examples(c) for c in cells]
    by_example = bool(values) and all(v is not None for v in values) and len({len(v) for v in values}) == 1
    if not by_example:
        rows = rows[metric.notna()]
        values = [np.array([v], float) for v in metric[metric.notna()]]
    rows = rows.assign(_values=pd.Series(values, index=rows.index, dtype=object))
    full = final_rows(rows)
    seeds_of = {arm: set(g["seed"].astype(int)) for arm, g in full.groupby("arm")}
    for arm in finals:
        if arm not in seeds_of:
            excluded[str(arm)] = "no final run finished at the full budget"
    common = sorted(set.intersection(*seeds_of.values())) if seeds_of else []
    matrices: dict[str, dict[float, np.ndarray]] = {}
    for (arm, epochs), g in rows.groupby(["arm", "budget_epochs"]):
        by_seed = dict(zip(g["seed"].astype(int), g["_values"], strict=True))
        if arm in seeds_of and common and all(s in by_seed for s in common):
            matrices.setdefault(str(arm), {})[float(epochs)] = np.stack([by_seed[s] for s in common])
    return matrices, common, excluded, by_example


# --------------------------------------------------------------------------------------------- the decision


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _epochs_to_target(rung_means: dict[float, Any], target: Any, sign: float = 1.0) -> Any:
    """Smallest budget (epochs) whose mean reaches `target` (at least it for sign +1, a "max" metric; at most
    for -1); works per bootstrap draw on arrays (inf: never)."""
    reached = np.full(np.shape(target), np.inf)
    for epochs in sorted(rung_means, reverse=True):
        # the tolerance lets the baseline reach its own mean, computed the same way on the same numbers
        reached = np.where(sign * (rung_means[epochs] - target) >= -1e-12, epochs, reached)
    return reached


def decide(
    trials: pd.DataFrame,
    target: float | None = None,
    chance_accuracy: float | None = None,
    baseline: str = BASELINE_ARM,
    metric: str = "accuracy",
    mode: str = "max",
) -> dict[str, Any]:
    """The verdict of a study from its trials table: top group, winner, calls against the baseline, speed-ups.

    "Better" is higher for `mode` "max", lower for "min", in every call below.

    - Top group: the leader (best mean final val metric at the full budget) and every arm whose paired
      difference to it is not significant at `ALPHA` after Holm's correction over those comparisons. A winner
      is named only when the group has one arm; fewer than `MIN_SEEDS` seeds name none.
    - Against the baseline: each arm is "better", "worse" or "equal" (not told apart), Holm-corrected.
    - Speed-up: the baseline's epochs to the target over the arm's, from the budget ladder (each rung a full,
      compressed schedule); the target is the study's, else the baseline's own mean at its full budget. The
      95% interval resamples seeds and validation examples together (`DRAWS` draws, paired across arms).
      Reached at the smallest rung, the estimate is a lower bound.

    Differences (`diff` and its interval, in the metric's units) keep one sign whatever the mode:
    `vs_baseline` is the arm minus the baseline, `vs_leader` the leader minus the arm (so positive for "max",
    negative for "min"); the calls read them through the mode. Without per-example values in the final runs,
    arms are paired by seed only (`paired_by_example` False).

    Args:
        trials: the trials table (final runs carry `final_val_metric` and, where the metric has them,
            per-example values in `val_examples`).
        target: the study's target in the metric's units, or None for the baseline's mean.
        chance_accuracy: the accuracy of always predicting the most frequent validation class, if known
            (used only when `metric` is "accuracy").
        baseline: the baseline arm's name.
        metric: the metric's display name ("accuracy", "loss", or a custom function's name).
        mode: "max" (higher is better) or "min" (lower is better).

    Returns:
        A JSON-ready dict; see `verdict.json` in docs/workflow.md for its keys.

    Example:
        >>> decide(run.trials, metric="mae", mode="min")["winner"]  # doctest: +SKIP
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', but got {mode!r}.")
    accuracy, sign = metric == "accuracy", 1.0 if mode == "max" else -1.0
    matrices, seeds, excluded, by_example = outcomes(trials)
    arms = sorted(matrices)
    full = {arm: matrices[arm][max(matrices[arm])] for arm in arms}
    n_examples = next(iter(full.values())).shape[1] if full else 0
    out: dict[str, Any] = {
        "winner": None,
        "leader": None,
        "top_group": [],
        "baseline": baseline,
        "better_than_baseline": [],
        "worse_than_baseline": [],
        "metric": metric,
        "mode": mode,
        "target": None,
        "target_source": None,
        "target_meaningful": None,
        "chance_accuracy": chance_accuracy if accuracy else None,
        "paired_by_example": by_example,
        "eval_examples": n_examples if by_example else None,
        "points_per_example": 100 / n_examples if by_example and accuracy else None,
        "seeds": seeds,
        "n_seeds": len(seeds),
        "alpha": ALPHA,
        "arms": {},
        "speedup": {},
        "excluded": excluded,
        "rule": "",
        "order_rule": ORDER_RULE,
        "headline": "",
    }
    if not arms:
        out["headline"] = "No finished final runs at the full budget: no verdict."
        out["rule"] = out["headline"]
        return out
    s = len(seeds)
    estimable = s >= MIN_SEEDS
    seed_w, example_w = bootstrap_weights(s, n_examples)
    loss = _mean_val_loss(trials)
    for arm in arms:
        boot = resampled_means(full[arm], seed_w, example_w)
        per_seed = full[arm].mean(1)
        out["arms"][arm] = {
            "mean": float(full[arm].mean()),
            "ci_low": float(np.percentile(boot, 2.5)) if estimable else None,
            "ci_high": float(np.percentile(boot, 97.5)) if estimable else None,
            "std_over_seeds": float(per_seed.std(ddof=1)) if estimable else None,
            "mean_val_loss": _none_if_nan(loss.get(arm, math.nan)),
        }
    leader = max(arms, key=lambda a: (sign * out["arms"][a]["mean"], -(loss.get(a, 0.0) or 0.0), a))
    out["leader"] = leader

    # --- the top group: leader against every other arm, Holm over those comparisons
    # intervals at alpha / m (Bonferroni): simultaneous, so one that excludes 0 agrees with the Holm call
    simultaneous = ALPHA / max(1, len(arms) - 1)
    vs_leader = {
        a: paired_difference(full[leader], full[a], simultaneous, accuracy) for a in arms if a != leader
    }
    adjusted = holm({a: c["p"] for a, c in vs_leader.items()}) if estimable else {}
    for a, c in vs_leader.items():
        out["arms"][a]["vs_leader"] = {**_clean(c), "p_holm": adjusted.get(a)}
    if estimable:
        out["top_group"] = [leader] + [a for a in vs_leader if adjusted[a] >= ALPHA]
    else:
        out["top_group"] = list(arms)
    out["winner"] = leader if estimable and len(out["top_group"]) == 1 else None

    # --- against the baseline, Holm over the arms
    if baseline in full:
        vs_base = {
            a: paired_difference(full[a], full[baseline], simultaneous, accuracy)
            for a in arms
            if a != baseline
        }
        adjusted = holm({a: c["p"] for a, c in vs_base.items()}) if estimable else {}
        for a, c in vs_base.items():
            call = "not estimable"
            if estimable:
                call = "equal" if adjusted[a] >= ALPHA else ("better" if sign * c["diff"] > 0 else "worse")
            out["arms"][a]["vs_baseline"] = {**_clean(c), "p_holm": adjusted.get(a), "call": call}
        out["better_than_baseline"] = [
            a for a in vs_base if out["arms"][a]["vs_baseline"]["call"] == "better"
        ]
        out["worse_than_baseline"] = [a for a in vs_base if out["arms"][a]["vs_baseline"]["call"] == "worse"]

    _speedups(out, matrices, full, target, seed_w, example_w)
    _order_top_group(out, loss)
    out["rule"], out["headline"] = _words(out)
    return out


def _clean(c: dict[str, float]) -> dict[str, float | None]:
    return {k: _none_if_nan(v) for k, v in c.items() if k != "df"}


def _mean_val_loss(trials: pd.DataFrame) -> dict[str, float]:
    rows = final_rows(trials)
    if "final_val_loss" not in rows.columns or rows.empty:
        return {}
    return rows.groupby("arm")["final_val_loss"].mean().to_dict()


def _speedups(
    out: dict[str, Any],
    matrices: dict[str, dict[float, np.ndarray]],
    full: dict[str, np.ndarray],
    study_target: float | None,
    seed_w: np.ndarray,
    example_w: np.ndarray,
) -> None:
    """Fill `out["speedup"]`, the target and whether it means anything (accuracy: the baseline must beat
    chance)."""
    baseline, sign, chance = out["baseline"], 1.0 if out["mode"] == "max" else -1.0, out["chance_accuracy"]
    if study_target is not None:
        target, boot_target = float(study_target), np.full(len(seed_w), float(study_target))
        out["target_source"] = "the study's target"
    elif baseline in full:
        target = float(full[baseline].mean())
        boot_target = resampled_means(full[baseline], seed_w, example_w)
        out["target_source"] = f"the mean final val {out['metric']} of the baseline {baseline}"
    else:
        return
    out["target"] = target
    base = out["arms"].get(baseline)
    low = base["ci_low"] if base and base["ci_low"] is not None else (base or {}).get("mean")
    out["target_meaningful"] = not (chance is not None and low is not None and low <= chance)
    if not out["target_meaningful"] or baseline not in matrices or out["n_seeds"] < MIN_SEEDS:
        return
    base_rungs = matrices[baseline]
    full_epochs = max(base_rungs)
    base_point = _epochs_to_target({e: m.mean() for e, m in base_rungs.items()}, target, sign)
    # a study target the baseline never reaches: its full budget is the reference, every speed-up a lower
    # bound
    base_reached = bool(np.isfinite(base_point))
    reference = float(base_point) if base_reached else full_epochs
    base_boot = _epochs_to_target(
        {e: resampled_means(m, seed_w, example_w) for e, m in base_rungs.items()}, boot_target, sign
    )
    base_boot = np.where(np.isfinite(base_boot), base_boot, full_epochs)
    for arm, rungs in matrices.items():
        if arm == baseline:
            continue
        point = float(_epochs_to_target({e: m.mean() for e, m in rungs.items()}, target, sign))
        boot = _epochs_to_target(
            {e: resampled_means(m, seed_w, example_w) for e, m in rungs.items()}, boot_target, sign
        )
        ratio = np.where(np.isfinite(boot), base_boot / boot, 0.0)  # 0: not reached in that draw
        reached = math.isfinite(point)
        out["speedup"][arm] = {
            "epochs_to_target": point if reached else None,
            "estimate": reference / point if reached else None,
            "ci_low": float(np.percentile(ratio, 2.5)),
            "ci_high": float(np.percentile(ratio, 97.5)),
            "lower_bound": bool(reached and (point == min(rungs) or not base_reached)),
            "reached_share": float(np.isfinite(boot).mean()),
        }


def _order_top_group(out: dict[str, Any], loss: dict[str, float]) -> None:
    def key(arm: str) -> tuple:
        sp = out["speedup"].get(arm) or {}
        epochs = sp.get("epochs_to_target")
        return (math.inf if epochs is None else epochs, loss.get(arm, math.inf), arm)

    out["top_group"] = sorted(out["top_group"], key=key)


# --------------------------------------------------------------------------------------------- the words


def metric_text(value: float, metric: str) -> str:
    """A value of the metric for people: accuracy in percent, anything else to 4 significant digits.

    Example:
        >>> metric_text(0.94361, "accuracy"), metric_text(0.012345, "mae")
        ('94.36%', '0.01235')
    """
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4g}"


def difference_text(diff: float, metric: str) -> str:
    """A signed difference of the metric: accuracy in points, anything else to 3 significant digits.

    Example:
        >>> difference_text(0.032, "accuracy"), difference_text(-0.00123, "mae")
        ('+3.20 points', '-0.00123')
    """
    return f"{100 * diff:+.2f} points" if metric == "accuracy" else f"{diff:+.3g}"


def speedup_text(sp: dict[str, Any] | None) -> str:
    """A speed-up in words: "4.0x (95% CI 2.0-8.0x)", ">= 8x (reached at the smallest budget)",
    "not reached"."""
    if not sp or sp.get("estimate") is None:
        return "not reached"
    interval = f"95% CI {sp['ci_low']:.2g}-{sp['ci_high']:.2g}x"
    if sp["lower_bound"]:
        return f">= {sp['estimate']:.2g}x (a lower bound; {interval})"
    return f"{sp['estimate']:.2g}x ({interval})"


def _rule(out: dict[str, Any]) -> str:
    """The decision rule as printed."""
    n, s, b, m = out["eval_examples"], out["n_seeds"], out["baseline"], out["metric"]
    seeds = f"{s} seed{'s' if s != 1 else ''}"
    worse = "below" if out["mode"] == "max" else "above"
    if out["paired_by_example"]:
        rule = f"Final val {m} at the full budget over {seeds} x {n} validation examples"
        rule += f" (one example = {100 / n:.3g} points)." if m == "accuracy" else "."
        test = "by seed and by example, Student t with Welch-Satterthwaite df"
        resampled = "seeds and examples"
    else:
        rule = (
            f"Final val {m} at the full budget over {seeds}; the final runs recorded no per-example values, "
            "so arms are paired by seed only."
        )
        test = f"by seed, Student t with {max(s - 1, 0)} df"
        resampled = "seeds"
    if m != "accuracy":
        rule += f" {'Higher' if out['mode'] == 'max' else 'Lower'} is better."
    means = "accuracies" if m == "accuracy" else f"mean val {m}"
    rule += (
        f" An arm joins the top group unless a paired test ({test}) shows it {worse} the leader at "
        f"{100 * (1 - ALPHA):.0f}% after Holm's correction; a winner is named only when the top group has "
        f"one arm. The same test against {b} calls each arm better, equal or worse; intervals of differences "
        f"are simultaneous (Bonferroni). Intervals of {means} and speed-ups: bootstrap over {resampled}."
    )
    if s < MIN_SEEDS:
        rule += f" With {seeds} the seed-to-seed spread is not estimable: no winner is named."
    return rule


def _words(out: dict[str, Any]) -> tuple[str, str]:
    """The decision rule as printed, and the headline sentence."""
    s, b, m = out["n_seeds"], out["baseline"], out["metric"]
    if out["winner"]:
        value = metric_text(out["arms"][out["winner"]]["mean"], m)
        head = f"Winner: {out['winner']} (val {m} {value}), ahead of every other arm."
    else:
        group = ", ".join(out["top_group"])
        head = (
            f"No clear winner: {group} cannot be told apart ({len(out['top_group'])} arms in the top group)."
        )
    better = out["better_than_baseline"]
    if out["target_meaningful"] is False:
        head += f" The baseline {b} is not better than chance: its accuracy as a target means nothing."
    elif better:
        head += f" Better than {b}: {', '.join(better)}."
    elif b in out["arms"] and s >= MIN_SEEDS:
        head += f" No arm is better than {b}."
    speed = {a: v for a, v in out["speedup"].items() if v.get("estimate") is not None}
    target = f"the target (val {m} {metric_text(out['target'] or 0, m)})"
    first = out["top_group"][0]
    if first in speed:
        head += f" {first} reaches {target} {speedup_text(speed[first])} sooner than the baseline."
    fastest = max(speed.values(), key=lambda v: v["estimate"])["estimate"] if speed else None
    if fastest is not None and (first not in speed or speed[first]["estimate"] < fastest):
        arms = [a for a, v in speed.items() if v["estimate"] == fastest]
        head += f" Fastest to {target}: {', '.join(arms)}, {speedup_text(speed[arms[0]])}."
    return _rule(out), head
