"""The paper's figures, drawn from an experiment directory's CSV files.

Everything here reads only ``<root>/summary.csv`` and, for accuracy curves,
``<root>/trial_<t>/<arm>/round_<r>/curve.csv`` (see `lth_keras.results`), so
it works on a live (still running) experiment and on the CSV-only copies kept
under ``figures/``. It never imports TensorFlow or Keras. Figures are plain
`matplotlib.figure.Figure` objects (no pyplot, no global state), which render
headless through the Agg canvas when saved.

Every plot function returns ``(fig, data)`` where ``data`` is a dict holding
DataFrames of exactly the plotted points and ``data["missing"]``: a list of
one-line notes on what a partial experiment lacks (arms without rows, rounds
finished for the ticket but not for a control, trials with fewer rounds,
requested P_m with no round). Missing pieces are skipped, never fatal.

Dense point convention: controls (reinit, random_mask, ...) have no round 0;
their line starts at the ticket's dense round 0 (P_m = 100) of the same trial,
which is the shared starting point of every arm. Such rows have
``from_ticket_dense=True`` in the points table.

Example:
    >>> fig, data = plot_metric_vs_pm("runs/lenet", "early_stop_iteration")  # doctest: +SKIP
    >>> save(fig, "out/early_stop_iteration")                                # doctest: +SKIP
    ['out/early_stop_iteration.png', 'out/early_stop_iteration.pdf']
"""

from __future__ import annotations

import os
import zlib
from typing import Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from lth_keras import arms
from lth_keras.storage import results

# --------------------------------------------------------------------------
# Styling
# --------------------------------------------------------------------------

def _registered_styles(field):
    return {a: getattr(arms.get(a), field) for a in arms.names() if getattr(arms.get(a), field) is not None}


# The registered arms' styles (`lth_keras.arms`) when this module was imported;
# arm_color, arm_linestyle, arm_marker and arm_label read the registry itself.
ARM_COLORS, ARM_LINESTYLES, ARM_MARKERS, ARM_LABELS = map(_registered_styles, ("color", "linestyle", "marker", "label"))
# Unstyled arms get one of these, chosen by a stable hash of the arm's name.
FALLBACK_ARM_COLORS = ("#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
FALLBACK_ARM_LINESTYLE = (0, (5, 1, 1, 1, 1, 1))
FALLBACK_ARM_MARKER = "v"

# One colour per network in multi-experiment plots (Conv-2/4/6 style).
NETWORK_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)

# The arms the runner trains by default and its built-in controls.
DEFAULT_ARMS = tuple(a for a in arms.names() if not arms.get(a).external and arms.get(a).plotted_by_default)
DEFAULT_PMS = (100, 51.3, 21.1, 7.0, 3.6, 1.9)
DEFAULT_REINIT_PMS = (51.3, 21.1)

PM_LABEL = "Percent of weights remaining (P_m)"
METRIC_LABELS = {
    "early_stop_iteration": "Early-stop iteration",
    "early_stop_test_accuracy": "Test accuracy at early stop",
    "early_stop_train_accuracy": "Train accuracy at early stop",
    "early_stop_val_accuracy": "Validation accuracy at early stop",
    "final_test_accuracy": "Test accuracy at end of training",
}
# The four metrics of the paper, in the 2x2 panel's order.
PAPER_METRICS = (
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "early_stop_train_accuracy",
    "final_test_accuracy",
)

POINT_COLUMNS = ("label", "arm", "round", "pm", "mean", "min", "max", "n", "from_ticket_dense")
CURVE_POINT_COLUMNS = (
    "arm", "round", "requested_pm", "pm", "iteration", "mean", "min", "max", "n",
)


def _style(arm, field, fallback):
    value = getattr(arms.get(arm), field) if arm in arms.names() else None
    return fallback if value is None else value


def arm_color(arm: str) -> str:
    """The arm's registered colour, or a stable fallback colour.

    Example:
        >>> arm_color("ticket")
        '#1f77b4'
        >>> arm_color("my_arm") == arm_color("my_arm") in FALLBACK_ARM_COLORS
        True
    """
    return _style(arm, "color", FALLBACK_ARM_COLORS[zlib.crc32(arm.encode()) % len(FALLBACK_ARM_COLORS)])


