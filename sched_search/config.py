"""Study files: TOML parsed with tomllib into frozen dataclasses, validated before any work starts.

Every error names the file, the key and what was expected, e.g.
`studies/x.toml: [train] epochs must be an integer >= 1, but got 0.`
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEDULES = ("clr", "sgdr", "one_cycle", "cosine", "wsd", "schedule_free")
OPTIMIZERS = ("adamw", "sgdw")
SCHEDULE_FREE_OPTIMIZERS = ("adamw", "sgd")  # schedulefree's SGD has no momentum buffer: not "sgdw"
BASELINE_ARM = "constant-adam"
ARMS = tuple(
    f"{s}-{o}" for s in SCHEDULES for o in (SCHEDULE_FREE_OPTIMIZERS if s == "schedule_free" else OPTIMIZERS)
)
# Recipes users run today, on every seed (arms.baseline_config); default:adam's arm is still constant-adam.
BASELINES = ("default:adam", "default:adamw-cosine", "default:schedule_free")
# the default study's
DEFAULT_ARMS = tuple(f"{s}-{o}" for s in ("clr", "sgdr", "one_cycle") for o in OPTIMIZERS)
# Built-in data sets (data.load_data) and models (models.build_model).
DATASETS = ("mnist1d", "digits", "synthetic", "cifar10")
MODELS = ("mlp", "cnn1d", "cnn", "resnet")
# Upper bounds that catch a typo (epochs = 1e12) before it runs for ever; far above any study this tool is
# for.
MAX_EPOCHS = 100_000
MAX_TRIALS_PER_ARM = 10_000
# What `[search.bounds]` may set, and how each is searched (space.build_space): log ranges need low > 0.
BOUNDABLE = {
    "max_lr": "log",
    "weight_decay": "log",
    "base_div": "log",
    "div_factor": "log",
    "pct_start": "fraction",
    "step_size_epochs": "int",
    "t_0_epochs": "int",
}
SAMPLER_NAMES = ("tpe", "gp", "random", "qmc")
SPACES = ("seeded", "broad")
MAX_NAME = 100  # the run folder is <name>-<timestamp>; file systems allow 255 bytes per name
SEED_LIMIT = 2**32  # torch.Generator and numpy take seeds in [0, 2**32)


class StudyFileError(ValueError):
    """A study file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class DataSection:
    name: str = "mnist1d"  # mnist1d | digits | synthetic | cifar10 | package.module:factory
    root: str | None = None  # cifar10: folder holding cifar-10-batches-py
    options: dict = field(
        default_factory=dict
    )  # passed to the loader (e.g. mnist1d num_samples, synthetic n)


@dataclass(frozen=True)
class ModelSection:
    name: str = "cnn1d"  # mlp | cnn1d | cnn | resnet | package.module:factory
    options: dict = field(default_factory=dict)  # passed to the factory (e.g. hidden = 256, depth = 56)


AUGMENTATIONS = ("none", "crop_flip")  # see data.augment_batch
LOSSES = ("cross_entropy", "mse")  # built-in losses (objective.py); or "package.module:function"
# built-in metrics (objective.py) and which way is better; or "package.module:function"
METRICS = {"accuracy": "max", "loss": "min"}
METRIC_MODES = ("max", "min")
PRECISIONS = ("fp32", "bf16", "fp16")  # see precision.py


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 20  # full budget per trial
    batch_size: int = 100
    device: str = "cpu"  # cpu | cuda
    augment: str = "none"  # "crop_flip": random crop + horizontal flip of each training batch (image data)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler, CUDA only)
    channels_last: bool = False  # NHWC memory format for image models (faster on tensor cores)
    compile: bool = False  # torch.compile the model (slow to start; for long GPU trials)
    loss: str = "cross_entropy"  # cross_entropy | mse | package.module:function(outputs, targets) -> scalar
    metric: str = "accuracy"  # accuracy | loss | package.module:function(outputs, targets) -> number
    metric_mode: str = ""  # max | min; "" = the built-in metric's own (accuracy max, loss min)


