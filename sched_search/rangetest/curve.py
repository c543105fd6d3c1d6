"""Reading a range-test curve: smoothing in log(lr), the three regions, the heuristics, the sanity verdict.

A pure function of the recorded (lr, loss) pairs, apart from the run itself (`rangetest.range_test`), so it
can be tested on built curves and re-run on a saved CSV without training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class CurveConfig:
    """How a curve is read; `RangeTestConfig.curve_config` builds one from a sweep's settings."""

    bandwidth: float = 0.3  # decades of LR: Gaussian smoothing width
    max_lr_divisor: float = 3.0  # suggested max_lr = min-loss LR / this (fastai uses 10; see read_curve)
    min_drop: float = 0.2  # the loss must fall by this fraction of its start for a descent region

    def __post_init__(self) -> None:
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0 decades, but got {self.bandwidth}.")
        if not self.max_lr_divisor >= 1:
            raise ValueError(f"max_lr_divisor must be >= 1, but got {self.max_lr_divisor}.")
        if not 0 < self.min_drop < 1:
            raise ValueError(f"min_drop must be in (0, 1), but got {self.min_drop}.")


@dataclass(frozen=True)
class Regions:
    """LR bounds of the curve's three regions; a bound is None where the region is absent."""

    too_small: tuple[float, float] | None  # the loss barely moves
    descent: tuple[float, float] | None  # the loss falls fast
    divergence: tuple[float, float] | None  # the loss rises or is not finite


@dataclass(frozen=True)
class CurveReading:
    """What the curve says: regions, the heuristics side by side, the suggestion and the sanity verdict."""

    regions: Regions
    steepest_lr: float | None  # steepest descent of the smoothed loss over log(lr)
    valley_lr: float | None  # fastai's `valley`: 2/3 into the longest descending stretch
    min_loss_lr: float | None  # LR at the smoothed loss's minimum
    min_loss_lr_div10: float | None  # fastai's classic "minimum / 10"
    suggested_max_lr: float | None
    suggested_min_lr: float | None
    verdict: str  # "ok" or "failed"
    reasons: tuple[str, ...]  # why it failed, in words a person can act on
    notes: tuple[str, ...]  # observations that do not fail the test


def early_loss(losses: np.ndarray) -> float:
    """The loss scale at the start of the sweep: the median of the first 5% of finite losses (at least 3)."""
    finite = losses[np.isfinite(losses)]
    return float(np.median(finite[: max(3, int(0.05 * len(losses)))])) if len(finite) else math.nan


def clean_losses(losses: np.ndarray, half_window: int = 3, threshold: float = 3.0) -> np.ndarray:
    """The recorded losses with wild points tamed, for the smoother: what a few bad batches cannot move.

    The kernel smoother is a weighted mean, so one finite loss of 1e5 past the minimum outweighs the dozens of
    points around it and drags the minimum (a 5x move of the suggestion, measured on digits). Two steps:
    - cap every loss at twice the early loss (`early_loss`): past the start the curve is in divergence anyway,
      and a sweep left to run on (a large diverge_factor) would otherwise pull the whole curve up by orders of
      magnitude;
    - a Hampel filter: a loss further than `threshold` scaled MADs from the median of its
      `2 * half_window + 1` finite neighbours is dropped, leaving a gap as a non-finite step does. A smooth
      rise, however steep, stays; a lone spike goes. (Dropping beat replacing by the median: that moved the
      suggestion up to 1.13x where the gap moved it 1.06x, as the median stands in for a point whose own value
      is lost.)
    """
    out = np.array(losses, dtype=float)
    ok = np.isfinite(out)
    l0 = early_loss(out)
    if ok.sum() < 3 or not math.isfinite(l0):
        return out
    values = np.minimum(out[ok], l0 + abs(l0)) if l0 != 0 else out[ok]
    padded = np.pad(values, half_window, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_window + 1)
    median = np.nanmedian(windows, axis=1)
    mad = 1.4826 * np.nanmedian(np.abs(windows - median[:, None]), axis=1)
    spike = np.abs(values - median) > threshold * mad
    out[ok] = np.where(spike, np.nan, values)
    return out


