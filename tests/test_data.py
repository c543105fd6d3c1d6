"""Tests for sched_search.training.data: splits, standardisation, batching, the CIFAR-10 folder reader, import
paths."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sched_search.training.data import (
    CIFAR10_URL,
    TensorData,
    batches,
    load_cifar10,
    load_data,
    load_digits,
    load_synthetic,
    steps_per_epoch,
)


@pytest.fixture(scope="module")
def digits() -> TensorData:
    return load_digits()


# --- digits -------------------------------------------------------------------------------------------------


def test_digits_split_sizes(digits: TensorData) -> None:
    n_train, n_val, n_test = len(digits.y_train), len(digits.y_val), len(digits.y_test)
    assert n_train + n_val + n_test == 1797
    assert (n_train, n_val, n_test) == (1259, 269, 269)  # 70/15/15 rounded per class
    assert digits.x_train.shape == (1259, 64) and digits.x_train.dtype == torch.float32
    assert digits.y_train.dtype == torch.int64
    assert digits.num_classes == 10 and digits.name == "digits" and digits.input_shape == (64,)


def test_digits_split_is_stratified(digits: TensorData) -> None:
    total = torch.bincount(torch.cat([digits.y_train, digits.y_val, digits.y_test]), minlength=10).double()
    for y, fraction in ((digits.y_train, 0.70), (digits.y_val, 0.15), (digits.y_test, 0.15)):
        counts = torch.bincount(y, minlength=10).double()
        # Per-class rounding: each class within one example of its share.
        assert (counts - fraction * total).abs().max() <= 1.0, counts


def test_digits_splits_are_disjoint_and_seeded() -> None:
    a, b, c = load_digits(split_seed=0), load_digits(split_seed=0), load_digits(split_seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    # No test image appears in train (digits has a few exact duplicates, so compare by raw-row count,
    # loosely).
    train_rows = {tuple(r.tolist()) for r in a.x_train}
    overlap = sum(tuple(r.tolist()) in train_rows for r in a.x_test)
    assert overlap <= 5


def test_digits_standardised(digits: TensorData) -> None:
    mean = digits.x_train.mean(0)
    assert mean.abs().max() < 1e-5
    std = digits.x_train.std(0)
    varying = std > 0
    # Features with std >= 1 before scaling end at std 1; the std floor keeps near-constant pixels small, not
    # huge.
    assert (std[varying] <= 1 + 1e-4).all() and (std > 0.99).sum() > 40
    assert digits.x_train.abs().max() < 50
    # Val/test use the training statistics: their means are near, not exactly, zero.
    assert 0 < digits.x_val.mean(0).abs().max() < 1.0


def test_digits_image_shape() -> None:
    flat, image = load_digits(), load_digits(image=True)
    assert image.x_train.shape == (1259, 1, 8, 8) and image.input_shape == (1, 8, 8)
    assert image.x_test.shape == (269, 1, 8, 8)
    torch.testing.assert_close(image.x_train.reshape(-1, 64), flat.x_train)


def test_to_device_keeps_everything(digits: TensorData) -> None:
    moved = digits.to("cpu")
    assert moved.num_classes == 10 and moved.name == "digits"
    assert torch.equal(moved.x_val, digits.x_val)


# --- synthetic ----------------------------------------------------------------------------------------------


def test_synthetic_sizes() -> None:
    data = load_synthetic(n=400, features=12, num_classes=5, seed=3)
    n = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert n == 400
    assert data.x_train.shape[1] == 12 and data.input_shape == (12,)
    assert set(data.y_train.unique().tolist()) == set(range(5))
    assert abs(len(data.y_train) - 280) <= 5
    assert torch.equal(data.x_train, load_synthetic(n=400, features=12, num_classes=5, seed=3).x_train)


def test_synthetic_too_small() -> None:
    with pytest.raises(ValueError, match=r"n >= 10 \* num_classes = 40, but got n=39"):
        load_synthetic(n=39, num_classes=4)


# --- batching -----------------------------------------------------------------------------------------------


def test_batches_cover_each_index_once() -> None:
    x = torch.arange(100).float().unsqueeze(1)
    y = torch.arange(100)
    gen = torch.Generator().manual_seed(0)
    full = list(batches(x, y, 10, gen))
    assert len(full) == 10 and all(len(b[1]) == 10 for b in full)
    seen = torch.cat([b[1] for b in full])
    assert sorted(seen.tolist()) == list(range(100))
    assert seen.tolist() != list(range(100))  # shuffled
    assert all(torch.equal(bx.squeeze(1).long(), by) for bx, by in full)  # inputs stay with their targets


def test_batches_drop_last_and_keep_last() -> None:
    x, y = torch.arange(25).float(), torch.arange(25)
    dropped = list(batches(x, y, 10, torch.Generator().manual_seed(0)))
    kept = list(batches(x, y, 10, torch.Generator().manual_seed(0), drop_last=False))
    assert [len(b[1]) for b in dropped] == [10, 10]
    assert [len(b[1]) for b in kept] == [10, 10, 5]
    assert sorted(torch.cat([b[1] for b in kept]).tolist()) == list(range(25))
    assert steps_per_epoch(25, 10) == 2 and steps_per_epoch(5, 10) == 1
    # Fewer examples than a batch: one short batch rather than none.
    assert [len(b[1]) for b in batches(x[:5], y[:5], 10, torch.Generator())] == [5]


def test_batches_deterministic_per_generator() -> None:
    x, y = torch.arange(64).float(), torch.arange(64)

    def orders(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return [torch.cat([b[1] for b in batches(x, y, 8, gen)]).tolist() for _ in range(3)]

    first, again, other = orders(0), orders(0), orders(1)
    assert first == again
    assert first != other
    assert first[0] != first[1]  # a new order every epoch from the same generator


# --- CIFAR-10 folder ----------------------------------------------------------------------------------------


def _fake_cifar(root: Path, per_batch: int = 20, n_test: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The real format: pickled dicts with b"data" uint8 (N, 3072) and b"labels" lists."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data, all_labels = [], []
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)
        all_data.append(data)
        all_labels += labels
    return np.concatenate(all_data), np.array(all_labels)


def test_cifar10_reader(tmp_path: Path) -> None:
    raw, labels = _fake_cifar(tmp_path)
    data = load_cifar10(tmp_path, val_size=10)
    assert data.x_train.shape == (90, 3, 32, 32) and data.x_val.shape == (10, 3, 32, 32)
    assert data.x_test.shape == (10, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.num_classes == 10 and data.name == "cifar10"
    # Labels are the files' labels, split without loss: train + val is the 100 training labels.
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(labels[:100].tolist())
    assert data.y_test.tolist() == labels[100:].tolist()
    # Per-channel standardised on train; the channel layout is (3, 32, 32) from the row's R, G, B planes.
    torch.testing.assert_close(data.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    first_test = torch.as_tensor(raw[100], dtype=torch.float32).reshape(3, 32, 32)
    correlation = np.corrcoef(first_test.flatten().numpy(), data.x_test[0].flatten().numpy())[0, 1]
    assert correlation > 0.99
    # The folder itself works as root too, and through load_data.
    same = load_cifar10(tmp_path / "cifar-10-batches-py", val_size=10)
    assert torch.equal(same.x_train, data.x_train)
    assert torch.equal(load_data("cifar10", root=str(tmp_path), val_size=10).y_val, data.y_val)


def test_cifar10_bad_val_size(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    with pytest.raises(ValueError, match=r"val_size must be in \(0, 100\), but got 100"):
        load_cifar10(tmp_path, val_size=100)


def test_cifar10_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert CIFAR10_URL in message and "data_batch_1" in message


def test_cifar10_needs_root() -> None:
    with pytest.raises(ValueError, match="needs a root folder"):
        load_data("cifar10")


# --- load_data by name and import path ----------------------------------------------------------------------


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_data_factories.py").write_text(
        textwrap.dedent(
            """
            import torch
            from sched_search.training.data import TensorData

            def tiny(n=40, features=3):
                g = torch.Generator().manual_seed(0)
                x, y = torch.randn(n, features, generator=g), torch.arange(n) % 2
                return TensorData(x, y, x[:4], y[:4], x[:4], y[:4], num_classes=2, name="tiny")

            def wrong():
                return (torch.zeros(4, 3), torch.zeros(4))

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_data_factories"


