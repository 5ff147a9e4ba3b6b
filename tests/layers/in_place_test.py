"""Masks attached in place (`lth_keras.add_masks`) on models nobody here
wrote: operator graphs, recurrent layers, wrappers, shared layers, mixed
precision, KerasHub. Backend-agnostic: CI runs it on TensorFlow, JAX and
PyTorch."""

import os

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras.layers import in_place
from lth_keras import layers as lth_layers
from lth_keras.callbacks import prune_model


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def operator_graph():
    """A residual block written with `+`, a keras.ops reduction and a slice:
    the graph make_prunable could not copy before in-place masks."""
    inputs = keras.Input((6, 8))
    h = keras.layers.Dense(8, activation="relu", name="up")(inputs)
    h = h + keras.ops.tanh(keras.layers.Dense(8, name="mix")(h))
    pooled = keras.ops.mean(h, axis=1) * 0.5
    outputs = keras.layers.Dense(3, name="out")(pooled[:, :6])
    return keras.Model(inputs, outputs)


def pruned_weights_are_zero(model):
    for mw in lth_layers.masked_weights(model):
        weight, mask = numpy(mw.weight), numpy(mw.mask)
        assert np.all(weight[mask == 0] == 0.0), mw.name


def random_masks(model, keep=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return {n: (rng.random(m.shape) < keep).astype("float32") for n, m in lth_layers.get_masks(model).items()}


def test_operator_graph_is_masked_in_place_and_computes_as_before():
    model = operator_graph()
    x = rand((4, 6, 8))
    before = numpy(model(x))
    layers_before = list(model.layers)
    assert in_place.add_masks(model) is model
    assert list(model.layers) == layers_before
    assert [mw.name for mw in lth_layers.masked_weights(model)] == ["up", "mix", "out"]
    np.testing.assert_array_equal(numpy(model(x)), before)
    assert lth_layers.fraction_remaining(model) == 1.0


def test_make_prunable_copies_an_operator_graph():
    # Before in-place masks: AttributeError: 'Add' object has no attribute '_flatten_layers'.
    model = operator_graph()
    prunable = lth_keras.make_prunable(model)
    x = rand((4, 6, 8))
    np.testing.assert_array_equal(numpy(prunable(x)), numpy(model(x)))
    assert not lth_layers.masked_weights(model)
    lth_layers.set_masks(prunable, random_masks(prunable))
    folded = lth_keras.fold_masks(prunable)
    assert not lth_layers.masked_weights(folded)
    np.testing.assert_allclose(numpy(folded(x)), numpy(prunable(x)), rtol=1e-5, atol=1e-6)


def masked_output_equals_folded(model, x):
    """Prunes `model` at random, writes nonzero values back into the pruned
    entries (so only the masks can remove them), and checks the output
    against the same model with ``weight * mask`` folded in."""
    lth_layers.set_masks(model, random_masks(model, keep=0.3))
    for mw in lth_layers.masked_weights(model):
        mw.weight.assign(rand(mw.weight.shape, seed=3))
    masked_out = numpy(model(x))
    in_place.remove_masks(model)
    np.testing.assert_allclose(masked_out, numpy(model(x)), rtol=1e-5, atol=1e-6)
    return masked_out


def test_a_zero_mask_removes_the_weight_from_the_output():
    model = operator_graph()
    in_place.add_masks(model)
    masked_output_equals_folded(model, rand((4, 6, 8)))


def test_imp_callback_prunes_a_plain_model_inside_fit():
    model = operator_graph()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x, y = rand((32, 6, 8)), rand((32, 3), seed=1)
    imp = lth_keras.IterativeMagnitudePruning(rates=0.5, round_steps=4, output_layer=None, verbose=0)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[imp], verbose=0)
    pms = [r["pm"] for r in imp.rounds]
    np.testing.assert_allclose(pms, [100.0, 50.0, 25.0], atol=0.5)  # rounding per layer
    # The last round trained with masks set by the callback mid-fit: pruned
    # weights stayed exactly zero (JAX compiles the step once; masks are state).
    pruned_weights_are_zero(model)
    folded = lth_keras.fold_masks(model)
    np.testing.assert_allclose(numpy(folded(x)), numpy(model(x)), rtol=1e-5, atol=1e-5)


