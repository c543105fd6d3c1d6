"""Command line: argument parsing and printing only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _add_range_test(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "range-test", help="LR range test with a weight-decay sweep on named data/model/optimizer"
    )
    p.add_argument("--data", default="digits", help="digits | synthetic | cifar10 | package.module:factory")
    p.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py (cifar10 only)")
    p.add_argument("--model", default="mlp", help="mlp | cnn | resnet | package.module:factory")
    p.add_argument("--optimizer", default="sgdw", help="sgdw | adamw | sgd | adam")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps in each sweep")
    p.add_argument("--start-lr", type=float, default=1e-7)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--weight-decays", default="0,1e-5,1e-4,1e-3,1e-2", help="comma-separated; 'none' for no sweep"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="out/range_test", help="output folder")


def cmd_range_test(args: argparse.Namespace) -> int:
    from .rangetest import RangeTestConfig, run_range_test

    config = RangeTestConfig(start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.steps, seed=args.seed)
    decays = None if args.weight_decays == "none" else [float(w) for w in args.weight_decays.split(",")]
    start = time.perf_counter()
    result = run_range_test(
        args.data,
        args.model,
        args.optimizer,
        config,
        decays,
        args.batch_size,
        data_root=args.data_root,
        device=args.device,
        progress=sys.stderr.isatty(),
    )
    elapsed = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.to_json(out / "range_test.json")
    result.to_frame().to_csv(out / "range_test.csv", index=False)
    result.plot(out / "range_test.png")
    best = result.best
    print(format_range_test(result.summary()))
    print(f"{elapsed:.1f} s; wrote {out}/range_test.json, range_test.csv, range_test.png")
    return 0 if best.verdict == "ok" else 1


def format_range_test(summary: dict) -> str:
    """A short table: suggestions, heuristics, regions, weight decay, verdict and reasons."""

    def lr(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    rows = [
        ("verdict", summary["verdict"]),
        ("suggested max_lr", lr(summary["suggested_max_lr"])),
        ("suggested min_lr", lr(summary["suggested_min_lr"])),
        ("steepest descent lr", lr(summary["heuristics"]["steepest"])),
        ("fastai valley lr", lr(summary["heuristics"]["valley"])),
        ("min-loss lr / 10", lr(summary["heuristics"]["min_loss_div10"])),
    ]
    for name, bounds in summary["regions"].items():
        rows.append((f"region {name}", "-" if bounds is None else f"{bounds[0]:.3g} .. {bounds[1]:.3g}"))
    if "weight_decay" in summary:
        wd = summary["weight_decay"]
        rows.append(("weight decay", f"{wd['chosen']:g} (search {wd['range'][0]:g} .. {wd['range'][1]:g})"))
    rows.append(("non-finite steps", str(len(summary["nan_steps"]))))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"reason: {r}" for r in summary["reasons"]] + [f"note: {n}" for n in summary.get("notes", [])]
    return "\n".join(lines)


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="range test -> spaces -> Ray Tune trials -> tables and report")
    p.add_argument(
        "study_file", nargs="?", default=None, help="studies/<name>.toml (default: the MNIST-1D study)"
    )
    p.add_argument("--resume", default=None, help="a run folder to finish after an interruption")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (host:port or auto)")
    p.add_argument(
        "--allow-failed", action="store_true", help="go on when the range test's sanity check fails"
    )


def _joins_a_cluster(args: argparse.Namespace) -> bool:
    from .config import load_study

    if args.address:
        return True
    try:
        path = Path(args.resume) / "study.toml" if args.resume else args.study_file
        return bool(load_study(path).ray_address)
    except (ValueError, OSError):
        return False  # the study itself reports a bad file


def cmd_study(args: argparse.Namespace) -> int:
    if args.study_file is None and args.resume is None and Path("studies/mnist1d.toml").exists():
        args.study_file = "studies/mnist1d.toml"
    if not _joins_a_cluster(args):
        # A local study needs no network: Ray's switch for single-machine clusters keeps it on 127.0.0.1 (it
        # otherwise binds the machine's address even when told 127.0.0.1). Ray reads it when imported, below.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from .preflight import ClusterError
    from .runlock import RunFolderLocked
    from .study import StudyAborted, run_study

    try:
        run_dir = run_study(
            args.study_file,
            resume=args.resume,
            address=args.address,
            allow_failed=args.allow_failed,
            echo=lambda line: print(line, flush=True),
        )
    except StudyAborted as e:
        print(f"study stopped before any trial: {e}", file=sys.stderr)
        return 3
    except (ClusterError, RunFolderLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _print_report(run_dir)


def _print_report(run_dir: Path) -> int:
    """Print the leaderboard; 4 when every run of some arm failed (the study has no result for it), else 0."""
    from .report import format_leaderboard, write_report
    from .results import load_run
    from .tables import failed_arms, failure_lines

    run = load_run(run_dir)
    paths = write_report(run_dir, run)
    print(format_leaderboard(run))
    for line in failure_lines(run.trials):
        print(f"failed runs: {line}")
    print(f"report: {paths['report.html']}")
    print(f"run folder: {run_dir}")
    failed = failed_arms(run.trials)
    if failed:
        print(f"error: every run of {', '.join(failed)} failed; see {run_dir}/errors/", file=sys.stderr)
        return 4
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, plots, report.md and report.html for a run folder")
    p.add_argument("run_dir", help="runs/<id>")


def cmd_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist.")
    return _print_report(run_dir)


def _add_plot_schedules(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-schedules", help="draw the six schedules' LR and momentum curves to one PNG")
    p.add_argument("--out", default="out/schedules.png")
    p.add_argument("--steps", type=int, default=1000, help="steps in the drawn run")
    p.add_argument("--steps-per-epoch", type=int, default=50)


def cmd_plot_schedules(args: argparse.Namespace) -> int:
    from .plots import plot_schedule_gallery

    print(f"wrote {plot_schedule_gallery(args.out, args.steps, args.steps_per_epoch)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sched_search", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_range_test(sub)
    _add_study(sub)
    _add_report(sub)
    _add_plot_schedules(sub)
    args = parser.parse_args(argv)
    try:
        return {
            "range-test": cmd_range_test,
            "study": cmd_study,
            "report": cmd_report,
            "plot-schedules": cmd_plot_schedules,
        }[args.command](args)
    except (ValueError, OSError, ImportError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
