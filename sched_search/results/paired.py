"""Paired comparisons of two arms' results, seeds x examples matrices (every arm runs the same seeds on the
same validation examples): the difference of means with its t interval, Holm's correction, the bootstrap.

Pure numpy/scipy; `verdict.decide` calls these on the trials table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05  # family-wise error rate of each family of comparisons (Holm)
DRAWS = 2000  # bootstrap resamples (seeds x examples) for the intervals of means and speed-ups


def paired_difference(
    a: np.ndarray, b: np.ndarray, alpha: float = ALPHA, clip: bool = False
) -> dict[str, float]:
    """Mean metric of `a` minus `b` (seeds x examples, paired on both), a (1 - alpha) interval and a
    p-value; `clip` keeps the interval inside [-1, 1] (accuracy: 0/1 values).

    The variance of the mean difference is the seed part, var_s(d_s) / S (d_s: the per-seed gap), plus the
    evaluation-set part, var_i(delta_i) / n (delta_i: the per-example gap averaged over seeds; 0 when n = 1,
    runs without per-example values). Each part also holds the seed x example interaction once, so the sum is
    slightly conservative. Student t with Welch-Satterthwaite degrees of freedom: with 3 seeds and a
    seed-dominated gap that is close to 2 df (exactly S - 1 when n = 1).

    Example:
        >>> a = np.array([[1, 1, 1, 0]] * 3, float); b = np.array([[1, 1, 0, 0]] * 3, float)
        >>> round(paired_difference(a, b)["diff"], 2)
        0.25
    """
    return _at_level(_gap(a, b), alpha, clip)


def _gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """`paired_difference`'s mean difference, standard error and degrees of freedom (se NaN with one seed,
    0 when the two agree on every seed and example), computed once for any level."""
    s, n = a.shape
    per_seed = a.mean(1) - b.mean(1)
    per_example = (a - b).mean(0)
    diff = float(per_seed.mean())
    v_seed = float(per_seed.var(ddof=1)) / s if s > 1 else math.nan
    v_example = float(per_example.var(ddof=1)) / n if n > 1 else 0.0
    if not math.isfinite(v_seed):
        return diff, math.nan, math.nan
    var = v_seed + v_example
    if var == 0:  # identical on every seed and example, or one always right where the other is always wrong
        return diff, 0.0, math.inf
    df = var**2 / ((v_seed**2 / (s - 1) if v_seed else 0.0) + (v_example**2 / (n - 1) if v_example else 0.0))
    return diff, math.sqrt(var), df


def _at_level(gap: tuple[float, float, float], alpha: float, clip: bool) -> dict[str, float]:
    diff, se, df = gap
    if not math.isfinite(se):
        return {"diff": diff, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "df": math.nan}
    if se == 0:
        return {"diff": diff, "ci_low": diff, "ci_high": diff, "p": 1.0 if diff == 0 else 0.0, "df": math.inf}
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    bound = 1.0 if clip else math.inf
    return {
        "diff": diff,
        "ci_low": max(-bound, diff - half),
        "ci_high": min(bound, diff + half),
        "p": float(2 * stats.t.sf(abs(diff) / se, df)),
        "df": float(df),
    }


def holm(pvalues: dict) -> dict:
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


def holm_family(pairs: dict, clip: bool = False, estimable: bool = True) -> dict:
    """A family of paired comparisons (key -> (a, b) matrices, each `a` minus `b`) under Holm's correction.

    Each comparison gets `p_holm` and an interval at its own Holm step's level, alpha / (m - rank) with rank 0
    for the smallest p: the interval excludes 0 whenever Holm calls the difference (at rank 0 it is the
    Bonferroni interval). Simultaneous Bonferroni intervals (alpha / m for all) did not: a comparison Holm
    called could show an interval across 0. Without `estimable`, p_holm is NaN and the intervals are at
    alpha / m.

    Example:
        >>> a = np.array([[1, 1, 1, 0] * 10] * 3, float); b = np.array([[1, 0, 0, 0] * 10] * 3, float)
        >>> holm_family({"x": (a, b)})["x"]["p_holm"] < 0.001
        True
    """
    m = max(1, len(pairs))
    gaps = {k: _gap(a, b) for k, (a, b) in pairs.items()}
    p = {k: _at_level(g, ALPHA, clip)["p"] for k, g in gaps.items()}
    adjusted = holm(p) if estimable else {}
    ranked = sorted(pairs, key=lambda k: (math.isnan(p[k]), p[k])) if estimable else []
    level = {k: ALPHA / (m - rank) for rank, k in enumerate(ranked)}
    return {
        k: {**_at_level(g, level.get(k, ALPHA / m), clip), "p_holm": adjusted.get(k, math.nan)}
        for k, g in gaps.items()
    }


def compare_family(
    full: dict[str, np.ndarray],
    arms: list[str],
    references: list[str],
    sign: float = 1.0,
    clip: bool = False,
    estimable: bool = True,
) -> dict[str, dict[str, dict[str, float | str]]]:
    """Every arm against every reference (the study's baselines) as one family of comparisons.

    Holm's correction runs over all len(arms) x len(references) comparisons, so adding baselines makes each
    call harder, never easier; intervals at each comparison's Holm step (`holm_family`). A call is "better" or
    "worse" in the metric's direction (`sign` +1: higher is better), "equal" when not told apart, "not
    estimable" when `estimable` is False (too few seeds).

    Returns:
        arm -> reference -> `paired_difference` (arm minus reference) with `p_holm` and `call`.

    Example:
        >>> a = np.array([[1, 1, 1, 0] * 10] * 3, float); b = np.array([[1, 0, 0, 0] * 10] * 3, float)
        >>> compare_family({"a": a, "b": b}, ["a"], ["b"])["a"]["b"]["call"]
        'better'
    """
    family = holm_family({(a, r): (full[a], full[r]) for a in arms for r in references}, clip, estimable)
    out: dict[str, dict[str, dict[str, float | str]]] = {}
    for (a, r), c in family.items():
        call = "not estimable"
        if estimable:
            call = "equal" if c["p_holm"] >= ALPHA else ("better" if sign * c["diff"] > 0 else "worse")
        out.setdefault(a, {})[r] = {**c, "call": call}
    return out


def resampled_means(matrix: np.ndarray, seed_w: np.ndarray, example_w: np.ndarray) -> np.ndarray:
    """The mean of `matrix` under each bootstrap draw, given per-draw counts of each seed and each example."""
    s, n = matrix.shape
    return ((matrix @ example_w.T) * seed_w.T).sum(0) / (s * n)


def epochs_to_target(rung_means: dict[float, Any], target: Any, sign: float = 1.0) -> Any:
    """Smallest budget (epochs) whose mean reaches `target` (at least it for sign +1, a "max" metric; at most
    for -1); works per bootstrap draw on arrays (inf: never)."""
    reached = np.full(np.shape(target), np.inf)
    for epochs in sorted(rung_means, reverse=True):
        # the tolerance lets the baseline reach its own mean, computed the same way on the same numbers
        reached = np.where(sign * (rung_means[epochs] - target) >= -1e-12, epochs, reached)
    return reached


def bootstrap_weights(s: int, n: int, draws: int = DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each seed and each example in `draws` resamples with replacement (the same for every arm)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(s, [1 / s] * s, size=draws), rng.multinomial(n, [1 / n] * n, size=draws).astype(
        float
    )
