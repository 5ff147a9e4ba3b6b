"""Tests for lth_keras.callbacks.gradual: GradualMagnitudePruning, on every backend.

Runs under KERAS_BACKEND=tensorflow (the default), jax and torch (.ci/run);
nothing here may import TensorFlow. Checks: the sparsity at every mask
update equals TFMOT's PolynomialDecay formula within one weight per layer;
pruned weights stay exactly 0 at every step after their mask turned off;
steps_per_execution > 1; saving and reloading mid-schedule; global scope,
rates by kind and exclude; MobileNetV2 and a transformer block through
make_prunable.
"""

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras.pruning import sparsity
from lth_keras import layers as lth_layers
from tests.helpers.gradual import compile_, data, numpy, small_cnn, ZeroWatch


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
