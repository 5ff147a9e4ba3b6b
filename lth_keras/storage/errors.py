"""The errors of an experiment directory, each a one-line message a user can act on.

`ResultsError` is the base every program catches to print one line and exit:
`CorruptResultError` (a file is missing, truncated or unparsable) and
`ResultsWriteError` (the disk is full or read-only). `ConfigMismatchError` is
a rerun whose flags differ from the experiment's config.json.

Standard library only.

Example:
    >>> str(CorruptResultError("runs/x/config.json", "not valid\\nJSON"))
    'runs/x/config.json: not valid JSON'
"""

from __future__ import annotations

import errno
import os
from typing import Any

__all__ = ["ConfigMismatchError", "ResultsError", "CorruptResultError", "ResultsWriteError", "DISK_ERRNOS",
           "one_line"]

# Errors a user fixes by freeing space or changing permissions, not bugs.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def one_line(text: Any) -> str:
    """`text` with every run of whitespace (newlines too) made one space.

    Example:
        >>> one_line("a\\n  b")
        'a b'
    """
    return " ".join(str(text).split())


class ConfigMismatchError(ValueError):
    """The saved config.json of an experiment differs from the current flags.

    Example:
        >>> raise ConfigMismatchError("lr: saved=0.1 now=0.2")
        Traceback (most recent call last):
        ...
        lth_keras.storage.errors.ConfigMismatchError: lr: saved=0.1 now=0.2
    """


class ResultsError(Exception):
    """An experiment directory cannot be read or written; the message is one
    line naming the file and what to do."""


class CorruptResultError(ResultsError, ValueError):
    """A result file is missing, truncated or unparsable.

    Args:
        path: the file.
        reason: what is wrong with it (made one line).

    Attributes:
        path: the file.
        reason: what is wrong with it.

    Example:
        >>> str(CorruptResultError("runs/x/config.json", "not valid JSON"))
        'runs/x/config.json: not valid JSON'
    """

    def __init__(self, path: str, reason: str):
        self.path, self.reason = os.fspath(path), one_line(reason)
        super().__init__(f"{self.path}: {self.reason}")


class ResultsWriteError(ResultsError, OSError):
    """A write failed because the disk is full, read-only or not writable.

    Nothing finished is lost and no temporary file is left: rerunning the same
    command after freeing space resumes the experiment.

    Args:
        path: the file that could not be written.
        error: the `OSError` the write raised.

    Attributes:
        path: the file that could not be written.

    Example:
        >>> str(ResultsWriteError("runs/x/a.json", OSError(errno.ENOSPC, "No space left on device")))
        'cannot write runs/x/a.json: No space left on device; free space, then rerun the same command: the experiment resumes where it stopped'
    """

    def __init__(self, path: str, error: OSError):
        self.path = os.fspath(path)
        what = error.strerror or str(error)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = "free space, then rerun the same command: the experiment resumes where it stopped"
        else:
            advice = ("make it writable (or free space), then rerun the same command: "
                      "the experiment resumes where it stopped")
        OSError.__init__(self, error.errno, f"cannot write {self.path}: {what}; {advice}")

    def __str__(self) -> str:
        return self.strerror
