"""The paper's figures, drawn from an experiment directory's CSV files.

The points come from `lth_keras.analysis.points` (which reads only
``summary.csv`` and the rounds' ``curve.csv``, so a live experiment and the
CSV-only copies under ``figures/`` both work), the colours, markers and
labels from `lth_keras.analysis.styles`. It never imports TensorFlow or
Keras. Figures are plain `matplotlib.figure.Figure` objects (no pyplot, no
global state), which render headless through the Agg canvas when saved.

Every plot function returns ``(fig, data)`` where ``data`` is a dict holding
DataFrames of exactly the plotted points and ``data["missing"]``: a list of
one-line notes on what a partial experiment lacks (arms without rows, rounds
finished for the ticket but not for a control, trials with fewer rounds,
requested P_m with no round). Missing pieces are skipped, never fatal.

The ``arms`` of a figure default to the arms registered as plotted by
default when the figure is drawn (`styles.default_arms`); ``arms=None``
draws those and every other arm the experiment has.

Example:
    >>> fig, data = plot_metric_vs_pm("runs/lenet", "early_stop_iteration")  # doctest: +SKIP
    >>> save(fig, "out/early_stop_iteration")                                # doctest: +SKIP
    ['out/early_stop_iteration.png', 'out/early_stop_iteration.pdf']
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from lth_keras.analysis import styles
from lth_keras.storage import layout
# The names figures, tests and users read from this module.
from lth_keras.analysis.points import (  # noqa: F401
    CURVE_POINT_COLUMNS,
    DEFAULT,
    POINT_COLUMNS,
    check_metric,
    curve_path,
    experiment_label,
    find_missing,
    load_curve,
    load_summary,
    metric_points,
)
from lth_keras.analysis.styles import (  # noqa: F401
    FALLBACK_ARM_COLORS,
    FALLBACK_ARM_LINESTYLE,
    FALLBACK_ARM_MARKER,
    METRIC_LABELS,
    NETWORK_COLORS,
    PAPER_METRICS,
    PM_LABEL,
    arm_color,
    arm_label,
    arm_linestyle,
    arm_marker,
    default_arms,
)

# P_m of the accuracy-curve figure's ticket curves and reinit curves.
DEFAULT_PMS = (100, 51.3, 21.1, 7.0, 3.6, 1.9)
DEFAULT_REINIT_PMS = (51.3, 21.1)


def __getattr__(name):
    # DEFAULT_ARMS, ARM_COLORS, ...: computed from the arms registry on each
    # access (see `styles`), never frozen at import.
    if name in styles.LIVE_NAMES:
        return getattr(styles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------
# Axes helpers
# --------------------------------------------------------------------------


def _new_axes(figsize=(6.4, 4.8)):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def pm_ticks(pms: Iterable[float], max_ticks: int = 10) -> list[float]:
    """The plotted P_m values (rounded to 0.1) to label, largest first.

    Keeps at most about ``max_ticks`` of them, evenly spaced on the log axis:
    a value is labelled only if it lies at least 1/max_ticks of the axis's
    log span below the last labelled one. Several networks' P_m sets
    interleave (LeNet's 64.1, 51.3 beside Conv-2's 64.2, 51.5), and taking
    every n-th value would put labels on top of each other.
    """
    values = sorted({round(float(p), 1) for p in pms if np.isfinite(p) and p > 0}, reverse=True)
    if len(values) <= 1:
        return values
    min_gap = np.log10(values[0] / values[-1]) / max(1, max_ticks)
    ticks = [values[0]]
    for v in values[1:]:
        if np.log10(ticks[-1] / v) >= min_gap - 1e-12:
            ticks.append(v)
    return ticks


def _pm_axis(ax, pms: Iterable[float], max_ticks: int = 10) -> None:
    """Log-scaled P_m axis running from 100 down, ticked at the plotted P_m."""
    ax.set_xscale("log")
    ticks = pm_ticks(pms, max_ticks)
    if ticks:
        ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(styles.format_pm))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if not ax.xaxis_inverted():
        ax.invert_xaxis()
    ax.set_xlabel(PM_LABEL)
    ax.grid(True, which="major", alpha=0.3)


def _errorbar(ax, pts: pd.DataFrame, *, color, linestyle, marker, label):
    y = pts["mean"].to_numpy(float)
    # Clipped: the mean of equal values can exceed their max by a rounding error.
    yerr = np.maximum(np.vstack([y - pts["min"].to_numpy(float), pts["max"].to_numpy(float) - y]), 0.0)
    return ax.errorbar(
        pts["pm"].to_numpy(float), y, yerr=yerr, color=color, linestyle=linestyle,
        marker=marker, markersize=4, capsize=3, linewidth=1.5, label=label,
    )


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def plot_metric_vs_pm(
    roots_or_root,
    metric: str,
    arms: Sequence[str] | None = DEFAULT,
    ax=None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    legend: bool = True,
):
    """``metric`` against P_m: mean over trials with min/max error bars.

    ``roots_or_root`` is one experiment directory (one colour per arm, from
    arm_color) or a list of them (one colour per network, from
    NETWORK_COLORS, and a linestyle per arm, from arm_linestyle). ``arms=None``
    plots the default arms plus any other arm present. ``labels`` name the
    experiments (default: directory names).

    Returns ``(fig, {"points": DataFrame[POINT_COLUMNS], "missing": [str]})``;
    each (label, arm) in ``points`` is one ErrorbarContainer in ``ax.containers``
    in the same order.
    """
    check_metric(metric)
    multi = not isinstance(roots_or_root, (str, os.PathLike))
    roots = list(roots_or_root) if multi else [roots_or_root]
    if not roots:
        raise ValueError("plot_metric_vs_pm: no experiment directories given")
    if labels is None:
        labels = [experiment_label(r) for r in roots]
    elif isinstance(labels, str):
        labels = [labels]
    labels = list(labels)
    if len(labels) != len(roots):
        raise ValueError(f"got {len(labels)} labels for {len(roots)} experiments")
    multi = len(roots) > 1

    fig, ax = _new_axes() if ax is None else (ax.figure, ax)
    all_points, missing = [], []
    for i, (root, label) in enumerate(zip(roots, labels)):
        points, notes = metric_points(root, metric, arms=arms, label=label)
        missing += notes
        all_points.append(points)
        for arm, pts in points.groupby("arm", sort=False):
            color = NETWORK_COLORS[i % len(NETWORK_COLORS)] if multi else arm_color(arm)
            _errorbar(
                ax, pts, color=color, linestyle=arm_linestyle(arm),
                marker=arm_marker(arm),
                label=f"{label}: {arm_label(arm)}" if multi else arm_label(arm),
            )
    points = pd.concat(all_points, ignore_index=True) if all_points else pd.DataFrame(columns=list(POINT_COLUMNS))
    _pm_axis(ax, points["pm"].to_numpy(float))
    ax.set_ylabel(METRIC_LABELS[metric])
    if title is None:
        title = f"{METRIC_LABELS[metric]} vs. P_m ({', '.join(labels)})"
    ax.set_title(title)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig, {"points": points, "missing": missing}


def early_stop_and_accuracy_figure(
    roots_or_root,
    arms: Sequence[str] | None = DEFAULT,
    labels: Sequence[str] | None = None,
    metrics: Sequence[str] = PAPER_METRICS,
    title: str | None = None,
):
    """2x2 panel of ``metrics`` (default: early-stop iteration, test and train
    accuracy at early stop, final test accuracy) against P_m.

    Returns ``(fig, {"points": DataFrame with a "metric" column, "missing": [str]})``;
    the panels are ``fig.axes`` in ``metrics`` order. Only the first panel has a legend.
    """
    fig = Figure(figsize=(12, 9), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    frames, missing = [], []
    for i, (metric, ax) in enumerate(zip(metrics, axes)):
        _, data = plot_metric_vs_pm(
            roots_or_root, metric, arms=arms, ax=ax, labels=labels,
            title=METRIC_LABELS[metric], legend=(i == 0),
        )
        frames.append(data["points"].assign(metric=metric))
        for note in data["missing"]:
            if note not in missing:
                missing.append(note)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if title is None:
        names = labels if labels is not None else (
            [experiment_label(roots_or_root)] if isinstance(roots_or_root, (str, os.PathLike))
            else [experiment_label(r) for r in roots_or_root])
        title = f"Early stopping and accuracy vs. P_m ({', '.join(names)})"
    fig.suptitle(title)
    return fig, {"points": pd.concat(frames, ignore_index=True), "missing": missing}


def _nearest_round(rows: pd.DataFrame, pm: float, tolerance: float):
    """(round, mean pm) of the round whose mean P_m is nearest ``pm`` within a
    relative ``tolerance``, else None."""
    if rows.empty:
        return None
    per_round = rows.groupby("round")["pm"].mean()
    rel = (per_round - pm).abs() / pm
    best = rel.idxmin()
    if not rel[best] <= tolerance:
        return None
    return int(best), float(per_round[best])


def plot_accuracy_curves(
    root: str,
    pms: Sequence[float] = DEFAULT_PMS,
    reinit_pms: Sequence[float] = DEFAULT_REINIT_PMS,
    trial: int | None = None,
    ax=None,
    *,
    control_arm: str = "reinit",
    metric: str = "test_accuracy",
    pm_tolerance: float = 0.1,
    band: bool = True,
    title: str | None = None,
):
    """Test accuracy against training iteration, one curve per requested P_m.

    For each P_m in ``pms`` the ticket round whose P_m is nearest (within
    ``pm_tolerance``, relative) is drawn as a solid line; for each in
    ``reinit_pms`` the ``control_arm`` round likewise, dashed, in the colour of
    the ticket at the same requested P_m. With several trials the line is the
    mean over trials at each iteration (``trial`` picks one) and, if ``band``,
    a translucent min/max band is drawn.

    Returns ``(fig, {"curves": DataFrame[CURVE_POINT_COLUMNS], "missing": [str]})``;
    each (arm, round) in ``curves`` is one Line2D in ``ax.lines``, in order.
    """
    label = experiment_label(root)
    summary = load_summary(root)
    if trial is not None:
        summary = summary[summary["trial"] == int(trial)]
    missing = []
    if summary.empty:
        missing.append(f"{label}: no finished rounds" + ("" if trial is None else f" for trial {trial}"))
    fig, ax = _new_axes() if ax is None else (ax.figure, ax)

    palette = matplotlib.colormaps["tab10"]
    colors = {float(p): palette(i % 10) for i, p in enumerate(pms)}
    for p in reinit_pms:
        colors.setdefault(float(p), palette(len(colors) % 10))

    requests = [("ticket", float(p)) for p in pms] + [(control_arm, float(p)) for p in reinit_pms]
    frames, done = [], set()
    for arm, want in requests:
        rows = summary[summary["arm"] == arm]
        found = _nearest_round(rows, want, pm_tolerance)
        if found is None:
            why = "no rows" if rows.empty else f"no round within {pm_tolerance:.0%}"
            missing.append(f"{label}: {arm} at P_m {styles.format_pm(want)}%: {why}")
            continue
        round_, pm = found
        if (arm, round_) in done:
            continue
        done.add((arm, round_))
        curves = []
        for t in sorted(set(rows.loc[rows["round"] == round_, "trial"])):
            curve = load_curve(root, t, arm, round_)
            if curve is None or metric not in curve.columns:
                missing.append(f"{label}: trial {t} {arm} round {round_}: {layout.CURVE_FILE} missing")
                continue
            curves.append(curve[["iteration", metric]].dropna())
        if not curves:
            continue
        stats = (
            pd.concat(curves, ignore_index=True).groupby("iteration")[metric]
            .agg(["mean", "min", "max", "size"]).reset_index().rename(columns={"size": "n"})
        )
        stats.insert(0, "pm", pm)
        stats.insert(0, "requested_pm", want)
        stats.insert(0, "round", round_)
        stats.insert(0, "arm", arm)
        frames.append(stats)
        color = colors[want]
        is_ticket = arm == "ticket"
        name = f"{styles.format_pm(pm)}%" + ("" if is_ticket else f" ({arm_label(arm)})")
        x = stats["iteration"].to_numpy(float)
        ax.plot(x, stats["mean"].to_numpy(float), color=color,
                linestyle="-" if is_ticket else "--", linewidth=1.5, label=name)
        if band and len(curves) > 1:
            ax.fill_between(x, stats["min"].to_numpy(float), stats["max"].to_numpy(float),
                            color=color, alpha=0.15, linewidth=0)
    curves_df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CURVE_POINT_COLUMNS))
    curves_df["n"] = curves_df["n"].astype(int)
    ax.set_xlabel("Training iterations")
    ax.set_ylabel("Test accuracy" if metric == "test_accuracy" else metric)
    if title is None:
        which = "mean over trials" if trial is None else f"trial {trial}"
        title = f"Test accuracy during training ({label}, {which})"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="P_m", fontsize="small")
    return fig, {"curves": curves_df[list(CURVE_POINT_COLUMNS)], "missing": missing}


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def plot_instability(path: str, *, accuracy: bool = True, title: str | None = None):
    """The instability figure of Frankle et al. 2020 from an experiment's
    ``instability.csv`` (written by ``python -m lth_keras.instability``):
    the error barrier against the rewind iteration k, one line per
    sparsity (mean over trials, min/max as error bars), and beside it the
    copies' mean test accuracy at the end of training against k.

    Args:
        path: the CSV, or the experiment directory that holds it.
        accuracy: draw the accuracy panel too.
        title: the figure's title.

    Returns:
        ``(fig, data)``: data has "rows" (the CSV as a DataFrame) and
        "missing" (notes on what could not be drawn).

    Example:
        >>> fig, data = plot_instability("runs/lenet")   # doctest: +SKIP
    """
    csv_path = layout.ExperimentLayout(path).instability_csv_path if os.path.isdir(path) else path
    missing = []
    try:
        df = pd.read_csv(csv_path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        df = pd.DataFrame(columns=["round", "pm", "rewind_iteration", "barrier", "end_accuracy"])
        missing.append(f"{csv_path}: no instability rows (run python -m lth_keras.instability)")
    panels = [("barrier", "Error barrier (test)")] + ([("end_accuracy", "Test accuracy (end of training)")]
                                                       if accuracy else [])
    fig = Figure(figsize=(5.2 * len(panels), 4.0))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    positive = [k for k in df["rewind_iteration"] if k > 0]
    for ax, (column, label) in zip(axes, panels):
        for _, group in df.groupby("round"):
            stats = group.groupby("rewind_iteration")[column].agg(["mean", "min", "max"]).sort_index()
            ax.errorbar(stats.index.to_numpy(), stats["mean"],
                        yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                        marker="o", capsize=3, label=f"P_m {group['pm'].mean():.1f}%")
        ax.set_xscale("symlog", linthresh=max(1, min(positive or [1])))
        ax.set_xlabel("Rewind iteration k")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if column == "barrier":
            ax.axhline(0.0, color="0.5", linewidth=0.8)
        if len(df):
            ax.legend(fontsize=8)
    fig.suptitle(title or "Instability: linear-path error barrier between two copies trained from k")
    fig.tight_layout()
    return fig, {"rows": df, "missing": missing}


def save(fig, path_without_ext: str, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[str]:
    """Writes ``fig`` as ``<path>.png`` and ``<path>.pdf`` (parent dirs made);
    returns the paths written."""
    path = os.fspath(path_without_ext)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    written = []
    for fmt in formats:
        out = f"{path}.{fmt}"
        fig.savefig(out, format=fmt, dpi=dpi)
        written.append(out)
    return written
