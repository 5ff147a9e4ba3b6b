"""Tests for the lth_keras.instability program on tiny synthetic experiments: its
flags and one-line errors, resuming after SIGKILL, and a trial another
process analyses.

What it measures is tested in tests/analysis/instability_test.py.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lth_keras import instability
from lth_keras.storage.experiment_dir import ExperimentDir
from tests.helpers.runs import lenet_experiment, own_lines
from tests.helpers import REPO


@pytest.fixture(scope="module")
def high_lr(tmp_path_factory):
    return lenet_experiment(tmp_path_factory.mktemp("inst"), "high_lr")


def _main(argv):
    """Runs ``python -m lth_keras.instability ARGV`` in this process (its own FlagValues)."""
    instability.FLAGS.unparse_flags()
    try:
        instability.FLAGS(["instability"] + argv)
        instability.main(["instability"])
    finally:
        instability.FLAGS.unparse_flags()


def _cli(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-m", "lth_keras.instability"] + args, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill(tmp_path):
    exp = lenet_experiment(tmp_path / "a", "killed", iterations=400, learning_rate=1.2e-3, rounds=2)
    clean = str(tmp_path / "clean")
    shutil.copytree(exp.root, clean)
    args = ["--rewind_iterations=0,100", "--points=5", "--nofigure"]
    proc = _cli([f"--results={exp.root}"] + args)
    first = os.path.join(exp.root, "instability", "trial_0", "round_0", "k_0")
    deadline = time.time() + 240
    while time.time() < deadline and not (os.path.isdir(first) and any(f.startswith("copy") for f in os.listdir(first))):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sorted(f for f in os.listdir(first) if f.startswith("copy"))
    assert kept
    stamps = {f: os.path.getmtime(os.path.join(first, f)) for f in kept}
    proc = _cli([f"--results={exp.root}"] + args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "4 of 4 to measure" in out
    # The copy finished before the kill is reused, not retrained.
    assert {f: os.path.getmtime(os.path.join(first, f)) for f in kept} == stamps
    proc = _cli([f"--results={clean}"] + args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    resumed = pd.read_csv(os.path.join(exp.root, "instability.csv"))
    uninterrupted = pd.read_csv(os.path.join(clean, "instability.csv"))
    assert len(resumed) == 4
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    # Finished: a third run measures nothing.
    proc = _cli([f"--results={exp.root}"] + args)
    out, _ = proc.communicate(timeout=300)
    assert "0 of 4 to measure" in out


@pytest.mark.parametrize("args, message", [
    ([], "error: --results is required"),
    (["--results={missing}"], "does not exist"),
    (["--results={exp}", "--points=1"], "--points must be at least 2"),
    (["--results={exp}", "--rewind_iterations=300"], "--rewind_iterations must be in [0, 300)"),
    (["--results={exp}", "--rounds=4", "--rewind_iterations=0"], "--rounds: the ticket rounds"),
    (["--results={exp}", "--rewind_iterations=a"], "--rewind_iterations takes integers"),
    (["--results={exp}", "--copy_seeds=1"], "--copy_seeds takes two seeds"),
])
def test_bad_flags_are_one_line_errors(high_lr, tmp_path, args, message):
    args = [a.format(exp=high_lr.root, missing=str(tmp_path / "nope")) for a in args]
    with pytest.raises(SystemExit) as exit_:
        _main(args)
    assert str(exit_.value.code).startswith("error: ") and message in str(exit_.value.code)
    assert "\n" not in str(exit_.value.code)


def test_bad_flag_from_the_command_line_is_one_line(tmp_path):
    proc = _cli([f"--results={tmp_path / 'nope'}"])
    _, err = proc.communicate(timeout=120)
    own = own_lines(err)
    assert proc.returncode != 0 and "Traceback" not in err
    assert own == [f"error: --results: {str(tmp_path / 'nope')!r} does not exist."], err


def test_a_trial_under_analysis_is_refused_or_waited_for(tmp_path):
    # A second process on the same trial gets one line naming the holder,
    # or waits with --wait_for_lock, and then measures nothing twice.
    import threading

    from lth_keras.storage import locks

    exp = lenet_experiment(tmp_path, "locked", iterations=100, learning_rate=1.2e-3, rounds=1)
    held = locks.FileLock(ExperimentDir(exp.root).instability_lock_path(0))
    held.acquire()
    try:
        with pytest.raises(SystemExit) as exit_:
            _main([f"--results={exp.root}", "--rewind_iterations=0", "--points=2"])
        message = str(exit_.value.code)
        assert message.startswith("error: the instability analysis of trial 0") and f"pid {os.getpid()}" in message
        assert "--wait_for_lock" in message and "\n" not in message
        assert not os.path.exists(os.path.join(exp.root, "instability", "trial_0"))

        lines = []
        threading.Timer(1.0, held.release).start()
        instability.run_instability(exp.root, rewind_iterations=[0], points=2, figure=False,
                                    wait_for_lock=True, log=lines.append)
    finally:
        held.release()
    assert any("waiting for pid" in line for line in lines), lines
    assert len(pd.read_csv(os.path.join(exp.root, "instability.csv"))) == 1
