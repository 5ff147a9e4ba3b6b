"""The TFMOT gradual-pruning baseline program (lth_keras.baselines.tfmot).

It runs in its own venv (tensorflow-model-optimization needs tf_keras and
absl-py 1.x), created once per machine by `setup_venv` under the temp dir;
set LTH_KERAS_TFMOT_PYTHON to use an interpreter that already has TFMOT.

It writes a trial's rounds under the trial's lock, as the runner and every
other writer of an experiment do: while another process holds the trial it
stops with one line naming the holder, or waits for it with
--wait_for_lock, and writes nothing meanwhile.

Its rounds' logic without TFMOT (schedule, config) is tested in
tfmot_gradual_test.py, its venv in venv_test.py.
"""

import ast
import glob
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

from lth_keras.experiment import runner as experiment
from lth_keras.storage.curves import CURVE_COLUMNS
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.summary import SUMMARY_CSV_COLUMNS, load_summary
from lth_keras.baselines import tfmot as baseline
from tests.helpers import REPO

ARM = baseline.ARM
# TensorFlow/absl C++ log lines, which the program does not control (as in main_test).
_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING|To enable the following instructions)")


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


# ---------------------------------------------------------------- the trial lock


@pytest.fixture(scope="module")
def lock_dir(tmp_path_factory):
    """A 2-round LeNet IMP experiment on synthetic data (one round for the baseline), apart
    from imp_dir: the baseline writes nothing into it until the lock is free."""
    config = experiment.ExperimentConfig(
        model="lenet", dataset="synthetic", synthetic_sizes=(500, 100), validation_size=100,
        iterations=60, eval_every=20, rounds=2, prune_rate_dense=0.6, prune_rate_output=0.3,
        tensorboard=False, checkpoint_every=0, output_dir=str(tmp_path_factory.mktemp("runs")),
    )
    return experiment.train_and_evaluate(config, log=lambda message: None).root


def _baseline(python, root, *flags):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        [python, "-m", "lth_keras.baselines.tfmot", f"--results={root}", "--pruning_frequency=10", *flags],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _own_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]


@pytest.mark.slow
def test_a_trial_another_process_writes_is_refused_with_one_line(tfmot_python, lock_dir):
    exp = ExperimentDir(lock_dir)
    with exp.trial_lock(0):  # what `python -m lth_keras.main` holds while it runs trial 0
        proc = _baseline(tfmot_python, lock_dir)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode != 0, out[-2000:]
        assert "Traceback" not in err, err[-3000:]
        lines = _own_lines(err)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: trial 0 of {lock_dir} is being run by pid {os.getpid()}"), lines
        assert "--wait_for_lock" in lines[0]
        assert not exp.is_round_done(0, ARM, 1)
        assert not os.path.exists(os.path.join(lock_dir, "trial_0", ARM))


@pytest.mark.slow
def test_wait_for_lock_waits_for_the_trial_then_writes(tfmot_python, lock_dir):
    exp = ExperimentDir(lock_dir)
    held = exp.trial_lock(0)
    held.acquire()
    try:
        proc = _baseline(tfmot_python, lock_dir, "--wait_for_lock", "--overwrite")
        lines, errors = [], []
        readers = [threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True),
                   threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 300
        while not any("waiting for" in line for line in lines):
            assert proc.poll() is None, (lines, errors[-30:])
            assert time.monotonic() < deadline, lines
            time.sleep(0.1)
        # Waiting: the trial is untouched while the other writer has it.
        time.sleep(1.0)
        assert not exp.is_round_done(0, ARM, 1)
        assert not os.path.exists(os.path.join(lock_dir, "trial_0", ARM))
    finally:
        held.release()
    returncode = proc.wait(timeout=600)
    for reader in readers:
        reader.join(timeout=10)
    assert returncode == 0, errors[-30:]
    waiting = next(line for line in lines if "waiting for" in line)
    assert f"trial 0: waiting for pid {os.getpid()}" in waiting, waiting
    assert exp.is_round_done(0, ARM, 1)
    assert ARM in set(load_summary(lock_dir)["arm"])
