"""The training loop every trial uses: each schedule x optimizer arm trains digits to a sane accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from sched_search.config import ModelSection, TrainSection
from sched_search.lr.arms import build_schedule, optimizer_and_scheduler, range_family
from sched_search.lr.optimizers import build_optimizer
from sched_search.study.space import RangeSeed, build_space
from sched_search.training.data import batches, load_digits
from sched_search.training.models import build_model
from sched_search.training.train import evaluate, recompute_batchnorm, train_epochs

EPOCHS = 8
ARMS = {
    "clr": {"max_lr": None, "base_div": 4.0, "step_size_epochs": 2, "mode": "triangular2", "gamma": 1.0},
    "sgdr": {"max_lr": None, "t_0_epochs": 2, "t_mult": 2.0, "eta_min": 1e-5},
    "one_cycle": {"max_lr": None, "pct_start": 0.45, "div_factor": 10.0},
}
MAX_LR = {"sgdw": 0.05, "adamw": 3e-3}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.parametrize("optimizer", ["sgdw", "adamw"])
@pytest.mark.parametrize("schedule", ["clr", "sgdr", "one_cycle"])
def test_each_arm_trains_digits(digits, schedule: str, optimizer: str) -> None:
    config = {
        **ARMS[schedule],
        "max_lr": MAX_LR[optimizer],
        "schedule": schedule,
        "optimizer": optimizer,
        "weight_decay": 1e-5,
        "epochs": EPOCHS,
        "seed": 0,
    }
    rows = list(
        train_epochs(config, digits, EPOCHS, TrainSection(batch_size=64), ModelSection("mlp", {"hidden": 64}))
    )
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert rows[-1]["status"] == "ok"
    assert rows[-1]["val_metric"] > 0.93, rows[-1]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_baseline_constant_adam_holds_its_lr(digits) -> None:
    config = {"schedule": "constant", "optimizer": "adam", "lr": 3e-4, "epochs": 3, "seed": 0}
    rows = list(train_epochs(config, digits, 3, TrainSection(batch_size=64), ModelSection("mlp")))
    assert all(r["lr"] == 3e-4 for r in rows)
    assert rows[-1]["val_metric"] > rows[0]["val_metric"]


def test_nan_loss_ends_the_run_with_a_reason(digits) -> None:
    config = {"schedule": "constant", "optimizer": "sgdw", "lr": 1e6, "epochs": 5, "seed": 0}
    rows = list(train_epochs(config, digits, 5, TrainSection(batch_size=64), ModelSection("mlp")))
    assert len(rows) == 1 and rows[0]["status"] == "nan"
    assert "training loss is" in rows[0]["reason"]
    assert not math.isfinite(rows[0]["train_loss"])


def test_same_seed_same_curve(digits) -> None:
    config = {
        **ARMS["one_cycle"],
        "max_lr": 0.05,
        "schedule": "one_cycle",
        "optimizer": "sgdw",
        "epochs": 2,
        "seed": 3,
    }
    a = [
        r["val_loss"]
        for r in train_epochs(config, digits, 2, TrainSection(batch_size=64), ModelSection("mlp"))
    ]
    b = [
        r["val_loss"]
        for r in train_epochs(config, digits, 2, TrainSection(batch_size=64), ModelSection("mlp"))
    ]
    assert a == b


def test_budget_compresses_the_whole_schedule() -> None:
    config = {**ARMS["clr"], "max_lr": 0.1, "schedule": "clr", "epochs": 8}
    full, half = build_schedule(config, 8, 10), build_schedule(config, 4, 10)
    assert half.step_size == full.step_size // 2


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        build_optimizer("rmsprop", [], lr=0.1)


def test_augmented_training_runs_and_still_learns() -> None:
    images = load_digits(image=True)
    config = {
        "schedule": "one_cycle",
        "optimizer": "adamw",
        "max_lr": 3e-3,
        "pct_start": 0.3,
        "div_factor": 10.0,
        "weight_decay": 1e-5,
        "epochs": 6,
        "seed": 0,
    }
    plain = list(
        train_epochs(config, images, 6, TrainSection(batch_size=64), ModelSection("mlp", {"hidden": 64}))
    )
    augmented = list(
        train_epochs(
            config,
            images,
            6,
            TrainSection(batch_size=64, augment="crop_flip"),
            ModelSection("mlp", {"hidden": 64}),
        )
    )
    # mirrored digits are a harder task (2 and 5 swap looks): well above chance (10%) is what this checks
    assert augmented[-1]["status"] == "ok" and augmented[-1]["val_metric"] > 0.5, augmented[-1]
    assert augmented[-1]["train_loss"] != plain[-1]["train_loss"]  # the augmentation really ran


# ----------------------------------------------------------------------------------- speed as configuration

ONE_CYCLE = {
    "schedule": "one_cycle",
    "optimizer": "adamw",
    "max_lr": 3e-3,
    "pct_start": 0.3,
    "div_factor": 10.0,
    "weight_decay": 1e-5,
    "epochs": 4,
    "seed": 0,
}


def test_bf16_autocast_trains_and_is_not_fp32(digits) -> None:
    fp32 = list(
        train_epochs(ONE_CYCLE, digits, 4, TrainSection(batch_size=64), ModelSection("mlp", {"hidden": 64}))
    )
    bf16 = list(
        train_epochs(
            ONE_CYCLE,
            digits,
            4,
            TrainSection(batch_size=64, precision="bf16"),
            ModelSection("mlp", {"hidden": 64}),
        )
    )
    assert bf16[-1]["train_loss"] != fp32[-1]["train_loss"]  # autocast really ran in bfloat16
    # 4 epochs of a 64-unit MLP: well above chance (10%), and within a few images of fp32 on 269
    assert bf16[-1]["val_metric"] > 0.8 and abs(bf16[-1]["val_metric"] - fp32[-1]["val_metric"]) < 0.03


def test_fp16_on_a_cpu_is_refused_with_the_fix(digits) -> None:
    with pytest.raises(ValueError, match=r"'fp16' needs a CUDA device.*use 'bf16' or 'fp32'"):
        next(
            train_epochs(
                ONE_CYCLE, digits, 1, TrainSection(batch_size=64, precision="fp16"), ModelSection("mlp")
            )
        )


def test_channels_last_trains_an_image_model_as_well() -> None:
    images = load_digits(image=True)
    plain = list(
        train_epochs(ONE_CYCLE, images, 2, TrainSection(batch_size=64), ModelSection("cnn", {"width": 8}))
    )
    nhwc = list(
        train_epochs(
            ONE_CYCLE,
            images,
            2,
            TrainSection(batch_size=64, channels_last=True),
            ModelSection("cnn", {"width": 8}),
        )
    )
    assert nhwc[-1]["val_metric"] == pytest.approx(plain[-1]["val_metric"], abs=0.02)
    assert nhwc[-1]["train_loss"] == pytest.approx(plain[-1]["train_loss"], rel=1e-3)


@pytest.mark.slow
def test_compiled_model_trains_the_same(digits) -> None:
    plain = list(
        train_epochs(ONE_CYCLE, digits, 1, TrainSection(batch_size=64), ModelSection("mlp", {"hidden": 32}))
    )
    compiled = list(
        train_epochs(
            ONE_CYCLE,
            digits,
            1,
            TrainSection(batch_size=64, compile=True),
            ModelSection("mlp", {"hidden": 32}),
        )
    )
    assert compiled[-1]["train_loss"] == pytest.approx(plain[-1]["train_loss"], rel=1e-4)


# ----------------------------------------------------------------------- warm-up + cosine, WSD, schedule-free

SEEDS = {
    "sgdw": RangeSeed("sgdw", 0.05, 0.0125, 1e-5, (1e-6, 1e-4), 0.15),
    "adamw": RangeSeed("adamw", 3e-3, 7.5e-4, 1e-5, (1e-6, 1e-4), 9e-3),
}


def _first_config(arm: str, epochs: int) -> dict:
    """An arm's first trial as a study runs it: the range test's suggestion from its space."""
    space = build_space(arm, SEEDS[range_family(arm)], epochs, 22)
    return {**space.constants(), **space.first_point(), "epochs": epochs, "seed": 0}


@pytest.mark.parametrize(
    "arm",
    ["cosine-adamw", "cosine-sgdw", "wsd-adamw", "wsd-sgdw", "schedule_free-adamw", "schedule_free-sgd"],
)
def test_each_new_arm_trains_digits_from_its_first_point(digits, arm: str) -> None:
    rows = list(
        train_epochs(
            _first_config(arm, EPOCHS),
            digits,
            EPOCHS,
            TrainSection(batch_size=64),
            ModelSection("mlp", {"hidden": 64}),
        )
    )
    assert [r["status"] for r in rows] == ["ok"] * EPOCHS
    assert rows[-1]["val_metric"] > 0.93, rows[-1]


@pytest.mark.parametrize("arm", ["schedule_free-adamw", "schedule_free-sgd"])
def test_schedule_free_trainer_evaluates_at_the_averaged_weights(digits, arm: str) -> None:
    """The same epoch by hand: evaluated after optimizer.eval() (the average x) it gives the trainer's val
    loss; at the training weights y it does not."""
    config = _first_config(arm, 1)
    model = build_model("mlp", digits.input_shape, digits.num_classes, seed=0, hidden=32)
    optimizer, scheduler = optimizer_and_scheduler(config, model.parameters(), 1, 22)
    optimizer.train()
    for x, y in batches(digits.x_train, digits.y_train, 64, torch.Generator().manual_seed(0)):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    at_y = evaluate(model, digits)
    optimizer.eval()
    at_x = evaluate(model, digits)
    (row,) = train_epochs(config, digits, 1, TrainSection(batch_size=64), ModelSection("mlp", {"hidden": 32}))
    assert row["val_loss"] == pytest.approx(at_x.loss, rel=1e-6)
    assert abs(at_y.loss - at_x.loss) > 1e-3 * at_x.loss  # the two weights really differ


def test_recompute_batchnorm_gives_the_batches_statistics_and_restores_the_module() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4, momentum=0.3)).eval()
    inputs = [torch.randn(16, 3) * (k + 1) for k in range(3)]
    model[1].running_mean.fill_(5.0)  # stale statistics from other weights
    recompute_batchnorm(model, inputs)
    with torch.no_grad():
        hidden = [model[0](x) for x in inputs]
    expected_mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    expected_var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    torch.testing.assert_close(model[1].running_mean, expected_mean)
    torch.testing.assert_close(model[1].running_var, expected_var)
    assert model[1].momentum == 0.3 and not model.training


def test_schedule_free_evaluates_a_batchnorm_model_with_statistics_of_the_average() -> None:
    """By hand: optimizer.eval(), BatchNorm statistics recomputed at x over the trainer's batches, then
    evaluate: the trainer's val loss. Keeping the statistics gathered at y would give another."""
    images = load_digits(image=True)
    config = {**_first_config("schedule_free-adamw", 1), "max_lr": 0.01}
    model = build_model("cnn", images.input_shape, images.num_classes, seed=0, width=8)
    optimizer, _ = optimizer_and_scheduler(config, model.parameters(), 1, 22)
    optimizer.train()
    for x, y in batches(images.x_train, images.y_train, 64, torch.Generator().manual_seed(0)):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    optimizer.eval()
    stale = evaluate(model, images)
    recompute_batchnorm(
        model, [x for x, _ in batches(images.x_train, images.y_train, 64, torch.Generator().manual_seed(0))]
    )
    fresh = evaluate(model, images)
    (row,) = train_epochs(config, images, 1, TrainSection(batch_size=64), ModelSection("cnn", {"width": 8}))
    assert row["val_loss"] == pytest.approx(fresh.loss, rel=1e-5)
    assert abs(stale.loss - fresh.loss) > 1e-3 * fresh.loss
