"""Warm-up, stable, decay (Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
Training Durations"): the spec of the `wsd` arms. The schedule itself is `warmup_decay.WSDConfig`."""

from __future__ import annotations

from typing import Any, ClassVar

from .schedules import ScheduleConfig, decayed_to_half
from .spec import Param, RangeSeed, ScheduleSpec, pct_steps, warmup_param
from .warmup_decay import WSDConfig


class WSD(ScheduleSpec):
    """warmup_pct in [0, 0.2] (first 5%); a 1-sqrt cooldown to 0 over decay_pct in [0.1, 0.4] (first 20%)."""

    name = "wsd"
    searched = ("max_lr", "weight_decay", "warmup_pct", "decay_pct")
    constants = ("decay",)
    bounds: ClassVar[dict[str, str]] = {"warmup_pct": "share", "decay_pct": "fraction"}
    step_fields = ("total_steps", "warmup_steps", "decay_steps")
    # The first max_lr at the min-loss LR, not the suggestion (benchmarks/bench_first_point.py, 2026-12-05,
    # the first point's final val metric over 3 seeds): Friedman MAE 0.223 -> 0.208 (AdamW), 0.326 -> 0.218
    # (SGDW); MNIST-1D 93.8 -> 95.5%, 95.4 -> 94.9% (SGDW, within its spread; test 95.7 -> 95.8%); digits CNN
    # 98.9 -> 99.4%, 98.8 -> 99.1%.
    peak_at_min_loss = True

    def params(
        self, seed: RangeSeed, lr_first: float, epochs: int, steps_per_epoch: int
    ) -> tuple[list[Param], dict[str, Any], dict[str, str]]:
        params = [
            warmup_param("first 5%"),
            Param(
                "decay_pct",
                0.1,
                0.4,
                False,
                first=0.2,
                source="Hagele et al. 2024: a cooldown over 20% of the run matched cosine; 10-40%",
            ),
        ]
        why = "Hagele et al. 2024, Sec. 3: the 1-sqrt cooldown beat linear; down to 0"
        return params, {"decay": "1-sqrt"}, {"decay": why}

    def build(self, config: dict[str, Any], total: int, scale: float, steps_per_epoch: int) -> ScheduleConfig:
        decay_steps = max(1, pct_steps(config["decay_pct"], total))
        return WSDConfig(
            max_lr=config["max_lr"],
            total_steps=total,
            decay_steps=decay_steps,
            warmup_steps=min(pct_steps(config["warmup_pct"], total), total - decay_steps),
            decay=config["decay"],
        )

    def judged_at(self, schedule: ScheduleConfig, step: int) -> bool:
        """Once its cooldown has brought the LR down to half its peak (`schedules.decayed_to_half`): through
        the stable phase the ranking flips (Wen et al. 2025, "Understanding Warmup-Stable-Decay Learning
        Rates").

        Rank correlation of a run's val metric with its final one over the first point's max_lr and
        weight-decay grids (benchmarks/bench_rungs.py, 2026-12-05): Friedman, at ASHA's rungs (epochs 2 and 4
        of 8) rho +0.12 and +0.44 (AdamW), -0.12 and +0.69 (SGDW), in the cooldown (epoch 7) +0.80 and +0.96;
        MNIST-1D, at the rung in the stable phase (epoch 12 of 20) +0.39 (AdamW), in the cooldown (epoch 17)
        +0.77; digits CNN, at its rungs (epochs 4 and 12 of 30) -0.25 and -0.03 (AdamW), -0.13 and +0.26
        (SGDW), in the cooldown (epoch 26) +0.51 and +0.61.
        """
        return decayed_to_half(schedule, step, schedule.warmup_steps)

    def gallery(self, total_steps: int, steps_per_epoch: int) -> dict[str, tuple[ScheduleConfig, str]]:
        cfg = WSDConfig(
            max_lr=0.1,
            total_steps=total_steps,
            decay_steps=pct_steps(0.2, total_steps),
            warmup_steps=pct_steps(0.05, total_steps),
        )
        return {"WSD (5% warm-up, 1-sqrt cooldown over 20%)": (cfg, "momentum flat at 0.9")}


SPEC = WSD()
