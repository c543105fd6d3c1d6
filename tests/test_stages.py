"""The study's stages in a run folder: range tests are reused when the folder has them (a resume
never sweeps again), a failed range test stops the study unless allow_failed is set (in the study file or
by the caller), and a folder without study.toml is not resumed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sched_search.cli import main
from sched_search.study.driver import StudyAborted, _prepare, range_tests, run_study
from sched_search.study.studyfile import load_study
from sched_search.training.data import load_data

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, ray_local) -> tuple[object, Path, list[str]]:
    """The smoke study cut to one optimizer family and one short sweep (a Ray task), run once in a fresh
    folder."""
    cfg = load_study(SMOKE)
    cfg = replace(
        cfg,
        search=replace(cfg.search, arms=("one_cycle-sgdw",)),
        range_test=replace(cfg.range_test, weight_decays=(0.0,)),
    )
    run_dir = tmp_path_factory.mktemp("stages")
    lines: list[str] = []
    range_tests(cfg, run_dir, lines.append, load_data("digits"))
    return cfg, run_dir, lines


def test_range_tests_in_the_folder_are_reused_not_run_again(swept, tmp_path: Path) -> None:
    cfg, run_dir, lines = swept
    assert any("sweep 1 of 1" in line for line in lines)  # the first call did sweep
    folder = tmp_path / "resumed"
    folder.mkdir()
    for name in ("range_test_sgdw.json", "range_test_sgdw.csv"):
        (folder / name).write_bytes((run_dir / name).read_bytes())
    record = (folder / "range_test_sgdw.json").stat().st_mtime_ns
    again: list[str] = []
    seeds = range_tests(cfg, folder, again.append, load_data("digits"))
    assert again == []  # no sweep, no line
    assert (folder / "range_test_sgdw.json").stat().st_mtime_ns == record
    assert not (folder / "range_test_sgdw.png").exists()  # nothing of a sweep written
    summary = json.loads((run_dir / "range_test_sgdw.json").read_text())
    assert seeds["sgdw"].max_lr == summary["suggested_max_lr"]


def _failed_copy(run_dir: Path, folder: Path) -> None:
    """The sweep's record as a failed sweep leaves it: its suggestion kept, the verdict and a reason."""
    summary = json.loads((run_dir / "range_test_sgdw.json").read_text())
    summary.update(verdict="failed", reasons=["too noisy: scatter above 1/4 of the drop"])
    folder.mkdir()
    (folder / "range_test_sgdw.json").write_text(json.dumps(summary))


def test_failed_range_test_stops_unless_allow_failed(swept, tmp_path: Path) -> None:
    cfg, run_dir, _ = swept
    _failed_copy(run_dir, tmp_path / "f")
    with pytest.raises(StudyAborted, match="too noisy.*No trial was run.*allow_failed = true"):
        range_tests(cfg, tmp_path / "f", lambda line: None)
    lines: list[str] = []
    allowed = replace(cfg, range_test=replace(cfg.range_test, allow_failed=True))
    seeds = range_tests(allowed, tmp_path / "f", lines.append)
    why = "too noisy: scatter above 1/4 of the drop"
    assert lines == [f"range test sgdw failed ({why}); going on because allow_failed is set"]
    assert (
        seeds["sgdw"].max_lr
        == json.loads((tmp_path / "f" / "range_test_sgdw.json").read_text())["suggested_max_lr"]
    )
    # a failed test without any suggestion stops the study even then
    summary = json.loads((tmp_path / "f" / "range_test_sgdw.json").read_text())
    (tmp_path / "f" / "range_test_sgdw.json").write_text(json.dumps({**summary, "suggested_max_lr": None}))
    with pytest.raises(StudyAborted):
        range_tests(allowed, tmp_path / "f", lambda line: None)


def test_the_callers_allow_failed_reaches_the_range_tests(swept) -> None:
    cfg, _, _ = swept
    assert not cfg.range_test.allow_failed
    prepared, _ = _prepare(None, cfg, True, None, lambda line: None)
    assert prepared.range_test.allow_failed
    assert not _prepare(None, cfg, False, None, lambda line: None)[0].range_test.allow_failed


def test_a_folder_without_study_toml_is_not_resumed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "trials.parquet").write_bytes(b"kept as it is")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is not a run folder: it has no study.toml"):
        run_study(resume=tmp_path)
    assert main(["study", "--resume", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: {tmp_path} is not a run folder: it has no study.toml.\n" and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.parquet"]  # no lock, nothing written
