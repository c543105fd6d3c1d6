"""The range tests' sweeps as Ray tasks: saved per sweep, so a killed stage resumes without running a finished
sweep again, and read back to the same reading."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from sched_search.study.search import trial_settings
from sched_search.study.studyfile import load_study

SMOKE = Path(__file__).resolve().parents[1] / "studies" / "smoke.toml"


def test_a_killed_stage_resumes_per_sweep_to_the_same_result(tmp_path: Path, ray_local) -> None:
    from sched_search.rangetest.sweep import RangeTestConfig, run_range_test
    from sched_search.study.driver import range_tests
    from sched_search.study.rangetasks import PARTS, run_sweeps
    from sched_search.training.data import load_data

    cfg = load_study(SMOKE)
    cfg = replace(cfg, search=replace(cfg.search, arms=("clr-sgdw",)))  # one family, two decays: 0 and 1e-4
    data = load_data("digits")
    ref = [ray_local.put(data)]
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    fresh.mkdir(), resumed.mkdir()
    range_tests(cfg, fresh, lambda line: None, data, data_ref=ref)
    # A stage killed after its first sweep: that sweep's part is on disk, the family's files are not.
    resources = {"cpu": 1, "gpu": 0}
    sweeps = run_sweeps(resumed, trial_settings(cfg), ref, ["sgdw"], [0.0], cfg.range_test, resources)
    (first,) = list(sweeps)
    assert (resumed / PARTS / "sgdw" / "wd0.json").exists() and not (
        resumed / "range_test_sgdw.json"
    ).exists()
    lines: list[str] = []
    timing: dict[str, float] = {}
    range_tests(cfg, resumed, lines.append, data, data_ref=ref, timing=timing)
    ended = [line for line in lines if " done (weight decay " in line]
    assert len(ended) == 2 and sum("saved by an earlier run" in line for line in ended) == 1
    assert "weight decay 0," in next(line for line in ended if "saved by" in line)
    # the saved sweep's record stands (its task, its time); the stage's task time is the other sweep's only
    ran = {r["weight_decay"]: r for r in json.loads((resumed / "range_test_sgdw.json").read_text())["ran_on"]}
    assert ran[0.0]["pid"] == first.where["pid"] and ran[0.0]["seconds"] == round(first.seconds, 3)
    assert (
        timing["range_tests_task_s"] == ran[1e-4]["seconds"]
        or abs(timing["range_tests_task_s"] - ran[1e-4]["seconds"]) < 1e-3
    )
    # read back from JSON, the sweep gives the reading and the choice of an uninterrupted stage, to the bit
    a, b = (json.loads((d / "range_test_sgdw.json").read_text()) for d in (fresh, resumed))
    for key in ("verdict", "suggested_max_lr", "suggested_min_lr", "min_loss_lr", "weight_decay", "sweep"):
        assert a[key] == b[key], key
    assert (fresh / "range_test_sgdw.csv").read_text() == (resumed / "range_test_sgdw.csv").read_text()
    assert not (resumed / PARTS).exists()
    # and the sweeps run apart give what one process sweeping the decays one after another gives (the study
    # before its sweeps were tasks): the same curves, reading and choice
    rt = cfg.range_test
    config = RangeTestConfig(start_lr=rt.start_lr, end_lr=rt.end_lr, num_steps=rt.num_steps)
    model = (cfg.model.name, "sgdw", config, rt.weight_decays, cfg.train.batch_size)
    one = json.loads(run_range_test(data, *model, model_kwargs=dict(cfg.model.options)).to_json())
    for key in ("verdict", "suggested_max_lr", "suggested_min_lr", "min_loss_lr", "weight_decay", "sweep"):
        assert one[key] == a[key], key
