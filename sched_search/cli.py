"""Command line: argument parsing and printing only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path

from . import __version__
from .config import RangeTestSection, StudyConfig

DESCRIPTION = """\
Leslie Smith's workflow in one command: an LR range test seeds the search spaces, Ray Tune runs
schedule x optimizer trials (CLR, SGDR, one-cycle with SGDW and AdamW) against a constant-LR Adam
baseline, and the report gives a statistical verdict and the torch code of the config to use."""

EPILOG = """\
examples:
  python -m sched_search study                      # the default study: MNIST-1D, ~4 min on 2 CPUs
  python -m sched_search study studies/smoke.toml   # a tiny study, under a minute
  python -m sched_search report runs/<name>-<date>-<time>
  python -m sched_search range-test --model cnn --steps 400
  python -m sched_search COMMAND --help             # a command's options and examples

docs: docs/quickstart.md (a first run), docs/study_file.md (study files), docs/errors.md (failures)"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every option's help (but "not set" ones: None, False); descriptions and epilogs as
    written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _command(sub: argparse._SubParsersAction, name: str, summary: str, description: str, examples: str):
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=_HelpFormatter,
    )


def _weight_decays(text: str) -> list[float] | None:
    if text == "none":
        return None
    try:
        decays = [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers; write e.g. 0,1e-4,1e-3 (or 'none')"
        ) from None
    if any(w < 0 for w in decays):
        raise argparse.ArgumentTypeError(f"{text!r} has a negative weight decay; use values >= 0")
    return decays


def _add_range_test(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub,
        "range-test",
        "LR range test with a weight-decay sweep on named data, model and optimizer",
        "Leslie Smith's LR range test: the LR rises every step from --start-lr to --end-lr while the\n"
        "loss is recorded, once per weight decay. Prints the suggested min/max LR, the regions of the\n"
        "curve and a sanity verdict; writes range_test.json/.csv/.png. Exit status 1 when the sanity\n"
        "check fails. A bar per sweep on a terminal, a line per sweep otherwise (both on stderr).",
        "  python -m sched_search range-test                     # digits, MLP, SGDW\n"
        "  python -m sched_search range-test --optimizer adamw --model cnn --steps 400 --out out/rt\n"
        "  python -m sched_search range-test --data mnist1d --model cnn1d --weight-decays none",
    )
    p.add_argument(
        "--data",
        metavar="NAME",
        default="digits",
        help="data set: digits | mnist1d | synthetic | cifar10 | package.module:factory",
    )
    p.add_argument(
        "--data-root", metavar="DIR", default=None, help="folder holding cifar-10-batches-py (cifar10 only)"
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        default="mlp",
        help="model: mlp | cnn1d | cnn | resnet | package.module:factory",
    )
    p.add_argument(
        "--optimizer",
        metavar="NAME",
        default="sgdw",
        help="sgdw | adamw (ours, decoupled decay) | sgd | adam (torch's)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        metavar="N",
        help="optimizer steps in each sweep; 0 (default): the study's rule, 15 passes over the data within "
        "300-3000 steps",
    )
    p.add_argument("--start-lr", metavar="LR", type=float, default=1e-7, help="the LR of the first step")
    p.add_argument(
        "--end-lr",
        metavar="LR",
        type=float,
        default=10.0,
        help="the LR of the last step (the sweep is log-spaced)",
    )
    p.add_argument("--batch-size", metavar="N", type=int, default=64, help="examples per optimizer step")
    p.add_argument(
        "--weight-decays",
        metavar="LIST",
        type=_weight_decays,
        default=",".join(f"{wd:g}" for wd in RangeTestSection.weight_decays),
        help="comma-separated weight decays, one sweep each (default: the study's); 'none' for a single "
        "sweep without decay",
    )
    p.add_argument(
        "--seed", metavar="N", type=int, default=0, help="seeds the model's weights and the batch order"
    )
    p.add_argument(
        "--device", metavar="DEVICE", default="cpu", help="torch device: cpu | cuda | cuda:1 | mps"
    )
    p.add_argument(
        "--out", default="out/range_test", metavar="DIR", help="output folder for range_test.json/.csv/.png"
    )