def smoothed_curve(
    lrs: Iterable[float], losses: Iterable[float], config: CurveConfig | None = None
) -> np.ndarray:
    """The curve `read_curve` reads: the cleaned losses (`clean_losses`) smoothed in log(lr)
    (`smooth_in_log_lr`)."""
    config = config or CurveConfig()
    lrs_a, loss_a = np.asarray(list(lrs), dtype=float), np.asarray(list(losses), dtype=float)
    return smooth_in_log_lr(lrs_a, clean_losses(loss_a), config.bandwidth)


def smooth_in_log_lr(lrs: np.ndarray, losses: np.ndarray, bandwidth: float) -> np.ndarray:
    """Local-linear Gaussian smoothing over log10(lr), skipping non-finite points.

    Why not the EMA: an EMA's width is in steps, so its lag and the curve it draws change with the sweep's
    resolution, which is what moves torch-lr-finder's suggestion 8x between 100 and 300 steps. A kernel whose
    width is in decades of LR draws the same curve at any resolution; local-linear (not plain averaging) keeps
    the ends unbiased.
    """
    x = np.log10(lrs)
    ok = np.isfinite(losses)
    out = np.full(len(x), np.nan)
    if ok.sum() < 3:
        return out
    xs, ys = x[ok], losses[ok]
    for start in range(0, len(x), 512):  # rows of the kernel matrix in blocks: ~4 MB each, whatever the sweep
        d = xs[None, :] - x[start : start + 512, None]
        w = np.exp(-0.5 * (d / bandwidth) ** 2)
        wd = w * d
        sw, swd, swdd = w.sum(1), wd.sum(1), (wd * d).sum(1)
        swy, swdy = w @ ys, wd @ ys
        det = sw * swdd - swd**2
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = np.where(det <= 1e-12 * sw * sw, swy / sw, (swdd * swy - swd * swdy) / det)
        out[start : start + 512] = np.where(sw < 1e-8, np.nan, fit)
    return out


def ema_update(avg: float, count: int, value: float, beta: float) -> tuple[float, float]:
    """One step of the bias-corrected EMA (as in Adam): the new running average and its corrected value.

    `count` is the number of values averaged so far, this one included; the correction keeps the first values
    from being pulled toward zero. The range test's stop rule runs it step by step, `ema` over a whole curve.
    """
    avg = beta * avg + (1 - beta) * value
    return avg, avg / (1 - beta**count)


def ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected EMA skipping non-finite values (fastai's and torch-lr-finder's smoothing)."""
    out, avg, n = np.full(len(values), np.nan), 0.0, 0
    for i, v in enumerate(values):
        if np.isfinite(v):
            n += 1
            avg, out[i] = ema_update(avg, n, float(v), beta)
        elif n:
            out[i] = out[i - 1]
    return out


def valley(losses: np.ndarray) -> int | None:
    """fastai's `valley` (fastai.callback.schedule): 2/3 into the longest strictly descending subsequence."""
    n = len(losses)
    if n < 3:
        return None
    lds = np.ones(n, dtype=int)
    max_start = max_end = 0
    for i in range(1, n):
        earlier = losses[:i] > losses[i]
        if earlier.any():
            lds[i] = 1 + lds[:i][earlier].max()
        if lds[max_end] < lds[i]:
            max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def read_curve(
    lrs: Iterable[float],
    losses: Iterable[float],
    config: CurveConfig | None = None,
    nan_steps: Iterable[tuple[int, float, str]] = (),
    stopped_early: bool = False,
    steps_per_epoch: float | None = None,
    label_entropy: float | None = None,
) -> CurveReading:
    """Find the three regions, compute the heuristics side by side, suggest LRs and give a sanity verdict.

    Args:
        lrs, losses: the sweep's record, one pair per step (non-finite losses are gaps).
        config: smoothing width, minimum drop and max_lr divisor (default settings when None).
        nan_steps: (step, lr, "nan" | "inf") of every non-finite loss.
        stopped_early: the runner stopped the sweep on a rise (divergence) before its last step.
        steps_per_epoch: optimizer steps per pass over the data, when known: the reasons then say how many
            epochs the sweep covered.
        label_entropy: entropy of the training labels in nats, when the loss is cross-entropy on class labels:
            the loss of a model that learned only how often each class occurs, so a loss that never falls
            below it says that the targets carry nothing the model could use.

    The curve is the cleaned losses (`clean_losses`) smoothed in log(lr) (`smooth_in_log_lr`). With L0 the
    loss at the start and Lmin the curve's minimum, the drop D = L0 - Lmin:
    - too small: from the first LR until the loss has fallen 10% of D;
    - descent: from there to the minimum;
    - divergence: from the first LR past the minimum where the loss is back up by 10% of D (or not finite).
    Suggestions are anchored at the minimum, not the steepest point: the descent's position shifts with the
    number of steps spent per decade of LR (progress ~ sum of LRs), so the steepest point moves ~3x between
    200 and 400 steps, while the minimum, where instability overtakes progress, moves < 1.5x (measured on
    digits, see the tests). `max_lr` is the minimum-loss LR / `max_lr_divisor` (3: Smith's "just before the
    loss turns up", made cautious; fastai's /10 is the careful end, and the study searches max_lr/4 ..
    2 max_lr around it). `min_lr` is the start of the descent region, kept within [max_lr/25, max_lr/3]
    (Smith 2015: max_lr/3 to /4 for CLR; one-cycle starts at max_lr/25 in fastai).

    The verdict also checks the sweep itself: a descent that is under way at the first LR (start_lr too high),
    a loss that turns up before it has fallen far enough (a sweep too short for the task: num_steps), a loss
    that never falls below the labels' entropy (targets without information), and a loss that levels off near
    its floor and never turns up (no LR limit in the range: raising end_lr cannot help).
    """
    config = config or CurveConfig()
    lrs_a = np.asarray(list(lrs), dtype=float)
    nan_steps = list(nan_steps)
    # Everything below reads the cleaned losses: a lone wild point moves neither the curve nor the heuristics.
    loss_a = clean_losses(np.asarray(list(losses), dtype=float))
    curve = smooth_in_log_lr(lrs_a, loss_a, config.bandwidth)
    if np.isfinite(curve).sum() < 5:
        return _no_curve(lrs_a, loss_a, nan_steps, stopped_early)
    c = _shape(lrs_a, loss_a, curve, nan_steps, stopped_early, steps_per_epoch, label_entropy, config)
    reasons, notes = _nan_words(c)
    if c.rel_drop < config.min_drop:
        reasons.append(_no_descent_reason(c, config))
        regions = Regions((float(lrs_a[0]), float(lrs_a[-1])), None, None)
        return CurveReading(
            regions, None, None, None, None, None, None, "failed", tuple(reasons), tuple(notes)
        )
    i_desc, i_div = _region_bounds(c, stopped_early)
    too_small = (float(lrs_a[0]), float(lrs_a[i_desc])) if i_desc > 0 else None
    descent = (float(lrs_a[i_desc]), float(lrs_a[c.i_min]))
    divergence = (float(lrs_a[i_div]), float(lrs_a[-1])) if i_div is not None else None
    # Within one smoothing width of the first LR the curve cannot tell a flat start from a fall under way.
    start_too_high = c.decades_in(i_desc) < config.bandwidth
    if start_too_high:
        reasons.append(
            f"start_lr too high: the loss already falls at the first LR (lr={lrs_a[0]:.3g}), so the sweep has"
            " no region of LRs too small to move it and the curve's start is cut off (its suggestions may lie"
            f" below start_lr); {_lower_start(lrs_a[0])}"
        )
    levelled_at = None
    if c.uninformative:
        reasons.append(_uninformative(c.lmin, label_entropy, c.l0))
    elif divergence is None:
        levelled_at, reason = _no_limit_reason(c)
        reasons.append(reason)
    # Noise: the raw loss's scatter around the smoothed curve, against the drop it is meant to show. A sweep
    # that starts too high scatters most where it starts; that reason already says what to do.
    resid = np.abs(loss_a[: c.i_min + 1] - curve[: c.i_min + 1])
    noise = float(np.nanmedian(resid)) if np.isfinite(resid).any() else 0.0
    if noise > 0.25 * c.drop and not start_too_high:
        reasons.append(
            f"curve too noisy to read: median scatter {noise:.3g} against a drop of {c.drop:.3g}; raise"
            " batch_size or num_steps, or use accumulation_steps"
        )
    if c.i_min >= len(curve) - 2 and divergence is None and levelled_at is None:
        notes.append("the loss was still falling at the last LR")
    return _heuristics(c, i_desc, i_div, Regions(too_small, descent, divergence), config, reasons, notes)


