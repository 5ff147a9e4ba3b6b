"""Tests for lth_keras.datasets.augment: the random flip and crop of CIFAR10 training images.
"""

import numpy as np

from lth_keras import datasets


# ------------------------------------------------------------------ tf pipeline


def test_augment_flip_crop():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
    seed = tf.constant([3, 4])
    a = datasets.augment_flip_crop(x, seed).numpy()
    b = datasets.augment_flip_crop(tf.constant(x), seed).numpy()
    c = datasets.augment_flip_crop(x, tf.constant([5, 6])).numpy()
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)

    # Every output is a (possibly flipped) 8x8 window of the zero-padded input.
    flips, offsets = set(), set()
    for i in range(len(x)):
        matches = []
        for flip in (False, True):
            src = np.pad(x[i, :, ::-1] if flip else x[i], ((4, 4), (4, 4), (0, 0)))
            for dy in range(9):
                for dx in range(9):
                    if np.array_equal(src[dy:dy + 8, dx:dx + 8], a[i]):
                        matches.append((flip, dy, dx))
        assert matches, f"image {i} is not a flip+crop of its input"
        flips.add(matches[0][0]), offsets.add(matches[0][1:])
    assert flips == {False, True}  # per-image randomness, not one per batch
    assert len(offsets) > 3

    traced = tf.function(datasets.augment_flip_crop)(tf.constant(x), seed).numpy()
    np.testing.assert_array_equal(traced, a)