def arm_linestyle(arm: str):
    return _style(arm, "linestyle", FALLBACK_ARM_LINESTYLE)


def arm_marker(arm: str) -> str:
    return _style(arm, "marker", FALLBACK_ARM_MARKER)


def arm_label(arm: str) -> str:
    return _style(arm, "label", arm)


def _format_pm(value: float, _pos=None) -> str:
    return f"{round(float(value), 1):g}"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

_NUMERIC = ("trial", "round", "pm") + tuple(METRIC_LABELS) + ("final_iteration", "wall_time_s")


def experiment_label(root: str) -> str:
    """The default label of an experiment: its directory's name."""
    return os.path.basename(os.path.normpath(os.fspath(root)))


def load_summary(root: str) -> pd.DataFrame:
    """summary.csv of the experiment at ``root`` with numeric columns coerced.

    Raises FileNotFoundError if ``root`` is not a directory. A directory with no
    summary.csv yet gives the finished rounds' summaries (possibly none).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"experiment directory not found: {root}")
    csv_path = os.path.join(root, "summary.csv")
    try:
        st = os.stat(csv_path)
        key = (os.path.abspath(csv_path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None  # no summary.csv yet: built from the rounds' summary.json, uncached
    if key is not None and key in _SUMMARY_CACHE:
        return _SUMMARY_CACHE[key].copy()
    df = _read_summary(root)
    if key is not None:
        if len(_SUMMARY_CACHE) >= 32:
            _SUMMARY_CACHE.clear()
        _SUMMARY_CACHE[key] = df
    return df.copy()


# (path, mtime_ns, size) of a summary.csv -> its parsed table. Figures of one
# experiment read the same file many times; a rewritten file has a new key.
_SUMMARY_CACHE: dict = {}


def _read_summary(root: str) -> pd.DataFrame:
    df = results.load_summary(root)
    for col in results.SUMMARY_CSV_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=float)
    for col in _NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["arm"] = df["arm"].astype(str)
    df = df.dropna(subset=["trial", "round"])
    df["trial"] = df["trial"].astype(int)
    df["round"] = df["round"].astype(int)
    return df.reset_index(drop=True)


def curve_path(root: str, trial: int, arm: str, round_: int) -> str:
    return os.path.join(os.fspath(root), f"trial_{int(trial)}", arm, f"round_{int(round_)}", "curve.csv")


def load_curve(root: str, trial: int, arm: str, round_: int) -> pd.DataFrame | None:
    """The round's curve.csv as a DataFrame, or None if it does not exist."""
    path = curve_path(root, trial, arm, round_)
    if not os.path.exists(path):
        return None
    results.read_curve_file(path)  # a damaged file: one-line CorruptResultError naming it
    df = pd.read_csv(path)
    for col in df.columns:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _fmt_rounds(rounds: Iterable[int]) -> str:
    rounds = sorted(rounds)
    return ("round " if len(rounds) == 1 else "rounds ") + ", ".join(str(r) for r in rounds)


def find_missing(summary: pd.DataFrame, arms: Sequence[str], label: str | None = None) -> list[str]:
    """Notes on what a partial experiment lacks, one line each.

    Reports: a requested arm with no rows at all; a trial without the ticket's
    dense round 0; rounds of an arm finished in some trials but not in this
    one; rounds finished for a trial's ticket (beyond round 0) but not for a
    control arm of that trial.

    Example:
        >>> df = pd.DataFrame(dict(trial=[0, 0, 0, 1, 1], round=[0, 1, 1, 0, 1],
        ...                        arm=["ticket", "ticket", "reinit", "ticket", "ticket"]))
        >>> find_missing(df, ["ticket", "reinit", "random_mask"])
        ["arm 'random_mask': no finished rounds", 'trial 1 reinit: round 1 missing (finished for ticket, finished in other trials)']
    """
    prefix = f"{label}: " if label else ""
    notes = []
    if summary.empty:
        return [f"{prefix}no finished rounds"]
    present_arms = set(summary["arm"])
    for arm in arms:
        if arm not in present_arms:
            notes.append(f"{prefix}arm {arm!r}: no finished rounds")
    trials = sorted(set(summary["trial"]))
    rounds = {
        (t, a): set(g["round"]) for (t, a), g in summary.groupby(["trial", "arm"])
    }
    check_arms = [a for a in arms if a in present_arms]
    if "ticket" in present_arms:
        for t in trials:
            if 0 not in rounds.get((t, "ticket"), set()):
                notes.append(f"{prefix}trial {t} ticket: dense round 0 missing")
    for a in check_arms:
        union = set().union(*(rounds.get((t, a), set()) for t in trials))
        for t in trials:
            have = rounds.get((t, a), set())
            other_trials = union - have
            for_ticket = set()
            if a != "ticket":
                for_ticket = (rounds.get((t, "ticket"), set()) - {0}) - have
            if a == "ticket":
                other_trials -= {0}  # reported above as the dense round
            gone = other_trials | for_ticket
            if not gone:
                continue
            why = []
            if for_ticket:
                why.append("finished for ticket")
            if other_trials:
                why.append("finished in other trials")
            notes.append(f"{prefix}trial {t} {a}: {_fmt_rounds(gone)} missing ({', '.join(why)})")
    return notes