@dataclass(frozen=True)
class _Shape:
    """A finite curve's landmarks, which every part of the reading uses."""

    lrs: np.ndarray
    loss: np.ndarray  # the cleaned raw losses
    curve: np.ndarray  # smoothed in log(lr)
    nan_steps: list[tuple[int, float, str]]
    i_min: int  # the curve's minimum
    l0: float  # the loss at the start
    lmin: float
    drop: float  # l0 - lmin
    rel_drop: float
    rose: bool  # the loss turned up past its minimum
    learned: bool  # it learned more than the label frequencies (or fell enough, without labels)
    uninformative: bool  # it fell or rose, but never below the labels' entropy
    sweep: str  # the sweep's length in words
    label_entropy: float | None

    def decades_in(self, i: int) -> float:
        return float(np.log10(self.lrs[i] / self.lrs[0]))


def _no_curve(
    lrs: np.ndarray, loss: np.ndarray, nan_steps: list[tuple[int, float, str]], stopped_early: bool
) -> CurveReading:
    """The reading of a curve with fewer than 5 finite points: why there is nothing to read."""
    none = CurveReading(Regions(None, None, None), None, None, None, None, None, None, "failed", (), ())
    if len(lrs) and np.isfinite(loss[0]) and (stopped_early or nan_steps):
        # The first losses are finite (a sound model and data) and then blew up at once.
        return replace(
            none,
            reasons=(
                (
                    f"start_lr too high: the loss blew up within {len(lrs)} steps of the first LR"
                    f" (lr={lrs[0]:.3g}), leaving no curve to read; {_lower_start(lrs[0])}"
                ),
            ),
        )
    first = nan_steps[0] if nan_steps else (0, float(lrs[0]) if len(lrs) else math.nan, "nan")
    return replace(
        none,
        reasons=(
            (
                f"loss is {_kind(first[2])} from lr={first[1]:.2g} (step {first[0]}): no finite curve to"
                " read; check inputs, labels, loss and the model's output scale"
            ),
        ),
    )


def _shape(
    lrs: np.ndarray,
    loss: np.ndarray,
    curve: np.ndarray,
    nan_steps: list[tuple[int, float, str]],
    stopped_early: bool,
    steps_per_epoch: float | None,
    label_entropy: float | None,
    config: CurveConfig,
) -> _Shape:
    """The landmarks of a curve with at least 5 finite points."""
    i_min = int(np.nanargmin(curve))
    l0 = early_loss(loss) if np.isfinite(loss).any() else float(curve[np.isfinite(curve)][0])
    lmin = float(curve[i_min])
    drop = l0 - lmin
    rel_drop = drop / abs(l0) if l0 != 0 else 0.0
    # What the sweep shows beyond the drop: did the loss turn up, did it learn more than the label
    # frequencies.
    late_nans = any(s[0] >= i_min for s in nan_steps)
    rose = stopped_early or late_nans or float(np.nanmax(curve[i_min:])) - lmin > 0.05 * abs(l0)
    learned = (
        lmin < label_entropy - _entropy_margin(label_entropy)
        if label_entropy is not None
        else rel_drop >= config.min_drop / 4
    )
    uninformative = label_entropy is not None and not learned and (rose or rel_drop >= config.min_drop)
    sweep = _sweep_words(len(lrs), steps_per_epoch)
    return _Shape(
        lrs,
        loss,
        curve,
        nan_steps,
        i_min,
        l0,
        lmin,
        drop,
        rel_drop,
        rose,
        learned,
        uninformative,
        sweep,
        label_entropy,
    )


