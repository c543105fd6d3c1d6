"""Tests for sched_search.training.models: shapes, ResNet sizes, seeded construction, user models by import
path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from sched_search.training.models import build_model, cnn, mlp, resnet


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "input_shape", "kwargs"),
    [
        ("mlp", (64,), {}),
        ("mlp", (1, 8, 8), {"hidden": 32, "depth": 3}),
        ("cnn", (1, 8, 8), {}),
        ("cnn", (8, 8), {"width": 8}),
        ("cnn", (3, 32, 32), {"width": 8}),
        ("resnet", (3, 32, 32), {"depth": 8}),
        ("resnet", (1, 8, 8), {"depth": 8, "width": 4}),
    ],
)
def test_output_shapes(name: str, input_shape: tuple[int, ...], kwargs: dict) -> None:
    model = build_model(name, input_shape, 7, **kwargs)
    out = model(torch.randn(5, *input_shape))
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()


def test_mlp_layout() -> None:
    model = mlp((64,), 10, hidden=32, depth=3)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 32), (32, 10)]
    assert _params(cnn((1, 8, 8), 10, width=32)) > 0


@pytest.mark.parametrize(("depth", "expected"), [(20, 0.27e6), (56, 0.85e6)])
def test_resnet_sizes(depth: int, expected: float) -> None:
    # He et al. (2016), Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters.
    n = _params(resnet((3, 32, 32), 10, depth=depth))
    assert abs(n - expected) / expected < 0.10, n


def test_resnet_counts_blocks() -> None:
    model = resnet((3, 32, 32), 10, depth=20)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # 6n + 1 3x3 convs, plus the final linear layer: depth 20
    out = model[:-3](torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 64, 8, 8)  # three stages halve 32 twice and widen 16 -> 64


@pytest.mark.parametrize("depth", [21, 2, 0, 18])
def test_resnet_bad_depth(depth: int) -> None:
    with pytest.raises(ValueError, match=f"6n\\+2.*but got {depth}"):
        resnet((3, 32, 32), 10, depth=depth)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", (3, 32, 32), 10)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_same_seed_same_weights_and_global_rng_untouched(name: str) -> None:
    kwargs = {"depth": 8} if name == "resnet" else {}
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    a = build_model(name, (1, 8, 8), 10, seed=3, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model(name, (1, 8, 8), 10, seed=3, **kwargs)
    c = build_model(name, (1, 8, 8), 10, seed=4, **kwargs)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(pa, pb), ka
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))
    assert torch.equal(torch.get_rng_state(), state)


# --- user models by import path -----------------------------------------------------------------------------


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_model_factories.py").write_text(
        textwrap.dedent(
            """
            import math
            import torch
            from torch import nn

            def linear(input_shape, num_classes, bias=True):
                return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes, bias=bias))

            def not_a_module(input_shape, num_classes):
                return "a string"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_model_factories"


def test_user_model(user_models: str) -> None:
    state = torch.get_rng_state()
    model = build_model(f"{user_models}:linear", (1, 8, 8), 10, seed=5, bias=False)
    assert model(torch.ones(3, 1, 8, 8)).shape == (3, 10)
    assert model[1].bias is None  # kwargs reach the factory
    again = build_model(f"{user_models}:linear", (1, 8, 8), 10, seed=5, bias=False)
    assert torch.equal(model[1].weight, again[1].weight)  # seeded like the reference models
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("{mod}:not_a_module", TypeError, "'{mod}:not_a_module' returned str.*nn.Module"),
        ("{mod}:missing", ImportError, "model import path '{mod}:missing'.*no attribute 'missing'"),
        ("no_such_module_xyz:net", ImportError, "'no_such_module_xyz:net'.*cannot import module"),
        ("{mod}:", ValueError, "must look like 'package.module:factory'"),
    ],
)
def test_user_model_bad_paths(user_models: str, path: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match.format(mod=user_models)):
        build_model(path.format(mod=user_models), (64,), 10)


def test_cnn1d_is_the_mnist1d_papers_network() -> None:
    model = build_model("cnn1d", (40,), 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (1, 25, 5, 2),
        (25, 25, 3, 2),
        (25, 25, 3, 2),
    ]
    assert sum(p.numel() for p in model.parameters()) == 5210
    assert model(torch.randn(3, 40)).shape == (3, 10)
    assert build_model("cnn1d", (1, 40), 10)(torch.randn(3, 1, 40)).shape == (3, 10)
