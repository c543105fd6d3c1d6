"""The verdict: which arms cannot be told apart from the best, which beat the baseline, and how much sooner.

Every number here carries two sources of noise. The seeds: every arm runs the same seeds, so arms are compared
paired by seed. The finite evaluation set: every final run records which validation examples it got right
(`val_examples`), so arms are compared paired by example, and a gap of one example is known to be one example.
Pure calculation on the trials table; `report.load_run` calls `decide` and `verdict.json` stores its answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .config import BASELINE_ARM
from .tables import final_rows

ALPHA = 0.05  # family-wise error rate of each family of comparisons (Holm)
MIN_SEEDS = 3  # below this the seed-to-seed spread is not estimable and no winner or "better" is called
DRAWS = 2000  # bootstrap resamples (seeds x examples) for the intervals of accuracies and speed-ups
ORDER_RULE = (
    "Inside the top group arms are listed by fewer epochs to the target, then lower mean val loss; "
    "that order is a tie-break, not a win."
)


# --------------------------------------------------------------------------------------------- the outcomes


def correct_matrix(strings: list[str]) -> np.ndarray:
    """Seeds x examples 0/1 matrix from `val_examples` strings ("0110...", one character per example)."""
    return np.stack([np.frombuffer(s.encode("ascii"), dtype=np.uint8) == ord("1") for s in strings]).astype(
        float
    )


def outcomes(trials: pd.DataFrame) -> tuple[dict[str, dict[float, np.ndarray]], list[int], dict[str, str]]:
    """Per arm and budget (in epochs), the seeds x examples correctness of the finished final runs.

    Only seeds that every arm finished at its full budget are kept, so every comparison is paired; a rung that
    lacks one of them is left out. Arms with no finished full-budget run are returned as excluded, with why.

    Returns:
        (arm -> budget_epochs -> matrix, the seeds used, arm -> reason it was left out).
    """
    excluded: dict[str, str] = {}
    if trials.empty or "val_examples" not in trials.columns:
        return {}, [], excluded
    rows = final_rows(trials, full_only=False)
    finals = rows["arm"].unique()
    rows = rows[rows["val_examples"].notna() & (rows["status"] == "ok" if "status" in rows.columns else True)]
    full = final_rows(rows)
    seeds_of = {arm: set(g["seed"].astype(int)) for arm, g in full.groupby("arm")}
    for arm in finals:
        if arm not in seeds_of:
            excluded[str(arm)] = "no final run finished at the full budget"
    common = sorted(set.intersection(*seeds_of.values())) if seeds_of else []
    matrices: dict[str, dict[float, np.ndarray]] = {}
    for (arm, epochs), g in rows.groupby(["arm", "budget_epochs"]):
        by_seed = dict(zip(g["seed"].astype(int), g["val_examples"], strict=True))
        if arm in seeds_of and common and all(s in by_seed for s in common):
            matrices.setdefault(str(arm), {})[float(epochs)] = correct_matrix([by_seed[s] for s in common])
    return matrices, common, excluded


# --------------------------------------------------------------------------------------------- statistics


def paired_difference(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> dict[str, float]:
    """Mean accuracy of `a` minus `b` (seeds x examples, paired on both), a (1 - alpha) interval and a
    p-value.

    The variance of the mean difference is the seed part, var_s(d_s) / S (d_s: the per-seed accuracy gap),
    plus the evaluation-set part, var_i(delta_i) / n (delta_i: the per-example gap averaged over seeds). Each
    part also holds the seed x example interaction once, so the sum is slightly conservative. Student t with
    Welch-Satterthwaite degrees of freedom: with 3 seeds and a seed-dominated gap that is close to 2 df.

    Example:
        >>> a = np.array([[1, 1, 1, 0]] * 3, float); b = np.array([[1, 1, 0, 0]] * 3, float)
        >>> round(paired_difference(a, b)["diff"], 2)
        0.25
    """
    s, n = a.shape
    per_seed = a.mean(1) - b.mean(1)
    per_example = (a - b).mean(0)
    diff = float(per_seed.mean())
    v_seed = float(per_seed.var(ddof=1)) / s if s > 1 else math.nan
    v_example = float(per_example.var(ddof=1)) / n
    if not math.isfinite(v_seed):
        return {"diff": diff, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "df": math.nan}
    var = v_seed + v_example
    if var == 0:  # identical on every seed and example, or one always right where the other is always wrong
        return {"diff": diff, "ci_low": diff, "ci_high": diff, "p": 1.0 if diff == 0 else 0.0, "df": math.inf}
    df = var**2 / ((v_seed**2 / (s - 1) if v_seed else 0.0) + (v_example**2 / (n - 1) if v_example else 0.0))
    se = math.sqrt(var)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return {
        "diff": diff,
        "ci_low": max(-1.0, diff - half),
        "ci_high": min(1.0, diff + half),
        "p": float(2 * stats.t.sf(abs(diff) / se, df)),
        "df": float(df),
    }


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error control for several comparisons).

    Example:
        >>> holm({"a": 0.01, "b": 0.04, "c": 0.03})
        {'a': 0.03, 'c': 0.06, 'b': 0.06}
    """
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    m, running, out = len(ordered), 0.0, {}
    for k, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - k) * p))
        out[name] = round(running, 12)
    return out


