"""Exporting a trained ticket: its round's masked model, folded into plain
Keras layers and written as ``.keras``, SavedModel or TFLite, then checked
in a fresh process that cannot import lth_keras.

The program ``python -m lth_keras.export`` (its doc describes the formats
and the check) parses flags and calls `export`.

Example:

```python
from lth_keras.experiment import export

model, config = export.load_masked_model("runs/lenet", trial=0, round_=7)
report = export.export("runs/lenet", 0, 7, "tflite", "/tmp/ticket.tflite")
report["bytes"], report["dense_tflite_bytes"], report["ok"]
```
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from lth_keras import datasets
from lth_keras.storage import layout
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.experiment import saved
from lth_keras.experiment.config import ConfigError, load_dataset

__all__ = ["ExportError", "FORMATS", "TOLERANCES", "export", "load_masked_model", "run_export",
           "run_in_fresh_process"]

FORMATS = ("keras", "savedmodel", "tflite")
# (atol, rtol) of the output check, per format.
TOLERANCES = {"keras": (1e-5, 1e-5), "savedmodel": (1e-5, 1e-5), "tflite": (1e-4, 1e-4)}


class ExportError(ValueError):
    """A bad flag, a missing round, or an export whose outputs do not match."""


# --------------------------------------------------------------------------
# Loading a round


def _config(results_dir):
    try:
        return saved.saved_config(results_dir, error=ExportError)
    except ConfigError as e:
        raise ExportError(f"--results: {layout.CONFIG_FILE}: {e}") from None


def load_masked_model(results_dir: str, trial: int, round_: int, arm: str = "ticket"):
    """The trained, masked Keras model of one round, and the resolved config.

    Raises:
        ExportError: no such experiment or round, or the round stores no
            trained weights (the arms whose ``keeps_trained_weights`` is set:
            ticket, gradual, tfmot_gradual, lr_rewind, finetune, static_erk,
            set and rigl).
    """
    from lth_keras import layers, models
    from lth_keras.pruning import snapshots

    config = _config(results_dir)
    exp_dir = ExperimentDir(results_dir)
    try:
        round_dir = exp_dir.round_dir(trial, arm, round_)
    except (TypeError, ValueError) as e:
        raise ExportError(f"--trial/--round/--arm: {e}") from None
    status, damage = exp_dir.round_status(trial, arm, round_)
    if status == "corrupt":
        raise ExportError(f"{damage}; rerun the experiment's command to retrain the round")
    if not exp_dir.is_round_done(trial, arm, round_):
        done = exp_dir.finished_rounds(trial, arm)
        have = f"finished {arm} rounds of trial {trial}: {done}" if done else f"no finished {arm} round in trial {trial}"
        raise ExportError(f"--round: trial {trial} {arm} round {round_} not found in {results_dir} ({have}).")
    if not os.path.exists(exp_dir.trained_weights_path(trial, arm, round_)):
        raise ExportError(
            f"--arm/--round: {round_dir} has no {layout.TRAINED_FILE}: only ticket and gradual rounds (and the "
            f"tfmot_gradual baseline's) store trained weights; export a ticket round."
        )
    spec = datasets.DATASETS[config.dataset]
    model = models.build(config.model, spec.input_shape, spec.num_classes, dropout=config.dropout)
    masks = exp_dir.read_mask(trial, arm, round_)
    trained = exp_dir.read_trained_weights(trial, arm, round_)
    try:
        layers.set_masks(model, masks)
        snapshots.WeightSnapshot.from_arrays(trained).restore(model)
    except ValueError as e:
        raise ExportError(f"{round_dir} does not fit the {config.model} model of {layout.CONFIG_FILE}: {e}") from None
    return model, config


def _check_batch(config, n, input_shape):
    try:
        data = load_dataset(config)
        return data.x_test[:n].astype(np.float32), f"{min(n, len(data.x_test))} {config.dataset} test examples"
    except (ConfigError, datasets.DataUnavailableError) as e:
        x = np.random.default_rng(0).standard_normal((n,) + tuple(input_shape)).astype(np.float32)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return x, f"{n} random inputs (the test split is unavailable: {first})"


# --------------------------------------------------------------------------
# Loading an export in a fresh process

def run_export(fmt, path, x):
    """Loads an export (keras, savedmodel or tflite) and returns its outputs on `x`.

    Self-contained (imports inside, nothing from lth_keras), because its
    source is also what the fresh-process check runs.
    """
    import numpy as np
    import tensorflow as tf

    if fmt == "keras":
        import keras

        return np.asarray(keras.saving.load_model(path, compile=False)(x, training=False))
    if fmt == "savedmodel":
        fn = tf.saved_model.load(path).signatures["serving_default"]
        (name,) = fn.structured_input_signature[1]
        (y,) = fn(**{name: tf.constant(x)}).values()
        return y.numpy()
    import warnings

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


# Appended to `run_export`'s source and run with `python -c` from an empty
# directory; lth_keras is made unimportable so the check fails if the export
# needs it.
_LOADER = r"""
import os, sys
sys.modules["lth_keras"] = None
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
fmt, path, x_path, y_path = sys.argv[1:5]
y = run_export(fmt, path, np.load(x_path))
loaded = sorted(m for m in sys.modules if m.startswith("lth_keras") and sys.modules[m] is not None)
if loaded:
    raise SystemExit("lth_keras was imported: " + ", ".join(loaded))
