"""Tests for lth_keras.pruning.pai: pruning-at-initialization scores against
hand computations on tiny models, exact counts, the examples SNIP and GraSP
score on, and the scores on JAX against TensorFlow.

Backend-agnostic: CI runs this file on TensorFlow, JAX and PyTorch (see
.ci/run). The scoring examples come from the trial's data (`TrialState.data`,
the runner's dataset); `pai` once reloaded the dataset from disk when the
trial had none. The PaI arms in the runner: tests/arms/builtin_test.py.
"""

import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

from lth_keras import layers
from lth_keras.pruning import pai
from tests.helpers import REPO


def _mlp(sizes, activation="relu", use_bias=True, seed=0):
    init = keras.initializers.GlorotNormal(seed=seed)
    inputs = keras.Input((sizes[0],))
    x = inputs
    for i, units in enumerate(sizes[1:]):
        last = i == len(sizes) - 2
        x = layers.MaskedDense(units, activation=None if last else activation, use_bias=use_bias,
                               kernel_initializer=init, bias_initializer=keras.initializers.RandomNormal(seed=seed + i),
                               name=f"d{i}")(x)
    return keras.Model(inputs, x)


def _data(n=8, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), (np.arange(n) % classes).astype("int32")


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_magnitude_scores_are_abs_theta():
    model = _mlp([5, 4, 3])
    scores = pai.magnitude_scores(model)
    for mw in layers.masked_weights(model):
        np.testing.assert_array_equal(scores[mw.name], np.abs(mw.weight.numpy()))


def test_snip_matches_hand_computation():
    model = _mlp([5, 3])  # logits = x W + b
    x, y = _data()
    w, b = (v.numpy() for v in model.get_layer("d0").weights[:2])
    # Two batches of 4: the sum of the batch-mean gradients, as SNIP accumulates.
    grad = np.zeros_like(w, np.float64)
    for s in (slice(0, 4), slice(4, 8)):
        p = _softmax(x[s].astype(np.float64) @ w + b)
        p[np.arange(4), y[s]] -= 1.0
        grad += x[s].T.astype(np.float64) @ p / 4
    expected = np.abs(grad * w)
    expected /= expected.sum()
    scores = pai.snip_scores(model, x, y, batch_size=4)
    np.testing.assert_allclose(scores["d0"], expected, rtol=2e-5, atol=1e-8)


def test_grasp_hessian_gradient_product_matches_finite_differences():
    model = _mlp([5, 4, 3], activation="tanh")
    x, y = _data()
    g, hg = pai.hessian_gradient_product(model, x, y, temperature=1.0)
    # g is over the prunable weights only (GraSP's), zero for the biases.
    assert not g[1].any() and not g[3].any() and g[0].any() and g[2].any()
    f = pai._Functional(model)
    theta = [np.asarray(t, np.float32) for t in f.trainable]
    norm = np.sqrt(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in g))
    v = [a / norm for a in g]
    eps = 1e-2

    def grad_at(sign):
        params = [keras.ops.convert_to_tensor(t + sign * eps * d) for t, d in zip(theta, v)]
        return [np.asarray(keras.ops.convert_to_numpy(a), np.float64) for a in
                pai._gradients(lambda p: pai._cross_entropy(f(p, x), y), params)]

    fd = [(a - b) / (2 * eps) for a, b in zip(grad_at(1), grad_at(-1))]
    for hv, approx in zip(hg, fd):
        np.testing.assert_allclose(hv / norm, approx, rtol=5e-3, atol=2e-5)
    assert max(float(np.abs(h).max()) for h in hg) > 1e-3  # not trivially zero


def test_grasp_scores_are_theta_times_hg_normalised():
    model = _mlp([5, 4, 3], activation="tanh")
    x, y = _data()
    _, hg = pai.hessian_gradient_product(model, x, y)  # temperature 200
    raw = {mw.name: mw.weight.numpy() * hg[i] for mw, i in
           zip(layers.masked_weights(model), (0, 2))}
    total = abs(sum(float(r.sum()) for r in raw.values()))
    scores = pai.grasp_scores(model, x, y)
    for name, r in raw.items():
        np.testing.assert_allclose(scores[name], r / total, rtol=1e-4, atol=1e-9)


def _kernel(model, name):
    return model.get_layer(name).kernel


