"""`[data] train_fraction`: a stratified, seeded part of the training split with val/test unchanged, its
study-file and command-line checks, and a study that runs on it and records it."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sched_search.cli import main
from sched_search.config import StudyFileError
from sched_search.study.studyfile import load_study, with_train_fraction
from sched_search.training import LoaderData, TensorData, load_data, subsample_train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist1d() -> TensorData:
    return load_data("mnist1d")


# --- the subsample ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_subsample_is_stratified_within_one_example_per_class(mnist1d: TensorData, fraction: float) -> None:
    small = subsample_train(mnist1d, fraction, seed=0)
    full_counts = torch.bincount(mnist1d.y_train, minlength=10)
    counts = torch.bincount(small.y_train, minlength=10)
    assert ((counts - fraction * full_counts).abs() <= 1).all(), (counts, full_counts)
    assert abs(len(small.y_train) - fraction * len(mnist1d.y_train)) <= 10  # one example per class at most
    # every kept example is one of the training split's, inputs and label together
    rows = {tuple(r.tolist()) + (int(y),) for r, y in zip(mnist1d.x_train, mnist1d.y_train, strict=True)}
    assert all(
        tuple(r.tolist()) + (int(y),) in rows for r, y in zip(small.x_train, small.y_train, strict=True)
    )
    assert len({tuple(r.tolist()) for r in small.x_train}) == len(small.x_train)  # no example twice


def test_subsample_is_seeded(mnist1d: TensorData) -> None:
    a, b = subsample_train(mnist1d, 0.25, seed=0), subsample_train(mnist1d, 0.25, seed=0)
    c = subsample_train(mnist1d, 0.25, seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.x_train.shape == c.x_train.shape and not torch.equal(a.x_train, c.x_train)


def test_subsample_leaves_val_and_test_unchanged(mnist1d: TensorData) -> None:
    small = subsample_train(mnist1d, 0.1, seed=3)
    for split in ("x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(small, split), getattr(mnist1d, split)), split
    assert small.num_classes == mnist1d.num_classes and small.name == mnist1d.name


def test_smaller_fractions_nest_inside_larger_ones(mnist1d: TensorData) -> None:
    rows = {f: {tuple(r.tolist()) for r in subsample_train(mnist1d, f, 0).x_train} for f in (0.1, 0.25, 0.5)}
    assert rows[0.1] < rows[0.25] < rows[0.5]


def test_fraction_one_is_the_data_itself_and_out_of_range_is_refused(mnist1d: TensorData) -> None:
    assert subsample_train(mnist1d, 1.0) is mnist1d
    for bad in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\]"):
            subsample_train(mnist1d, bad)


def test_load_data_draws_with_the_split_seed() -> None:
    full = load_data("digits", split_seed=2)
    small = load_data("digits", split_seed=2, train_fraction=0.5)
    assert torch.equal(small.x_train, subsample_train(full, 0.5, seed=2).x_train)
    assert not torch.equal(small.x_train, subsample_train(full, 0.5, seed=0).x_train)
    assert torch.equal(small.x_val, full.x_val)


def test_regression_targets_are_subsampled_unstratified() -> None:
    x = torch.arange(100, dtype=torch.float32)[:, None]
    data = TensorData(x, x[:, 0] * 2, x[:5], x[:5, 0], x[:5], x[:5, 0], num_classes=1, name="reg")
    small = subsample_train(data, 0.3, seed=0)
    assert len(small.y_train) == 30 and torch.equal(small.y_train, small.x_train[:, 0] * 2)


def loaders() -> LoaderData:
    batches = [(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64))]
    return LoaderData(train=lambda: batches, val=lambda: batches, num_outputs=2)


def test_loader_data_is_refused_with_a_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    with pytest.raises(TypeError, match="train_fraction = 0.5 needs tensor data"):
        load_data("test_train_fraction:loaders", train_fraction=0.5)
    assert isinstance(load_data("test_train_fraction:loaders"), LoaderData)


# --- the study file and the command line --------------------------------------------------------------------


def study_file(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(f'name = "s"\n[data]\nname = "digits"\n{data}\n'))
    return path


@pytest.mark.parametrize("value", ["0", "1.5", "-0.25", '"half"', "true"])
def test_bad_train_fraction_names_key_and_file(tmp_path: Path, value: str) -> None:
    path = study_file(tmp_path, f"train_fraction = {value}")
    with pytest.raises(StudyFileError) as err:
        load_study(path)
    message = str(err.value)
    assert message.startswith(f"{path}: [data] train_fraction must be") and "\n" not in message


def test_train_fraction_reads_and_defaults_to_one(tmp_path: Path) -> None:
    assert load_study(study_file(tmp_path, "train_fraction = 0.25")).data.train_fraction == 0.25
    assert load_study(study_file(tmp_path, "")).data.train_fraction == 1.0
    assert load_study(ROOT / "studies" / "smoke.toml").data.train_fraction == 1.0


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_bad_train_fraction_flag_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, value: str
) -> None:
    path = study_file(tmp_path, "")
    assert main(["study", str(path), "--train-fraction", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path} (--train-fraction {float(value)})")
    assert "[data] train_fraction must be a fraction in (0, 1]" in err[0]


def test_train_fraction_flag_is_refused_with_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["study", "--resume", str(tmp_path), "--train-fraction", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--train-fraction starts a new study" in err[0]


@pytest.mark.parametrize(
    "text",
    [
        'name = "x"\n',
        'name = "x"\n[data]\nname = "digits"\n[model]\nname = "mlp"\n',
        'name = "x"\n[data]  # the data\nname = "digits"\ntrain_fraction = 0.5\n[train]\nepochs = 6\n',
    ],
)
def test_with_train_fraction_sets_the_key_once(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(with_train_fraction(text, 0.1))
    cfg = load_study(path)
    assert cfg.data.train_fraction == 0.1
    assert path.read_text().count("train_fraction") == 1
    original = tmp_path / "o.toml"
    original.write_text(text)
    assert replace(load_study(original), data=cfg.data, source=cfg.source) == cfg  # nothing else changed


def test_loader_factory_with_a_fraction_is_one_study_file_error(tmp_path: Path) -> None:
    from sched_search.study.preflight import load_checked_data

    path = tmp_path / "r.toml"
    path.write_text(
        'name = "r"\n[data]\nname = "friedman:loaders"\ntrain_fraction = 0.5\n'
        '[train]\nloss = "friedman:huber"\nmetric = "friedman:mae"\nmetric_mode = "min"\n'
    )
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        with pytest.raises(StudyFileError) as err:
            load_checked_data(load_study(path))
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert str(err.value).startswith(f"{path}: [data] train_fraction = 0.5 needs tensor data")


# --- a study on a quarter of the data -----------------------------------------------------------------------


@pytest.mark.slow
def test_study_on_a_quarter_of_the_training_split_runs_and_records_it(tmp_path: Path, ray_local) -> None:
    from sched_search.study.driver import run_study

    smoke = load_study(ROOT / "studies" / "smoke.toml")
    cfg = replace(
        smoke,
        runs_dir=str(tmp_path),
        data=replace(smoke.data, train_fraction=0.25),  # as --train-fraction 0.25 passes it
        search=replace(smoke.search, arms=("one_cycle-adamw",), trials_per_arm=1, budgets=(1.0,)),
        range_test=replace(smoke.range_test, weight_decays=(0.0,)),
    )
    run_dir = run_study(cfg, echo=lambda _: None)
    resolved = json.loads((run_dir / "resolved_config.json").read_text())
    n_train = len(subsample_train(load_data("digits"), 0.25).y_train)
    assert n_train == 315  # of 1,259
    assert resolved["study"]["data"]["train_fraction"] == 0.25
    assert resolved["n_train"] == n_train and resolved["n_val"] == 269
    assert resolved["steps_per_epoch"] == n_train // 64
    # the range test swept the smaller set; the run folder's study file keeps the fraction for a resume
    assert json.loads((run_dir / "range_test_adamw.json").read_text())["data"]["n_train"] == n_train
    assert load_study(run_dir / "study.toml").data.train_fraction == 0.25
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert set(verdict["arms"]) == {"one_cycle-adamw", "constant-adam"}


@pytest.mark.parametrize("path", sorted((ROOT / "studies" / "claims").glob("*.toml")), ids=lambda p: p.stem)
def test_claims_studies_load_and_search_alike(path: Path) -> None:
    cfg = load_study(path)  # benchmarks/claims.py runs them (docs/claims.md)
    assert cfg.search.seeds == (0, 1, 2) and cfg.data.train_fraction == 1.0
    if path.stem.startswith("restarts"):
        assert {"sgdr-adamw", "sgdr-sgdw", "one_cycle-sgdw", "cosine-sgdw"} <= set(cfg.search.arms)
        assert cfg.search.bounds["weight_decay"] == [1e-6, 1e-2]
