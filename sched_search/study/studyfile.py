"""Reading a study file: TOML parsed with tomllib into `config`'s frozen dataclasses, every value checked
before any work starts.

Every error names the file, the key and what was expected, e.g.
`studies/x.toml: [train] epochs must be an integer >= 1, but got 0.`
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import (
    AUGMENTATIONS,
    BASELINES,
    DATASETS,
    FULL_BUDGET,
    LOSSES,
    MAX_EPOCHS,
    MAX_NAME,
    MAX_TRIALS_PER_ARM,
    METRIC_MODES,
    METRICS,
    MODELS,
    PRECISIONS,
    SAMPLER_NAMES,
    SEED_LIMIT,
    SPACES,
    DataSection,
    EarlyStoppingSection,
    ModelSection,
    RangeTestSection,
    ResourcesSection,
    SearchSection,
    StudyConfig,
    StudyFileError,
    TrainSection,
    metric_mode,
)
from ..lr import ARMS, BOUNDABLE

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
        if key == "budget":  # a number of trainings or "full": two types, checked in `validate`
            if value != FULL_BUDGET and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _fail(source, f"[{name}] {key}", BUDGET_EXPECTED, value)
            values[key] = float(value) if value != FULL_BUDGET else value
            continue
        values[key] = _coerce(source, f"[{name}] {key}", value, default)
    if extra:
        values["options"] = {**values.get("options", {}), **extra}
    return cls(**values)


BUDGET_EXPECTED = f'a number of trainings > 0 or "{FULL_BUDGET}"'


def _check(source: str, ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise _fail(source, key, expected, value)


def validate(cfg: StudyConfig) -> StudyConfig:
    """Reject impossible values, naming the file and key: each section in file order, then the metric."""
    _check_names(cfg)
    _check_train(cfg.source, cfg.train)
    _check_search(cfg.source, cfg.search)
    _check_stopping_and_range_test(cfg)
    _check_resources(cfg)
    _check_metric(cfg)
    return cfg


def _check_names(cfg: StudyConfig) -> None:
    """The study's name and runs folder, `[data]` and `[model]`."""
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
    f = cfg.data.train_fraction
    _check(s, 0 < f <= 1, "[data] train_fraction", "a fraction in (0, 1]", f)
    _check(
        s,
        cfg.model.name in MODELS or ":" in cfg.model.name,
        "[model] name",
        f"one of {', '.join(MODELS)} or 'package.module:factory'",
        cfg.model.name,
    )


def _check_train(s: str, t: TrainSection) -> None:
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


def _check_search(s: str, q: SearchSection) -> None:
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
    _check(
        s,
        q.budget == FULL_BUDGET or (isinstance(q.budget, float) and math.isfinite(q.budget) and q.budget > 0),
        "[search] budget",
        BUDGET_EXPECTED,
        q.budget,
    )


def _check_stopping_and_range_test(cfg: StudyConfig) -> None:
    s, t = cfg.source, cfg.train
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


def _check_resources(cfg: StudyConfig) -> None:
    s, t = cfg.source, cfg.train
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
        elif kind == "share":
            _check(s, 0 <= low and high < 1, key, "[low, high] within [0, 1)", value)
        elif kind == "int":
            _check(
                s,
                all(float(v).is_integer() for v in value) and low >= 1,
                key,
                "[low, high], whole epochs >= 1",
                value,
            )


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


def with_train_fraction(text: str, fraction: float) -> str:
    r"""A study file's text with `[data] train_fraction = fraction` (`--train-fraction` on the command line):
    set in its `[data]` table, or a table added at the end. The run folder keeps this text, so a resumed
    study runs on the same part of the data.

    Example:
        >>> print(with_train_fraction('name = "x"\n[data]\nname = "digits"\n', 0.25), end="")
        name = "x"
        [data]
        train_fraction = 0.25  # --train-fraction
        name = "digits"
    """
    line = f"train_fraction = {float(fraction)!r}  # --train-fraction"
    lines = text.splitlines()
    header = next((i for i, t in enumerate(lines) if re.fullmatch(r"\s*\[\s*data\s*\]\s*(#.*)?", t)), None)
    if header is None:
        return "\n".join([*lines, "", "[data]", line]) + "\n"
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    body = [t for t in lines[header + 1 : end] if not re.match(r"\s*train_fraction\s*=", t)]
    return "\n".join([*lines[: header + 1], line, *body, *lines[end:]]) + "\n"


def load_study(path: str | Path | None = None) -> StudyConfig:
    """Read and validate a study file; `None` gives the default study (studies/mnist1d.toml's values).

    Example:
        >>> cfg = load_study("studies/smoke.toml")
        >>> cfg.train.epochs
        4
    """
    if path is None:
        return validate(StudyConfig(name="mnist1d"))
    path = Path(path)
    source = str(path)
    if path.is_dir():
        hint = f" (a run folder: --resume {source} finishes it)" if (path / "study.toml").is_file() else ""
        raise StudyFileError(f"{source}: is a folder; give a study file (.toml){hint}.")
    if not path.is_file():
        raise StudyFileError(f"{source}: study file not found.")
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not TOML, and nothing else in the file
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
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
    try:
        return validate(StudyConfig(**values))
    except StudyFileError as e:
        if "target_accuracy" in raw and str(e).startswith(f"{source}: target "):  # name the key as written
            raise StudyFileError(str(e).replace(": target ", ": target_accuracy ", 1)) from None
        raise


__all__ = ["load_study", "validate", "with_train_fraction"]
