"""Tests for lth_keras.storage.curves: a round's learning curve read back checked."""

import os

import pytest

from lth_keras.storage import curves
from lth_keras.storage.errors import CorruptResultError
from lth_keras.storage.files import atomic_write_csv


def _row(iteration, val_loss):
    return dict(iteration=iteration, train_loss=None, train_accuracy=None, val_loss=val_loss, val_accuracy=0.5,
                test_accuracy=0.5)


def test_a_curve_reads_back_with_typed_cells(tmp_path):
    path = str(tmp_path / "curve.csv")
    atomic_write_csv(path, [_row(0, 2.0), _row(100, 0.5)], fieldnames=curves.CURVE_COLUMNS)
    rows = curves.read_curve_file(path)
    assert [r["iteration"] for r in rows] == [0, 100] and isinstance(rows[0]["iteration"], int)
    assert rows[1]["val_loss"] == 0.5


def test_a_missing_curve_is_named_once(tmp_path):
    # The check of the file itself raises a CorruptResultError, which is a
    # ValueError: it once got wrapped again as "truncated or unparsable
    # (CorruptResultError: <path>: missing)".
    path = str(tmp_path / "curve.csv")
    with pytest.raises(CorruptResultError) as info:
        curves.read_curve_file(path)
    assert str(info.value) == f"{path}: missing"
    assert info.value.reason == "missing"


def test_a_cut_short_curve_is_named_once(tmp_path):
    path = str(tmp_path / "curve.csv")
    atomic_write_csv(path, [_row(0, 2.0), _row(100, 0.5)], fieldnames=curves.CURVE_COLUMNS)
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - 8)  # the last row loses cells
    with pytest.raises(CorruptResultError) as info:
        curves.read_curve_file(path)
    assert str(info.value).count(path) == 1 and "CorruptResultError" not in str(info.value)
    assert info.value.reason.startswith("truncated or unparsable (ValueError: line 3 has")


def test_a_non_numeric_cell_is_unparsable(tmp_path):
    path = str(tmp_path / "curve.csv")
    atomic_write_csv(path, [dict(_row(0, 2.0), val_loss="oops")], fieldnames=curves.CURVE_COLUMNS)
    with pytest.raises(CorruptResultError, match=r"curve\.csv: truncated or unparsable \(ValueError: could not"):
        curves.read_curve_file(path)
