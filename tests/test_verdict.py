"""The verdict on hand-built run folders (no training): ties inside the evaluation noise, clear winners, too
few seeds, intervals inside [0, 100]%, speed-ups reached at the smallest budget, a baseline at chance; and the
same for a metric where lower is better, with real-valued per-example values or none (paired by seed only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runfolder import flat_rows, run_folder
from scipy import stats

from sched_search.results.closing import format_closing
from sched_search.results.paired import holm, paired_difference
from sched_search.results.report import format_leaderboard, write_report
from sched_search.results.run import load_run
from sched_search.results.verdict import decide

BASELINE = "constant-adam"


def _run(
    root: Path,
    arms: dict[str, dict[float, list[np.ndarray]]],
    chance: float | None = 0.1,
    target: float | None = None,
    metric: str = "accuracy",
    mode: str = "max",
    per_example: bool = True,
) -> Path:
    """The run folder of a study of these arms (`runfolder.run_folder`): arm -> budget -> per-seed vectors of
    per-example values (0/1 correctness for accuracy); `per_example` False records none, each run only its
    mean (a metric that gives one number per run)."""
    first = next(iter(next(iter(arms.values())).values()))[0]
    if not per_example:
        arms = {a: {b: [float(v.mean()) for v in vs] for b, vs in rungs.items()} for a, rungs in arms.items()}
    return run_folder(root, arms, chance, target, metric, mode, n_val=len(first))


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
    # a study whose only baseline is default:adam (constant-adam): that baseline is the strongest
    assert written["baselines"] == [BASELINE] == [written["strongest_baseline"]]
    assert written["recommended"] == "one_cycle-sgdw" and written["vs_adam"]["target"] == written["target"]
    assert "Strongest baseline" not in run.summary


def test_the_written_verdict_is_loaded_not_decided_again(tmp_path: Path) -> None:
    """A folder with verdict.json reads that verdict (leaderboard, summary, closing block the same as where it
    was decided); an edited verdict.json is read as written, and `decide_verdict` decides from the tables."""
    rng = np.random.default_rng(3)
    n = 900
    arms = {
        "one_cycle-sgdw": {1.0: [_right(n, k, rng) for k in (850, 855, 860)]},
        "clr-sgdw": {1.0: [_right(n, k, rng) for k in (845, 850, 858)]},
        BASELINE: {1.0: [_right(n, k, rng) for k in (700, 705, 710)]},
    }
    decided = load_run(_run(tmp_path / "r", arms))
    assert not (decided.path / "verdict.json").exists()
    write_report(decided.path, decided)
    loaded = load_run(decided.path)
    assert loaded.verdict == json.loads((decided.path / "verdict.json").read_text())
    assert loaded.verdict["frontier"] and loaded.verdict["attribution"] == decided.verdict["attribution"]
    pd.testing.assert_frame_equal(loaded.leaderboard, decided.leaderboard)
    html = decided.path / "report.html"
    assert loaded.summary == decided.summary and format_closing(loaded, html) == format_closing(decided, html)
    assert format_leaderboard(loaded) == format_leaderboard(decided)

    edited = {**loaded.verdict, "winner": "clr-sgdw", "headline": "Winner: clr-sgdw (as the study wrote)."}
    (decided.path / "verdict.json").write_text(json.dumps(edited))
    run = load_run(decided.path)
    assert run.verdict["winner"] == "clr-sgdw" and run.summary == "Winner: clr-sgdw (as the study wrote)."
    again = load_run(decided.path, decide_verdict=True)
    assert again.verdict["winner"] == decided.verdict["winner"] != "clr-sgdw"
    assert again.summary == decided.summary


def test_several_baselines_in_the_report(tmp_path: Path) -> None:
    """Three baselines and the attribution ladder's runs: the terminal and report.md show every searched arm
    against every baseline and what each step bought, the leaderboard marks each baseline and leaves the
    ladder's runs out, the headline names the strongest baseline, the closing block lists both."""
    rng = np.random.default_rng(11)
    n = 600
    arms = {
        "one_cycle-sgdw": {1.0: [_right(n, k, rng) for k in (570, 572, 568)]},
        "clr-sgdw": {1.0: [_right(n, k, rng) for k in (500, 505, 498)]},
        BASELINE: {1.0: [_right(n, k, rng) for k in (300, 310, 305)]},
        "default:adamw-cosine": {1.0: [_right(n, k, rng) for k in (360, 365, 355)]},
        "default:schedule_free": {1.0: [_right(n, k, rng) for k in (450, 440, 455)]},
        "ladder:cosine-sgdw": {1.0: [_right(n, k, rng) for k in (540, 545, 538)]},
        "ladder:untuned-one_cycle-sgdw": {1.0: [_right(n, k, rng) for k in (545, 542, 540)]},
        "ladder:untuned-clr-sgdw": {1.0: [_right(n, k, rng) for k in (480, 485, 478)]},
    }
    root = _run(tmp_path / "three", arms)
    run = load_run(root)
    assert run.verdict["strongest_baseline"] == "default:schedule_free"
    assert "Strongest baseline: default:schedule_free" in run.summary
    text = format_leaderboard(run)
    assert "Holm over all 6 comparisons" in text
    block = text[text.index("Every searched arm against every baseline") :]
    assert block.splitlines()[1].split() == ["arm", "default:schedule_free", "default:adamw-cosine", BASELINE]
    md = write_report(run.path)["report.md"].read_text()
    assert "## Against every baseline" in md and "| one_cycle-sgdw | better +" in md
    assert run.leaderboard.set_index("arm").loc["default:adamw-cosine", "vs_baseline"] == "baseline"
    assert not run.leaderboard["arm"].str.startswith("ladder:").any()
    steps = run.verdict["attribution"]["steps"]
    assert [s["call"] for s in steps] == ["gain", "gain", "not measurable", "gain"]
    assert "## What each step bought" in md
    assert "- ladder:cosine-sgdw -> ladder:untuned-one_cycle-sgdw: the schedule bought nothing" in md
    closing = format_closing(run, root / "report.html")
    assert "recommended: one_cycle-sgdw (the winner)" in closing
    sf = f"{100 * (450 + 440 + 455) / (3 * n):.2f}%"
    assert f"  vs default:schedule_free (the strongest baseline), val accuracy {sf}: better +" in closing
    assert "the schedule bought nothing measurable here" in closing