def _nan_words(c: _Shape) -> tuple[list[str], list[str]]:
    """(reasons, notes) for non-finite losses: before the minimum a broken model or data, past it
    divergence."""
    reasons, notes = [], []
    early_nans = [s for s in c.nan_steps if s[0] < c.i_min]
    if early_nans:
        s, lr, kind = early_nans[0]
        reasons.append(
            f"loss is {_kind(kind)} from lr={lr:.2g} (step {s}, {len(early_nans)} steps"
            " before the loss minimum): check inputs and loss"
        )
    late_nans = [s for s in c.nan_steps if s[0] >= c.i_min]
    if late_nans:
        notes.append(
            f"{len(late_nans)} non-finite losses from lr={late_nans[0][1]:.2g}, past the minimum (divergence)"
        )
    return reasons, notes


def _no_descent_reason(c: _Shape, config: CurveConfig) -> str:
    """Why a curve that fell less than `min_drop` has no descent region, and what to change."""
    lrs, curve, l0, lmin = c.lrs, c.curve, c.l0, c.lmin
    above = np.nonzero(curve[c.i_min :] - lmin > 0.05 * abs(l0))[0]
    i_rise = c.i_min + int(above[0]) if len(above) else len(curve) - 1
    # Lowest at the first LRs and up within a decade: a loss that merely never fell rises only at the end.
    if c.rose and c.decades_in(c.i_min) < config.bandwidth and c.decades_in(i_rise) < 3 * config.bandwidth:
        return (
            f"start_lr too high: the loss is lowest at the first LRs (lr={lrs[0]:.3g}) and only rises"
            f" from there, so the sweep never saw the LRs that are too small; {_lower_start(lrs[0])}"
        )
    if c.uninformative:
        return _uninformative(lmin, c.label_entropy, l0)
    if c.rose and c.learned:
        return (
            f"sweep too short for this task: the loss fell only {100 * c.rel_drop:.0f}% (from {l0:.3g} to"
            f" {lmin:.3g}; a descent needs {100 * config.min_drop:.0f}%) before it turned up at"
            f" lr={lrs[c.i_min]:.3g}, after {c.sweep}: the model learns, but too little at each LR before"
            f" the LR outgrows it; raise num_steps (e.g. to {3 * len(lrs)})"
        )
    advice = (
        f"it turned up at lr={lrs[c.i_min]:.3g}; check labels, data and model, or raise num_steps"
        if c.rose
        else "check labels, data and model, or raise end_lr"
    )
    return (
        f"no descent region: loss did not fall by more than {100 * config.min_drop:.0f}% (from"
        f" {l0:.3g} to {lmin:.3g}, {100 * c.rel_drop:.1f}%, in {c.sweep}); {advice}"
    )


def _region_bounds(c: _Shape, stopped_early: bool) -> tuple[int, int | None]:
    """(i_desc, i_div): where the loss has fallen 10% of the drop, and where past the minimum it is back up
    by 10% of it or not finite (None: it never diverged)."""
    finite = np.isfinite(c.curve)
    fell = np.nonzero(finite & (c.curve <= c.l0 - 0.1 * c.drop))[0]
    i_desc = min(int(fell[0]) if len(fell) else 0, c.i_min)
    after = np.nonzero((~finite | (c.curve >= c.lmin + 0.1 * c.drop)) & (np.arange(len(c.curve)) > c.i_min))[
        0
    ]
    after_nan = [s[0] for s in c.nan_steps if s[0] >= c.i_min]
    candidates = ([int(after[0])] if len(after) else []) + after_nan
    i_div = min(candidates) if candidates else None
    if i_div is None and stopped_early:
        i_div = len(c.curve) - 1  # the runner saw the rise in the last steps, too close to the end to smooth
    return i_desc, i_div


