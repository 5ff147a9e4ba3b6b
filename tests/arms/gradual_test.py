"""Tests for lth_keras.arms.gradual: the experiment's ``gradual`` arm (through
the binary), its schedule flags, resuming it from a checkpoint, export of
gradual and 2:4 models (zeros kept), and the schedule and masks checked
against TFMOT itself (in its venv). TensorFlow only.
"""

import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pandas as pd
import pytest

import lth_keras
from lth_keras import export
from lth_keras.arms import gradual as gradual_arm
from lth_keras.pruning import gradual
from lth_keras.pruning import sparsity
from lth_keras import layers as lth_layers
from lth_keras.experiment import runner as experiment
from tests.helpers import REPO
from tests.helpers.runs import lenet_rounds

ROUNDS = 3


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def gradual_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "lth_keras.main", "--dataset=synthetic", "--validation_size=200",
         "--iterations=150", "--eval_every=50", f"--rounds={ROUNDS}", "--controls=gradual",
         "--tensorboard=false", f"--output_dir={out}", "--experiment=g"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return os.path.join(out, "g"), proc


@pytest.mark.slow
def test_gradual_arm_reaches_the_tickets_per_layer_pm_and_keeps_pruned_weights_zero(gradual_run):
    root, _ = gradual_run
    summary = pd.read_csv(os.path.join(root, "summary.csv"))
    gradual_rows = summary[summary.arm == "gradual"].set_index("round")
    ticket_rows = summary[summary.arm == "ticket"].set_index("round")
    assert list(gradual_rows.index) == list(range(1, ROUNDS))
    pm_columns = [c for c in summary.columns if c.startswith("pm/")]
    for r in range(1, ROUNDS):
        for column in ["pm"] + pm_columns:
            assert gradual_rows.loc[r, column] == pytest.approx(ticket_rows.loc[r, column], abs=1e-9), (r, column)
        round_dir = os.path.join(root, "trial_0", "gradual", f"round_{r}")
        masks = _npz(os.path.join(round_dir, "mask.npz"))
        ticket_masks = _npz(os.path.join(root, "trial_0", "ticket", f"round_{r}", "mask.npz"))
        assert any(not np.array_equal(masks[k], ticket_masks[k]) for k in masks)  # its own masks
        # Trained from θ0: the round's reset weights are the ticket's round-0 start.
        reset = _npz(os.path.join(round_dir, "reset_weights.npz"))
        theta0 = _npz(os.path.join(root, "trial_0", "ticket", "round_0", "reset_weights.npz"))
        for key in theta0:
            if key != "paths":
                np.testing.assert_array_equal(reset[key], theta0[key])
        model, _ = export.load_masked_model(root, 0, r, arm="gradual")
        for mw in lth_layers.masked_weights(model):
            assert np.all(mw.weight.numpy()[mw.mask.numpy() == 0] == 0), mw.name
        with open(os.path.join(round_dir, "summary.json")) as f:
            assert json.load(f)["pm"] == pytest.approx(ticket_rows.loc[r, "pm"])


@pytest.mark.slow
def test_gradual_round_exports_with_its_zeros(gradual_run, tmp_path):
    root, _ = gradual_run
    out = str(tmp_path / "gradual.keras")
    report = export.export(root, 0, ROUNDS - 1, "keras", out, arm="gradual", fresh_process=False, log=lambda m: None)
    assert report["ok"]
    plain = keras.saving.load_model(out)
    zeros = sum(int(np.sum(w == 0)) for w in (v.numpy() for v in plain.weights) if w.ndim == 2)
    assert zeros == report["prunable"] - report["remaining"]


def test_gradual_refuses_rewinding():
    from lth_keras.experiment import runner as experiment

    with pytest.raises(experiment.ConfigError, match="rewind_iteration"):
        experiment.ExperimentConfig(model="lenet", dataset="synthetic", controls=("gradual",),
                                    rewind_iteration=10).resolve()


def test_tfmot_baseline_and_gradual_arm_share_the_schedule():
    from lth_keras.baselines import tfmot as baseline

    for args in ((300, 0.0, 2 / 3, 100), (60, 0.0, 2 / 3, 100), (1000, 0.1, 0.75, 100)):
        assert baseline.pruning_schedule_steps(*args) == sparsity.schedule_steps(*args)
    import dataclasses
    import inspect

    from lth_keras.experiment import config

    arm = {f.name: f.default for f in dataclasses.fields(config.ExperimentConfig)}
    tfmot = inspect.signature(baseline.run).parameters
    for key in ("begin", "end", "frequency"):
        assert arm[f"gradual_{key}"] == tfmot[f"pruning_{key}"].default


