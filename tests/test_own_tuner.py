"""docs/own_tuner.md's program, run as written: our range test, space, optimizer, scheduler and cycle-aware
ASHA inside a user's own Ray Tune Tuner (real Ray on 127.0.0.1, real Optuna)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_docs_own_tuner_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "own_tuner.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    script = tmp_path / "own_tuner.py"
    # A local Ray on loopback with 2 CPUs, as every test's; the program itself is unchanged.
    script.write_text(
        "import ray\n"
        "ray.init(address='local', num_cpus=2, include_dashboard=False, _node_ip_address='127.0.0.1')\n"
        + code
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AIR_NEW_OUTPUT": "0"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "range test: ok" in done.stdout
    best = re.search(r"best: (\{.*\}) val_metric ([0-9.]+)", done.stdout)
    assert best and float(best.group(2)) > 0.6, done.stdout[-2000:]  # overlapping clusters; chance is 0.25
    assert "'max_lr'" in best.group(1) and "'pct_start'" in best.group(1)