np.save(y_path, y)
"""


def run_in_fresh_process(fmt: str, path: str, x: np.ndarray) -> np.ndarray:
    """Loads an export in a new Python process without lth_keras and runs `x`."""
    with tempfile.TemporaryDirectory(prefix="lth_export_check_") as tmp:
        x_path, y_path = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(x_path, x)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(
            [sys.executable, "-c", inspect.getsource(run_export) + _LOADER, fmt, os.path.abspath(path), x_path, y_path],
            cwd=tmp, env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ExportError(f"EXPORT CHECK FAILED: {path} did not load in a fresh process without lth_keras:\n{tail}")
        return np.load(y_path)


# --------------------------------------------------------------------------
# Writing


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def _tflite(saved_model_dir, sparse: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def _prepare_out(fmt, out):
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ExportError(f"--out: directory {parent!r} does not exist.")
    if fmt == "keras" and not out.endswith(".keras"):
        raise ExportError(f"--out: a Keras file must end in .keras, got {out!r}.")
    if fmt in ("keras", "tflite") and os.path.isdir(out):
        raise ExportError(f"--out: {out!r} is a directory.")
    if fmt == "savedmodel" and os.path.exists(out):
        if os.path.isfile(out):
            raise ExportError(f"--out: {out!r} is a file, a SavedModel is a directory.")
        if os.listdir(out) and not os.path.exists(os.path.join(out, "saved_model.pb")):
            raise ExportError(f"--out: {out!r} is a non-empty directory that is not a SavedModel; not overwriting it.")
        shutil.rmtree(out)


def export(
    results_dir: str,
    trial: int,
    round_: int,
    fmt: str,
    out: str,
    *,
    arm: str = "ticket",
    check_examples: int = 64,
    atol: float | None = None,
    rtol: float | None = None,
    fresh_process: bool = True,
    log=None,
) -> dict:
    """Exports one round; returns a report of sizes and the output check.

    Args:
        results_dir, trial, round_, arm: which round.
        fmt: ``"keras"``, ``"savedmodel"`` or ``"tflite"``.
        out: the ``.keras`` file, SavedModel directory or ``.tflite`` file.
        check_examples: test examples compared between the export and the
            masked model.
        atol, rtol: the check's tolerances (default `TOLERANCES[fmt]`).
        fresh_process: load the export back in a new process that cannot
            import lth_keras (default); False loads it in this one.
        log: a print-like function.

    Raises:
        ExportError: bad arguments, a missing round, or outputs that do not
            match (the report is in the message).
    """
    log = log or (lambda message: print(message, flush=True))
    if fmt not in FORMATS:
        raise ExportError(f"--format: unknown format {fmt!r}; known: {', '.join(FORMATS)}.")
    if not out:
        raise ExportError("--out: required.")
    if check_examples < 1:
        raise ExportError(f"--check_examples: must be positive, got {check_examples}.")
    model, config = load_masked_model(results_dir, trial, round_, arm)
    _prepare_out(fmt, out)
    default_atol, default_rtol = TOLERANCES[fmt]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol

    from lth_keras import layers

    spec = datasets.DATASETS[config.dataset]
    x, described = _check_batch(config, check_examples, spec.input_shape)
    reference = np.asarray(model(x, training=False))
    plain = layers.fold_masks(model)

    counts = layers.count_weights(model)
    prunable = sum(t for _, t in counts.values())
    kept = sum(r for r, _ in counts.values())
    params = sum(int(np.prod(v.shape)) for v in plain.weights)
    nonzero = sum(int(np.count_nonzero(v.numpy())) for v in plain.weights)
    report = {
        "format": fmt, "out": out, "trial": trial, "round": round_, "arm": arm,
        "params": params, "nonzero_params": nonzero, "prunable": prunable, "remaining": kept,
        "pm": 100.0 * kept / prunable, "atol": atol, "rtol": rtol,
    }
    log(f"{config.model} {arm} trial {trial} round {round_} of {results_dir}: P_m {report['pm']:.2f}% "
        f"({kept:,} of {prunable:,} prunable weights)")
    log(f"dense:  {params:,} parameters = {4 * params:,} bytes as float32")
    log(f"sparse: {nonzero:,} nonzero parameters = {4 * nonzero:,} bytes of float32 values (+ indices)")

    if fmt == "keras":
        plain.save(out)
    elif fmt == "savedmodel":
        plain.export(out, format="tf_saved_model", verbose=False)
    else:
        with tempfile.TemporaryDirectory(prefix="lth_export_") as tmp:
            saved = os.path.join(tmp, "saved_model")
            plain.export(saved, format="tf_saved_model", verbose=False)
            sparse_bytes = _tflite(saved, sparse=True)
            dense_bytes = _tflite(saved, sparse=False)
        with open(out, "wb") as f:
            f.write(sparse_bytes)
        report["dense_tflite_bytes"] = len(dense_bytes)
    report["bytes"] = _size(out)
    if fmt == "tflite":
        ratio = report["dense_tflite_bytes"] / report["bytes"]
        log(f"file:   {out}: {report['bytes']:,} bytes (EXPERIMENTAL_SPARSITY); without sparsity "
            f"optimisation: {report['dense_tflite_bytes']:,} bytes ({ratio:.2f}x)")
    else:
        log(f"file:   {out}: {report['bytes']:,} bytes ({fmt} stores dense tensors; pruned weights are zeros)")

    if fresh_process:
        outputs = run_in_fresh_process(fmt, out, x)
        where = "a fresh process without lth_keras"
    else:
        outputs = run_export(fmt, out, x)
        where = "this process"
    diff = float(np.max(np.abs(outputs - reference))) if outputs.shape == reference.shape else float("inf")
    report["max_abs_diff"] = diff
    ok = outputs.shape == reference.shape and bool(np.allclose(outputs, reference, atol=atol, rtol=rtol))
    report["ok"] = ok
    if not ok:
        raise ExportError(
            f"EXPORT CHECK FAILED: {out} loaded in {where} gives outputs of shape {outputs.shape} that differ from "
            f"the masked model's {reference.shape} on {described}: max |diff| {diff:.3g} exceeds "
            f"atol {atol:g} + rtol {rtol:g}. Do not use this export."
        )
    log(f"check:  outputs match the masked model on {described} when loaded in {where} "
        f"(max |diff| {diff:.2g}; tolerance atol {atol:g}, rtol {rtol:g})")
    return report