def _resampled_means(matrix: np.ndarray, seed_w: np.ndarray, example_w: np.ndarray) -> np.ndarray:
    """The mean of `matrix` under each bootstrap draw, given per-draw counts of each seed and each example."""
    s, n = matrix.shape
    return ((matrix @ example_w.T) * seed_w.T).sum(0) / (s * n)


def bootstrap_weights(s: int, n: int, draws: int = DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each seed and each example in `draws` resamples with replacement (the same for every arm)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(s, [1 / s] * s, size=draws), rng.multinomial(n, [1 / n] * n, size=draws).astype(
        float
    )


# --------------------------------------------------------------------------------------------- the decision


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _epochs_to_target(rung_means: dict[float, Any], target: Any) -> Any:
    """Smallest budget (epochs) whose mean reaches `target`; works per bootstrap draw on arrays (inf:
    never)."""
    reached = np.full(np.shape(target), np.inf)
    for epochs in sorted(rung_means, reverse=True):
        # the tolerance lets the baseline reach its own mean, computed the same way on the same numbers
        reached = np.where(rung_means[epochs] >= target - 1e-12, epochs, reached)
    return reached


def decide(
    trials: pd.DataFrame,
    target_accuracy: float | None = None,
    chance_accuracy: float | None = None,
    baseline: str = BASELINE_ARM,
) -> dict[str, Any]:
    """The verdict of a study from its trials table: top group, winner, calls against the baseline, speed-ups.

    - Top group: the leader (highest mean final val accuracy at the full budget) and every arm whose paired
      difference to it is not significant at `ALPHA` after Holm's correction over those comparisons. A winner
      is named only when the group has one arm; fewer than `MIN_SEEDS` seeds name none.
    - Against the baseline: each arm is "better", "worse" or "equal" (not told apart), Holm-corrected.
    - Speed-up: the baseline's epochs to the target over the arm's, from the budget ladder (each rung a full,
      compressed schedule); the target is the study's, else the baseline's own mean at its full budget. The
      95% interval resamples seeds and validation examples together (`DRAWS` draws, paired across arms).
      Reached at the smallest rung, the estimate is a lower bound.

    Args:
        trials: the trials table (final runs carry `val_examples`).
        target_accuracy: the study's target, or None for the baseline's mean.
        chance_accuracy: the accuracy of always predicting the most frequent validation class, if known.
        baseline: the baseline arm's name.

    Returns:
        A JSON-ready dict; see `verdict.json` in docs/workflow.md for its keys.
    """
    matrices, seeds, excluded = outcomes(trials)
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
        "target_accuracy": None,
        "target_source": None,
        "target_meaningful": None,
        "chance_accuracy": chance_accuracy,
        "eval_examples": n_examples,
        "points_per_example": 100 / n_examples if n_examples else None,
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
        out["headline"] = "No finished final runs with per-example results at the full budget: no verdict."
        out["rule"] = out["headline"]
        return out
    s = len(seeds)
    estimable = s >= MIN_SEEDS
    seed_w, example_w = bootstrap_weights(s, n_examples)
    loss = _mean_val_loss(trials)
    for arm in arms:
        boot = _resampled_means(full[arm], seed_w, example_w)
        per_seed = full[arm].mean(1)
        out["arms"][arm] = {
            "mean": float(full[arm].mean()),
            "ci_low": float(np.percentile(boot, 2.5)) if estimable else None,
            "ci_high": float(np.percentile(boot, 97.5)) if estimable else None,
            "std_over_seeds": float(per_seed.std(ddof=1)) if estimable else None,
            "mean_val_loss": _none_if_nan(loss.get(arm, math.nan)),
        }
    leader = max(arms, key=lambda a: (out["arms"][a]["mean"], -(loss.get(a, 0.0) or 0.0), a))
    out["leader"] = leader

    # --- the top group: leader against every other arm, Holm over those comparisons
    # intervals at alpha / m (Bonferroni): simultaneous, so one that excludes 0 agrees with the Holm call
    simultaneous = ALPHA / max(1, len(arms) - 1)
    vs_leader = {a: paired_difference(full[leader], full[a], simultaneous) for a in arms if a != leader}
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
        vs_base = {a: paired_difference(full[a], full[baseline], simultaneous) for a in arms if a != baseline}
        adjusted = holm({a: c["p"] for a, c in vs_base.items()}) if estimable else {}
        for a, c in vs_base.items():
            call = "not estimable"
            if estimable:
                call = "equal" if adjusted[a] >= ALPHA else ("better" if c["diff"] > 0 else "worse")
            out["arms"][a]["vs_baseline"] = {**_clean(c), "p_holm": adjusted.get(a), "call": call}
        out["better_than_baseline"] = [
            a for a in vs_base if out["arms"][a]["vs_baseline"]["call"] == "better"
        ]
        out["worse_than_baseline"] = [a for a in vs_base if out["arms"][a]["vs_baseline"]["call"] == "worse"]

    _speedups(out, matrices, full, baseline, target_accuracy, chance_accuracy, seed_w, example_w)
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
    baseline: str,
    target_accuracy: float | None,
    chance: float | None,
    seed_w: np.ndarray,
    example_w: np.ndarray,
) -> None:
    """Fill `out["speedup"]`, the target and whether it means anything (the baseline must beat chance)."""
    if target_accuracy is not None:
        target, boot_target = float(target_accuracy), np.full(len(seed_w), float(target_accuracy))
        out["target_source"] = "the study's target_accuracy"
    elif baseline in full:
        target = float(full[baseline].mean())
        boot_target = _resampled_means(full[baseline], seed_w, example_w)
        out["target_source"] = f"the mean final val accuracy of the baseline {baseline}"
    else:
        return
    out["target_accuracy"] = target
    base = out["arms"].get(baseline)
    low = base["ci_low"] if base and base["ci_low"] is not None else (base or {}).get("mean")
    out["target_meaningful"] = not (chance is not None and low is not None and low <= chance)
    if not out["target_meaningful"] or baseline not in matrices or out["n_seeds"] < MIN_SEEDS:
        return
    base_rungs = matrices[baseline]
    full_epochs = max(base_rungs)
    base_point = _epochs_to_target({e: m.mean() for e, m in base_rungs.items()}, target)
    # a study target the baseline never reaches: its full budget is the reference, every speed-up a lower
    # bound
    base_reached = bool(np.isfinite(base_point))
    reference = float(base_point) if base_reached else full_epochs
    base_boot = _epochs_to_target(
        {e: _resampled_means(m, seed_w, example_w) for e, m in base_rungs.items()}, boot_target
    )
    base_boot = np.where(np.isfinite(base_boot), base_boot, full_epochs)
    for arm, rungs in matrices.items():
        if arm == baseline:
            continue
        point = float(_epochs_to_target({e: m.mean() for e, m in rungs.items()}, target))
        boot = _epochs_to_target(
            {e: _resampled_means(m, seed_w, example_w) for e, m in rungs.items()}, boot_target
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


def _pts(x: float) -> str:
    return f"{100 * x:.2f}"


def speedup_text(sp: dict[str, Any] | None) -> str:
    """A speed-up in words: "4.0x (95% CI 2.0-8.0x)", ">= 8x (reached at the smallest budget)",
    "not reached"."""
    if not sp or sp.get("estimate") is None:
        return "not reached"
    interval = f"95% CI {sp['ci_low']:.2g}-{sp['ci_high']:.2g}x"
    if sp["lower_bound"]:
        return f">= {sp['estimate']:.2g}x (a lower bound; {interval})"
    return f"{sp['estimate']:.2g}x ({interval})"


def _words(out: dict[str, Any]) -> tuple[str, str]:
    """The decision rule as printed, and the headline sentence."""
    n, s, b = out["eval_examples"], out["n_seeds"], out["baseline"]
    rule = (
        f"Final val accuracy at the full budget over {s} seed{'s' if s != 1 else ''} x {n} validation "
        f"examples (one example = {100 / n:.3g} points). An arm joins the top group unless a paired test (by "
        "seed and by example, Student t with Welch-Satterthwaite df) shows it below the leader at "
        f"{100 * (1 - ALPHA):.0f}% after Holm's correction; a winner is named only when the top group has "
        f"one arm. The same test against {b} calls each arm better, equal or worse; intervals of differences "
        "are simultaneous (Bonferroni). Intervals of accuracies and speed-ups: bootstrap over seeds and "
        "examples."
    )
    if s < MIN_SEEDS:
        rule += (
            f" With {s} seed{'s' if s != 1 else ''} the seed-to-seed spread is not estimable:"
            " no winner is named."
        )
    if out["winner"]:
        head = (
            f"Winner: {out['winner']} ({_pts(out['arms'][out['winner']]['mean'])}%),"
            " ahead of every other arm."
        )
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
    target = f"the target ({_pts(out['target_accuracy'] or 0)}%)"
    first = out["top_group"][0]
    if first in speed:
        head += f" {first} reaches {target} {speedup_text(speed[first])} sooner than the baseline."
    fastest = max(speed.values(), key=lambda v: v["estimate"])["estimate"] if speed else None
    if fastest is not None and (first not in speed or speed[first]["estimate"] < fastest):
        arms = [a for a, v in speed.items() if v["estimate"] == fastest]
        head += f" Fastest to {target}: {', '.join(arms)}, {speedup_text(speed[arms[0]])}."
    return rule, head
