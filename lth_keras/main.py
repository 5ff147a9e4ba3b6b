r"""Runs the paper's lottery-ticket experiments.

    python -m lth_keras.main --model=lenet
    python -m lth_keras.main --flagfile=flags/quickstart.flags

Every field of `lth_keras.experiment.ExperimentConfig` is a flag; this
module only parses them and calls `experiment.train_and_evaluate`. Running
the same command again resumes the experiment.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras import cli
from lth_keras.experiment import runner as experiment

FLAGS = flags.FLAGS
# The helpers lived here before lth_keras.cli; kept for code that imports them.
define_flags, config_from_flags, parse_command_line = cli.define_flags, cli.config_from_flags, cli.parse_command_line


cli.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lth_keras import datasets
    from lth_keras.storage import locks
    from lth_keras.storage import results

    try:
        experiment.train_and_evaluate(cli.config_from_flags())
    except (experiment.ConfigError, results.ConfigMismatchError, results.ResultsError, locks.LockError) as e:
        sys.exit(f"error: {e}")
    except datasets.DataUnavailableError as e:
        # The error lists every source tried, one per line; a user wants one line.
        sys.exit("error: --data_dir: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip()))


if __name__ == "__main__":
    app.run(main)
