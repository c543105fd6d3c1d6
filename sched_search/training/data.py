"""Data sets: as tensors (MNIST-1D generated offline, digits bundled with scikit-learn, synthetic, a local
CIFAR-10 folder, or a user factory), or as loaders a user factory returns (`LoaderData`).

Data this small lives on the trial's device as whole tensors and is batched by a seeded permutation: no
DataLoader, no workers (airbench does the same on CIFAR-10). Data that does not fit comes as DataLoaders.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import AUGMENTATIONS, DATASETS
from .importpath import load_object

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@dataclass(frozen=True)
class TensorData:
    """Train/val/test splits as tensors; `x_*` float inputs, `y_*` int64 class labels.

    numpy arrays (scikit-learn's splits) become tensors, float64 values float32 (the models' weights are
    float32) and integer labels int64 (what cross-entropy takes); anything else is refused naming the field.

    Example:
        >>> import numpy as np
        >>> x, y = np.zeros((4, 3)), np.array([0, 1, 0, 1], dtype=np.int32)
        >>> d = TensorData(x, y, x, y, x, y, num_classes=2, name="toy")
        >>> d.x_train.dtype, d.y_train.dtype
        (torch.float32, torch.int64)
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        import numpy as np

        for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            value = getattr(self, field)
            if isinstance(value, np.ndarray):
                try:
                    value = torch.from_numpy(np.ascontiguousarray(value))
                except TypeError as e:  # object or string arrays
                    raise TypeError(
                        f"TensorData.{field} is a numpy array of {value.dtype}, which torch cannot hold "
                        f"({e}); give numbers (e.g. x.astype(np.float32))."
                    ) from None
            elif not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"TensorData.{field} is a {type(value).__name__}; expected a torch.Tensor or a numpy "
                    "array (e.g. torch.as_tensor(...))."
                )
            if value.dtype == torch.float64:
                value = value.float()
            elif field.startswith("y_") and value.dtype in (
                torch.int8,
                torch.int16,
                torch.int32,
                torch.uint8,
            ):
                value = value.long()
            object.__setattr__(self, field, value)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def to(self, device: torch.device | str) -> TensorData:
        moved = {
            k: getattr(self, k).to(device)
            for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        }
        return TensorData(**moved, num_classes=self.num_classes, name=self.name)


@dataclass(frozen=True)
class LoaderData:
    """Data you bring as loaders: zero-argument callables, each returning an iterable of batches (a
    DataLoader).

    A study's data factory may return this instead of `TensorData`. Each Ray worker calls the factory itself,
    so the data never passes through Ray's object store: a data set on a shared disk works as it is. Batches
    are `(inputs, targets)`, `(x1, x2, ..., targets)` (several inputs, passed positionally) or a dict with a
    "target"/"targets"/"label"/"labels"/"y" key (the rest passed as keywords). The trainer seeds torch's
    global RNG with the trial's seed before it first iterates, so a `shuffle=True` DataLoader gives each
    seed its own order, the same in every arm.

    Example:
        >>> LoaderData(train=lambda: DataLoader(train_set, 64, shuffle=True),  # doctest: +SKIP
        ...            val=lambda: DataLoader(val_set, 256), num_outputs=1)
    """

    train: Callable[[], Iterable]
    val: Callable[[], Iterable]
    test: Callable[[], Iterable] | None = None
    num_outputs: int | None = None  # the model's output width (classes, or 1 for one regression target)
    input_shape: tuple[int, ...] | None = None  # for the model factory; None: the first batch's input shape
    steps_per_epoch: int | None = None  # batches per epoch; None: len(train())
    name: str = "loaders"


def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """(inputs, targets) of a batch: (x, y) tuples, (x1, x2, ..., y) tuples, or dicts with a target key."""
    if isinstance(batch, dict):
        for key in ("target", "targets", "label", "labels", "y"):
            if key in batch:
                return {k: v for k, v in batch.items() if k != key}, batch[key]
        raise ValueError(
            f"dict batch has no target key (one of target/label/y): keys {sorted(batch)}; pass batch_fn."
        )
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return (batch[0] if len(batch) == 2 else tuple(batch[:-1])), batch[-1]
    raise ValueError(
        f"cannot split a batch of type {type(batch).__name__} into inputs and targets; pass batch_fn."
    )


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Tensors in `obj` (a tensor, tuple, list or dict of them) on `device`; anything else unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def loader_steps(data: LoaderData) -> int:
    """Batches per epoch of loader data: its `steps_per_epoch`, else the training loader's len()."""
    if data.steps_per_epoch is not None:
        return int(data.steps_per_epoch)
    loader = data.train()
    try:
        return len(loader)
    except TypeError:
        raise TypeError(
            f"the training loader ({type(loader).__name__}) has no len(): "
            "set LoaderData(steps_per_epoch=...)."
        ) from None


