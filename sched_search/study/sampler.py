"""The Optuna sampler of each arm's search: which one, its settings, and its own seed.

`[search] sampler` picks one of Optuna's samplers. An arm gets 8 trials in the default study, so Optuna's
default `n_startup_trials=10` would make every trial after the enqueued first point a random draw: the
startup count is fitted to `trials_per_arm` instead. GP is the default: on a toy objective of the study's size
(2 log-scaled parameters, 16 trials, 4 of them startup) its later proposals sat 0.27 decades from the optimum
on average, TPE's 0.83, uniform draws' 1.02 (8 seeds; tests/test_search.py checks the ordering).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import optuna

from ..config import SAMPLER_NAMES

SAMPLERS = SAMPLER_NAMES


def startup_trials(trials_per_arm: int) -> int:
    """Random trials before the model takes over: a quarter of the arm's trials, at least 2, at most 10.

    The enqueued first point (the range test's suggestion) counts as one of them, so with 8 trials per arm the
    model proposes trials 3 to 8.

    Example:
        >>> startup_trials(8), startup_trials(16), startup_trials(100)
        (2, 4, 10)
    """
    return int(min(10, max(2, round(trials_per_arm / 4))))


def arm_seed(search_seed: int, arm: str) -> int:
    """The arm's sampler seed: one stream per arm from `search_seed` and the arm's name.

    With one seed for every arm, arms with the same number of parameters draw the same quantiles in the same
    order, and their searches are copies of one another. Keyed by name (not by position), an arm keeps its
    stream when other arms are added or removed.

    Example:
        >>> arm_seed(0, "clr-sgdw") != arm_seed(0, "clr-adamw")
        True
    """
    entropy = [int(search_seed), zlib.crc32(arm.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def sampler_settings(name: str, trials_per_arm: int, seed: int) -> dict[str, Any]:
    """The keyword arguments of the Optuna sampler `name` for an arm: what `spaces.json` records.

    - tpe: `multivariate=True` models the parameters jointly (max_lr and weight decay interact, Smith 2018);
      `constant_liar=True` counts trials still running as bad ones, so that the `max_concurrent_per_arm`
      parallel asks of one arm do not land on the same point (or stay random) while the first are running.
    - gp: Optuna's Gaussian-process sampler (logEI); with trials still running it asks by q-batch logEI over
      them (Optuna 5), so parallel asks of one arm spread out as well.
    - random, qmc (scrambled Sobol): no model; the blind references.
    """
    if name == "tpe":
        return {
            "n_startup_trials": startup_trials(trials_per_arm),
            "multivariate": True,
            "constant_liar": True,
            "seed": seed,
        }
    if name == "gp":
        return {"n_startup_trials": startup_trials(trials_per_arm), "seed": seed}
    if name == "random":
        return {"seed": seed}
    if name == "qmc":
        return {"qmc_type": "sobol", "scramble": True, "seed": seed}
    raise ValueError(f"unknown sampler {name!r}: expected one of {SAMPLERS}.")


def build_sampler(name: str, trials_per_arm: int, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's own sampler `name` with `sampler_settings`.

    Example:
        >>> build_sampler("tpe", 8, arm_seed(0, "one_cycle-sgdw"))  # doctest: +ELLIPSIS
        <optuna.samplers._tpe.sampler.TPESampler object at ...>
    """
    settings = sampler_settings(name, trials_per_arm, seed)
    cls = {
        "tpe": optuna.samplers.TPESampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
        "qmc": optuna.samplers.QMCSampler,
    }[name]
    if name == "qmc":
        # QMC warns on every trial of a resumed or parallel study that its seed sequence restarts; the
        # points stay valid.
        settings = {**settings, "warn_asynchronous_seeding": False}
    if name in ("gp", "qmc"):
        settings = {**settings, "warn_independent_sampling": False}
    return cls(**settings)


__all__ = ["SAMPLERS", "arm_seed", "build_sampler", "sampler_settings", "startup_trials"]
