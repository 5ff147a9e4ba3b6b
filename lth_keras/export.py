r"""Exports a trained ticket from an experiment directory.

    python -m lth_keras.export --results=runs/lenet --trial=0 --round=7 \
        --format=keras|savedmodel|tflite --out=PATH

The round's model is rebuilt from config.json, its masks (mask.npz) and its
trained weights (trained_weights.npz, which ticket rounds and the TFMOT
baseline's rounds store) are restored, and every mask is folded into plain
Keras layers (`lth_keras.layers.fold_masks`): pruned weights are exact zeros
and nothing of lth_keras is needed to load the result.

Formats:
    keras: a ``.keras`` file; ``keras.saving.load_model(PATH)`` loads it with
        Keras alone.
    savedmodel: a TensorFlow SavedModel directory (``serving_default``
        signature) for TF Serving.
    tflite: a TFLite flatbuffer converted with
        ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``, which stores sufficiently
        sparse float weight tensors in a compressed sparse format. The same
        model converted without it is measured for comparison.

The command prints the dense and sparse sizes (parameters, nonzero
parameters, file sizes) and then checks the export: it loads it back in a
fresh Python process that cannot import lth_keras and compares its outputs
with the masked model's on a batch of the experiment's test split
(``np.allclose`` with atol = rtol = 1e-5 for keras and savedmodel, 1e-4 for
tflite; ``--atol``/``--rtol`` override). A mismatch exits non-zero with a
message saying so.
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras import cli
from lth_keras.storage import errors, layout
from lth_keras.experiment.export import (  # this module's names before the logic moved
    FORMATS,
    TOLERANCES,
    ExportError,
    export,
    load_masked_model,
    run_export,
    run_in_fresh_process,
)

__all__ = ["ExportError", "FORMATS", "TOLERANCES", "export", "load_masked_model", "run_export", "run_in_fresh_process",
           "define_flags", "main"]


def define_flags(flag_values: flags.FlagValues) -> None:
    """The program's flags."""
    flags.DEFINE_string("results", None, f"The experiment directory (<output_dir>/<experiment>, holding {layout.CONFIG_FILE}).", flag_values=flag_values)
    flags.DEFINE_integer("trial", 0, "Trial to export.", flag_values=flag_values)
    flags.DEFINE_integer("round", None, "Round to export.", flag_values=flag_values)
    flags.DEFINE_string("arm", "ticket", f"Arm to export (rounds that store {layout.TRAINED_FILE}: ticket, gradual, tfmot_gradual, lr_rewind, finetune, static_erk, set, rigl).", flag_values=flag_values)
    flags.DEFINE_string("format", None, "keras, savedmodel or tflite.", flag_values=flag_values)
    flags.DEFINE_string("out", None, "Output path (.keras file, SavedModel directory or .tflite file).", flag_values=flag_values)
    flags.DEFINE_integer("check_examples", 64, "Test examples the output check runs on.", flag_values=flag_values)
    flags.DEFINE_float("atol", None, "Absolute tolerance of the output check (default per format).", flag_values=flag_values)
    flags.DEFINE_float("rtol", None, "Relative tolerance of the output check (default per format).", flag_values=flag_values)


FLAGS = cli.program_flags(define_flags)


def main(argv):
    """Exports the round the parsed `FLAGS` name; errors are one line."""
    del argv  # `cli.parse_command_line` refuses stray arguments
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the report
    try:
        for name in ("results", "round", "format", "out"):
            if FLAGS[name].value is None:
                raise ExportError(f"--{name}: required.")
        export(
            FLAGS.results, FLAGS.trial, FLAGS.round, FLAGS.format, FLAGS.out,
            arm=FLAGS.arm, check_examples=FLAGS.check_examples, atol=FLAGS.atol, rtol=FLAGS.rtol,
        )
    except (ExportError, errors.ResultsError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
