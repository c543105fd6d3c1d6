"""The workflow's four claims (docs/claims.md), measured on a workload: the runs and the tables.

    python benchmarks/claims.py                       # every claim: ~40 min on 2 quiet CPUs
    python benchmarks/claims.py --only fraction       # claim 1 only (or: tuned, restarts, decay, bugs)
    python benchmarks/claims.py --table               # re-read the finished runs, print the tables

Claim 1: studies/claims/fraction.toml at each train fraction (`--train-fraction`): one-cycle against the
strongest of the study's baselines, the verdict's speed-up (epochs to the baseline's final accuracy) and the
accuracy gap, both with their 95% intervals (seeds x validation examples); studies/claims/tuned_fraction.toml
at small fractions: one-cycle against warm-up + cosine, searched alike (epochs to the same accuracy).
Claims 2 and 3: studies/claims/restarts_*.toml: SGDR with AdamW against SGDR with SGDW (the verdict restricted
to the two, paired by seed and example); the weight decay one-cycle and warm-up + cosine pick under the same
search, then a weight-decay profile: each arm's tuned config re-trained at a grid of weight decays, 3 seeds.
Claim 4: the range test (one sweep, SGDW) on the clean training split and on three planted bugs.

Your own workload: change the [data] and [model] sections of studies/claims/*.toml (tensor data; a range
test and a study of the same data must be able to run), then run this. Every number goes to
runs/claims/claims.json, the tables to runs/claims/claims.md (and stdout). Studies run one after another
through the command line (`python -m sched_search study`), so each gets a fresh Ray.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sched_search.results.paired import paired_difference
from sched_search.results.verdict import decide
from sched_search.study.search import trial_settings
from sched_search.study.studyfile import load_study
from sched_search.study.trial import train_trial
from sched_search.training import IMAGE_MODELS, TensorData, decode_examples, load_data

STUDIES = ROOT / "studies" / "claims"
OUT = ROOT / "runs" / "claims"
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
RESTART_STUDIES = ("restarts_mnist1d", "restarts_digits")
TUNED_FRACTIONS = (0.1, 0.25)  # tuned_fraction.toml; 1.0 is restarts_mnist1d.toml's pair
DECAY_GRID = (0.0, 1e-4, 1e-3, 1e-2)  # a point per decade of the claims' weight-decay box, and 0
DECAY_SEEDS = (0, 1, 2)


# ------------------------------------------------------------------------------------------------ running


def run_study(study: Path, fraction: float | None, log: Path) -> str:
    """One study through the command line; its run folder (the range test's failure is let through and
    recorded: at a small fraction it is itself a finding)."""
    cmd = [sys.executable, "-m", "sched_search", "study", str(study), "--allow-failed"]
    cmd += ["--train-fraction", str(fraction)] if fraction is not None else []
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, check=False, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    found = re.search(r"^run folder (\S+)", log.read_text(), re.MULTILINE)
    if found is None or rc not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} ended with {rc}; see {log}")
    print(f"{study.stem} fraction {fraction}: {found.group(1)} in {time.perf_counter() - start:.0f} s")
    return found.group(1)


def decay_profile(run_dir: Path, arms: tuple[str, ...]) -> dict[str, Any]:
    """Each arm's tuned final config (seed 0's, the one every seed re-ran) re-trained at every weight decay of
    `DECAY_GRID` on `DECAY_SEEDS`: per-example validation results, to pair the points."""
    cfg = load_study(run_dir / "study.toml")
    data = load_data(
        cfg.data.name,
        root=cfg.data.root,
        image=cfg.model.name in IMAGE_MODELS,
        train_fraction=cfg.data.train_fraction,
        **cfg.data.options,
    )
    finals = json.loads((run_dir / "final_configs.json").read_text())
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for arm in arms:
        tuned = next(c for c in finals if c["arm"] == arm)
        rows = {}
        for wd in DECAY_GRID:
            runs = []
            for seed in DECAY_SEEDS:
                config = {**trial_settings(cfg), **tuned, "seed": seed, "weight_decay": wd}
                last = list(train_trial(config, data, cfg.train.epochs, test=True))[-1]
                runs.append(decode_examples(last["val_examples"]).astype(float).tolist())
            rows[str(wd)] = runs
        tuned_values = {k: tuned[k] for k in ("max_lr", "weight_decay") if k in tuned}
        out[arm] = {"tuned": tuned_values, "examples": rows}
        print(f"decay profile {arm}: done")
    return out


def planted_bugs() -> dict[str, Any]:
    """The range test (SGDW, one sweep at weight decay 0) on MNIST-1D as it is and with three bugs planted."""
    from sched_search.rangetest.sweep import RangeTestConfig, run_range_test, sweep_steps
    from sched_search.training import data_steps

    cfg = load_study(STUDIES / "fraction.toml")
    image = cfg.model.name in IMAGE_MODELS
    clean = load_data(cfg.data.name, root=cfg.data.root, image=image, **cfg.data.options)
    assert isinstance(clean, TensorData)
    g = torch.Generator().manual_seed(0)
    nan_x = clean.x_train.clone()
    nan_x[torch.randperm(len(nan_x), generator=g)[:7]] = float("nan")  # 7 of 7,000 examples: 0.1%
    bugs = {
        "clean": clean,
        "labels shuffled": replace(
            clean, y_train=clean.y_train[torch.randperm(len(clean.y_train), generator=g)]
        ),
        "inputs x 1e6": replace(
            clean, x_train=clean.x_train * 1e6, x_val=clean.x_val * 1e6, x_test=clean.x_test * 1e6
        ),
        "NaN in 7 inputs": replace(clean, x_train=nan_x),
    }
    steps = sweep_steps(data_steps(clean, cfg.train.batch_size))
    out = {}
    for name, data in bugs.items():
        sweep = run_range_test(
            data,
            cfg.model.name,
            "sgdw",
            RangeTestConfig(num_steps=steps),
            None,
            cfg.train.batch_size,
            model_kwargs=dict(cfg.model.options),
        )
        s = sweep.summary()
        out[name] = {k: s[k] for k in ("verdict", "reasons", "suggested_max_lr", "regions")}
        out[name]["nan_steps"] = len(s["nan_steps"])
        out[name]["first_nan_lr"] = s["nan_steps"][0]["lr"] if s["nan_steps"] else None
        sweep.plot(OUT / f"range_test_{re.sub(r'[^a-z0-9]+', '_', name.lower())}.png")
        print(f"range test, {name}: {s['verdict']}")
    return out


# ------------------------------------------------------------------------------------------------ reading


def _ci(d: dict[str, Any], scale: float = 100.0, key: str = "mean") -> str:
    low, high = d.get("ci_low"), d.get("ci_high")
    if low is None or high is None:
        return f"{scale * d[key]:.1f}"
    return f"{scale * d[key]:.1f} [{scale * low:.1f}, {scale * high:.1f}]"


def _speed(sp: dict[str, Any] | None) -> str:
    if not sp:
        return "-"
    if sp.get("estimate") is None:
        return f"not reached (interval {sp['ci_low']:.2f}-{sp['ci_high']:.2f})"
    bound = ">= " if sp.get("lower_bound") else ""
    return f"{bound}{sp['estimate']:.2f}x [{sp['ci_low']:.2f}, {sp['ci_high']:.2f}]"


def _epochs(sp: dict[str, Any] | None, full: float) -> str:
    """Epochs to a target no baseline reaches, with the interval the speed-up's bootstrap implies (the
    reference is then the full budget, so epochs = full / speed-up)."""
    if not sp or sp.get("epochs_to_target") is None:
        return "not reached"
    high = "not reached" if sp["ci_low"] <= 0 else f"{full / sp['ci_low']:g}"
    share = f", reached in {100 * sp['reached_share']:.0f}% of draws" if sp["reached_share"] < 1 else ""
    return f"{sp['epochs_to_target']:g} [{full / sp['ci_high']:g}, {high}]{share}"


def fraction_rows(runs: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for fraction, run_dir in sorted(runs.items(), key=lambda kv: float(kv[0])):
        run = ROOT / run_dir
        v = json.loads((run / "verdict.json").read_text())
        resolved = json.loads((run / "resolved_config.json").read_text())
        arm = "one_cycle-sgdw"
        base = v["strongest_baseline"]
        vs = v["arms"][arm].get("vs_baseline", {})
        rows.append(
            {
                "fraction": float(fraction),
                "n_train": resolved["n_train"],
                "range_test": json.loads((run / "range_test_sgdw.json").read_text())["verdict"],
                "strongest_baseline": base,
                "baseline_acc": _ci(v["arms"][base]),
                "one_cycle_acc": _ci(v["arms"][arm]),
                "gap": _ci(vs, key="diff") if vs else "-",
                "call": vs.get("call", "-"),
                "target": None if v["target"] is None else round(100 * v["target"], 1),
                "epochs_to_target": v["speedup"].get(arm, {}).get("epochs_to_target"),
                "speedup": _speed(v["speedup"].get(arm)),
                "seeds": v["seeds"],
            }
        )
    return rows


def restart_rows(run_dir: str, arms: tuple[str, str]) -> dict[str, Any]:
    """The verdict restricted to two searched arms and constant Adam: their paired gap and speed-ups."""
    run = ROOT / run_dir
    trials = pd.read_parquet(run / "trials.parquet")
    resolved = json.loads((run / "resolved_config.json").read_text())
    kept = trials[trials["arm"].isin([*arms, "constant-adam"])]
    v = decide(kept, chance_accuracy=resolved["chance_accuracy"])
    leader = v["leader"] if v["leader"] in arms else max(arms, key=lambda a: v["arms"][a]["mean"])
    other = arms[1] if leader == arms[0] else arms[0]
    gap = v["arms"][other].get("vs_leader", {})
    # the claims' own question: epochs to the same accuracy, 1 point below the weaker arm's final mean (the
    # baseline's final accuracy is reached by both at the ladder's first rung)
    hard = min(v["arms"][a]["mean"] for a in arms) - 0.01
    h = decide(kept, target=hard, chance_accuracy=resolved["chance_accuracy"])["speedup"]
    full = float(resolved["study"]["train"]["epochs"])
    return {
        "data": resolved["study"]["data"]["name"],
        "hard_target": round(100 * hard, 1),
        "epochs_to_hard_target": {a: _epochs(h.get(a), full) for a in arms},
        "arms": {a: _ci(v["arms"][a]) for a in arms},
        "leader": leader,
        "gap": f"{leader} - {other}: {_ci(gap, key='diff')} (p_holm {gap.get('p_holm', float('nan')):.2g})",
        "told_apart": other not in v["top_group"],
        "target": round(100 * v["target"], 1) if v["target"] is not None else None,
        "epochs_to_target": {a: v["speedup"].get(a, {}).get("epochs_to_target") for a in arms},
        "speedup": {a: _speed(v["speedup"].get(a)) for a in arms},
    }


def searched_decay(run_dir: str, arms: tuple[str, ...]) -> dict[str, Any]:
    """Each arm's weight decay under the same search: the chosen (best) config's, and every search trial's
    (weight decay, final val accuracy, epochs run: ASHA stops the worst early), best first."""
    run = ROOT / run_dir
    finals = json.loads((run / "final_configs.json").read_text())
    trials = pd.read_parquet(run / "trials.parquet")
    out = {}
    for arm in arms:
        tuned = next(c for c in finals if c["arm"] == arm)
        search = trials[(trials["arm"] == arm) & (trials["stage"] == "search")]
        search = search.sort_values(["epochs_run", "final_val_metric"], ascending=False)
        tried = [
            (float(r.weight_decay), round(100 * float(r.final_val_metric), 1), int(r.epochs_run))
            for r in search.itertuples()
        ]
        out[arm] = {"chosen": tuned.get("weight_decay"), "trials": tried}
    return out


def profile_rows(profile: dict[str, Any]) -> dict[str, Any]:
    """Per arm: the mean accuracy (3 seeds) at each weight decay, the best one, and each point's paired gap
    to the best (seeds x examples)."""
    out = {}
    for arm, p in profile.items():
        mats = {float(wd): np.array(runs) for wd, runs in p["examples"].items()}
        means = {wd: float(m.mean()) for wd, m in mats.items()}
        best = max(means, key=lambda wd: (means[wd], -wd))
        gaps = {}
        for wd, m in mats.items():
            if wd != best:
                d = paired_difference(mats[best], m, clip=True)
                gaps[wd] = f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"
        out[arm] = {
            "tuned": p["tuned"],
            "mean": {wd: round(100 * m, 1) for wd, m in means.items()},
            "best": best,
            "best_minus": gaps,
        }
    return out


def tables(results: dict[str, Any]) -> str:
    lines = []
    if "fraction" in results:
        lines += [
            "### Claim 1: one-cycle (SGDW) against the strongest baseline, by training-set size",
            "",
            (
                "| fraction | train examples | range test | strongest baseline | its val acc % | one-cycle "
                "val acc % | gap (pts) | call | target % | one-cycle epochs to target | speed-up |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in fraction_rows(results["fraction"]):
            lines.append(
                f"| {r['fraction']} | {r['n_train']} | {r['range_test']} | {r['strongest_baseline']} | "
                f"{r['baseline_acc']} | {r['one_cycle_acc']} | {r['gap']} | {r['call']} | {r['target']} | "
                f"{r['epochs_to_target']} | {r['speedup']} |"
            )
        lines.append("")
    if "tuned" in results:
        lines += [
            "### Claim 1 at equal search, by training-set size: one-cycle against warm-up + cosine (SGDW)",
            "",
            (
                "| fraction | one-cycle val acc % | warm-up + cosine val acc % | gap (pts) | target |"
                " one-cycle epochs to it | warm-up + cosine epochs to it |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        tuned = {**results["tuned"]}
        if "restarts_mnist1d" in results.get("restarts", {}):
            tuned["1.0"] = results["restarts"]["restarts_mnist1d"]
        for fraction, run_dir in sorted(tuned.items(), key=lambda kv: float(kv[0])):
            r = restart_rows(run_dir, ("one_cycle-sgdw", "cosine-sgdw"))
            e = r["epochs_to_hard_target"]
            lines.append(
                f"| {fraction} | {r['arms']['one_cycle-sgdw']} | {r['arms']['cosine-sgdw']} | {r['gap']} | "
                f"{r['hard_target']}% | {e['one_cycle-sgdw']} | {e['cosine-sgdw']} |"
            )
        lines.append("")
    for study, run_dir in results.get("restarts", {}).items():
        r = restart_rows(run_dir, ("sgdr-adamw", "sgdr-sgdw"))
        lines += [
            f"### Claim 2 on {r['data']} ({study}): SGDR with AdamW against SGDR with SGDW",
            "",
            (
                f"| arm | val acc % [95% CI] | epochs to {r['hard_target']}% [95% CI] | epochs to constant "
                "Adam's final | speed-up over constant Adam |"
            ),
            "|---|---|---|---|---|",
        ]
        for a in ("sgdr-adamw", "sgdr-sgdw"):
            lines.append(
                f"| {a} | {r['arms'][a]} | {r['epochs_to_hard_target'][a]} | {r['epochs_to_target'][a]} | "
                f"{r['speedup'][a]} |"
            )
        lines += ["", f"Paired gap {r['gap']}; told apart: {r['told_apart']}; target {r['target']}%.", ""]
        r = restart_rows(run_dir, ("one_cycle-sgdw", "cosine-sgdw"))
        lines += [
            f"### Claim 1 at equal search on {r['data']} ({study}): one-cycle against warm-up + cosine",
            "",
            (
                f"| arm | val acc % [95% CI] | epochs to {r['hard_target']}% [95% CI] | epochs to constant "
                "Adam's final | speed-up over constant Adam |"
            ),
            "|---|---|---|---|---|",
        ]
        for a in ("one_cycle-sgdw", "cosine-sgdw"):
            lines.append(
                f"| {a} | {r['arms'][a]} | {r['epochs_to_hard_target'][a]} | {r['epochs_to_target'][a]} | "
                f"{r['speedup'][a]} |"
            )
        lines += ["", f"Paired gap {r['gap']}; told apart: {r['told_apart']}; target {r['target']}%.", ""]
        d = searched_decay(run_dir, ("one_cycle-sgdw", "cosine-sgdw"))
        lines += [f"### Claim 3 on {r['data']} ({study}): the weight decay each schedule's search chose", ""]
        for a, x in d.items():
            tried = ", ".join(f"{w:.2g} ({acc}%, {e} ep)" for w, acc, e in x["trials"])
            lines.append(f"- {a}: chose {x['chosen']:.3g}; its search trials, wd (val acc, epochs): {tried}")
        lines.append("")
    for study, profile in results.get("decay", {}).items():
        rows = profile_rows(profile)
        lines += [
            f"### Claim 3 ({study}): weight-decay profile at each arm's tuned config, 3 seeds",
            "",
            "| arm | " + " | ".join(f"wd {wd:g}" for wd in DECAY_GRID) + " | best wd |",
            "|---|" + "---|" * (len(DECAY_GRID) + 1),
        ]
        for a, x in rows.items():
            cells = " | ".join(f"{x['mean'][wd]}" for wd in DECAY_GRID)
            lines.append(f"| {a} | {cells} | {x['best']:g} |")
        lines.append("")
        for a, x in rows.items():
            gaps = "; ".join(f"wd {wd:g}: {g}" for wd, g in x["best_minus"].items())
            lines.append(f"- {a} (tuned {x['tuned']}): best minus each point, pts [95% CI]: {gaps}")
        lines.append("")
    if "bugs" in results:
        lines += [
            "### Claim 4: the range test on planted bugs (MNIST-1D, cnn1d, SGDW, one sweep)",
            "",
            "| data | verdict | suggested max_lr | descent region | non-finite steps (first lr) | reasons |",
            "|---|---|---|---|---|---|",
        ]
        for name, b in results["bugs"].items():
            lr = "-" if b["suggested_max_lr"] is None else f"{b['suggested_max_lr']:.3g}"
            descent = b["regions"].get("descent")
            region = "none" if not descent else f"{descent[0]:.2g} .. {descent[1]:.2g}"
            nans = f"{b['nan_steps']}" + (f" ({b['first_nan_lr']:.2g})" if b["first_nan_lr"] else "")
            reasons = "; ".join(b["reasons"]) or "-"
            lines.append(f"| {name} | {b['verdict']} | {lr} | {region} | {nans} | {reasons} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("fraction", "tuned", "restarts", "decay", "bugs"), action="append")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--table", action="store_true", help="only re-read runs/claims/claims.json")
    args = parser.parse_args()
    # one thread: small models, and torch's default threads spin against each other on a busy machine
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "claims.json"
    results = json.loads(store.read_text()) if store.exists() else {}

    def save(key: str) -> None:  # one stage's key into the file as it is now: stages may run side by side
        now = json.loads(store.read_text()) if store.exists() else {}
        store.write_text(json.dumps({**now, key: results[key]}, indent=1))

    every = ("fraction", "tuned", "restarts", "decay", "bugs")
    todo = set(args.only or every) if not args.table else set()
    if "bugs" in todo:  # the cheapest first
        results["bugs"] = planted_bugs()
        save("bugs")
    if "fraction" in todo:
        for f in args.fractions:
            run = run_study(STUDIES / "fraction.toml", f, OUT / f"fraction_{f}.log")
            results.setdefault("fraction", {})[str(f)] = run
            save("fraction")
    if "restarts" in todo:
        for name in RESTART_STUDIES:
            run = run_study(STUDIES / f"{name}.toml", None, OUT / f"{name}.log")
            results.setdefault("restarts", {})[name] = run
            save("restarts")
    if "tuned" in todo:
        for f in TUNED_FRACTIONS:
            run = run_study(STUDIES / "tuned_fraction.toml", f, OUT / f"tuned_{f}.log")
            results.setdefault("tuned", {})[str(f)] = run
            save("tuned")
    if "decay" in todo:
        for name, run in results.get("restarts", {}).items():
            profile = decay_profile(ROOT / run, ("one_cycle-sgdw", "cosine-sgdw"))
            results.setdefault("decay", {})[name] = profile
            save("decay")
    text = tables(json.loads(store.read_text()) if store.exists() else {})
    (OUT / "claims.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
