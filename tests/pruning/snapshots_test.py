"""Tests for lth_keras.pruning.snapshots: prune_model, WeightSnapshot and
reset_optimizer_state (used through their re-exports in lth_keras.callbacks).

Reference values are captured by the tests themselves (θ0 read before
training) or computed by hand; a reset optimizer equals a freshly built one,
for every built-in Keras optimizer.
"""

import re

import keras
import numpy as np
import pytest

from lth_keras import callbacks as lth_callbacks
from lth_keras import layers as lth_layers
from tests.helpers import lenet as L


def counts(masks):
    return {n: int(np.count_nonzero(m)) for n, m in masks.items()}


def assert_reset_to(after_kernels, after_masks, reference_kernels):
    for name, kernel in after_kernels.items():
        keep = after_masks[name] != 0
        assert np.array_equal(kernel[keep], reference_kernels[name][keep]), name
        assert np.all(kernel[~keep] == 0), name


def test_prune_model_global_and_layerwise_without_fit():
    L.deterministic(6)
    model = L.lenet(input_dim=20, hidden=(16, 12), classes=4)
    rng = np.random.default_rng(6)
    for layer in lth_layers.masked_layers(model):
        layer.kernel.assign(rng.normal(scale=1.0 if layer.name == "fc1" else 0.1, size=layer.kernel.shape))
    before = L.kernels(model)
    new = lth_callbacks.prune_model(model, 0.5, scope="global", include=["fc1", "fc2"])
    got = L.masks(model)
    assert all(np.array_equal(new[n], got[n]) for n in got)
    assert np.array_equal(got["fc3"], np.ones((12, 4)))
    total = 20 * 16 + 16 * 12
    removed = np.concatenate([np.abs(before[n])[got[n] == 0] for n in ("fc1", "fc2")])
    kept = np.concatenate([np.abs(before[n])[got[n] != 0] for n in ("fc1", "fc2")])
    assert removed.size == round(0.5 * total) and removed.max() <= kept.min()
    for n in got:  # newly pruned weights zeroed
        assert np.all(L.kernels(model)[n][got[n] == 0] == 0)
    # Layerwise, output layer "auto" = fc3 at half; exclude keeps fc1.
    model2 = L.lenet(input_dim=20, hidden=(16, 12), classes=4)
    lth_callbacks.prune_model(model2, 0.5, exclude=["fc1"])
    assert counts(L.masks(model2)) == {"fc1": 320, "fc2": 96, "fc3": 48 - round(0.25 * 48)}
    model3 = L.lenet(input_dim=20, hidden=(16, 12), classes=4)
    lth_callbacks.prune_model(model3, 0.5, output_layer=None)
    assert counts(L.masks(model3)) == {"fc1": 160, "fc2": 96, "fc3": 24}
    with pytest.raises(ValueError, match="scope"):
        lth_callbacks.prune_model(model3, 0.5, scope="local")
    with pytest.raises(ValueError):
        lth_callbacks.prune_model(model3, {"dense": 0.5}, scope="global")


# ============================================================== snapshot / optimizer helpers


def test_weight_snapshot_restore_and_reset_optimizer_state():
    L.deterministic(11)
    model = L.compile_model(L.lenet(input_dim=6, hidden=(5,), classes=3), keras.optimizers.SGD(0.1, momentum=0.9))
    theta0 = L.all_variables(model)
    snap = lth_callbacks.WeightSnapshot.take(model)
    mask_ids = {id(layer.mask) for layer in lth_layers.masked_layers(model)}
    assert snap.paths == [v.path for v in model.variables if id(v) not in mask_ids]  # masks excluded
    # The npz form round-trips.
    snap = lth_callbacks.WeightSnapshot.from_arrays(dict(snap.to_arrays()))
    assert all(np.array_equal(snap.masked_values(model)[n], theta0[f"{n}/kernel"]) for n in ("fc1", "fc2"))
    x, y = L.data(16, 6, 3, seed=11)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    lth_layers.set_masks(model, {"fc1": L.masks(model)["fc1"] * (np.arange(30).reshape(6, 5) % 2)})
    snap.restore(model)
    assert_reset_to(L.kernels(model), L.masks(model), {n: theta0[f"{n}/kernel"] for n in ("fc1", "fc2")})
    assert np.array_equal(L.masks(model)["fc1"], np.arange(30).reshape(6, 5) % 2)
    opt = model.optimizer
    lr = float(opt.learning_rate.numpy())
    assert any(np.any(v.numpy() != 0) for v in opt.variables if "momentum" in v.path)
    lth_callbacks.reset_optimizer_state(opt)
    assert int(opt.iterations.numpy()) == 0
    assert all(np.all(v.numpy() == 0) for v in opt.variables if "momentum" in v.path)
    assert float(opt.learning_rate.numpy()) == pytest.approx(lr)


