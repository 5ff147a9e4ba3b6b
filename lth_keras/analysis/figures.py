"""The paper's figure set from experiment directories, and the committed
figures regenerated from ``figures/manifest.json``.

`make_figures` draws the accuracy curves, the four metric-vs-P_m plots and
the early-stop panel of one or several experiments; `regenerate_all` redraws
every figure a manifest lists (`load_manifest` validates it first);
`expand_results` finds the experiments a directory stands for. Only CSV
files are read, with `lth_keras.analysis.plotting`, so nothing here imports
TensorFlow. The program ``python -m lth_keras.figures`` parses flags and
calls these; its doc describes the manifest format.

Example:

```python
from lth_keras.analysis import figures

written, missing = figures.make_figures(figures.expand_results(["runs"]), "plots")
figures.regenerate_all("figures")          # every figure in figures/manifest.json
```
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, Sequence

from lth_keras.analysis import plotting
from lth_keras.storage import layout
from lth_keras.storage.layout import is_experiment_dir

__all__ = ["FiguresError", "MANIFEST_PLOTS", "default_labels", "expand_results", "is_experiment_dir",
           "load_manifest", "make_figures", "regenerate_all"]

METRIC_FIGURES = plotting.PAPER_METRICS
PANEL_NAME = "early_stop_panel"
CURVES_NAME = "accuracy_curves"
# The committed figures folder's list of figures (not a file of an experiment directory).
MANIFEST_FILE = "manifest.json"

# plot kind -> keyword arguments a manifest entry may give it.
MANIFEST_PLOTS = {
    "accuracy_curves": ("pms", "reinit_pms", "trial", "control_arm", "pm_tolerance", "band", "title"),
    "metric_vs_pm": ("metric", "arms", "labels", "title"),
    "early_stop_panel": ("arms", "labels", "metrics", "title"),
    "instability": ("accuracy", "title"),
}
_ENTRY_KEYS = ("name", "plot", "experiments", "formats", "dpi")


class FiguresError(ValueError):
    """Bad input; the message starts with the flag or manifest entry at fault."""


# --------------------------------------------------------------------------
# Experiments on disk
# --------------------------------------------------------------------------


def expand_results(paths: Sequence[str], flag: str = "--results") -> list[str]:
    """Experiment directories named by ``paths`` (each an experiment, or a
    directory whose immediate subdirectories are experiments)."""
    found = []
    for path in paths:
        if not os.path.isdir(path):
            raise FiguresError(f"{flag}: no such directory: {path}")
        if is_experiment_dir(path):
            found.append(path)
            continue
        subs = sorted(
            os.path.join(path, name) for name in os.listdir(path)
            if is_experiment_dir(os.path.join(path, name))
        )
        if not subs:
            raise FiguresError(f"{flag}: no experiment in {path} (no {layout.EXPERIMENT_MARKERS} in it or its "
                               "subdirectories)")
        found += subs
    return found


def default_labels(roots: Sequence[str]) -> list[str]:
    """Directory names; where two coincide, "<parent>/<name>"."""
    names = [plotting.experiment_label(r) for r in roots]
    return [
        os.path.join(os.path.basename(os.path.dirname(os.path.normpath(r))), n) if names.count(n) > 1 else n
        for r, n in zip(roots, names)
    ]


def _safe(label: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", label).strip("._") or "experiment"


# --------------------------------------------------------------------------
# The CLI's figure set
# --------------------------------------------------------------------------


def make_figures(
    roots: Sequence[str],
    out: str,
    labels: Sequence[str] | None = None,
    arms: Sequence[str] | None = None,
    pms: Sequence[float] = plotting.DEFAULT_PMS,
    reinit_pms: Sequence[float] = plotting.DEFAULT_REINIT_PMS,
    trial: int | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
    log: Callable[[str], None] = print,
) -> tuple[list[str], list[str]]:
    """Writes the figure set for ``roots`` into ``out``; returns (written, missing).

    One experiment: ``out/{accuracy_curves, early_stop_iteration,
    early_stop_test_accuracy, early_stop_train_accuracy, final_test_accuracy,
    early_stop_panel}.{png,pdf}``. Several: those in ``out/<label>/`` for each,
    plus the multi-network metric plots and panel directly in ``out``.
    """
    roots = list(roots)
    labels = list(labels) if labels else default_labels(roots)
    if len(labels) != len(roots):
        raise FiguresError(f"--labels: got {len(labels)} labels for {len(roots)} experiments")
    if len(set(labels)) != len(labels):
        raise FiguresError(f"--labels: labels must be distinct, got {labels}")
    arms = list(arms) if arms else None
    written, missing = [], []

    def emit(fig, data, path):
        for note in data["missing"]:
            if note not in missing:
                missing.append(note)
                log(f"missing: {note}")
        for p in plotting.save(fig, path, formats=formats, dpi=dpi):
            written.append(p)
            log(f"wrote {p}")

    multi = len(roots) > 1
    for root, label in zip(roots, labels):
        where = os.path.join(out, _safe(label)) if multi else out
        emit(*plotting.plot_accuracy_curves(root, pms=pms, reinit_pms=reinit_pms, trial=trial),
             os.path.join(where, CURVES_NAME))
        for metric in METRIC_FIGURES:
            emit(*plotting.plot_metric_vs_pm(root, metric, arms=arms, labels=[label]),
                 os.path.join(where, metric))
        emit(*plotting.early_stop_and_accuracy_figure(root, arms=arms, labels=[label]),
             os.path.join(where, PANEL_NAME))
    if multi:
        for metric in METRIC_FIGURES:
            emit(*plotting.plot_metric_vs_pm(roots, metric, arms=arms, labels=labels),
                 os.path.join(out, metric))
        emit(*plotting.early_stop_and_accuracy_figure(roots, arms=arms, labels=labels),
             os.path.join(out, PANEL_NAME))
    return written, missing


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------


def load_manifest(figures_dir: str, manifest: str = MANIFEST_FILE) -> dict:
    """Reads and validates ``<figures_dir>/<manifest>``; raises FiguresError."""
    path = os.path.join(figures_dir, manifest)
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise FiguresError(f"manifest not found: {path}") from None
    except ValueError as e:
        raise FiguresError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("figures"), list):
        raise FiguresError(f'{path}: expected an object with a "figures" list')
    names = set()
    for i, entry in enumerate(spec["figures"]):
        where = f"{path}: figures[{i}]"
        if not isinstance(entry, dict):
            raise FiguresError(f"{where}: expected an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise FiguresError(f'{where}: "name" (output path without extension) is required')
        where = f"{path}: figure {name!r}"
        norm = os.path.normpath(name)
        if os.path.isabs(name) or norm == ".." or norm.startswith(".." + os.sep):
            raise FiguresError(f"{where}: name must be a path inside {figures_dir}")
        if norm in names:
            raise FiguresError(f"{where}: duplicate name")
        names.add(norm)
        kind = entry.get("plot")
        if kind not in MANIFEST_PLOTS:
            raise FiguresError(f"{where}: unknown plot {kind!r}; expected one of {sorted(MANIFEST_PLOTS)}")
        unknown = set(entry) - set(_ENTRY_KEYS) - set(MANIFEST_PLOTS[kind])
        if unknown:
            raise FiguresError(f"{where}: unknown keys {sorted(unknown)} for plot {kind!r}")
        exps = entry.get("experiments")
        if not isinstance(exps, list) or not exps or not all(isinstance(e, str) for e in exps):
            raise FiguresError(f'{where}: "experiments" must be a non-empty list of directories')
        if kind in ("accuracy_curves", "instability") and len(exps) != 1:
            raise FiguresError(f"{where}: {kind} takes exactly one experiment")
        if kind == "metric_vs_pm" and entry.get("metric") not in plotting.METRIC_LABELS:
            raise FiguresError(f'{where}: "metric" must be one of {sorted(plotting.METRIC_LABELS)}')
        for e in exps:
            if not os.path.isdir(os.path.join(figures_dir, e)):
                raise FiguresError(f"{where}: experiment directory not found: {os.path.join(figures_dir, e)}")
    return spec


def regenerate_all(
    figures_dir: str = "figures",
    manifest: str = MANIFEST_FILE,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Redraws every figure listed in ``<figures_dir>/<manifest>`` from the
    experiment CSVs under ``figures_dir``; returns the paths written.

    The whole manifest is validated before anything is drawn.
    """
    spec = load_manifest(figures_dir, manifest)
    default_formats = spec.get("formats", ["png", "pdf"])
    default_dpi = spec.get("dpi", 150)
    written = []
    for entry in spec["figures"]:
        kind = entry["plot"]
        roots = [os.path.join(figures_dir, e) for e in entry["experiments"]]
        kwargs = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        if kind == "accuracy_curves":
            fig, data = plotting.plot_accuracy_curves(roots[0], **kwargs)
        elif kind == "instability":
            fig, data = plotting.plot_instability(roots[0], **kwargs)
        elif kind == "metric_vs_pm":
            metric = kwargs.pop("metric")
            fig, data = plotting.plot_metric_vs_pm(roots if len(roots) > 1 else roots[0], metric, **kwargs)
        else:
            fig, data = plotting.early_stop_and_accuracy_figure(roots if len(roots) > 1 else roots[0], **kwargs)
        for note in data["missing"]:
            log(f"missing: {entry['name']}: {note}")
        for p in plotting.save(fig, os.path.join(figures_dir, entry["name"]),
                               formats=entry.get("formats", default_formats),
                               dpi=entry.get("dpi", default_dpi)):
            written.append(p)
            log(f"wrote {p}")
    return written
