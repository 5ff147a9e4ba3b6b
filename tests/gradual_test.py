"""GradualMagnitudePruning and N:M patterns, on every backend.

Runs under KERAS_BACKEND=tensorflow (the default), jax and torch (.ci/run);
nothing here may import TensorFlow. Checks: the sparsity at every mask
update equals TFMOT's PolynomialDecay formula within one weight per layer;
pruned weights stay exactly 0 at every step after their mask turned off;
steps_per_execution > 1; saving and reloading mid-schedule; global scope,
rates by kind and exclude; MobileNetV2 and a transformer block through
make_prunable; N:M masks valid on every masked layer type after pruning and
after training, and the cap 1 - N/M refused.
"""

import os

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras.pruning import gradual
from lth_keras.pruning import sparsity
from lth_keras import layers as lth_layers


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def small_cnn():
    return lth_keras.make_prunable(keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="out"),
    ]))


def data(n=96, shape=(8, 8, 4), classes=4, seed=0):
    x = rand((n,) + shape, seed)
    y = np.random.default_rng(seed + 1).integers(0, classes, n).astype("int32")
    return x, y


def compile_(model, steps_per_execution=1, lr=1e-2):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution)


class ZeroWatch(keras.callbacks.Callback):
    """After every step: each weight whose mask has ever been 0 is exactly 0."""

    def __init__(self):
        super().__init__()
        self.off, self.checks, self.bad = {}, 0, []

    def on_train_batch_end(self, batch, logs=None):
        gradual.sync_state(self.model)
        for mw in lth_layers.masked_weights(self.model):
            mask, weight = numpy(mw.mask), numpy(mw.weight)
            off = self.off.get(mw.name, np.zeros(mask.shape, bool)) | (mask == 0)
            self.off[mw.name] = off
            if np.any(weight[off] != 0):
                self.bad.append((batch, mw.name, int(np.count_nonzero(weight[off]))))
            self.checks += 1


# --------------------------------------------------------------------------
# The schedule (pure)


def test_polynomial_sparsity_is_tfmots_formula():
    for step in (0, 10, 37, 100, 150):
        p = min(1.0, max(0.0, (step - 10) / 90))
        expected = 0.8 + (0.1 - 0.8) * (1 - p) ** 3
        assert sparsity.polynomial_sparsity(step, 0.1, 0.8, 10, 100, 3) == pytest.approx(expected, abs=1e-12)
    assert sparsity.polynomial_sparsity(5, 0.1, 0.8, 10, 100) == pytest.approx(0.1)
    assert [s for s in range(0, 60) if sparsity.is_update_step(s, 10, 40, 15)] == [10, 25, 40]
    assert sparsity.last_update_step(9, 10, 40, 15) is None
    assert sparsity.last_update_step(33, 10, 40, 15) == 25
    assert sparsity.last_update_step(99, 10, 40, 15) == 40
    assert sparsity.last_update_step(99, 10, -1, 15) == 85


