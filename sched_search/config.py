"""A study's settings: one frozen dataclass per study-file section, with their defaults and the names they
may take (arms, data sets, models, metrics). `studyfile.py` reads a study file into them and checks every
value."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The arms a study may name are the schedule families' (`lr.families.ARMS`, from each schedule's spec).
BASELINE_ARM = "constant-adam"
# Recipes users run today in one training, on every seed (arms.baseline_config); default:adam's arm is still
# constant-adam. docs/workflow.md measures each on MNIST-1D.
BASELINES = (
    "default:adam",
    "default:adamw-cosine",
    "default:schedule_free",
    "default:prodigy",
    "default:lr_find-one_cycle",
)
# Baselines set by a range test, no search: the arm whose first point (its range test's reading) they train
# (fastai's lr_find + fit_one_cycle); a study without that range test skips them (study.search.baseline_runs).
RANGE_TEST_BASELINES = {"default:lr_find-one_cycle": "one_cycle-adamw"}
# the default study's arms: the seed paper's three schedules, each with AdamW and SGDW
DEFAULT_ARMS = tuple(f"{s}-{o}" for s in ("clr", "sgdr", "one_cycle") for o in ("adamw", "sgdw"))
# Built-in data sets (data.load_data) and models (models.build_model).
DATASETS = ("mnist1d", "digits", "synthetic", "cifar10")
MODELS = ("mlp", "cnn1d", "cnn", "resnet")
# Upper bounds that catch a typo (epochs = 1e12) before it runs for ever; far above any study this tool is
# for.
MAX_EPOCHS = 100_000
MAX_TRIALS_PER_ARM = 10_000
SAMPLER_NAMES = ("tpe", "gp", "random", "qmc")
# The default study's budget in trainings, measured (docs/workflow.md, "Racing"): 570 epochs of 20.
DEFAULT_BUDGET = 28.0
FULL_BUDGET = "full"  # [search] budget: no racing, every planned run
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
    # (0, 1]: a stratified subsample of the training split, drawn with the split seed; val/test unchanged
    train_fraction: float = 1.0


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
    budgets: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0)  # fractions of epochs: the budget ladder
    baseline_lr: float = 3e-4  # constant-LR Adam baseline
    baselines: tuple[str, ...] = BASELINES  # one-training recipes on every seed, full budget; from BASELINES
    attribution: bool = True  # the attribution ladder's runs (search.ladder_runs) on every seed, full budget
    sampler: str = "gp"  # gp | tpe | random | qmc: Optuna's samplers (sampler.py), one seed stream per arm
    space: str = "seeded"  # seeded: bounds from the range test | broad: BROAD_SPACE, no range test
    bounds: dict = field(default_factory=dict)  # [search.bounds] name = [low, high]: overrides either space
    # trainings (one = a full-length run of the study's epochs; range tests count by their steps) spent by
    # racing (study/racing.py), or "full": every search trial, seed, rung and baseline, as before budgets
    budget: float | str = DEFAULT_BUDGET


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


def metric_name(metric: str) -> str:
    """The name a metric is printed by: "accuracy", "loss", or a user function's name ("mae")."""
    return metric.rpartition(":")[2]


def metric_mode(train: TrainSection) -> str:
    """The metric's direction: the study's `metric_mode`, else the built-in metric's own."""
    return train.metric_mode or METRICS.get(train.metric, "")
