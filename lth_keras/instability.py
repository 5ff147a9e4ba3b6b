r"""Instability analysis (Frankle et al. 2020, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis") of an experiment's tickets.

    python -m lth_keras.instability --results=runs/lenet_fashion_mnist \
        --rounds=0,3 --rewind_iterations=0,100,500,2000 --points=11

For each trial, round r (the dense network is round 0) and rewind
iteration k: the ticket's mask of round r is applied to the dense
network's weights at iteration k, two copies are trained from there to the
end of training (iterations k+1 … T, the learning-rate schedule at k and
a freshly reset optimizer, as in a rewound round) with different data orders, and the test error is measured
at `points` evenly spaced points of the linear path αW1 + (1−α)W2 between
them. The **error barrier** is the largest error on the path minus the mean
of the two ends' errors; a network is stable at k when the barrier is
within noise (the paper: about 2%).

Where the weights at k come from: the experiment keeps the dense weights at
its own ``--rewind_iteration`` only (``ticket/round_0/rewind_weights.npz``)
and θ0 (round 0's reset_weights.npz). For any other k the dense network is
retrained from θ0 for k iterations with the trial's seed (the data order
and hyperparameters of the experiment's round 0, so it is the same
network) and the weights are kept in ``instability/trial_<t>/dense_at_<k>.npz``.
The masks are the experiment's: found by IMP with its own rewind
iteration, where the paper finds one mask per k (run one experiment per k
to match it exactly).

Results, all in the experiment directory and written atomically:
``instability/trial_<t>/round_<r>/k_<k>/copy_seed_<seed>.npz`` (each trained copy)
and ``row.json`` (the finished measurement), ``instability.csv`` (one row
per trial, round and k: ``trial, round, pm, rewind_iteration, barrier,
end_error, end_accuracy, error_0, error_0.1, …, error_1``; the columns
``error_<α>`` hold the test error at αW1 + (1−α)W2) and ``instability.png``.
Running the same command again skips what is finished (a killed run loses
at most the copy it was training). One process analyses a trial at a time
(a lock in ``.locks/``): a second one on the same trial stops with one line
naming the holder, or waits for it with ``--wait_for_lock``; processes given
different ``--trials`` run side by side.

Example (from Python):

```python
from lth_keras import instability

path = instability.run_instability("runs/lenet_fashion_mnist", rounds=[0, 3],
                                   rewind_iterations=[0, 500], points=11)
import pandas; pandas.read_csv(path)
```
"""

from __future__ import annotations

import os
import sys

from absl import flags

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras import cli
from lth_keras.storage import locks
from lth_keras.analysis.instability import (  # this module's names before the logic moved
    CSV_NAME,
    FIGURE_NAME,
    InstabilityError,
    barrier,
    path_alphas,
    plot_instability,
    run_instability,
)

__all__ = ["InstabilityError", "run_instability", "barrier", "path_alphas", "plot_instability", "CSV_NAME",
           "FIGURE_NAME", "define_flags", "main"]


def define_flags(flag_values: flags.FlagValues) -> None:
    """The program's flags."""
    flags.DEFINE_string("results", None, "The experiment directory to analyse (<output_dir>/<experiment>).",
                        flag_values=flag_values)
    flags.DEFINE_list("rounds", [], "Ticket rounds (sparsities) to analyse; 0 is the dense network. "
                      "Default: every finished round.", flag_values=flag_values)
    flags.DEFINE_list("rewind_iterations", ["0", "100", "500", "2000"],
                      "Rewind iterations k the two copies start from.", flag_values=flag_values)
    flags.DEFINE_integer("points", 11, "Points on the linear path between the copies (ends included).",
                         flag_values=flag_values)
    flags.DEFINE_list("trials", [], "Trials to analyse (default: every finished one).", flag_values=flag_values)
    flags.DEFINE_list("copy_seeds", [], "Two data-order seeds for the copies (default: derived from the "
                      "trial's seed). Equal seeds: the same data order.", flag_values=flag_values)
    flags.DEFINE_bool("figure", True, "Also draw instability.png.", flag_values=flag_values)
    flags.DEFINE_bool("wait_for_lock", False, "When another process analyses one of the trials, wait for it "
                      "instead of stopping with an error.", flag_values=flag_values)


FLAGS = cli.program_flags(define_flags)


def _ints(values, flag):
    try:
        return [int(v) for v in values]
    except ValueError:
        raise InstabilityError(f"--{flag} takes integers, got {','.join(values)}.") from None


def main(argv) -> None:
    """Calls `run_instability` with the parsed `FLAGS`; errors are one line."""
    del argv  # `cli.parse_command_line` refuses stray arguments
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if not FLAGS.results:
            raise InstabilityError("--results is required (an experiment directory).")
        run_instability(
            FLAGS.results,
            rounds=_ints(FLAGS.rounds, "rounds") or None,
            rewind_iterations=_ints(FLAGS.rewind_iterations, "rewind_iterations"),
            points=FLAGS.points,
            trials=_ints(FLAGS.trials, "trials") or None,
            seeds=_ints(FLAGS.copy_seeds, "copy_seeds") or None,
            figure=FLAGS.figure,
            wait_for_lock=FLAGS.wait_for_lock,
        )
    except (InstabilityError, locks.LockError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
