"""Tests for lth_keras.analysis.points: an experiment's CSV files aggregated over trials.

The plots' own tests (plotting_test.py) check the points through the
figures; these check the tables the figures are drawn from, on CSV-only
experiments (`tests.helpers.csv_experiments`) and hand-written summaries.
"""

import os

import numpy as np
import pandas as pd
import pytest

from lth_keras.analysis import points
from lth_keras.storage.errors import CorruptResultError
from tests.helpers.csv_experiments import ITERATIONS, PMS, make_experiment


def _summary(rows):
    return pd.DataFrame(rows, columns=["trial", "arm", "round"])


def test_metric_points_are_mean_min_max_over_trials(tmp_path):
    root = str(tmp_path / "lenet")
    summary = make_experiment(root, trials=3, rounds=3, arms=("ticket", "reinit"))
    table, missing = points.metric_points(root, "final_test_accuracy", arms=["ticket", "reinit"])
    assert list(table.columns) == list(points.POINT_COLUMNS) and missing == []
    assert list(zip(table["arm"], table["round"])) == [("ticket", 0), ("ticket", 1), ("ticket", 2),
                                                       ("reinit", 0), ("reinit", 1), ("reinit", 2)]
    for _, point in table.iterrows():
        arm = "ticket" if point["round"] == 0 else point["arm"]  # reinit's round 0 is the ticket's dense round
        rows = summary[(summary["arm"] == arm) & (summary["round"] == point["round"])]
        assert point["n"] == 3 and point["label"] == "lenet"
        assert point["mean"] == pytest.approx(rows["final_test_accuracy"].mean())
        assert (point["min"], point["max"]) == (rows["final_test_accuracy"].min(), rows["final_test_accuracy"].max())
        assert point["pm"] == pytest.approx(PMS[point["round"]])
        assert point["from_ticket_dense"] == (point["arm"] == "reinit" and point["round"] == 0)


def test_nan_metrics_are_left_out_of_a_point(tmp_path):
    root = tmp_path / "x"
    root.mkdir()
    pd.DataFrame(dict(trial=[0, 1, 2], arm="ticket", round=0, pm=100.0,
                      final_test_accuracy=[0.5, np.nan, 0.7])).to_csv(root / "summary.csv", index=False)
    table, _ = points.metric_points(str(root), "final_test_accuracy", arms=["ticket"], label="net")
    assert table[["label", "n", "mean", "min", "max"]].values.tolist() == [["net", 2, 0.6, 0.5, 0.7]]


def test_find_missing_names_each_gap_once():
    summary = _summary([(0, "ticket", 0), (0, "ticket", 1), (0, "ticket", 2), (0, "reinit", 1), (0, "reinit", 2),
                        (1, "ticket", 1), (1, "ticket", 2), (1, "reinit", 1)])
    assert points.find_missing(summary, ["ticket", "reinit", "random_mask"], label="lenet") == [
        "lenet: arm 'random_mask': no finished rounds",
        "lenet: trial 1 ticket: dense round 0 missing",
        "lenet: trial 1 reinit: round 2 missing (finished for ticket, finished in other trials)",
    ]
    assert points.find_missing(summary.iloc[:0], ["ticket"]) == ["no finished rounds"]


def test_arms_default_to_the_registry_and_none_adds_the_others(tmp_path):
    root = str(tmp_path / "x")
    make_experiment(root, trials=1, rounds=2, arms=("ticket", "reinit", "zz_other"))
    metric = "early_stop_iteration"
    table, missing = points.metric_points(root, metric)
    assert list(dict.fromkeys(table["arm"])) == ["ticket", "reinit"]
    assert missing == ["x: arm 'random_mask': no finished rounds"]
    table, _ = points.metric_points(root, metric, arms=None)
    assert list(dict.fromkeys(table["arm"])) == ["ticket", "reinit", "zz_other"]
    table, missing = points.metric_points(root, metric, arms="zz_other")
    assert set(table["arm"]) == {"zz_other"} and missing == []
    assert repr(points.DEFAULT) == "DEFAULT"


def test_load_summary_coerces_numbers_and_refuses_a_missing_directory(tmp_path):
    root = str(tmp_path / "x")
    make_experiment(root, trials=2, rounds=2)
    summary = points.load_summary(root)
    assert summary["trial"].dtype == int and summary["round"].dtype == int
    assert summary["pm"].dtype == float and all(isinstance(a, str) for a in summary["arm"])
    with pytest.raises(FileNotFoundError, match="experiment directory not found"):
        points.load_summary(str(tmp_path / "nope"))
    assert points.experiment_label(root + os.sep) == "x"


def test_load_curve_reads_a_round_and_names_a_damaged_one(tmp_path):
    root = str(tmp_path / "x")
    make_experiment(root, trials=1, rounds=2)
    curve = points.load_curve(root, 0, "ticket", 1)
    assert curve["iteration"].tolist() == ITERATIONS
    assert points.load_curve(root, 0, "ticket", 7) is None
    path = points.curve_path(root, 0, "ticket", 1)
    assert path == os.path.join(root, "trial_0", "ticket", "round_1", "curve.csv")
    with open(path, "w") as f:
        f.write("iteration,val_loss\n0\n")
    with pytest.raises(CorruptResultError) as info:
        points.load_curve(root, 0, "ticket", 1)
    assert str(info.value).startswith(path + ": ")


def test_an_unknown_metric_names_the_known_ones():
    points.check_metric("early_stop_iteration")
    with pytest.raises(ValueError, match=r"unknown metric 'loss'; expected one of \['early_stop_iteration'"):
        points.check_metric("loss")
