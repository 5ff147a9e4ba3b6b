"""How the figures draw each arm, and the labels of their axes.

An arm's colour, linestyle, marker and label come from its registration
(`lth_keras.arms.Arm`); an arm that declares none gets a stable fallback
chosen from its name. Every function here reads the arms registry when it
is called, never at import, so an arm registered later (``--arm_modules``,
or `lth_keras.arms.register` from Python) is styled and plotted like a
built-in one.

The module-level names ``DEFAULT_ARMS``, ``ARM_COLORS``, ``ARM_LINESTYLES``,
``ARM_MARKERS`` and ``ARM_LABELS`` are kept for old callers; each is computed
from the registry on every access (PEP 562), not frozen. Importing one by
name (``from ... import DEFAULT_ARMS``) copies the value of that moment.

Imports neither TensorFlow nor Keras.

Example:
    >>> arm_color("ticket"), arm_label("reinit")
    ('#1f77b4', 'Random reinit')
    >>> "ticket" in default_arms()
    True
"""

from __future__ import annotations

import zlib

from lth_keras import arms

# Unstyled arms get one of these, chosen by a stable hash of the arm's name.
FALLBACK_ARM_COLORS = ("#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
FALLBACK_ARM_LINESTYLE = (0, (5, 1, 1, 1, 1, 1))
FALLBACK_ARM_MARKER = "v"

# One colour per network in multi-experiment plots (Conv-2/4/6 style).
NETWORK_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)

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


def default_arms() -> tuple[str, ...]:
    """The arms a figure draws when none are named, in registry order.

    Those the runner trains (not external) and that are plotted by default
    (`Arm.plotted_by_default`), as registered now: the paper's ticket,
    reinit and random_mask, and any arm registered since.

    Example:
        >>> default_arms()[:3]
        ('ticket', 'reinit', 'random_mask')
    """
    return tuple(a for a in arms.names() if not arms.get(a).external and arms.get(a).plotted_by_default)


def registered_styles(field: str) -> dict:
    """``{arm: value}`` of one style field for the arms that declare it.

    Args:
        field: ``"color"``, ``"linestyle"``, ``"marker"`` or ``"label"``.

    Example:
        >>> registered_styles("color")["ticket"]
        '#1f77b4'
    """
    return {a: getattr(arms.get(a), field) for a in arms.names() if getattr(arms.get(a), field) is not None}


# Old module-level names -> what computes them from the registry now.
_LIVE = {
    "DEFAULT_ARMS": default_arms,
    "ARM_COLORS": lambda: registered_styles("color"),
    "ARM_LINESTYLES": lambda: registered_styles("linestyle"),
    "ARM_MARKERS": lambda: registered_styles("marker"),
    "ARM_LABELS": lambda: registered_styles("label"),
}
LIVE_NAMES = tuple(_LIVE)


def __getattr__(name):
    if name in _LIVE:
        return _LIVE[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """The arm's registered matplotlib linestyle, or a dash-dot fallback.

    Example:
        >>> arm_linestyle("ticket")
        '-'
    """
    return _style(arm, "linestyle", FALLBACK_ARM_LINESTYLE)


def arm_marker(arm: str) -> str:
    """The arm's registered matplotlib marker, or ``"v"``.

    Example:
        >>> arm_marker("my_arm")
        'v'
    """
    return _style(arm, "marker", FALLBACK_ARM_MARKER)


def arm_label(arm: str) -> str:
    """The arm's name in legends: its registered label, or the name itself.

    Example:
        >>> arm_label("my_arm")
        'my_arm'
    """
    return _style(arm, "label", arm)


def format_pm(value: float, _pos=None) -> str:
    """A P_m for a tick or a legend: rounded to 0.1, no trailing zeros.

    Example:
        >>> format_pm(51.2), format_pm(100.0), format_pm(3.6049)
        ('51.2', '100', '3.6')
    """
    return f"{round(float(value), 1):g}"
