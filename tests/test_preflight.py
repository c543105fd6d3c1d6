"""Every input is checked before any work: a bad study exits 2 with one line naming the file, the key, the
value and the expectation, no traceback, no run folder, no range test and no Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sched_search.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"


def _study(
    tmp_path: Path, top: str = "", replace: dict[str, str] | None = None, runs_dir: str | None = None
) -> Path:
    """The smoke study with lines replaced (`old line -> new lines`), top-level keys first, runs under
    tmp_path."""
    text = SMOKE.read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bad.toml"
    runs = runs_dir if runs_dir is not None else str(tmp_path / "runs")
    path.write_text(f"runs_dir = {runs!r}\n{top}\n{text}".replace("'", '"'))
    return path


def _refused(capsys: pytest.CaptureFixture, tmp_path: Path, path: Path, *words: str) -> str:
    rc = main(["study", str(path)])
    out, err = capsys.readouterr()
    assert rc == 2, out + err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line
    assert str(path) in err and "Traceback" not in err + out
    for word in words:
        assert word in err, (word, err)
    assert not list((tmp_path / "runs").glob("*")), "a run folder was created for a study that never started"
    return err


FACTORIES = """
import torch
from sched_search.training.data import load_digits, TensorData

def shifted():
    d = load_digits()
    return TensorData(d.x_train, d.y_train + 1, d.x_val, d.y_val, d.x_test, d.y_test, 10, "shifted")

def numpy_splits():
    d = load_digits()
    n = lambda t: t.numpy()  # noqa: E731
    return TensorData(n(d.x_train).astype("float64"), n(d.y_train).astype("int32"), n(d.x_val), n(d.y_val),
                      n(d.x_test), n(d.y_test), 10, "numpy")

def float64_tensors():
    d = load_digits()
    x = [t.double() for t in (d.x_train, d.x_val, d.x_test)]
    return TensorData(x[0], d.y_train, x[1], d.y_val, x[2], d.y_test, 10, "f64")

def list_labels():
    d = load_digits()
    return TensorData(d.x_train, d.y_train, d.x_val, d.y_val.tolist(), d.x_test, d.y_test, 10, "lists")

def broken(size=10):
    raise RuntimeError("disk on fire")

def net(input_shape, num_classes, width=8):
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, width), torch.nn.Linear(width, num_classes)
    )

from torch.utils.data import DataLoader, TensorDataset
from sched_search.training.data import LoaderData

def _reg(n):
    x = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, x[:, 0])

def not_data():
    return {"train": [1, 2]}

def regression():
    return LoaderData(lambda: DataLoader(_reg(64), 16), lambda: DataLoader(_reg(32), 16), num_outputs=1)

def empty_val():
    return LoaderData(lambda: DataLoader(_reg(64), 16), lambda: DataLoader(_reg(0), 16), num_outputs=1)

def not_callable():
    return LoaderData(DataLoader(_reg(64), 16), lambda: DataLoader(_reg(32), 16), num_outputs=1)

def text_metric(outputs, targets):
    return "good"

def unreduced(outputs, targets):
    return (outputs.squeeze(-1) - targets) ** 2

def _digits(**changes):
    d = load_digits()
    parts = dict(x_train=d.x_train, y_train=d.y_train, x_val=d.x_val, y_val=d.y_val, x_test=d.x_test,
                 y_test=d.y_test, num_classes=10, name="changed")
    return TensorData(**{**parts, **changes})

def one_class():
    d = load_digits()
    return _digits(y_train=d.y_train * 0, y_val=d.y_val * 0, y_test=d.y_test * 0, num_classes=1)

def empty_test():
    d = load_digits()
    return _digits(x_test=d.x_test[:0], y_test=d.y_test[:0])

def short_labels():
    d = load_digits()
    return _digits(y_val=d.y_val[:-1])

def float_labels():
    d = load_digits()
    return _digits(y_train=d.y_train.float())

