"""The plotted points: an experiment's CSV files read and aggregated over trials.

Everything here reads only ``<root>/summary.csv`` and, for accuracy curves,
``<root>/trial_<t>/<arm>/round_<r>/curve.csv`` (see `lth_keras.storage`), so
it works on a live (still running) experiment and on the CSV-only copies kept
under ``figures/``. `metric_points` gives, per (arm, round), the mean P_m and
the mean/min/max of a metric over trials: exactly what
`lth_keras.analysis.plotting` draws. `find_missing` lists, one line each, what
a partial experiment lacks; missing pieces are skipped, never fatal.

Dense point convention: controls (reinit, random_mask, ...) have no round 0;
their line starts at the ticket's dense round 0 (P_m = 100) of the same trial,
which is the shared starting point of every arm. Such rows have
``from_ticket_dense=True`` in the points table.

Example:
    >>> points, missing = metric_points("runs/lenet", "early_stop_iteration")  # doctest: +SKIP
    >>> list(points.columns) == list(POINT_COLUMNS)                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from lth_keras import arms as arms_registry
from lth_keras.analysis import styles
from lth_keras.storage import curves, summary as summary_io
from lth_keras.storage.layout import ExperimentLayout

POINT_COLUMNS = ("label", "arm", "round", "pm", "mean", "min", "max", "n", "from_ticket_dense")
CURVE_POINT_COLUMNS = (
    "arm", "round", "requested_pm", "pm", "iteration", "mean", "min", "max", "n",
)


class _DefaultArms:
    """The default of every ``arms`` argument (see `DEFAULT`)."""

    def __repr__(self):
        return "DEFAULT"


# The default of `arms` in `metric_points` and the figures: the registry's
# default arms (`styles.default_arms`) when the figure is drawn, so an arm
# registered after import is drawn too. (``arms=None`` draws those plus
# every other arm the experiment has.)
DEFAULT = _DefaultArms()


_NUMERIC = ("trial", "round", "pm") + tuple(styles.METRIC_LABELS) + ("final_iteration", "wall_time_s")


def experiment_label(root: str) -> str:
    """The default label of an experiment: its directory's name."""
    return os.path.basename(os.path.normpath(os.fspath(root)))


def load_summary(root: str) -> pd.DataFrame:
    """summary.csv of the experiment at ``root`` with numeric columns coerced.

    Raises FileNotFoundError if ``root`` is not a directory. A directory with no
    summary.csv yet gives the finished rounds' summaries (possibly none), arms
    in the registry's order (`lth_keras.arms.order_key`).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"experiment directory not found: {root}")
    df = summary_io.load_summary(root, arm_order=arms_registry.order_key)
    for col in summary_io.SUMMARY_CSV_COLUMNS:
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
    """The round's curve.csv under the experiment at ``root`` (see `ExperimentLayout.curve_path`)."""
    return ExperimentLayout(root).curve_path(int(trial), arm, int(round_))


def load_curve(root: str, trial: int, arm: str, round_: int) -> pd.DataFrame | None:
    """The round's curve.csv as a DataFrame, or None if it does not exist."""
    path = curve_path(root, trial, arm, round_)
    if not os.path.exists(path):
        return None
    curves.read_curve_file(path)  # a damaged file: one-line CorruptResultError naming it
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
    if arms is DEFAULT:
        return list(styles.default_arms())
    if arms is None:
        default = styles.default_arms()
        extra = sorted(set(summary["arm"]) - set(default), key=arms_registry.order_key)
        return list(default) + extra
    if isinstance(arms, str):
        return [arms]
    return list(arms)


def metric_points(
    root: str,
    metric: str,
    arms: Sequence[str] | None = DEFAULT,
    label: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Per (arm, round): mean P_m and mean/min/max/n of ``metric`` over trials.

    Controls without their own round 0 get the ticket's dense round 0 rows
    (``from_ticket_dense=True``). Rows with a NaN metric are ignored; points
    with no finite value are dropped.

    Args:
        root: the experiment directory.
        metric: a key of `styles.METRIC_LABELS`.
        arms: the arms, in order: by default the registry's default arms at
            the time of the call; None: those and every other arm present.
        label: the ``label`` column (default: the directory's name).

    Returns:
        ``(points, missing)``: a DataFrame of `POINT_COLUMNS` and the notes
        of `find_missing`.

    Example:
        >>> points, _ = metric_points("figures/lenet_fashion_mnist", "final_test_accuracy")  # doctest: +SKIP
        >>> sorted(set(points["arm"]))                                                       # doctest: +SKIP
        ['random_mask', 'reinit', 'ticket']
    """
    check_metric(metric)
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


def check_metric(metric: str) -> None:
    """Raises ValueError naming the known metrics if ``metric`` is not one.

    Example:
        >>> check_metric("nope")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: unknown metric 'nope'; expected one of ['early_stop_iteration', ...]
    """
    if metric not in styles.METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(styles.METRIC_LABELS)}")