def test_synflow_invariant_to_positive_rescaling_of_a_layer():
    # Bias-free ReLU net: scaling one layer by a scales R and every score by a,
    # so the (iterative) masks are the same, layerwise and global.
    model = _mlp([6, 5, 4, 3], use_bias=False, seed=1)
    base = pai.synflow_scores(model)
    masks = pai.synflow_masks(model, {"d0": 10, "d1": 7, "d2": 5}, iterations=10)
    masks_g = pai.synflow_masks(model, 20, include=["d0", "d1", "d2"], iterations=10)
    alpha = 3.7
    _kernel(model, "d1").assign(_kernel(model, "d1").numpy() * alpha)
    scaled = pai.synflow_scores(model)
    for name in base:
        np.testing.assert_allclose(scaled[name], alpha * base[name], rtol=1e-5)
    for before, after in ((masks, pai.synflow_masks(model, {"d0": 10, "d1": 7, "d2": 5}, iterations=10)),
                          (masks_g, pai.synflow_masks(model, 20, include=["d0", "d1", "d2"], iterations=10))):
        for name in before:
            np.testing.assert_array_equal(before[name], after[name])


def test_synflow_invariant_to_function_preserving_rescaling_with_biases():
    model = _mlp([6, 5, 4, 3], seed=2)
    base = pai.synflow_scores(model)
    alpha = 0.4
    layer = model.get_layer("d0")
    layer.kernel.assign(layer.kernel.numpy() * alpha)
    layer.bias.assign(layer.bias.numpy() * alpha)
    _kernel(model, "d1").assign(_kernel(model, "d1").numpy() / alpha)
    for name, score in pai.synflow_scores(model).items():
        np.testing.assert_allclose(score, base[name], rtol=1e-5)


def test_synflow_is_iterative():
    # One shot and 100 iterations disagree on a deep-enough net at high sparsity.
    model = _mlp([20, 20, 20, 20, 3], seed=3)
    counts = {"d0": 8, "d1": 8, "d2": 8, "d3": 6}
    one_shot = pai.synflow_masks(model, 30, include=list(counts), iterations=1)
    iterative = pai.synflow_masks(model, 30, include=list(counts), iterations=100)
    assert sum(int(m.sum()) for m in iterative.values()) == 30
    assert any(not np.array_equal(one_shot[n], iterative[n]) for n in counts)


def test_keep_top_exact_counts_and_ties():
    scores = {"a": np.array([[1.0, 1.0], [1.0, 0.5]]), "b": np.array([2.0, np.nan, 3.0])}
    masks = pai.keep_top(scores, {"a": 2, "b": 2})
    np.testing.assert_array_equal(masks["a"], [[1, 1], [0, 0]])  # ties: lower index first
    np.testing.assert_array_equal(masks["b"], [1, 0, 1])  # NaN ranks last
    alive = {"a": np.array([[0, 1], [1, 1]]), "b": np.ones(3)}
    assert pai.keep_top(scores, {"a": 3, "b": 0}, alive)["a"].tolist() == [[0, 1], [1, 1]]
    with pytest.raises(ValueError, match="only 3 are alive"):
        pai.keep_top(scores, {"a": 4, "b": 0}, alive)
    g = pai.keep_top_global(scores, 3, include=["a"])
    assert g["a"].sum() == 3 and g["b"].tolist() == [1, 1, 1]
    shuffled = pai.shuffle_within_layers(masks, seed=1)
    assert {n: int(m.sum()) for n, m in shuffled.items()} == {"a": 2, "b": 2}


def test_target_counts():
    ticket = {"a": np.array([1, 0, 1]), "b": np.array([1, 1, 0, 0])}
    assert pai.target_counts(ticket, "layerwise", ["a", "b"]) == {"a": 2, "b": 2}
    assert pai.target_counts(ticket, "global", ["a"]) == 2


# -- the examples SNIP and GraSP score on ---------------------------------------------------


def _trial_data(n=50, classes=3):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return types.SimpleNamespace(x_train=x, y_train=np.arange(n) % classes, num_classes=classes)


def test_scoring_examples_are_drawn_from_the_trials_data():
    data = _trial_data()
    trial = types.SimpleNamespace(data=data, seed=3, config=None)
    x, y = pai._scoring_examples(trial)
    assert len(x) == pai.EXAMPLES_PER_CLASS * data.num_classes
    rows = {tuple(row) for row in data.x_train}
    assert all(tuple(row) in rows for row in x)
    np.testing.assert_array_equal(y, (x[:, 0] // 2).astype(int) % data.num_classes)
    again, _ = pai._scoring_examples(trial)
    np.testing.assert_array_equal(x, again)


def test_a_trial_without_data_is_refused_not_loaded_from_disk():
    config = types.SimpleNamespace(dataset="mnist", data_dir="/nonexistent", seed=0, validation_size=10,
                                   tfds_data_dir=None, synthetic_sizes=None)
    with pytest.raises(ValueError, match="trial has no `data`"):
        pai._scoring_examples(types.SimpleNamespace(data=None, seed=0, config=config))


# -- on JAX, against TensorFlow --------------------------------------------------------------


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


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow is the reference here")
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
