"""The study's answer as torch code: the recommended arm's optimizer and scheduler, to paste into a loop.

A user came for a config to train with; the report and the CLI's closing block print it as code that runs as
written (placeholder model and data, marked "# your ..."). The code comes from the schedule config the final
re-runs trained with (`arms.build_schedule`), so it is that config, not a description of it; cycle lengths are
written as epochs times `steps_per_epoch`, so a user's own loader length carries them over.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..lr import (
    STEP_FIELDS,
    ConstantConfig,
    OptimizerSpec,
    ScheduleConfig,
    build_schedule,
    momentum_at,
    optimizer_spec,
)
from .verdict import NO_WINNER


@dataclass(frozen=True)
class ToyBatch:
    """The study's shapes and loss, for the snippet's stand-in model and batch (so that it runs as written
    with the loss the study trained on)."""

    input_shape: tuple[int, ...] = (40,)
    num_outputs: int = 10
    loss: str = "cross_entropy"  # cross_entropy | mse | a "pkg.mod:fn" import path

    @classmethod
    def of(cls, resolved: dict[str, Any]) -> ToyBatch:
        """From a run's resolved_config.json; what an older folder lacks keeps the default."""
        shape, outputs = resolved.get("input_shape"), resolved.get("num_outputs")
        return cls(
            tuple(shape) if shape else cls.input_shape,
            int(outputs) if outputs else cls.num_outputs,
            resolved.get("loss") or cls.loss,
        )

    def lines(self, batch: int) -> tuple[list[str], list[str], str]:
        """(import lines, the model and loader lines, the loss line inside the loop)."""
        width = math.prod(self.input_shape)
        model = f"torch.nn.Linear({width}, {self.num_outputs})"
        if len(self.input_shape) > 1:
            model = f"torch.nn.Sequential(torch.nn.Flatten(), {model})"
        x = f"torch.randn({', '.join(str(n) for n in (batch, *self.input_shape))})"
        imports: list[str] = []
        if self.loss == "cross_entropy":
            y, loss = f"torch.randint(0, {self.num_outputs}, ({batch},))", "torch.nn.functional.cross_entropy"
        elif self.loss == "mse":
            y, loss = f"torch.randn({batch}, {self.num_outputs})", "torch.nn.functional.mse_loss"
        else:  # the user's own loss, imported as the study did; targets as a regression's or a classifier's
            module, _, name = self.loss.partition(":")
            imports = [f"from {module} import {name} as study_loss  # the study's loss"]
            y = (
                f"torch.randn({batch})"
                if self.num_outputs == 1
                else f"torch.randint(0, {self.num_outputs}, ({batch},))"
            )
            loss = "study_loss"
        setup = [
            f"model = {model}  # your model",
            f"loader = [({x}, {y})] * steps_per_epoch  # your DataLoader",
        ]
        return imports, setup, f"        loss = {loss}(model(x), y)  # your loss (the study's: {self.loss})"


@dataclass(frozen=True)
class Recommendation:
    """The arm to use, why it was picked, its final re-run config, and that config as torch code."""

    arm: str
    why: str  # "the winner", NO_WINNER, or why the baseline is the answer
    config: dict  # the arm's final re-run config (seeds differ only in `seed`)
    steps_per_epoch: int  # the study's optimizer steps per epoch, which the code assumes
    code: str  # a runnable Python snippet


