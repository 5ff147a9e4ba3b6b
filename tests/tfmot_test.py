"""The TFMOT gradual-pruning baseline (lth_keras.baselines.tfmot).

It runs in its own venv (tensorflow-model-optimization needs tf_keras and
absl-py 1.x), created once per machine by `setup_venv` under the temp dir;
set LTH_KERAS_TFMOT_PYTHON to use an interpreter that already has TFMOT.
"""

import ast
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from lth_keras.experiment import runner as experiment
from lth_keras.storage.curves import CURVE_COLUMNS
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.summary import SUMMARY_CSV_COLUMNS, load_summary
from lth_keras.baselines import tfmot as baseline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARM = baseline.ARM


@pytest.fixture(scope="session")
def tfmot_python():
    python = os.environ.get("LTH_KERAS_TFMOT_PYTHON")
    if python:
        return python
    return baseline.setup_venv(os.path.join(tempfile.gettempdir(), "lth_keras_tfmot_venv"))


@pytest.fixture(scope="module")
def imp_dir(tmp_path_factory):
    """A 3-round LeNet IMP experiment on synthetic data (P_m ~42% and ~16%)."""
    config = experiment.ExperimentConfig(
        model="lenet", dataset="synthetic", synthetic_sizes=(500, 100), validation_size=100,
        iterations=60, eval_every=20, rounds=3, prune_rate_dense=0.6, prune_rate_output=0.3,
        tensorboard=False, checkpoint_every=0, output_dir=str(tmp_path_factory.mktemp("runs")),
    )
    return experiment.train_and_evaluate(config, log=lambda message: None).root


@pytest.fixture(scope="module")
def baseline_run(tfmot_python, imp_dir):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [tfmot_python, "-m", "lth_keras.baselines.tfmot", f"--results={imp_dir}", "--pruning_frequency=10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return imp_dir, proc


@pytest.mark.slow
def test_reaches_each_target_sparsity_within_half_a_percent(baseline_run):
    root, _ = baseline_run
    exp = ExperimentDir(root)
    for round_ in (1, 2):
        ticket = exp.read_round_summary(0, "ticket", round_)
        summary = exp.read_round_summary(0, ARM, round_)
        assert summary["target_pm"] == pytest.approx(ticket["pm"])
        assert abs(summary["pm"] - ticket["pm"]) <= 0.5, (round_, summary["pm"], ticket["pm"])
        for layer, pm in ticket["pm_per_layer"].items():
            assert abs(summary["pm_per_layer"][layer] - pm) <= 0.5, (round_, layer)
        # P_m is what the final weights hold: recount from the saved kernels.
        mask = exp.read_mask(0, ARM, round_)
        assert set(mask) == set(exp.read_mask(0, "ticket", round_))
        with np.load(os.path.join(exp.round_dir(0, ARM, round_), "trained_weights.npz")) as f:
            trained = dict(f)
        keys = sorted(k for k in trained if k != "paths")
        kernels = {str(p).split("/")[0]: trained[k] for k, p in zip(keys, trained["paths"]) if str(p).endswith("/kernel")}
        nonzero = sum(int(np.count_nonzero(kernels[n])) for n in mask)
        total = sum(kernels[n].size for n in mask)
        assert 100.0 * nonzero / total == pytest.approx(summary["pm"])
        assert sum(int(m.sum()) for m in mask.values()) == nonzero
        assert summary["iterations"] == 60


@pytest.mark.slow
def test_writes_rows_the_summary_and_figures_pick_up(baseline_run):
    root, proc = baseline_run
    table = load_summary(root)
    rows = table[table["arm"] == ARM].sort_values("round")
    assert list(rows["round"]) == [1, 2]
    for column in SUMMARY_CSV_COLUMNS[3:]:
        assert rows[column].notna().all(), column
    assert list(rows["final_iteration"]) == [60, 60]
    exp = ExperimentDir(root)
    curve = exp.read_curve(0, ARM, 2)
    assert [r["iteration"] for r in curve] == [20, 40, 60]
    assert set(CURVE_COLUMNS) <= set(curve[0])
    # Sparsity rises gradually (mask updates every 10 iterations up to 40).
    assert curve[0]["pm"] > curve[1]["pm"] == pytest.approx(curve[2]["pm"])
    # It starts from the ticket's θ0.
    theta0 = exp.read_reset_weights(0, "ticket", 0)
    start = exp.read_reset_weights(0, ARM, 2)
    assert sorted(start) == sorted(theta0)
    for key in theta0:
        np.testing.assert_array_equal(start[key], theta0[key])
    assert "tfmot_gradual round 2" in proc.stdout
    plotting = pytest.importorskip("lth_keras.analysis.plotting")
    points, _ = plotting.metric_points(root, "early_stop_test_accuracy", arms=None)
    assert ARM in set(points["arm"])


def test_core_package_never_imports_tfmot():
    # The baseline's program and its rounds (baselines/tfmot.py, tfmot_gradual.py).
    own = {os.path.join(REPO, "lth_keras", "baselines", name) for name in ("tfmot.py", "tfmot_gradual.py")}
    for path in glob.glob(os.path.join(REPO, "lth_keras", "**", "*.py"), recursive=True):
        if path in own:
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("tensorflow_model_optimization", "tf_keras")), (path, name)
    # Importing the baseline module itself does not import TFMOT either.
    assert "tensorflow_model_optimization" not in sys.modules
    assert "tf_keras" not in sys.modules


def test_schedule_ends_on_a_mask_update():
    assert baseline.pruning_schedule_steps(300, 0.0, 2 / 3, 100) == {"begin_step": 0, "end_step": 200, "frequency": 100}
    assert baseline.pruning_schedule_steps(60, 0.0, 2 / 3, 100) == {"begin_step": 0, "end_step": 40, "frequency": 40}
    assert baseline.pruning_schedule_steps(1000, 0.1, 0.75, 100) == {"begin_step": 100, "end_step": 700, "frequency": 100}
    with pytest.raises(baseline.BaselineError, match="pruning_begin"):
        baseline.pruning_schedule_steps(100, 0.5, 0.5, 10)


def test_config_comes_from_the_experiment_and_flags_override_it(tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    config = experiment.ExperimentConfig(model="lenet", dataset="synthetic", iterations=300, validation_size=200)
    (root / "config.json").write_text(json.dumps(config.defining()))
    resolved = baseline.resolve_config(str(root))
    assert (resolved.model, resolved.dataset, resolved.iterations, resolved.learning_rate) == (
        "lenet", "synthetic", 300, 1.2e-3)
    resolved = baseline.resolve_config(str(root), {"learning_rate": 0.01, "iterations": 150})
    assert (resolved.iterations, resolved.learning_rate, resolved.validation_size) == (150, 0.01, 200)
    with pytest.raises(baseline.BaselineError, match="no config.json"):
        baseline.resolve_config(str(tmp_path))
    with pytest.raises(baseline.BaselineError, match="--eval_every"):
        baseline.resolve_config(str(root), {"iterations": 50})
    with pytest.raises(baseline.BaselineError, match="has no finished ticket round"):
        baseline.run(str(root))