def test_gradual_callback_prunes_a_plain_model_inside_fit():
    model = operator_graph()
    model.compile(optimizer="adam", loss="mse")
    gmp = lth_keras.GradualMagnitudePruning(0.75, begin_step=0, end_step=8, frequency=2)
    model.fit(rand((32, 6, 8)), rand((32, 3), seed=1), batch_size=8, epochs=3, verbose=0, callbacks=[gmp])
    assert abs(gmp.updates[-1]["sparsity"] - 0.75) < 0.02
    pruned_weights_are_zero(model)


def recurrent_model(rnn):
    inputs = keras.Input((5, 3))
    first = getattr(keras.layers, rnn)(4, return_sequences=True, name="rnn")(inputs)
    both = keras.layers.Bidirectional(getattr(keras.layers, rnn)(4, name="inner"), name="bidirectional")
    return keras.Model(inputs, both(first))


@pytest.mark.parametrize("rnn", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_kernels_are_masked(rnn):
    model = recurrent_model(rnn)
    x = rand((2, 5, 3))
    before = numpy(model(x))
    in_place.add_masks(model)
    weights = lth_layers.masked_weights(model)
    assert [mw.name for mw in weights] == [
        "rnn/kernel", "rnn/recurrent_kernel",
        "bidirectional/forward_inner/kernel", "bidirectional/forward_inner/recurrent_kernel",
        "bidirectional/backward_inner/kernel", "bidirectional/backward_inner/recurrent_kernel",
    ]
    assert {mw.kind for mw in weights} == {"recurrent"}
    np.testing.assert_array_equal(numpy(model(x)), before)
    masked_output_equals_folded(model, x)


def test_rates_by_kind_reach_recurrent_kernels():
    model = recurrent_model("LSTM")
    pruned = prune_model(model, {"recurrent": 0.5})
    assert len(pruned) == 6
    assert all(abs(np.mean(m) - 0.5) < 0.02 for m in pruned.values())


def test_time_distributed_shared_layers_and_several_inputs_and_outputs():
    a, b = keras.Input((4, 5)), keras.Input((5,))
    shared = keras.layers.Dense(5, name="shared")
    td = keras.layers.TimeDistributed(keras.layers.Dense(3, name="per_step"))(a)
    out_a = keras.layers.Dense(2, name="head_a")(keras.ops.sum(td, axis=1))
    out_b = shared(shared(b))
    model = keras.Model([a, b], [out_a, out_b])
    x = [rand((2, 4, 5)), rand((2, 5), seed=1)]
    before = [numpy(o) for o in model(x)]
    in_place.add_masks(model)
    names = [mw.name for mw in lth_layers.masked_weights(model)]
    assert sorted(names) == ["head_a", "shared", "time_distributed/per_step"]
    for got, want in zip(model(x), before):
        np.testing.assert_array_equal(numpy(got), want)
    lth_layers.set_masks(model, {"shared": np.zeros((5, 5), "float32")})
    bias = numpy(model.get_layer("shared").bias)
    np.testing.assert_allclose(numpy(model(x)[1]), np.broadcast_to(bias, (2, 5)), rtol=1e-6)
    model.compile(optimizer="adam", loss=["mse", "mse"])
    model.fit(x, [rand((2, 2)), rand((2, 5))], epochs=2, verbose=0)
    pruned_weights_are_zero(model)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = operator_graph()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = rand((4, 6, 8))
    before = numpy(model(x))
    in_place.add_masks(model)
    assert {mw.mask.dtype for mw in lth_layers.masked_weights(model)} == {"float32"}
    np.testing.assert_array_equal(numpy(model(x)), before)
    model.compile(optimizer="adam", loss="mse")
    prune_model(model, 0.5, scope="global")
    model.fit(x, rand((4, 3)), epochs=2, verbose=0)
    pruned_weights_are_zero(model)


def test_user_constraints_are_kept_and_frozen_layers_left_alone():
    inputs = keras.Input((6,))
    frozen = keras.layers.Dense(6, name="frozen")
    h = frozen(inputs)
    outputs = keras.layers.Dense(3, kernel_constraint=keras.constraints.NonNeg(), name="nonneg")(h)
    model = keras.Model(inputs, outputs)
    frozen.trainable = False
    in_place.add_masks(model)
    assert [mw.name for mw in lth_layers.masked_weights(model)] == ["nonneg"]
    kernel = model.get_layer("nonneg").kernel
    assert isinstance(kernel.constraint, keras.constraints.NonNeg)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    prune_model(model, 0.5)
    model.fit(rand((16, 6)), rand((16, 3)) * 10, epochs=2, verbose=0)
    assert numpy(kernel).min() >= 0.0
    pruned_weights_are_zero(model)


def test_exclude_names_layers_and_bad_patterns_fail():
    model = operator_graph()
    in_place.add_masks(model, exclude=["out"])
    assert [mw.name for mw in lth_layers.masked_weights(model)] == ["up", "mix"]
    with pytest.raises(ValueError, match="no_such"):
        in_place.add_masks(operator_graph(), exclude=["no_such"])


def test_keras_file_round_trip(tmp_path):
    model = operator_graph()
    in_place.add_masks(model, exclude=["out"])
    model.compile(optimizer="adam", loss="mse")
    prune_model(model, 0.6)
    x, y = rand((8, 6, 8)), rand((8, 3))
    model.fit(x, y, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "pruned.keras")
    model.save(path)
    # Keras alone: the ticket as a plain model (pruned weights are zeros).
    plain = keras.saving.load_model(path)
    assert not lth_layers.masked_weights(plain)
    np.testing.assert_allclose(numpy(plain(x)), numpy(model(x)), rtol=1e-6, atol=1e-6)
    # lth_keras: the masks too, on the layers that had them, and training resumes.
    loaded = lth_keras.load_model(path)
    want, got = lth_layers.get_masks(model), lth_layers.get_masks(loaded)
    assert sorted(got) == sorted(want) == ["mix", "up"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))
    loaded.fit(x, y, epochs=2, verbose=0)
    pruned_weights_are_zero(loaded)