@pytest.mark.parametrize("kwargs, match", [
    (dict(final_sparsity=1.0, end_step=10), "final_sparsity"),
    (dict(final_sparsity=0.5), "end_step"),
    (dict(final_sparsity=0.5, end_step=10, begin_step=10), "end_step"),
    (dict(final_sparsity=0.5, end_step=10, frequency=0), "frequency"),
    (dict(final_sparsity=0.5, end_step=10, power=0), "power"),
    (dict(final_sparsity={"fc": 1.5}, end_step=10), "final_sparsity\\['fc'\\]"),
    (dict(final_sparsity=0.5, end_step=10, pattern="4:2"), "pattern"),
    (dict(final_sparsity=0.5, end_step=10, scope="columns"), "scope"),
    (dict(end_step=10), "final_sparsity"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lth_keras.GradualMagnitudePruning(**kwargs)


# --------------------------------------------------------------------------
# The callback


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_sparsity_at_every_update_equals_the_formula_and_pruned_weights_stay_zero(steps_per_execution):
    if steps_per_execution > 1 and keras.backend.backend() == "torch":
        pytest.skip("Keras's PyTorch trainer refuses steps_per_execution > 1")
    keras.utils.set_random_seed(0)
    model = small_cnn()
    compile_(model, steps_per_execution)
    x, y = data()
    gmp = lth_keras.GradualMagnitudePruning(0.75, initial_sparsity=0.1, begin_step=3, end_step=18, frequency=3)
    watch = ZeroWatch()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[gmp, watch], verbose=0)  # 24 steps
    assert [r["update_step"] for r in gmp.updates] == [3, 6, 9, 12, 15, 18]
    sizes = {mw.name: int(np.prod(mw.mask.shape)) for mw in lth_layers.masked_weights(model)}
    for record in gmp.updates:
        for name, reached in record["sparsity_per_layer"].items():
            formula = sparsity.polynomial_sparsity(record["update_step"], 0.1, 0.75, 3, 18, 3)
            assert abs(reached - formula) * sizes[name] <= 1.0, (record, name)
    assert watch.checks and not watch.bad, watch.bad
    assert lth_layers.fraction_remaining(model) == pytest.approx(0.25, abs=1.0 / 64)
    if steps_per_execution == 1:  # seen at the step itself
        assert [r["step"] for r in gmp.updates] == [r["update_step"] for r in gmp.updates]


def test_rows_and_csv_load_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    model = small_cnn()
    compile_(model)
    x, y = data(48)
    gmp = lth_keras.GradualMagnitudePruning(0.5, end_step=4, frequency=2)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[gmp], verbose=0)
    path = str(tmp_path / "sparsity.csv")
    gmp.to_csv(path)
    frame = pd.read_csv(path)
    assert list(frame["update_step"]) == [0, 2, 4]
    assert frame["sparsity"].iloc[-1] == pytest.approx(0.5, abs=1e-2)
    assert {"sparsity/conv", "sparsity/fc", "target/out"} <= set(frame.columns)


def test_global_scope_reaches_the_target_over_all_layers_together():
    model = small_cnn()
    compile_(model)
    x, y = data(48)
    gmp = lth_keras.GradualMagnitudePruning(0.6, end_step=4, frequency=2, scope="global")
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[gmp], verbose=0)
    counts = lth_layers.count_weights(model)
    total = sum(t for _, t in counts.values())
    assert sum(r for r, _ in counts.values()) == total - round(0.6 * total)
    per_layer = {n: r / t for n, (r, t) in counts.items()}
    assert len({round(v, 3) for v in per_layer.values()}) > 1  # ranked together, not per layer


def test_rates_by_kind_and_exclude_as_in_imp():
    model = small_cnn()
    compile_(model)
    x, y = data(48)
    gmp = lth_keras.GradualMagnitudePruning({"dense": 0.5, "conv": 0.25}, end_step=4, frequency=2, exclude=["out"])
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[gmp], verbose=0)
    counts = lth_layers.count_weights(model)
    assert counts["conv"][0] == counts["conv"][1] - round(0.25 * counts["conv"][1])
    assert counts["fc"][0] == counts["fc"][1] // 2
    assert counts["out"][0] == counts["out"][1]
    with pytest.raises(ValueError, match="nope"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[lth_keras.GradualMagnitudePruning(0.5, end_step=4, exclude=["nope"])])


def test_schedule_survives_saving_and_reloading_mid_schedule(tmp_path):
    x, y = data(64)
    kwargs = dict(final_sparsity=0.8, begin_step=0, end_step=12, frequency=2)

    def fresh():
        keras.utils.set_random_seed(1)
        model = small_cnn()
        compile_(model)
        return model

    straight = fresh()
    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                 callbacks=[lth_keras.GradualMagnitudePruning(**kwargs)])  # 16 steps

    first = fresh()
    first.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[lth_keras.GradualMagnitudePruning(**kwargs)])  # 8 steps, mid-ramp
    path = str(tmp_path / "mid.keras")
    first.save(path)
    reloaded = lth_keras.load_model(path)
    assert int(numpy(reloaded.optimizer.iterations)) == 8
    before = lth_layers.get_masks(reloaded)
    assert before.keys() == lth_layers.get_masks(first).keys()
    for name, mask in lth_layers.get_masks(first).items():
        np.testing.assert_array_equal(before[name], mask)
    assert 0 < lth_layers.fraction_remaining(reloaded) < 1
    second = lth_keras.GradualMagnitudePruning(**kwargs)
    reloaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[second])
    # The resumed run re-applies the update at step 8 (a no-op), then 10 and 12.
    assert [r["update_step"] for r in second.updates] == [8, 10, 12]
    assert second.updates[0]["remaining"] == sum(int(np.count_nonzero(m)) for m in before.values())
    for name, mask in lth_layers.get_masks(straight).items():
        np.testing.assert_array_equal(lth_layers.get_masks(reloaded)[name], mask)


def test_works_through_make_prunable_on_mobilenet_v2():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                          classifier_activation=None)
    model = lth_keras.make_prunable(base)
    compile_(model, lr=1e-3)
    x, y = data(16, (32, 32, 3), 10)
    gmp = lth_keras.GradualMagnitudePruning(0.5, end_step=4, frequency=2)
    watch = ZeroWatch()
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[gmp, watch], verbose=0)
    assert [r["update_step"] for r in gmp.updates] == [0, 2, 4]
    counts = lth_layers.count_weights(model)
    assert len(counts) > 50
    for name, (remaining, total) in counts.items():
        assert remaining == total - round(0.5 * total), name
    assert not watch.bad, watch.bad