def data_steps(data: TensorData | LoaderData, batch_size: int) -> int:
    """Optimizer steps per epoch of either kind of data."""
    if isinstance(data, LoaderData):
        return loader_steps(data)
    return steps_per_epoch(len(data.x_train), batch_size)


def endless_batches(data: LoaderData, device: torch.device | str) -> Iterator[tuple[Any, torch.Tensor]]:
    """Training batches on `device`, cycling the training loader (a new pass when one ends)."""
    while True:
        empty = True
        for batch in data.train():
            empty = False
            yield to_device(split_batch(batch), device)
        if empty:
            raise ValueError(f"the training loader of {data.name!r} yielded no batches.")


def eval_batches(
    data: TensorData | LoaderData, split: str, device: torch.device | str, batch_size: int = 1024
) -> Iterator[tuple[Any, torch.Tensor]]:
    """The `split` ("val" | "test") as (inputs, targets) batches on `device`."""
    if isinstance(data, LoaderData):
        for batch in getattr(data, split)():
            yield to_device(split_batch(batch), device)
        return
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def model_shape(data: TensorData | LoaderData) -> tuple[tuple[int, ...] | None, int | None]:
    """(input_shape, num_outputs) a model factory is built with; a loader's input shape, when not given, is
    its first training batch's (None for several inputs)."""
    if isinstance(data, TensorData) or data.input_shape is not None:
        return tuple(data.input_shape), data.num_outputs
    batch = first_batch(data.train())
    inputs = split_batch(batch)[0] if batch is not None else None
    return (tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else None), data.num_outputs


def first_batch(loader: Iterable) -> Any:
    """The first batch of a loader, or None when it yields nothing."""
    return next(itertools.islice(iter(loader), 1), None)


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (inputs, targets) minibatches in the order of a seeded permutation."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator).to(x.device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment an image batch (N, C, H, W) on its own device: "crop_flip" is the standard CIFAR recipe (a
    random crop after zero-padding by H/8, 4 pixels on CIFAR, and a horizontal flip with probability 1/2);
    "none" is x.

    torchvision's transforms work per image; this does the whole batch in a few tensor ops, so GPU trials stay
    fast.
    """
    if kind == "none":
        return x
    if kind != "crop_flip":
        raise ValueError(f"unknown augmentation {kind!r}: expected one of {AUGMENTATIONS}.")
    if x.dim() != 4:
        raise ValueError(
            f"augmentation 'crop_flip' needs image batches (N, C, H, W), but got shape {tuple(x.shape)}."
        )
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (shifts[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (shifts[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    cols = torch.where(flips[:, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch with `drop_last=True` (at least one)."""
    return max(1, n_train // batch_size)


def _stratified_split(
    x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, float], seed: int
) -> tuple[torch.Tensor, ...]:
    """Split into train/val/test keeping class proportions; `fractions` are (val, test)."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val, n_test = round(len(idx) * fractions[0]), round(len(idx) * fractions[1])
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    out = []
    for p in parts:
        sel = torch.cat(p)
        sel = sel[torch.randperm(len(sel), generator=g)]
        out += [x[sel], y[sel]]
    return tuple(out)


def _standardise(x_train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Scale by the training split's per-feature mean/std (std floor 1: digits has constant-zero pixels)."""
    dims = (0,) if x_train.dim() == 2 else (0, 2, 3)
    mean = x_train.mean(dims, keepdim=True)
    std = x_train.std(dims, keepdim=True).clamp_min(1e-3 if x_train.dim() > 2 else 1.0)
    return tuple((t - mean) / std for t in (x_train, *others))


