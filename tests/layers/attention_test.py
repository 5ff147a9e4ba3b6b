"""Tests for lth_keras.layers.attention: MaskedMultiHeadAttention against
keras.layers.MultiHeadAttention.

Its four projection kernels are its masked weights, by name; with all-ones
masks it computes what the plain layer computes; a pruned output projection
leaves only its bias. Backend-agnostic (every masked layer on every backend,
the `.keras` and fold round trips included: tests/layers/backends_test.py).
"""

import keras
import numpy as np
import pytest

import lth_keras

PROJECTIONS = ("query", "key", "value", "attention_output")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _pair(seed=0):
    """A masked and a plain layer with the same weights, and an input."""
    x = np.random.default_rng(seed).normal(size=(2, 5, 6)).astype("float32")
    masked = lth_keras.MaskedMultiHeadAttention(2, key_dim=3, name="mha")
    plain = keras.layers.MultiHeadAttention(2, key_dim=3, name="mha")
    masked(x, x)
    plain(x, x)
    rng = np.random.default_rng(seed + 1)
    by_path = {v.path: v for v in masked.weights}
    for v in plain.weights:  # the same paths; the masks stay all ones
        value = rng.normal(size=v.shape).astype("float32")
        v.assign(value)
        by_path[v.path].assign(value)
    return masked, plain, x


def test_the_four_projection_kernels_are_its_masked_weights():
    masked, plain, _ = _pair()
    weights = masked.masked_weights()
    assert [mw.name for mw in weights] == [f"mha/{p}" for p in PROJECTIONS]
    assert {mw.kind for mw in weights} == {"dense"}
    for mw in weights:
        assert tuple(mw.mask.shape) == tuple(mw.weight.shape) and not mw.mask.trainable
    assert len(masked.trainable_weights) == len(plain.trainable_weights)  # masks are not trained


def test_with_ones_masks_it_computes_what_the_plain_layer_computes():
    masked, plain, x = _pair()
    np.testing.assert_allclose(_numpy(masked(x, x)), _numpy(plain(x, x)), rtol=1e-5, atol=1e-6)
    assert masked.get_config() == plain.get_config()


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_a_pruned_projection_changes_the_output(projection):
    masked, plain, x = _pair()
    reference = _numpy(plain(x, x))
    mw = {m.name: m for m in masked.masked_weights()}[f"mha/{projection}"]
    mw.mask.assign(np.zeros(mw.mask.shape, "float32"))
    out = _numpy(masked(x, x))
    assert np.abs(out - reference).max() > 1e-3
    if projection == "attention_output":  # only the output projection's bias is left
        bias = next(_numpy(v) for v in masked.weights if v.path == "mha/attention_output/bias")
        np.testing.assert_allclose(out, np.broadcast_to(bias, out.shape), atol=1e-6)
