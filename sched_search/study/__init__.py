"""The driver side of a study: the study file and its checks, the stages in order (range tests as Ray
tasks -> spaces -> one Tuner -> tables -> verdict -> report), the sampler, routing, the run lock, interrupts;
`trial` is what runs inside a Ray trial.

Nothing below `cli` imports this package, and a Ray worker imports only `trial` and `rangetasks`: the names
here load on first use, so a worker does not pay for the driver's imports (Optuna, the Tuner).
"""

from __future__ import annotations

from ..training import lazy_attributes

_LAZY = {
    "run_study": "driver",
    "DiskFull": "driver",
    "StudyAborted": "driver",
    "StudyUnfinished": "driver",
    "load_study": "studyfile",
    "search_space": "space",
    "cycle_asha": "routing",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DiskFull",
    "StudyAborted",
    "StudyUnfinished",
    "cycle_asha",
    "load_study",
    "run_study",
    "search_space",
]