def load_digits(split_seed: int = 0, image: bool = False) -> TensorData:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes): 70/15/15 stratified split, standardised.

    `image=True` shapes inputs as (N, 1, 8, 8) for the CNN; otherwise (N, 64).
    """
    from sklearn.datasets import load_digits as _sk_digits

    raw = _sk_digits()
    x = torch.tensor(raw.data, dtype=torch.float32)
    y = torch.tensor(raw.target, dtype=torch.int64)
    xt, yt, xv, yv, xs, ys = _stratified_split(x, y, (0.15, 0.15), split_seed)
    xt, xv, xs = _standardise(xt, xv, xs)
    if image:
        xt, xv, xs = (t.reshape(-1, 1, 8, 8) for t in (xt, xv, xs))
    return TensorData(xt, yt, xv, yv, xs, ys, num_classes=10, name="digits")


def load_mnist1d(num_samples: int = 10_000, seed: int = 42, split_seed: int = 0) -> TensorData:
    """MNIST-1D (Greydanus 2020, "Scaling down deep learning"): 10 classes of 40-point 1-D signals, generated
    offline and deterministically by the `mnist1d` package; 70/15/15 stratified split (1,500 val and test
    examples at the default 10,000 samples), so one validation example is worth 0.067 accuracy points.

    `seed` is the generator's (the paper's data uses 42); `split_seed` the split's. The package's
    `get_dataset` would download a pickle: it is never called. Inputs are (N, 40), already centred and scaled
    by the generator.
    """
    import numpy as np

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise ImportError(f"data 'mnist1d' needs the mnist1d package (pip install mnist1d): {err}") from None
    if num_samples < 200:
        raise ValueError(f"mnist1d needs num_samples >= 200 (20 per class), but got {num_samples}.")
    args = get_dataset_args()
    args.num_samples, args.seed = int(num_samples), int(seed)
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG; leave the caller's as it was
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(state)
    x = torch.tensor(np.concatenate([raw["x"], raw["x_test"]]), dtype=torch.float32)
    y = torch.tensor(np.concatenate([raw["y"], raw["y_test"]]), dtype=torch.int64)
    xt, yt, xv, yv, xs, ys = _stratified_split(x, y, (0.15, 0.15), split_seed)
    return TensorData(xt, yt, xv, yv, xs, ys, num_classes=10, name="mnist1d")


def load_synthetic(
    n: int = 2000, features: int = 32, num_classes: int = 4, seed: int = 0, noise: float = 0.5
) -> TensorData:
    """A generated classification task of any size: Gaussian clusters around random class centres."""
    if n < 10 * num_classes:
        raise ValueError(f"synthetic data needs n >= 10 * num_classes = {10 * num_classes}, but got n={n}.")
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, features, generator=g)
    y = torch.randint(num_classes, (n,), generator=g)
    x = centres[y] + noise * torch.randn(n, features, generator=g)
    xt, yt, xv, yv, xs, ys = _stratified_split(x, y, (0.15, 0.15), seed)
    xt, xv, xs = _standardise(xt, xv, xs)
    return TensorData(xt, yt, xv, yv, xs, ys, num_classes=num_classes, name="synthetic")


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    data = d[b"data"] if b"data" in d else d["data"]
    labels = d[b"labels"] if b"labels" in d else d["labels"]
    x = torch.as_tensor(data, dtype=torch.uint8).reshape(-1, 3, 32, 32)
    return x, torch.as_tensor(labels, dtype=torch.int64)


def load_cifar10(root: str | Path, val_size: int = 5000, split_seed: int = 0) -> TensorData:
    """CIFAR-10 from a local `cifar-10-batches-py` folder (data_batch_1..5, test_batch); per-channel
    standardised.

    `root` may be the `cifar-10-batches-py` folder itself or its parent. The last `val_size` training images
    (after a seeded shuffle) form the validation split.
    """
    root = Path(root).expanduser()
    folder = root if root.name == "cifar-10-batches-py" else root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. Download {CIFAR10_URL}, unpack it so "
            f"that {folder}/data_batch_1 exists, and point the study's data.root at {folder.parent}."
        )
    parts = [_read_cifar_batch(folder / n) for n in names[:5]]
    x = torch.cat([p[0] for p in parts]).float() / 255
    y = torch.cat([p[1] for p in parts])
    xs, ys = _read_cifar_batch(folder / "test_batch")
    xs = xs.float() / 255
    if not 0 < val_size < len(x):
        raise ValueError(f"val_size must be in (0, {len(x)}), but got {val_size}.")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    xt, yt, xv, yv = x[order[val_size:]], y[order[val_size:]], x[order[:val_size]], y[order[:val_size]]
    xt, xv, xs = _standardise(xt, xv, xs)
    return TensorData(xt, yt, xv, yv, xs, ys, num_classes=10, name="cifar10")


def subsample_train(data: TensorData, fraction: float, seed: int = 0) -> TensorData:
    """The data with a stratified `fraction` of its training split (each class keeps round(fraction * its
    count), at least one); the validation and test splits are the same tensors, so results at different
    fractions are paired on the same evaluation examples.

    Drawn with a `torch.Generator` seeded with `seed` (the split seed): one permutation per class, of which
    the first examples are kept, so for one seed a smaller fraction's subset lies inside a larger one's.
    Examples keep their order in the split. Non-integer targets (regression) are subsampled unstratified.

    Example:
        >>> small = subsample_train(load_data("digits"), 0.25)
        >>> len(small.x_train), len(small.x_val)
        (315, 269)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], but got {fraction!r}.")
    if fraction == 1:
        return data
    g = torch.Generator().manual_seed(int(seed))
    y = data.y_train
    groups = [torch.nonzero(y == c).flatten() for c in torch.unique(y)] if not y.is_floating_point() else []
    if not groups:
        groups = [torch.arange(len(y))]
    kept = []
    for idx in groups:  # a permutation's first examples: a smaller fraction's subset inside a larger one's
        kept.append(idx[torch.randperm(len(idx), generator=g)][: max(1, round(fraction * len(idx)))])
    keep = torch.cat(kept).sort().values.to(y.device)
    return replace(data, x_train=data.x_train[keep], y_train=y[keep])


