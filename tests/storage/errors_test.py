"""Tests for lth_keras.storage.errors: the errors of an experiment directory, each one line.

Programs catch `ResultsError` to print its message and exit; these tests pin
what each kind is (which built-in exceptions it also is, for callers that
catch those) and that its message is one line naming the file and the fix.
"""

import errno
import pathlib

import pytest

from lth_keras.storage import errors
from lth_keras.storage.errors import ConfigMismatchError, CorruptResultError, ResultsError, ResultsWriteError


def test_one_line_joins_every_run_of_whitespace():
    assert errors.one_line("a\n  b\tc \r\n") == "a b c"
    assert errors.one_line(ValueError("x\ny")) == "x y"
    assert errors.one_line("") == ""


def test_corrupt_result_names_the_file_in_one_line():
    error = CorruptResultError(pathlib.Path("runs/x/mask.npz"), "truncated\n (BadZipFile:\tFile is not a zip file)")
    assert error.path == "runs/x/mask.npz" and isinstance(error.path, str)
    assert error.reason == "truncated (BadZipFile: File is not a zip file)"
    assert str(error) == "runs/x/mask.npz: truncated (BadZipFile: File is not a zip file)"
    # Caught as a results error by the programs, as a ValueError by older callers.
    assert isinstance(error, ResultsError) and isinstance(error, ValueError)
    assert not isinstance(error, OSError)


@pytest.mark.parametrize("code, advice", [
    (errno.ENOSPC, "free space, then rerun the same command"),
    (errno.EDQUOT, "free space, then rerun the same command"),
    (errno.EROFS, "make it writable (or free space), then rerun the same command"),
    (errno.EACCES, "make it writable (or free space), then rerun the same command"),
])
def test_a_failed_write_says_what_to_do_and_that_the_experiment_resumes(code, advice):
    error = ResultsWriteError(pathlib.Path("runs/x/summary.json"), OSError(code, "reason from the OS"))
    assert error.path == "runs/x/summary.json" and error.errno == code
    assert str(error) == (f"cannot write runs/x/summary.json: reason from the OS; {advice}: "
                          "the experiment resumes where it stopped")
    assert isinstance(error, ResultsError) and isinstance(error, OSError)
    assert code in errors.DISK_ERRNOS


def test_an_os_error_without_strerror_is_still_named():
    error = ResultsWriteError("a.json", OSError("plain message"))
    assert str(error).startswith("cannot write a.json: plain message; make it writable")


def test_only_disk_errors_are_the_users_to_fix():
    assert {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM} == set(errors.DISK_ERRNOS)
    assert errno.ENOENT not in errors.DISK_ERRNOS and errno.EIO not in errors.DISK_ERRNOS


def test_a_config_mismatch_is_a_value_error_not_a_results_error():
    # A rerun with other flags is the user's choice, not a damaged directory.
    error = ConfigMismatchError("lr: saved=0.1 now=0.2")
    assert isinstance(error, ValueError) and not isinstance(error, ResultsError)
    assert str(error) == "lr: saved=0.1 now=0.2"
