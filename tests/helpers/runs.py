"""Small real experiments and the binary's command line, for the tests of a
module and of the program in front of it (tests/analysis/ and
tests/programs/, tests/experiment/export_test.py and
tests/programs/export_test.py, tests/programs/main_test.py and tests/e2e/).

Example:
    >>> exp = lenet_experiment(tmp_path, "high_lr")            # doctest: +SKIP
    >>> root = export_experiment(str(tmp_path / "runs"))       # doctest: +SKIP
"""

import os
import re
import subprocess
import sys

from tests.helpers import REPO

QUIET = lambda s: None  # noqa: E731

# The synthetic experiment the export tests read: its ticket at round
# EXPORT_ROUND keeps 0.4^2 = 16% of the hidden weights (dense rate 0.6).
EXPORT_SIZES = (500, 100)
EXPORT_ROUND = 2

# TensorFlow/absl C++ log lines (and the continuation line of TF's CPU
# feature message), which the binary does not control.
_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING|To enable the following instructions)")


def lenet_experiment(tmp_path, name, **kw):
    """A LeNet experiment on synthetic data (Adam at 0.03 unless `kw` says otherwise), run in-process."""
    from lth_keras.experiment import runner as experiment

    base = dict(model="lenet", dataset="synthetic", validation_size=200, iterations=300, eval_every=100,
                rounds=1, experiment=name, tensorboard=False, optimizer="adam", learning_rate=0.03,
                batch_size=20)
    base.update(kw)
    return experiment.train_and_evaluate(experiment.ExperimentConfig(**base), str(tmp_path), log=QUIET)


def lenet_rounds(tmp_path, name, **kw):
    """A 3-round LeNet IMP experiment on synthetic data (SGD, the defaults), run in-process."""
    from lth_keras.experiment import runner as experiment

    base = dict(model="lenet", dataset="synthetic", validation_size=200, iterations=60, eval_every=30, rounds=3,
                experiment=name, tensorboard=False, synthetic_sizes=(600, 100))
    base.update(kw)
    return experiment.train_and_evaluate(experiment.ExperimentConfig(**base), str(tmp_path), log=QUIET)


def export_experiment(output_dir):
    """A 3-round LeNet IMP experiment on synthetic data, ticket at P_m ~16%; returns its root."""
    from lth_keras.experiment import runner as experiment

    config = experiment.ExperimentConfig(
        model="lenet", dataset="synthetic", synthetic_sizes=EXPORT_SIZES, validation_size=100,
        iterations=40, eval_every=20, rounds=EXPORT_ROUND + 1, prune_rate_dense=0.6, prune_rate_output=0.3,
        tensorboard=False, checkpoint_every=0, output_dir=output_dir,
    )
    return experiment.train_and_evaluate(config, log=QUIET).root


def subprocess_env(**extra):
    """The environment of a child process that imports `tests` and sees no GPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def run_main(*args, timeout=600):
    """``python -m lth_keras.main`` in a fresh process, from the repository's root."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "lth_keras.main", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def own_lines(stderr):
    """The binary's own stderr lines, without TensorFlow's."""
    return [line for line in stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]
