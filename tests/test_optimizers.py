"""The optimizer families' specs (`lr/optimizers.py`): each builds what its snippet writes, says truly whether
it takes a momentum and runs without a schedule, and is seeded by a range test the study runs."""

from __future__ import annotations

import pytest
import torch

from sched_search.lr import (
    OPTIMIZERS,
    SCHEDULE_FREE_OPTIMIZERS,
    SPECS,
    OptimizerArgs,
    OptimizerSpec,
    is_schedule_free,
    optimizer_spec,
    range_family,
)

ALL = [*OPTIMIZERS.values(), *SCHEDULE_FREE_OPTIMIZERS.values()]


def _id(spec: OptimizerSpec) -> str:
    return f"{'schedule_free-' if spec.schedule_free else ''}{spec.name}"


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_a_spec_builds_what_its_snippet_writes(spec: OptimizerSpec) -> None:
    params = list(torch.nn.Linear(3, 2).parameters())
    optimizer = spec.build(params, OptimizerArgs(lr=0.1, weight_decay=1e-3, momentum=0.8, warmup_steps=2))
    assert type(optimizer).__name__ == spec.snippet_class.rpartition(".")[2]
    assert ("momentum" in optimizer.defaults) == spec.momentum
    if spec.momentum:
        assert optimizer.defaults["momentum"] == 0.8
    assert is_schedule_free(optimizer) == spec.schedule_free
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_a_spec_is_seeded_by_a_scheduled_family(spec: OptimizerSpec) -> None:
    family = OPTIMIZERS[spec.range_family]
    assert family.range_family == family.name and not family.schedule_free and family.range_scale == 1.0
    assert (spec.range_scale != 1.0) <= spec.schedule_free  # only a schedule-free one steps at another scale


def test_every_arm_names_a_family_of_its_schedule() -> None:
    for schedule, spec in SPECS.items():
        for optimizer in spec.optimizers:
            family = optimizer_spec(schedule, optimizer)
            assert family.schedule_free == (schedule == "schedule_free")
            assert range_family(f"{schedule}-{optimizer}") == family.range_family
    assert range_family("schedule_free-sgd") == "sgdw" and SCHEDULE_FREE_OPTIMIZERS["sgd"].range_scale == 10
    with pytest.raises(ValueError, match="unknown optimizer 'prodigy' for schedule 'schedule_free'"):
        optimizer_spec("schedule_free", "prodigy")