def test_load_data_by_name(digits: TensorData) -> None:
    assert torch.equal(load_data("digits").x_train, digits.x_train)
    assert load_data("digits", image=True).input_shape == (1, 8, 8)
    assert load_data("synthetic", n=200, num_classes=2).num_classes == 2


def test_load_data_factory(factories: str) -> None:
    data = load_data(f"{factories}:tiny", n=30, features=5)
    assert isinstance(data, TensorData)
    assert data.x_train.shape == (30, 5) and data.name == "tiny"


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("no_colon_here", ValueError, "unknown data set 'no_colon_here'"),
        (":tiny", ValueError, "'package.module:factory'"),
        ("no_such_module_xyz:tiny", ImportError, "'no_such_module_xyz:tiny'.*cannot import module"),
        ("{mod}:missing", ImportError, "'{mod}:missing'.*has no attribute 'missing'"),
        ("{mod}:wrong", TypeError, "'{mod}:wrong' returned tuple.*TensorData"),
        ("{mod}:NOT_CALLABLE", TypeError, "names a int, not a callable"),
    ],
)
def test_load_data_bad_paths(factories: str, path: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match.format(mod=factories)):
        load_data(path.format(mod=factories))


# ----------------------------------------------------------------------------------- augmentation


def test_crop_flip_takes_a_shifted_window_of_the_padded_image_or_its_mirror() -> None:
    from sched_search.training.data import augment_batch

    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    out = augment_batch(x, "crop_flip", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))  # pad = H/8
    for i in range(len(x)):
        windows = [padded[i, :, r : r + 16, c : c + 16] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows), i


