"""The frontier (`results.frontier`): a made-up study whose runs have known costs and a known order, every
point of it checked; what the last half of the compute bought; costs of runs and range tests."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runfolder import (
    EPOCHS,
    flat_rows,
    in_order,
    records,
    search_record,
    study_config,
    trial_configs,
    write_run,
)
from scipy import stats

from sched_search.results.closing import format_closing, last_half_line
from sched_search.results.frontier import frontier, last_half, learned_order, run_trainings
from sched_search.results.report import write_report
from sched_search.results.run import load_run

OC, CLR, BASE = "one_cycle-adamw", "clr-sgdw", "constant-adam"
# arm -> budget -> final val accuracy per seed (one number per run: arms are paired by seed only)
OUTCOMES = {
    BASE: {1.0: [0.60, 0.62, 0.64]},
    OC: {0.5: [0.80, 0.81, 0.82], 1.0: [0.90, 0.91, 0.92]},
    CLR: {0.5: [0.70, 0.72, 0.74], 1.0: [0.84, 0.86, 0.88]},
}
S_OC, S_CLR = f"search-{OC}", f"search-{CLR}"  # the search trials whose configs the finals re-run
# The order the runs ended in: (stage, trial_id, budget); before them, range tests of 1.0 training.
ORDER = [
    ("search", "oc-early", 1.0),  # full length, 0.80: the first thing to recommend
    ("search", "clr-stopped", 1.0),  # stopped by ASHA at epoch 2 of 8 (0.25 trainings): never a candidate
    ("final", f"{BASE}_0", 1.0),
    ("search", S_CLR, 1.0),  # 0.93 in its search trial, 0.86 over its finals: the winner's curse
    ("search", S_OC, 1.0),
    ("final", f"{BASE}_1", 1.0),
    ("search", "clr-late", 1.0),  # worse than S_CLR: the arm's pick stays
    ("final", f"{BASE}_2", 1.0),
    ("final", f"{CLR}_0", 0.5),
    ("final", f"{CLR}_0", 1.0),
    ("final", f"{OC}_0", 0.5),
    ("final", f"{OC}_0", 1.0),
    ("final", f"{CLR}_1", 0.5),
    ("final", f"{CLR}_1", 1.0),
    ("final", f"{OC}_1", 0.5),
    ("final", f"{OC}_1", 1.0),
    ("final", f"{OC}_2", 0.5),
    ("final", f"{OC}_2", 1.0),
    ("final", f"{CLR}_2", 0.5),
    ("final", f"{CLR}_2", 1.0),  # the verdict's last input
]


def _range_tests(root: Path) -> None:
    """Range tests of 80 steps in all: 80 / (8 epochs x 10 steps) = 1.0 training."""
    for opt, steps in (("adamw", 30), ("sgdw", 50)):
        lr = np.geomspace(1e-5, 1.0, steps)
        loss = 2.3 - 0.1 * np.arange(steps) / steps
        curve = {"step": range(steps), "lr": lr, "loss": loss, "smoothed_loss": loss, "curve": loss}
        curve.update(val_loss=np.nan, finite=True, weight_decay=0.0)
        pd.DataFrame(curve).to_csv(root / f"range_test_{opt}.csv", index=False)


def _study(root: Path, lower: bool = False) -> Path:
    """The made-up study of `OUTCOMES` with three more search trials, its runs ending in `ORDER`; `lower`:
    the same study minimising an error of 1 - each accuracy (val loss the same: 1 - accuracy)."""
    flip = (lambda v: 1 - v) if lower else (lambda v: v)
    outcomes = {a: {b: [flip(v) for v in vs] for b, vs in rungs.items()} for a, rungs in OUTCOMES.items()}
    cfg = study_config(
        list(outcomes), 3, [0.5, 1.0], "mae" if lower else "accuracy", "min" if lower else "max"
    )
    searches, finals = trial_configs(cfg, outcomes)
    recs = records(searches, finals, outcomes, flat_rows({}, "min" if lower else "max"))
    oc, clr = (next(c for c in searches if c["arm"] == arm) for arm in (OC, CLR))
    for trial_id, config, epochs, acc in (
        (S_CLR, clr, EPOCHS, 0.93),
        ("oc-early", {**oc, "max_lr": 0.02}, EPOCHS, 0.80),
        ("clr-stopped", {**clr, "max_lr": 0.5}, 2, 0.50),
        ("clr-late", {**clr, "max_lr": 0.03}, EPOCHS, 0.83),
    ):
        recs[("search", trial_id)] = search_record(config, epochs, flip(acc), loss=1 - acc)
    write_run(root, cfg, in_order(recs, ORDER), None, None if lower else 0.1)
    _range_tests(root)
    return root


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return _study(tmp_path / "study")


def test_every_point_of_the_frontier(study: Path) -> None:
    run = load_run(study)
    v = run.verdict
    assert v["trainings"] == {"range_tests": {"adamw": 0.375, "sgdw": 0.625}, "runs": 16.25, "total": 17.25}
    points = [p for p in v["frontier"] if p["kind"] == "study"]
    got = [(p["trainings"], p["run"], p["budget"], p["arm"], p["source_trial"], p["metric"], p["evidence"])
           for p in points]  # fmt: skip
    search, one, two, three = (
        "search trial",
        "final runs on 1 seed",
        "final runs on 2 seeds",
        "final runs on 3 seeds",
    )
    expected = [
        (2.0, "oc-early", 1.0, OC, "oc-early", 0.80, search),
        (2.25, "clr-stopped", 1.0, OC, "oc-early", 0.80, search),  # a stopped trial is no candidate
        (3.25, f"{BASE}_0", 1.0, OC, "oc-early", 0.80, search),  # the baseline's 0.60 is below
        (4.25, S_CLR, 1.0, CLR, S_CLR, 0.93, search),
        (5.25, S_OC, 1.0, CLR, S_CLR, 0.93, search),  # OC's pick is now S_OC (0.90), still below
        (6.25, f"{BASE}_1", 1.0, CLR, S_CLR, 0.93, search),
        (7.25, "clr-late", 1.0, CLR, S_CLR, 0.93, search),
        (8.25, f"{BASE}_2", 1.0, CLR, S_CLR, 0.93, search),
        (8.75, f"{CLR}_0", 0.5, CLR, S_CLR, 0.93, search),  # a shorter budget tells nothing new
        (9.75, f"{CLR}_0", 1.0, OC, S_OC, 0.90, search),  # CLR's first final: 0.84 < OC's search trial
        (10.25, f"{OC}_0", 0.5, OC, S_OC, 0.90, search),
        (11.25, f"{OC}_0", 1.0, OC, S_OC, 0.90, one),
        (11.75, f"{CLR}_1", 0.5, OC, S_OC, 0.90, one),
        (12.75, f"{CLR}_1", 1.0, OC, S_OC, 0.90, one),
        (13.25, f"{OC}_1", 0.5, OC, S_OC, 0.90, one),
        (14.25, f"{OC}_1", 1.0, OC, S_OC, 0.905, two),
        (14.75, f"{OC}_2", 0.5, OC, S_OC, 0.905, two),
        (15.75, f"{OC}_2", 1.0, OC, S_OC, 0.91, three),
        (16.25, f"{CLR}_2", 0.5, OC, S_OC, 0.91, three),
        (17.25, f"{CLR}_2", 1.0, OC, S_OC, 0.91, "the verdict"),
    ]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:5] == e[:5] and g[5] == pytest.approx(e[5], abs=1e-12) and g[6] == e[6], (g, e)
    # intervals only from 3 seeds on: a search trial or fewer seeds have none; bootstrap as the verdict's
    assert all(p["ci_low"] is None for p in points[:17])
    assert v["recommended"] == OC and v["winner"] == OC
    for p in points[17:]:
        assert (p["ci_low"], p["ci_high"]) == (v["arms"][OC]["ci_low"], v["arms"][OC]["ci_high"])
        assert p["ci_low"] < 0.91 < p["ci_high"]
    # the config is the search trial's searched values (spaces.json's names)
    searched = [p["name"] for p in run.spaces[OC]["params"]]
    assert list(points[0]["config"]) == searched and points[0]["config"]["max_lr"] == 0.02
    final_oc = next(c for c in run.final_configs if c["arm"] == OC)
    assert points[-1]["config"] == {k: final_oc[k] for k in searched}
    # the baseline at its own cost: one training per seed, the verdict's mean and interval
    (base,) = [p for p in v["frontier"] if p["kind"] == "baseline"]
    assert (base["trainings"], base["arm"], base["source_trial"]) == (1.0, BASE, None)
    assert base["metric"] == pytest.approx(0.62) and base["ci_low"] == v["arms"][BASE]["ci_low"]
    json.dumps(v)  # JSON-ready


def test_the_last_half_is_paired_over_the_seeds(study: Path) -> None:
    """Half of 17.25 trainings is 8.625: the last point at or below it recommends CLR (its search trial);
    CLR's finals re-ran that config, so the end's OC minus it is paired by seed: +0.06, +0.05, +0.04."""
    run = load_run(study)
    half = run.verdict["last_half"]
    assert half["total"] == 17.25 and half["half"] == 8.625
    assert half["at_half"] == {"arm": CLR, "source_trial": S_CLR, "trainings": 8.25, "metric": 0.93}
    assert half["at_end"]["arm"] == OC and half["at_end"]["trainings"] == 17.25
    width = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)  # per-seed gaps' sd 0.01, 3 seeds, 2 df
    assert half["diff"] == pytest.approx(0.05)
    assert half["ci_low"] == pytest.approx(0.05 - width) and half["ci_high"] == pytest.approx(0.05 + width)
    line = last_half_line(run)
    assert line == (
        "last half of the compute (8.62 to 17.2 trainings): +5.00 points [+2.52, +7.48] for "
        f"{OC} (the answer) over {CLR} (recommended at 8.25 trainings), paired over 3 seeds"
    )
    assert line in format_closing(run, study / "report.html")


def test_the_last_half_without_a_rerun_or_a_verdict(study: Path) -> None:
    run = load_run(study)
    points, trials = run.verdict["frontier"], run.trials
    # the config recommended at half never re-run on the seeds: not measurable, said why
    moved = [{**p, "source_trial": "clr-late"} if p["trainings"] == 8.25 else p for p in points]
    half = last_half(moved, trials, run.verdict)
    assert half["diff"] is None and "never re-run on the verdict's seeds" in half["why"]
    # an unfinished study: no point is the verdict's
    partial = frontier(trials, run.verdict, 1.0, complete=False)
    assert partial[19]["evidence"] == "final runs on 3 seeds" and partial[19]["metric"] == pytest.approx(0.91)
    assert last_half(partial, trials, run.verdict)["why"] == "the study has no verdict yet"
    # the same recommendation at half as at the end: nothing bought
    same = [{**p, "arm": OC, "source_trial": S_OC} for p in points]
    assert last_half(same, trials, run.verdict)["diff"] == 0.0


def test_the_closing_line_says_why_or_that_nothing_changed(study: Path) -> None:
    run = load_run(study)
    v, points = run.verdict, run.verdict["frontier"]
    moved = [{**p, "source_trial": "clr-late"} if p["trainings"] == 8.25 else p for p in points]
    unmeasured = replace(run, verdict={**v, "last_half": last_half(moved, run.trials, v)})
    assert last_half_line(unmeasured) == (
        "last half of the compute (8.62 to 17.2 trainings): not measurable: the config recommended at half "
        f"({CLR}, search trial clr-late) was never re-run on the verdict's seeds"
    )
    same = [{**p, "arm": OC, "source_trial": S_OC} for p in points]
    unchanged = replace(run, verdict={**v, "last_half": last_half(same, run.trials, v)})
    assert last_half_line(unchanged) == (
        f"last half of the compute (8.62 to 17.2 trainings): +0.00 points: the answer {OC} was already "
        "recommended at 8.25 trainings"
    )


def test_a_metric_where_lower_is_better(study: Path, tmp_path: Path) -> None:
    """The same study minimising 1 - accuracy: the same recommendations at the same points, each metric
    1 - the accuracy's, and the last half's difference negative (an improvement)."""
    run, flipped = load_run(study), load_run(_study(tmp_path / "lower", lower=True))
    assert flipped.verdict["mode"] == "min" and flipped.verdict["recommended"] == OC
    pairs = list(zip(run.verdict["frontier"], flipped.verdict["frontier"], strict=True))
    for a, b in pairs:
        assert {k: a[k] for k in ("trainings", "arm", "source_trial", "evidence")} == {
            k: b[k] for k in ("trainings", "arm", "source_trial", "evidence")
        }
        assert b["metric"] == pytest.approx(1 - a["metric"])
    half = flipped.verdict["last_half"]
    assert half["diff"] == pytest.approx(-0.05) and half["at_half"]["arm"] == CLR
    assert last_half_line(flipped).endswith("paired over 3 seeds; lower is better")


def test_costs_and_order_come_from_the_tables(study: Path) -> None:
    trials = pd.read_parquet(study / "trials.parquet")
    ordered = learned_order(trials)
    assert list(zip(ordered["stage"], ordered["trial_id"], ordered["budget"], strict=True)) == ORDER
    cost = run_trainings(ordered)
    assert cost.sum() == 16.25 and cost.iloc[1] == 0.25  # the stopped trial: 2 of 8 epochs
    # a table without finish times (older folders) keeps its own order
    assert learned_order(trials.drop(columns="finished_at")).index.tolist() == trials.index.tolist()


def test_the_report_draws_the_frontier(study: Path) -> None:
    written = write_report(study)
    figure = written["plot:frontier"]
    assert figure == study / "plots" / "frontier.png" and figure.stat().st_size > 5000
    md = written["report.md"].read_text()
    line = last_half_line(load_run(study))
    assert "![frontier](plots/frontier.png)" in md and f"{line[0].upper()}{line[1:]}." in md


def test_an_empty_run_has_no_frontier_and_still_reports(tmp_path: Path) -> None:
    cfg = study_config(list(OUTCOMES), 3, [0.5, 1.0])
    root = write_run(tmp_path / "empty", cfg, {}, None, 0.1, tables=(), spaces=False)
    run = load_run(root)
    assert run.verdict["frontier"] == [] and run.verdict["last_half"]["why"] == "no recommendation yet"
    assert last_half_line(run) is None
    assert write_report(root)["plot:frontier"].stat().st_size > 1000
