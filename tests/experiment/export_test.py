"""Tests for lth_keras.experiment.export: every format loads without lth_keras and
reproduces the masked model; the sparse TFLite file of a P_m <= 20% ticket is
smaller.

The program (``python -m lth_keras.export``: flags, one-line errors) is
tested in tests/programs/export_test.py.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lth_keras import datasets
from lth_keras.experiment import export
from tests.helpers.runs import EXPORT_ROUND, EXPORT_SIZES, export_experiment

SIZES, ROUND = EXPORT_SIZES, EXPORT_ROUND


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A 3-round LeNet IMP experiment on synthetic data, ticket at P_m ~16%."""
    return export_experiment(str(tmp_path_factory.mktemp("runs")))


def _batch(n=32):
    data = datasets.load("synthetic", validation_size=100, synthetic_sizes=SIZES, seed=0)
    return data.x_test[:n]


@pytest.fixture(scope="module")
def exports(results_dir, tmp_path_factory):
    """Every format of the round-2 ticket (checked in this process)."""
    out = tmp_path_factory.mktemp("exports")
    paths = {"keras": str(out / "ticket.keras"), "savedmodel": str(out / "saved_model"),
             "tflite": str(out / "ticket.tflite")}
    reports = {
        fmt: export.export(results_dir, 0, ROUND, fmt, path, fresh_process=False, log=lambda m: None)
        for fmt, path in paths.items()
    }
    return paths, reports


# Independent of lth_keras.export's own check: a new interpreter, started
# outside the repository, in which importing lth_keras fails.
_FRESH_LOADER = textwrap.dedent(r"""
    import os, sys
    sys.modules["lth_keras"] = None
    import numpy as np
    import tensorflow as tf
    import keras
    x = np.load(sys.argv[1])
    keras_path, saved_model, tflite_path, out_dir = sys.argv[2:6]
    y = keras.saving.load_model(keras_path, compile=False)(x, training=False)
    np.save(os.path.join(out_dir, "keras.npy"), np.asarray(y))
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    (y,) = serve(**{name: tf.constant(x)}).values()
    np.save(os.path.join(out_dir, "savedmodel.npy"), y.numpy())
    interpreter = tf.lite.Interpreter(model_path=tflite_path)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.save(os.path.join(out_dir, "tflite.npy"), y)
    assert not [m for m in sys.modules if m.startswith("lth_keras") and sys.modules[m] is not None]
""")


@pytest.mark.slow
def test_every_format_loads_in_a_fresh_process_and_reproduces_outputs(results_dir, exports, tmp_path):
    paths, reports = exports
    x = _batch()
    np.save(tmp_path / "x.npy", x)
    model, _ = export.load_masked_model(results_dir, 0, ROUND)
    reference = np.asarray(model(x, training=False))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_LOADER, str(tmp_path / "x.npy"), paths["keras"], paths["savedmodel"],
         paths["tflite"], str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for fmt in export.FORMATS:
        atol, rtol = export.TOLERANCES[fmt]
        outputs = np.load(tmp_path / f"{fmt}.npy")
        assert outputs.shape == reference.shape == (len(x), 10)
        np.testing.assert_allclose(outputs, reference, atol=atol, rtol=rtol, err_msg=fmt)
        assert reports[fmt]["ok"] and reports[fmt]["max_abs_diff"] <= atol + rtol * np.abs(reference).max()


@pytest.mark.slow
def test_sparse_tflite_of_a_small_ticket_is_smaller_than_dense(exports):
    report = exports[1]["tflite"]
    assert report["pm"] <= 20.0
    assert report["bytes"] == os.path.getsize(exports[0]["tflite"])
    assert report["bytes"] < report["dense_tflite_bytes"]
    # 80%+ of the weights are zeros: the sparse encoding should at least halve it.
    assert report["bytes"] < 0.5 * report["dense_tflite_bytes"]


@pytest.mark.slow
def test_reports_dense_and_sparse_sizes(exports):
    report = exports[1]["keras"]
    assert report["params"] == 266_610  # LeNet-300-100 kernels + biases
    assert report["prunable"] == 266_200
    assert report["remaining"] < 0.2 * report["prunable"]
    # Folded kernels hold exact zeros where pruned; biases stay nonzero.
    assert report["remaining"] <= report["nonzero_params"] <= report["remaining"] + 410


def test_mismatching_outputs_fail_loudly(results_dir, tmp_path, monkeypatch):
    from lth_keras.experiment import export as exporting  # where export.export looks run_export up

    real = exporting.run_export
    monkeypatch.setattr(exporting, "run_export", lambda fmt, path, x: real(fmt, path, x) + 1e-3)
    with pytest.raises(export.ExportError, match=r"EXPORT CHECK FAILED: .* max \|diff\| 0.001 exceeds atol 1e-05"):
        export.export(results_dir, 0, ROUND, "keras", str(tmp_path / "t.keras"), fresh_process=False,
                      log=lambda m: None)


def test_clear_errors(results_dir, tmp_path):
    def error(*args, **kwargs):
        with pytest.raises(export.ExportError) as info:
            export.export(*args, fresh_process=False, log=lambda m: None, **kwargs)
        message = str(info.value)
        assert "\n" not in message
        return message

    out = str(tmp_path / "t.keras")
    assert error(str(tmp_path / "missing"), 0, 1, "keras", out) == (
        f"--results: {str(tmp_path / 'missing')!r} does not exist.")
    assert "no config.json" in error(str(tmp_path), 0, 1, "keras", out)
    assert error(results_dir, 0, 7, "keras", out) == (
        f"--round: trial 0 ticket round 7 not found in {results_dir} (finished ticket rounds of trial 0: [0, 1, 2]).")
    assert "no finished ticket round in trial 4" in error(results_dir, 4, 1, "keras", out)
    assert error(results_dir, 0, 1, "onnx", out) == "--format: unknown format 'onnx'; known: keras, savedmodel, tflite."
    assert "must end in .keras" in error(results_dir, 0, 1, "keras", str(tmp_path / "t.h5"))
    # A control arm keeps no trained weights.
    src = os.path.join(results_dir, "trial_0", "ticket", "round_1")
    dst = os.path.join(results_dir, "trial_0", "reinit", "round_1")
    shutil.copytree(src, dst)
    try:
        os.remove(os.path.join(dst, "trained_weights.npz"))
        with open(os.path.join(dst, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(dst, "summary.json"), "w") as f:
            json.dump(dict(summary, arm="reinit"), f)  # else it is a ticket summary in the wrong place
        assert "only ticket and gradual rounds" in error(results_dir, 0, 1, "keras", out, arm="reinit")
    finally:
        shutil.rmtree(os.path.dirname(dst))
