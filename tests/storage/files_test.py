"""Tests for lth_keras.storage.files: atomic writes and checked reads of one file.

Pure numpy/json, no TensorFlow. The disk faults (full, read-only) are
injected with `tests.helpers.faults.FullDisk` in place of ``os.fsync``.
"""

import ast
import errno
import json
import math
import os
import zipfile

import numpy as np
import pandas as pd
import pytest

from lth_keras.storage import files, locks
from lth_keras.storage.errors import CorruptResultError, ResultsWriteError
from lth_keras.storage.files import atomic_write_csv, atomic_write_json, atomic_write_npz, atomic_write_text
from tests.helpers.faults import FullDisk

STORAGE = os.path.dirname(files.__file__)


def _listing(directory):
    out = []
    for dirpath, _, names in os.walk(directory):
        out += [os.path.relpath(os.path.join(dirpath, f), directory) for f in names]
    return sorted(out)


# ---------------------------------------------------------------- atomic writes


def test_no_tensorflow_or_keras_import():
    # Checked statically: lth_keras/__init__ may import TF for other modules.
    roots = set()
    for name in os.listdir(STORAGE):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(STORAGE, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots.add(node.module.split(".")[0])
    assert "numpy" in roots
    assert not roots & {"tensorflow", "keras", "tf_keras"}


def test_atomic_write_text_and_json_round_trip(tmp_path):
    p = tmp_path / "deep" / "dir" / "a.txt"
    atomic_write_text(str(p), "héllo\nworld\n")
    assert p.read_text(encoding="utf-8") == "héllo\nworld\n"

    j = tmp_path / "x" / "c.json"
    atomic_write_json(
        str(j), {"b": np.float32(0.25), "a": np.arange(3), "c": (1, np.int64(2))}
    )
    text = j.read_text()
    assert json.loads(text) == {"a": [0, 1, 2], "b": 0.25, "c": [1, 2]}
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')  # sorted
    assert '\n  "a"' in text  # indent 2
    assert _listing(tmp_path) == ["deep/dir/a.txt", "x/c.json"]


def test_atomic_write_npz_and_csv_round_trip(tmp_path):
    arrays = {
        "dense/kernel": np.array([[True, False], [False, True]]),
        "conv": np.random.default_rng(0).normal(size=(3, 3, 2)).astype(np.float32),
    }
    p = tmp_path / "m.npz"
    atomic_write_npz(str(p), arrays)
    with np.load(str(p)) as data:
        assert sorted(data.files) == sorted(arrays)
        for k, v in arrays.items():
            assert data[k].dtype == v.dtype
            np.testing.assert_array_equal(data[k], v)

    c = tmp_path / "r.csv"
    atomic_write_csv(str(c), [{"a": 1, "b": 0.1}, {"a": 2, "b": None}])
    df = pd.read_csv(str(c))
    assert list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == [1, 2]
    assert df["b"][0] == 0.1 and math.isnan(df["b"][1])
    assert _listing(tmp_path) == ["m.npz", "r.csv"]


def test_failed_replace_keeps_previous_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    atomic_write_json(str(p), {"v": 1})

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_json(str(p), {"v": 2})
    with pytest.raises(OSError):
        atomic_write_npz(str(tmp_path / "new.npz"), {"a": np.zeros(2)})
    monkeypatch.undo()

    assert json.loads(p.read_text()) == {"v": 1}
    assert _listing(tmp_path) == ["f.json"]


def test_failure_while_writing_content_keeps_previous_file(tmp_path):
    p = tmp_path / "c.csv"
    atomic_write_csv(str(p), [{"a": 1}])
    before = p.read_text()

    class Bad:
        def __str__(self):
            raise RuntimeError("cannot format")

    with pytest.raises(RuntimeError):
        atomic_write_csv(str(p), [{"a": 1}, {"a": Bad()}])
    assert p.read_text() == before
    assert _listing(tmp_path) == ["c.csv"]


# ---------------------------------------------------------------- full or read-only disk, umask


def test_read_only_disk_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", FullDisk(allowed=0, code=errno.EROFS))
    target = tmp_path / "exp" / "summary.json"
    with pytest.raises(ResultsWriteError, match="cannot write .*summary.json: Read-only file system; make it writable"):
        atomic_write_json(str(target), {"a": 1})
    assert os.listdir(tmp_path / "exp") == []


def test_results_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_json(str(tmp_path / "a.json"), {})
        with locks.FileLock(str(tmp_path / "x.lock")):
            pass
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "x.lock").st_mode & 0o777 == 0o640
    atomic_write_json(str(tmp_path / "b.json"), {})
    assert os.stat(tmp_path / "b.json").st_mode & 0o777 == 0o666 & ~old


# ---------------------------------------------------------------- checked reads


