"""Tests for lth_keras.experiment.config: an experiment's flags resolved, defaults filled
in from the paper's settings, and bad values refused naming their flag.

`defining` is what ``config.json`` keeps (fields marked ``"if_set"`` only when
set, so older experiments still resume); `load_dataset` builds the data a
config names. Through the experiment: a pattern the rounds would break, or a
bad gradual schedule, is refused before anything is written."""

import dataclasses
import os

import pytest

from lth_keras import datasets, models
from lth_keras.experiment import config as experiment_config
from lth_keras.experiment.config import ConfigError, ExperimentConfig
from lth_keras.storage import resume
from tests.helpers.runs import lenet_rounds

# The fault-injection runs' experiment (tests/e2e/faults_test.py): two trials.
TINY = dict(
    model="lenet", dataset="synthetic", validation_size=100, synthetic_sizes=(600, 200),
    iterations=20, eval_every=10, rounds=3, trials=2, controls=("reinit",), tensorboard=False,
    deterministic=True, checkpoint_every=0, experiment="tiny",
)


def _config(**kw):
    return experiment_config.ExperimentConfig(**dict(TINY, **kw))


def test_synthetic_data_works_with_every_other_flag_at_its_default():
    config = experiment_config.ExperimentConfig(dataset="synthetic").resolve()
    assert config.validation_size == datasets.default_validation_size("synthetic") == 200
    data = experiment_config.load_dataset(config)
    assert len(data.x_val) == 200 and len(data.x_train) == 1000 >= config.batch_size
    # Real datasets keep the paper's 5000.
    assert experiment_config.ExperimentConfig(dataset="mnist").resolve().validation_size == 5000


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        (dict(validation_size=0), "validation_size"),
        (dict(synthetic_sizes=("a", "b")), "synthetic_sizes"),
        (dict(synthetic_sizes=(100,)), "synthetic_sizes"),
        (dict(synthetic_sizes=(100, 0)), "synthetic_sizes"),
    ],
)
def test_bad_validation_and_synthetic_sizes_name_their_flag(kwargs, flag):
    with pytest.raises(experiment_config.ConfigError) as info:
        experiment_config.ExperimentConfig(dataset="synthetic", **kwargs).resolve()
    assert info.value.flag == flag
    assert str(info.value).startswith(f"--{flag}: ") and "\n" not in str(info.value)


def test_trial_ids_are_checked():
    with pytest.raises(experiment_config.ConfigError, match="--trial_ids: trial 2 is not below --trials=2"):
        _config(trial_ids="0-2").resolve()
    with pytest.raises(experiment_config.ConfigError, match="--trial_ids: 'x' is not a trial id"):
        _config(trial_ids="x").resolve()
    assert resume.parse_trial_ids("3,0-1", 4) == [0, 1, 3]


# -- every field's default and check, and what config.json keeps -------------------------


def test_resolve_fills_unset_fields_from_the_models_paper_defaults():
    lenet = ExperimentConfig(model="lenet").resolve()
    paper = models.defaults("lenet")
    for name in ("dataset", "iterations", "batch_size", "optimizer", "learning_rate", "prune_rate_dense",
                 "prune_rate_conv", "prune_rate_output", "pruning"):
        assert getattr(lenet, name) == getattr(paper, name), name
    assert (lenet.dataset, lenet.iterations, lenet.prune_rate_dense) == ("mnist", 50_000, 0.2)
    assert lenet.experiment == "lenet" and lenet.validation_size == 5000 and lenet.lr_boundaries == ()
    # A value given wins over the paper's; lists become tuples.
    mine = ExperimentConfig(model="resnet18", iterations=300, eval_every=100, lr_boundaries=[100, 200],
                            dataset="synthetic", experiment="r").resolve()
    assert (mine.iterations, mine.lr_boundaries, mine.optimizer) == (300, (100, 200), "sgd")
    assert mine.validation_size == 200  # the synthetic default