def _resolve_arms(summary: pd.DataFrame, arms) -> list[str]:
    if arms is None:
        extra = sorted(set(summary["arm"]) - set(DEFAULT_ARMS), key=results.round_sort_key)
        return list(DEFAULT_ARMS) + extra
    if isinstance(arms, str):
        return [arms]
    return list(arms)


def metric_points(
    root: str,
    metric: str,
    arms: Sequence[str] | None = DEFAULT_ARMS,
    label: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Per (arm, round): mean P_m and mean/min/max/n of ``metric`` over trials.

    Controls without their own round 0 get the ticket's dense round 0 rows
    (``from_ticket_dense=True``). Rows with a NaN metric are ignored; points
    with no finite value are dropped. Returns ``(points, missing)``.
    """
    _check_metric(metric)
    label = experiment_label(root) if label is None else label
    summary = load_summary(root)
    arms = _resolve_arms(summary, arms)
    missing = find_missing(summary, arms, label)
    dense = summary[(summary["arm"] == "ticket") & (summary["round"] == 0)]
    frames = []
    for arm in arms:
        rows = summary[summary["arm"] == arm].copy()
        if rows.empty:
            continue
        rows["from_ticket_dense"] = False
        if arm != "ticket" and not (rows["round"] == 0).any() and not dense.empty:
            extra = dense.copy()
            extra["arm"] = arm
            extra["from_ticket_dense"] = True
            rows = pd.concat([extra, rows], ignore_index=True)
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=list(POINT_COLUMNS)), missing
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[np.isfinite(rows[metric].astype(float))]
    grouped = rows.groupby(["arm", "round"], sort=False)
    points = grouped.agg(
        pm=("pm", "mean"),
        mean=(metric, "mean"),
        min=(metric, "min"),
        max=(metric, "max"),
        n=(metric, "size"),
        from_ticket_dense=("from_ticket_dense", "all"),
    ).reset_index()
    points.insert(0, "label", label)
    order = {a: i for i, a in enumerate(arms)}
    points["_o"] = points["arm"].map(order)
    points = points.sort_values(["_o", "round"]).drop(columns="_o").reset_index(drop=True)
    points["n"] = points["n"].astype(int)
    return points[list(POINT_COLUMNS)], missing


def _check_metric(metric: str) -> None:
    if metric not in METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRIC_LABELS)}")


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
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_format_pm))
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
    arms: Sequence[str] | None = DEFAULT_ARMS,
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
    _check_metric(metric)
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
    arms: Sequence[str] | None = DEFAULT_ARMS,
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
            missing.append(f"{label}: {arm} at P_m {_format_pm(want)}%: {why}")
            continue
        round_, pm = found
        if (arm, round_) in done:
            continue
        done.add((arm, round_))
        curves = []
        for t in sorted(set(rows.loc[rows["round"] == round_, "trial"])):
            curve = load_curve(root, t, arm, round_)
            if curve is None or metric not in curve.columns:
                missing.append(f"{label}: trial {t} {arm} round {round_}: curve.csv missing")
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
        name = f"{_format_pm(pm)}%" + ("" if is_ticket else f" ({arm_label(arm)})")
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


INSTABILITY_CSV = "instability.csv"


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
    csv_path = os.path.join(path, INSTABILITY_CSV) if os.path.isdir(path) else path
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
