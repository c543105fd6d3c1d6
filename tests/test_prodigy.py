"""Prodigy (`lr/prodigy.py`): built as the trials build it, it learns, resumes from its state_dict, and
decays decoupled; the default:prodigy baseline is its README's recipe."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from prodigyopt import Prodigy
from torch import nn

from sched_search.config import ModelSection, TrainSection
from sched_search.lr.arms import baseline_config, optimizer_and_scheduler
from sched_search.lr.optimizers import build_optimizer
from sched_search.lr.prodigy import build_prodigy
from sched_search.training.data import load_digits
from sched_search.training.train import train_epochs


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches: list) -> None:
    for x, y in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_the_baseline_trains_digits_in_the_trainers_loop() -> None:
    """default:prodigy as a study's trial trains it: the project's loop, its schedule, 8 epochs of digits."""
    config = {**baseline_config("default:prodigy"), "epochs": 8, "seed": 0}
    rows = list(
        train_epochs(
            config, load_digits(), 8, TrainSection(batch_size=64), ModelSection("mlp", {"hidden": 64})
        )
    )
    assert [r["status"] for r in rows] == ["ok"] * 8
    assert rows[-1]["val_metric"] > 0.93, rows[-1]  # chance is 10%; the other arms' bar (test_train.py)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] / 10
    assert rows[-1]["lr"] < 1e-2 and max(r["lr"] for r in rows) <= 1.0  # cosine to 0 from a peak of 1


def test_the_baseline_is_the_readmes_recipe() -> None:
    """Prodigy(lr=1, weight_decay=0, decouple, safeguard_warmup, d_coef=1): 5% linear warm-up of the
    multiplier to 1 (CosineConfig's, from 1 / (W + 1)), then cosine to 0 over the rest of the run."""
    config = {**baseline_config("default:prodigy"), "epochs": 20}
    optimizer, scheduler = optimizer_and_scheduler(config, _mlp().parameters(), 20, 70)
    assert type(optimizer) is Prodigy and config["arm"] == "default:prodigy"
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == 0 and group["decouple"] and group["safeguard_warmup"]
    assert group["d_coef"] == 1.0 and group["use_bias_correction"] is False
    lrs = []
    for _ in range(1400):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: Prodigy leaves the weights and its estimate alone
        scheduler.step()
    assert lrs[:70] == pytest.approx([(t + 1) / 71 for t in range(70)])  # 70 = 5% of 20 x 70 steps
    assert lrs[70] == 1.0 and max(lrs) == 1.0
    assert lrs[735] == pytest.approx((1 + math.cos(math.pi * 665 / 1330)) / 2)
    assert lrs[-1] == pytest.approx((1 + math.cos(math.pi * 1329 / 1330)) / 2) and lrs[-1] < 1e-5


def test_state_dict_round_trips_through_bytes() -> None:
    """A checkpoint's optimizer resumes where it was: d, its numerator and the step count live in the
    param group, the moments in the state."""
    model = _mlp()
    opt = build_optimizer("prodigy", model.parameters(), lr=1.0, weight_decay=0.01)
    batches = _batches(30)
    _train(model, opt, batches[:20])
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    saved.seek(0)
    copy_model = copy.deepcopy(model)
    copy_opt = build_optimizer("prodigy", copy_model.parameters(), lr=1.0, weight_decay=0.01)
    copy_opt.load_state_dict(torch.load(saved))
    group, copied = opt.param_groups[0], copy_opt.param_groups[0]
    assert group["d"] > group["d0"] and group["k"] == 20  # it has estimated a step size: not a no-op trip
    for key in ("d", "d_max", "d_numerator", "k", "lr"):
        assert copied[key] == group[key], key
    _train(model, opt, batches[20:])
    _train(copy_model, copy_opt, batches[20:])
    for p, q in zip(model.parameters(), copy_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_weight_decay_is_decoupled_at_prodigys_scale() -> None:
    """From the same state and batch, a step with decay minus one without is d * lr * weight_decay * theta
    exactly: the decay shrinks the weights and never enters the gradient's moments or d (`decouple=True`)."""
    model = _mlp().double()
    batches = [(x.double(), y) for x, y in _batches(21)]
    plain = build_optimizer("prodigy", model.parameters(), lr=1.0, weight_decay=0.0)
    _train(model, plain, batches[:20])  # d grows from d0 once the weights have moved
    decayed_model = copy.deepcopy(model)
    decayed = build_optimizer("prodigy", decayed_model.parameters(), lr=1.0, weight_decay=0.1)
    group = decayed.param_groups[0]
    assert group["decouple"] is True and group["weight_decay"] == 0.1 and group["safeguard_warmup"]
    decayed.load_state_dict(copy.deepcopy(plain.state_dict()))
    decayed.param_groups[0]["weight_decay"] = 0.1  # the plain one's state, its own decay
    d, theta = plain.param_groups[0]["d"], [p.detach().clone() for p in model.parameters()]
    assert d > plain.param_groups[0]["d0"]
    _train(model, plain, batches[20:])
    _train(decayed_model, decayed, batches[20:])
    assert decayed.param_groups[0]["d"] == plain.param_groups[0]["d"]  # the decay left d's estimate alone
    for p, q, t in zip(model.parameters(), decayed_model.parameters(), theta):
        torch.testing.assert_close(p - q, 0.1 * d * 1.0 * t, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.0}, "lr must be > 0, but got 0.0."),
        ({"weight_decay": -1e-4}, "weight_decay must be >= 0, but got -0.0001."),
        ({"d_coef": 0.0}, "d_coef must be > 0, but got 0.0."),
    ],
)
def test_bad_arguments_are_refused_with_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        build_prodigy(_mlp().parameters(), **kwargs)


def test_decay_prints_nothing(capsys: pytest.CaptureFixture) -> None:
    build_prodigy(_mlp().parameters(), weight_decay=0.1)  # prodigyopt prints "Using decoupled weight decay"
    assert capsys.readouterr().out == ""
