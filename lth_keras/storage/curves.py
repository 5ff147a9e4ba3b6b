"""A round's learning curve: its columns, its checked read, and its early-stop point.

A curve is a list of rows, one per evaluation: the iteration, then the
train, validation and test metrics (`CURVE_COLUMNS`; an arm may add more).
The early-stop point is the paper's: the first iteration of minimum
validation loss.

Imports no numpy of its own (see `lth_keras.storage.files`).

Example:
    >>> rows = [dict(iteration=i, train_loss=None, train_accuracy=None,
    ...              val_loss=l, val_accuracy=a, test_accuracy=a)
    ...         for i, l, a in [(0, 2.0, .1), (100, 0.5, .9)]]
    >>> early_stop_metrics(rows)["early_stop_iteration"]
    100
"""

from __future__ import annotations

import math
import os
from typing import Any

from lth_keras.storage.errors import CorruptResultError
from lth_keras.storage.files import read_checked_csv, reason

__all__ = ["CURVE_COLUMNS", "as_float", "curve_columns", "early_stop_metrics", "read_curve_file"]

CURVE_COLUMNS = (
    "iteration",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_accuracy",
)


def as_float(value: Any) -> float:
    """A curve cell as a float: None and "" (not measured) are NaN.

    Example:
        >>> as_float("0.5"), as_float("")
        (0.5, nan)
    """
    if value is None or value == "":
        return math.nan
    return float(value)


def early_stop_metrics(curve: list[dict]) -> dict:
    """Metrics at the early-stop point (min val_loss) and at the end of a curve.

    Ties take the earliest iteration, matching the paper's "first minimum".
    Rows whose val_loss is None/NaN (e.g. a diverged run) are never chosen
    unless no row has a finite val_loss, in which case the first row is used.

    Args:
        curve: the rows, in order of iteration.

    Returns:
        early_stop_{iteration, val_accuracy, test_accuracy, train_accuracy},
        final_test_accuracy and final_iteration.

    Raises:
        ValueError: `curve` is empty.

    Example:
        >>> rows = [dict(iteration=i, train_loss=None, train_accuracy=None,
        ...              val_loss=l, val_accuracy=a, test_accuracy=a)
        ...         for i, l, a in [(0, 2.0, .1), (100, 0.5, .9), (200, 0.7, .8)]]
        >>> m = early_stop_metrics(rows)
        >>> m["early_stop_iteration"], m["early_stop_test_accuracy"], m["final_iteration"]
        (100, 0.9, 200)
    """
    if not curve:
        raise ValueError("early_stop_metrics: curve is empty")
    best_index, best_loss = 0, math.inf
    for i, row in enumerate(curve):
        loss = as_float(row.get("val_loss"))
        # Strict < keeps the first of equal minima.
        if math.isfinite(loss) and loss < best_loss:
            best_index, best_loss = i, loss
    best, last = curve[best_index], curve[-1]
    return {
        "early_stop_iteration": int(best["iteration"]),
        "early_stop_val_accuracy": as_float(best.get("val_accuracy")),
        "early_stop_test_accuracy": as_float(best.get("test_accuracy")),
        "early_stop_train_accuracy": as_float(best.get("train_accuracy")),
        "final_test_accuracy": as_float(last.get("test_accuracy")),
        "final_iteration": int(last["iteration"]),
    }


def curve_columns(curve: list[dict]) -> list[str]:
    """The columns a curve is written with: `CURVE_COLUMNS`, then any other
    key in order of first appearance.

    Example:
        >>> curve_columns([{"iteration": 0, "pm": 100.0}])[-1]
        'pm'
    """
    extra = []
    for row in curve:
        for key in row:
            if key not in CURVE_COLUMNS and key not in extra:
                extra.append(key)
    return list(CURVE_COLUMNS) + extra


def read_curve_file(path: str) -> list[dict]:
    """A curve.csv: "iteration" an int, every other value a float (empty
    cells are NaN). Raises `CorruptResultError` when the file is missing, has
    no rows, lacks a column, or has a cut-short or non-numeric row.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "curve.csv")
        >>> with open(path, "w") as f:
        ...     _ = f.write(",".join(CURVE_COLUMNS) + "\\n")
        >>> read_curve_file(path)
        Traceback (most recent call last):
        ...
        lth_keras.storage.errors.CorruptResultError: ...curve.csv: truncated (no rows)
    """
    path = os.fspath(path)
    # Its own one-line CorruptResultError (a ValueError too) for a missing or
    # cut-short file: read outside the try below, so it is not wrapped twice.
    table = read_checked_csv(path, CURVE_COLUMNS)
    try:
        rows = [{**{k: as_float(v) for k, v in cells.items()}, "iteration": int(cells["iteration"])}
                for cells in table]
    except ValueError as e:
        raise CorruptResultError(path, f"truncated or unparsable ({reason(e)})") from None
    if not rows:
        raise CorruptResultError(path, "truncated (no rows)")
    return rows