def data_split_seed(name: str, options: dict[str, Any]) -> int:
    """The seed a data set's splits are drawn with: its `split_seed` option (synthetic: `seed`), else 0."""
    if name == "synthetic":
        return int(options.get("seed", 0))
    return int(options.get("split_seed", 0))


def load_data(
    name: str, root: str | None = None, image: bool = False, train_fraction: float = 1.0, **kwargs
) -> TensorData | LoaderData:
    """Load a data set by name (`mnist1d`, `digits`, `synthetic`, `cifar10`) or by import path
    `"pkg.mod:factory"`.

    A factory is called with `**kwargs` and must return a `TensorData` or a `LoaderData`. `train_fraction`
    < 1 keeps a stratified part of the training split (`subsample_train`, drawn with the split seed); it
    needs tensor data: a factory's `LoaderData` is refused with it.

    Example:
        >>> data = load_data("digits")
        >>> data.x_train.shape
        torch.Size([1259, 64])
    """
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], but got {train_fraction!r}.")
    data = _load(name, root, image, **kwargs)
    if train_fraction == 1:
        return data
    if isinstance(data, LoaderData):
        raise TypeError(
            f"data factory {name!r} returned LoaderData, but train_fraction = {train_fraction} needs tensor "
            "data (TensorData): subsample inside the factory (e.g. a torch.utils.data.Subset) instead."
        )
    return subsample_train(data, train_fraction, data_split_seed(name, kwargs))


def _load(name: str, root: str | None, image: bool, **kwargs) -> TensorData | LoaderData:
    if name == "mnist1d":
        return load_mnist1d(**kwargs)
    if name == "digits":
        return load_digits(image=image, **kwargs)
    if name == "synthetic":
        return load_synthetic(**kwargs)
    if name == "cifar10":
        if root is None:
            raise ValueError(
                "data 'cifar10' needs a root folder (the parent of cifar-10-batches-py), but got none."
            )
        return load_cifar10(root, **kwargs)
    if ":" not in name:
        raise ValueError(
            f"unknown data set {name!r}: expected one of {DATASETS} or 'package.module:factory'."
        )
    data = load_object(name, "data")(**kwargs)
    if not isinstance(data, (TensorData, LoaderData)):
        raise TypeError(
            f"data factory {name!r} returned {type(data).__name__}; it must return "
            "sched_search.TensorData or sched_search.LoaderData."
        )
    return data
