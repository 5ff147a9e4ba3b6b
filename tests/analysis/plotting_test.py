"""Tests for lth_keras.analysis.plotting on small hand-written results directories.

The directories hold only CSV files (summary.csv and per-round curve.csv),
exactly what figures/ commits; nothing here trains. Plotted points are
checked against means/min/max computed here from the CSVs, both in the
returned data and in the matplotlib artists.

The default arms are read from the arms registry when a figure is drawn: an
arm registered after `plotting` was imported (``--arm_modules``, or
`arms.register` from Python) is drawn like a built-in one. They were once
frozen into the functions' default arguments at import.
"""

import ast
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer

from lth_keras.analysis import plotting
from lth_keras.arms import registry
from tests.helpers.csv_experiments import CONTROLS, ITERATIONS, PMS, make_experiment

METRICS = plotting.PAPER_METRICS
LATE = "late_arm"
METRIC = "final_test_accuracy"


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Arms registered by a test are gone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def expected_points(summary, metric, arms):
    """Mean/min/max over trials per (arm, round); controls start at the ticket's round 0."""
    out = []
    dense = summary[(summary.arm == "ticket") & (summary["round"] == 0)]
    for arm in arms:
        rows = summary[summary.arm == arm]
        if rows.empty:
            continue
        if arm != "ticket":
            rows = pd.concat([dense.assign(arm=arm), rows])
        for r, g in sorted(rows.groupby("round")):
            out.append(dict(arm=arm, round=r, pm=g.pm.mean(), mean=g[metric].mean(),
                            min=g[metric].min(), max=g[metric].max(), n=len(g)))
    return pd.DataFrame(out)


@pytest.fixture
def exp(tmp_path):
    root = str(tmp_path / "lenet")
    return root, make_experiment(root)


@pytest.fixture
def partial(tmp_path):
    """No random_mask at all; trial 2 stopped after ticket round 2 (and its
    reinit rounds 1-2); trial 1's reinit round 4 not finished."""
    root = str(tmp_path / "partial")
    skip = {(2, a, r) for a in ("ticket", "reinit") for r in (3, 4)} | {(1, "reinit", 4)}
    return root, make_experiment(root, arms=("ticket", "reinit"), skip=skip)


