"""The TFMOT baseline writes a trial's rounds under the trial's lock, as the
runner and every other writer of an experiment do: while another process
holds the trial it stops with one line naming the holder, or waits for it
with --wait_for_lock, and writes nothing meanwhile.

The baseline runs in its own venv (see tests/tfmot_test.py);
LTH_KERAS_TFMOT_PYTHON names an interpreter that already has TFMOT.
"""

import os
import re
import subprocess
import tempfile
import threading
import time

import pytest

from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.summary import load_summary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARM = "tfmot_gradual"
# TensorFlow/absl C++ log lines, which the program does not control (as in main_test).
_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING|To enable the following instructions)")


@pytest.fixture(scope="module")
def tfmot_python():
    python = os.environ.get("LTH_KERAS_TFMOT_PYTHON")
    if python:
        return python
    from lth_keras.baselines import venv

    return venv.setup_venv(os.path.join(tempfile.gettempdir(), "lth_keras_tfmot_venv"))


@pytest.fixture(scope="module")
def imp_dir(tmp_path_factory):
    """A 2-round LeNet IMP experiment on synthetic data (one round for the baseline)."""
    from lth_keras.experiment import runner as experiment

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
def test_a_trial_another_process_writes_is_refused_with_one_line(tfmot_python, imp_dir):
    exp = ExperimentDir(imp_dir)
    with exp.trial_lock(0):  # what `python -m lth_keras.main` holds while it runs trial 0
        proc = _baseline(tfmot_python, imp_dir)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode != 0, out[-2000:]
        assert "Traceback" not in err, err[-3000:]
        lines = _own_lines(err)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: trial 0 of {imp_dir} is being run by pid {os.getpid()}"), lines
        assert "--wait_for_lock" in lines[0]
        assert not exp.is_round_done(0, ARM, 1)
        assert not os.path.exists(os.path.join(imp_dir, "trial_0", ARM))


@pytest.mark.slow
def test_wait_for_lock_waits_for_the_trial_then_writes(tfmot_python, imp_dir):
    exp = ExperimentDir(imp_dir)
    held = exp.trial_lock(0)
    held.acquire()
    try:
        proc = _baseline(tfmot_python, imp_dir, "--wait_for_lock", "--overwrite")
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
        assert not os.path.exists(os.path.join(imp_dir, "trial_0", ARM))
    finally:
        held.release()
    returncode = proc.wait(timeout=600)
    for reader in readers:
        reader.join(timeout=10)
    assert returncode == 0, errors[-30:]
    waiting = next(line for line in lines if "waiting for" in line)
    assert f"trial 0: waiting for pid {os.getpid()}" in waiting, waiting
    assert exp.is_round_done(0, ARM, 1)
    assert ARM in set(load_summary(imp_dir)["arm"])