def test_the_strongest_of_the_five_baselines_is_what_everything_measures_against(tmp_path: Path) -> None:
    """The default study's five baselines, Prodigy the strongest and the range test's one-cycle next: the
    verdict names Prodigy the reference by the same rule as before (the best mean), and the headline, the
    target and the speed-ups, the closing block and the report measure against it."""
    rng = np.random.default_rng(5)
    n = 600
    arms = {
        "one_cycle-adamw": {
            0.25: [_right(n, k, rng) for k in (575, 576, 574)],  # past Prodigy's mean at a quarter
            1.0: [_right(n, k, rng) for k in (590, 592, 589)],
        },
        BASELINE: {1.0: [_right(n, k, rng) for k in (300, 310, 305)]},
        "default:adamw-cosine": {1.0: [_right(n, k, rng) for k in (360, 365, 355)]},
        "default:schedule_free": {1.0: [_right(n, k, rng) for k in (450, 440, 455)]},
        "default:prodigy": {1.0: [_right(n, k, rng) for k in (570, 568, 572)]},
        "default:lr_find-one_cycle": {1.0: [_right(n, k, rng) for k in (560, 563, 558)]},
    }
    root = _run(tmp_path / "five", arms)
    run = load_run(root)
    v = run.verdict
    assert v["strongest_baseline"] == v["baseline"] == "default:prodigy"
    assert v["baselines"] == [
        "default:prodigy",
        "default:lr_find-one_cycle",
        "default:schedule_free",
        "default:adamw-cosine",
        BASELINE,
    ]  # strongest first
    prodigy = (570 + 568 + 572) / (3 * n)
    assert (
        v["target"] == pytest.approx(prodigy) and "strongest baseline default:prodigy" in v["target_source"]
    )
    assert f"Strongest baseline: default:prodigy (val accuracy {100 * prodigy:.2f}%)." in v["headline"]
    assert (
        v["arms"]["one_cycle-adamw"]["vs_baseline"]
        == v["arms"]["one_cycle-adamw"]["vs_baselines"]["default:prodigy"]
    )
    assert v["speedup"]["one_cycle-adamw"]["estimate"] == pytest.approx(4.0)  # 8 epochs over 2
    assert "sooner than default:prodigy." in v["headline"]
    assert run.leaderboard.set_index("arm").loc["default:lr_find-one_cycle", "vs_baseline"] == "baseline"
    closing = format_closing(run, root / "report.html")
    assert f"  vs default:prodigy (the strongest baseline), val accuracy {100 * prodigy:.2f}%: " in closing
    md = write_report(run.path)["report.md"].read_text()
    assert "Strongest baseline: default:prodigy" in md and "sooner than default:prodigy" in md
    # the range test's baseline trained one_cycle-adamw's first point, under its own name
    lr_find = [c for c in run.final_configs if c["arm"] == "default:lr_find-one_cycle"]
    (first,) = [c for c in run.final_configs if c["arm"] == "one_cycle-adamw" and c["seed"] == 0]
    assert len(lr_find) == 3 and {c["schedule"] for c in lr_find} == {"one_cycle"}
    keys = ("optimizer", "max_lr", "weight_decay", "pct_start", "div_factor", "final_div_factor")
    assert all({k: c[k] for k in keys} == {k: first[k] for k in keys} for c in lr_find)


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
    flat = flat_rows({}, "max")

    def rows(arm: str, seed: int, budget: float, epochs: int, right: np.ndarray) -> list[dict]:
        if (arm, seed) != (BASELINE, 2):
            return flat(arm, seed, budget, epochs, right)
        # as train.train_epochs stops a run whose loss went NaN in epoch 2: no test, no examples
        nan = {"val_loss": math.nan, "val_metric": 0.0, "status": "nan", "reason": "training loss is nan"}
        first, second = flat(arm, seed, budget, epochs, right)[:2]
        return [first, {**second, **nan}]

    root = run_folder(tmp_path / "f", arms, rows=rows)
    trials = pd.read_parquet(root / "trials.parquet")
    failed = trials[(trials.arm == BASELINE) & (trials.seed == 2)]
    assert failed["status"].tolist() == ["nan"] and failed["val_examples"].isna().all()
    v = load_run(root).verdict
    assert v["seeds"] == [0, 1] and v["winner"] is None  # seed 2 left out of every comparison


