"""A full disk before or during a study: one `error:` line with where, the stage and whether `--resume`
applies, exit 6, no half-written file, and no run folder from a study that never started.

The disks are real: a small tmpfs mounted for the test (which needs root, as in CI's container; elsewhere
these tests are skipped), filled with a file of zeros, so every writer (ours, pyarrow, SQLite, Ray Tune)
meets the kernel's own ENOSPC.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from test_interrupt import RUNS, TINY, _Study

from sched_search.cli import main


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 MiB tmpfs at tmp_path/disk; `fill(leave)` fills it up to `leave` bytes."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}): needs root")

    def fill(leave: int = 0) -> Path:
        filler = disk / "filler"
        with open(filler, "ab") as f:
            chunk = b"\0" * 2**20
            while shutil.disk_usage(disk).free > leave:
                step = min(len(chunk), shutil.disk_usage(disk).free - leave)
                try:
                    f.write(chunk[:step])
                    f.flush()
                except OSError:
                    break
        return filler

    try:
        yield disk, fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _study_file(tmp_path: Path, disk: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(f'runs_dir = "{disk / "runs"}"\n' + TINY)
    return path


def test_an_already_full_disk_is_one_line_and_exit_6_with_no_run_folder(
    tmp_path: Path, small_disk, capsys: pytest.CaptureFixture
) -> None:
    """Full before the study: the checks' test write meets ENOSPC (an empty file is still made on a full
    disk); with one page left, the checks pass and copying study.toml into the new folder fails: the folder
    is removed. Either way one line, rc 6, nothing to resume."""
    disk, fill = small_disk
    study = _study_file(tmp_path, disk)
    fill()
    assert main(["study", str(study)]) == 6
    out, err = capsys.readouterr()
    assert err == (
        f"error: no space left on device writing {disk} (0 MiB free) during the study's set-up; nothing was "
        "started and no run folder is left: free space and run the study again\n"
    ), err
    assert out == "" and sorted(p.name for p in disk.iterdir()) == ["filler"]

    (disk / "filler").unlink()
    fill(leave=4096)  # the checks' one byte fits; the study.toml copy or the lock does not
    assert main(["study", str(study)]) == 6
    out, err = capsys.readouterr()
    assert err.startswith("error: no space left on device writing ") and err.count("\n") == 1, err
    tail = "during the study's set-up; nothing was started and no run folder is left: free space and run "
    assert err.endswith(tail + "the study again\n"), err
    assert list((disk / "runs").iterdir()) == [], "a run folder was left by a study that never started"


@pytest.mark.slow
def test_a_disk_that_fills_during_the_trials_gives_one_line_and_resume_finishes(
    tmp_path: Path, small_disk, ray_local
) -> None:
    """The disk fills once the first trial has ended (Tune saves its state, the tables are merged, Optuna
    writes): rc 6 with the run folder and `--resume`, no traceback, no `.tmp` file, the lock released; after
    freeing space, --resume finishes the study with every run once."""
    from sched_search.results.run import load_run
    from sched_search.study.driver import run_study

    disk, fill = small_disk
    study = _Study(tmp_path, str(_study_file(tmp_path, disk)))
    run_dir = Path(study.wait_for(r"^run folder ").removeprefix("run folder "))
    study.wait_for(r"^\[1/6 ")
    filler = fill()
    rc = study.finish()
    assert rc == 6, study.text
    assert study.lines[-1] == (
        f"error: no space left on device under {run_dir} (0 MiB free) during the trials (Ray Tune); what "
        f"finished is kept: free space, then resume with: python -m sched_search study --resume {run_dir}"
    ), study.text
    assert "Traceback" not in study.text and "Errno" not in study.text, study.text
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "study.lock").exists()
    assert not (run_dir / "verdict.json").exists()

    filler.unlink()
    lines: list[str] = []
    run_study(resume=run_dir, echo=lines.append)
    run = load_run(run_dir)
    assert not run.unfinished and (run_dir / "verdict.json").exists()
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert trials.trial_id.nunique() == RUNS and (trials.status == "ok").all()
    assert not trials.duplicated(["stage", "trial_id", "budget"]).any()


def test_tunes_state_cut_short_by_a_full_disk_is_not_restored(tmp_path: Path) -> None:
    """Tune's newest state files, cut at a page boundary as a full disk leaves them, are named (and the study
    runs its trials again rather than restore configs without their settings); whole ones are not."""
    import pickle

    from sched_search.study.search import _state_cut_short

    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (tmp_path / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps({"a": "b" * 100}))
    (tmp_path / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(pickle.dumps({"n": 1}))  # as Tune
    assert _state_cut_short(tmp_path) is None
    whole = pickle.dumps({"a": "b" * 100})
    (tmp_path / "searcher-state-2026-01-01_00-00-09.pkl").write_bytes(whole[:40])
    assert _state_cut_short(tmp_path) == "searcher-state-2026-01-01_00-00-09.pkl"
    (tmp_path / "experiment_state-2026-01-01_00-00-09.json").write_text('{"trial_data": [')
    assert _state_cut_short(tmp_path) == "experiment_state-2026-01-01_00-00-09.json"
