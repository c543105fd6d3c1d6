"""Search spaces seeded by the range test: per arm, Optuna distributions and a first point, each bound
sourced.

The bounds come from the range-test result of the arm's optimizer family (AdamW and SGDW live at different LR
scales), never from constants alone, and `spaces.json` records where each came from.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import optuna

from ..lr import OPTIMIZERS, Param, RangeSeed, clip, range_family, schedule_spec, split_arm


@dataclass(frozen=True)
class ArmSpace:
    arm: str
    schedule: str
    optimizer: str
    params: tuple[Param, ...]
    fixed: dict  # constants of the arm (schedule values not searched), visible in every trial's config
    sources: (
        dict  # where each constant and the schedule's shape come from (kept beside the config, not in it)
    )
    sampler: dict = field(default_factory=dict)  # name and settings of the arm's Optuna sampler

    def first_point(self) -> dict[str, Any] | None:
        """The range test's own suggestion, the arm's first trial; None for a broad space (no suggestion)."""
        if any(p.first is None for p in self.params):
            return None
        return {p.name: p.first for p in self.params}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The searched parameters as Optuna distributions: `OptunaSearch(space=...)` takes them with
        `points_to_evaluate=[first_point()]` (which Ray ignores for define-by-run spaces, ray #35319)."""
        out: dict[str, optuna.distributions.BaseDistribution] = {}
        for p in self.params:
            if p.choices is not None:
                out[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices))
            elif p.integer:
                out[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high))
            else:
                out[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        return out

    def constants(self) -> dict[str, Any]:
        """What every trial of the arm carries besides the searched values: for Tune's `param_space`."""
        return {"arm": self.arm, "schedule": self.schedule, "optimizer": self.optimizer, **self.fixed}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_from_summary(optimizer: str, summary: dict[str, Any]) -> RangeSeed:
    """Pull the numbers the spaces need out of a range-test JSON summary (`WeightDecaySweep.summary()`)."""
    wd = summary["weight_decay"]
    return RangeSeed(
        optimizer=optimizer,
        max_lr=float(summary["suggested_max_lr"]),
        min_lr=float(summary["suggested_min_lr"]),
        weight_decay=float(wd["chosen"]),
        weight_decay_range=(float(wd["range"][0]), float(wd["range"][1])),
        min_loss_lr=float(summary["min_loss_lr"]),
        divergence_lr=_divergence_start(summary),
    )


def _divergence_start(summary: dict[str, Any]) -> float | None:
    region = (summary.get("regions") or {}).get("divergence")
    return float(region[0]) if region else None


def search_space(
    arm: str, range_test: Any, epochs: int, steps_per_epoch: int, allow_failed: bool = False
) -> ArmSpace:
    """An arm's search space from a range test of its optimizer: what `build_space` makes for a study.

    Args:
        arm: "schedule-optimizer", e.g. "one_cycle-sgdw".
        range_test: a `WeightDecaySweep` (or its `summary()` dict) of the arm's optimizer family.
        epochs: the full training budget of a trial.
        steps_per_epoch: optimizer steps per epoch.
        allow_failed: build a space from a range test whose sanity check failed (as a study's allow_failed).

    Example:
        >>> sweep = weight_decay_sweep(model, SGDW(model.parameters(), lr=1e-7), (x, y))  # doctest: +SKIP
        >>> space = search_space("one_cycle-sgdw", sweep, epochs=20, steps_per_epoch=70)  # doctest: +SKIP
        >>> space.distributions(), space.first_point(), space.constants()  # doctest: +SKIP
    """
    optimizer = range_family(arm)
    summary = range_test if isinstance(range_test, dict) else range_test.summary()
    reasons = "; ".join(summary.get("reasons", []))
    if summary.get("suggested_max_lr") is None or (summary.get("verdict") != "ok" and not allow_failed):
        raise ValueError(
            f"the range test's sanity check failed ({reasons}): no space built from it; fix what it says, or "
            "pass allow_failed=True to use its suggestion anyway."
        )
    return build_space(arm, seed_from_summary(optimizer, summary), epochs, steps_per_epoch)


def first_weight_decay(chosen: float, low: float, high: float) -> float:
    """The first trial's weight decay: the sweep's choice, or the low end of its range when it chose 0 (the
    search is log-uniform, which has no 0)."""
    return clip(chosen if chosen > 0 else low, low, high)


def max_lr_high(seed: RangeSeed) -> float:
    """The top of the max_lr range: where the curve's divergence region starts, or twice the min-loss LR when
    the curve never diverged (a failed sanity check, used with allow_failed); never below twice the suggestion
    (a suggestion past the edge: a hand-made or failed reading), so that the first point lies inside.

    Example:
        >>> max_lr_high(RangeSeed("adamw", 0.0095, 0.001, 0.0, (1e-6, 1e-4), 0.0284, 0.0524))
        0.0524
    """
    if seed.divergence_lr is not None and seed.divergence_lr > seed.max_lr:
        return seed.divergence_lr
    return max(2 * seed.min_loss_lr, 2 * seed.max_lr)


def _high_words(seed: RangeSeed) -> str:
    if seed.divergence_lr is not None and seed.divergence_lr > seed.max_lr:
        return f"the divergence edge {seed.divergence_lr:.3g}"
    if seed.min_loss_lr < seed.max_lr:
        return f"2 x the suggestion ({2 * seed.max_lr:.3g}; it lies past the min-loss lr)"
    return f"2 x the min-loss lr ({2 * seed.min_loss_lr:.3g}; the curve never diverged)"


def build_space(arm: str, seed: RangeSeed, epochs: int, steps_per_epoch: int) -> ArmSpace:
    """The define-by-run space for one arm (`schedule-optimizer`) from its optimizer's range test.

    - max_lr: log-uniform from the suggestion / 4 up to the edge of divergence the curve found
      (`max_lr_high`; schedule-free AdamW: at least 3x the min-loss LR, its spec's `max_lr_top`): the best
      full-run LRs sat between the min-loss LR and that edge on the workloads measured (docs/workflow.md, "2.
      Spaces"). First point: its spec's `first_max_lr`, measured per family (docs/search_benchmark.md): the
      min-loss LR, Smith's "highest value found in the range test", for one-cycle, CLR, cosine, WSD, linear
      decay and SGDR with AdamW; the suggestion (min-loss LR / 3) for SGDR with SGDW; halfway (log) between
      the min-loss LR and the edge for schedule-free.
    - weight_decay: log-uniform over the sweep's range, first point the sweep's choice (0: the range's low).
    - the schedule's own values (cycle lengths, divisors, warm-up): its spec's `params` (`lr/clr.py`,
      `lr/sgdr.py`, `lr/one_cycle.py`, ...), which says where each range and first point comes from.
    """
    schedule, optimizer = split_arm(arm)
    spec = schedule_spec(schedule)
    seed = spec.seed(optimizer, seed)
    src = f"range test ({optimizer})"
    lo, hi, high_words = seed.max_lr / 4, max_lr_high(seed), _high_words(seed)
    top = spec.max_lr_top(optimizer, seed)
    if top is not None and top[0] > hi:
        hi, high_words = top
    lr_first, first_words = spec.first_max_lr(optimizer, seed)
    lr_first = min(lr_first, hi)
    wd_lo, wd_hi = seed.weight_decay_range
    wd_first = first_weight_decay(seed.weight_decay, wd_lo, wd_hi)
    params = [
        Param(
            "max_lr",
            lo,
            hi,
            True,
            first=lr_first,
            source=f"{src}: first {first_words} {lr_first:.3g}; from the suggestion {seed.max_lr:.3g}"
            f" (min-loss lr / 3) x1/4 up to {high_words}",
        ),
        Param(
            "weight_decay",
            wd_lo,
            wd_hi,
            True,
            first=wd_first,
            source=f"{src} weight-decay sweep: chose {seed.weight_decay:g}, range = its grid neighbours",
        ),
    ]
    own, fixed, sources = spec.params(seed, lr_first, epochs, steps_per_epoch)
    return ArmSpace(arm, schedule, optimizer, tuple(params + own), fixed, sources)


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    """Define-by-run: ask Optuna for each parameter of `space` (an `ArmSpace.to_dict()`); return the
    constants."""
    for p in space["params"]:
        if p["choices"] is not None:
            trial.suggest_categorical(p["name"], list(p["choices"]))
        elif p["integer"]:
            trial.suggest_int(p["name"], int(p["low"]), int(p["high"]))
        else:
            trial.suggest_float(p["name"], p["low"], p["high"], log=p["log"])
    return {
        "arm": space["arm"],
        "schedule": space["schedule"],
        "optimizer": space["optimizer"],
        **space["fixed"],
    }


def define_by_run(space: ArmSpace) -> functools.partial:
    """A picklable define-by-run function for `OptunaSearch(space=...)` (Ray pickles the searcher to
    resume)."""
    return functools.partial(suggest, space=space.to_dict())


def check_point_in_space(space: ArmSpace, point: dict[str, Any]) -> None:
    """Raise if the first point lies outside the distributions (Optuna would silently re-sample it)."""
    for p in space.params:
        v = point[p.name]
        if p.choices is not None:
            ok = v in p.choices
        else:
            ok = p.low <= v <= p.high and not (p.log and v <= 0) and math.isfinite(v)
        if not ok:
            raise ValueError(f"first point {p.name}={v!r} lies outside its space ({p}).")


# The blind space of `[search] space = "broad"`: what a user without a range test would search (the reference
# of benchmarks/bench_search.py). Per optimizer family, as their LR scales differ by about a decade
# (`OptimizerSpec.broad_max_lr`).
BROAD_MAX_LR = {name: s.broad_max_lr for name, s in OPTIMIZERS.items() if s.broad_max_lr is not None}
BROAD_WEIGHT_DECAY = (1e-6, 1e-2)


def broad_space(arm: str, epochs: int, steps_per_epoch: int) -> ArmSpace:
    """The documented fixed space, with no range test: max_lr log-uniform over `BROAD_MAX_LR` of the arm's
    optimizer, weight decay over `BROAD_WEIGHT_DECAY`, the schedule's own values as in `build_space`; no first
    point (nothing to suggest one), and SGDR's eta_min 0.

    Example:
        >>> broad_space("one_cycle-adamw", 20, 70).distributions()["max_lr"]  # doctest: +ELLIPSIS
        FloatDistribution(high=0.1, log=True, low=1e-05, step=None)
    """
    schedule, optimizer = split_arm(arm)
    family = range_family(arm)  # schedule-free SGD searches SGDW's range
    if family not in BROAD_MAX_LR:
        raise ValueError(f"no broad space for optimizer {optimizer!r}: expected one of {list(BROAD_MAX_LR)}.")
    lr_lo, lr_hi = BROAD_MAX_LR[family]
    # A stand-in seed for the schedule's own values (cycle lengths, divisors); its LRs are replaced below.
    seed = RangeSeed(optimizer, lr_hi, lr_hi / 25, 0.0, BROAD_WEIGHT_DECAY, lr_hi)
    shaped = build_space(arm, seed, epochs, steps_per_epoch)
    fixed_ranges = {"max_lr": (lr_lo, lr_hi), "weight_decay": BROAD_WEIGHT_DECAY}
    params = []
    for p in shaped.params:
        if p.name in fixed_ranges:
            low, high = fixed_ranges[p.name]
            p = replace(p, low=low, high=high, source=f"broad space ({optimizer}): fixed [{low:g}, {high:g}]")
        elif "range test" in p.source:
            p = replace(p, source=f"broad space: {p.source.split(': ', 1)[-1].split(';')[0]}")
        params.append(replace(p, first=None))
    fixed = dict(shaped.fixed)
    sources = dict(shaped.sources)
    if "range test" in sources.get("eta_min", ""):  # a floor read off the curve; a paper's 0 stays
        fixed["eta_min"] = 0.0
        sources["eta_min"] = "broad space: 0 (no range test to set it)"
    return ArmSpace(arm, schedule, optimizer, tuple(params), fixed, sources)


def with_bounds(space: ArmSpace, bounds: dict[str, Any], source: str) -> ArmSpace:
    """`space` with the `[search.bounds]` of the study file `source` in place of its own (for the parameters
    this arm has); a first point outside the new bounds moves to the nearest bound. The source says both.

    Example:
        >>> with_bounds(space, {"max_lr": [1e-4, 1.0]}, "studies/x.toml").distributions()  # doctest: +SKIP
    """
    params = []
    for p in space.params:
        if p.name in bounds and p.choices is None:
            low, high = (int(v) for v in bounds[p.name]) if p.integer else (float(v) for v in bounds[p.name])
            first = None if p.first is None else type(p.first)(clip(p.first, low, high))
            what = f"{source}: [search.bounds] {p.name} = [{low:g}, {high:g}]"
            was = f"replaces {p.low:.3g}..{p.high:.3g}: {p.source}"
            p = replace(p, low=low, high=high, first=first, source=f"{what} ({was})")
        params.append(p)
    return replace(space, params=tuple(params))