def recommend(
    verdict: dict[str, Any],
    final_configs: list[dict],
    steps_per_epoch: int | None,
    n_train: int | None = None,
    source: str = "",
    toy: ToyBatch = ToyBatch(),
) -> Recommendation | None:
    """The code of the verdict's `recommended` arm (`verdict.decide` holds the one rule that picks it); None
    without one.

    Args:
        verdict: `verdict.decide(...)` (verdict.json).
        final_configs: the run's final re-run configs (final_configs.json).
        steps_per_epoch: the study's (resolved_config.json); None (an older run folder): no recommendation.
        n_train: the study's training examples, said beside the steps per epoch.
        source: the run folder's name, for the code's first comment.
        toy: the study's shapes and loss (`ToyBatch.of(resolved_config)`), for the code's stand-ins.

    Example:
        >>> rec = recommend(run.verdict, run.final_configs, run.config["steps_per_epoch"])  # doctest: +SKIP
        >>> print(rec.code)  # doctest: +SKIP
    """
    arm, why = verdict.get("recommended"), verdict.get("recommended_why") or ""
    if not arm:
        return None
    configs = sorted((c for c in final_configs if c.get("arm") == arm), key=lambda c: c.get("seed", 0))
    if not configs or not steps_per_epoch:
        return None
    spe = int(steps_per_epoch)
    title = f"{arm} as sched_search chose it" + (f" (run {source})" if source else "")
    return Recommendation(arm, why, configs[0], spe, torch_code(configs[0], spe, n_train, title, toy))


# --------------------------------------------------------------------------------------------- the code


def _num(value: float) -> str:
    """A float literal to 6 significant digits: the config to well below any seed-to-seed difference."""
    return repr(float(f"{float(value):.6g}"))


def _steps(steps: int, epochs: int, spe: int) -> str:
    """A step count as epochs x steps_per_epoch where it is whole epochs (it then follows a user's loader)."""
    if steps == epochs * spe:
        return "epochs * steps_per_epoch"
    if steps == spe:
        return "steps_per_epoch"
    if steps % spe == 0:
        return f"{steps // spe} * steps_per_epoch"
    return f"round({_num(steps / spe)} * steps_per_epoch)"