def transformer_block():
    tokens = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(32, 16)(tokens)
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, attention]))
    ff = keras.layers.Dense(16)(keras.layers.Dense(32, activation="relu")(x))
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, ff]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(4)(x), name="transformer_block")


def test_works_through_make_prunable_on_a_transformer_block():
    keras.utils.set_random_seed(0)
    model = lth_keras.make_prunable(transformer_block())
    compile_(model, lr=1e-3)
    x = np.random.default_rng(0).integers(0, 32, (32, 8)).astype("int32")
    y = np.random.default_rng(1).integers(0, 4, 32).astype("int32")
    gmp = lth_keras.GradualMagnitudePruning({"dense": 0.6, "embedding": 0.4}, end_step=6, frequency=2)
    watch = ZeroWatch()
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[gmp, watch], verbose=0)
    counts = lth_layers.count_weights(model)
    kinds = {mw.name: mw.kind for mw in lth_layers.masked_weights(model)}
    assert {"embedding", "dense"} == set(kinds.values()) and sum(n.endswith("/query") for n in kinds) == 1
    for name, (remaining, total) in counts.items():
        assert remaining == total - round({"dense": 0.6, "embedding": 0.4}[kinds[name]] * total), name
    assert not watch.bad, watch.bad


# --------------------------------------------------------------------------
# N:M patterns


def _one_layer_models():
    """One model per masked layer type, every input dimension a multiple of 4:
    (model, input batch, expected grouping axis of each masked weight)."""
    seq = lambda shape, layer: keras.Sequential([keras.Input(shape), layer])  # noqa: E731
    q = keras.Input((3, 8))
    mha_out = lth_keras.MaskedMultiHeadAttention(2, key_dim=4, name="mha")(q, q)
    return {
        "dense": (seq((8,), lth_keras.MaskedDense(4)), rand((4, 8)), [0]),
        "conv1d": (seq((6, 8), lth_keras.MaskedConv1D(4, 3)), rand((2, 6, 8)), [1]),
        "conv2d": (seq((6, 6, 8), lth_keras.MaskedConv2D(4, 3)), rand((2, 6, 6, 8)), [2]),
        "conv3d": (seq((4, 4, 4, 8), lth_keras.MaskedConv3D(4, 2)), rand((2, 4, 4, 4, 8)), [3]),
        "conv2d_transpose": (seq((4, 4, 8), lth_keras.MaskedConv2DTranspose(4, 3)), rand((2, 4, 4, 8)), [3]),
        "depthwise": (seq((6, 6, 8), lth_keras.MaskedDepthwiseConv2D(3)), rand((2, 6, 6, 8)), [2]),
        "separable": (seq((6, 6, 8), lth_keras.MaskedSeparableConv2D(4, 3, depth_multiplier=2)),
                      rand((2, 6, 6, 8)), [2, 2]),
        "einsum": (seq((3, 8), lth_keras.MaskedEinsumDense("abc,cd->abd", output_shape=(None, 4))),
                   rand((2, 3, 8)), [0]),
        "embedding": (seq((5,), lth_keras.MaskedEmbedding(10, 8)),
                      np.random.default_rng(0).integers(0, 10, (2, 5)).astype("int32"), [1]),
        "mha": (keras.Model(q, mha_out), rand((2, 3, 8)), [0, 0, 0, 1]),
    }


def _groups_ok(mask, axis, n=2, m=4):
    """Independent check: every M consecutive entries along `axis` keep <= N."""
    moved = np.moveaxis(np.asarray(mask) != 0, axis, -1)
    groups = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // m, m))
    return bool(np.all(groups.sum(-1) <= n))


@pytest.mark.parametrize("kind", list(_one_layer_models()))
def test_two_four_masks_are_valid_on_every_layer_type_after_pruning_and_after_training(kind):
    keras.utils.set_random_seed(0)
    model, x, axes = _one_layer_models()[kind]
    model(x)
    weights = lth_layers.masked_weights(model)
    assert [gradual.pattern_axis(mw) for mw in weights] == axes
    lth_keras.callbacks.prune_model(model, 0.5, pattern="2:4", output_layer=None)
    for mw, axis in zip(weights, axes):
        mask = numpy(mw.mask)
        assert _groups_ok(mask, axis), mw.name
        assert np.count_nonzero(mask) == mask.size // 2, mw.name
    assert gradual.check_pattern(model, "2:4") == {}
    # Training: masks stay N:M and pruned weights stay 0.
    masks = lth_layers.get_masks(model)
    out = model(x)
    model.compile(keras.optimizers.Adam(1e-2), loss="mse")
    target = np.asarray(numpy(out)) + 1.0
    watch = ZeroWatch()
    gmp = lth_keras.GradualMagnitudePruning(pattern="2:4", end_step=2, frequency=1)
    model.fit(x, target, batch_size=2, epochs=3, callbacks=[gmp, watch], verbose=0)
    assert gradual.check_pattern(model, "2:4") == {}
    for name, mask in lth_layers.get_masks(model).items():
        np.testing.assert_array_equal(mask, masks[name])
    assert not watch.bad, watch.bad