@dataclass(frozen=True)
class SearchSection:
    arms: tuple[str, ...] = DEFAULT_ARMS  # schedule-optimizer pairs; the baseline constant-adam always runs
    trials_per_arm: int = 8  # equal for every arm
    max_concurrent_per_arm: int = 2  # caps Optuna's parallel asks (unbounded parallelism is random search)
    search_seed: int = 0  # sampler seed; also the training seed of search trials
    seeds: tuple[int, ...] = (0, 1, 2)  # final re-runs: the same seeds for every arm and the baseline
    budgets: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)  # fractions of epochs for the budget ladder
    baseline_lr: float = 3e-4  # constant-LR Adam baseline
    baselines: tuple[str, ...] = BASELINES  # fixed recipes on every seed, full budget; names from BASELINES
    sampler: str = "gp"  # gp | tpe | random | qmc: Optuna's samplers (sampler.py), one seed stream per arm
    space: str = "seeded"  # seeded: bounds from the range test | broad: BROAD_SPACE, no range test
    bounds: dict = field(default_factory=dict)  # [search.bounds] name = [low, high]: overrides either space


@dataclass(frozen=True)
class EarlyStoppingSection:
    enabled: bool = True  # ASHA
    grace_period: int = 4  # epochs before the first rung
    reduction_factor: int = 3


@dataclass(frozen=True)
class RangeTestSection:
    num_steps: int = 0  # 0: from the data, 15 epochs of steps within 300..3000 (rangetest.sweep_steps)
    start_lr: float = 1e-7
    end_lr: float = 10.0
    weight_decays: tuple[float, ...] = (0.0, 1e-4)  # 2 sweeps: <= 2 trials of the default study (workflow.md)
    allow_failed: bool = False  # go on with the study even if the sanity check fails


@dataclass(frozen=True)
class ResourcesSection:
    num_cpus: int = 2  # CPUs for a local Ray (ignored with an address)
    num_gpus: int = 0  # GPUs for a local Ray
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # a fraction shares one GPU between trials


@dataclass(frozen=True)
class StudyConfig:
    name: str
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    search: SearchSection = SearchSection()
    early_stopping: EarlyStoppingSection = EarlyStoppingSection()
    range_test: RangeTestSection = RangeTestSection()
    resources: ResourcesSection = ResourcesSection()
    target: float | None = None  # in the metric's units; None: the baseline's final value at its full budget
    runs_dir: str = "runs"
    ray_address: str | None = None  # host:port or "auto" to join an existing cluster
    source: str = "<defaults>"  # the file it came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "search": SearchSection,
    "early_stopping": EarlyStoppingSection,
    "range_test": RangeTestSection,
    "resources": ResourcesSection,
}
_TOP = {"name": str, "target": float, "target_accuracy": float, "runs_dir": str, "ray_address": str}


def _fail(source: str, key: str, expected: str, value: Any) -> StudyFileError:
    return StudyFileError(f"{source}: {key} must be {expected}, but got {value!r}.")