def one_too_many(input_shape, num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes + 1))

def _steps(n):  # a regression over loaders, no test split, `n` batches per epoch said outright
    return LoaderData(lambda: DataLoader(_reg(64), 16), lambda: DataLoader(_reg(32), 16), num_outputs=1,
                      steps_per_epoch=n)

def one_step():
    return _steps(1)

def no_steps():
    return _steps(0)

class _Stream:  # an iterable with no len()
    def __iter__(self):
        return iter(DataLoader(_reg(64), 16))

def unsized():
    return LoaderData(_Stream, lambda: DataLoader(_reg(32), 16), num_outputs=1)

def unsplittable():
    return LoaderData(lambda: [torch.zeros(16, 64)], lambda: DataLoader(_reg(32), 16), num_outputs=1)
"""
REGRESSION = {
    'name = "digits"': 'name = "pf_factories:regression"',
    "batch_size = 64": 'batch_size = 64\nloss = "mse"\nmetric = "loss"',
}

CASES = [
    # (id, top-level lines, {old line: new lines}, words the message must hold)
    ("seeds<0", "", {"seeds = [0, 1, 2]": "seeds = [-1]"}, ["[search] seeds", "[-1]", "[0, 2**32)"]),
    ("seeds>=2**32", "", {"seeds = [0, 1, 2]": "seeds = [4294967296]"}, ["[search] seeds", "[0, 2**32)"]),
    (
        "budgets repeat",
        "",
        {"budgets = [0.5, 1.0]": "budgets = [0.5, 0.5, 1.0]"},
        ["[search] budgets", "distinct"],
    ),
    (
        "gpus<0",
        "",
        {"cpus_per_trial = 1": "cpus_per_trial = 1\ngpus_per_trial = -1"},
        ["[resources] gpus_per_trial", "-1.0"],
    ),
    (
        "gpus>num_gpus",
        "",
        {
            "cpus_per_trial = 1": "cpus_per_trial = 1\ngpus_per_trial = 1",
            "batch_size = 64": 'batch_size = 64\ndevice = "cuda"',
        },
        ["[resources] gpus_per_trial", "num_gpus=0"],
    ),
    (
        "cpus>num_cpus",
        "",
        {"cpus_per_trial = 1": "cpus_per_trial = 64"},
        ["[resources] cpus_per_trial", "num_cpus=2"],
    ),
    (
        "epochs huge",
        "",
        {"epochs = 4": "epochs = 1000000000000"},
        ["[train] epochs", "1000000000000", "1..100000"],
    ),
    ("epochs float", "", {"epochs = 4": "epochs = 1e12"}, ["[train] epochs", "an integer"]),
    (
        "trials huge",
        "",
        {"trials_per_arm = 2": "trials_per_arm = 100000000"},
        ["[search] trials_per_arm", "1..10000"],
    ),
    (
        "baseline_lr inf",
        "",
        {"seeds = [0, 1, 2]": "seeds = [0, 1, 2]\nbaseline_lr = inf"},
        ["[search] baseline_lr", "inf", "finite"],
    ),
    ("name 300", f'name = "{"x" * 300}"', {'name = "smoke"\n': ""}, ["name", "at most 100 characters"]),
    ("hidden<0", "", {"hidden = 64": "hidden = -5"}, ["[model]", "'hidden': -5", "negative dimension"]),
    (
        "model option misspelt",
        "",
        {"hidden = 64": "hiden = 64"},
        ["[model] hiden", "'mlp'", "'hidden', 'depth'"],
    ),
    (
        "data option misspelt",
        "",
        {'name = "digits"': 'name = "digits"\nsplit_sed = 3'},
        ["[data] split_sed", "'digits'", "split_seed"],
    ),
    (
        "batch > data",
        "",
        {"batch_size = 64": "batch_size = 100000"},
        ["[train] batch_size", "1259", "100000"],
    ),
    (
        "labels outside",
        "",
        {'name = "digits"': 'name = "pf_factories:shifted"'},
        ["[data] name", "pf_factories:shifted", "[1, 10]", "[0, 10)"],
    ),
    (
        "data factory raises",
        "",
        {'name = "digits"': 'name = "pf_factories:broken"'},
        ["[data]", "pf_factories:broken", "RuntimeError: disk on fire"],
    ),
    (
        "data factory misspelt",
        "",
        {'name = "digits"': 'name = "pf_factories:broken"\nsise = 3'},
        ["[data] sise", "'size'"],
    ),
    (
        "model factory misspelt",
        "",
        {'name = "mlp"\nhidden = 64': 'name = "pf_factories:net"\nwidht = 4'},
        ["[model] widht", "'width'"],
    ),
    (
        "factory returns a dict",
        "",
        {'name = "digits"': 'name = "pf_factories:not_data"'},
        ["[data] name", "returned dict", "TensorData or sched_search.LoaderData"],
    ),
    (
        "loader yields nothing",
        "",
        {**REGRESSION, 'name = "digits"': 'name = "pf_factories:empty_val"'},
        ["[data] name", "LoaderData.val", "yielded no batches"],
    ),
    (
        "loader not callable",
        "",
        {**REGRESSION, 'name = "digits"': 'name = "pf_factories:not_callable"'},
        [
            "[data] name = 'pf_factories:not_callable': LoaderData.train is a DataLoader; expected a ",
            "expected a zero-argument callable returning a DataLoader (e.g. lambda: DataLoader(...)).",
        ],
    ),
    (
        "metric not a number",
        "",
        {
            **REGRESSION,
            "batch_size = 64": 'batch_size = 64\nloss = "mse"\nmetric = "pf_factories:text_metric"'
            '\nmetric_mode = "min"',
        },
        ["[train] metric", "pf_factories:text_metric", "returned str", "a number"],
    ),
    (
        "custom metric without mode",
        "",
        {
            **REGRESSION,
            "batch_size = 64": 'batch_size = 64\nloss = "mse"\nmetric = "pf_factories:text_metric"',
        },
        ["[train] metric_mode", "custom metric", "'min' if lower is better"],
    ),
    (
        "loss not reduced",
        "",
        {
            **REGRESSION,
            "batch_size = 64": 'batch_size = 64\nloss = "pf_factories:unreduced"\nmetric = "loss"',
        },
        ["[train] loss", "finite scalar tensor", "(16,)"],
    ),
    (
        "accuracy of a regression",
        "",
        {'name = "digits"': 'name = "pf_factories:regression"'},
        ["[train] metric", "'accuracy' needs integer class targets", "torch.float32"],
    ),
    (
        "augment loaders",
        "",
        {**REGRESSION, "epochs = 4": 'epochs = 4\naugment = "crop_flip"'},
        [
            "[train] augment = 'crop_flip' works on tensor data only; 'pf_factories:regression' gives ",
            "gives loaders: augment in its Dataset or DataLoader instead.",
        ],
    ),
    (
        "attribution not a boolean",
        "",
        {"attribution = false": 'attribution = "yes"'},
        ["[search] attribution", "true or false", "'yes'"],
    ),
    (
        "no such module",
        "",
        {'name = "mlp"': 'name = "no_such_module:net"'},
        ["[model] name", "no_such_module"],
    ),
]


@pytest.mark.parametrize(("top", "replace", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    top: str,
    replace: dict,
    words: list[str],
) -> None:
    import ray

    (tmp_path / "pf_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    was_running = ray.is_initialized()
    _refused(capsys, tmp_path, _study(tmp_path, top, replace), *words)
    assert ray.is_initialized() == was_running


# checked by calling check_study itself: with a check missing the study would start, not fail
DATA_CASES = [
    (
        "one class",
        {'name = "digits"': 'name = "pf_factories:one_class"'},
        ["[data] name", "pf_factories:one_class", "num_classes = 1", "integer >= 2"],
    ),
    (
        "empty split",
        {'name = "digits"': 'name = "pf_factories:empty_test"'},
        ["[data] name", "the test split has 0 inputs and 0 labels", "at least 1"],
    ),
    (
        "labels short of inputs",
        {'name = "digits"': 'name = "pf_factories:short_labels"'},
        ["[data] name", "the val split has", "expected the same number"],
    ),
    (
        "float labels",
        {'name = "digits"': 'name = "pf_factories:float_labels"'},
        ["[data] name", "y_train has dtype torch.float32", "integer class labels"],
    ),
    (
        "no batches per epoch",
        {**REGRESSION, 'name = "digits"': 'name = "pf_factories:no_steps"'},
        ["[data] name = 'pf_factories:no_steps': the training loader has 0 batches per epoch."],
    ),
    (
        "loader without len",
        {**REGRESSION, 'name = "digits"': 'name = "pf_factories:unsized"'},
        ["[data] name = 'pf_factories:unsized': the training loader (_Stream) has no len(): set LoaderData("],
    ),
    (
        "batch without targets",
        {**REGRESSION, 'name = "digits"': 'name = "pf_factories:unsplittable"'},
        ["[data] name = 'pf_factories:unsplittable': LoaderData.train: ValueError: cannot split a batch"],
    ),
    (
        "model output shape",
        {'name = "mlp"\nhidden = 64': 'name = "pf_factories:one_too_many"'},
        ["[model] name", "pf_factories:one_too_many", "to shape (2, 11)", "(2, num_classes=10)"],
    ),
]


@pytest.mark.parametrize(("replace", "words"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_data_or_model_is_refused_by_check_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replace: dict, words: list[str]
) -> None:
    from sched_search.config import StudyFileError
    from sched_search.study.preflight import check_study
    from sched_search.study.studyfile import load_study

    (tmp_path / "pf_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _study(tmp_path, replace=replace)
    with pytest.raises(StudyFileError) as refused:
        check_study(load_study(path))
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_loaders_with_one_batch_per_epoch_and_no_test_split_pass(tmp_path: Path, monkeypatch) -> None:
    from sched_search.study.preflight import check_study
    from sched_search.study.studyfile import load_study

    (tmp_path / "pf_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = check_study(
        load_study(
            _study(tmp_path, replace={**REGRESSION, 'name = "digits"': 'name = "pf_factories:one_step"'})
        )
    )
    assert data.test is None and data.steps_per_epoch == 1


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:", ":6379", "127.0.0.1:port", "ray://"])
def test_malformed_address_is_refused_without_trying_it(address: str) -> None:
    """Refused by its form, before any connection (Ray would retry a bad address for minutes); the study
    turns this ClusterError into rc 2 with its message (test_study's dead-address test)."""
    from sched_search.study.preflight import ClusterError, probe_address

    with pytest.raises(ClusterError) as refused:
        probe_address(address)
    assert str(refused.value) == f"Ray address {address!r} must be host:port (e.g. 127.0.0.1:6379) or 'auto'."


def test_cuda_on_a_cpu_torch_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = _study(tmp_path, replace={"batch_size = 64": 'batch_size = 64\ndevice = "cuda"'})
    _refused(capsys, tmp_path, path, "[train] device", "'cuda'", "CPU-only", "'cpu'")


def test_runs_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "afile").write_text("")
    path = _study(tmp_path, runs_dir=str(tmp_path / "afile" / "runs"))
    _refused(capsys, tmp_path, path, "runs_dir", "is a file", "afile")


