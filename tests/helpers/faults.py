"""Faults injected into real runs: a disk that fills up, and a lock held by another process.

Shared by the storage tests (tests/storage/) and the fault-injection runs
(tests/e2e/faults_test.py).

Example:
    >>> monkeypatch.setattr(os, "fsync", FullDisk(allowed=3))   # doctest: +SKIP
    >>> holder = hold_lock(".locks/trial_0.lock", 60)           # doctest: +SKIP
"""

import errno
import os
import subprocess
import sys
import textwrap

from lth_keras.storage import locks


class FullDisk:
    """os.fsync that succeeds `allowed` times, then says the disk is full
    (as a real disk does from some point on), with `code` as errno."""

    def __init__(self, allowed, code=errno.ENOSPC):
        self.allowed, self.code, self.calls = allowed, code, 0
        self.real = os.fsync

    def __call__(self, fd):
        self.calls += 1
        if self.calls > self.allowed:
            raise OSError(self.code, os.strerror(self.code))
        return self.real(fd)


_HOLDER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("locks", sys.argv[1])
    locks = importlib.util.module_from_spec(spec); spec.loader.exec_module(locks)
    lock = locks.FileLock(sys.argv[2]).acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
""")


def hold_lock(lock_path, seconds):
    """A separate process holding `lock_path` for `seconds` (no TensorFlow: fast)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, locks.__file__, lock_path, str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc
