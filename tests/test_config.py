"""Study files: the shipped ones load; bad ones are refused with the file, the key and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from sched_search.config import BASELINES, DEFAULT_ARMS, StudyFileError
from sched_search.lr import ARMS
from sched_search.study.studyfile import load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.mark.parametrize("name", ["mnist1d", "digits", "smoke", "cifar10_resnet"])
def test_shipped_studies_load(name: str) -> None:
    cfg = load_study(STUDIES / f"{name}.toml")
    assert cfg.name == name
    assert set(cfg.search.arms) <= set(DEFAULT_ARMS)
    assert 1.0 in cfg.search.budgets


def test_modern_study_runs_the_eight_new_arms_beside_the_default_ones() -> None:
    cfg = load_study(STUDIES / "modern.toml")
    assert set(cfg.search.arms) == set(ARMS) - set(DEFAULT_ARMS) and len(cfg.search.arms) == 8
    assert cfg.data == load_study(None).data and cfg.train == load_study(None).train


def test_an_unknown_arm_is_named_with_every_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[search]\narms = ["cosine-adamw", "cosine-adam"]\n')
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    message = str(e.value)
    assert message.startswith(f"{path}: [search] arms must be") and message.endswith("but got 'cosine-adam'.")
    assert all(arm in message for arm in ARMS) and "\n" not in message


def test_baselines_default_to_all_five_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    assert (
        load_study(None).search.baselines
        == BASELINES
        == (
            "default:adam",
            "default:adamw-cosine",
            "default:schedule_free",
            "default:prodigy",
            "default:lr_find-one_cycle",
        )
    )
    path = tmp_path / "x.toml"
    path.write_text('[search]\nbaselines = ["default:adam", "default:sgd"]\n')
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    assert str(e.value) == (
        f"{path}: [search] baselines must be a list drawn from default:adam, default:adamw-cosine, "
        "default:schedule_free, default:prodigy, default:lr_find-one_cycle, but got 'default:sgd'."
    )
    path.write_text('[search]\nbaselines = ["default:adam", "default:adam"]\n')
    with pytest.raises(StudyFileError, match="without repeats"):
        load_study(path)


def test_default_study_has_all_six_arms_and_equal_seeds() -> None:
    cfg = load_study(STUDIES / "mnist1d.toml")
    assert sorted(cfg.search.arms) == sorted(DEFAULT_ARMS)
    assert cfg.resources.num_cpus == 2 and cfg.train.device == "cpu"


def test_default_study_is_studies_mnist1d_toml() -> None:
    from dataclasses import replace

    assert replace(load_study(STUDIES / "mnist1d.toml"), source="<defaults>") == load_study(None)
    assert load_study(None).data.name == "mnist1d" and load_study(None).model.name == "cnn1d"


def test_model_options_pass_through() -> None:
    assert load_study(STUDIES / "cifar10_resnet.toml").model.options == {"depth": 56}


BAD = [
    ("[train]\nepochs = 0\n", "[train] epochs", "an integer in 1..100000"),
    ('[train]\nepochs = "ten"\n', "[train] epochs", "an integer"),
    ("[train]\nbatch_size = 1.5\n", "[train] batch_size", "an integer"),
    ('[train]\naugment = "mixup"\n', "[train] augment", "'none' or 'crop_flip'"),
    ("[trian]\nepochs = 3\n", "unknown key trian", "expected one of"),
    ("[search]\ntrails_per_arm = 3\n", "unknown key [search] trails_per_arm", "expected one of"),
    ('[search]\narms = ["clr-adam"]\n', "[search] arms", "drawn from"),
    ('[search]\narms = ["clr-sgdw", "clr-sgdw"]\n', "[search] arms", "without repeats"),
    ("[search]\nbudgets = [0.5, 0.25]\n", "[search] budgets", "include 1.0"),
    ("[search]\nbudgets = [0, 1.0]\n", "[search] budgets", "fractions in (0, 1]"),
    ("[search]\nseeds = [1, 1]\n", "[search] seeds", "distinct"),
    ("[search]\ntrials_per_arm = 0\n", "[search] trials_per_arm", "in 1..10000"),
    (
        "[range_test]\nstart_lr = 1.0\nend_lr = 0.1\n",
        "[range_test] start_lr, end_lr",
        "0 < start_lr < end_lr",
    ),
    ("[range_test]\nweight_decays = [-1e-4]\n", "[range_test] weight_decays", ">= 0"),
    ("[range_test]\nnum_steps = 5\n", "[range_test] num_steps", "0 (15 epochs of the data's steps) or"),
    ("[early_stopping]\ngrace_period = 99\n", "[early_stopping] grace_period", "in 1..epochs"),
    ("[early_stopping]\nenabled = 1\n", "[early_stopping] enabled", "true or false"),
    ("[resources]\ncpus_per_trial = 4\n", "[resources] cpus_per_trial", "(0, num_cpus=2]"),
    ("[resources]\ngpus_per_trial = 0.5\n", "[train] device", "'cuda' when gpus_per_trial > 0"),
    ('[data]\nname = "cifar10"\n', "[data] root", "cifar-10-batches-py"),
    ('[model]\nname = "transformer"\n', "[model] name", "one of mlp, cnn1d, cnn, resnet"),
    ("target = 1.5\n", "target", "(0, 1]"),
    ("target_accuracy = 0.9\ntarget = 0.9\n", "target_accuracy", "not both"),
    ("target_accuracy = 2\n", ": target_accuracy must be", "(0, 1]"),  # the key as the file wrote it
    ('[train]\nmetric = "m:f"\n', "metric_mode", "custom metric"),
    ('[train]\nloss = "mse"\n', "[train] metric", "accuracy needs class labels"),
    ('[train]\nmetric = "loss"\nmetric_mode = "max"\n', "[train] metric_mode", "min"),
    ("[search]\nbaseline_lr = inf\n", "[search] baseline_lr", "a finite number"),
    ("[search]\nbudgets = [0.5, 0.5, 1.0]\n", "[search] budgets", "distinct"),
    ("[search]\nseeds = [-1]\n", "[search] seeds", "[0, 2**32)"),
    ("[search]\nsearch_seed = 4294967296\n", "[search] search_seed", "[0, 2**32)"),
    ("[train]\nepochs = 1000000000000\n", "[train] epochs", "1..100000"),
    ("[range_test]\nend_lr = inf\n", "[range_test] end_lr", "a finite number"),
    ("[resources]\ngpus_per_trial = -1\n", "[resources] gpus_per_trial", "a fraction in [0, 1]"),
    (
        '[train]\ndevice = "cuda"\n[resources]\nnum_gpus = 1\ngpus_per_trial = 2\n',
        "[resources] gpus_per_trial",
        "at most num_gpus=1",
    ),
    (f'name = "{"n" * 101}"\n', "name", "at most 100 characters"),
    ("[train\nepochs = 3\n", "not valid TOML", ""),
    ("train = 3\n", "[train]", "a table"),
]


@pytest.mark.parametrize(("text", "key", "expected"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_study_file_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StudyFileError) as err:
        load_study(path)
    message = str(err.value)
    assert str(path) in message
    assert key in message
    assert expected in message


def test_missing_study_file(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match="study file not found"):
        load_study(tmp_path / "nope.toml")


def test_precision_is_checked_against_the_device(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[train]\nprecision = "fp16"\n')
    with pytest.raises(StudyFileError, match=r"\[train\] precision must be 'bf16' or 'fp32' on a CPU"):
        load_study(bad)
    bad.write_text('[train]\nprecision = "int8"\n')
    with pytest.raises(StudyFileError, match=r"\[train\] precision must be 'fp32' or 'bf16' or 'fp16'"):
        load_study(bad)


def test_grace_period_is_not_checked_against_epochs_without_early_stopping(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "studies" / "smoke.toml").read_text()
    text = text.replace("epochs = 4", "epochs = 2").replace("grace_period = 2", "grace_period = 4")
    path = tmp_path / "s.toml"
    path.write_text(text.replace("[early_stopping]", "[early_stopping]\nenabled = false"))
    assert load_study(path).early_stopping.grace_period == 4
    path.write_text(text)
    with pytest.raises(StudyFileError, match=r"grace_period must be in 1..epochs \(2\), but got 4"):
        load_study(path)
