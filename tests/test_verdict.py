"""The verdict on hand-built run folders (no training): ties inside the evaluation noise, clear winners, too
few seeds, intervals inside [0, 100]%, speed-ups reached at the smallest budget, a baseline at chance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sched_search.report import format_leaderboard, write_report
from sched_search.results import load_run
from sched_search.paired import holm, paired_difference

BASELINE = "constant-adam"
EPOCHS = 8


def _record(right: np.ndarray) -> str:
    return "".join("01"[int(v)] for v in right)


def _run(
    root: Path,
    arms: dict[str, dict[float, list[np.ndarray]]],
    chance: float | None = 0.1,
    target: float | None = None,
) -> Path:
    """A run folder of final runs only: arm -> budget -> per-seed 0/1 correctness vectors."""
    root.mkdir(parents=True)
    study = {"name": "hand", "train": {"epochs": EPOCHS}, "target_accuracy": target}
    (root / "resolved_config.json").write_text(json.dumps({"study": study, "chance_accuracy": chance}))
    rows = []
    for arm, rungs in arms.items():
        for budget, vectors in rungs.items():
            for seed, right in enumerate(vectors):
                rows.append(
                    {
                        "stage": "final",
                        "trial_id": f"{arm}-{seed}",
                        "arm": arm,
                        "seed": seed,
                        "budget": budget,
                        "budget_epochs": budget * EPOCHS,
                        "epochs_run": budget * EPOCHS,
                        "final_val_metric": right.mean(),
                        "final_val_loss": 1 - right.mean(),
                        "test_metric": right.mean(),
                        "wall_time": 1.0,
                        "status": "ok",
                        "reason": "",
                        "val_examples": _record(right),
                    }
                )
    pd.DataFrame(rows).to_parquet(root / "trials.parquet", index=False)
    return root


def _right(n: int, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """n examples, k of them right (the first k, or k at random places with `rng`)."""
    right = np.zeros(n, dtype=bool)
    right[(rng.permutation(n) if rng is not None else np.arange(n))[:k]] = True
    return right


# ----------------------------------------------------------------------------------- the statistics by hand


def test_paired_difference_by_hand() -> None:
    rng = np.random.default_rng(1)
    a = (rng.random((3, 50)) < 0.8).astype(float)
    b = (rng.random((3, 50)) < 0.6).astype(float)
    c = paired_difference(a, b)
    d_s, delta = a.mean(1) - b.mean(1), (a - b).mean(0)
    v1, v2 = d_s.var(ddof=1) / 3, delta.var(ddof=1) / 50
    df = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 49)
    se = math.sqrt(v1 + v2)
    assert c["diff"] == pytest.approx(d_s.mean())
    assert c["df"] == pytest.approx(df)
    assert c["p"] == pytest.approx(2 * stats.t.sf(abs(d_s.mean()) / se, df))
    assert c["ci_high"] - c["diff"] == pytest.approx(stats.t.ppf(0.975, df) * se)


def test_holm_by_hand() -> None:
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": 0.03, "c": 0.06, "b": 0.06}
    assert holm({"a": 0.5, "b": 0.001}) == {"b": 0.002, "a": 0.5}  # monotone and capped at 1
    assert holm({"x": 0.9, "y": 0.8}) == {"y": 1.0, "x": 1.0}


# ----------------------------------------------------------------------------------- the cases of issue 9


def test_one_example_of_269_is_no_win(tmp_path: Path) -> None:
    """(a) Two arms 266 and 265 of 269 right on every seed: no winner, a top group of both."""
    n = 269
    arms = {
        "clr-adamw": {1.0: [_right(n, 266)] * 3},
        "sgdr-adamw": {1.0: [_right(n, 265)] * 3},
        BASELINE: {1.0: [_right(n, 260)] * 3},
    }
    run = load_run(_run(tmp_path / "a", arms))
    v = run.verdict
    assert v["winner"] is None
    assert sorted(v["top_group"]) == ["clr-adamw", "sgdr-adamw"]
    assert v["eval_examples"] == 269 and v["points_per_example"] == pytest.approx(100 / 269)
    assert run.summary.startswith("No clear winner")
    assert "one example = 0.372 points" in v["rule"]
    text = format_leaderboard(run)
    assert "Winner" not in text and "tie-break, not a win" in text


def test_clear_winner_over_three_seeds(tmp_path: Path) -> None:
    """(b) 95% against 85% and 80% on 1,500 examples and 3 seeds: that winner, better than the baseline."""
    rng = np.random.default_rng(0)
    n = 1500
    arms = {
        "one_cycle-sgdw": {1.0: [_right(n, k, rng) for k in (1420, 1428, 1432)]},
        "clr-sgdw": {1.0: [_right(n, k, rng) for k in (1270, 1280, 1285)]},
        BASELINE: {1.0: [_right(n, k, rng) for k in (1195, 1200, 1210)]},
    }
    run = load_run(_run(tmp_path / "b", arms))
    v = run.verdict
    assert v["winner"] == "one_cycle-sgdw" and v["top_group"] == ["one_cycle-sgdw"]
    assert v["better_than_baseline"] == ["clr-sgdw", "one_cycle-sgdw"]
    assert run.summary.startswith("Winner: one_cycle-sgdw")
    assert run.leaderboard["arm"].tolist()[0] == "one_cycle-sgdw"
    written = json.loads(write_report(run.path)["verdict.json"].read_text())
    for key in (
        "winner",
        "top_group",
        "baseline",
        "target",
        "metric",
        "mode",
        "paired_by_example",
        "eval_examples",
        "speedup",
        "better_than_baseline",
        "rule",
    ):
        assert key in written, key
    assert written["winner"] == "one_cycle-sgdw" and written["baseline"] == BASELINE


def test_two_seeds_spread_not_estimable(tmp_path: Path) -> None:
    """(c) 2 seeds with equal accuracies: never "± 0.00", no winner even for a large gap."""
    n = 300
    arms = {"one_cycle-adamw": {1.0: [_right(n, 290)] * 2}, BASELINE: {1.0: [_right(n, 150)] * 2}}
    run = load_run(_run(tmp_path / "c", arms))
    assert run.verdict["winner"] is None and run.verdict["n_seeds"] == 2
    assert run.leaderboard["std_val_metric"].isna().all()
    text = format_leaderboard(run)
    assert "not estimable" in text and "± 0.00" not in text and "0.00 ±" not in text
    assert "no winner is named" in run.verdict["rule"]


def test_intervals_stay_inside_0_and_100(tmp_path: Path) -> None:
    """(d) arms at 100% and near 0%: every accuracy interval inside [0, 1], differences inside [-1, 1]."""
    n = 100
    arms = {
        "clr-adamw": {1.0: [_right(n, 100), _right(n, 99), _right(n, 100)]},
        "clr-sgdw": {1.0: [_right(n, 1), _right(n, 0), _right(n, 3)]},
        BASELINE: {1.0: [_right(n, 50), _right(n, 60), _right(n, 40)]},
    }
    run = load_run(_run(tmp_path / "d", arms))
    board = run.leaderboard
    assert ((board["ci_low"] >= 0) & (board["ci_high"] <= 1)).all()
    assert (board["ci_low"] <= board["mean_val_metric"]).all()
    assert (board["mean_val_metric"] <= board["ci_high"]).all()
    diffs = board.dropna(subset=["diff_ci_low"])
    assert ((diffs["diff_ci_low"] >= -1) & (diffs["diff_ci_high"] <= 1)).all()


def test_speedup_at_the_smallest_rung_is_a_lower_bound(tmp_path: Path) -> None:
    """(e) The target (the baseline's 60% at 8 epochs) already reached at 1 epoch: ">= 8x", a lower bound."""
    rng = np.random.default_rng(3)
    n = 1000
    arms = {
        "one_cycle-sgdw": {
            0.125: [_right(n, k, rng) for k in (700, 710, 705)],
            1.0: [_right(n, k, rng) for k in (900, 905, 910)],
        },
        "sgdr-sgdw": {
            0.125: [_right(n, k, rng) for k in (400, 410, 405)],
            0.5: [_right(n, k, rng) for k in (640, 650, 660)],
            1.0: [_right(n, k, rng) for k in (800, 805, 810)],
        },
        BASELINE: {1.0: [_right(n, k, rng) for k in (595, 600, 605)]},
    }
    run = load_run(_run(tmp_path / "e", arms))
    sp = run.verdict["speedup"]
    fast = sp["one_cycle-sgdw"]
    assert fast["estimate"] == pytest.approx(8.0) and fast["lower_bound"] and fast["epochs_to_target"] == 1.0
    assert fast["ci_low"] == pytest.approx(8.0) and fast["ci_high"] == pytest.approx(8.0)
    mid = sp["sgdr-sgdw"]
    assert mid["estimate"] == pytest.approx(2.0) and not mid["lower_bound"]
    assert mid["ci_low"] <= 2.0 <= mid["ci_high"]
    board = run.leaderboard.set_index("arm")
    assert board.loc["one_cycle-sgdw", "to_target"].startswith(">= 8x (a lower bound")
    assert "lower bound" in run.summary


def test_speedup_interval_widens_when_the_rung_is_near_the_target(tmp_path: Path) -> None:
    """A rung whose mean sits just above the target is reached in only some resamples: the interval says
    so."""
    rng = np.random.default_rng(4)
    n = 500
    arms = {
        "clr-adamw": {
            0.25: [_right(n, k, rng) for k in (300, 302, 304)],
            0.5: [_right(n, k, rng) for k in (350, 352, 354)],
            1.0: [_right(n, k, rng) for k in (400, 402, 404)],
        },
        BASELINE: {1.0: [_right(n, k, rng) for k in (298, 300, 302)]},
    }
    sp = load_run(_run(tmp_path / "w", arms)).verdict["speedup"]["clr-adamw"]
    assert sp["estimate"] == pytest.approx(4.0) and sp["lower_bound"]  # 2 epochs is the smallest rung here
    # the 2-epoch mean (60.4%) is within noise of the target (60.0%): some resamples need the 4-epoch rung
    assert sp["reached_share"] == 1.0
    assert sp["ci_low"] == pytest.approx(2.0) and sp["ci_high"] == pytest.approx(4.0)


def test_baseline_at_chance_makes_the_target_meaningless(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 1000
    arms = {
        "clr-adamw": {
            0.5: [_right(n, k, rng) for k in (500, 510, 505)],
            1.0: [_right(n, k, rng) for k in (800, 805, 810)],
        },
        BASELINE: {1.0: [_right(n, k, rng) for k in (100, 102, 98)]},
    }
    run = load_run(_run(tmp_path / "ch", arms, chance=0.1))
    assert run.verdict["target_meaningful"] is False
    assert run.verdict["speedup"] == {}
    assert "not better than chance" in run.summary
    assert any("mean nothing" in line for line in format_leaderboard(run).splitlines())


def test_a_failed_seed_leaves_the_comparison_paired(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    n = 400
    arms = {
        "clr-adamw": {1.0: [_right(n, k, rng) for k in (300, 310, 305)]},
        BASELINE: {1.0: [_right(n, k, rng) for k in (200, 210, 205)]},
    }
    root = _run(tmp_path / "f", arms)
    trials = pd.read_parquet(root / "trials.parquet")
    trials.loc[(trials.arm == BASELINE) & (trials.seed == 2), ["status", "val_examples"]] = ["nan", None]
    trials.to_parquet(root / "trials.parquet", index=False)
    v = load_run(root).verdict
    assert v["seeds"] == [0, 1] and v["winner"] is None  # seed 2 left out of every comparison
