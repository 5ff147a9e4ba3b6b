"""Summaries: a round's summary.json, and summary.csv, one row per finished round.

A round's summary.json holds its P_m, per-layer P_m, early-stop metrics and
whatever its writer adds; it is written last, so its presence marks the round
done. summary.csv flattens the summaries of every finished round into one
table (`SUMMARY_CSV_COLUMNS`, then ``pm/<layer>`` per layer), sorted by
trial, arm and round.

Arms are ordered by the key the caller gives (`arm_order`): the experiment
runner passes `lth_keras.arms.order_key` (its arms in registration order),
which this layer cannot import; without one, arms sort by name.

Imports no TensorFlow or Keras; pandas only inside `load_summary`.

Example:
    >>> import tempfile
    >>> from lth_keras.storage.layout import ExperimentLayout
    >>> collect(ExperimentLayout(tempfile.mkdtemp()))
    []
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

from lth_keras.storage.errors import CorruptResultError
from lth_keras.storage.files import read_checked_csv, read_json
from lth_keras.storage.layout import ExperimentLayout

__all__ = ["SUMMARY_CSV_COLUMNS", "SUMMARY_KEYS", "ArmOrder", "is_round_summary", "read_round_summary",
           "collect", "csv_rows", "read_summary_csv", "load_summary"]

SUMMARY_CSV_COLUMNS = (
    "trial",
    "arm",
    "round",
    "pm",
    "early_stop_iteration",
    "early_stop_val_accuracy",
    "early_stop_test_accuracy",
    "early_stop_train_accuracy",
    "final_test_accuracy",
    "final_iteration",
    "wall_time_s",
)

# Keys every round summary has (ExperimentDir.write_round adds them).
SUMMARY_KEYS = ("trial", "arm", "round", "pm", "early_stop_iteration", "final_iteration")

# A sort key over arm names (e.g. `lth_keras.arms.order_key`); None: by name.
ArmOrder = Optional[Callable[[str], Any]]


def is_round_summary(path: str) -> bool:
    """True iff `path` exists and parses as a JSON object (the round is done).

    Example:
        >>> is_round_summary("/nonexistent/summary.json")
        False
    """
    try:
        with open(path, encoding="utf-8") as f:
            return isinstance(json.load(f), dict)
    except (OSError, ValueError):
        return False


def read_round_summary(path: str) -> dict:
    """A round's summary.json as a dict; raises `CorruptResultError` when it
    is unreadable or lacks a key of `SUMMARY_KEYS`."""
    summary = read_json(path)
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise CorruptResultError(path, f"truncated or not a round summary (no {missing[0]!r})")
    return summary


def collect(layout: ExperimentLayout, arm_order: ArmOrder = None) -> list[dict]:
    """Every finished round's summary, sorted by (trial, arm, round).

    Args:
        layout: the experiment directory.
        arm_order: a sort key over arm names; None sorts arms by name.

    Returns:
        The summaries; a round whose summary.json is unreadable is left out
        (the experiment redoes it).

    Example:
        >>> import tempfile
        >>> collect(ExperimentLayout(tempfile.mkdtemp()), arm_order=len)
        []
    """
    key = arm_order or (lambda arm: arm)
    found = []
    for trial in layout.trials():
        for arm in layout.arms(trial):
            for round_ in layout.rounds(trial, arm):
                path = layout.summary_path(trial, arm, round_)
                if not is_round_summary(path):
                    continue
                try:
                    summary = read_round_summary(path)
                except CorruptResultError:
                    continue  # not a finished round; the experiment redoes it
                found.append(((trial, key(arm), round_), summary))
    found.sort(key=lambda item: item[0])
    return [s for _, s in found]


def csv_rows(summaries: list[dict]) -> tuple[list[dict], list[str]]:
    """Flattens summaries into summary.csv's rows and its column list.

    Example:
        >>> rows, columns = csv_rows([{"trial": 0, "arm": "ticket", "round": 0, "pm_per_layer": {"d": 50.0}}])
        >>> columns[-1], rows[0]["pm/d"]
        ('pm/d', 50.0)
    """
    layers: list[str] = []
    for s in summaries:
        for layer in (s.get("pm_per_layer") or {}):
            if layer not in layers:  # first-seen keeps the model's layer order
                layers.append(layer)
    columns = list(SUMMARY_CSV_COLUMNS) + [f"pm/{l}" for l in layers]
    rows = []
    for s in summaries:
        row = {c: s.get(c) for c in SUMMARY_CSV_COLUMNS}
        per_layer = s.get("pm_per_layer") or {}
        for layer in layers:
            row[f"pm/{layer}"] = per_layer.get(layer)
        rows.append(row)
    return rows, columns


def read_summary_csv(path: str) -> list[dict]:
    """summary.csv's rows as dicts of strings; raises `CorruptResultError`."""
    return read_checked_csv(path, ("trial", "arm", "round"),
                            "; rerun the experiment's command to rebuild it from the rounds")


def load_summary(path_or_root: str, *, arm_order: ArmOrder = None):
    """Reads an experiment's summary.csv into a pandas DataFrame.

    Args:
        path_or_root: the CSV itself or the experiment directory.
        arm_order: how to sort arms when the table is built from the rounds
            (below); None sorts them by name.

    Returns:
        The table. A directory with no summary.csv yet gives the finished
        rounds' summaries, built in memory (nothing is written).

    Raises:
        CorruptResultError: summary.csv is damaged.

    Example:
        >>> import tempfile
        >>> list(load_summary(tempfile.mkdtemp()).columns)[:3]
        ['trial', 'arm', 'round']
    """
    import pandas as pd  # optional dependency: only analysis code needs it

    path = os.fspath(path_or_root)
    if os.path.isdir(path):
        layout = ExperimentLayout(path)
        if not os.path.exists(layout.summary_csv_path):
            rows, columns = csv_rows(collect(layout, arm_order))
            return pd.DataFrame(rows, columns=columns)
        path = layout.summary_csv_path
    read_summary_csv(path)  # one-line CorruptResultError for a broken file
    return pd.read_csv(path)
