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

import sys

from absl import flags

from lth_keras import cli
from lth_keras.analysis import plotting
from lth_keras.storage import errors
from lth_keras.analysis.figures import (  # this module's names before the logic moved
    CURVES_NAME,
    MANIFEST_FILE,
    MANIFEST_PLOTS,
    METRIC_FIGURES,
    PANEL_NAME,
    FiguresError,
    default_labels,
    expand_results,
    is_experiment_dir,
    load_manifest,
    make_figures,
    regenerate_all,
)

__all__ = ["CURVES_NAME", "MANIFEST_FILE", "MANIFEST_PLOTS", "METRIC_FIGURES", "PANEL_NAME", "FiguresError",
           "default_labels", "expand_results", "is_experiment_dir", "load_manifest", "make_figures",
           "regenerate_all", "define_flags", "run", "main"]


def define_flags(flag_values: flags.FlagValues) -> None:
    """The program's flags."""
    flags.DEFINE_multi_string("results", [], "Experiment directory (or a directory of experiments); repeat or comma-separate for several.", flag_values=flag_values)
    flags.DEFINE_list("labels", [], "Names of the experiments in --results order (default: directory names).", flag_values=flag_values)
    flags.DEFINE_string("out", None, "Directory to write the figures into.", flag_values=flag_values)
    flags.DEFINE_list("arms", [], "Arms to plot (default: ticket, reinit, random_mask and any other arm found).", flag_values=flag_values)
    flags.DEFINE_list("pms", [str(p) for p in plotting.DEFAULT_PMS], "P_m (%) of the accuracy-curve figure's ticket curves.", flag_values=flag_values)
    flags.DEFINE_list("reinit_pms", [str(p) for p in plotting.DEFAULT_REINIT_PMS], "P_m (%) of its reinit curves.", flag_values=flag_values)
    flags.DEFINE_integer("trial", None, "Accuracy curves of this trial only (default: mean over trials).", flag_values=flag_values)
    flags.DEFINE_list("formats", ["png", "pdf"], "File formats to write.", flag_values=flag_values)
    flags.DEFINE_integer("dpi", 150, "Resolution of PNG files.", flag_values=flag_values)
    flags.DEFINE_bool("regenerate", False, "Regenerate every figure in <figures_dir>/manifest.json instead.", flag_values=flag_values)
    flags.DEFINE_string("figures_dir", "figures", "Directory holding manifest.json and the committed experiment CSVs.", flag_values=flag_values)


FLAGS = cli.program_flags(define_flags)


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
    """`run`, with bad input as one line ``error: ...`` and exit status 1."""
    try:
        run(argv)
    except (FiguresError, FileNotFoundError, errors.ResultsError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