def _containers(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _check_artists(ax, points, color_of):
    """Each (label, arm) group of points is one ErrorbarContainer, in order."""
    groups = list(points.groupby(["label", "arm"], sort=False))
    containers = _containers(ax)
    assert len(containers) == len(groups)
    for ((label, arm), pts), c in zip(groups, containers):
        line = c.lines[0]
        np.testing.assert_allclose(line.get_xdata(), pts.pm)
        np.testing.assert_allclose(line.get_ydata(), pts["mean"])
        segs = c.lines[2][0].get_segments()  # vertical bars: [[x, lo], [x, hi]]
        np.testing.assert_allclose([s[0][1] for s in segs], pts["min"])
        np.testing.assert_allclose([s[1][1] for s in segs], pts["max"])
        np.testing.assert_allclose([s[0][0] for s in segs], pts.pm)
        assert to_rgba(line.get_color()) == to_rgba(color_of(label, arm))
        assert line.get_linestyle() == {"ticket": "-", "reinit": "--", "random_mask": ":"}[arm]


# ---------------------------------------------------------------- imports


def test_plotting_imports_neither_tensorflow_nor_keras():
    tree = ast.parse(open(plotting.__file__).read())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & {"tensorflow", "keras", "tf_keras"}
    # Transitively too (lth_keras/__init__ is bypassed: it imports TF for others).
    code = textwrap.dedent("""
        import sys, types
        pkg = types.ModuleType("lth_keras"); pkg.__path__ = ["lth_keras"]
        sys.modules["lth_keras"] = pkg
        import lth_keras.analysis.plotting
        bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        assert not bad, bad
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(plotting.__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)


def test_fixture_is_csv_only(exp):
    root, _ = exp
    files = {f for _, _, fs in os.walk(root) for f in fs}
    assert files == {"summary.csv", "curve.csv"}


# ---------------------------------------------------------------- metric vs P_m


@pytest.mark.parametrize("metric", METRICS)
def test_metric_vs_pm_points_and_artists(exp, metric):
    root, summary = exp
    fig, data = plotting.plot_metric_vs_pm(root, metric)
    points = data["points"]
    want = expected_points(summary, metric, plotting.DEFAULT_ARMS)
    got = points[["arm", "round", "pm", "mean", "min", "max", "n"]]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert (points.label == "lenet").all()
    assert data["missing"] == []
    # Controls' round 0 is the ticket's dense point.
    dense = points[points["round"] == 0].set_index("arm")
    assert list(dense.from_ticket_dense) == [False, True, True]
    for arm in CONTROLS:
        assert dense.loc[arm, "mean"] == dense.loc["ticket", "mean"]

    ax = fig.axes[0]
    _check_artists(ax, points, lambda label, arm: plotting.ARM_COLORS[arm])
    assert ax.get_xscale() == "log"
    assert ax.xaxis_inverted()
    lo, hi = ax.get_xlim()
    assert lo > hi and lo >= 100
    assert ax.get_xlabel() == plotting.PM_LABEL == "Percent of weights remaining (P_m)"
    assert ax.get_ylabel() == plotting.METRIC_LABELS[metric]
    assert ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Winning ticket", "Random reinit", "Random mask"]
    np.testing.assert_allclose(ax.get_xticks(), PMS)


def test_unknown_metric_raises(exp):
    with pytest.raises(ValueError, match="unknown metric"):
        plotting.plot_metric_vs_pm(exp[0], "nope")


def test_several_experiments_one_colour_per_network(tmp_path):
    roots, summaries = [], []
    for i, name in enumerate(["c2", "c4", "c6"]):
        roots.append(str(tmp_path / name))
        summaries.append(make_experiment(roots[-1], trials=2, rounds=4, seed=i))
    labels = ["conv2", "conv4", "conv6"]
    metric = "early_stop_iteration"
    fig, data = plotting.plot_metric_vs_pm(roots, metric, labels=labels)
    points = data["points"]
    assert list(points.label.unique()) == labels
    for label, summary in zip(labels, summaries):
        got = points[points.label == label][["arm", "round", "pm", "mean", "min", "max", "n"]]
        want = expected_points(summary, metric, plotting.DEFAULT_ARMS)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    ax = fig.axes[0]
    _check_artists(ax, points, lambda label, arm: plotting.NETWORK_COLORS[labels.index(label)])
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "conv2: Winning ticket" and len(texts) == 9
    assert "conv2" in ax.get_title() and "conv6" in ax.get_title()


def test_other_arms_get_their_colours(tmp_path):
    root = str(tmp_path / "x")
    summary = make_experiment(root, trials=2, rounds=3, arms=("ticket", "tfmot_gradual", "zz_new"))
    fig, data = plotting.plot_metric_vs_pm(root, "final_test_accuracy", arms=None)
    # arms=None: the default arms plus the others found; absent defaults are reported.
    assert list(data["points"].arm.unique()) == ["ticket", "tfmot_gradual", "zz_new"]
    assert any("'reinit'" in m for m in data["missing"])
    colors = [to_rgba(c.lines[0].get_color()) for c in _containers(fig.axes[0])]
    assert colors[1] == to_rgba(plotting.ARM_COLORS["tfmot_gradual"])
    assert colors[2] == to_rgba(plotting.arm_color("zz_new"))
    assert plotting.arm_color("zz_new") in plotting.FALLBACK_ARM_COLORS
    assert len({*colors}) == 3
    want = expected_points(summary, "final_test_accuracy", ["ticket", "tfmot_gradual", "zz_new"])
    np.testing.assert_allclose(data["points"]["mean"], want["mean"])


def test_partial_experiment_plots_what_exists_and_reports_missing(partial):
    root, summary = partial
    fig, data = plotting.plot_metric_vs_pm(root, "early_stop_test_accuracy")
    want = expected_points(summary, "early_stop_test_accuracy", plotting.DEFAULT_ARMS)
    got = data["points"][["arm", "round", "pm", "mean", "min", "max", "n"]]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert list(got[got.arm == "reinit"].n) == [3, 3, 3, 2, 1]
    assert set(data["points"].arm) == {"ticket", "reinit"}
    assert len(_containers(fig.axes[0])) == 2
    missing = data["missing"]
    assert "partial: arm 'random_mask': no finished rounds" in missing
    assert "partial: trial 1 reinit: round 4 missing (finished for ticket, finished in other trials)" in missing
    assert "partial: trial 2 ticket: rounds 3, 4 missing (finished in other trials)" in missing
    assert "partial: trial 2 reinit: rounds 3, 4 missing (finished in other trials)" in missing
    assert len(missing) == 4


def test_missing_dense_round_and_empty_experiment(tmp_path):
    root = str(tmp_path / "nodense")
    summary = make_experiment(root, trials=2, rounds=3, skip={(1, "ticket", 0)})
    _, data = plotting.plot_metric_vs_pm(root, "early_stop_iteration")
    assert "nodense: trial 1 ticket: dense round 0 missing" in data["missing"]
    pts = data["points"]
    assert list(pts[pts["round"] == 0].n) == [1, 1, 1]
    want = expected_points(summary, "early_stop_iteration", plotting.DEFAULT_ARMS)
    np.testing.assert_allclose(pts["mean"], want["mean"])

    empty = tmp_path / "empty"
    empty.mkdir()
    fig, data = plotting.plot_metric_vs_pm(str(empty), "early_stop_iteration")
    assert data["points"].empty and data["missing"] == ["empty: no finished rounds"]
    fig, data = plotting.plot_accuracy_curves(str(empty))
    assert data["curves"].empty and "empty: no finished rounds" in data["missing"]
    with pytest.raises(FileNotFoundError):
        plotting.plot_metric_vs_pm(str(tmp_path / "nope"), "early_stop_iteration")


def test_panel_has_the_four_metrics(exp):
    root, summary = exp
    fig, data = plotting.early_stop_and_accuracy_figure(root)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_ylabel() for a in axes] == [plotting.METRIC_LABELS[m] for m in METRICS]
    for metric, ax in zip(METRICS, axes):
        pts = data["points"][data["points"].metric == metric]
        want = expected_points(summary, metric, plotting.DEFAULT_ARMS)
        np.testing.assert_allclose(pts["mean"], want["mean"])
        _check_artists(ax, pts, lambda label, arm: plotting.ARM_COLORS[arm])
        assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    assert axes[0].get_legend() is not None and axes[1].get_legend() is None
    assert fig.get_suptitle()


# ---------------------------------------------------------------- accuracy curves


def _mean_curve(root, trials, arm, round_):
    curves = [pd.read_csv(os.path.join(root, f"trial_{t}", arm, f"round_{round_}", "curve.csv"))
              for t in trials]
    return np.mean([c.test_accuracy for c in curves], axis=0)


def test_accuracy_curves(exp):
    root, _ = exp
    fig, data = plotting.plot_accuracy_curves(root, pms=(100, 21.1, 3.6, 1.9), reinit_pms=(21.1,))
    ax = fig.axes[0]
    curves = data["curves"]
    picked = list(curves.groupby(["arm", "round"], sort=False).groups)
    assert picked == [("ticket", 0), ("ticket", 2), ("ticket", 4), ("reinit", 2)]
    assert len(ax.lines) == 4
    for (arm, r), line in zip(picked, ax.lines):
        want = _mean_curve(root, range(3), arm, r)
        np.testing.assert_allclose(line.get_xdata(), ITERATIONS)
        np.testing.assert_allclose(line.get_ydata(), want)
        np.testing.assert_allclose(curves[(curves.arm == arm) & (curves["round"] == r)]["mean"], want)
        assert line.get_linestyle() == ("-" if arm == "ticket" else "--")
    # The reinit curve shares the colour of the ticket at the same P_m.
    assert ax.lines[3].get_color() == ax.lines[1].get_color()
    assert set(curves.n) == {3}
    assert data["missing"] == ["lenet: ticket at P_m 1.9%: no round within 10%"]
    assert ax.get_xlabel() == "Training iterations" and ax.get_ylabel() == "Test accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "100%", "21.1%", "3.6%", "21.1% (Random reinit)"]


def test_accuracy_curves_nearest_pm_one_trial_and_defaults(exp):
    root, _ = exp
    fig, data = plotting.plot_accuracy_curves(root, pms=(50,), reinit_pms=(), trial=1)
    assert len(fig.axes[0].lines) == 1
    assert data["curves"]["round"].unique().tolist() == [1]  # 51.3 is within 10% of 50
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), _mean_curve(root, [1], "ticket", 1))
    fig, data = plotting.plot_accuracy_curves(root)  # paper's P_m: 100 .. 1.9
    assert len(fig.axes[0].lines) == 5 + 2
    assert data["missing"] == ["lenet: ticket at P_m 1.9%: no round within 10%"]


def test_accuracy_curves_partial(partial):
    root, _ = partial
    os.remove(os.path.join(root, "trial_0", "reinit", "round_2", "curve.csv"))
    fig, data = plotting.plot_accuracy_curves(root, pms=(100, 7.0, 3.6), reinit_pms=(21.1, 3.6))
    curves = data["curves"]
    assert list(curves.groupby(["arm", "round"], sort=False).groups) == [
        ("ticket", 0), ("ticket", 3), ("ticket", 4), ("reinit", 2), ("reinit", 4)]
    reinit2 = curves[(curves.arm == "reinit") & (curves["round"] == 2)]
    assert set(reinit2.n) == {2}
    np.testing.assert_allclose(reinit2["mean"], _mean_curve(root, [1, 2], "reinit", 2))
    assert set(curves[curves["round"] == 4].n) == {2, 1}  # ticket: trials 0,1; reinit: trial 0
    assert "partial: trial 0 reinit round 2: curve.csv missing" in data["missing"]


# ---------------------------------------------------------------- saving, ticks


def test_save_writes_png_and_pdf(exp, tmp_path):
    fig, _ = plotting.plot_metric_vs_pm(exp[0], "early_stop_iteration")
    paths = plotting.save(fig, str(tmp_path / "out" / "sub" / "fig"), dpi=40)
    assert paths == [str(tmp_path / "out" / "sub" / "fig.png"), str(tmp_path / "out" / "sub" / "fig.pdf")]
    assert open(paths[0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert open(paths[1], "rb").read(5) == b"%PDF-"


def test_pm_ticks_of_interleaved_networks_are_spread_on_the_log_axis():
    lenet = 100 * 0.8 ** np.arange(16)  # 100 .. 3.5
    conv = 100 * 0.802 ** np.arange(9)  # 100, 80.2, 64.3, 51.6, ... (close to LeNet's)
    ticks = plotting.pm_ticks(np.concatenate([lenet, conv]), max_ticks=10)
    assert ticks[0] == 100.0
    assert set(ticks) <= {round(float(p), 1) for p in np.concatenate([lenet, conv])}
    gaps = -np.diff(np.log10(ticks))
    span = np.log10(100 / round(float(lenet[-1]), 1))
    assert (gaps >= span / 10 - 1e-9).all(), ticks
    assert 5 <= len(ticks) <= 11
    # One sweep with fewer levels than max_ticks keeps every level.
    assert plotting.pm_ticks([100, 80, 64, 51.2], max_ticks=10) == [100.0, 80.0, 64.0, 51.2]


def test_metric_axis_labels_are_the_pm_ticks(tmp_path):
    make_experiment(str(tmp_path / "a"), trials=1, arms=("ticket",))
    fig, data = plotting.plot_metric_vs_pm(str(tmp_path / "a"), "early_stop_iteration", arms=["ticket"])
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == plotting.pm_ticks(data["points"]["pm"])


def test_error_bars_of_equal_values_do_not_go_negative(tmp_path):
    # Three trials at exactly 10%: their mean is 0.1 + 2e-17, above their max.
    root = tmp_path / "equal"
    rows = []
    for trial in range(3):
        for round_, acc in ((0, 0.85), (1, 0.1)):
            rows.append({"trial": trial, "arm": "ticket", "round": round_, "pm": 100.0 * 0.5 ** round_,
                         "final_test_accuracy": acc, "early_stop_iteration": 100,
                         "early_stop_test_accuracy": acc, "early_stop_train_accuracy": acc,
                         "early_stop_val_accuracy": acc})
    root.mkdir()
    pd.DataFrame(rows).to_csv(root / "summary.csv", index=False)
    assert np.mean([0.1, 0.1, 0.1]) > 0.1
    fig, data = plotting.plot_metric_vs_pm(str(root), "final_test_accuracy", arms=["ticket"])
    assert len(data["points"]) == 2


# ---------------------------------------------------------------- arms registered later


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
