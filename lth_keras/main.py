r"""Runs the paper's lottery-ticket experiments.

    python -m lth_keras.main --model=lenet
    python -m lth_keras.main --flagfile=flags/quickstart.flags

Every field of `lth_keras.experiment.ExperimentConfig` is a flag; this
module only parses them and calls `experiment.train_and_evaluate`. Running
the same command again resumes the experiment.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing

from absl import app, flags

from lth_keras import experiment

FLAGS = flags.FLAGS


def _base_type(annotation):
    """The flag type of a dataclass field annotation (Optional unwrapped)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing))  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def define_flags(config_cls=experiment.ExperimentConfig, flag_values=FLAGS) -> None:
    """Defines one absl flag per field of the hyperparameter dataclass."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        kind = _base_type(hints[field.name])
        help_text = field.metadata.get("help", field.name)
        default = field.default
        if kind is bool:
            flags.DEFINE_bool(field.name, default, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        elif kind is tuple:
            flags.DEFINE_list(
                field.name, list(default) if default is not None else None, help_text, flag_values=flag_values
            )
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)


def config_from_flags(config_cls=experiment.ExperimentConfig, flag_values=FLAGS):
    """The dataclass instance the parsed flags describe."""
    values = {}
    for field in dataclasses.fields(config_cls):
        value = flag_values[field.name].value
        if isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    return config_cls(**values)


def parse_command_line(argv, flag_values, doc: str):
    """An absl ``flags_parser`` for a binary with its own `FlagValues`.

    Parses `flag_values` first, then absl's global flags (``--verbosity``
    and friends); ``--help`` prints `doc` and the binary's flags; a bad flag
    exits with one line.
    """
    if any(a in ("-h", "--help", "-?", "--helpshort", "--helpfull") for a in argv[1:]):
        print(doc)
        print(flag_values.get_help())
        sys.exit(0)
    try:
        rest = flag_values(argv, known_only=True)
        return flags.FLAGS(rest)
    except flags.Error as e:
        sys.exit(f"error: {e}")


define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lth_keras import datasets, locks, results

    try:
        experiment.train_and_evaluate(config_from_flags())
    except (experiment.ConfigError, results.ConfigMismatchError, results.ResultsError, locks.LockError) as e:
        sys.exit(f"error: {e}")
    except datasets.DataUnavailableError as e:
        # The error lists every source tried, one per line; a user wants one line.
        sys.exit("error: --data_dir: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip()))


if __name__ == "__main__":
    app.run(main)
