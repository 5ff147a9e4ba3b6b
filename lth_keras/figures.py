r"""Draws the paper's figures from experiment directories, or regenerates the
committed ones under ``figures/``.

Usage::

    # One experiment: accuracy curves, the four metric-vs-P_m plots and a 2x2 panel.
    python -m lth_keras.figures --results=runs/lenet --out=plots

    # Several (Conv-2/4/6): per-experiment figures in plots/<label>/ plus the
    # multi-network versions (one colour per network) directly in plots/.
    python -m lth_keras.figures --results=runs/conv2,runs/conv4 --results=runs/conv6 \
        --labels=Conv-2,Conv-4,Conv-6 --out=plots

    # Every figure listed in figures/manifest.json, from the CSVs in figures/*/.
    python -m lth_keras.figures --regenerate [--figures_dir=figures]

A ``--results`` directory is an experiment (it holds summary.csv or trial_*/)
or a directory of experiments (e.g. the training run's --output_dir), which
stands for each experiment inside it. Only CSV files are read: summary.csv and
trial_*/<arm>/round_*/curve.csv (the latter for accuracy curves only).

Each file written is printed as ``wrote <path>``; whatever a partial
experiment lacks is printed as ``missing: <note>``. Bad input gives a one-line
``error: --flag: ...`` on stderr and exit status 1.

Manifest format (``figures/manifest.json``; paths relative to its directory)::

    {
      "formats": ["png", "pdf"],                  # optional, the default
      "dpi": 150,                                 # optional PNG resolution, the default
      "figures": [
        {"name": "lenet/accuracy_curves",         # output path without extension
         "plot": "accuracy_curves",
         "experiments": ["lenet"],                # exactly one for accuracy_curves
         "pms": [100, 51.3, 21.1, 7.0, 3.6, 1.9], "reinit_pms": [51.3, 21.1]},
        {"name": "lenet/early_stop_iteration",
         "plot": "metric_vs_pm", "metric": "early_stop_iteration",
         "experiments": ["lenet"], "arms": ["ticket", "reinit"]},
        {"name": "conv/early_stop_iteration",
         "plot": "metric_vs_pm", "metric": "early_stop_iteration",
         "experiments": ["conv2", "conv4", "conv6"],
         "labels": ["Conv-2", "Conv-4", "Conv-6"]},
        {"name": "lenet/early_stop_panel", "plot": "early_stop_panel",
         "experiments": ["lenet"]},
        {"name": "lenet/instability", "plot": "instability",   # its instability.csv
         "experiments": ["lenet"]}
      ]
    }

``plot`` is one of MANIFEST_PLOTS; the other keys are that plot function's
keyword arguments (see MANIFEST_PLOTS for which are allowed) plus optional
per-figure "formats" and "dpi".
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Callable, Sequence

from absl import app, flags

from lth_keras.analysis import plotting
from lth_keras.storage import results

METRIC_FIGURES = plotting.PAPER_METRICS
PANEL_NAME = "early_stop_panel"
CURVES_NAME = "accuracy_curves"
MANIFEST_FILE = "manifest.json"

# plot kind -> keyword arguments a manifest entry may give it.
MANIFEST_PLOTS = {
    "accuracy_curves": ("pms", "reinit_pms", "trial", "control_arm", "pm_tolerance", "band", "title"),
    "metric_vs_pm": ("metric", "arms", "labels", "title"),
    "early_stop_panel": ("arms", "labels", "metrics", "title"),
    "instability": ("accuracy", "title"),
}
_ENTRY_KEYS = ("name", "plot", "experiments", "formats", "dpi")

FLAGS = flags.FLAGS

flags.DEFINE_multi_string("results", [], "Experiment directory (or a directory of experiments); repeat or comma-separate for several.")
flags.DEFINE_list("labels", [], "Names of the experiments in --results order (default: directory names).")
flags.DEFINE_string("out", None, "Directory to write the figures into.")
flags.DEFINE_list("arms", [], "Arms to plot (default: ticket, reinit, random_mask and any other arm found).")
flags.DEFINE_list("pms", [str(p) for p in plotting.DEFAULT_PMS], "P_m (%) of the accuracy-curve figure's ticket curves.")
flags.DEFINE_list("reinit_pms", [str(p) for p in plotting.DEFAULT_REINIT_PMS], "P_m (%) of its reinit curves.")
flags.DEFINE_integer("trial", None, "Accuracy curves of this trial only (default: mean over trials).")
flags.DEFINE_list("formats", ["png", "pdf"], "File formats to write.")
flags.DEFINE_integer("dpi", 150, "Resolution of PNG files.")
flags.DEFINE_bool("regenerate", False, "Regenerate every figure in <figures_dir>/manifest.json instead.")
flags.DEFINE_string("figures_dir", "figures", "Directory holding manifest.json and the committed experiment CSVs.")


class FiguresError(ValueError):
    """Bad input; the message starts with the flag or manifest entry at fault."""


# --------------------------------------------------------------------------
# Experiments on disk
# --------------------------------------------------------------------------


def is_experiment_dir(path: str) -> bool:
    """True if ``path`` holds summary.csv or a trial_<t>/ directory."""
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, "summary.csv")):
        return True
    return any(
        re.fullmatch(r"trial_\d+", name) and os.path.isdir(os.path.join(path, name))
        for name in os.listdir(path)
    )


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
            raise FiguresError(f"{flag}: no experiment in {path} (no summary.csv or trial_*/ in it or its subdirectories)")
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


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def _floats(values, flag):
    try:
        return [float(v) for v in values]
    except ValueError:
        raise FiguresError(f"{flag}: expected numbers, got {','.join(values)}") from None


def run(argv=None) -> None:
    """The CLI's work, from parsed FLAGS; raises FiguresError on bad input."""
    if argv is not None and len(argv) > 1:
        raise FiguresError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.regenerate:
        if FLAGS.results:
            raise FiguresError("--regenerate: do not combine with --results")
        regenerate_all(FLAGS.figures_dir)
        return
    paths = [p.strip() for value in FLAGS.results for p in value.split(",") if p.strip()]
    if not paths:
        raise FiguresError("--results: required (or pass --regenerate)")
    if not FLAGS.out:
        raise FiguresError("--out: required")
    roots = expand_results(paths)
    for root in roots:
        if plotting.load_summary(root).empty:
            raise FiguresError(f"--results: {root} has no finished round yet")
    written, missing = make_figures(
        roots, FLAGS.out, labels=FLAGS.labels or None, arms=FLAGS.arms or None,
        pms=_floats(FLAGS.pms, "--pms"), reinit_pms=_floats(FLAGS.reinit_pms, "--reinit_pms"),
        trial=FLAGS.trial, formats=FLAGS.formats, dpi=FLAGS.dpi,
    )
    print(f"{len(written)} files written to {FLAGS.out}" + (f"; {len(missing)} missing notes" if missing else ""))


def main(argv):
    try:
        run(argv)
    except (FiguresError, FileNotFoundError, results.ResultsError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
