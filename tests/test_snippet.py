"""The recommended arm's torch code: it runs as written, trains with exactly the schedule and optimizer the
final re-runs used, and its cycle lengths follow a user's own steps per epoch."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from sched_search.config import BASELINES, RANGE_TEST_BASELINES
from sched_search.lr.arms import baseline_config, build_schedule, optimizer_and_scheduler, range_family
from sched_search.lr.optim import SGDW, AdamW
from sched_search.lr.schedules import lr_at, momentum_at
from sched_search.results.snippet import NO_WINNER, ToyBatch, recommend, torch_code
from sched_search.study.space import RangeSeed, build_space

EPOCHS, SPE = 6, 5
SEED = RangeSeed("sgdw", 0.06, 0.015, 0.0, (1e-6, 1e-4), 0.18)
SEEDS = {"sgdw": SEED, "adamw": RangeSeed("adamw", 0.004, 0.001, 1e-4, (1e-5, 1e-3), 0.012)}
NEW_ARMS = [
    "cosine-adamw",
    "cosine-sgdw",
    "wsd-adamw",
    "wsd-sgdw",
    "schedule_free-adamw",
    "schedule_free-sgd",
]


def _config(arm: str, **values) -> dict:
    """A final re-run config as search.final_runs builds it: the space's first point and its constants."""
    if arm == "constant-adam":
        config = {"arm": arm, "schedule": "constant", "optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0}
    else:
        space = build_space(arm, SEEDS[range_family(arm)], EPOCHS, SPE)
        config = {"arm": arm, "schedule": space.schedule, "optimizer": space.optimizer, **space.fixed}
        config.update(space.first_point())
    return {**config, **values, "epochs": EPOCHS, "batch_size": 8, "seed": 0, "stage": "final"}


def _run(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, "<snippet>", "exec"), namespace)  # noqa: S102 - the code as printed, nothing added
    return namespace


@pytest.mark.parametrize(
    "arm, values",
    [
        ("clr-sgdw", {"mode": "exp_range", "step_size_epochs": 2}),
        ("clr-adamw", {"mode": "triangular2", "step_size_epochs": 1}),
        ("sgdr-adamw", {"t_0_epochs": 1, "t_mult": 2.0}),
        ("one_cycle-sgdw", {}),
        ("constant-adam", {}),
        ("cosine-adamw", {"warmup_pct": 0.1}),
        ("cosine-sgdw", {"warmup_pct": 0.0}),
        ("wsd-adamw", {"decay_pct": 0.3}),
        ("wsd-sgdw", {}),
    ],
)
def test_code_trains_with_the_final_runs_schedule_and_optimizer(
    arm: str, values: dict, capsys: pytest.CaptureFixture
) -> None:
    config = _config(arm, **values)
    ns = _run(torch_code(config, SPE, n_train=40, title=f"{arm} test"))
    steps = EPOCHS * SPE
    assert capsys.readouterr().out.startswith(f"{steps} steps, last loss ")
    assert ns["scheduler"].last_epoch == steps and math.isfinite(ns["loss"].item())
    expected = build_schedule(config, EPOCHS, SPE)
    assert type(ns["schedule"]) is type(expected)
    for step in range(steps + 3):  # values to 6 significant digits, step counts exactly
        assert lr_at(ns["schedule"], step) == pytest.approx(lr_at(expected, step), rel=1e-5), step
        assert momentum_at(ns["schedule"], step) == momentum_at(expected, step)
    group = ns["optimizer"].param_groups[0]
    assert (
        type(ns["optimizer"]) is {"sgdw": SGDW, "adamw": AdamW, "adam": torch.optim.Adam}[config["optimizer"]]
    )
    assert group["weight_decay"] == pytest.approx(config["weight_decay"], rel=1e-5)
    if config["optimizer"] in ("sgdw", "adamw"):
        assert group["decay_mode"] == "schedule"  # as optim.build_optimizer builds it for the trials
    if config["optimizer"] == "sgdw" and momentum_at(expected, 0) is None:
        assert group["momentum"] == 0.9


