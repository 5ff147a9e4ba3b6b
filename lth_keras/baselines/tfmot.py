r"""TFMOT gradual magnitude pruning, written into an IMP experiment as the arm
``tfmot_gradual``.

    # once: a venv that sees the installed TensorFlow and adds TFMOT + tf_keras
    python -m lth_keras.baselines.tfmot --setup_venv=/tmp/lth_tfmot_venv
    # then, for an experiment made by `python -m lth_keras.main`:
    /tmp/lth_tfmot_venv/bin/python -m lth_keras.baselines.tfmot --results=runs/lenet

For every trial and every ticket round r >= 1 of the IMP experiment, the same
architecture is built in tf_keras, every layer IMP prunes is wrapped in
``tfmot.sparsity.keras.prune_low_magnitude`` with a ``PolynomialDecay`` to
that layer's P_m at round r (so the overall P_m matches the ticket's), and it
is trained from the trial's θ0 (the ticket's round-0 starting weights) with
the experiment's optimizer, batch size, data order and evaluation schedule.
Sparsity rises from 0 at ``--pruning_begin`` to the target at
``--pruning_end`` (fractions of training), with a mask update every
``--pruning_frequency`` iterations; the rest of training fine-tunes the final
mask. Training lasts one IMP round (``--iterations``) by default, or with
``--training_length=total`` as long as the IMP run that produced round r
((r + 1) x iterations; learning-rate boundaries are stretched to match).

Each round is written with `lth_keras.storage.experiment_dir.ExperimentDir.write_round`
(mask.npz, reset_weights.npz = θ0, trained_weights.npz, curve.csv,
summary.json with early-stop metrics) and summary.csv is rewritten, so the
figures pick the arm up. P_m in summary.json is counted from the final,
stripped weights (nonzero entries of the pruned kernels); ``target_pm`` is
the ticket's. A trial's rounds are written under the trial's lock, which
every writer of an experiment takes: while another process (a run of
`lth_keras.main`, say) has the trial, the baseline stops with one line
naming it, or waits for it with ``--wait_for_lock``.

Flags: every `lth_keras.main` flag is accepted; the experiment-defining ones
(model, dataset, hyperparameters) default to the experiment's config.json and
override it when given. ``--rounds`` / ``--trials`` limit which rounds and
trials are run (default: all the ticket has), ``--overwrite`` redoes finished
tfmot rounds (they are skipped otherwise). config.json is never rewritten.

tensorflow-model-optimization only works with tf_keras and switches
``tf.keras`` to it for the whole process, so this runs in its own process
(and, because TFMOT pins absl-py 1.x, preferably its own venv, see
`lth_keras.baselines.venv`). The Keras-3 model is only inspected (to copy
its architecture, `lth_keras.baselines.architecture`) before TFMOT is
imported. Data order, learning-rate schedule, optimizer, evaluation points
and log lines are the runner's (`lth_keras.schedule`);
`lth_keras.baselines.tfmot_gradual` keeps what needs tf_keras, and this
module parses the flags.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

from absl import flags

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras import cli
from lth_keras.storage import errors, layout, locks
from lth_keras.experiment import config as lth_config
from lth_keras.baselines.venv import VenvError, setup_venv, venv_python, venv_requirements
from lth_keras.baselines.tfmot_gradual import (  # this module's names before the logic moved
    ARM,
    BaselineError,
    pruning_schedule_steps,
    resolve_config,
    run,
    ticket_targets,
    weight_pairs,
)

__all__ = ["ARM", "BaselineError", "run", "setup_venv", "venv_python", "venv_requirements", "resolve_config",
           "pruning_schedule_steps", "ticket_targets", "weight_pairs", "define_flags", "main"]


def define_flags(flag_values: flags.FlagValues) -> None:
    """The program's flags: every `lth_keras.main` flag, plus the baseline's own."""
    cli.define_flags(flag_values=flag_values)
    flags.DEFINE_string("results", None, "The IMP experiment directory (<output_dir>/<experiment>, holding "
                        f"{layout.CONFIG_FILE}).", flag_values=flag_values)
    flags.DEFINE_enum(
        "training_length", "round", ["round", "total"],
        "round: train as long as one IMP round (--iterations); total: as long as the IMP run "
        "that reached the round ((round + 1) x iterations).",
        flag_values=flag_values,
    )
    flags.DEFINE_float("pruning_begin", 0.0, "Fraction of training after which pruning starts.",
                       flag_values=flag_values)
    flags.DEFINE_float("pruning_end", 2.0 / 3.0, "Fraction of training at which the target sparsity is reached.",
                       flag_values=flag_values)
    flags.DEFINE_integer("pruning_frequency", 100, "Iterations between mask updates (shortened if training is "
                         "short).", flag_values=flag_values)
    flags.DEFINE_string(
        "setup_venv", None,
        "Create (or reuse) a venv at this path that sees the installed TensorFlow and adds "
        "tf_keras, tensorflow-model-optimization and absl-py 1.x, print its python, and exit.",
        flag_values=flag_values,
    )


FLAGS = cli.program_flags(define_flags)


def _overrides_from_flags() -> dict:
    values = {}
    for f in dataclasses.fields(lth_config.ExperimentConfig):
        overridable = f.metadata.get("defining", True) is not False or f.name in ("data_dir", "tfds_data_dir", "deterministic")
        if overridable and FLAGS[f.name].present:
            value = FLAGS[f.name].value
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values


def main(argv):
    """Sets up the venv, or runs the baseline, as the parsed `FLAGS` say; errors are one line."""
    del argv  # `cli.parse_command_line` refuses stray arguments
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if FLAGS.setup_venv:
            print(setup_venv(FLAGS.setup_venv))
            return
        if not FLAGS.results:
            raise BaselineError("--results: required (the IMP experiment directory).")
        run(
            FLAGS.results, _overrides_from_flags(),
            rounds=FLAGS.rounds if FLAGS["rounds"].present else None,
            trials=FLAGS.trials if FLAGS["trials"].present else None,
            overwrite=FLAGS.overwrite, training_length=FLAGS.training_length, pruning_begin=FLAGS.pruning_begin,
            pruning_end=FLAGS.pruning_end, pruning_frequency=FLAGS.pruning_frequency,
            wait_for_lock=FLAGS.wait_for_lock,
        )
    except (BaselineError, VenvError, errors.ResultsError, locks.LockError) as e:
        sys.exit(f"error: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: --setup_venv: {e}")


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
