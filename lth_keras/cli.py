"""How every lth_keras program defines and parses its flags.

A program (``python -m lth_keras.<program>``) declares its flags in one
function, ``define_flags(flag_values)``; `program_flags` makes the
program's own `flags.FlagValues` from it, its ``main(argv)`` reads that
FlagValues, and `run` parses the command line with it and calls ``main``.
The FlagValues is the program's alone, so programs may share flag names
(``--results``, ``--out``) and be imported together.

Every program then answers the same way on the command line:

- its flags are parsed first, then absl's own (``--verbosity``,
  ``--flagfile`` files may hold either);
- ``--help`` (``-h``, ``-?``, ``--helpshort``) prints the program's doc and
  flags, ``--helpfull`` adds absl's, and both exit with status 1, as absl's
  own ``--help`` does;
- a bad flag, a bad value or a stray argument exits with one line,
  ``error: ...``, naming the flag, and no traceback.

`define_flags` generates one flag per field of a config dataclass
(`ExperimentConfig`) and `config_from_flags` reads them back: `lth_keras.main`
and the TFMOT baseline take every experiment flag that way.

This module imports no TensorFlow or Keras (``python -m lth_keras.figures``
uses it); the config class is imported when first needed.

Example:

```python
from absl import flags
from lth_keras import cli

def define_flags(flag_values):
    flags.DEFINE_string("results", None, "The experiment directory.", flag_values=flag_values)

FLAGS = cli.program_flags(define_flags)

def main(argv):
    print(FLAGS.results)

if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
```
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Callable

from absl import app, flags

__all__ = ["program_flags", "parse_command_line", "run", "define_flags", "config_from_flags", "saved_config"]

_SHORT_HELP = ("-h", "-?", "--help", "--helpshort")
_FULL_HELP = "--helpfull"


def program_flags(define: Callable[[flags.FlagValues], None]) -> flags.FlagValues:
    """A program's own FlagValues, holding the flags `define` declares.

    Args:
        define: called once with the new FlagValues; it declares every flag
            of the program (``flags.DEFINE_*(..., flag_values=flag_values)``).
    """
    flag_values = flags.FlagValues()
    define(flag_values)
    return flag_values


def parse_command_line(argv: typing.Sequence[str], flag_values: flags.FlagValues, doc: str) -> list[str]:
    """Parses a program's command line: the ``flags_parser`` that `run` gives absl.

    Parses `flag_values` first, then absl's global flags with what is left
    (``--verbosity`` and friends); returns ``[program]``.

    Args:
        argv: the command line, program name first.
        flag_values: the program's FlagValues (`program_flags`).
        doc: the program's doc, printed by ``--help``.

    Raises:
        SystemExit: after ``--help`` (status 1), or with one line
            ``error: ...`` for a bad flag, value or argument.
    """
    argv = list(argv)
    asked = [a for a in argv[1:] if a in _SHORT_HELP + (_FULL_HELP,)]
    if asked:
        print(doc)
        print(flag_values.get_help())
        if _FULL_HELP in asked:
            print(flags.FLAGS.get_help())
        else:
            print("\nTry --helpfull to get a list of all flags.")
        sys.exit(1)  # absl's --help status
    try:
        rest = flags.FLAGS(flag_values(argv, known_only=True))
    except flags.Error as e:
        sys.exit(f"error: {e}")
    if len(rest) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(rest[1:])}")
    return rest


def run(main: Callable[[list], None], flag_values: flags.FlagValues, doc: str) -> None:
    """Runs a program: absl's `app.run(main)` with the command line parsed by
    `parse_command_line`. Call it under ``if __name__ == "__main__":``."""
    app.run(main, flags_parser=lambda argv: parse_command_line(argv, flag_values, doc))


# --------------------------------------------------------------------------
# Flags from a config dataclass


def _config_cls(config_cls):
    if config_cls is not None:
        return config_cls
    from lth_keras.experiment.config import ExperimentConfig  # TensorFlow: only when asked for

    return ExperimentConfig


def _base_type(annotation):
    """The flag type of a dataclass field annotation (Optional unwrapped)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing))  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def define_flags(config_cls=None, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one absl flag per field of a hyperparameter dataclass.

    Args:
        config_cls: the dataclass (default `ExperimentConfig`); each field's
            ``metadata["help"]`` is its help text.
        flag_values: where to define them; a program passes its own.
    """
    config_cls = _config_cls(config_cls)
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


def config_from_flags(config_cls=None, flag_values: flags.FlagValues = flags.FLAGS):
    """The dataclass instance (default `ExperimentConfig`) the parsed flags describe."""
    config_cls = _config_cls(config_cls)
    values = {}
    for field in dataclasses.fields(config_cls):
        value = flag_values[field.name].value
        if isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    return config_cls(**values)


def saved_config(results_dir: str, overrides: dict | None = None, *, error=ValueError):
    """`lth_keras.experiment.saved.saved_config` (it lived here before)."""
    from lth_keras.experiment import saved

    return saved.saved_config(results_dir, overrides, error=error)