def test_read_json_names_the_file_and_what_is_wrong(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_json(str(path), {"lr": 0.1})
    assert files.read_json(str(path)) == {"lr": 0.1}
    cases = [
        (lambda: os.remove(path), {}, "missing"),
        (lambda: path.write_text('{"lr": 0.1,'), {}, "not valid JSON (Expecting property name"),
        (lambda: path.write_bytes(b"\xff\xfe{}"), {}, "not valid JSON (not UTF-8 text)"),
        (lambda: path.write_text("[1, 2]"), {}, "expected a JSON object, got list"),
        (lambda: path.write_text("{}"), {"expect": list}, "expected a JSON list, got dict"),
        (lambda: path.write_text("{"), {"what": "rerun with --overwrite"}, "; rerun with --overwrite"),
    ]
    for damage, kwargs, needle in cases:
        damage()
        with pytest.raises(CorruptResultError) as info:
            files.read_json(str(path), **kwargs)
        assert info.value.path == str(path) and needle in info.value.reason, (needle, str(info.value))
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_a_truncated_or_garbled_npz_is_caught_by_the_cheap_check_and_by_the_read(tmp_path):
    path = str(tmp_path / "mask.npz")
    arrays = {"dense/kernel": np.ones((30, 20), bool), "out": np.arange(6, dtype=np.float32)}
    atomic_write_npz(path, arrays)
    assert sorted(files.check_npz(path)) == sorted(arrays)
    whole = open(path, "rb").read()
    for damaged in (whole[: len(whole) // 2], b"not a zip", b""):
        with open(path, "wb") as f:
            f.write(damaged)
        for read in (files.check_npz, files.read_npz):
            with pytest.raises(CorruptResultError, match="truncated or not an .npz file"):
                read(path)
    os.remove(path)
    with pytest.raises(CorruptResultError, match=r"mask\.npz: missing$"):
        files.read_npz(path)


def test_check_npz_refuses_a_zip_that_holds_no_arrays_or_a_cut_short_array(tmp_path):
    path = str(tmp_path / "x.npz")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(CorruptResultError, match="member 'notes.txt' is not an array"):
        files.check_npz(path)
    # A member whose header promises more data than it holds.
    atomic_write_npz(path, {"w": np.zeros(100)})
    with zipfile.ZipFile(path) as z:
        member = z.read("w.npy")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", member[:-80])
    with pytest.raises(CorruptResultError, match="array 'w' is cut short"):
        files.check_npz(path)


def test_read_checked_csv_refuses_a_missing_column_and_a_cut_short_row(tmp_path):
    path = tmp_path / "curve.csv"
    atomic_write_csv(str(path), [{"iteration": 0, "loss": 1.5}, {"iteration": 10, "loss": None}])
    assert files.read_checked_csv(str(path), ("iteration",)) == [
        {"iteration": "0", "loss": "1.5"}, {"iteration": "10", "loss": ""}]
    with pytest.raises(CorruptResultError, match="no column 'accuracy' in the header"):
        files.read_checked_csv(str(path), ("accuracy",))
    path.write_text("iteration,loss\n0,1.5\n10\n")
    with pytest.raises(CorruptResultError, match=r"line 3 has 1 cells, the header 2\); rebuild it$"):
        files.read_checked_csv(str(path), ("iteration",), advice="; rebuild it")
    path.write_text("")
    with pytest.raises(CorruptResultError, match="empty file"):
        files.read_checked_csv(str(path), ())


def test_move_aside_keeps_every_damaged_copy(tmp_path):
    path = tmp_path / "round_1"
    moved = []
    for content in ("first", "second"):
        path.mkdir()
        (path / "mask.npz").write_text(content)
        moved.append(files.move_aside(str(path)))
    assert not path.exists()
    assert moved[0] != moved[1] and all(os.path.basename(m).startswith("round_1.corrupt-") for m in moved)
    assert [open(os.path.join(m, "mask.npz")).read() for m in moved] == ["first", "second"]


def test_temp_files_are_recognised_and_never_left_behind(tmp_path, monkeypatch):
    renamed = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append(os.path.basename(src)) or real(src, dst))
    atomic_write_text(str(tmp_path / "mask.npz"), "x")
    monkeypatch.undo()
    assert len(renamed) == 1 and files.is_temp_file(renamed[0]) and renamed[0].startswith(".mask.npz.")
    assert not files.is_temp_file("mask.npz") and not files.is_temp_file(".locks")
    assert os.listdir(tmp_path) == ["mask.npz"]


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", FullDisk(allowed=0))
    target = tmp_path / "curve.csv"
    with pytest.raises(ResultsWriteError) as info:
        atomic_write_csv(str(target), [{"a": 1}])
    assert info.value.errno == errno.ENOSPC and info.value.path == str(target)
    assert str(info.value).startswith(f"cannot write {target}: No space left on device; free space")
    assert os.listdir(tmp_path) == []
