"""Tests for lth_keras.layers.embedding: MaskedEmbedding against keras.layers.Embedding.

The mask has the table's shape; a token's vector is its row times the
mask's row, so a pruned entry reads as 0; the layer is pruned by kind only
when the rates name ``"embedding"``. Backend-agnostic (every masked layer on
every backend, round trips included: tests/layers/backends_test.py).
"""

import keras
import numpy as np

import lth_keras
from lth_keras import layers as lth_layers
from lth_keras.callbacks import prune_model


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_mask_has_the_tables_shape_and_the_kind_embedding():
    emb = lth_keras.MaskedEmbedding(20, 4, name="emb")
    out = emb(np.array([[1, 2, 3]], "int32"))
    assert tuple(out.shape) == (1, 3, 4)
    assert tuple(emb.mask.shape) == (20, 4) and not emb.mask.trainable
    (mw,) = emb.masked_weights()
    assert (mw.name, mw.kind) == ("emb", "embedding") and mw.weight is emb.embeddings
    assert emb.get_config() == keras.layers.Embedding(20, 4, name="emb").get_config()


def test_a_token_reads_its_row_times_the_mask():
    emb = lth_keras.MaskedEmbedding(10, 6)
    emb.build()
    table = _numpy(emb.embeddings)
    mask = (np.random.default_rng(0).random((10, 6)) < 0.5).astype("float32")
    mask[7] = 0.0  # token 7 pruned entirely
    emb.mask.assign(mask)
    tokens = np.array([[7, 3, 3, 0]], "int32")
    np.testing.assert_array_equal(_numpy(emb(tokens))[0], (table * mask)[tokens[0]])
    assert not _numpy(emb(tokens))[0, 0].any()
    # Float indices are cast, as Keras's Embedding casts them.
    np.testing.assert_array_equal(_numpy(emb(tokens.astype("float32"))), _numpy(emb(tokens)))


def test_rates_by_kind_prune_it_only_when_they_name_embedding():
    def model():
        return keras.Sequential([keras.Input((5,), dtype="int32"), lth_keras.MaskedEmbedding(40, 8, name="emb"),
                                 keras.layers.Flatten(), lth_keras.MaskedDense(3, name="out")])

    dense_only = model()
    prune_model(dense_only, {"dense": 0.5}, output_layer=None)
    assert lth_layers.count_weights(dense_only) == {"emb": (320, 320), "out": (60, 120)}
    both = model()
    prune_model(both, {"dense": 0.5, "embedding": 0.25}, output_layer=None)
    assert lth_layers.count_weights(both) == {"emb": (240, 320), "out": (60, 120)}