def _coerce(source: str, key: str, value: Any, default: Any) -> Any:
    """Check a TOML value against the type of the field's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _fail(source, key, "true or false", value)
    elif isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, "an integer", value)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(source, key, "a finite number", value)
        value = float(value)
    elif isinstance(default, tuple):
        if not isinstance(value, list) or not value:
            raise _fail(source, key, "a non-empty list", value)
        kind = type(default[0]) if default else str
        for item in value:
            if kind is float and (
                isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item)
            ):
                raise _fail(source, key, "a list of finite numbers", value)
            if kind in (int, str) and (isinstance(item, bool) or not isinstance(item, kind)):
                raise _fail(source, key, f"a list of {kind.__name__}s", value)
        value = tuple(float(v) for v in value) if kind is float else tuple(value)
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise _fail(source, key, "a table", value)
    elif (isinstance(default, str) or default is None) and not isinstance(value, str):
        raise _fail(source, key, "a string", value)
    return value


def _section(source: str, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise _fail(source, f"[{name}]", "a table", raw)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            if "options" in known:  # data/model: unknown keys are options for the loader/factory
                extra[key] = value
                continue
            raise StudyFileError(f"{source}: unknown key [{name}] {key}; expected one of {sorted(known)}.")
        default = known[key].default
        if default is None or key == "root":
            default = ""
        if key in ("options", "bounds"):
            default = {}
        values[key] = _coerce(source, f"[{name}] {key}", value, default)
    if extra:
        values["options"] = {**values.get("options", {}), **extra}
    return cls(**values)


def _check(source: str, ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise _fail(source, key, expected, value)


def validate(cfg: StudyConfig) -> StudyConfig:
    """Reject impossible values, naming the file and key."""
    s = cfg.source
    _check(
        s,
        bool(cfg.name)
        and len(cfg.name) <= MAX_NAME
        and cfg.name not in (".", "..")
        and not any(c in cfg.name for c in "/\\\0"),
        "name",
        f"a non-empty name of at most {MAX_NAME} characters without '/', '\\' or NUL",
        cfg.name,
    )
    _check(s, bool(cfg.runs_dir) and "\0" not in cfg.runs_dir, "runs_dir", "a folder path", cfg.runs_dir)
    if cfg.data.name == "cifar10":
        _check(s, bool(cfg.data.root), "[data] root", "the folder holding cifar-10-batches-py", cfg.data.root)
    _check(
        s,
        cfg.data.name in DATASETS or ":" in cfg.data.name,
        "[data] name",
        f"one of {', '.join(DATASETS)} or 'package.module:factory'",
        cfg.data.name,
    )
    _check(
        s,
        cfg.model.name in MODELS or ":" in cfg.model.name,
        "[model] name",
        f"one of {', '.join(MODELS)} or 'package.module:factory'",
        cfg.model.name,
    )
    t = cfg.train
    _check(s, 1 <= t.epochs <= MAX_EPOCHS, "[train] epochs", f"an integer in 1..{MAX_EPOCHS}", t.epochs)
    _check(s, t.batch_size >= 1, "[train] batch_size", "an integer >= 1", t.batch_size)
    _check(
        s, t.device == "cpu" or t.device.startswith("cuda"), "[train] device", "'cpu' or 'cuda[:n]'", t.device
    )
    _check(s, t.augment in AUGMENTATIONS, "[train] augment", " or ".join(map(repr, AUGMENTATIONS)), t.augment)
    _check(s, t.precision in PRECISIONS, "[train] precision", " or ".join(map(repr, PRECISIONS)), t.precision)
    _check(
        s,
        t.precision != "fp16" or t.device.startswith("cuda"),
        "[train] precision",
        "'bf16' or 'fp32' on a CPU ('fp16' needs device = \"cuda\")",
        t.precision,
    )
    q = cfg.search
    for arm in q.arms:
        _check(s, arm in ARMS, "[search] arms", f"a list drawn from {', '.join(ARMS)}", arm)
    _check(s, len(set(q.arms)) == len(q.arms), "[search] arms", "a list without repeats", list(q.arms))
    _check(
        s,
        1 <= q.trials_per_arm <= MAX_TRIALS_PER_ARM,
        "[search] trials_per_arm",
        f"an integer in 1..{MAX_TRIALS_PER_ARM}",
        q.trials_per_arm,
    )
    _check(
        s, 0 <= q.search_seed < SEED_LIMIT, "[search] search_seed", "an integer in [0, 2**32)", q.search_seed
    )
    _check(
        s,
        all(0 <= seed < SEED_LIMIT for seed in q.seeds),
        "[search] seeds",
        "integers in [0, 2**32)",
        list(q.seeds),
    )
    _check(
        s,
        q.max_concurrent_per_arm >= 1,
        "[search] max_concurrent_per_arm",
        "an integer >= 1",
        q.max_concurrent_per_arm,
    )
    _check(s, len(set(q.seeds)) == len(q.seeds), "[search] seeds", "distinct integers", list(q.seeds))
    _check(
        s,
        all(0 < b <= 1 for b in q.budgets) and 1.0 in q.budgets,
        "[search] budgets",
        "fractions in (0, 1] that include 1.0",
        list(q.budgets),
    )
    _check(
        s, len(set(q.budgets)) == len(q.budgets), "[search] budgets", "distinct fractions", list(q.budgets)
    )
    _check(s, 0 < q.baseline_lr < math.inf, "[search] baseline_lr", "a finite number > 0", q.baseline_lr)
    b = list(q.baselines)
    for name in b:
        _check(s, name in BASELINES, "[search] baselines", f"a list drawn from {', '.join(BASELINES)}", name)
    _check(s, len(set(b)) == len(b), "[search] baselines", "a list without repeats", b)
    names = " or ".join(map(repr, SAMPLER_NAMES))
    _check(s, q.sampler in SAMPLER_NAMES, "[search] sampler", names, q.sampler)
    _check(s, q.space in SPACES, "[search] space", " or ".join(map(repr, SPACES)), q.space)
    _check_bounds(s, q.bounds)
    e = cfg.early_stopping
    _check(
        s,
        1 <= e.grace_period <= t.epochs or not e.enabled,  # unused without early stopping
        "[early_stopping] grace_period",
        f"in 1..epochs ({t.epochs})",
        e.grace_period,
    )
    _check(
        s, e.reduction_factor >= 2, "[early_stopping] reduction_factor", "an integer >= 2", e.reduction_factor
    )
    r = cfg.range_test
    _check(
        s,
        r.num_steps == 0 or r.num_steps >= 10,
        "[range_test] num_steps",
        "0 (15 epochs of the data's steps) or an integer >= 10",
        r.num_steps,
    )
    _check(
        s,
        0 < r.start_lr < r.end_lr < math.inf,
        "[range_test] start_lr, end_lr",
        "finite numbers with 0 < start_lr < end_lr",
        (r.start_lr, r.end_lr),
    )
    _check(
        s,
        all(0 <= w < math.inf for w in r.weight_decays),
        "[range_test] weight_decays",
        "finite numbers >= 0",
        list(r.weight_decays),
    )
    res = cfg.resources
    _check(s, res.num_cpus >= 1, "[resources] num_cpus", "an integer >= 1", res.num_cpus)
    _check(s, res.num_gpus >= 0, "[resources] num_gpus", "an integer >= 0", res.num_gpus)
    _check(
        s,
        0 < res.cpus_per_trial < math.inf,
        "[resources] cpus_per_trial",
        "a finite number > 0",
        res.cpus_per_trial,
    )
    _check(
        s,
        res.gpus_per_trial >= 0 and (res.gpus_per_trial <= 1 or float(res.gpus_per_trial).is_integer()),
        "[resources] gpus_per_trial",
        "a fraction in [0, 1] or a whole number of GPUs",
        res.gpus_per_trial,
    )
    if res.gpus_per_trial > 0:
        _check(s, t.device.startswith("cuda"), "[train] device", "'cuda' when gpus_per_trial > 0", t.device)
    # Tune waits for ever for resources no node has: a local Ray has exactly num_cpus/num_gpus (a joined
    # cluster is checked after connecting, in preflight.check_cluster).
    if cfg.ray_address is None:
        _check(
            s,
            res.cpus_per_trial <= res.num_cpus,
            "[resources] cpus_per_trial",
            f"in (0, num_cpus={res.num_cpus}] (a local Ray has num_cpus CPUs)",
            res.cpus_per_trial,
        )
        _check(
            s,
            res.gpus_per_trial <= res.num_gpus,
            "[resources] gpus_per_trial",
            f"at most num_gpus={res.num_gpus} (a local Ray has num_gpus GPUs)",
            res.gpus_per_trial,
        )
    _check_metric(cfg)
    return cfg


def _check_bounds(s: str, bounds: dict) -> None:
    """`[search.bounds]`: known parameters, each `[low, high]`, low < high (and low > 0 for a log range)."""
    for name, value in bounds.items():
        key = f"[search.bounds] {name}"
        if name not in BOUNDABLE:
            raise StudyFileError(
                f"{s}: unknown key {key}; expected one of {sorted(BOUNDABLE)} (the searched parameters)."
            )
        kind = BOUNDABLE[name]
        numbers = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and all(math.isfinite(v) for v in value)
        )
        _check(s, numbers, key, "[low, high], two finite numbers", value)
        low, high = value
        _check(s, low < high, key, "[low, high] with low < high", value)
        if kind == "log":
            _check(s, low > 0, key, "[low, high] with low > 0 (searched log-uniform)", value)
        elif kind == "fraction":
            _check(s, 0 < low and high < 1, key, "[low, high] within (0, 1)", value)
        elif kind == "int":
            _check(
                s,
                all(float(v).is_integer() for v in value) and low >= 1,
                key,
                "[low, high], whole epochs >= 1",
                value,
            )


def metric_name(metric: str) -> str:
    """The name a metric is printed by: "accuracy", "loss", or a user function's name ("mae")."""
    return metric.rpartition(":")[2]


