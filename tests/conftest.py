"""One real Ray per test session, on 127.0.0.1 with 2 CPUs, started only by tests that ask for it."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray binds its node to the machine's address even when told 127.0.0.1; this (its switch for single-machine
# clusters) keeps every Ray the tests start, in-process or by `ray start`, on loopback. Read when ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # small models: one thread is as fast and is steady on a shared box
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()