def test_remove_masks_folds_and_restores_the_plain_layer():
    model = operator_graph()
    in_place.add_masks(model)
    lth_layers.set_masks(model, random_masks(model))
    x = rand((4, 6, 8))
    out = numpy(model(x))
    count = len(model.weights)
    in_place.remove_masks(model)
    assert not lth_layers.masked_weights(model) and len(model.weights) == count - 3
    assert not any("call" in vars(layer) for layer in model.layers)
    np.testing.assert_allclose(numpy(model(x)), out, rtol=1e-6, atol=1e-6)


def test_a_model_with_nothing_to_prune_gets_one_line():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    with pytest.raises(ValueError, match="prune_model found nothing to prune"):
        prune_model(model, 0.5)


def tiny_bert():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=6)
    inputs = {
        "token_ids": keras.Input((6,), dtype="int32"),
        "segment_ids": keras.Input((6,), dtype="int32"),
        "padding_mask": keras.Input((6,), dtype="int32"),
    }
    outputs = keras.layers.Dense(2, name="classifier")(backbone(inputs)["pooled_output"])
    return keras.Model(inputs, outputs)


def bert_data(n=16):
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, 50, (n, 6)).astype("int32"),
        "segment_ids": np.zeros((n, 6), "int32"),
        "padding_mask": np.ones((n, 6), "int32"),
    }
    return x, rng.integers(0, 2, (n,))


def test_imp_prunes_a_plain_keras_hub_bert_inside_fit():
    model = tiny_bert()
    x, y = bert_data()
    before = numpy(model(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = lth_keras.IterativeMagnitudePruning(rates={"dense": 0.5}, round_steps=2, verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[imp], verbose=0)
    names = [mw.name for mw in lth_layers.masked_weights(model)]
    # Every attention projection and feed-forward kernel of both blocks.
    assert sum("/query" in n for n in names) == 2 and sum("intermediate" in n for n in names) == 2
    assert imp.rounds[-1]["pm"] < imp.rounds[0]["pm"] == 100.0
    pruned_weights_are_zero(model)
    assert numpy(model(x)).shape == before.shape