def test_cycle_lengths_follow_the_users_steps_per_epoch() -> None:
    config = _config("sgdr-sgdw", t_0_epochs=2, t_mult=1.0)
    code = torch_code(config, SPE)
    assert f"steps_per_epoch = {SPE}  # the study's (batch 8)" in code
    ns = _run(code.replace(f"steps_per_epoch = {SPE} ", f"steps_per_epoch = {2 * SPE} "))
    assert ns["schedule"].t_0 == 2 * 2 * SPE and ns["scheduler"].last_epoch == EPOCHS * 2 * SPE


def test_recommend_writes_the_code_of_the_verdicts_recommended_arm_on_its_first_seed() -> None:
    configs = [_config("clr-sgdw", seed=s) for s in (1, 0)] + [_config("constant-adam")]
    verdict = {"winner": None, "top_group": ["constant-adam", "clr-sgdw"], "recommended": "clr-sgdw"}
    rec = recommend({**verdict, "recommended_why": NO_WINNER}, configs, SPE, source="runs/x")
    assert rec.arm == "clr-sgdw" and rec.why == NO_WINNER and rec.config["seed"] == 0
    assert rec.code.startswith("# clr-sgdw as sched_search chose it (run runs/x).")
    assert recommend({**verdict, "recommended": "constant-adam"}, configs, SPE).arm == "constant-adam"
    assert recommend({**verdict, "recommended": None}, configs, SPE) is None  # the verdict picked none
    assert recommend({**verdict, "recommended": "sgdr-sgdw"}, configs, SPE) is None  # no final config of it
    assert recommend(verdict, configs, None) is None  # an older run folder: steps per epoch unknown


