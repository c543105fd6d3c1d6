"""The command line as a user meets it: help for every option, --version, one-line errors, `report` refusing a
folder that is not a run, progress lines when not on a terminal, and a closing block whose torch code runs."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import _fabricate

from sched_search import __version__
from sched_search.cli import build_parser, main
from sched_search.results.snippet import NO_WINNER
from sched_search.study.studyfile import load_study

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_help_and_shows_its_default(command: str) -> None:
    parser = _commands()[command]
    text = " ".join(parser.format_help().split())
    assert parser.description and "examples: python -m sched_search " + command in text
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"{command} {action.dest}: no help"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, f"{command} {action.dest}"


def test_top_level_help_and_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "Command line:" not in out  # a description, not the module's docstring
    assert "Leslie Smith's workflow" in out and "python -m sched_search study studies/smoke.toml" in out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"sched_search {__version__}"


def test_bad_option_value_is_one_line_with_the_fix(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["range-test", "--weight-decays", "0,1e-4x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "write e.g. 0,1e-4,1e-3" in err[-1]


@pytest.mark.parametrize("make", ["empty", "other files", "missing"])
def test_report_refuses_a_folder_that_is_not_a_run(
    make: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "not-a-run"
    if make != "missing":
        folder.mkdir()
    if make == "other files":
        (folder / "notes.txt").write_text("mine")
        (folder / "data").mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert main(["report", str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert "runs/<name>-<date>-<time>" in captured.err  # the fix, in the same line
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_report_closing_block_code_runs_in_a_fresh_interpreter(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = _fabricate(tmp_path / "fab")
    resolved = json.loads((run_dir / "resolved_config.json").read_text())
    (run_dir / "resolved_config.json").write_text(
        json.dumps({**resolved, "steps_per_epoch": 4, "n_train": 256})
    )
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    answer = re.search(r"^answer: (.*)$", out, re.MULTILINE)[1]
    assert (
        answer
        == re.match(r"(.*?\.)(\s|$)", json.loads((run_dir / "verdict.json").read_text())["headline"])[1]
    )
    arm, why = re.search(r"^recommended: (\S+) \((.*)\)$", out, re.MULTILINE).groups()
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert arm == "one_cycle-adamw" == (verdict["winner"] or verdict["top_group"][0])
    assert why == ("the winner" if verdict["winner"] else NO_WINNER)
    assert f"report: {(run_dir / 'report.html').resolve()}" in out
    code = re.search(r"^--- .* ---\n(.*?)\n---$", out, re.MULTILINE | re.DOTALL)[1]
    assert "# your model" in code and "# your DataLoader" in code and "steps_per_epoch = 4 " in code
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps, loss = re.fullmatch(r"(\d+) steps, last loss (\S+)\n", done.stdout).groups()
    assert int(steps) == 8 * 4 and math.isfinite(float(loss))
    # the same code in report.md and report.html
    assert code in (run_dir / "report.md").read_text()
    assert "<h2>Use it in your own training loop</h2>" in (run_dir / "report.html").read_text()


def test_range_test_off_a_terminal_prints_a_line_per_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "rt"
    rc = main(["range-test", "--steps", "40", "--weight-decays", "0,1e-4", "--out", str(out)])
    captured = capsys.readouterr()
    record = json.loads((out / "range_test.json").read_text())
    assert rc == (0 if record["verdict"] == "ok" else 1), record["verdict"]
    assert captured.err.splitlines() == [
        "range test sgdw: sweep 1 of 2 (weight decay 0)",
        "range test sgdw: sweep 2 of 2 (weight decay 0.0001)",
    ]
    assert "suggested max_lr" in captured.out


def test_range_test_by_default_sweeps_as_a_study_of_that_data_does(tmp_path: Path) -> None:
    """No --steps and no --weight-decays: the study's rule for the sweep's length (passes over the data at the
    batch size) and the study's weight decays, so the command line reads what a study would."""
    from sched_search.config import RangeTestSection
    from sched_search.rangetest.sweep import sweep_steps
    from sched_search.training.data import data_steps, load_data

    out = tmp_path / "rt"
    main(["range-test", "--batch-size", "128", "--out", str(out)])
    record = json.loads((out / "range_test.json").read_text())
    assert record["config"]["num_steps"] == sweep_steps(data_steps(load_data("digits"), 128))
    per_decay = record["weight_decay"]["per_decay"]
    assert sorted(s["weight_decay"] for s in per_decay) == sorted(RangeTestSection.weight_decays)


@pytest.mark.slow
def test_smoke_report_closing_block(smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / smoke_run.name
    shutil.copytree(smoke_run, run_dir)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    verdict = json.loads((run_dir / "verdict.json").read_text())
    arm, why = (
        (verdict["winner"], "the winner")
        if verdict["winner"]
        else (verdict["top_group"][0], "no clear winner; first of the top group")
    )
    assert re.search(rf"^recommended: {arm} \({why}", out, re.MULTILINE), out
    code = re.search(r"^--- .* ---\n(.*?)\n---$", out, re.MULTILINE | re.DOTALL)[1]
    assert "steps_per_epoch = 19 " in code  # digits: 1,212 examples / batch 64
    exec(compile(code, "<closing block>", "exec"), {})  # noqa: S102 - the printed code, run as a user would
    assert capsys.readouterr().out.startswith(f"{4 * 19} steps, last loss ")
    # where the training time went, each kind of run counted from the study file
    cfg = load_study(run_dir / "study.toml")
    (cost,) = [line for line in out.splitlines() if line.startswith("training time: ")]
    n_arms, n_seeds = len(cfg.search.arms), len(cfg.search.seeds)
    assert f"search trials {n_arms * cfg.search.trials_per_arm} runs, " in cost, cost
    assert f"finals of the searched arms {n_arms * n_seeds} runs, " in cost, cost
    shorter = n_arms * n_seeds * sum(b < 1 for b in cfg.search.budgets)
    assert f"shorter budgets of those finals (epochs to target) {shorter} runs, " in cost, cost
    assert f"baselines {len(cfg.search.baselines) * n_seeds} runs, " in cost, cost
    shares = [int(x) for x in re.findall(r"\((\d+)%\)", cost)]
    assert len(shares) == 4 and abs(sum(shares) - 100) <= 2, cost


def test_every_exit_code_of_the_cli_is_in_docs_errors_md() -> None:
    """docs/errors.md's table lists each code the command line returns, with what to do."""
    source = (ROOT / "sched_search" / "cli.py").read_text()
    returned = {int(code) for code in re.findall(r"return (\d+)\b", source)} | {130, 143}  # 128 + signal
    rows = re.findall(
        r"^\| ([\d, ]+) \| (.+) \| (.+) \|$", (ROOT / "docs" / "errors.md").read_text(), re.MULTILINE
    )
    documented = {int(code) for codes, _, _ in rows for code in codes.split(", ")}
    assert returned - {0} <= documented, sorted(returned - documented)
    assert all(what.strip() for _, _, what in rows)