def test_a_two_four_model_exports_with_its_zeros(tmp_path):
    keras.utils.set_random_seed(0)
    model = lth_keras.make_prunable(keras.Sequential([
        keras.Input((8, 8, 4)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(), keras.layers.Dense(8)]))
    lth_keras.callbacks.prune_model(model, 0.5, pattern="2:4", output_layer=None)
    path = str(tmp_path / "two_four.keras")
    lth_keras.fold_masks(model).save(path)
    plain = keras.saving.load_model(path)
    kernels = [v.numpy() for v in plain.weights if v.ndim > 1]
    for kernel, axis in zip(kernels, (2, 0)):
        groups = np.moveaxis(kernel != 0, axis, -1)
        assert np.all(groups.reshape(-1, 4).sum(-1) == 2)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(plain(x).numpy(), model(x).numpy(), atol=1e-6)


# --------------------------------------------------------------------------
# Against TFMOT itself


_TFMOT_SCRIPT = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl
args = json.loads(sys.argv[1])
schedule = tfmot.sparsity.keras.PolynomialDecay(**args["schedule"])
out = {"schedule": []}
for step in range(args["steps"]):
    should, s = schedule(tf.constant(step, tf.int64))
    out["schedule"].append([bool(should), float(s)])
w = tf.Variable(np.asarray(args["weight"], np.float32))
mask = tf.Variable(tf.ones_like(w))
threshold = tf.Variable(0.0)
step = tf.Variable(0, dtype=tf.int64)
constant = tfmot.sparsity.keras.ConstantSparsity(args["sparsity"], begin_step=0, frequency=1)
impl = pruning_impl.Pruning(lambda: step, [(w, mask, threshold)], constant, block_size=(1, 1), block_pooling_type="AVG")
impl.conditional_mask_update()
out["mask"] = mask.numpy().tolist()
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def tfmot_python():
    python = os.environ.get("LTH_KERAS_TFMOT_PYTHON")
    if python:
        return python
    from lth_keras.baselines import tfmot as baseline

    return baseline.setup_venv(os.path.join(tempfile.gettempdir(), "lth_keras_tfmot_venv"))


@pytest.mark.slow
def test_schedule_and_masks_match_tfmot(tfmot_python):
    weight = np.random.default_rng(0).normal(size=(64, 32)).astype("float32")
    args = {"schedule": dict(initial_sparsity=0.1, final_sparsity=0.85, begin_step=20, end_step=220, power=3,
                             frequency=25),
            "steps": 300, "weight": weight.tolist(), "sparsity": 0.7}
    proc = subprocess.run([tfmot_python, "-c", _TFMOT_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.split("RESULT", 1)[1])
    s = args["schedule"]
    for step, (should, value) in enumerate(theirs["schedule"]):
        assert should == sparsity.is_update_step(step, s["begin_step"], s["end_step"], s["frequency"]), step
        ours = sparsity.polynomial_sparsity(step, s["initial_sparsity"], s["final_sparsity"], s["begin_step"],
                                            s["end_step"], s["power"])
        assert value == pytest.approx(ours, abs=1e-6), step
    ours = sparsity.prune_to_counts({"w": weight}, {"w": np.ones_like(weight)},
                                    sparsity.counts_for_sparsity({"w": np.ones_like(weight)}, {"w": 0.7}))["w"]
    np.testing.assert_array_equal(np.asarray(theirs["mask"]), ours)


def test_gradual_training_resumed_from_a_checkpoint_matches_an_uninterrupted_one(deterministic_ops, tmp_path):
    from lth_keras import datasets, models, training
    from lth_keras.experiment import trial_state

    path = str(tmp_path / "state.npz")
    data = datasets.load("synthetic", seed=0, validation_size=200)
    hp = training.TrainingHparams(iterations=120, batch_size=60, eval_every=30)

    def trainer():
        model = models.build("lenet", data.input_shape, data.num_classes, seed=3)
        return training.Trainer(model, data, hp, seed=3)

    def pruner():
        return gradual.GradualPruner({"dense": 0.7, "output": 0.35}, end_step=80, frequency=20)

    straight = trainer()
    gradual_arm.train_gradual(straight, pruner())
    first = trainer()
    curve = []

    def checkpoint(row):
        if row["iteration"] == 60:  # as the runner does, after an evaluation
            trial_state.save_checkpoint(path, first, curve, 60, 0.0)

    gradual_arm.train_gradual(first, pruner(), curve=curve, on_eval=checkpoint)
    second = trainer()
    restored_curve, iteration, _ = trial_state.load_checkpoint(path, second)
    assert iteration == 60 and 0 < lth_layers.fraction_remaining(second.model) < 1
    gradual_arm.train_gradual(second, pruner(), start_iteration=iteration, curve=restored_curve)
    for a, b in zip(straight.model.variables, second.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [r["iteration"] for r in restored_curve] == [30, 60, 90, 120]


# --------------------------------------------------------------------------
# The arm's schedule flags, through the experiment



def _mask(exp, arm, round_):
    with np.load(os.path.join(exp.round_dir(0, arm, round_), "mask.npz")) as f:
        return {k: f[k] for k in f.files if k != "paths"}


def test_the_gradual_arms_schedule_comes_from_its_flags(tmp_path):
    import dataclasses

    fields = {f.name: f.default for f in dataclasses.fields(experiment.ExperimentConfig)}
    assert {k: fields[f"gradual_{k}"] for k in ("begin", "end", "frequency")} == \
        {"begin": 0.0, "end": 2 / 3, "frequency": 100}

    def trained(name, **kw):
        exp = lenet_rounds(tmp_path, name, rounds=2, controls=("gradual",), deterministic=True, **kw)
        with np.load(os.path.join(exp.round_dir(0, "gradual", 1), "trained_weights.npz")) as f:
            return {k: f[k] for k in f.files if k != "paths"}, _mask(exp, "gradual", 1)

    default, default_mask = trained("default")
    explicit, _ = trained("explicit", gradual_begin=0.0, gradual_end=2 / 3, gradual_frequency=100)
    early, early_mask = trained("early", gradual_begin=0.1, gradual_end=0.5, gradual_frequency=10)
    assert all(np.array_equal(default[k], explicit[k]) for k in default)
    assert {n: m.sum() for n, m in early_mask.items()} == {n: m.sum() for n, m in default_mask.items()}
    assert any(not np.array_equal(default[k], early[k]) for k in default)
