"""Leslie Smith's LR range test: sweep the LR over a short run, read the curve, suggest min_lr / max_lr.

Smith, "Cyclical Learning Rates for Training Neural Networks" (2015), Sec. 3.3, and "A disciplined approach to
neural network hyper-parameters" (2018), Sec. 4 (weight decay). The run (`range_test`) only records; reading
the curve (`read_curve`) is a pure function of the record, so it can be tested and re-run without training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..lr import build_optimizer, is_schedule_free
from ..training import (
    LoaderData,
    TensorData,
    autocast,
    batches,
    build_objective,
    check_precision,
    forward,
    grad_scaler,
    load_data,
    loader_steps,
    model_shape,
    split_batch,
    to_device,
    to_memory_format,
)
from .curve import CurveConfig, CurveReading, Regions, ema_update, read_curve
from .result import RangeTestConfig, RangeTestResult, WeightDecaySweep, nanmin

DEFAULT_WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
SWEEP_EPOCHS = 15.0  # default sweep length in passes over the data (see sweep_steps)
SWEEP_STEPS = (300, 3000)  # bounds on that default, in optimizer steps


def sweep_steps(steps_per_epoch: float, epochs: float = SWEEP_EPOCHS) -> int:
    """A sweep length for data of `steps_per_epoch` optimizer steps: `epochs` passes, within `SWEEP_STEPS`.

    Why passes over the data and not a fixed count: the descent shows once the model has seen enough of the
    data at LRs that move it. The paper's 1-D CNN on MNIST-1D (70 steps per epoch) reads as "sweep too short"
    at 300 steps (4.3 epochs) and is ok at 900 (12.9) and 1050; the digits MLP (19 steps) is ok at 300 (15.8).
    At least 300 steps: the smoother wants ~35 points per decade of LR; at most 3000: a range test, not a
    training run (CIFAR-10 at batch 128, 352 steps per epoch, gets 8.5 epochs).

    Example:
        >>> sweep_steps(70), sweep_steps(19), sweep_steps(352)
        (1050, 300, 3000)
    """
    if not steps_per_epoch > 0:
        raise ValueError(f"steps_per_epoch must be > 0, but got {steps_per_epoch}.")
    return int(min(max(round(epochs * steps_per_epoch), SWEEP_STEPS[0]), SWEEP_STEPS[1]))


# ------------------------------------------------------------------------------------------ running the sweep


def _batch_stream(data: Any, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
    """Endless batches: from (x, y) tensors by seeded permutation, or by cycling any iterable of batches."""
    pair = _tensor_pair(data)
    if pair is not None:
        x, y = pair
        n = x.shape[0]
        if n < batch_size:  # else no full batch ever comes and the loop below spins forever
            raise ValueError(f"batch_size={batch_size} is larger than the {n} training examples.")
        while True:
            yield from batches(x, y, batch_size, generator)
    else:
        assert isinstance(data, Iterable), (
            f"data must be TensorData, (x, y) tensors or an iterable of batches: {data!r}"
        )
        while True:
            empty = True
            for batch in data:
                empty = False
                yield batch
            if empty:
                raise ValueError("the data iterable yielded no batches.")


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any,
    config: RangeTestConfig = RangeTestConfig(),
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 64,
    batch_fn: Callable[[Any], tuple[Any, torch.Tensor]] = split_batch,
    val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    weight_decay: float | None = None,
    progress: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
    desc: str | None = None,
) -> RangeTestResult:
    """Run the LR range test and read its curve; the model and optimizer are restored exactly afterwards.

    The LR rises every optimizer step from `start_lr` to `end_lr` (Smith 2015, Sec. 3.3) by setting each param
    group's "lr" directly: no scheduler or hook is attached. A step whose loss is not finite is recorded and
    skipped (no update), so one bad batch leaves a gap instead of poisoning the weights.

    Args:
        model: any nn.Module, fresh or already trained.
        optimizer: any torch optimizer over the model's parameters (SGD, Adam, our SGDW/AdamW, ...).
        data: `TensorData`, an `(x, y)` tensor pair (batched here by a seeded permutation), or any iterable of
            batches (a DataLoader), cycled as needed.
        config: sweep and reading settings.
        loss_fn: defaults to cross-entropy.
        batch_fn: maps a batch to (inputs, targets); inputs may be a tensor, a tuple (several inputs) or a
            dict.
        val_data: optional (x, y) for a validation loss every `config.val_every` steps.
        weight_decay: if given, set on every param group for the sweep (restored afterwards).
        progress: show a tqdm bar (on stderr), labelled `desc`; it stays, with "stopped" where the loss
            diverged before the last step.
        precision: "fp32", "bf16" or "fp16" (autocast; fp16 with a gradient scaler), as the training will run:
            where the loss diverges can depend on it.
        channels_last: image inputs and model in NHWC, as the training will run.

    Example:
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # doctest: +SKIP
        >>> result = range_test(model, opt, data)  # doctest: +SKIP
        >>> result.reading.suggested_max_lr, result.verdict  # doctest: +SKIP
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = next(model.parameters()).device
    check_precision(precision, str(device))
    scaler = grad_scaler(device, precision)
    generator = torch.Generator().manual_seed(config.seed)
    record = _Record()
    bar = None  # the tqdm bar, with `progress`
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.num_steps, desc=desc or f"range test wd={weight_decay or 0:g}")
    try:
        with _restoring(model, optimizer, config.seed):
            if weight_decay is not None:
                for group in optimizer.param_groups:
                    group["weight_decay"] = weight_decay
            stream = _batch_stream(data, batch_size, generator)
            model.train()
            if is_schedule_free(optimizer):
                optimizer.train()  # schedulefree steps only in train mode; its state is restored afterwards
            for step in range(config.num_steps):
                if bar is not None:
                    bar.update()
                lr = config.lr_at(step)
                _set_lr(optimizer, lr)
                drawn = (to_device(batch_fn(next(stream)), device) for _ in range(config.accumulation_steps))
                total = _step(
                    model,
                    optimizer,
                    drawn,
                    config.accumulation_steps,
                    loss_fn,
                    scaler,
                    precision,
                    channels_last,
                )
                record.add(step, lr, total, config.ema_beta)
                if config.val_every and val_data is not None and step % config.val_every == 0:
                    record.val_losses.append(_val_loss(model, optimizer, val_data, loss_fn, batch_fn))
                else:
                    record.val_losses.append(None)
                if record.diverged(step, config.diverge_factor):
                    record.stopped_early = step < config.num_steps - 1
                    if bar is not None and record.stopped_early:
                        bar.set_postfix_str("stopped: the loss diverged", refresh=False)
                    break
    finally:
        if bar is not None:
            bar.close()
    wd = (
        weight_decay
        if weight_decay is not None
        else float(optimizer.param_groups[0].get("weight_decay", 0.0))
    )
    entropy = _label_entropy(data) if loss_fn is nn.functional.cross_entropy else None
    return record.result(config, wd, _steps_per_epoch(data, batch_size, config.accumulation_steps), entropy)


