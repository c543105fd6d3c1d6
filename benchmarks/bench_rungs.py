"""Where may early stopping judge a schedule? How well each epoch's val metric predicts the final one.

Run on demand, on what `bench_first_point.py` saved (each run's val metric per epoch):
``python benchmarks/bench_rungs.py fp_regression.json [more.json ...] [--keep 0.333]``.

Per arm, over all its runs (the max_lr grid and the weight-decay grid, every seed; runs that failed left out),
at each epoch e: Spearman's rho between the val metric at e and the final val metric, and how many of the
final top third are still in the top `--keep` fraction at e (what ASHA with reduction factor 3 keeps). An
epoch in brackets is one where the arm's first point may be judged (`ScheduleSpec.judged_at`). ASHA compares
trials at its rungs (`grace_period` x `reduction_factor`^k epochs); a low rho there means early stopping cuts
the runs that would have ended best.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd


def runs(arm: dict) -> list[dict]:
    """Every run of an arm's max_lr grid and weight-decay grid, every seed."""
    return [r for kind in ("runs", "wd_runs") for rs in arm.get(kind, {}).values() for r in rs]


def curves(arm: dict) -> pd.DataFrame:
    """One row per finished run, one column per epoch (1..E): the val metric."""
    rows = [r["curve"] for r in runs(arm) if "curve" in r and math.isfinite(r["val"])]
    return pd.DataFrame(rows, columns=range(1, len(rows[0]) + 1)) if rows else pd.DataFrame()


def judged_epochs(arm: dict) -> set[int]:
    """The epochs where the arm's first-point runs may be judged (the first run that recorded them)."""
    return next((set(r["judged"]) for r in runs(arm) if "judged" in r), set())


def predictive(table: pd.DataFrame, mode: str, keep: float) -> tuple[pd.Series, pd.Series]:
    """Per epoch: Spearman's rho with the final val metric, and the share of the final top third still in the
    top `keep` fraction of the runs at that epoch."""
    final = table[table.columns[-1]]
    rho = table.apply(lambda col: col.corr(final, method="spearman"))
    ascending = mode == "min"
    top = set(final.sort_values(ascending=ascending).index[: max(1, len(final) // 3)])
    kept = {}
    for e in table.columns:
        ranked = table[e].sort_values(ascending=ascending, na_position="last").index
        kept[e] = len(top & set(ranked[: max(1, math.ceil(keep * len(ranked)))])) / len(top)
    return rho, pd.Series(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="bench_first_point.py --out files")
    parser.add_argument("--keep", type=float, default=1 / 3, help="the fraction a rung keeps (1 / rf)")
    args = parser.parse_args()
    for path in args.results:
        result = json.loads(Path(path).read_text())
        print(f"\n{result['study']} ({result['date']}): rho(val at e, final val) / final top third kept")
        for name, arm in result["arms"].items():
            table = curves(arm)
            if table.empty:
                continue
            rho, kept = predictive(table, result["metric_mode"], args.keep)
            judged = judged_epochs(arm)
            cells = " ".join(
                (f"[{e}]" if e in judged else f" {e} ") + f"{rho[e]:+.2f}/{kept[e]:.2f}"
                for e in table.columns
            )
            print(f"{name} ({len(table)} runs): {cells}")


if __name__ == "__main__":
    sys.exit(main())