def _schedule_args(schedule: ScheduleConfig, epochs: int, spe: int) -> list[str]:
    """`name=value` for each field of the schedule config that differs from its default."""
    args = []
    for f in dataclasses.fields(schedule):
        value = getattr(schedule, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.name in STEP_FIELDS:
            text = _steps(value, epochs, spe)
        elif f.name == "gamma" and math.isclose(value, 0.5 ** (1 / (epochs * spe)), rel_tol=1e-12):
            text = "0.5 ** (1 / (epochs * steps_per_epoch))"  # space.build_space: halves over the run
        elif isinstance(value, str):
            text = f'"{value}"'
        elif isinstance(value, bool):
            text = str(value)
        else:
            text = _num(value)
        args.append(f"{f.name}={text}")
    return args


def _schedule_free_lines(
    config: dict[str, Any], spec: OptimizerSpec, lr: float, epochs: int, spe: int, loss_line: str
) -> list[str]:
    """A schedule-free optimizer as `schedule_free.build_schedule_free` builds it, and its train/eval
    switches."""
    total = max(1, round(epochs * spe))
    warmup = math.floor(config["warmup_pct"] * total + 0.5)  # arms.optimizer_and_scheduler's count
    lines = [
        "# no LR schedule: the optimizer warms up linearly, then averages its iterates (Defazio et al. 2024)",
        f"optimizer = {spec.snippet_class}(",
        "    model.parameters(),",
        f"    lr={_num(lr)},",
        *(["    momentum=0.9,"] if spec.momentum else []),
        "    # schedulefree's decay is torch's scale (lr x decay per step): the study's decoupled one / lr",
        f"    weight_decay={_num(config.get('weight_decay', 0.0))} / {_num(lr)},",
    ]
    if warmup:
        lines.append(f"    warmup_steps={_steps(warmup, epochs, spe)},")
    return lines + [
        ")",
        "for epoch in range(epochs):",
        "    model.train()",
        "    optimizer.train()  # training steps at y, the point between the iterate and its average",
        "    for x, y in loader:",
        loss_line,
        "        optimizer.zero_grad()",
        "        loss.backward()",
        "        optimizer.step()",
        "    optimizer.eval()  # evaluate and save at the average x",
        "    # with BatchNorm, recompute its statistics here first: a few batches through the model in train",
        "    # mode under torch.no_grad() (schedulefree's README)",
        "    model.eval()",
        "print(f\"{optimizer.param_groups[0]['k']} steps, last loss {loss.item():.4f}\")",
    ]


def _imports(spec: OptimizerSpec, schedule: ScheduleConfig) -> list[str]:
    """The snippet's imports of its optimizer and schedule: ours from sched_search with build_scheduler,
    another package's above them, torch's none (imported anyway); a schedule-free one needs no schedule."""
    ours = spec.snippet_module == "sched_search"
    other = (
        [f"from {spec.snippet_module} import {spec.snippet_class}"]
        if spec.snippet_module and not ours
        else []
    )
    if spec.schedule_free:
        return other
    names = ", ".join(x for x in (spec.snippet_class if ours else "", "build_scheduler") if x)
    # the schedule's class from its own module: a new schedule family needs no export for its snippet
    kind = f"from {type(schedule).__module__} import {type(schedule).__name__}"
    return [*other, f"from sched_search import {names}", kind]


def torch_code(
    config: dict[str, Any],
    steps_per_epoch: int,
    n_train: int | None = None,
    title: str = "",
    toy: ToyBatch = ToyBatch(),
) -> str:
    """A runnable snippet that trains with a trial config's optimizer and schedule over its full budget.

    Placeholder model and data (a linear layer on random batches of the study's shapes, `toy`) make it run as
    written with the study's loss; the lines marked "# your model", "# your DataLoader" and "# your loss" are
    the ones to replace.

    Args:
        config: a trial config (schedule, optimizer, epochs, batch_size and the schedule's values).
        steps_per_epoch: the optimizer steps per epoch the config was trained with; the code states it.
        n_train: the training examples behind those steps, said in the comment.
        title: the first comment line (what this config is).
        toy: the study's input shape, outputs and loss.

    Example:
        >>> print(torch_code(run.final_configs[0], 70))  # doctest: +SKIP
    """
    epochs = int(config["epochs"])
    schedule = build_schedule(config, epochs, steps_per_epoch)
    kind = type(schedule).__name__
    lr = schedule.lr if isinstance(schedule, ConstantConfig) else schedule.max_lr
    spec = optimizer_spec(config["schedule"], config["optimizer"])
    batch = int(config.get("batch_size", 64))
    toy_imports, stand_ins, loss_line = toy.lines(batch)
    study = f"{n_train} examples / batch {batch}" if n_train else f"batch {batch}"
    driven = "LR" if momentum_at(schedule, 0) is None else "LR and the momentum"
    lines = [
        f"# {title or 'The optimizer and schedule sched_search chose'}.",
        "# Runs as is on random data: replace the lines marked '# your ...' with your model and DataLoader.",
        "import torch",
        "",
        *_imports(spec, schedule),
        *toy_imports,
        "",
        f"epochs = {epochs}",
        f"steps_per_epoch = {steps_per_epoch}  # the study's ({study}); len(loader) for yours",
        *stand_ins,
        "",
    ]
    if spec.schedule_free:
        free = _schedule_free_lines(config, spec, lr, epochs, steps_per_epoch, loss_line)
        return "\n".join(lines + free) + "\n"
    if spec.snippet_module == "sched_search":
        lines.append(
            "# decoupled weight decay, scaled by lr / peak lr: not torch's scale (docs/optimizers.md)"
        )
    if spec.lr_free:
        lines.append(
            f"# {spec.snippet_class} estimates its step size itself: "
            "the schedule's LR multiplies it (1 at the peak)"
        )
    optimizer = spec.snippet_call(_num(lr), _num(config.get("weight_decay", 0.0)))
    lines += [f"optimizer = {optimizer}", f"schedule = {kind}("]
    lines += [f"    {a}," for a in _schedule_args(schedule, epochs, steps_per_epoch)] + [")"]
    lines += [
        f"scheduler = build_scheduler(optimizer, schedule)  # sets the {driven} every batch",
        "for epoch in range(epochs):",
        "    for x, y in loader:",
        loss_line,
        "        optimizer.zero_grad()",
        "        loss.backward()",
        "        optimizer.step()",
        "        scheduler.step()",
        'print(f"{scheduler.last_epoch} steps, last loss {loss.item():.4f}")',
    ]
    return "\n".join(lines) + "\n"


__all__ = ["NO_WINNER", "Recommendation", "ToyBatch", "recommend", "torch_code"]
