"""What a binary (``python -m lth_keras.<tool>``) does before TensorFlow loads.

TensorFlow prints its C++ start-up lines (oneDNN, CUDA stubs, CPU features
and, on a machine without a GPU, ``E0000 ... failed call to cuInit``, which
reads like a failure) before a program's first line. Several are written
before TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL``, so the level must be set
before the first import, and the lines written during the import are
captured and shown only at the verbosity asked for.

The level comes from ``--verbosity``/``-v`` on the command line (absl's
scale: 0 and above shows INFO, -1 warnings, -2 errors), else from a
``TF_CPP_MIN_LOG_LEVEL`` already in the environment, else 3 (quiet). A
library user's ``import lth_keras`` is left alone: only our binaries
change the level.

Each program that uses TensorFlow calls `prepare` before its first
import of Keras; `python -m lth_keras.figures` only reads CSV files and
never imports TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys

_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def main_module(orig_argv=None) -> str | None:
    """The module run with ``python -m``, or None."""
    argv = list(getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv)
    i = 1
    while i < len(argv) - 1:
        arg = argv[i]
        if arg == "-m":
            return argv[i + 1]
        if arg == "-c" or not arg.startswith("-"):
            return None
        i += 2 if arg in ("-X", "-W", "--check-hash-based-pycs") else 1
    return None


def running_binary(orig_argv=None) -> bool:
    module = main_module(orig_argv)
    return bool(module) and module.startswith("lth_keras.")


def log_level(argv, environ) -> int:
    """TF_CPP_MIN_LOG_LEVEL for a binary: from --verbosity, the environment, or 3."""
    verbosity = None
    args = list(argv)
    for i, arg in enumerate(args):
        for name in ("--verbosity", "-verbosity", "--v", "-v"):
            if arg == name and i + 1 < len(args):
                verbosity = args[i + 1]
            elif arg.startswith(name + "="):
                verbosity = arg.split("=", 1)[1]
    if verbosity is not None:
        try:
            v = int(verbosity)
        except ValueError:
            v = None  # absl reports the bad value itself
        if v is not None:
            return 0 if v >= 0 else min(3, -v)
    try:
        return max(0, min(3, int(environ["TF_CPP_MIN_LOG_LEVEL"])))
    except (KeyError, ValueError):
        return 3


def kept_lines(text: str, level: int) -> list[str]:
    """The lines of captured start-up output to show at `level`: TensorFlow
    log lines of that severity or worse, and anything that is not a log line."""
    out = []
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match:
            if _SEVERITY[match.group(1)] >= level:
                out.append(line)
        elif line.startswith("To enable the following instructions"):
            if level == 0:  # the continuation of an INFO line
                out.append(line)
        elif not line.startswith(_PREAMBLE):
            out.append(line)
    if level == 0:
        return text.splitlines(keepends=True)
    return out


def _import_keras_quietly(level: int) -> None:
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured)
        import keras  # noqa: F401

        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), stderr_fd)
        try:
            import keras  # noqa: F401  (imports TensorFlow)
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            sys.stderr.write("".join(kept_lines(text, level)))
            sys.stderr.flush()


def prepare() -> None:
    """Called first by each program that uses TensorFlow: run as a binary, it
    sets TensorFlow's log level and imports Keras with its start-up lines
    filtered. Imported as a module (by a test, say), it does nothing."""
    if not running_binary() or "keras" in sys.modules:
        return
    argv = list(getattr(sys, "orig_argv", sys.argv))
    level = log_level(argv, os.environ)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(level)
    _import_keras_quietly(level)
