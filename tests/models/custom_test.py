"""Tests for lth_keras.models.custom: the binary on your own architecture,
``--model=module:callable`` (here tests.helpers.custom_models)."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from lth_keras.experiment import runner as experiment
from lth_keras import layers as lth_layers
from lth_keras import models
from tests.helpers import REPO

# Every flag a model of your own needs, for a tiny synthetic run.
FLAGS = dict(
    dataset="synthetic", validation_size=200, iterations=60, eval_every=30, batch_size=32, optimizer="adam",
    learning_rate=1e-3, pruning="layerwise", prune_rate_dense=0.2, prune_rate_conv=0.1, prune_rate_output=0.1,
    tensorboard=False,
)


def config(**overrides):
    values = dict(FLAGS, model="tests.helpers.custom_models:small_cnn")
    values.update(overrides)
    return experiment.ExperimentConfig(**values)


def run_main(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "lth_keras.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_build_custom_makes_a_plain_model_prunable_and_seeds_it():
    a = models.build("tests.helpers.custom_models:small_cnn", (28, 28, 1), 10, seed=3)
    b = models.build("tests.helpers.custom_models:small_cnn", (28, 28, 1), 10, seed=3)
    assert [mw.name for mw in lth_layers.masked_weights(a)] == ["conv", "hidden", "output"]
    for x, y in zip(a.weights, b.weights):
        assert (x.numpy() == y.numpy()).all()
    masked = models.build("tests.helpers.custom_models:masked_mlp", (28, 28, 1), 10)
    assert masked.built and len(lth_layers.masked_weights(masked)) == 2


def test_resolve_requires_the_flags_and_fills_neutral_defaults():
    resolved = config().resolve()
    assert (resolved.momentum, resolved.weight_decay, resolved.lr_boundaries, resolved.augment) == (0.0, 0.0, (), False)
    assert resolved.global_exclude == () and resolved.warmup_iterations == 0
    assert config(model="tests.helpers.custom_models:masked_mlp", prune_rate_conv=None).resolve().prune_rate_conv == 0.0


@pytest.mark.parametrize(
    "overrides, flag, text",
    [
        (dict(optimizer=None), "optimizer", "no paper defaults"),
        (dict(learning_rate=None, iterations=None), "iterations", "--learning_rate"),
        (dict(dataset=None), "dataset", "required"),
        (dict(pruning=None), "pruning", "required"),
        (dict(prune_rate_conv=None), "prune_rate_conv", "layerwise"),
        (dict(prune_rate_output=None), "prune_rate_output", "required"),
        (dict(pruning="global", prune_rate_conv=None), "prune_rate_conv", "global"),
        (dict(dropout=0.5), "dropout", "Dropout layers"),
        (dict(model="no_such_module_xyz:build"), "model", "does not import"),
        (dict(model="tests.helpers.custom_models:missing"), "model", "no attribute"),
        (dict(model="tests.helpers.custom_models:NOT_CALLABLE"), "model", "not a callable"),
        (dict(model="tests.helpers.custom_models:not_a_model"), "model", "not a Keras model"),
        (dict(model="tests.helpers.custom_models:nothing_to_prune"), "model", "nothing to prune"),
        (dict(model="tests.helpers.custom_models:raises"), "model", "the architecture is broken"),
        (dict(model=":build"), "model", "module:callable"),
    ],
)
def test_bad_custom_model_flags_name_the_flag(overrides, flag, text):
    with pytest.raises(experiment.ConfigError, match=text) as caught:
        config(**overrides).resolve()
    assert caught.value.flag == flag
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_binary_runs_two_rounds_on_a_custom_model_and_resumes(tmp_path):
    args = [f"--{k}={v}" for k, v in FLAGS.items()] + [
        "--model=tests.helpers.custom_models:small_cnn", "--rounds=2", "--controls=reinit", f"--output_dir={tmp_path}",
        "--experiment=mine",
    ]
    first = run_main(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "mine" / "summary.csv")
    assert sorted(set(summary["round"])) == [0, 1]
    assert set(summary["arm"]) == {"ticket", "reinit"}
    ticket = summary[summary["arm"] == "ticket"].sort_values("round")
    assert ticket["pm"].iloc[0] == 100.0 and ticket["pm"].iloc[1] < 100.0
    again = run_main(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") == 3, again.stdout
    # Export folds the custom model's masks into plain Keras layers.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    exported = subprocess.run(
        [sys.executable, "-m", "lth_keras.export", f"--results={tmp_path / 'mine'}", "--round=1", "--format=keras",
         f"--out={tmp_path / 'ticket.keras'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "ticket.keras").is_file()
    missing = run_main(*[a for a in args if not a.startswith("--learning_rate")], f"--output_dir={tmp_path}/other")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "error: --learning_rate: is required with --model=tests.helpers.custom_models:small_cnn" in missing.stderr


def test_the_mobilenet_v2_example_flagfile_resolves_to_a_prunable_mobilenet():
    from absl import flags

    from lth_keras import main as lth_main

    fv = flags.FlagValues()
    lth_main.define_flags(flag_values=fv)
    fv(["lth_keras.main", f"--flagfile={os.path.join(REPO, 'figures', 'mobilenet_v2_fashion_mnist.flags')}"])
    resolved = lth_main.config_from_flags(flag_values=fv).resolve()
    assert (resolved.model, resolved.pruning, resolved.rounds) == ("examples.mobilenet_v2_fashion:build", "global", 5)
    model = models.build(resolved.model, (28, 28, 1), 10, seed=0)
    kinds = {type(mw.layer).__name__ for mw in lth_layers.masked_weights(model)}
    assert kinds == {"Conv2D", "DepthwiseConv2D", "Dense"}
    assert model.output_shape == (None, 10)
