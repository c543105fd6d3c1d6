"""The schedule families a study knows, and every registry derived from their specs (`spec.ScheduleSpec`).

Adding a schedule: its module with a `SPEC` (config, searched values and seeded bounds, first point, where
early stopping may judge it, snippet fields, gallery panel) and one line in `SPECS` below.
"""

from __future__ import annotations

from . import clr, constant, cosine, linear, one_cycle, schedule_free, sgdr, wsd
from .optimizers import OptimizerSpec
from .schedules import ScheduleConfig
from .spec import ScheduleSpec

# In this order: the arms, the tables' hyperparameter columns and the gallery follow it.
SPECS: dict[str, ScheduleSpec] = {
    s.name: s
    for s in (
        clr.SPEC,
        sgdr.SPEC,
        one_cycle.SPEC,
        cosine.SPEC,
        wsd.SPEC,
        linear.SPEC,
        schedule_free.SPEC,
        constant.SPEC,
    )
}
SCHEDULES = tuple(name for name, s in SPECS.items() if s.optimizers)
ARMS = tuple(f"{name}-{o}" for name, s in SPECS.items() for o in s.optimizers)
# Every hyperparameter column of the tables, in a stable order (NaN where an arm does not have it).
HYPERPARAMETERS = tuple(dict.fromkeys(n for s in SPECS.values() for n in (*s.searched, *s.constants)))
# What `[search.bounds]` may set, and how each is searched (`study.space.with_bounds`): log ranges
# need low > 0.
BOUNDABLE = {"max_lr": "log", "weight_decay": "log"} | {
    k: v for s in SPECS.values() for k, v in s.bounds.items()
}
# The schedule configs' fields that count steps (the snippet writes them in epochs).
STEP_FIELDS = tuple(dict.fromkeys(f for s in SPECS.values() for f in s.step_fields))


def schedule_spec(schedule: str) -> ScheduleSpec:
    """The spec of a schedule family by name, e.g. "one_cycle"."""
    if schedule not in SPECS:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {list(SPECS)}.")
    return SPECS[schedule]


def optimizer_spec(schedule: str, optimizer: str) -> OptimizerSpec:
    """The optimizer family a trial config names, read by its schedule: "adamw" is our AdamW under a
    schedule and schedulefree's AdamWScheduleFree in a "schedule_free" arm (`ScheduleSpec.optimizer_specs`).

    Example:
        >>> optimizer_spec("schedule_free", "sgd").range_family
        'sgdw'
    """
    specs = schedule_spec(schedule).optimizer_specs
    if optimizer not in specs:
        raise ValueError(
            f"unknown optimizer {optimizer!r} for schedule {schedule!r}: expected one of {list(specs)}."
        )
    return specs[optimizer]


def judged_at(schedule: str, config: ScheduleConfig, step: int) -> bool:
    """Whether early stopping may compare a run of `schedule` after `step` steps
    (`ScheduleSpec.judged_at`)."""
    return schedule_spec(schedule).judged_at(config, step)