@pytest.mark.parametrize("arm", ["schedule_free-adamw", "schedule_free-sgd"])
def test_schedule_free_code_builds_the_trials_optimizer_and_ends_at_the_average(
    arm: str, capsys: pytest.CaptureFixture
) -> None:
    import schedulefree

    config = _config(arm, warmup_pct=0.1, weight_decay=2e-4)
    code = torch_code(config, SPE)
    assert "scheduler" not in code and "optimizer.train()" in code and "optimizer.eval()" in code
    ns = _run(code)
    steps = EPOCHS * SPE
    assert capsys.readouterr().out.startswith(f"{steps} steps, last loss ")
    trials = optimizer_and_scheduler(config, torch.nn.Linear(2, 2).parameters(), EPOCHS, SPE)[0]
    assert type(ns["optimizer"]) is type(trials)
    kinds = {
        "schedule_free-adamw": schedulefree.AdamWScheduleFree,
        "schedule_free-sgd": schedulefree.SGDScheduleFree,
    }
    assert type(trials) is kinds[arm]
    ours, theirs = ns["optimizer"].param_groups[0], trials.param_groups[0]
    for key in ("lr", "weight_decay", "warmup_steps"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    assert ours["warmup_steps"] == 3 and ours["weight_decay"] == pytest.approx(2e-4 / config["max_lr"])
    assert ours["k"] == steps and ours["train_mode"] is False  # ends in eval mode: the averaged weights


def _baseline(name: str) -> dict:
    """A baseline's final run config as search.baseline_runs builds it (the range test's one from the
    one_cycle-adamw space's first point)."""
    first = None
    if name in RANGE_TEST_BASELINES:
        first = {k: v for k, v in _config(RANGE_TEST_BASELINES[name]).items() if k != "arm"}
    return {**baseline_config(name, first_point=first), "epochs": EPOCHS, "batch_size": 8, "seed": 0}


@pytest.mark.parametrize("name", BASELINES)
def test_a_recommended_baselines_code_trains_with_its_runs_optimizer_and_schedule(
    name: str, capsys: pytest.CaptureFixture
) -> None:
    """verdict.decide recommends a baseline that beats every searched arm: its code must run as well."""
    config = _baseline(name)
    verdict = {"recommended": config["arm"], "recommended_why": "it beats every arm", "top_group": []}
    rec = recommend(verdict, [config, {**config, "seed": 1}], SPE)
    assert rec is not None and rec.arm == config["arm"] and rec.config["seed"] == 0
    ns = _run(rec.code)
    steps = EPOCHS * SPE
    assert capsys.readouterr().out.startswith(f"{steps} steps, last loss ")
    trials = optimizer_and_scheduler(config, torch.nn.Linear(2, 2).parameters(), EPOCHS, SPE)
    ours, theirs = ns["optimizer"].param_groups[0], trials[0].param_groups[0]
    keys = {"decouple", "safeguard_warmup", "d_coef", "weight_decay", "warmup_steps", "momentum", "betas"}
    if config["optimizer"] == "adamw" and config["schedule"] != "schedule_free":
        # the trial's is torch's fused AdamW at weight_decay / peak: our AdamW in schedule mode (test_optim)
        assert type(ns["optimizer"]) is AdamW and ours["decay_mode"] == "schedule"
        assert ours["weight_decay"] == pytest.approx(theirs["weight_decay"] * theirs["peak_lr"], rel=1e-5)
        keys.remove("weight_decay")
    else:
        assert type(ns["optimizer"]) is type(trials[0])
    for key in keys & set(theirs):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    if "schedule" in ns:  # the scheduled ones: the same LR at every step
        expected = trials[1].config
        assert type(ns["schedule"]) is type(expected)
        for step in range(steps + 1):
            assert lr_at(ns["schedule"], step) == pytest.approx(lr_at(expected, step), rel=1e-5), step


def test_each_new_arms_code_runs_in_a_fresh_interpreter() -> None:
    """One new interpreter runs each arm's and each baseline's snippet as printed, each in its own namespace
    (one interpreter start, not eleven: about 3 s each on a shared 2-core box)."""
    codes = {arm: torch_code(_config(arm), SPE, title=arm) for arm in NEW_ARMS}
    codes |= {name: torch_code(_baseline(name), SPE, title=name) for name in BASELINES}
    driver = (
        "import io, json, sys, contextlib\n"
        "out = {}\n"
        "for arm, code in json.loads(sys.stdin.read()).items():\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        exec(compile(code, arm, 'exec'), {'__name__': '__main__'})\n"
        "    out[arm] = buf.getvalue()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", driver],
        check=False,
        input=json.dumps(codes),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(printed) == sorted([*NEW_ARMS, *BASELINES])
    for arm, line in printed.items():
        assert line.startswith(f"{EPOCHS * SPE} steps, last loss "), (arm, line)
        assert math.isfinite(float(line.split()[-1])), (arm, line)


@pytest.mark.parametrize(
    "toy",
    [
        ToyBatch((1, 8, 8), 10, "cross_entropy"),  # digits as images: a flattening stand-in
        ToyBatch((10,), 1, "mse"),
        ToyBatch((10,), 1, "friedman:huber"),  # a user's loss, imported as the study imported it
    ],
    ids=["images", "mse", "user-loss"],
)
def test_code_trains_on_a_toy_batch_of_the_studys_shapes_with_its_loss(
    toy: ToyBatch, monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    code = torch_code(_config("one_cycle-sgdw"), SPE, toy=toy)
    ns = _run(code)
    assert capsys.readouterr().out.startswith(f"{EPOCHS * SPE} steps, last loss ")
    x, y = ns["loader"][0]
    assert tuple(x.shape) == (8, *toy.input_shape) and ns["model"](x).shape == (8, toy.num_outputs)
    assert f"# your loss (the study's: {toy.loss})" in code
    if toy.loss == "cross_entropy":
        assert y.dtype == torch.int64 and "cross_entropy" in code and "mse" not in code
    else:  # a regression's float targets, never class labels
        assert y.is_floating_point() and "cross_entropy" not in code
    if toy.loss == "friedman:huber":
        import friedman

        assert ns["study_loss"] is friedman.huber


def test_the_toy_batch_comes_from_the_run_and_defaults_for_an_older_one() -> None:
    resolved = {"input_shape": [40], "num_outputs": 10, "loss": "mse"}
    assert ToyBatch.of(resolved) == ToyBatch((40,), 10, "mse")
    assert ToyBatch.of({}) == ToyBatch()
