"""Tests for lth_keras.layers.base: the MaskedLayer protocol.

Layers written from scratch (and the MaskedDepthwiseConv2D of the MaskedLayer
docstring) are prunable through it; a training step leaves pruned weights at
zero; `.keras` files of masked models, a user subclass with its own
constructor argument among them, load in a fresh process with their masks.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers as lth_layers
from tests.helpers import lenet as L
from tests.helpers import REPO
from tests.helpers.user_layers import TwoMaskCell, UserMaskedLinear


def rand(shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def random_mask(shape, seed, keep=0.5):
    return (np.random.default_rng(seed).random(shape) < keep).astype("float32")


@pytest.mark.parametrize("make", ["dense", "conv"])
def test_training_step_keeps_pruned_weights_at_zero(make):
    keras.utils.set_random_seed(0)
    if make == "dense":
        model = keras.Sequential([keras.Input((6,)), lth_keras.MaskedDense(8, activation="relu", name="a"), lth_keras.MaskedDense(3, name="b")])
        x = rand((16, 6))
    else:
        model = keras.Sequential([keras.Input((6, 6, 2)), lth_keras.MaskedConv2D(4, 3, activation="relu", name="a"), keras.layers.Flatten(), lth_keras.MaskedDense(3, name="b")])
        x = rand((16, 6, 6, 2))
    y = np.arange(16) % 3
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    masks = {name: random_mask(m.shape, i) for i, (name, m) in enumerate(lth_layers.get_masks(model).items())}
    lth_layers.set_masks(model, masks)
    before = lth_layers.get_masked_kernels(model)
    for name in masks:
        assert np.all(before[name][masks[name] == 0] == 0)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = lth_layers.get_masked_kernels(model)
    for name, mask in masks.items():
        assert np.array_equal(lth_layers.get_masks(model)[name], mask)  # masks are not trained
        assert np.all(after[name][mask == 0] == 0)
        assert np.all(after[name][mask == 1] != before[name][mask == 1])  # survivors trained


# ============================================================== MaskedLayer protocol


def test_user_masked_layer_protocol():
    layer = UserMaskedLinear(3, name="user")
    x = rand((4, 5))
    y = layer(x)
    assert tuple(y.shape) == (4, 3)
    assert layer.kernel_mask.shape == (5, 3) and not layer.kernel_mask.trainable
    (mw,) = layer.masked_weights()
    assert (mw.name, mw.kind) == ("user", "dense")
    assert mw.weight is layer.kernel and mw.mask is layer.kernel_mask
    mask = random_mask((5, 3), 1)
    layer.kernel_mask.assign(mask)
    np.testing.assert_allclose(layer(x).numpy(), x @ (layer.kernel.numpy() * mask) + layer.bias.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="unmasked_class"):
        layer.unmasked_layer()


def test_layer_with_two_masks_names_them_by_weight():
    model = keras.Sequential([keras.Input((4,)), TwoMaskCell(name="cell"), lth_keras.MaskedDense(2, name="out")])
    names = [(mw.name, mw.kind) for mw in lth_layers.masked_weights(model)]
    assert names == [("cell/kernel", "recurrent"), ("cell/recurrent", "recurrent"), ("out", "dense")]
    cell = model.get_layer("cell")
    assert cell.rec_mask.shape == (3, 3) and cell.kernel_mask.shape == (4, 3)
    # A layer name in include/exclude matches all its masked weights.
    assert [mw.name for mw in lth_layers.masked_weights(model, exclude=["cell"])] == ["out"]
    assert [mw.name for mw in lth_layers.masked_weights(model, include=["cell/rec*"])] == ["cell/recurrent"]


def test_docstring_masked_depthwise_conv2d():
    x = rand((2, 6, 6, 3))
    layer = L.MaskedDepthwiseConv2D(3, depth_multiplier=2, padding="same")
    plain = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    plain.build(x.shape)
    layer.build(x.shape)
    layer.kernel.assign(plain.kernel.numpy())
    plain.bias.assign(rand(plain.bias.shape, 1))
    layer.bias.assign(plain.bias.numpy())
    assert np.array_equal(layer(x).numpy(), plain(x).numpy())
    mask = random_mask(layer.kernel.shape, 2)
    layer.kernel_mask.assign(mask)
    plain.kernel.assign(layer.kernel.numpy() * mask)
    assert np.array_equal(layer(x).numpy(), plain(x).numpy())
    (mw,) = layer.masked_weights()
    assert mw.kind == "conv" and mw.mask is layer.kernel_mask
    folded = layer.unmasked_layer()
    assert type(folded) is keras.layers.DepthwiseConv2D


# ============================================================== .keras round trip in a fresh process

USER_MODULE = '''
import keras
import lth_keras


@keras.saving.register_keras_serializable(package="lth_user")
class ScaledMaskedDense(lth_keras.MaskedDense):
    """A user subclass of MaskedDense with its own constructor argument."""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.scale = float(scale)

    def call(self, inputs, training=None):
        return super().call(inputs, training=training) * self.scale

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config


@keras.saving.register_keras_serializable(package="lth_user")
class MaskedConvNet(keras.Model):
    def __init__(self, classes=5, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = lth_keras.MaskedConv2D(4, 3, activation="relu", name="conv")
        self.flatten = keras.layers.Flatten()
        self.head = ScaledMaskedDense(classes, scale=3.0, name="head")

    def call(self, inputs):
        return self.head(self.flatten(self.conv(inputs)))

    def get_config(self):
        return {"classes": self.classes, "name": self.name}
'''

CHILD = '''
import json, sys
import numpy as np
import keras
import lth_keras
from lth_keras import layers as L
import lth_user_layers

work = sys.argv[1]
report = {}
for variant in json.load(open(work + "/variants.json")):
    exp = np.load(f"{work}/{variant}.npz")
    model = keras.saving.load_model(f"{work}/{variant}.keras")
    masks, kernels = L.get_masks(model), L.get_masked_kernels(model)
    names = sorted(k[len("mask::"):] for k in exp.files if k.startswith("mask::"))
    n_vars = int(exp["n_vars"])
    out = model(exp["x"]).numpy()
    report[variant] = {
        "names": sorted(masks),
        "masks": all(np.array_equal(masks[n], exp["mask::" + n]) for n in names),
        "kernels": all(np.array_equal(kernels[n], exp["kernel::" + n]) for n in names),
        "variables": len(model.weights) == n_vars and all(
            np.array_equal(v.numpy(), exp[f"var::{i}"]) for i, v in enumerate(model.weights)),
        "outputs": bool(np.array_equal(out, exp["y"])),
        "out_dtype": str(out.dtype),
        "scales": [l.scale for l in L.masked_layers(model) if isinstance(l, lth_user_layers.ScaledMaskedDense)],
        "classes": sorted({type(l).__name__ for l in L.masked_layers(model)}),
        "policies": sorted({l.dtype_policy.name for l in L.masked_layers(model)}),
        "model_class": type(model).__name__,
    }
json.dump(report, open(work + "/report.json", "w"))
'''


def build_variant(variant, user):
    conv_input = keras.Input((8, 8, 3))
    if variant == "sequential_dense":
        return keras.Sequential(
            [keras.Input((12,)), lth_keras.MaskedDense(8, activation="relu", name="fc1"), user.ScaledMaskedDense(5, scale=3.0, name="head")]
        )
    if variant in ("sequential_conv", "mixed_float16"):
        return keras.Sequential(
            [
                conv_input,
                lth_keras.MaskedConv2D(4, 3, activation="relu", name="conv1"),
                lth_keras.MaskedConv2D(6, 3, padding="same", name="conv2"),
                keras.layers.Flatten(),
                lth_keras.MaskedDense(7, activation="relu", name="fc"),
                user.ScaledMaskedDense(5, scale=3.0, name="head"),
            ]
        )
    if variant == "functional":
        x = lth_keras.MaskedConv2D(4, 3, activation="relu", name="conv")(conv_input)
        x = keras.layers.Flatten()(x)
        return keras.Model(conv_input, user.ScaledMaskedDense(5, scale=3.0, name="head")(x))
    if variant == "subclassed":
        return user.MaskedConvNet(classes=5, name="convnet")
    raise AssertionError(variant)


VARIANTS = ("sequential_dense", "sequential_conv", "functional", "subclassed", "mixed_float16")


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """Saves every variant with sparse masks, loads all in ONE fresh process."""
    work = tmp_path_factory.mktemp("roundtrip")
    (work / "lth_user_layers.py").write_text(USER_MODULE)
    (work / "child.py").write_text(CHILD)
    sys.path.insert(0, str(work))
    try:
        import lth_user_layers as user

        expected_config = {}
        for i, variant in enumerate(VARIANTS):
            keras.utils.set_random_seed(i)
            if variant == "mixed_float16":
                keras.mixed_precision.set_dtype_policy("mixed_float16")
            try:
                model = build_variant(variant, user)
                x = rand((3, 12) if variant == "sequential_dense" else (3, 8, 8, 3), 10 + i)
                model(x)
                masks = {mw.name: random_mask(mw.mask.shape, 20 + j) for j, mw in enumerate(lth_layers.masked_weights(model))}
                lth_layers.set_masks(model, masks)
                for v in model.weights:  # non-zero biases, so a lost bias shows
                    if v.path.endswith("bias"):
                        v.assign(rand(v.shape, 30))
                arrays = {"x": x, "y": model(x).numpy(), "n_vars": np.array(len(model.weights))}
                for mw in lth_layers.masked_weights(model):
                    arrays["mask::" + mw.name] = mw.mask.numpy()
                    arrays["kernel::" + mw.name] = mw.weight.numpy()
                for j, v in enumerate(model.weights):
                    arrays[f"var::{j}"] = v.numpy()
                np.savez(work / f"{variant}.npz", **arrays)
                model.save(work / f"{variant}.keras")
                expected_config[variant] = {
                    "names": sorted(masks),
                    "classes": sorted({type(layer).__name__ for layer in lth_layers.masked_layers(model)}),
                    "model_class": type(model).__name__,
                    "pruned": {n: int((m == 0).sum()) for n, m in masks.items()},
                }
            finally:
                keras.mixed_precision.set_dtype_policy("float32")
    finally:
        sys.path.remove(str(work))
    (work / "variants.json").write_text(json.dumps(list(VARIANTS)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(work), REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    proc = subprocess.run(
        [sys.executable, str(work / "child.py"), str(work)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "report.json").read_text()), expected_config


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_keras_round_trip_in_fresh_process(round_trip, variant):
    report, expected = round_trip
    got, exp = report[variant], expected[variant]
    assert all(n > 0 for n in exp["pruned"].values())  # masks really sparse
    assert got["names"] == exp["names"]
    assert got["classes"] == exp["classes"]
    assert got["model_class"] == exp["model_class"]
    assert got["masks"], "masks changed"
    assert got["kernels"], "kernels changed"
    assert got["variables"], "variables changed"
    assert got["outputs"], "outputs changed"
    assert got["scales"] == [3.0], "the subclass's own constructor argument was lost"
    if variant == "mixed_float16":
        assert got["policies"] == ["mixed_float16"] and got["out_dtype"] == "float16"
    else:
        assert got["policies"] == ["float32"] and got["out_dtype"] == "float32"


def test_global_policy_restored_after_round_trip_fixture(round_trip):
    assert keras.config.dtype_policy().name == "float32"
