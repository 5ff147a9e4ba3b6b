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

from absl import flags

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras import cli
from lth_keras.experiment import runner as experiment

__all__ = ["FLAGS", "define_flags", "config_from_flags", "main"]

# The generic parser lived here before lth_keras.cli; kept for code that imports it.
parse_command_line = cli.parse_command_line


def define_flags(flag_values: flags.FlagValues) -> None:
    """The program's flags: one per field of `ExperimentConfig`."""
    cli.define_flags(flag_values=flag_values)


FLAGS = cli.program_flags(define_flags)


def config_from_flags(flag_values: flags.FlagValues = FLAGS):
    """The `ExperimentConfig` the parsed flags describe."""
    return cli.config_from_flags(flag_values=flag_values)


def main(argv):
    """Runs (or resumes) the experiment the parsed `FLAGS` describe; errors are one line."""
    del argv  # `cli.parse_command_line` refuses stray arguments
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lth_keras import datasets
    from lth_keras.storage import locks
    from lth_keras.storage import errors

    try:
        experiment.train_and_evaluate(config_from_flags())
    except (experiment.ConfigError, errors.ConfigMismatchError, errors.ResultsError, locks.LockError) as e:
        sys.exit(f"error: {e}")
    except datasets.DataUnavailableError as e:
        # The error lists every source tried, one per line; a user wants one line.
        sys.exit("error: --data_dir: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip()))


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