def cmd_range_test(args: argparse.Namespace) -> int:
    from .rangetest.sweep import RangeTestConfig, run_range_test, sweep_steps
    from .training.data import data_steps, load_data
    from .training.models import IMAGE_MODELS

    # the data loaded once here: the sweep's length follows its steps per epoch, as a study's does
    data = load_data(args.data, root=args.data_root, image=args.model in IMAGE_MODELS)
    steps = args.steps or sweep_steps(data_steps(data, args.batch_size))
    config = RangeTestConfig(start_lr=args.start_lr, end_lr=args.end_lr, num_steps=steps, seed=args.seed)
    decays = args.weight_decays
    bars = sys.stderr.isatty()

    def sweep_line(i: int, n: int, weight_decay: float) -> None:
        print(
            f"range test {args.optimizer}: sweep {i} of {n} (weight decay {weight_decay:g})", file=sys.stderr
        )

    start = time.perf_counter()
    result = run_range_test(
        data,
        args.model,
        args.optimizer,
        config,
        decays,
        args.batch_size,
        data_root=args.data_root,
        device=args.device,
        progress=bars,
        on_sweep=None if bars else sweep_line,
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
    p = _command(
        sub,
        "study",
        "range test -> search spaces -> Ray Tune trials -> verdict, report and the torch code to use",
        "Run a study file: a range test per optimizer family seeds each arm's search space; one Ray\n"
        "Tune run searches every schedule x optimizer arm, then re-runs each arm's best config on\n"
        "several seeds beside a constant-LR Adam baseline. Prints a line per finished trial (with\n"
        "counts and time left), the leaderboard, the verdict and the recommended arm as torch code;\n"
        "writes runs/<name>-<date>-<time>/. Exit status: 2 for a bad study file or cluster, 3 when the\n"
        "range test fails its sanity check, 4 when every run of some arm failed, 5 when runs are missing\n"
        "after Ray Tune ended, 6 when the disk filled, 130/143 after Ctrl-C/SIGTERM (the folder is left\n"
        "to --resume; a second Ctrl-C stops at once).",
        "  python -m sched_search study                            # studies/mnist1d.toml\n"
        "  python -m sched_search study studies/smoke.toml         # a tiny study, under a minute\n"
        "  python -m sched_search study --resume runs/mnist1d-20260101-120000   # after Ctrl-C or a crash\n"
        "  python -m sched_search study studies/cifar10_resnet.toml --address auto   # on a Ray cluster",
    )
    p.add_argument(
        "study_file",
        nargs="?",
        default=None,
        help="a study file, studies/<name>.toml (docs/study_file.md); without one, studies/mnist1d.toml",
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", default=None, help="a run folder to finish after an interruption"
    )
    p.add_argument(
        "--address", metavar="ADDRESS", default=None, help="join an existing Ray cluster (host:port or auto)"
    )
    p.add_argument(
        "--allow-failed", action="store_true", help="go on when the range test's sanity check fails"
    )
    p.add_argument(
        "--train-fraction",
        metavar="F",
        type=float,
        default=None,
        help="train on a stratified part F in (0, 1] of the training split ([data] train_fraction)",
    )
    p.add_argument(
        "--budget",
        metavar="N",
        type=_budget,
        default=None,
        help='trainings to race with (range tests included), or "full" for every planned run; default: '
        "the study's [search] budget (docs/workflow.md, Racing)",
    )


def _budget(text: str) -> float | str:
    """`--budget`'s value: a number of trainings > 0 or "full"."""
    if text == "full":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be a number of trainings > 0 or "full", but got {text!r}')
    return value


def _joins_a_cluster(args: argparse.Namespace) -> bool:
    from .study.studyfile import load_study

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
    from .study.driver import DiskFull, StudyAborted, StudyUnfinished, run_study
    from .study.interrupt import Interrupted
    from .study.preflight import ClusterError
    from .study.runlock import RunFolderLocked

    study = _study_with_fraction(args) if args.train_fraction is not None else args.study_file
    # Ignored around the study (run_study installs its own handlers and puts these back): a second Ctrl-C
    # while an interrupted study exits must not end it with a KeyboardInterrupt traceback.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    interrupted = False
    try:
        run_dir = run_study(
            study,
            resume=args.resume,
            address=args.address,
            allow_failed=args.allow_failed,
            echo=lambda line: print(line, flush=True),
            progress=sys.stderr.isatty(),
            budget=args.budget,
        )
    except StudyAborted as e:
        print(f"study stopped before any trial: {e}", file=sys.stderr)
        return 3
    except (ClusterError, RunFolderLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StudyUnfinished as e:
        print(f"error: {e}", file=sys.stderr)
        return 5
    except DiskFull as e:
        print(f"error: {e}", file=sys.stderr)
        return 6
    except Interrupted as e:
        interrupted = True
        print(_interrupted_line(e), file=sys.stderr, flush=True)
        for sig in previous:  # the process ends now, in seconds of teardown; another signal ends it at once
            signal.signal(sig, lambda *_, code=e.exit_code: os._exit(code))
        return e.exit_code
    finally:
        for sig, handler in previous.items() if not interrupted else ():
            signal.signal(sig, handler)
    return _print_report(run_dir)


def _study_with_fraction(args: argparse.Namespace) -> StudyConfig:
    """The study file's config with `--train-fraction`, checked as the study file's key would be."""
    from dataclasses import replace

    from .study.studyfile import load_study, validate

    if args.resume:
        raise ValueError(
            f"--train-fraction starts a new study; --resume {args.resume} runs on the fraction its "
            "study.toml holds: drop one of them."
        )
    cfg = load_study(args.study_file)
    where = replace(cfg, source=f"{cfg.source} (--train-fraction {args.train_fraction})")
    validate(replace(where, data=replace(cfg.data, train_fraction=args.train_fraction)))
    return replace(cfg, data=replace(cfg.data, train_fraction=args.train_fraction))


def _interrupted_line(e: BaseException) -> str:
    run_dir = getattr(e, "run_dir", None)
    if run_dir is None or not (Path(run_dir) / "study.toml").exists():
        return "interrupted before the run folder was written; nothing to resume"
    return f"interrupted; resume with: python -m sched_search study --resume {run_dir}"


def _print_report(run_dir: Path) -> int:
    """Print the leaderboard and the closing block; 4 when every run of some arm failed, else 0."""
    from .results.closing import format_closing
    from .results.report import format_leaderboard, write_report
    from .results.run import load_run
    from .results.tables import failed_arms, failure_lines
    from .study.runlock import LOCK_NAME, live_holder

    run = load_run(run_dir)
    paths = write_report(run_dir, run)
    if run.unfinished:
        holder = live_holder(run_dir)
        then = (
            f"still running: pid {holder.get('pid')} holds {run_dir / LOCK_NAME}"
            if holder
            else f"python -m sched_search study --resume {run_dir}"
        )
        print(f"{run.unfinished}: no verdict written ({then})")
    print(format_leaderboard(run))
    for line in failure_lines(run.trials):
        print(f"failed runs: {line}")
    print(format_closing(run, paths["report.html"]))
    failed = failed_arms(run.trials)
    if failed:
        # errors/ holds the tracebacks of runs that raised; a run whose loss went NaN has only its reason
        see = (
            f"{run_dir}/errors/"
            if (run_dir / "errors").is_dir()
            else f"the reason column of {run_dir}/trials.csv"
        )
        print(f"error: every run of {', '.join(failed)} failed; see {see}", file=sys.stderr)
        return 4
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub,
        "report",
        "rebuild tables, plots, report.md and report.html of a run folder",
        "Read a run folder (finished, still going or interrupted) and (re)write its leaderboard.csv,\n"
        "trials.csv, epochs.csv, verdict.json, plots/, report.md and report.html; print the\n"
        "leaderboard, the verdict and the recommended arm as torch code. A folder that is not a run\n"
        "is refused (exit status 2) and nothing is written into it.",
        "  python -m sched_search report runs/mnist1d-20260101-120000\n"
        '  python -m sched_search report "$(ls -d runs/*/ | tail -1)"    # the latest run',
    )
    p.add_argument("run_dir", help="a run folder that `study` wrote: runs/<name>-<date>-<time>")


def cmd_report(args: argparse.Namespace) -> int:
    from .results.report import check_run_folder

    run_dir = Path(args.run_dir)
    check_run_folder(run_dir)  # before anything is written into it
    return _print_report(run_dir)


def _add_plot_schedules(sub: argparse._SubParsersAction) -> None:
    p = _command(
        sub,
        "plot-schedules",
        "draw every schedule family's LR and momentum curves to one PNG",
        "Draw representative schedules of every family (CLR, SGDR, one-cycle, warm-up + cosine, WSD,\n"
        "schedule-free, constant; LR, and momentum where the schedule drives it) as the study runs them,\n"
        "into one PNG.",
        "  python -m sched_search plot-schedules\n"
        "  python -m sched_search plot-schedules --steps 2000 --steps-per-epoch 100 --out docs/schedules.png",
    )
    p.add_argument("--out", default="out/schedules.png", metavar="PNG", help="the PNG to write")
    p.add_argument("--steps", type=int, default=1000, metavar="N", help="steps in the drawn run")
    p.add_argument(
        "--steps-per-epoch", metavar="N", type=int, default=50, help="steps per epoch, for the epoch axis"
    )


def cmd_plot_schedules(args: argparse.Namespace) -> int:
    from .results.plots import plot_schedule_gallery

    print(f"wrote {plot_schedule_gallery(args.out, args.steps, args.steps_per_epoch)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per stage a user runs on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m sched_search", description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"sched_search {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_study(sub)
    _add_report(sub)
    _add_range_test(sub)
    _add_plot_schedules(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