# ============================================================== optimizer reset = a fresh optimizer

BUILTIN_OPTIMIZERS = {
    "Adadelta": dict(rho=0.9),
    "Adafactor": dict(),
    "Adagrad": dict(initial_accumulator_value=0.3),
    "Adam": dict(),
    "AdamW": dict(weight_decay=0.01),
    "Adamax": dict(),
    "Ftrl": dict(initial_accumulator_value=0.2),
    "Lamb": dict(),
    "Lion": dict(),
    "Muon": dict(),
    "Nadam": dict(),
    "RMSprop": dict(momentum=0.9, centered=True),
    "SGD": dict(momentum=0.9),
    "ScheduleFreeAdamW": dict(),
    "Adam_ema": dict(use_ema=True),
}


def test_every_builtin_optimizer_is_covered():
    names = {n for n in dir(keras.optimizers) if isinstance(getattr(keras.optimizers, n), type)
             and issubclass(getattr(keras.optimizers, n), keras.optimizers.Optimizer)}
    wrappers = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}  # wrap others / abstract
    assert names - wrappers <= {n.split("_")[0] for n in BUILTIN_OPTIMIZERS}, names


@pytest.mark.parametrize("name", sorted(BUILTIN_OPTIMIZERS))
def test_reset_optimizer_state_equals_a_freshly_built_optimizer(name):
    cls = getattr(keras.optimizers, name.split("_")[0])
    kwargs = dict(learning_rate=0.01, **BUILTIN_OPTIMIZERS[name])
    model = L.lenet(input_dim=6, hidden=(5,), classes=3)
    variables = model.trainable_variables
    opt = cls(**kwargs)
    opt.build(variables)
    rng = np.random.default_rng(0)
    for _ in range(3):
        opt.apply([keras.ops.convert_to_tensor(rng.normal(size=v.shape).astype("float32")) for v in variables], variables)
    lth_callbacks.reset_optimizer_state(opt)
    fresh = cls(**kwargs)  # built on the same model, with the reset weights
    fresh.build(variables)
    assert len(opt.variables) == len(fresh.variables)
    checked = 0
    for a, b in zip(opt.variables, fresh.variables):
        assert re.sub(r"_\d+$", "", a.path.split("/")[-1]) == re.sub(r"_\d+$", "", b.path.split("/")[-1])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)
        checked += 1
    assert checked > 2  # iteration, learning rate and at least one slot per optimizer
    assert int(keras.ops.convert_to_numpy(opt.iterations)) == 0


def test_reset_keeps_a_changed_learning_rate_and_the_loss_scale():
    model = L.lenet(input_dim=6, hidden=(5,), classes=3)
    variables = model.trainable_variables
    opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Nadam(0.01), initial_scale=64.0)
    opt.build(variables)
    # A state as after some steps (an eager LossScaleOptimizer.apply fails on JAX).
    for v in opt.inner_optimizer.variables:
        v.assign(keras.ops.ones(v.shape, v.dtype) * 3)
    opt.inner_optimizer._u_product.assign(0.5)
    opt.dynamic_scale.assign(16.0)
    opt.inner_optimizer.learning_rate.assign(0.003)  # e.g. ReduceLROnPlateau
    scale = float(keras.ops.convert_to_numpy(opt.dynamic_scale))
    lth_callbacks.reset_optimizer_state(opt)
    assert float(keras.ops.convert_to_numpy(opt.inner_optimizer.learning_rate)) == pytest.approx(0.003)
    assert float(keras.ops.convert_to_numpy(opt.dynamic_scale)) == scale
    # Wrapped, Nadam's u_product is not listed in `variables`; it is reset all the same.
    assert float(keras.ops.convert_to_numpy(opt.inner_optimizer._u_product)) == 1.0
    assert int(keras.ops.convert_to_numpy(opt.iterations)) == 0