def test_crop_flip_is_seeded_and_varies_over_the_batch() -> None:
    from sched_search.training.data import augment_batch

    x = torch.randn(64, 1, 8, 8)
    a = augment_batch(x, "crop_flip", torch.Generator().manual_seed(3))
    b = augment_batch(x, "crop_flip", torch.Generator().manual_seed(3))
    c = augment_batch(x, "crop_flip", torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = (a != x).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 64  # most images move; a few draw the identity (no shift, no flip)
    assert augment_batch(x, "none", torch.Generator()) is x


def test_crop_flip_refuses_flat_inputs() -> None:
    from sched_search.training.data import augment_batch

    with pytest.raises(ValueError, match=r"needs image batches \(N, C, H, W\)"):
        augment_batch(torch.randn(4, 64), "crop_flip", torch.Generator())


def test_mnist1d_is_generated_offline_with_large_val_and_test_splits() -> None:
    import numpy as np

    state = np.random.get_state()[1].copy()
    data = load_data("mnist1d")
    assert np.array_equal(np.random.get_state()[1], state)  # the generator's global seeding is undone
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (7000, 1500, 1500)
    assert data.input_shape == (40,) and data.num_classes == 10
    assert torch.bincount(data.y_val).tolist() == [150] * 10  # stratified
    again = load_data("mnist1d")
    assert torch.equal(again.x_val, data.x_val)  # deterministic
    other = load_data("mnist1d", seed=7, num_samples=2000)
    assert len(other.x_val) == 300 and not torch.equal(other.x_train[:10], data.x_train[:10])