@contextmanager
def _restoring(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> Iterator[None]:
    """Inside: the global RNG seeded with `seed`. After, whatever happened: the model's and optimizer's state,
    the model's mode and the caller's RNG streams as they were before."""
    model_state = copy.deepcopy(model.state_dict())
    optim_state = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    # Dropout and friends draw from the global RNG: fork it so the caller's stream is untouched too.
    devices = (
        [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    )
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        model.train(was_training)


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    drawn: Iterable[tuple[Any, torch.Tensor]],
    accumulation_steps: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scaler: Any,
    precision: str,
    channels_last: bool,
) -> float:
    """One optimizer step over `accumulation_steps` (inputs, targets) batches, each drawn as it is used; the
    summed loss. A loss that is not finite takes no step."""
    device = next(model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for inputs, targets in drawn:
        with autocast(device, precision):
            out = forward(model, to_memory_format(inputs, channels_last))
        loss = loss_fn(out.float(), targets)
        # A division by 1 would still cost a kernel and a backward node every step.
        if accumulation_steps > 1:
            loss = loss / accumulation_steps
        scaler.scale(loss).backward()
        total += loss.item()
    if math.isfinite(total):
        scaler.step(optimizer)
        scaler.update()
    return total


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        # Our SGDW/AdamW scale decay by lr / peak (torch's OneCycleLR keeps its peak as max_lr): at the LR
        # under test act as at a schedule's peak. Restored with the optimizer's state afterwards.
        for key in ("peak_lr", "max_lr"):
            if key in group:
                group[key] = lr


@dataclass
class _Record:
    """What a sweep records step by step, and its stop rule: the state of `range_test`'s loop."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    val_losses: list[float | None] = field(default_factory=list)
    nan_steps: list[tuple[int, float, str]] = field(default_factory=list)
    stopped_early: bool = False
    avg: float = 0.0  # the EMA's running sum (`ema_update`)
    best: float = math.inf  # the lowest smoothed loss so far

    def add(self, step: int, lr: float, total: float, ema_beta: float) -> None:
        """Record one step's loss (NaN or inf: a gap, the smoothed loss held) and its smoothed value."""
        self.lrs.append(lr)
        if math.isfinite(total):
            self.losses.append(total)
            # The stop rule sees a loss capped at 10x its running average: a lone wild batch lifts the
            # average at most 1.9x (beta 0.9), short of a divergence, while a real one still climbs.
            last = self.smoothed[-1] if self.smoothed else math.nan
            seen = min(total, 10 * last) if last > 0 else total
            self.avg, smooth = ema_update(self.avg, len(self.losses) - len(self.nan_steps), seen, ema_beta)
            self.best = min(self.best, smooth)
        else:
            self.nan_steps.append((step, lr, "nan" if math.isnan(total) else "inf"))
            self.losses.append(math.nan)
            smooth = self.smoothed[-1] if self.smoothed else math.nan
        self.smoothed.append(smooth)

    def diverged(self, step: int, diverge_factor: float) -> bool:
        """Stop on a clear rise: a multiple of the best loss and above halfway back to the start, so a loss
        that fell near zero is not stopped by noise (4 x 0.01 is no divergence); or a run of NaNs."""
        smooth = self.smoothed[-1]
        first = next((s for s in self.smoothed if not math.isnan(s)), smooth)  # step 0 may have been NaN
        rose = smooth > diverge_factor * self.best and smooth > (first + self.best) / 2
        return rose or _diverged_to_nan(self.nan_steps, step)

    def result(
        self, config: RangeTestConfig, weight_decay: float, spe: float | None, entropy: float | None
    ) -> RangeTestResult:
        """The sweep's record with its reading (`read_curve`)."""
        reading = read_curve(
            self.lrs, self.losses, config.curve_config, self.nan_steps, self.stopped_early, spe, entropy
        )
        return RangeTestResult(
            config,
            tuple(self.lrs),
            tuple(self.losses),
            tuple(self.smoothed),
            tuple(self.val_losses),
            tuple(self.nan_steps),
            self.stopped_early,
            weight_decay,
            reading,
            spe,
            entropy,
        )


class _Loader:
    """A `LoaderData`'s training loader as the sweep reads it: iterable again and again, with a length."""

    def __init__(self, data: LoaderData):
        self.data = data

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data.train())

    def __len__(self) -> int:
        return loader_steps(self.data)


def _tensor_pair(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, y) training tensors from `TensorData` or an (x, y) pair; None for any other data."""
    if hasattr(data, "x_train"):
        return data.x_train, data.y_train
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data
    return None


def _steps_per_epoch(data: Any, batch_size: int, accumulation_steps: int) -> float | None:
    """Optimizer steps per pass over the data, as `_batch_stream` serves it (full batches only)."""
    pair = _tensor_pair(data)
    if pair is not None:
        return (pair[0].shape[0] // batch_size) / accumulation_steps
    try:
        return len(data) / accumulation_steps
    except TypeError:
        return None


def _label_entropy(data: Any) -> float | None:
    """Entropy (nats) of the training labels when they are class indices: the best loss without the inputs."""
    pair = _tensor_pair(data)
    if pair is None or pair[1].dim() != 1 or pair[1].dtype not in (torch.int64, torch.int32, torch.uint8):
        return None
    p = torch.bincount(pair[1].long().cpu()).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def _diverged_to_nan(nan_steps: list[tuple[int, float, str]], step: int, run: int = 5) -> bool:
    """Several non-finite losses in a row: the weights or the LR are past saving."""
    return len(nan_steps) >= run and nan_steps[-run][0] == step - run + 1


@torch.no_grad()
def _val_loss(
    model: nn.Module, optimizer: torch.optim.Optimizer, val_data: Any, loss_fn: Callable, batch_fn: Callable
) -> float:
    """The validation loss mid-sweep, at the averaged weights for a schedule-free optimizer (as a trainer
    sees it); back in train mode after."""
    if is_schedule_free(optimizer):
        optimizer.eval()
    model.eval()
    inputs, targets = batch_fn(val_data)
    loss = float(loss_fn(forward(model, inputs), targets))
    model.train()
    if is_schedule_free(optimizer):
        optimizer.train()
    return loss


def weight_decay_sweep(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any,
    weight_decays: Iterable[float] = DEFAULT_WEIGHT_DECAYS,
    config: RangeTestConfig = RangeTestConfig(),
    progress: bool = False,
    on_sweep: Callable[[int, int, float], None] | None = None,
    desc: str = "range test",
    **kwargs: Any,
) -> WeightDecaySweep:
    """Repeat the range test per weight decay from the same start; choose the decay with the lowest loss.

    Smith (2018, Sec. 4.3): compare the curves of a few decays; the best decay reaches a lower loss and
    tolerates a larger LR. Ties on loss (within 2%) go to the decay whose minimum sits at the larger LR. The
    search range spans the chosen decay's neighbours in the grid (a decade either side when it is at the end
    of the grid).

    `progress` shows a tqdm bar per sweep, labelled "<desc>: sweep i of n, wd ..."; `on_sweep(i, n,
    weight_decay)` is called as sweep i (from 1) of n starts, for a caller that reports progress its own way.

    Example:
        >>> sweep = weight_decay_sweep(model, optimizer, data)  # doctest: +SKIP
        >>> sweep.chosen, sweep.search_range  # doctest: +SKIP
    """
    decays = sorted({float(w) for w in weight_decays})
    if not decays or any(w < 0 for w in decays):
        raise ValueError(f"weight_decays must be a non-empty list of values >= 0, but got {decays}.")
    results = []
    for i, wd in enumerate(decays, 1):
        if on_sweep is not None:
            on_sweep(i, len(decays), wd)
        label = f"{desc}: sweep {i} of {len(decays)}, wd {wd:g}"
        results.append(
            range_test(
                model, optimizer, data, config, weight_decay=wd, progress=progress, desc=label, **kwargs
            )
        )
    return choose_weight_decay(results)


def choose_weight_decay(results: Iterable[RangeTestResult]) -> WeightDecaySweep:
    """The weight-decay choice of `weight_decay_sweep` from its sweeps, one per decay, in any order: what a
    study does with sweeps that ran apart (as Ray tasks, `rangetasks.py`).

    Example:
        >>> curves = [range_test(model, opt, data, weight_decay=wd) for wd in (0.0, 1e-4)]  # doctest: +SKIP
        >>> sweep = choose_weight_decay(curves)  # doctest: +SKIP
    """
    results = sorted(results, key=lambda r: r.weight_decay)
    decays = [r.weight_decay for r in results]
    if not results or len(set(decays)) != len(decays):
        raise ValueError(f"need one sweep per weight decay, but got the decays {decays}.")
    usable = [r for r in results if r.reading.min_loss_lr is not None] or list(results)
    scores = {r.weight_decay: nanmin(r.curve) for r in usable}
    lowest = min(scores.values())
    near = [r for r in usable if scores[r.weight_decay] <= lowest + 0.02 * abs(lowest)]
    choice = max(near, key=lambda r: (r.reading.min_loss_lr or 0.0, -scores[r.weight_decay]))
    positive = [w for w in decays if w > 0]
    i = decays.index(choice.weight_decay)
    below = decays[i - 1] if i > 0 and decays[i - 1] > 0 else None
    above = decays[i + 1] if i + 1 < len(decays) else None
    centre = choice.weight_decay if choice.weight_decay > 0 else (min(positive) / 10 if positive else 1e-5)
    search_range = (below or centre / 10, above or centre * 10)
    reason = (
        f"weight decay {choice.weight_decay:g} reached the lowest smoothed loss "
        f"{scores[choice.weight_decay]:.4g} (min at lr={choice.reading.min_loss_lr or float('nan'):.3g}); "
        "others within 2% would lose to a larger LR"
        if len(decays) > 1
        else f"one weight decay tried ({choice.weight_decay:g}): no sweep"
    )
    return WeightDecaySweep(tuple(results), choice.weight_decay, search_range, reason)


__all__ = [
    "DEFAULT_WEIGHT_DECAYS",
    "CurveConfig",
    "CurveReading",
    "RangeTestConfig",
    "RangeTestResult",
    "Regions",
    "WeightDecaySweep",
    "choose_weight_decay",
    "range_test",
    "read_curve",
    "sweep_steps",
    "weight_decay_sweep",
]


def run_range_test(
    data: str | TensorData | LoaderData = "digits",
    model: str = "mlp",
    optimizer: str = "sgdw",
    config: RangeTestConfig = RangeTestConfig(),
    weight_decays: Iterable[float] | None = DEFAULT_WEIGHT_DECAYS,
    batch_size: int = 64,
    momentum: float = 0.9,
    data_root: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = False,
    data_options: dict[str, Any] | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    on_sweep: Callable[[int, int, float], None] | None = None,
    loss: str = "cross_entropy",
) -> WeightDecaySweep:
    """The range test by names: build data, model (seeded) and optimizer, then sweep weight decay.

    Always a `WeightDecaySweep`: `weight_decays=None` runs a sweep of one, at weight decay 0. `data` is a data
    set's name (loaded with `data_root` and `data_options`, as `data.load_data` takes them) or a loaded
    `TensorData` or `LoaderData`, as a study passes the data it has already loaded (tensors are moved to
    `device`; loader batches as they come). `loss` is the study's (`objective.build_objective`). `progress`
    and `on_sweep` report each sweep as `weight_decay_sweep` does.

    Example:
        >>> sweep = run_range_test("digits", "mlp", "adamw")  # doctest: +SKIP
        >>> sweep.best.reading.suggested_max_lr  # doctest: +SKIP
    """
    from ..training import IMAGE_MODELS, build_model

    if isinstance(data, str):
        data = load_data(data, root=data_root, image=model in IMAGE_MODELS, **(data_options or {}))
    input_shape, outputs = model_shape(data)
    # loaders: the training loader, cycled; its len() (or steps_per_epoch) gives the sweep's epochs
    swept = data.to(device) if isinstance(data, TensorData) else _Loader(data)
    net = build_model(model, input_shape, outputs, seed=config.seed, **(model_kwargs or {}))
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    opt = build_optimizer(
        optimizer, net.parameters(), lr=config.start_lr, weight_decay=0.0, momentum=momentum
    )
    decays = (0.0,) if weight_decays is None else weight_decays
    return weight_decay_sweep(
        net,
        opt,
        swept,
        decays,
        config,
        loss_fn=build_objective(loss).loss,
        progress=progress,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        on_sweep=on_sweep,
        desc=f"range test {optimizer}",
    )