def test_unwritable_runs_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _study(tmp_path, runs_dir="/proc/sched_search_runs")  # read-only even for root
    _refused(capsys, tmp_path, path, "runs_dir", "writable", "/proc")


def test_non_utf8_study_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    _refused(capsys, tmp_path, path, "not UTF-8", "byte 11")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    from sched_search.study.studyfile import load_study

    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + SMOKE.read_bytes())
    assert load_study(path).name == "smoke"


def test_a_folder_given_as_the_study_file_is_named_a_folder(tmp_path: Path, capsys) -> None:
    run = tmp_path / "smoke-20260101-120000"
    run.mkdir()
    _refused(capsys, tmp_path, tmp_path, f"{tmp_path}: is a folder; give a study file (.toml).")
    (run / "study.toml").write_text(SMOKE.read_text())
    _refused(
        capsys, tmp_path, run, f"is a folder; give a study file (.toml) (a run folder: --resume {run} fin"
    )


def test_numpy_arrays_and_float64_inputs_are_converted(tmp_path: Path, monkeypatch) -> None:
    """The scikit-learn idiom (numpy splits, float64 features, int32 labels) and float64 tensors: the study's
    checks pass and the trials get float32 inputs and int64 labels."""
    import torch

    from sched_search.study.preflight import check_study
    from sched_search.study.studyfile import load_study

    (tmp_path / "pf_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    for factory in ("numpy_splits", "float64_tensors"):
        data = check_study(
            load_study(_study(tmp_path, replace={'name = "digits"': f'name = "pf_factories:{factory}"'}))
        )
        assert (data.x_train.dtype, data.y_train.dtype, data.x_test.dtype) == (
            torch.float32,
            torch.int64,
            torch.float32,
        )
        assert data.x_train.shape == (1259, 64), factory


def test_a_tensordata_field_of_another_type_is_refused_naming_it(tmp_path: Path, monkeypatch) -> None:
    from sched_search.config import StudyFileError
    from sched_search.study.preflight import check_study
    from sched_search.study.studyfile import load_study

    (tmp_path / "pf_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _study(tmp_path, replace={'name = "digits"': 'name = "pf_factories:list_labels"'})
    with pytest.raises(StudyFileError) as refused:
        check_study(load_study(path))
    assert str(refused.value).endswith(
        "'pf_factories:list_labels': TensorData.y_val is a list; expected a torch.Tensor or a numpy array "
        "(e.g. torch.as_tensor(...))."
    ), refused.value


def test_refusal_through_the_process_has_no_traceback(tmp_path: Path) -> None:
    """The real command line, as a user runs it: rc 2, one line on stderr, no folder, in seconds."""
    path = _study(tmp_path, replace={"seeds = [0, 1, 2]": "seeds = [-1]"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "sched_search", "study", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "[search] seeds" in done.stderr and done.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_run_folders_of_one_second_are_distinct(tmp_path: Path) -> None:
    from dataclasses import replace

    from sched_search.study.driver import new_run_dir
    from sched_search.study.studyfile import load_study

    cfg = replace(load_study(SMOKE), runs_dir=str(tmp_path))
    paths = [new_run_dir(cfg) for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.is_dir() for p in paths)
    if paths[0].name[-6:] == paths[2].name[-8:-2]:  # all three in one second: -2, -3 suffixes
        assert [p.name[-2:] for p in paths[1:]] == ["-2", "-3"]


def test_num_cpus_above_the_machine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cores = len(os.sched_getaffinity(0))
    _refused(
        capsys,
        tmp_path,
        _study(tmp_path, replace={"num_cpus = 2": "num_cpus = 1000000"}),
        "[resources] num_cpus = 1000000",
        f"this machine has {cores} CPUs",
    )


def test_dead_address_error_names_the_file_and_ray_address(tmp_path: Path) -> None:
    import socket

    from sched_search.study.preflight import ClusterError, probe_address

    with socket.socket() as s:  # bound, never listening: a refused connect
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        where = f"{tmp_path / 'x.toml'}: ray_address = '127.0.0.1:{port}'"
        with pytest.raises(ClusterError) as err:
            probe_address(f"127.0.0.1:{port}", where=where)
    assert str(err.value) == (
        f"{where}: cannot reach a Ray cluster at 127.0.0.1:{port}: nothing listens there. Start one there "
        f"(ray start --head --port {port}) or fix the address."
    )


def test_resume_with_another_study_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "study.toml").write_text(SMOKE.read_text())
    other = _study(tmp_path, replace={"epochs = 4": "epochs = 6"})
    assert main(["study", str(other), "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    kept = run_dir / "study.toml"
    assert err.startswith(f"error: --resume {run_dir} runs the study in {kept}, but {other} was given"), err
    assert sorted(p.name for p in run_dir.iterdir()) == ["study.toml"]  # nothing written


def test_a_trial_no_node_of_the_cluster_can_hold_is_refused(tmp_path: Path, ray_local) -> None:
    """On the session's Ray (2 CPUs, no GPU): a trial asking 3 CPUs, or a GPU fraction, names its key, what it
    asked and the largest node's; one that fits passes."""
    from dataclasses import replace as swap

    from sched_search.study.preflight import check_cluster
    from sched_search.study.studyfile import StudyFileError, load_study

    cfg = load_study(_study(tmp_path))
    check_cluster(swap(cfg, resources=swap(cfg.resources, cpus_per_trial=2)), "here")
    for field, need, unit in (("cpus_per_trial", 3, "2 CPUs"), ("gpus_per_trial", 0.25, "0 GPUs")):
        big = swap(cfg, resources=swap(cfg.resources, **{"cpus_per_trial": 1, field: need}))
        with pytest.raises(StudyFileError) as err:
            check_cluster(big, "127.0.0.1:6379")
        text = str(err.value)
        assert f"[resources] {field}" in text and str(cfg.source) in text, text
        assert text.endswith(
            f"= {need:g}, but the largest node of the cluster at 127.0.0.1:6379 has {unit}: no trial could "
            "ever be scheduled."
        ), text


def test_a_failed_join_says_token_authentication_when_it_is_the_likely_cause(monkeypatch) -> None:
    from sched_search.study.preflight import ClusterError, auth_hint

    failed = ConnectionError("Failed to connect to GCS\n  at 127.0.0.1:6379 (timeout)")
    token = "requires token authentication (Ray 2.60's default): set RAY_AUTH_MODE=token in this shell"
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    hint = auth_hint("127.0.0.1:6379", failed)
    assert isinstance(hint, ClusterError)
    one_line = "ConnectionError: Failed to connect to GCS at 127.0.0.1:6379 (timeout)"  # _one_line's
    assert str(hint).startswith(f"cannot join the Ray cluster at 127.0.0.1:6379 ({one_line}); it probably")
    assert token in str(hint) and "\n" not in str(hint)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # set already: the cause is something else
    assert str(auth_hint("h:1", failed)) == f"cannot join the Ray cluster at h:1: {one_line}"
    assert token not in str(auth_hint("h:1", failed))
    assert token in str(auth_hint("h:1", RuntimeError("Unauthenticated: bad token")))  # Ray said so


def test_probe_tells_a_ray_gcs_from_another_server(ray_local) -> None:
    """In this process (the CLI test runs it in another): the session's own GCS answers; a loopback HTTP
    server accepts TCP but is no GCS; an unresolvable host says why; "auto" is Ray's to resolve."""
    import http.server
    import threading

    from sched_search.study.preflight import ClusterError, probe_address

    gcs = ray_local.get_runtime_context().gcs_address
    probe_address(gcs)
    probe_address("auto")
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ClusterError) as err:
            probe_address(address, where="here")
    finally:
        server.shutdown()
    assert str(err.value).startswith(
        f"here: something listens at {address}, but it is not a Ray cluster's GCS"
    )
    with pytest.raises(ClusterError) as err:
        probe_address("no-such-host.invalid:6379", timeout_s=5)
    text = str(err.value)
    assert text.startswith("Ray address 'no-such-host.invalid:6379': cannot reach a Ray cluster at ")
    assert "nothing listens there" not in text and "ray start --head --port 6379" in text
