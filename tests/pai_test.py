"""Pruning at initialization in the runner (lth_keras.pai's arms): exact
counts, styles, and the scores on JAX against TensorFlow. The scores'
hand computations are in pai_scores_test.py (run on every backend)."""

import json
import os
import subprocess
import sys

import keras
import matplotlib.colors
import numpy as np
import pytest

from lth_keras import arms, layers
from lth_keras.experiment import runner as experiment
from lth_keras.pruning import pai
from pai_scores_test import _data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAI_ARMS = ("snip", "grasp", "synflow", "magnitude_init",
            "snip_shuffled", "grasp_shuffled", "synflow_shuffled", "magnitude_init_shuffled")


def test_arms_are_registered_with_styles():
    for name in PAI_ARMS:
        arm = arms.get(name)
        assert name in arms.controls() and arm.label and arm.color and arm.marker
    assert arms.get("snip").linestyle != arms.get("snip_shuffled").linestyle


def _run(tmp_path, name, **kw):
    config = experiment.ExperimentConfig(
        model="lenet", dataset="synthetic", validation_size=200, iterations=20, eval_every=10,
        experiment=name, tensorboard=False, controls=PAI_ARMS, **kw)
    return experiment.train_and_evaluate(config, str(tmp_path), log=lambda s: None)


def test_each_arm_reaches_the_tickets_counts_layerwise(tmp_path):
    exp = _run(tmp_path, "layerwise", rounds=3)
    theta0 = exp.read_reset_weights(0, "ticket", 0)
    for round_ in (1, 2):
        ticket = exp.read_mask(0, "ticket", round_)
        counts = {n: int(np.count_nonzero(m)) for n, m in ticket.items()}
        for name in PAI_ARMS:
            mask = exp.read_mask(0, name, round_)
            assert {n: int(np.count_nonzero(m)) for n, m in mask.items()} == counts, (name, round_)
            summary = exp.read_round_summary(0, name, round_)
            assert summary["pm"] == pytest.approx(exp.read_round_summary(0, "ticket", round_)["pm"])
            # Trained from θ0 (masked).
            reset = exp.read_reset_weights(0, name, round_)
            for key, value in theta0.items():
                if key != "paths" and value.ndim == 1:  # biases are never pruned
                    np.testing.assert_array_equal(reset[key], value)
        for method in pai.METHODS:
            a, b = exp.read_mask(0, method, round_), exp.read_mask(0, f"{method}_shuffled", round_)
            assert any(not np.array_equal(a[n], b[n]) for n in a)
    # Magnitude at init keeps exactly the largest |θ0| of each layer.
    mask = exp.read_mask(0, "magnitude_init", 2)
    kernels = [v for k, v in sorted(theta0.items()) if k != "paths" and v.ndim == 2]
    for kernel, (name, m) in zip(kernels, mask.items()):
        kept = np.abs(kernel)[m.astype(bool)]
        dropped = np.abs(kernel)[~m.astype(bool)]
        assert kept.min() >= dropped.max(), name
    rows = {(r["arm"], r["round"]) for r in __import__("csv").DictReader(open(exp.summary_csv_path))}
    assert {(a, "2") for a in PAI_ARMS} <= rows
    # Figures overlay the arms an experiment ran, in their registered styles.
    from lth_keras.analysis import plotting

    fig, data = plotting.plot_metric_vs_pm(exp.root, "final_test_accuracy", arms=None)
    assert set(PAI_ARMS) <= set(data["points"]["arm"])
    assert all("'reinit'" in m or "'random_mask'" in m for m in data["missing"]), data["missing"]
    handles, labels = fig.axes[0].get_legend_handles_labels()
    by_label = {label: handle for handle, label in zip(handles, labels)}
    for name in ("snip", "snip_shuffled", "synflow"):
        arm = arms.get(name)
        label = next(text for text in by_label if arm.label in text and ("shuffled" in text) == ("shuffled" in name))
        handle = by_label[label]
        line = handle[0] if isinstance(handle, tuple) or hasattr(handle, "lines") else handle
        assert matplotlib.colors.same_color(line.get_color(), arm.color), (name, labels)


def test_each_arm_reaches_the_tickets_total_global(tmp_path):
    exp = _run(tmp_path, "global", rounds=2, pruning="global", rewind_iteration=10)
    ticket = exp.read_mask(0, "ticket", 1)
    # With rewinding, scored at and trained from the ticket's reset point (θ10).
    rewound, theta0 = exp.read_reset_weights(0, "ticket", 1), exp.read_reset_weights(0, "ticket", 0)
    for name in PAI_ARMS:
        reset = exp.read_reset_weights(0, name, 1)
        biases = [k for k, v in rewound.items() if k != "paths" and v.ndim == 1]
        assert all(np.array_equal(reset[k], rewound[k]) for k in biases), name
        assert not all(np.array_equal(reset[k], theta0[k]) for k in biases), name
    total = sum(int(np.count_nonzero(m)) for m in ticket.values())
    per_layer = {}
    for name in PAI_ARMS:
        mask = exp.read_mask(0, name, 1)
        assert sum(int(np.count_nonzero(m)) for m in mask.values()) == total, name
        per_layer[name] = {n: int(np.count_nonzero(m)) for n, m in mask.items()}
        if name.endswith("_shuffled"):  # shuffling keeps the method's own layer sparsities
            assert per_layer[name] == per_layer[name[: -len("_shuffled")]]
    # Global PaI chooses its own per-layer sparsities.
    assert len({tuple(sorted(c.items())) for c in per_layer.values()}) > 1


JAX_SCRIPT = r"""
import json, sys
import numpy as np
import keras
sys.path.insert(0, {repo!r})
from lth_keras import layers
from lth_keras.pruning import pai
weights = json.loads(open({path!r}).read())
inputs = keras.Input((5,))
x = layers.MaskedDense(4, activation="tanh", name="d0")(inputs)
model = keras.Model(inputs, layers.MaskedDense(3, name="d1")(x))
model.set_weights([np.array(w, "float32") for w in weights["weights"]])
x, y = np.array(weights["x"], "float32"), np.array(weights["y"], "int32")
out = {{"backend": keras.backend.backend(),
       "snip": {{k: v.tolist() for k, v in pai.snip_scores(model, x, y).items()}},
       "grasp": {{k: v.tolist() for k, v in pai.grasp_scores(model, x, y, temperature=1.0).items()}},
       "synflow": {{k: v.tolist() for k, v in pai.synflow_scores(model).items()}}}}
print("RESULT" + json.dumps(out))
"""


def test_scores_on_jax_match_tensorflow(tmp_path):
    pytest.importorskip("jax")
    inputs = keras.Input((5,))
    x = layers.MaskedDense(4, activation="tanh", name="d0")(inputs)
    model = keras.Model(inputs, layers.MaskedDense(3, name="d1")(x))
    xs, ys = _data()
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"weights": [w.tolist() for w in model.get_weights()], "x": xs.tolist(),
                                "y": ys.tolist()}))
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT.format(repo=REPO, path=str(path))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["backend"] == "jax"
    expected = {"snip": pai.snip_scores(model, xs, ys), "grasp": pai.grasp_scores(model, xs, ys, temperature=1.0),
                "synflow": pai.synflow_scores(model)}
    for method, scores in expected.items():
        for name, value in scores.items():
            np.testing.assert_allclose(np.array(out[method][name]), value, rtol=1e-4, atol=1e-7)
