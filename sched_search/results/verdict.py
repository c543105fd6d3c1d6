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

from ..config import BASELINE_ARM
from .paired import ALPHA, bootstrap_weights, compare_family, epochs_to_target, holm_family, resampled_means
from .tables import final_rows, outcomes

LADDER_PREFIX = "ladder:"  # the attribution ladder's own runs (attribution.py): not arms of the verdict
MIN_SEEDS = 3  # below this the seed-to-seed spread is not estimable and no winner or "better" is called
NO_WINNER = "no clear winner; first of the top group by the tie-break rule"
ORDER_RULE = (
    "Inside the top group arms are listed by fewer epochs to the target, then lower mean val loss; "
    "that order is a tie-break, not a win."
)


# --------------------------------------------------------------------------------------------- the decision


def is_baseline(arm: str) -> bool:
    """A fixed recipe (`[search] baselines`), not a searched arm: "constant-adam" (the seed's Adam 3e-4) or
    a "default:..." recipe."""
    return arm == BASELINE_ARM or arm.startswith("default:")


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def decide(
    trials: pd.DataFrame,
    target: float | None = None,
    chance_accuracy: float | None = None,
    baseline: str | None = None,
    metric: str = "accuracy",
    mode: str = "max",
) -> dict[str, Any]:
    """The verdict of a study from its trials table: top group, winner, calls against the baseline, speed-ups.

    "Better" is higher for `mode` "max", lower for "min", in every call below.

    - Top group: the leader (best mean final val metric at the full budget) and every arm whose paired
      difference to it is not significant at `ALPHA` after Holm's correction over those comparisons. A winner
      is named only when the group has one arm; fewer than `MIN_SEEDS` seeds name none.
    - Against the baselines (`is_baseline`: constant-adam and the "default:..." recipes): every searched arm
      is "better", "worse" or "equal" (not told apart) against every baseline, one family with Holm over all
      those comparisons (`paired.compare_family`). The strongest baseline is the one with the best mean; it
      is `baseline` (the reference of `vs_baseline` and the speed-ups) unless one is passed.
    - Recommended: a baseline that beats every searched arm, else the winner, else the first searched arm of
      the top group. Baselines join the top group like any arm, but one is recommended only when it beats
      every searched arm (or no searched arm finished).
    - Speed-up: the baseline's epochs to the target over the arm's, from the budget ladder (each rung a full,
      compressed schedule); the target is the study's, else the baseline's own mean at its full budget. The
      95% interval resamples seeds and validation examples together (`DRAWS` draws, paired across arms).
      Reached at the smallest rung, the estimate is a lower bound. The same against constant Adam 3e-4's mean
      goes in `vs_adam`, when that baseline ran.

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
        baseline: the reference baseline's arm name; None: the strongest baseline.
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
    matrices = {a: m for a, m in matrices.items() if not a.startswith(LADDER_PREFIX)}
    excluded = {a: why for a, why in excluded.items() if not a.startswith(LADDER_PREFIX)}
    arms = sorted(matrices)
    full = {arm: matrices[arm][max(matrices[arm])] for arm in arms}
    n_examples = next(iter(full.values())).shape[1] if full else 0
    by_example = by_example and n_examples > 0  # shorter budgets' values, but no full-budget run to pair
    out = _empty_verdict(metric, mode, baseline, chance_accuracy if accuracy else None, seeds, excluded)
    out["paired_by_example"] = by_example
    out["eval_examples"] = n_examples if by_example else None
    out["points_per_example"] = 100 / n_examples if by_example and accuracy else None
    if not arms:
        out["headline"] = "No finished final runs at the full budget: no verdict."
        out["rule"] = out["headline"]
        return out
    estimable = len(seeds) >= MIN_SEEDS
    seed_w, example_w = bootstrap_weights(len(seeds), n_examples)
    loss = _mean_val_loss(trials)
    for arm in arms:
        out["arms"][arm] = _arm_summary(full[arm], seed_w, example_w, estimable, loss.get(arm, math.nan))
    out["leader"] = max(arms, key=lambda a: (sign * out["arms"][a]["mean"], -(loss.get(a, 0.0) or 0.0), a))
    _top_group(out, full, accuracy, estimable)
    searched = _against_baselines(out, full, baseline, accuracy, estimable, loss)
    out.update(_speedups(out, out["baseline"], matrices, full, target, seed_w, example_w))
    if BASELINE_ARM in full:  # the seed's question, kept beside: how much sooner than constant Adam 3e-4
        out["vs_adam"] = {"baseline": BASELINE_ARM}
        out["vs_adam"].update(_speedups(out, BASELINE_ARM, matrices, full, target, seed_w, example_w))
    _order_top_group(out, loss)
    _recommend(out, searched)
    out["rule"], out["headline"] = _words(out)
    return out


def _empty_verdict(
    metric: str,
    mode: str,
    baseline: str | None,
    chance_accuracy: float | None,
    seeds: list[int],
    excluded: dict[str, str],
) -> dict[str, Any]:
    """verdict.json's keys, before anything is decided."""
    return {
        "winner": None,
        "leader": None,
        "top_group": [],
        "baseline": baseline,
        "baselines": [],
        "strongest_baseline": None,
        "baseline_wins": None,
        "recommended": None,
        "recommended_why": None,
        "n_baseline_comparisons": 0,
        "better_than_every_baseline": [],
        "better_than_baseline": [],
        "worse_than_baseline": [],
        "metric": metric,
        "mode": mode,
        "target": None,
        "target_source": None,
        "target_meaningful": None,
        "chance_accuracy": chance_accuracy,
        "paired_by_example": False,
        "eval_examples": None,
        "points_per_example": None,
        "seeds": seeds,
        "n_seeds": len(seeds),
        "alpha": ALPHA,
        "arms": {},
        "speedup": {},
        "vs_adam": None,
        "excluded": excluded,
        "rule": "",
        "order_rule": ORDER_RULE,
        "headline": "",
    }


