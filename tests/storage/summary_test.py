"""Tests for lth_keras.storage.summary: summary.csv's rows and their order of arms.

The storage layer is below the arms registry, so the order of arms comes from
the caller (`arm_order`); the runner passes `lth_keras.arms.order_key`.
"""

import ast
import glob
import os

import pandas as pd

from lth_keras.arms import registry as arms
from lth_keras.storage import summary
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.layout import ExperimentLayout

STORAGE = os.path.dirname(os.path.abspath(summary.__file__))
# Written out of order; "zz" and "tfmot_gradual" are not trained by the runner.
WRITTEN = [(1, "zz", 0), (1, "ticket", 1), (0, "tfmot_gradual", 1), (0, "random_mask", 1), (0, "reinit", 1),
           (0, "ticket", 1), (0, "ticket", 0), (1, "ticket", 0)]


def _write_rounds(root):
    exp = ExperimentDir(root)
    for trial, arm, round_ in WRITTEN:
        curve = [dict(iteration=10, train_loss=0.1, train_accuracy=0.9, val_loss=1.0, val_accuracy=0.8,
                      test_accuracy=0.7)]
        exp.write_round(trial, arm, round_, mask={}, reset_weights={}, curve=curve,
                        summary={"pm": 100.0 - round_, "pm_per_layer": {"dense": 100.0 - round_}})
    return exp


def _keys(rows):
    return [(int(r["trial"]), r["arm"], int(r["round"])) for r in rows]


REGISTRY_ORDER = [(0, "ticket", 0), (0, "ticket", 1), (0, "reinit", 1), (0, "random_mask", 1),
                  (0, "tfmot_gradual", 1), (1, "ticket", 0), (1, "ticket", 1), (1, "zz", 0)]
NAME_ORDER = [(0, "random_mask", 1), (0, "reinit", 1), (0, "tfmot_gradual", 1), (0, "ticket", 0),
              (0, "ticket", 1), (1, "ticket", 0), (1, "ticket", 1), (1, "zz", 0)]


def test_summary_csv_rows_follow_the_order_the_caller_gives(tmp_path):
    exp = _write_rounds(str(tmp_path / "a"))
    assert _keys(exp.summaries()) == NAME_ORDER  # no order given: arms by name
    runner = ExperimentDir(exp.root, arm_order=arms.order_key)
    assert _keys(runner.summaries()) == REGISTRY_ORDER
    assert _keys(pd.read_csv(runner.write_summary_csv()).to_dict("records")) == REGISTRY_ORDER
    assert _keys(summary.collect(ExperimentLayout(exp.root), arms.order_key)) == REGISTRY_ORDER


def test_load_summary_without_csv_sorts_with_the_given_order(tmp_path):
    root = _write_rounds(str(tmp_path)).root
    assert _keys(summary.load_summary(root).to_dict("records")) == NAME_ORDER
    assert _keys(summary.load_summary(root, arm_order=arms.order_key).to_dict("records")) == REGISTRY_ORDER
    assert not os.path.exists(ExperimentLayout(root).summary_csv_path)


def test_a_csv_on_disk_is_read_as_written(tmp_path):
    exp = _write_rounds(str(tmp_path))
    ExperimentDir(exp.root, arm_order=arms.order_key).write_summary_csv()
    for key in (None, len):  # the order was settled when it was written
        assert _keys(summary.load_summary(exp.root, arm_order=key).to_dict("records")) == REGISTRY_ORDER


def test_csv_rows_flatten_per_layer_pm_in_first_seen_order():
    rows, columns = summary.csv_rows([
        {"trial": 0, "arm": "ticket", "round": 0, "pm": 100.0, "pm_per_layer": {"b": 100.0}},
        {"trial": 0, "arm": "ticket", "round": 1, "pm": 80.0, "pm_per_layer": {"a": 70.0, "b": 90.0}},
    ])
    assert columns == list(summary.SUMMARY_CSV_COLUMNS) + ["pm/b", "pm/a"]
    assert [(r["pm/a"], r["pm/b"]) for r in rows] == [(None, 100.0), (70.0, 90.0)]


def _imported(path):
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.module == "lth_keras":
            found |= {f"lth_keras.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_storage_imports_nothing_above_it():
    # Not the arms registry (it once imported it to sort summary.csv), nor
    # any framework: the figures read experiments through this layer.
    for path in glob.glob(os.path.join(STORAGE, "*.py")):
        bad = sorted(m for m in _imported(path)
                     if (m.split(".")[0] == "lth_keras" and not m.startswith("lth_keras.storage"))
                     or m.split(".")[0] in ("keras", "tensorflow", "jax", "torch"))
        assert bad == [], f"storage/{os.path.basename(path)} imports {bad}"
