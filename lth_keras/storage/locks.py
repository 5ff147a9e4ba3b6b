"""OS file locks that keep one writer per trial and per shared file.

Locks are ``fcntl.flock`` locks on small files under ``<experiment>/.locks/``.
The operating system releases them when their process ends, however it ends
(SIGKILL, OOM killer, a pre-empted node): a lock file left behind holds no
lock. The holder writes its pid, host and start time into the file so that a
refused process can say who holds it.

On a filesystem shared between machines (NFS) ``flock`` needs working lock
support (NFSv4, or NFSv3 with lockd); a filesystem without it gives a
`LockError` instead of silently running two writers.

This module uses only the standard library.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), ".locks", "trial_0.lock")
    >>> with FileLock(path, what="trial 0"):
    ...     held_elsewhere = FileLock(path, what="trial 0")
    ...     held_elsewhere.acquire()   # a second holder, even in this process
    Traceback (most recent call last):
    ...
    lth_keras.storage.locks.LockHeldError: trial 0 is being run by pid ... on ... since ...
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time

__all__ = ["FileLock", "LockError", "LockHeldError", "holder"]


class LockError(Exception):
    """A lock could not be taken (held elsewhere, or no lock support); the
    message is one line."""


class LockHeldError(LockError):
    """Another process holds the lock; `holder` is what it wrote (pid, host, since)."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


def holder(path: str) -> dict:
    """What the last holder of the lock file at `path` wrote (may be {})."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.loads(f.read() or "{}")
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    """'pid 123 on host since 2026-01-01 10:00:00 UTC', or 'another process'."""
    if not info.get("pid"):
        return "another process"
    text = f"pid {info['pid']} on {info.get('host', '?')}"
    if info.get("since"):
        text += f" since {info['since']}"
    return text


class FileLock:
    """An exclusive ``flock`` on `path`, created (with its directory) if needed.

    Args:
        path: the lock file. It is never deleted: deleting a lock file lets
            two processes lock two different files of the same name.
        what: the locked thing, for messages ("trial 3 of runs/lenet").
        wait: block until the lock is free instead of raising `LockHeldError`.
        timeout: with `wait`, give up after this many seconds (`LockHeldError`);
            None waits for ever.
        on_wait: called once with the holder's description before blocking.
        advice: appended to the `LockHeldError` message.

    Each `FileLock` opens its own file description, so two `FileLock`s on one
    path exclude each other even inside one process.

    Example:
        >>> import tempfile, os
        >>> lock = FileLock(os.path.join(tempfile.mkdtemp(), "x.lock"))
        >>> with lock:
        ...     lock.held
        True
    """

    def __init__(self, path: str, *, what: str | None = None, wait: bool = False,
                 timeout: float | None = None, on_wait=None, advice: str = ""):
        self.path = os.fspath(path)
        self.what = what or self.path
        self.wait = wait
        self.timeout = timeout
        self.on_wait = on_wait
        self.advice = advice
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            return self
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
            # 0o666 & ~umask, like any other file of the experiment.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise LockError(
                f"cannot create the lock file {self.path}: {e.strerror or e}"
                + ("; free space (or make it writable) and rerun" if e.errno in (
                    errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM) else "")
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = holder(self.path)
                if not self.wait:
                    message = f"{self.what} is being run by {describe(info)} (lock {self.path})"
                    raise LockHeldError(message + (f"; {self.advice}" if self.advice else ""), info)
                if self.on_wait is not None:
                    self.on_wait(describe(info))
                if self.timeout is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    self._wait_until(fd, time.monotonic() + self.timeout)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise LockError(
                    f"cannot lock {self.path}: the filesystem does not support file locks "
                    f"({e.strerror}); put --output_dir on a filesystem that does (local disk, NFSv4)"
                ) from None
            raise
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # a full disk must not stop the lock itself; the holder is then "another process"
        return self

    def _wait_until(self, fd, deadline):
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeldError(
                        f"{self.what} is still held by {describe(holder(self.path))} after "
                        f"{self.timeout:g}s (lock {self.path}); is that process stopped or hung?"
                        + (f" {self.advice}" if self.advice else ""), holder(self.path)) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid once released
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