def _arm_summary(
    full: np.ndarray, seed_w: np.ndarray, example_w: np.ndarray, estimable: bool, loss: float
) -> dict[str, Any]:
    """An arm's mean final val metric with its bootstrap interval (seeds x examples) and spread over seeds."""
    boot = resampled_means(full, seed_w, example_w)
    return {
        "mean": float(full.mean()),
        "ci_low": float(np.percentile(boot, 2.5)) if estimable else None,
        "ci_high": float(np.percentile(boot, 97.5)) if estimable else None,
        "std_over_seeds": float(full.mean(1).std(ddof=1)) if estimable else None,
        "mean_val_loss": _none_if_nan(loss),
    }


def _top_group(out: dict[str, Any], full: dict[str, np.ndarray], accuracy: bool, estimable: bool) -> None:
    """The leader against every other arm, Holm over those comparisons: each interval at its Holm step's
    level, so one that Holm calls below the leader excludes 0."""
    leader = out["leader"]
    vs_leader = holm_family({a: (full[leader], full[a]) for a in full if a != leader}, accuracy, estimable)
    for a, c in vs_leader.items():
        out["arms"][a]["vs_leader"] = _clean(c)  # p_holm NaN (not estimable) becomes None there
    if estimable:
        out["top_group"] = [leader] + [a for a in vs_leader if vs_leader[a]["p_holm"] >= ALPHA]
    else:
        out["top_group"] = list(full)


def _against_baselines(
    out: dict[str, Any],
    full: dict[str, np.ndarray],
    baseline: str | None,
    accuracy: bool,
    estimable: bool,
    loss: dict[str, float],
) -> list[str]:
    """Every searched arm against every baseline, one family with Holm over every (arm, baseline) pair; the
    calls against the reference baseline, the top group trimmed by them, the winner. Returns the searched
    arms."""
    sign, leader = 1.0 if out["mode"] == "max" else -1.0, out["leader"]

    def rank(a: str) -> tuple:  # best first: mean in the study's direction, then lower val loss, then name
        return (-sign * out["arms"][a]["mean"], loss.get(a, 0.0) or 0.0, a)

    baselines = sorted((a for a in full if is_baseline(a) or a == baseline), key=rank)
    searched = [a for a in full if a not in baselines]
    out["baselines"] = baselines
    out["strongest_baseline"] = baselines[0] if baselines else None
    out["baseline"] = baseline if baseline in full else out["strongest_baseline"]
    family = compare_family(full, searched, baselines, sign, accuracy, estimable)
    out["n_baseline_comparisons"] = len(searched) * len(baselines)
    for a, row in family.items():
        out["arms"][a]["vs_baselines"] = {b: {**_clean(c), "call": c["call"]} for b, c in row.items()}
    ref = out["baseline"]
    if ref is not None:
        for a in searched:
            out["arms"][a]["vs_baseline"] = out["arms"][a]["vs_baselines"][ref]
        calls = {a: out["arms"][a]["vs_baseline"]["call"] for a in searched}
        out["better_than_baseline"] = [a for a in searched if calls[a] == "better"]
        out["worse_than_baseline"] = [a for a in searched if calls[a] == "worse"]
    # The baseline family can separate the leader from an arm (a baseline below a searched leader, or a
    # searched arm below a leading baseline) where the leader's family, with its other Holm steps, does not:
    # that arm is told apart, so it leaves the top group rather than sit there beside a "better" call.
    apart = {
        b if a == leader else a
        for a, row in family.items()
        for b, c in row.items()
        if leader in (a, b) and c["call"] in ("better", "worse")
    }
    out["top_group"] = [a for a in out["top_group"] if a not in apart]
    out["winner"] = leader if estimable and len(out["top_group"]) == 1 else None
    out["better_than_every_baseline"] = [
        a for a in searched if baselines and all(c["call"] == "better" for c in family[a].values())
    ]
    beats_all = [b for b in baselines if searched and all(family[a][b]["call"] == "worse" for a in searched)]
    out["baseline_wins"] = beats_all[0] if beats_all else None
    return searched


def _clean(c: dict[str, float]) -> dict[str, float | None]:
    return {k: _none_if_nan(v) for k, v in c.items() if k not in ("df", "call")}


def _mean_val_loss(trials: pd.DataFrame) -> dict[str, float]:
    rows = final_rows(trials)
    if "final_val_loss" not in rows.columns or rows.empty:
        return {}
    return rows.groupby("arm")["final_val_loss"].mean().to_dict()


def _speedups(
    out: dict[str, Any],
    baseline: str | None,
    matrices: dict[str, dict[float, np.ndarray]],
    full: dict[str, np.ndarray],
    study_target: float | None,
    seed_w: np.ndarray,
    example_w: np.ndarray,
) -> dict[str, Any]:
    """The speed-ups against `baseline`, the target and whether it means anything (accuracy: the baseline
    must beat chance): the keys `speedup`, `target`, `target_source`, `target_meaningful`."""
    sign, chance = 1.0 if out["mode"] == "max" else -1.0, out["chance_accuracy"]
    res: dict[str, Any] = {"speedup": {}, "target": None, "target_source": None, "target_meaningful": None}
    if study_target is not None:
        target, boot_target = float(study_target), np.full(len(seed_w), float(study_target))
        res["target_source"] = "the study's target"
    elif baseline in full:
        target = float(full[baseline].mean())
        boot_target = resampled_means(full[baseline], seed_w, example_w)
        which = "strongest baseline" if baseline == out["strongest_baseline"] else "baseline"
        res["target_source"] = f"the mean final val {out['metric']} of the {which} {baseline}"
    else:
        return res
    res["target"] = target
    base = out["arms"].get(baseline)
    low = base["ci_low"] if base and base["ci_low"] is not None else (base or {}).get("mean")
    res["target_meaningful"] = not (chance is not None and low is not None and low <= chance)
    if not res["target_meaningful"] or baseline not in matrices or out["n_seeds"] < MIN_SEEDS:
        return res
    base_rungs = matrices[baseline]
    full_epochs = max(base_rungs)
    base_point = epochs_to_target({e: m.mean() for e, m in base_rungs.items()}, target, sign)
    # a study target the baseline never reaches: its full budget is the reference, every speed-up a lower
    # bound
    base_reached = bool(np.isfinite(base_point))
    reference = float(base_point) if base_reached else full_epochs
    base_boot = epochs_to_target(
        {e: resampled_means(m, seed_w, example_w) for e, m in base_rungs.items()}, boot_target, sign
    )
    base_boot = np.where(np.isfinite(base_boot), base_boot, full_epochs)
    for arm, rungs in matrices.items():
        if arm == baseline:
            continue
        point = float(epochs_to_target({e: m.mean() for e, m in rungs.items()}, target, sign))
        boot = epochs_to_target(
            {e: resampled_means(m, seed_w, example_w) for e, m in rungs.items()}, boot_target, sign
        )
        ratio = np.where(np.isfinite(boot), base_boot / boot, 0.0)  # 0: not reached in that draw
        reached = math.isfinite(point)
        res["speedup"][arm] = {
            "epochs_to_target": point if reached else None,
            "estimate": reference / point if reached else None,
            "ci_low": float(np.percentile(ratio, 2.5)),
            "ci_high": float(np.percentile(ratio, 97.5)),
            "lower_bound": bool(reached and (point == min(rungs) or not base_reached)),
            "reached_share": float(np.isfinite(boot).mean()),
        }
    return res