def _no_limit_reason(c: _Shape) -> tuple[float | None, str]:
    """(the LR where the loss levelled off, or None; the reason) for a curve that never diverged."""
    lrs = c.lrs
    i_level = int(np.nonzero(np.isfinite(c.curve) & (c.curve <= c.lmin + 0.1 * c.drop))[0][0])
    if float(np.log10(lrs[-1] / lrs[i_level])) >= 1.0:
        levelled_at = float(lrs[i_level])
        return levelled_at, (
            f"no LR limit in this range: the loss fell from {c.l0:.3g} to {np.nanmin(c.loss[i_level:]):.3g}"
            f" by lr={levelled_at:.3g} and stayed there up to end_lr={lrs[-1]:.3g} without turning up,"
            " so raising end_lr will not find a limit either. The task may be too easy for this model"
            " (e.g. linearly separable data, where larger LRs only push the loss toward 0) or the labels"
            " may leak into the inputs; if the task is as meant, set max_lr by hand from where the loss"
            f" levels off (lr={levelled_at:.3g})"
        )
    return None, (
        f"loss never diverged up to lr={lrs[-1]:.3g}: the minimum may lie beyond the sweep; raise end_lr"
    )


def _heuristics(
    c: _Shape,
    i_desc: int,
    i_div: int | None,
    regions: Regions,
    config: CurveConfig,
    reasons: list[str],
    notes: list[str],
) -> CurveReading:
    """The heuristics side by side and the suggestion, anchored at the minimum (see `read_curve`)."""
    lrs, curve = c.lrs, c.curve
    grad = np.gradient(curve, np.log10(lrs))
    window = slice(i_desc, c.i_min + 1)
    i_steep = i_desc + int(np.nanargmin(grad[window])) if c.i_min > i_desc else c.i_min
    # fastai runs `valley` on its own EMA (beta 0.98) of the raw losses, not on our kernel curve, whose
    # plateau is smooth enough to count as one long descent.
    v = valley(np.where(np.isfinite(c.loss), ema(c.loss, 0.98), np.inf)[: (i_div or len(curve)) + 1])
    min_loss_lr = float(lrs[c.i_min])
    max_lr = min_loss_lr / config.max_lr_divisor
    min_lr = float(np.clip(lrs[i_desc], max_lr / 25, max_lr / 3))
    return CurveReading(
        regions,
        steepest_lr=float(lrs[i_steep]),
        valley_lr=float(lrs[v]) if v is not None else None,
        min_loss_lr=min_loss_lr,
        min_loss_lr_div10=min_loss_lr / 10,
        suggested_max_lr=max_lr,
        suggested_min_lr=min_lr,
        verdict="failed" if reasons else "ok",
        reasons=tuple(reasons),
        notes=tuple(notes),
    )


def _kind(kind: str) -> str:
    return "NaN" if kind == "nan" else kind


def _sweep_words(steps: int, steps_per_epoch: float | None) -> str:
    if not steps_per_epoch:
        return f"{steps} steps"
    return f"{steps} steps ({steps / steps_per_epoch:.3g} epochs of {steps_per_epoch:g} steps)"


def _entropy_margin(label_entropy: float) -> float:
    """How far below the labels' entropy the curve must reach to count as learning from the inputs (nats).

    3% covers the scatter of the smoothed minimum of a model that learned nothing (shuffled digits labels: 1%
    below); MNIST-1D's 300-step sweep, too short but learning, reached 15% below.
    """
    return 0.03 * label_entropy + 0.01


def _lower_start(start_lr: float) -> str:
    return f"lower start_lr by a few decades (e.g. to {start_lr * 1e-4:.0e}) so the loss starts flat"


def _uninformative(lmin: float, label_entropy: float, l0: float) -> str:
    if label_entropy < 1e-9:
        return (
            "targets carry no information: every training label is the same class, so the loss falls from"
            f" {l0:.3g} to 0 (here {max(lmin, 0.0):.2g}) by predicting it whatever the inputs; check the"
            " labels"
        )
    return (
        f"nothing learned from the inputs: the loss (from {l0:.3g}, lowest {lmin:.3g}) never fell clearly"
        f" below {label_entropy:.3g} nats, the entropy of the labels, which a model reaches by learning only"
        " how often each class occurs; the targets may carry no information (shuffled labels, or labels not"
        " aligned with the inputs), or something keeps the model from learning (e.g. a weight decay too"
        " strong)"
    )