# ----------------------------------------------------------------------------------- lower is better


def _errors(n: int, mean: float, rng: np.random.Generator, spread: float = 0.5) -> np.ndarray:
    """n per-example values (absolute errors, say) whose mean is exactly `mean`."""
    z = rng.standard_normal(n)
    return mean * (1 + spread * (z - z.mean()) / z.std())


def test_lowest_mae_wins_paired_by_example(tmp_path: Path) -> None:
    """A min metric with real-valued per-example values: the lowest arm wins; lower than the baseline is
    "better", higher is "worse"; differences are the arm minus the other, in the metric's units, unclipped."""
    rng = np.random.default_rng(7)
    n = 500
    arms = {
        "one_cycle-adamw": {1.0: [_errors(n, m, rng) for m in (2.0, 2.1, 2.05)]},
        "clr-adamw": {1.0: [_errors(n, m, rng) for m in (3.0, 3.1, 3.05)]},
        "sgdr-sgdw": {1.0: [_errors(n, m, rng) for m in (6.0, 6.2, 6.1)]},
        BASELINE: {1.0: [_errors(n, m, rng) for m in (4.0, 4.1, 4.05)]},
    }
    run = load_run(_run(tmp_path / "mae", arms, chance=None, metric="mae", mode="min"))
    v = run.verdict
    assert (v["metric"], v["mode"], v["paired_by_example"], v["eval_examples"]) == ("mae", "min", True, n)
    assert v["points_per_example"] is None and v["chance_accuracy"] is None and v["target_meaningful"]
    assert v["winner"] == "one_cycle-adamw" == v["leader"] and v["top_group"] == ["one_cycle-adamw"]
    assert v["better_than_baseline"] == ["clr-adamw", "one_cycle-adamw"]
    assert v["worse_than_baseline"] == ["sgdr-sgdw"]
    base = v["arms"]["one_cycle-adamw"]["vs_baseline"]
    assert base["call"] == "better" and base["diff"] == pytest.approx(-2.0)
    assert base["ci_low"] < -2.0 < base["ci_high"] < -1.0  # in the metric's units: not clipped to [-1, 1]
    lead = v["arms"]["sgdr-sgdw"]["vs_leader"]  # the leader minus the arm
    assert lead["diff"] == pytest.approx(-4.05) and lead["ci_low"] < -4.05 < lead["ci_high"] < 0
    assert (
        v["target"] == pytest.approx(4.05)
        and "baseline" in v["target_source"]
        and "mae" in v["target_source"]
    )
    assert run.summary.startswith("Winner: one_cycle-adamw (val mae 2.05), ahead of every other arm.")
    assert "Better than constant-adam: clr-adamw, one_cycle-adamw." in run.summary
    assert "Lower is better" in v["rule"] and "shows it above the leader" in v["rule"]
    assert "500 validation examples" in v["rule"] and "points" not in v["rule"]
    board = run.leaderboard
    assert board["arm"].tolist() == ["one_cycle-adamw", "clr-adamw", BASELINE, "sgdr-sgdw"]  # lowest first
    assert board["ci_high"].max() > 1  # a mean interval is not clipped to [0, 1] either


