"""The range test's figure: loss against LR per weight decay, regions and suggestions, saved as PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers, CI or Ray workers
    import matplotlib.pyplot as plt

    return plt


def plot_range_test(results: Sequence[Any], path: str | Path, highlight: float | None = None) -> Path:
    """Loss against LR (log x) per weight decay (`RangeTestResult`s): raw and smoothed curves, regions shaded,
    suggestions, NaN steps."""
    plt = pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 5))
    main = next((r for r in results if r.weight_decay == highlight), results[0])
    for r in results:
        frame = r.to_frame()
        emphasis = r is main
        label = f"wd={r.weight_decay:g}" + (" (chosen)" if emphasis and len(results) > 1 else "")
        line = ax.plot(frame["lr"], frame["curve"], lw=2.2 if emphasis else 1.0, label=label)[0]
        if emphasis:
            ax.plot(frame["lr"], frame["loss"], color=line.get_color(), alpha=0.25, lw=0.8, label="raw loss")
    reading = main.reading
    shades = (
        ("too_small", "#bbbbbb", "too small"),
        ("descent", "#8fd18f", "descent"),
        ("divergence", "#f4a3a3", "divergence"),
    )
    for key, color, name in shades:
        bounds = getattr(reading.regions, key)
        if bounds is not None:
            ax.axvspan(bounds[0], bounds[1], color=color, alpha=0.25, label=f"{name} region")
    marks = (
        ("suggested_min_lr", "--", "min_lr"),
        ("suggested_max_lr", "-", "max_lr"),
        ("steepest_lr", ":", "steepest"),
    )
    for attr, style, name in marks:
        value = getattr(reading, attr)
        if value is not None:
            ax.axvline(value, color="k", ls=style, lw=1.2, label=f"{name} = {value:.2g}")
    finite = [v for r in results for v in r.curve if math.isfinite(v)]
    top = max(finite) if finite else 1.0
    if main.nan_steps:
        ax.scatter(
            [lr for _, lr, _ in main.nan_steps],
            [top] * len(main.nan_steps),
            marker="x",
            color="red",
            zorder=5,
            label=f"non-finite loss ({len(main.nan_steps)})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(
        f"LR range test: {reading.verdict}" + (f" ({reading.reasons[0][:60]}...)" if reading.reasons else "")
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