@pytest.mark.parametrize("kw, flag", [
    (dict(model="lenet5"), "model"),
    (dict(dataset="imagenet"), "dataset"),
    (dict(iterations=0), "iterations"),
    (dict(iterations=100, eval_every=200), "eval_every"),
    (dict(prune_rate_dense=1.5), "prune_rate_dense"),
    (dict(pruning="columns"), "pruning"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(iterations=100, eval_every=50, rewind_iteration=100), "rewind_iteration"),
    (dict(controls=("gradual",), rewind_iteration=10), "controls"),
    (dict(controls=("nope",)), "controls"),
    (dict(lr_boundaries=("x",)), "lr_boundaries"),
    (dict(dataset="synthetic", synthetic_sizes=(100,)), "synthetic_sizes"),
    (dict(validation_size=0), "validation_size"),
    (dict(experiment="a/b"), "experiment"),
    (dict(strategy="bogus"), "strategy"),
    (dict(trials=2, trial_ids="5"), "trial_ids"),
    (dict(pattern="2:4:8"), "pattern"),
])
def test_a_bad_value_is_refused_naming_its_flag(kw, flag):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig(**kw).resolve()
    assert e.value.flag == flag and str(e.value).startswith(f"--{flag}: "), str(e.value)


def test_defining_keeps_what_identifies_the_experiment():
    config = ExperimentConfig(model="lenet", rounds=7, trials=3, output_dir="elsewhere").resolve()
    defining = config.defining()
    assert {"model", "dataset", "iterations", "prune_rate_dense", "seed", "lr_boundaries"} <= set(defining)
    assert not {"rounds", "trials", "output_dir", "controls", "tensorboard", "experiment"} & set(defining)
    # "if_set" fields only when they differ from their default.
    assert not {"pattern", "pattern_exclude", "gradual_end", "mixed_precision"} & set(defining)
    patterned = dataclasses.replace(config, pattern="2:4", gradual_end=0.5).defining()
    assert (patterned["pattern"], patterned["gradual_end"]) == ("2:4", 0.5)
    assert defining["lr_boundaries"] == [] and config.to_dict()["rounds"] == 7  # tuples saved as JSON lists
    assert set(config.to_dict()) == {f.name for f in dataclasses.fields(ExperimentConfig)}


def test_load_dataset_builds_the_data_the_config_names():
    config = ExperimentConfig(dataset="synthetic", synthetic_sizes=(300, 40), validation_size=60).resolve()
    data = experiment_config.load_dataset(config)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (240, 60, 40)
    too_many = dataclasses.replace(config, validation_size=300)
    with pytest.raises(ConfigError) as e:
        experiment_config.load_dataset(too_many)
    assert e.value.flag == "validation_size"


# -- through the experiment: refused before anything is written ----------------------



@pytest.mark.parametrize("kw, flag, message", [
    (dict(pattern="2:4", rounds=5), "pattern", "above the pattern's cap 0.5"),
    (dict(pattern="3:2"), "pattern", "3:2"),
    (dict(pattern_exclude=("output",)), "pattern_exclude", "has no effect without --pattern"),
    (dict(pattern="2:4", pattern_exclude=("output",), controls=("gradual",)), "pattern_exclude", "gradual"),
    (dict(model="conv2", pattern="2:4", rounds=2), "pattern", "'conv_1"),
])
def test_a_pattern_the_rounds_would_break_is_refused_before_anything_is_written(tmp_path, kw, flag, message):
    with pytest.raises(ConfigError) as e:
        lenet_rounds(tmp_path, "bad", **kw)
    assert e.value.flag == flag and message in str(e.value), str(e.value)
    assert not os.path.exists(tmp_path / "bad")


@pytest.mark.parametrize("kw, flag", [
    (dict(gradual_begin=0.7, gradual_end=0.5), "gradual_end"),
    (dict(gradual_begin=-0.1), "gradual_begin"),
    (dict(gradual_frequency=0), "gradual_frequency"),
])
def test_bad_gradual_schedules_name_their_flag(tmp_path, kw, flag):
    with pytest.raises(ConfigError) as e:
        lenet_rounds(tmp_path, "bad", controls=("gradual",), **kw)
    assert e.value.flag == flag