def test_min_metric_within_noise_names_no_winner(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    n = 300
    arms = {
        "one_cycle-adamw": {1.0: [_errors(n, m, rng) for m in (0.100, 0.103, 0.101)]},
        "clr-adamw": {1.0: [_errors(n, m, rng) for m in (0.101, 0.102, 0.102)]},
        BASELINE: {1.0: [_errors(n, m, rng) for m in (0.200, 0.201, 0.199)]},
    }
    v = load_run(_run(tmp_path / "tie", arms, metric="mse", mode="min")).verdict
    assert v["winner"] is None and v["leader"] == "one_cycle-adamw"  # 0.1013 against 0.1017
    assert sorted(v["top_group"]) == ["clr-adamw", "one_cycle-adamw"]
    assert v["arms"]["clr-adamw"]["vs_leader"]["p_holm"] >= 0.05
    assert v["better_than_baseline"] == ["clr-adamw", "one_cycle-adamw"]


def test_speedup_when_lower_is_better(tmp_path: Path) -> None:
    """mode "min": a rung reaches the target when its mean is at most the target. Under "max" the same
    numbers would reach it at the first rung."""
    rng = np.random.default_rng(9)
    n = 400
    arms = {
        "one_cycle-sgdw": {
            0.125: [_errors(n, m, rng) for m in (0.30, 0.31, 0.29)],
            0.25: [_errors(n, m, rng) for m in (0.08, 0.081, 0.079)],
            0.5: [_errors(n, m, rng) for m in (0.06, 0.061, 0.059)],
            1.0: [_errors(n, m, rng) for m in (0.05, 0.051, 0.049)],
        },
        BASELINE: {1.0: [_errors(n, m, rng) for m in (0.10, 0.101, 0.099)]},
    }
    run = load_run(_run(tmp_path / "sp", arms, metric="mae", mode="min"))
    sp = run.verdict["speedup"]["one_cycle-sgdw"]
    assert run.target == pytest.approx(0.10)
    assert sp["epochs_to_target"] == 2.0 and sp["estimate"] == pytest.approx(4.0) and not sp["lower_bound"]
    assert sp["ci_low"] == pytest.approx(4.0) and sp["ci_high"] == pytest.approx(4.0)
    assert "reaches the target (val mae 0.1) 4x (95% CI 4-4x) sooner" in run.summary
    assert run.leaderboard.set_index("arm").loc["one_cycle-sgdw", "to_target"].startswith("4x")
    trials = run.trials
    maxed = decide(trials, metric="mae", mode="max")  # the same numbers read the other way round
    assert maxed["speedup"]["one_cycle-sgdw"]["epochs_to_target"] == 1.0
    # a study target the baseline never reaches (0.07): the arm's 4 epochs against the baseline's full 8
    study = decide(trials, target=0.07, metric="mae", mode="min")
    assert study["target_source"] == "the study's target"
    assert study["speedup"]["one_cycle-sgdw"]["estimate"] == pytest.approx(2.0)
    assert study["speedup"]["one_cycle-sgdw"]["lower_bound"]
    with pytest.raises(ValueError, match="'max' or 'min', but got 'lowest'"):
        decide(trials, mode="lowest")


def test_no_per_example_values_pairs_by_seed_only(tmp_path: Path) -> None:
    """A custom metric that returns one number per run: each run is its final_val_metric, arms are paired
    by seed only (t with S - 1 df, bootstrap over seeds); one arm with per-example values changes nothing."""
    per_seed = {
        "one_cycle-adamw": (0.050, 0.052, 0.049),
        "clr-adamw": (0.080, 0.083, 0.079),
        BASELINE: (0.100, 0.104, 0.098),
    }
    rng = np.random.default_rng(10)
    arms = {arm: {1.0: [_errors(50, m, rng) for m in ms]} for arm, ms in per_seed.items()}
    outcomes = {a: {1.0: [float(v.mean()) for v in vs]} for a, rungs in arms.items() for vs in rungs.values()}
    outcomes["clr-adamw"] = arms["clr-adamw"]  # one arm only: per-example values, their mean the run's
    root = run_folder(tmp_path / "seeds", outcomes, metric="r2_loss", mode="min", n_val=50)
    run = load_run(root)
    v = run.verdict
    assert v["paired_by_example"] is False and v["eval_examples"] is None and v["points_per_example"] is None
    assert v["winner"] == "one_cycle-adamw" and v["better_than_baseline"] == ["clr-adamw", "one_cycle-adamw"]
    assert "paired by seed only" in v["rule"] and "Student t with 2 df" in v["rule"]
    assert "bootstrap over seeds." in v["rule"] and "validation examples" not in v["rule"]
    for arm, values in per_seed.items():
        a = v["arms"][arm]
        assert a["mean"] == pytest.approx(np.mean(values))
        # seeds resampled, examples not: the interval stays within the per-seed values
        assert min(values) - 1e-12 <= a["ci_low"] <= a["mean"] <= a["ci_high"] <= max(values) + 1e-12
        assert a["std_over_seeds"] == pytest.approx(np.std(values, ddof=1))
    d = np.subtract(per_seed["one_cycle-adamw"], per_seed[BASELINE])
    half = stats.t.ppf(1 - 0.05 / 2 / 2, 2) * d.std(ddof=1) / math.sqrt(3)  # Bonferroni over 2 arms
    c = v["arms"]["one_cycle-adamw"]["vs_baseline"]
    assert c["diff"] == pytest.approx(d.mean()) and c["ci_high"] == pytest.approx(d.mean() + half)
    one = paired_difference(np.array([[0.2], [0.3], [0.25]]), np.array([[0.1], [0.1], [0.2]]))
    assert one["df"] == pytest.approx(2.0) and math.isfinite(one["p"])  # n = 1: no example term, no NaN
    text = format_leaderboard(run)
    assert "val r2_loss" in text and "not estimable" not in text
