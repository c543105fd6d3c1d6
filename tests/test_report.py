"""Reports: the leaderboard's arithmetic on a fabricated run with known numbers (CI, epochs-to-target,
speed-up, the words), runs with missing pieces, every figure, and the real smoke study end to end (report,
notebook, HTML)."""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runfolder import (
    EPOCHS,
    epoch_rows,
    flat_rows,
    records,
    run_folder,
    study_config,
    trial_configs,
    write_run,
)

from sched_search.results import plots
from sched_search.results.leaderboard import budget_ladder
from sched_search.results.report import format_leaderboard, write_plots, write_report
from sched_search.results.run import learning_curves, load_run, param_importances, schedule_curves

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
N_VAL = 200  # validation examples of the fabricated run: accuracies below are multiples of 1/200
BASELINE = "constant-adam"
# arm -> budget -> final val accuracy per seed. Target = baseline mean 0.90; one_cycle-adamw reaches 0.91 at
# budget 0.25 (2 epochs) -> speed-up 8 / 2 = 4; clr-sgdw never reaches it.
ARMS = {
    BASELINE: {1.0: [0.89, 0.90, 0.91]},
    "one_cycle-adamw": {
        0.125: [0.84, 0.85, 0.86],
        0.25: [0.905, 0.91, 0.915],
        0.5: [0.91, 0.915, 0.92],
        1.0: [0.90, 0.92, 0.94],
    },
    "clr-sgdw": {
        0.125: [0.70, 0.71, 0.72],
        0.25: [0.80, 0.81, 0.82],
        0.5: [0.83, 0.84, 0.85],
        1.0: [0.85, 0.86, 0.87],
    },
}
CONFIGS = {
    BASELINE: {"lr": 3e-4, "weight_decay": 0.0},
    "one_cycle-adamw": {
        "max_lr": 0.006,
        "weight_decay": 1e-4,
        "pct_start": 0.3,
        "div_factor": 25.0,
        "final_div_factor": 1e4,
    },
    "clr-sgdw": {
        "max_lr": 0.05,
        "weight_decay": 1e-5,
        "base_div": 4.0,
        "step_size_epochs": 2.0,
        "mode": "triangular",
        "gamma": 1.0,
    },
}


# The same study minimising val MAE: one_cycle-adamw lowest, clr-sgdw highest.
MAE_ARMS = {
    BASELINE: {1.0: [0.10, 0.11, 0.12]},
    "one_cycle-adamw": {0.125: [0.20, 0.21, 0.22], 0.25: [0.09, 0.10, 0.11], 1.0: [0.05, 0.06, 0.07]},
    "clr-sgdw": {0.25: [0.30, 0.31, 0.32], 1.0: [0.15, 0.16, 0.17]},
}


