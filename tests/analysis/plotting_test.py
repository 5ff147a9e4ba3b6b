"""Tests for lth_keras.analysis.plotting: which arms a figure draws by default.

The default arms are read from the arms registry when a figure is drawn: an
arm registered after `plotting` was imported (``--arm_modules``, or
`arms.register` from Python) is drawn like a built-in one. They were once
frozen into the functions' default arguments at import.
"""

import os

import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from lth_keras.analysis import plotting
from lth_keras.arms import registry

LATE = "late_arm"
METRIC = "final_test_accuracy"


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Arms registered by a test are gone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def write_summary(root, arms=("ticket", "reinit", "random_mask", LATE), rounds=3, trials=2):
    """A CSV-only experiment: summary.csv with one row per (trial, arm, round)."""
    rows = []
    for t in range(trials):
        for arm in arms:
            for r in range(0 if arm == "ticket" else 1, rounds):
                value = 0.9 - 0.01 * r - 0.001 * t
                rows.append(dict(trial=t, arm=arm, round=r, pm=100 * 0.8**r, early_stop_iteration=100 * (r + 1),
                                 early_stop_val_accuracy=value, early_stop_test_accuracy=value,
                                 early_stop_train_accuracy=value, final_test_accuracy=value,
                                 final_iteration=400, wall_time_s=1.0))
    os.makedirs(root)
    pd.DataFrame(rows).to_csv(os.path.join(root, "summary.csv"), index=False)
    return str(root)


def register_late_arm(**style):
    registry.register(registry.Arm(LATE, lambda trial, round_: None, **style))


def test_an_arm_registered_after_import_is_in_the_default_plots(tmp_path):
    root = write_summary(tmp_path / "lenet")
    _, before = plotting.plot_metric_vs_pm(root, METRIC)
    assert LATE not in set(before["points"]["arm"])  # not registered yet: not a default arm

    register_late_arm(color="#000000", label="Late")
    _, data = plotting.plot_metric_vs_pm(root, METRIC)
    assert list(dict.fromkeys(data["points"]["arm"])) == ["ticket", "reinit", "random_mask", LATE]
    points, _ = plotting.metric_points(root, METRIC)
    assert LATE in set(points["arm"])
    fig, panel = plotting.early_stop_and_accuracy_figure(root)
    assert LATE in set(panel["points"]["arm"])
    # Drawn in its registered style, and named in the legend by its label.
    ax = fig.axes[0]
    assert "Late" in ax.get_legend_handles_labels()[1]
    (line,) = [c.lines[0] for c in ax.containers if c.get_label() == "Late"]
    assert to_rgba(line.get_color()) == to_rgba("#000000")


def test_a_default_arm_registered_later_that_did_not_run_is_reported_missing(tmp_path):
    root = write_summary(tmp_path / "lenet", arms=("ticket", "reinit", "random_mask"))
    register_late_arm()
    _, data = plotting.plot_metric_vs_pm(root, METRIC)
    assert data["missing"] == [f"lenet: arm {LATE!r}: no finished rounds"]


def test_an_arm_registered_not_plotted_by_default_is_drawn_only_when_asked(tmp_path):
    root = write_summary(tmp_path / "lenet")
    register_late_arm(plotted_by_default=False)
    _, data = plotting.plot_metric_vs_pm(root, METRIC)
    assert LATE not in set(data["points"]["arm"])
    _, data = plotting.plot_metric_vs_pm(root, METRIC, arms=None)  # defaults and every other arm present
    assert LATE in set(data["points"]["arm"])


def test_the_module_level_names_follow_the_registry():
    assert plotting.DEFAULT_ARMS == ("ticket", "reinit", "random_mask")
    register_late_arm(color="#000000")
    assert plotting.DEFAULT_ARMS == ("ticket", "reinit", "random_mask", LATE)
    assert plotting.ARM_COLORS[LATE] == "#000000" == plotting.arm_color(LATE)
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        plotting.NO_SUCH_NAME
