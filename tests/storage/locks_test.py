"""Tests for lth_keras.storage.locks: one writer per trial and per shared file.

The locks are ``flock`` locks, so a second `FileLock` on the same path
excludes the first even inside one process; another process is started
(`tests.helpers.faults.hold_lock`, no TensorFlow) where the holder's pid or
its death is the point.
"""

import os
import signal
import socket
import threading
import time

import pytest

from lth_keras.storage import locks
from tests.helpers.faults import hold_lock


def test_a_stuck_holder_of_the_short_shared_lock_is_named_after_the_timeout(tmp_path):
    path = str(tmp_path / ".locks" / "experiment.lock")
    holder = hold_lock(path, 60)
    try:
        lock = locks.FileLock(path, what="the shared files", wait=True, timeout=0.3)
        with pytest.raises(locks.LockHeldError, match=f"still held by pid {holder.pid} on .* after 0.3s"):
            lock.acquire()
    finally:
        holder.kill()
        holder.wait()
    with lock:
        assert lock.held


def test_a_second_lock_on_the_path_is_refused_naming_the_holder(tmp_path):
    path = str(tmp_path / ".locks" / "trial_3.lock")
    with locks.FileLock(path, what="trial 3") as first:
        assert first.held
        info = locks.holder(path)
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["since"]
        second = locks.FileLock(path, what="trial 3", advice="or pass --wait_for_lock")
        with pytest.raises(locks.LockHeldError) as refused:
            second.acquire()
        message = str(refused.value)
        assert message.startswith(f"trial 3 is being run by pid {os.getpid()} on {socket.gethostname()} since ")
        assert message.endswith(f"(lock {path}); or pass --wait_for_lock") and "\n" not in message
        assert refused.value.holder == info and not second.held
    # Released: the file stays (deleting it would let two processes lock two files) and names no one.
    assert os.path.exists(path) and locks.holder(path) == {}
    with second:
        assert second.held


def test_waiting_takes_the_lock_when_the_holder_lets_go(tmp_path):
    path = str(tmp_path / "experiment.lock")
    first = locks.FileLock(path).acquire()
    waited = []
    threading.Timer(0.3, first.release).start()
    began = time.monotonic()
    with locks.FileLock(path, wait=True, timeout=30, on_wait=waited.append) as second:
        assert second.held and not first.held
    assert time.monotonic() - began >= 0.25
    # on_wait was told who held it, once, before blocking.
    assert len(waited) == 1 and waited[0].startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    path = str(tmp_path / "trial_0.lock")
    holder = hold_lock(path, 60)
    try:
        with pytest.raises(locks.LockHeldError, match=f"pid {holder.pid} on "):
            locks.FileLock(path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert locks.holder(path)["pid"] == holder.pid  # what it wrote stays; its lock does not
    with locks.FileLock(path) as lock:
        assert lock.held and locks.holder(path)["pid"] == os.getpid()


def test_describe_and_an_unreadable_holder_file():
    assert locks.describe({}) == "another process"
    assert locks.describe({"pid": 12, "host": "node1"}) == "pid 12 on node1"
    assert locks.describe({"pid": 12, "host": "node1", "since": "2026-01-01 10:00:00 UTC"}) == (
        "pid 12 on node1 since 2026-01-01 10:00:00 UTC")
    assert locks.holder("/nonexistent/x.lock") == {}


def test_a_lock_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(locks.LockError, match=r"^cannot create the lock file .*file/x\.lock: (File exists|Not a directory)$"):
        locks.FileLock(str(blocker / "x.lock")).acquire()