def metric_mode(train: TrainSection) -> str:
    """The metric's direction: the study's `metric_mode`, else the built-in metric's own."""
    return train.metric_mode or METRICS.get(train.metric, "")


def _check_metric(cfg: StudyConfig) -> None:
    s, t = cfg.source, cfg.train
    for key, value, names in (("loss", t.loss, LOSSES), ("metric", t.metric, tuple(METRICS))):
        _check(
            s, value in names or ":" in value, f"[train] {key}", f"one of {names} or 'pkg.module:fn'", value
        )
    _check(s, t.metric_mode in ("", *METRIC_MODES), "[train] metric_mode", "'max' or 'min'", t.metric_mode)
    if t.metric not in METRICS and not t.metric_mode:
        raise StudyFileError(
            f"{s}: [train] metric_mode must be set for a custom metric ({t.metric!r}): "
            "'max' if higher is better, 'min' if lower is better."
        )
    own = METRICS.get(t.metric)
    _check(s, own in (None, metric_mode(t)), "[train] metric_mode", f"{own!r} for {t.metric}", t.metric_mode)
    _check(
        s,
        t.metric != "accuracy" or t.loss != "mse",
        "[train] metric",
        "'loss' or your own metric with loss = \"mse\" (accuracy needs class labels)",
        t.metric,
    )
    if cfg.target is not None and t.metric == "accuracy":
        _check(s, 0 < cfg.target <= 1, "target", "a fraction in (0, 1] for accuracy", cfg.target)