def test_pattern_keeps_the_two_largest_of_each_group():
    w = np.array([[4.0, 0.1], [-5.0, -0.2], [6.0, 0.3], [7.0, 9.0]], "float32")
    mask = sparsity.prune_to_counts({"fc": w}, {"fc": np.ones_like(w)}, {"fc": 4}, pattern="2:4", axes={"fc": 0})
    np.testing.assert_array_equal(mask["fc"], [[0, 0], [0, 0], [1, 1], [1, 1]])
    # Unstructured pruning of the same count would break the pattern.
    plain = sparsity.prune_to_counts({"fc": w}, {"fc": np.ones_like(w)}, {"fc": 4})
    assert sparsity.pattern_violations(plain["fc"], "2:4", 0) == 1


def _mlp_and_data():
    """A compiled 16-32-4 prunable MLP and 64 examples, seeded."""
    keras.utils.set_random_seed(0)
    model = lth_keras.make_prunable(keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)]))
    compile_(model)
    return model, rand((64, 16)), np.random.default_rng(0).integers(0, 4, 64).astype("int32")


def test_gradual_pattern_ramps_then_is_n_m_at_the_cap():
    model, x, y = _mlp_and_data()
    gmp = lth_keras.GradualMagnitudePruning(pattern="2:4", end_step=6, frequency=2)
    watch = ZeroWatch()
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[gmp, watch], verbose=0)
    sizes = {mw.name: int(np.prod(mw.mask.shape)) for mw in lth_layers.masked_weights(model)}
    for record in gmp.updates:
        for name, reached in record["sparsity_per_layer"].items():
            assert abs(reached - record["target_per_layer"][name]) * sizes[name] <= 1.0
    assert gmp.updates[-1]["sparsity"] == 0.5
    assert gradual.check_pattern(model, "2:4") == {}
    assert not watch.bad


def test_sparsity_beyond_the_cap_and_ragged_groups_are_refused():
    model = small_cnn()  # conv has 4 input channels, fc 288 inputs, out 16
    compile_(model)
    x, y = data(16)
    with pytest.raises(ValueError, match="cap 0.5"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[lth_keras.GradualMagnitudePruning(0.6, end_step=2, pattern="2:4")])
    with pytest.raises(ValueError, match=r"not a multiple of M=8.*exclude=\['conv'\]"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[lth_keras.GradualMagnitudePruning(0.5, end_step=2, pattern="4:8")])
    with pytest.raises(ValueError, match="cap"):
        lth_keras.callbacks.prune_model(model, 0.2, pattern="1:2", output_layer=None)
        lth_keras.callbacks.prune_model(model, 0.5, pattern="1:2", output_layer=None)


def test_imp_rounds_keep_the_pattern_and_refuse_rounds_past_the_cap():
    model, x, y = _mlp_and_data()
    imp = lth_keras.IterativeMagnitudePruning(0.3, round_steps=8, output_layer=None, pattern="2:4", verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[imp], verbose=0)
    masks = lth_layers.get_masks(model)
    # 30% pruned, and no group of 4 along the input axis is below 2.
    for name, mask in masks.items():
        groups = np.moveaxis(mask != 0, 0, -1).reshape(-1, 4).sum(-1)
        assert groups.min() >= 2 and np.count_nonzero(mask) == mask.size - round(0.3 * mask.size), name
    with pytest.raises(ValueError, match="cap 0.5"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
            lth_keras.IterativeMagnitudePruning(0.3, round_steps=8, output_layer=None, pattern="2:4", verbose=0)])
    keras.utils.set_random_seed(0)
    model = lth_keras.make_prunable(keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)]))
    compile_(model)
    imp = lth_keras.IterativeMagnitudePruning(0.5, round_steps=8, output_layer=None, pattern="2:4", verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[imp], verbose=0)
    assert gradual.check_pattern(model, "2:4") == {} and lth_layers.fraction_remaining(model) == 0.5