def _recommend(out: dict[str, Any], searched: list[str]) -> None:
    """The arm to use and why: a baseline only when it beats every searched arm or nothing was searched."""
    group = out["top_group"]
    in_group = [a for a in group if a in searched]
    if out["baseline_wins"]:
        arm, why = out["baseline_wins"], "a baseline that beats every searched arm: no search was needed"
    elif out["winner"] in searched:
        arm, why = out["winner"], "the winner"
    elif in_group:
        arm, why = in_group[0], NO_WINNER
    elif group:
        arm, why = group[0], "a baseline leads: no searched arm did better"
    else:
        return
    out["recommended"], out["recommended_why"] = arm, why


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
    n, s, m = out["eval_examples"], out["n_seeds"], out["metric"]
    against = ", ".join(out["baselines"]) or "the baseline"
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
        f"one arm. The same test against each baseline ({against}) calls each searched arm better, equal or "
        f"worse, Holm over all {out['n_baseline_comparisons']} such comparisons (a pair of the leader and an "
        "arm that these calls tell apart leaves that arm out of the top group); a baseline is recommended "
        "only when it beats every searched arm. Each interval of a difference is at its Holm step's level "
        "(alpha / (m - rank)), so it excludes 0 whenever the difference is called. "
        f"Intervals of {means} and speed-ups: bootstrap over {resampled}."
    )
    if s < MIN_SEEDS:
        rule += f" With {seeds} the seed-to-seed spread is not estimable: no winner is named."
    return rule


def _words(out: dict[str, Any]) -> tuple[str, str]:
    """The decision rule as printed, and the headline sentence."""
    s, b, m = out["n_seeds"], out["baseline"], out["metric"]

    def value(arm: str) -> str:
        return f"val {m} {metric_text(out['arms'][arm]['mean'], m)}"

    head = ""
    if out["baseline_wins"]:
        wins = out["baseline_wins"]
        head = (
            f"Use the baseline {wins} ({value(wins)}): it beats every searched arm, so no search was needed. "
        )
    if out["winner"]:
        head += f"Winner: {out['winner']} ({value(out['winner'])}), ahead of every other arm."
    else:
        group = ", ".join(out["top_group"])
        head += (
            f"No clear winner: {group} cannot be told apart ({len(out['top_group'])} arms in the top group)."
        )
    several = len(out["baselines"]) > 1
    if several:
        head += f" Strongest baseline: {b} ({value(b)})."
    better = out["better_than_every_baseline"] if several else out["better_than_baseline"]
    if out["target_meaningful"] is False:
        head += f" The baseline {b} is not better than chance: its accuracy as a target means nothing."
    elif better:
        head += f" Better than {'every baseline' if several else b}: {', '.join(better)}."
    elif out["better_than_baseline"]:
        head += f" Better than {b}: {', '.join(out['better_than_baseline'])}."
    elif b in out["arms"] and s >= MIN_SEEDS:
        head += f" No arm is better than {b}."
    speed = {a: v for a, v in out["speedup"].items() if v.get("estimate") is not None}
    target = f"the target (val {m} {metric_text(out['target'] or 0, m)})"
    first = out["recommended"] or out["top_group"][0]
    if first in speed:
        head += f" {first} reaches {target} {speedup_text(speed[first])} sooner than {b}."
    fastest = max(speed.values(), key=lambda v: v["estimate"])["estimate"] if speed else None
    if fastest is not None and (first not in speed or speed[first]["estimate"] < fastest):
        arms = [a for a, v in speed.items() if v["estimate"] == fastest]
        head += f" Fastest to {target}: {', '.join(arms)}, {speedup_text(speed[arms[0]])}."
    return _rule(out), head