def load_study(path: str | Path | None = None) -> StudyConfig:
    """Read and validate a study file; `None` gives the default study (studies/mnist1d.toml's values).

    Example:
        >>> cfg = load_study("studies/smoke.toml")
        >>> cfg.train.epochs
    """
    if path is None:
        return validate(StudyConfig(name="mnist1d"))
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise StudyFileError(f"{source}: study file not found.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise StudyFileError(f"{source}: not valid TOML ({e}).") from None
    except UnicodeDecodeError as e:
        raise StudyFileError(
            f"{source}: not UTF-8 text (byte {e.start}); TOML files must be UTF-8."
        ) from None
    except OSError as e:
        raise StudyFileError(f"{source}: cannot read the study file ({e.strerror}).") from None
    values: dict[str, Any] = {"source": source}
    for key, value in raw.items():
        if key in _SECTIONS:
            values[key] = _section(source, key, _SECTIONS[key], value)
        elif key in _TOP:
            values[key] = _coerce(source, key, value, 0.0 if _TOP[key] is float else "")
            if key == "target_accuracy":  # the name before any metric could be chosen
                if "target" in raw:
                    raise StudyFileError(f"{source}: give target or target_accuracy, not both.")
                values["target"] = values.pop(key)
        else:
            raise StudyFileError(
                f"{source}: unknown key {key}; expected one of {sorted([*_SECTIONS, *_TOP])}."
            )
    values.setdefault("name", path.stem)
    return validate(StudyConfig(**values))
