"""Tests for lth_keras._startup: a binary starts without TensorFlow's C++
start-up lines, unless --verbosity or the environment asks for them.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


# A tiny run on synthetic data (about a second of training per round).
TINY = ["--dataset=synthetic", "--validation_size=200", "--iterations=100", "--eval_every=50", "--tensorboard=false"]


# -- a quiet start ------------------------------------------------------------------

_CPP_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following instructions)")


def _run_quiet_check(out, *extra, env_level=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if env_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = env_level
    args = [*TINY, "--rounds=1", "--iterations=50", f"--output_dir={out}", *extra]
    return subprocess.run([sys.executable, "-m", "lth_keras.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_binary_starts_without_tensorflow_start_up_lines(tmp_path):
    proc = _run_quiet_check(tmp_path / "quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    noise = [l for l in proc.stderr.splitlines() if _CPP_LOG.match(l)]
    assert noise == [], noise
    assert proc.stdout.splitlines()[0].startswith("Experiment ")
    # --verbosity brings them back (INFO and up), and so does the environment.
    loud = _run_quiet_check(tmp_path / "loud", "--verbosity=0")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert any(re.match(r"^I\d{4} ", l) for l in loud.stderr.splitlines()), loud.stderr[-2000:]
    env = _run_quiet_check(tmp_path / "env", env_level="0")
    assert any(re.match(r"^I\d{4} ", l) for l in env.stderr.splitlines()), env.stderr[-2000:]


def test_log_level_from_verbosity_environment_or_quiet():
    from lth_keras import _startup

    assert _startup.log_level(["-m", "lth_keras.main"], {}) == 3
    assert _startup.log_level([], {"TF_CPP_MIN_LOG_LEVEL": "1"}) == 1
    assert _startup.log_level(["--verbosity=0"], {"TF_CPP_MIN_LOG_LEVEL": "3"}) == 0
    assert _startup.log_level(["-v", "1"], {}) == 0
    assert _startup.log_level(["--verbosity=-2"], {}) == 2
    assert _startup.main_module(["python", "-X", "importtime", "-m", "lth_keras.figures", "--help"]) == "lth_keras.figures"
    assert _startup.main_module(["python", "-c", "import lth_keras"]) is None
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.0  1 port.cc:153] oneDNN custom operations are on.\n"
            "E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit\n"
            "a Python warning\n")
    assert _startup.kept_lines(text, 3) == ["a Python warning\n"]
    assert _startup.kept_lines(text, 2) == ["E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit\n", "a Python warning\n"]
    assert len(_startup.kept_lines(text, 0)) == 4