def errors(mean: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` per-example values (absolute errors, say) whose mean is exactly `mean`."""
    z = rng.standard_normal(n)
    return mean * (1 + 0.5 * (z - z.mean()))


def correct(accuracy: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` examples with exactly round(accuracy * n) right, at random places."""
    right = np.zeros(n, dtype=bool)
    right[rng.permutation(n)[: round(accuracy * n)]] = True
    return right


def _fabricate(
    root: Path,
    arms: dict = ARMS,
    target: float | None = None,
    tables: tuple = ("trials", "epochs"),
    extras: bool = True,
    n_val: int = N_VAL,
    metric: str | None = None,
    died: dict[str, float] | None = None,
) -> Path:
    """A run folder of a study with known accuracies (`runfolder.run_folder`); full-budget curves rise 1 point
    per epoch to the final. `metric` (lower is better): known mean per-example values instead, curves falling
    to the final. Without `extras`, no final_configs.json, spaces.json or range tests."""
    lower = metric is not None

    def rows(arm: str, seed: int, budget: float, epochs: int, value: float) -> list[dict]:
        # one record per run, the same wherever it is drawn (a search trial is its arm's seed-0 full run)
        rng = np.random.default_rng([zlib.crc32(arm.encode()), seed, round(budget * EPOCHS)])
        examples = errors(value, n_val, rng) if lower else correct(value, n_val, rng)
        step = -0.01 if lower else 0.01  # per epoch before the last, towards the final value
        return epoch_rows(epochs, value, 1 - value, examples, value - 0.01, 1.0 + seed, step, 0.01)

    best = {arm: CONFIGS[arm] for arm in arms if arm != BASELINE}
    run_folder(root, arms, target=target, metric=metric or "accuracy", mode="min" if lower else "max",
               best=best, rows=rows, died=died, n_val=n_val, tables=tables, spaces=extras)  # fmt: skip
    if extras:
        lr = np.geomspace(1e-6, 1.0, 40)
        for opt in ("adamw", "sgdw"):
            for wd in (0.0, 1e-4):
                curve = 2.3 - np.clip(np.log10(lr / 1e-4), 0, None) + np.where(lr > 0.1, 50 * lr, 0)
                frame = pd.DataFrame(
                    {
                        "step": range(40),
                        "lr": lr,
                        "loss": curve,
                        "smoothed_loss": curve,
                        "curve": curve,
                        "val_loss": np.nan,
                        "finite": True,
                        "weight_decay": wd,
                    }
                )
                mode = "a" if wd else "w"
                frame.to_csv(root / f"range_test_{opt}.csv", mode=mode, header=mode == "w", index=False)
            (root / f"range_test_{opt}.json").write_text(
                json.dumps(
                    {
                        "verdict": "ok",
                        "reasons": [],
                        "suggested_min_lr": 1e-3,
                        "suggested_max_lr": 1e-2,
                        "weight_decay": {"chosen": 1e-4},
                    }
                )
            )
    return root


@pytest.fixture
def fab(tmp_path: Path) -> Path:
    return _fabricate(tmp_path / "fab")


# ----------------------------------------------------------------------------------- arithmetic


def test_leaderboard_numbers(fab: Path) -> None:
    run = load_run(fab)
    assert run.missing == []
    assert run.target == pytest.approx(0.90)
    board = run.leaderboard.set_index("arm")
    a = board.loc["one_cycle-adamw"]
    assert a["n_seeds"] == 3
    assert a["mean_val_metric"] == pytest.approx(0.92)
    assert a["std_val_metric"] == pytest.approx(0.02)
    assert 0.88 < a["ci_low"] < 0.92 < a["ci_high"] < 0.96  # bootstrap over 3 seeds x 200 examples
    assert a["mean_val_loss"] == pytest.approx(0.08)
    assert a["mean_test_metric"] == pytest.approx(0.91)
    assert a["wall_time_s"] == pytest.approx(2.0)
    # budget ladder: first rung with mean >= 0.90 is 2 epochs; the baseline's reference is its full 8 epochs
    assert a["epochs_to_target"] == 2 and a["speedup"] == pytest.approx(4.0)
    assert a["to_target"].startswith("4x (95% CI")
    # full-length run: mean accuracy at epoch e is 0.92 - (8 - e) / 100 -> first >= 0.90 at epoch 6
    assert a["first_epoch_at_target_full_run"] == 6
    assert a["best_config"] == "max_lr=0.006, weight_decay=0.0001, pct_start=0.3, div_factor=25"
    b = board.loc["clr-sgdw"]
    assert math.isnan(b["epochs_to_target"]) and math.isnan(b["speedup"]) and b["to_target"] == "not reached"
    assert math.isnan(b["first_epoch_at_target_full_run"])
    # 4 points below on every seed, but on 200 examples with independent errors that is ~2 standard errors,
    # and Holm over the two arms compared with the baseline leaves it undecided
    assert b["vs_baseline"] == "equal" and b["diff_vs_baseline"] == pytest.approx(-0.04)
    assert b["diff_ci_low"] < 0 < b["diff_ci_high"]
    base = board.loc[BASELINE]
    assert base["to_target"] == "reference" and base["best_config"] == "lr=0.0003"


def _as_old_folder(root: Path) -> Path:
    """resolved_config.json as sched_search 0.1 wrote it: no metric keys (accuracy, maximised) and the target
    under `target_accuracy`."""
    config = json.loads((root / "resolved_config.json").read_text())
    for key in ("metric", "metric_mode", "loss", "chance_accuracy"):
        del config[key]
    config["study"]["target_accuracy"] = config["study"].pop("target")
    (root / "resolved_config.json").write_text(json.dumps(config))
    return root


def test_study_target_overrides_the_baseline(tmp_path: Path) -> None:
    """An old run folder: the target under study.target_accuracy still counts."""
    run = load_run(_as_old_folder(_fabricate(tmp_path / "t", target=0.915)))
    board = run.leaderboard.set_index("arm")
    assert run.target == 0.915 and run.verdict["target_source"] == "the study's target"
    assert board.loc["one_cycle-adamw", "epochs_to_target"] == 4  # 0.915 at budget 0.5
    # the baseline never reaches 0.915: its full budget is the reference, the speed-up a lower bound
    assert board.loc["one_cycle-adamw", "speedup"] == pytest.approx(2.0)
    assert board.loc["one_cycle-adamw", "speedup_lower_bound"]
    assert ">= 2x (a lower bound" in run.summary


@pytest.mark.parametrize("metric", ["mae", "loss"])
def test_a_metric_where_lower_is_better(tmp_path: Path, metric: str) -> None:
    """resolved_config.json says metric "mae" (or the loss), mode "min": lowest first, no percent, no
    accuracy anywhere in the words, every figure written."""
    run = load_run(_fabricate(tmp_path / metric, arms=MAE_ARMS, metric=metric))
    assert (run.metric, run.metric_mode, run.verdict["mode"]) == (metric, "min", "min")
    board = run.leaderboard
    assert board["arm"].tolist() == ["one_cycle-adamw", BASELINE, "clr-sgdw"]
    assert board["mean_val_metric"].is_monotonic_increasing
    assert run.target == pytest.approx(0.11) and run.verdict["winner"] == "one_cycle-adamw"
    a = board.set_index("arm").loc["one_cycle-adamw"]
    # the ladder: 0.10 at 2 epochs is at most the target 0.11; 0.21 at 1 epoch is not
    assert a["epochs_to_target"] == 2 and a["speedup"] == pytest.approx(4.0)
    # full-length run: mean at epoch e is 0.06 + (8 - e) / 100 -> first <= 0.11 at epoch 3
    assert a["first_epoch_at_target_full_run"] == 3
    text = format_leaderboard(run)
    lines = text.splitlines()
    assert f"(target: val {metric} 0.11)" in lines[0]
    assert lines[1].split()[:5] == ["arm", "seeds", "failed", "val", metric]
    assert lines[1].count("val loss") == 1  # metric "loss": its column is the val loss column
    assert "%" not in lines[1].replace("95% CI", "") and "acc" not in lines[1]
    assert "0.06" in lines[2] and "better -0.05 [" in lines[2]
    written = write_report(run.path)
    md = written["report.md"].read_text()
    assert f"Target (val {metric}): 0.11." in md and f"Winner: one_cycle-adamw (val {metric} 0.06)" in md
    assert "accuracy" not in md and "Lower is better." in md
    header = next(line for line in md.splitlines() if line.startswith("| arm |"))
    assert f"| val {metric} |" in header and "%" not in header.replace("95% CI", "")
    for key in ("plot:leaderboard", "plot:budget_ladder", "plot:learning_curves"):
        assert written[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[key].stat().st_size > 5000
    assert json.loads(written["verdict.json"].read_text())["metric"] == metric


def test_no_arm_reaches_the_target(tmp_path: Path) -> None:
    run = load_run(_fabricate(tmp_path / "n", target=0.99))
    arms = run.leaderboard[run.leaderboard["arm"] != BASELINE]
    assert (arms["to_target"] == "not reached").all()
    assert "reaches the target" not in run.summary


def test_format_leaderboard(fab: Path) -> None:
    run = load_run(fab)
    text = format_leaderboard(run)
    lines = text.splitlines()
    assert "(target: val accuracy 90.00%)" in lines[0]
    first = run.leaderboard.iloc[0]
    assert lines[2].split()[0] == first["arm"]
    assert lines[1].split()[:4] == ["arm", "seeds", "failed", "val"]
    assert "not reached" in text and run.summary in text and "Holm" in text


# ----------------------------------------------------------------------------------- partial runs


def test_missing_epochs_table(tmp_path: Path) -> None:
    run = load_run(_fabricate(tmp_path / "m", tables=("trials",)))
    assert any("epochs.parquet" in m for m in run.missing)
    assert run.epochs.empty and len(run.leaderboard) == 3
    assert run.leaderboard["first_epoch_at_target_full_run"].isna().all()
    written = write_report(run.path)
    assert "plot:learning_curves" not in written and written["report.html"].stat().st_size > 0


def test_run_that_has_only_started(tmp_path: Path) -> None:
    root = _fabricate(tmp_path / "s", tables=(), extras=False)
    run = load_run(root)
    for name in ("trials.parquet", "epochs.parquet", "range_test", "final_configs.json", "leaderboard"):
        assert any(name in m for m in run.missing), name
    assert run.leaderboard.empty and math.isnan(run.target)
    assert "no leaderboard yet" in format_leaderboard(run)
    written = write_report(root)
    assert written["report.md"].read_text().count("not written yet") == 2


def test_search_stage_only(tmp_path: Path) -> None:
    """A study stopped after its search trials (the tables hold no final run yet): the verdict's own answer
    is "no finished final runs", but the folder says it is unfinished and no verdict.json is written."""
    cfg = study_config(list(ARMS), 3, [0.125, 0.25, 0.5, 1.0])
    searches, finals = trial_configs(cfg, ARMS)
    recs = records(searches, [], ARMS, flat_rows({}, "max"))
    root = write_run(tmp_path / "q", cfg, recs, N_VAL, 0.1, spaces=False)
    run = load_run(root)
    assert run.leaderboard.empty and set(run.trials["stage"]) == {"search"}
    assert run.unfinished == f"study unfinished: {len(searches)} of {len(searches) + len(finals)} runs"
    assert run.summary.startswith(run.unfinished)
    v = run.verdict
    assert v["winner"] is None and v["arms"] == {} and v["headline"].startswith("No finished final runs")
    written = write_report(root)
    assert "verdict.json" not in written and not (root / "verdict.json").exists()
    assert run.summary in written["report.md"].read_text()
    assert "plot:leaderboard" not in written and "plot:budget_ladder" not in written


def test_only_failed_trials(tmp_path: Path) -> None:
    """Every final run raised (a worker died in its first budget): no arm has a result, each failure and its
    reason is reported."""
    root = _fabricate(tmp_path / "f", extras=False, died=dict.fromkeys(ARMS, 0.125))
    run = load_run(root)
    assert run.leaderboard["n_seeds"].tolist() == [0] * len(ARMS)
    assert (run.leaderboard["n_failed"] == 3).all()
    assert run.summary.startswith("No finished final runs")
    written = write_report(root)
    md = written["report.md"].read_text()
    assert run.summary in md and "worker died" in md  # the failure and its reason are reported
    assert json.loads(written["verdict.json"].read_text())["top_group"] == []


def test_every_run_failed_points_at_what_the_folder_holds(tmp_path: Path, capsys) -> None:
    """rc 4 names errors/ when failed runs left tracebacks there; runs whose loss went NaN raise nothing, and
    the line then names the table that holds their reasons (it named an errors/ that was never written)."""
    from sched_search.cli import main

    root = _fabricate(tmp_path / "f", extras=False, died=dict.fromkeys(ARMS, 0.125))
    assert main(["report", str(root)]) == 4
    assert capsys.readouterr().err.endswith(f"failed; see {root}/errors/\n")
    shutil.rmtree(root / "errors")
    assert main(["report", str(root)]) == 4
    err = capsys.readouterr().err
    assert err.endswith(f"failed; see the reason column of {root}/trials.csv\n"), err
    assert "reason" in pd.read_csv(root / "trials.csv").columns


def test_report_of_a_running_study_says_it_runs_not_resume(tmp_path: Path, capsys) -> None:
    """A live study holds the folder's lock: `--resume` would be refused, so `report` names the holder."""
    from sched_search.cli import main
    from sched_search.study.runlock import run_lock

    root = _fabricate(tmp_path / "f", extras=False)
    trials = pd.read_parquet(root / "trials.parquet")
    trials[trials.trial_id != trials.trial_id.iloc[-1]].to_parquet(root / "trials.parquet")  # one run to go
    with run_lock(root):
        assert main(["report", str(root)]) == 0
        out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(
        f": no verdict written (still running: pid {os.getpid()} holds {root}/study.lock)"
    ), out
    assert main(["report", str(root)]) == 0  # the lock released: resume it
    assert capsys.readouterr().out.splitlines()[0].endswith(f"(python -m sched_search study --resume {root})")


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")


# ----------------------------------------------------------------------------------- figures


def _optuna_db(root: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{root / 'optuna.db'}"
    study = optuna.create_study(
        storage=storage,
        study_name="one_cycle-adamw",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(
        lambda t: (
            -((t.suggest_float("max_lr", 1e-3, 1e-1, log=True) - 0.01) ** 2)
            + 0.001 * t.suggest_float("pct_start", 0.2, 0.5)
        ),
        n_trials=8,
    )
    small = optuna.create_study(storage=storage, study_name="clr-sgdw", direction="maximize")
    small.optimize(lambda t: t.suggest_float("max_lr", 1e-3, 1e-1), n_trials=2)


def test_importances(fab: Path) -> None:
    frame, notes = param_importances(fab)
    assert frame.empty and notes == ["optuna.db: not there (yet)"]
    assert not (fab / "optuna.db").exists()  # reading must not create the database
    _optuna_db(fab)
    frame, notes = param_importances(fab)
    assert set(frame["arm"]) == {"one_cycle-adamw"}
    assert set(frame["param"]) == {"max_lr", "pct_start"}
    assert frame["importance"].sum() == pytest.approx(1.0)
    assert frame.set_index("param").loc["max_lr", "importance"] > 0.5
    assert notes == ["importances for clr-sgdw: 2 complete trials, need >= 4"]


def test_every_plot_is_written(fab: Path) -> None:
    _optuna_db(fab)
    run = load_run(fab)
    files, notes = write_plots(run, fab / "plots")
    assert notes == ["importances for clr-sgdw: 2 complete trials, need >= 4"]
    assert set(files) == {
        "range_test",
        "schedules",
        "leaderboard",
        "budget_ladder",
        "learning_curves",
        "frontier",
        "importances",
    }
    for path in files.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    compare = plots.plot_arm_comparison(
        learning_curves(run.epochs), ["one_cycle-adamw", "clr-sgdw"], fab / "compare.png", run.target
    )
    assert compare.stat().st_size > 5000


def test_plots_draw_empty_tables(tmp_path: Path) -> None:
    empty = pd.DataFrame()
    paths = [
        plots.plot_range_curves(pd.DataFrame(columns=["optimizer"]), tmp_path / "a.png"),
        plots.plot_schedules(pd.DataFrame(columns=["arm", "recorded"]), tmp_path / "b.png"),
        plots.plot_budget_ladder(budget_ladder(empty), tmp_path / "c.png", math.nan),
        plots.plot_learning_curves(learning_curves(empty), tmp_path / "d.png"),
        plots.plot_leaderboard(pd.DataFrame(columns=["arm"]), tmp_path / "e.png", 0.9),
        plots.plot_importances(pd.DataFrame(columns=["arm"]), tmp_path / "f.png"),
        plots.plot_frontier([], tmp_path / "g.png"),
    ]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_schedule_curves_match_the_recorded_lr(fab: Path) -> None:
    run = load_run(fab)
    curves = schedule_curves(run.final_configs, run.epochs, steps_per_epoch=10)
    computed = curves[~curves["recorded"]]
    assert set(computed["arm"]) == {BASELINE, "one_cycle-adamw", "clr-sgdw"}
    clr = computed[computed["arm"] == "clr-sgdw"].set_index("epoch")["lr"]
    # CLR: base 0.05 / 4 at the start, max_lr after one half-cycle (2 epochs), base again after a full cycle
    assert clr.loc[0.0] == pytest.approx(0.0125) and clr.loc[2.0] == pytest.approx(0.05)
    assert clr.loc[4.0] == pytest.approx(0.0125)
    one = computed[computed["arm"] == "one_cycle-adamw"]
    assert one["lr"].max() == pytest.approx(0.006) and one["momentum"].min() == pytest.approx(0.85)
    assert computed[computed["arm"] == "clr-sgdw"]["momentum"].eq(0.9).all()  # not cycled: recorded constant


# --------------------------------------------------------------------------------- the real study, end to end


@pytest.fixture(scope="module")
def smoke_report(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The session's smoke study, copied (the report writes into its folder), and its report."""
    run_dir = tmp_path_factory.mktemp("report") / smoke_run.name
    shutil.copytree(smoke_run, run_dir)
    return run_dir, write_report(run_dir)


@pytest.mark.slow
def test_smoke_report(smoke_report: tuple[Path, dict[str, Path]]) -> None:
    run_dir, written = smoke_report
    for name in ("report.md", "report.html", "leaderboard.csv", "trials.csv", "epochs.csv"):
        assert written[name].exists() and written[name].stat().st_size > 0, name
    for key in (
        "plot:range_test",
        "plot:schedules",
        "plot:leaderboard",
        "plot:budget_ladder",
        "plot:learning_curves",
        "plot:frontier",
    ):
        assert written[key].parent == run_dir / "plots" and written[key].stat().st_size > 5000, key
    page = written["report.html"].read_text()
    assert '<img src="data:image/png;base64,' in page
    assert 'src="plots/' not in page and "http://" not in page and "https://" not in page  # self-contained
    board = pd.read_csv(written["leaderboard.csv"])
    assert set(board["arm"]) == {"clr-sgdw", "one_cycle-adamw", BASELINE}
    assert (board["n_seeds"] == 3).all()
    verdict = json.loads(written["verdict.json"].read_text())
    for arm in board["arm"]:  # the top group is starred in the page
        assert (f">{arm} *</td>" in page) == (arm in verdict["top_group"]), arm
        assert arm in written["report.md"].read_text()
    # 3 seeds, the verdict's minimum: a real decision. Both schedules train digits to about 98% in 4 epochs,
    # constant Adam at 3e-4 to about 72%: far beyond the evaluation noise, on any machine.
    assert verdict["n_seeds"] == 3 and "not estimable" not in verdict["rule"]
    assert verdict["better_than_baseline"] == ["clr-sgdw", "one_cycle-adamw"]
    assert verdict["leader"] in verdict["top_group"] and verdict["leader"] != BASELINE
    assert "Better than constant-adam: clr-sgdw, one_cycle-adamw." in verdict["headline"]
    for arm in ("clr-sgdw", "one_cycle-adamw"):
        sp = verdict["speedup"][arm]
        assert sp["epochs_to_target"] is not None and sp["estimate"] >= 1.0 and sp["ci_low"] <= sp["estimate"]
    assert load_run(run_dir).summary in html.unescape(page)
    # the frontier ends at the verdict's answer, after the range tests and every run
    points = [p for p in verdict["frontier"] if p["kind"] == "study"]
    assert points[-1]["arm"] == verdict["recommended"] and points[-1]["evidence"] == "the verdict"
    assert points[-1]["trainings"] == pytest.approx(verdict["trainings"]["total"])
    assert [p["trainings"] for p in points] == sorted(p["trainings"] for p in points)
    assert "Last half of the compute (" in written["report.md"].read_text()
    # the smoke study has 2 trials per arm: too few for importances, said in the notes
    assert "plot:importances" not in written and "need &gt;= 4" in page


@pytest.mark.slow
def test_made_up_folders_hold_what_a_study_writes(smoke_run: Path, tmp_path: Path) -> None:
    """`runfolder.py` against the smoke study (the same arms): the files it writes, resolved_config.json's
    keys, both tables' columns and their types, each arm's final config keys, so that its folders cannot
    drift from a real one."""
    made = _fabricate(tmp_path / "made")
    real_files = {p.name for p in smoke_run.iterdir()}
    assert {p.name for p in made.iterdir()} <= real_files
    config, real_config = (json.loads((d / "resolved_config.json").read_text()) for d in (made, smoke_run))
    assert config.keys() == real_config.keys() and config["study"].keys() == real_config["study"].keys()
    for name in ("trials", "epochs"):
        table, real = (pd.read_parquet(d / f"{name}.parquet") for d in (made, smoke_run))
        assert table.dtypes.sort_index().to_dict() == real.dtypes.sort_index().to_dict(), name
    finals, real_finals = (json.loads((d / "final_configs.json").read_text()) for d in (made, smoke_run))
    assert {c["arm"]: c.keys() for c in finals} == {c["arm"]: c.keys() for c in real_finals}


@pytest.mark.slow
def test_smoke_notebook_runs(
    smoke_report: tuple[Path, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbclient
    import nbformat

    run_dir, _ = smoke_report
    monkeypatch.setenv("SCHED_SEARCH_RUN", str(run_dir))
    nb = nbformat.read(ROOT / "docs" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6  # five figures and the comparison
    assert str(run_dir) in outputs[0]["text"]


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
def test_smoke_html_in_headless_chromium(smoke_report: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (/usr/bin/chromium): the HTML was not opened in a browser")
    _, written = smoke_report
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path}",
            "--dump-dom",
            written["report.html"].resolve().as_uri(),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<h2>Leaderboard</h2>" in dom and "one_cycle-adamw" in dom and "clr-sgdw" in dom
    assert dom.count("data:image/png;base64,") >= 5


def test_baselines_and_ladder_rungs_are_grey_and_searched_arms_are_not() -> None:
    from matplotlib.colors import to_rgb

    from sched_search.results.plots import _colors

    arms = ["one_cycle-adamw", BASELINE, "default:adamw-cosine", "ladder:cosine-adamw", "clr-sgdw"]
    colors = {a: to_rgb(c) for a, c in _colors(arms).items()}
    for arm in (BASELINE, "default:adamw-cosine", "ladder:cosine-adamw"):
        r, g, b = colors[arm]
        assert r == g == b, arm  # a grey
    for arm in ("one_cycle-adamw", "clr-sgdw"):
        assert len(set(colors[arm])) > 1, arm
    assert colors["default:adamw-cosine"] != colors[BASELINE]  # two baselines told apart
    assert _colors([*arms, "sgdr-sgdw"])[BASELINE] == _colors(arms)[BASELINE]  # stable across figures
