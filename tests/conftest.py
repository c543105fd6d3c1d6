"""One real Ray per test session, on 127.0.0.1 with 2 CPUs, started only by tests that ask for it; one smoke
study per session, shared by the tests that only read its run folder."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray binds its node to the machine's address even when told 127.0.0.1; this (its switch for single-machine
# clusters) keeps every Ray the tests start, in-process or by `ray start`, on loopback. Read when ray is
# imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault(
    "OMP_NUM_THREADS", "1"
)  # small models: one thread is as fast and is steady on a shared box
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

# mutmut (on demand, docs/workflow.md): its "stats" pass records which tests reach which function and reads
# its config from the working directory, which a test's child process (a study run in tmp_path) lacks. The
# children then run the unmutated code without recording; this process records (mutmut's process-local copy).
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    from mutmut.mutation import trampoline

    trampoline._mutant_under_test = os.environ.pop("MUTANT_UNDER_TEST")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory: pytest.TempPathFactory, ray_local) -> tuple[Path, list[str]]:
    """studies/smoke.toml run once on the session's Ray: its run folder and the lines it echoed (as the CLI
    prints them when not on a terminal); tests must not write into its folder."""
    from sched_search.study.driver import run_study
    from sched_search.study.studyfile import load_study

    study = Path(__file__).resolve().parents[1] / "studies" / "smoke.toml"
    cfg = replace(load_study(study), runs_dir=str(tmp_path_factory.mktemp("runs")))
    lines: list[str] = []
    return run_study(cfg, echo=lines.append), lines


@pytest.fixture(scope="session")
def smoke_run(smoke_study: tuple[Path, list[str]]) -> Path:
    """The session's smoke study's run folder; tests must not write into it."""
    return smoke_study[0]
