"""Tests for lth_keras.analysis.instability: linear mode connectivity of tiny synthetic
experiments (barriers, the rewind point retrained, atomic results).

The program (flags, ``python -m lth_keras.instability``, resuming after a
kill, locks) is tested in tests/programs/instability_test.py.
"""

import os

import numpy as np
import pandas as pd
import pytest

from lth_keras.analysis import instability
from lth_keras.storage.experiment_dir import ExperimentDir
from tests.helpers.runs import QUIET, lenet_experiment





@pytest.fixture(scope="module")
def high_lr(tmp_path_factory):
    return lenet_experiment(tmp_path_factory.mktemp("inst"), "high_lr")


def test_barrier_is_zero_with_one_data_order_and_positive_apart(high_lr):
    path = instability.run_instability(high_lr.root, rewind_iterations=[0], points=11, seeds=[5, 5],
                                       figure=False, log=QUIET)
    row = pd.read_csv(path).iloc[0]
    errors = [row[f"error_{a:.4g}"] for a in instability.path_alphas(11)]
    assert row["barrier"] == 0.0 and len(set(errors)) == 1
    # Different data orders at a high learning rate from a random init: a barrier.
    path = instability.run_instability(high_lr.root, rewind_iterations=[0], points=11, figure=True, log=QUIET)
    df = pd.read_csv(path)
    assert len(df) == 1 and list(df.columns[:5]) == ["trial", "round", "pm", "rewind_iteration", "barrier"]
    row = df.iloc[0]
    errors = np.array([row[f"error_{a:.4g}"] for a in instability.path_alphas(11)])
    assert row["barrier"] == pytest.approx(errors.max() - (errors[0] + errors[-1]) / 2)
    assert row["barrier"] > 0.02, row.to_dict()
    assert os.path.getsize(os.path.join(high_lr.root, "instability.png")) > 10_000


def test_barrier():
    assert instability.barrier([0.1, 0.1]) == 0.0
    assert instability.barrier([0.2, 0.5, 0.1]) == pytest.approx(0.35)
    assert instability.barrier([0.3, 0.2, 0.1]) == pytest.approx(0.1)


def test_dense_weights_at_k_reproduce_the_runs_rewind_point(tmp_path):
    exp = lenet_experiment(tmp_path, "rewind", rewind_iteration=60, iterations=120, learning_rate=1.2e-3, rounds=2)
    saved = exp.rewind_weights_path(0, "ticket", 0)
    with np.load(saved) as f:
        expected = dict(f)
    os.rename(saved, saved + ".away")  # dense_at(60) now retrains θ0 → iteration 60
    from lth_keras import cli
    from lth_keras.experiment import config

    from lth_keras.analysis import instability as measurement

    cfg = cli.saved_config(exp.root)
    ctx = measurement._Context(cfg, config.load_dataset(cfg), exp, 0, QUIET)
    retrained = ctx.dense_at(60)
    keys = sorted(k for k in expected if k != "paths")
    for key, value in zip(keys, retrained.values):
        np.testing.assert_allclose(value, expected[key], rtol=0, atol=1e-6)
    assert os.path.exists(exp.dense_at_path(0, 60))
    # A sparse round at k: the copies keep the ticket's mask.
    os.rename(saved + ".away", saved)
    path = instability.run_instability(exp.root, rounds=[1], rewind_iterations=[60], points=3, figure=False,
                                       log=QUIET)
    row = pd.read_csv(path).iloc[0]
    assert row["round"] == 1 and row["rewind_iteration"] == 60 and row["pm"] < 100
    mask = exp.read_mask(0, "ticket", 1)
    copy = np.load(exp.instability_copy_path(0, 1, 60, int(row["seed_0"])))
    kernels = [copy[k] for k in sorted(copy.files) if k != "paths" and copy[k].ndim == 2]
    for kernel, m in zip(kernels, mask.values()):
        assert np.all(kernel[~m.astype(bool)] == 0)


def test_results_are_atomic_files_in_thelenet_experiment(high_lr):
    instability.run_instability(high_lr.root, rewind_iterations=[0], points=11, figure=False, log=QUIET)
    # No temporary files left (".locks" is the runner's lock directory).
    left = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(high_lr.root, "instability")) for f in files
            if f.startswith(".") or f.endswith(".tmp")]
    left += [f for f in os.listdir(high_lr.root) if (f.startswith(".") and f != ".locks") or f.endswith(".tmp")]
    assert not left and os.path.isfile(os.path.join(high_lr.root, "instability.csv"))
    assert ExperimentDir(high_lr.root).summaries()  # the experiment itself is untouched


def test_default_trials_and_rounds_are_what_the_directory_holds(tmp_path):
    # An experiment extended with a larger --trials keeps config.json from its first run.
    lenet_experiment(tmp_path, "grown", iterations=100, learning_rate=1.2e-3, trials=1, rounds=2)
    exp = lenet_experiment(tmp_path, "grown", iterations=100, learning_rate=1.2e-3, trials=2, rounds=2)
    path = instability.run_instability(exp.root, rewind_iterations=[0], points=2, figure=False, log=QUIET)
    df = pd.read_csv(path)
    assert sorted(zip(df["trial"], df["round"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
