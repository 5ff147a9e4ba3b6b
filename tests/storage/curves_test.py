"""Tests for lth_keras.storage.curves: a round's learning curve read back checked, and the
early-stop metrics taken from it."""

import math
import os

import pytest

from lth_keras.storage import curves
from lth_keras.storage.curves import early_stop_metrics
from lth_keras.storage.errors import CorruptResultError
from lth_keras.storage.files import atomic_write_csv
from tests.helpers.csv_experiments import curve_row


_row = curve_row


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


# ---------------------------------------------------------------- early stop


def test_early_stop_picks_argmin_val_loss():
    curve = [
        _row(0, 2.0, val_acc=0.1, test_acc=0.11, train_acc=0.12),
        _row(100, 0.4, val_acc=0.9, test_acc=0.88, train_acc=0.95),
        _row(200, 0.6, val_acc=0.85, test_acc=0.84, train_acc=0.99),
        _row(300, 0.7, val_acc=0.83, test_acc=0.82, train_acc=1.0),
    ]
    m = early_stop_metrics(curve)
    assert m == {
        "early_stop_iteration": 100,
        "early_stop_val_accuracy": 0.9,
        "early_stop_test_accuracy": 0.88,
        "early_stop_train_accuracy": 0.95,
        "final_test_accuracy": 0.82,
        "final_iteration": 300,
    }


def test_early_stop_ties_take_first_and_none_train_is_nan():
    curve = [
        _row(0, 1.0),
        _row(50, 0.3, test_acc=0.7),
        _row(100, 0.3, test_acc=0.9),
        _row(150, float("nan"), test_acc=0.1),
    ]
    m = early_stop_metrics(curve)
    assert m["early_stop_iteration"] == 50
    assert m["early_stop_test_accuracy"] == 0.7
    assert math.isnan(m["early_stop_train_accuracy"])
    assert m["final_iteration"] == 150 and m["final_test_accuracy"] == 0.1


def test_early_stop_empty_raises():
    with pytest.raises(ValueError):
        early_stop_metrics([])
