"""Data augmentation of the paper's CIFAR-10 runs: flip and pad/crop.

`augment_flip_crop` is applied per batch by the training loop when a
`Dataset` has ``augment=True``; loading never augments. It imports
TensorFlow lazily, so the rest of `lth_keras.datasets` needs none.

Example:
    >>> import tensorflow as tf                                   # doctest: +SKIP
    >>> augment_flip_crop(tf.zeros([8, 32, 32, 3]), tf.constant([1, 2])).shape  # doctest: +SKIP
    TensorShape([8, 32, 32, 3])
"""


def augment_flip_crop(images, seed, pad: int = 4):
    """Random horizontal flip and ``pad``-pixel zero-pad + random crop.

    Works on a batch ``[N, H, W, C]``; each image gets its own flip and
    offset, drawn with stateless ops from ``seed`` (an int tensor of shape
    [2]), so the result is a pure function of (images, seed) and traces
    cleanly under ``tf.function``/XLA. Zero padding equals the per-channel
    mean on normalised data.

    Example:
        >>> import tensorflow as tf
        >>> x = tf.zeros([8, 32, 32, 3])
        >>> augment_flip_crop(x, tf.constant([1, 2])).shape
        TensorShape([8, 32, 32, 3])
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]

    flip = tf.random.stateless_uniform([n], flip_seed) < 0.5
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)

    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [n, 2], crop_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32
    )
    # Per-image crops as two batched gathers (rows, then columns): unlike
    # tf.image.random_crop this gives every image its own offset.
    rows = offsets[:, :1] + tf.range(h)[None, :]
    cols = offsets[:, 1:] + tf.range(w)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    return tf.ensure_shape(out, images.shape)
