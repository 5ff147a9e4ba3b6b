"""The absl flag helpers every lth_keras binary shares.

`define_flags` turns a hyperparameter dataclass (`ExperimentConfig`) into
flags and `config_from_flags` reads them back; `parse_command_line` is the
``flags_parser`` of a binary with its own `FlagValues`; `saved_config`
reads an experiment directory's config.json back into a resolved config.
`lth_keras.main`, `lth_keras.export` and `lth_keras.baselines.tfmot` use
them; this module imports no binary.

Example:

```python
from absl import flags
from lth_keras import cli

FLAGS = flags.FlagValues()
cli.define_flags(flag_values=FLAGS)
FLAGS(["prog", "--model=conv2", "--rounds=4"])
cli.config_from_flags(flag_values=FLAGS).rounds      # 4
```
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing

from absl import flags

from lth_keras.storage import results
from lth_keras.experiment.config import ExperimentConfig

__all__ = ["define_flags", "config_from_flags", "parse_command_line", "saved_config"]


def _base_type(annotation):
    """The flag type of a dataclass field annotation (Optional unwrapped)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing))  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def define_flags(config_cls=ExperimentConfig, flag_values=flags.FLAGS) -> None:
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


def config_from_flags(config_cls=ExperimentConfig, flag_values=flags.FLAGS):
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


def saved_config(results_dir: str, overrides: dict | None = None, *, error=ValueError) -> ExperimentConfig:
    """The resolved config of the experiment in `results_dir` (its
    config.json, with `overrides` applied; output_dir/experiment point at
    `results_dir`).

    Raises:
        error: (a one-line message naming --results) when the directory is
            missing or holds no config.json.
        ConfigError: a bad value.
    """
    path = os.path.join(results_dir, "config.json")
    if not os.path.isdir(results_dir):
        raise error(f"--results: {results_dir!r} does not exist.")
    if not os.path.isfile(path):
        raise error(f"--results: {results_dir!r} is not an lth_keras experiment (no config.json).")
    saved = results.read_json(path)
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    values = {k: v for k, v in saved.items() if k in names}
    values.update(overrides or {})
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
    root = os.path.abspath(results_dir)
    values["output_dir"], values["experiment"] = os.path.dirname(root), os.path.basename(root)
    return ExperimentConfig(**values).resolve()
