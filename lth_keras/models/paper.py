"""The architectures of Frankle & Carbin (ICLR 2019), built from masked layers.

LeNet-300-100, Conv-2/4/6, VGG-19 and ResNet-18 as functional `keras.Model`s
whose `Dense`/`Conv2D` layers are `lth_keras.layers.MaskedDense` and
`MaskedConv2D`, so pruning only flips entries of each layer's `mask`. Every
builder has the signature ``(input_shape, num_classes, dropout, seed)``; the
registry (`lth_keras.models.registry`) pairs each with the paper's
hyperparameters.

Layer names are part of the contract: global pruning excludes layers by name
(``"output"``, ``"*_shortcut"``) and each layer's initial weights are seeded
from its name, so renaming a layer changes which weights a seed gives.

Example:

```python
from lth_keras.models import paper

model = paper.conv_net("conv4", (64, 128))((32, 32, 3), 10, 0.0, 0)
[l.name for l in model.layers][:3]  # ['input', 'conv_1', 'conv_2']
```
"""

import zlib

import keras

from lth_keras import layers as lth_layers


# ---------------------------------------------------------------------------
# Layer factories.


def _layer_seed(seed, layer_name):
    # Derive the per-layer seed from the layer *name* rather than a running
    # counter, so that adding a layer to an architecture does not silently
    # change the initial weights of every layer after it.
    return (seed * 1_000_003 + zlib.crc32(layer_name.encode())) % (2**31 - 1)


def _kernel_init(seed, layer_name):
    if seed is None:
        return keras.initializers.GlorotNormal()
    return keras.initializers.GlorotNormal(seed=_layer_seed(seed, layer_name))


def _dense(units, name, seed, activation=None, use_bias=True):
    return lth_layers.MaskedDense(
        units,
        activation=activation,
        use_bias=use_bias,
        kernel_initializer=_kernel_init(seed, name),
        bias_initializer="zeros",
        name=name,
    )


def _conv(filters, name, seed, kernel_size=3, strides=1, activation=None,
          use_bias=True):
    return lth_layers.MaskedConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        use_bias=use_bias,
        kernel_initializer=_kernel_init(seed, name),
        bias_initializer="zeros",
        name=name,
    )


def _batch_norm(name):
    # PyTorch's BatchNorm2d defaults (momentum 0.1 == Keras 0.9, eps 1e-5),
    # which the paper's VGG/ResNet results were obtained with; Keras's 0.99
    # moving average lags far behind over a short 30K-iteration schedule.
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                           name=name)


def _dropout(rate, name, seed):
    dropout_seed = None if seed is None else _layer_seed(seed, name)
    return keras.layers.Dropout(rate, seed=dropout_seed, name=name)


def _check_image_shape(model_name, input_shape):
    if len(input_shape) != 3:
        raise ValueError(
            f"Model {model_name!r} expects an image "
            f"`input_shape=(height, width, channels)`. "
            f"Received: input_shape={input_shape}"
        )


def _check_no_dropout(model_name, dropout):
    # These nets have no hidden dense layer to put dropout after; silently
    # ignoring the flag would make a "dropout" run identical to a plain one.
    if dropout:
        raise ValueError(
            f"Model {model_name!r} does not support dropout. "
            f"Received: dropout={dropout}"
        )


# ---------------------------------------------------------------------------
# Architectures.


def lenet(input_shape, num_classes, dropout, seed):
    """LeNet-300-100: two hidden dense layers (300, 100) and a dense output.

    Args:
        input_shape: one example's shape; it is flattened, so any rank works.
        num_classes: logits of the ``"output"`` layer.
        dropout: rate after each hidden layer (0: no Dropout layer).
        seed: base of the per-layer initialiser seeds (None: random).

    Returns:
        A functional model named ``"lenet"``.

    Example:
        >>> [l.name for l in lenet((28, 28, 1), 10, 0.0, 0).layers]  # doctest: +SKIP
        ['input', 'flatten', 'dense_1', 'dense_2', 'output']
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate((300, 100), start=1):
        x = _dense(units, f"dense_{i}", seed, activation="relu")(x)
        if dropout:
            x = _dropout(dropout, f"dropout_{i}", seed)(x)
    outputs = _dense(num_classes, "output", seed)(x)
    return keras.Model(inputs, outputs, name="lenet")


def conv_net(name, conv_blocks):
    """The builder of a Conv-2/4/6 network (Simonyan & Zisserman style).

    Each entry of `conv_blocks` is a block of two 3x3 conv layers of that
    width followed by 2x2 max pooling; then two dense layers of 256 and the
    dense output.

    Args:
        name: the model's name, e.g. ``"conv4"``.
        conv_blocks: filters per block, e.g. ``(64, 128)`` for Conv-4.

    Returns:
        A builder ``(input_shape, num_classes, dropout, seed) -> keras.Model``.

    Example:
        >>> conv2 = conv_net("conv2", (64,))
        >>> conv2((32, 32, 3), 10, 0.5, 0).name  # doctest: +SKIP
        'conv2'
    """
    def builder(input_shape, num_classes, dropout, seed):
        _check_image_shape(name, input_shape)
        inputs = keras.Input(shape=input_shape, name="input")
        x = inputs
        conv_index = 0
        for pool_index, filters in enumerate(conv_blocks, start=1):
            for _ in range(2):
                conv_index += 1
                x = _conv(filters, f"conv_{conv_index}", seed,
                          activation="relu")(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool_{pool_index}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        for i in (1, 2):
            x = _dense(256, f"dense_{i}", seed, activation="relu")(x)
            if dropout:
                x = _dropout(dropout, f"dropout_{i}", seed)(x)
        outputs = _dense(num_classes, "output", seed)(x)
        return keras.Model(inputs, outputs, name=name)

    return builder


_VGG19_PLAN = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


def vgg19(input_shape, num_classes, dropout, seed):
    """VGG-19 for CIFAR-10: 16 conv layers with batch norm, global average
    pooling and one dense output layer (no hidden dense layers, no dropout).

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: logits of the ``"output"`` layer.
        dropout: must be 0.
        seed: base of the per-layer initialiser seeds (None: random).

    Returns:
        A functional model named ``"vgg19"``.

    Example:
        >>> vgg19((32, 32, 3), 10, 0.0, 0).layers[1].name  # doctest: +SKIP
        'conv_1'
    """
    _check_image_shape("vgg19", input_shape)
    _check_no_dropout("vgg19", dropout)
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    conv_index = 0
    for stage, widths in enumerate(_VGG19_PLAN, start=1):
        if stage > 1:
            # "same" pooling rounds up instead of down, so 28x28 inputs
            # (28 -> 14 -> 7 -> 4 -> 2) never shrink to an empty feature map.
            x = keras.layers.MaxPooling2D(
                2, padding="same", name=f"pool_{stage - 1}"
            )(x)
        for filters in widths:
            conv_index += 1
            # No conv bias: the following batch norm's beta subsumes it.
            x = _conv(filters, f"conv_{conv_index}", seed, use_bias=False)(x)
            x = _batch_norm(f"bn_{conv_index}")(x)
            x = keras.layers.ReLU(name=f"relu_{conv_index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = _dense(num_classes, "output", seed)(x)
    return keras.Model(inputs, outputs, name="vgg19")


def _basic_block(x, filters, strides, prefix, seed):
    shortcut = x
    y = _conv(filters, f"{prefix}_conv1", seed, strides=strides,
              use_bias=False)(x)
    y = _batch_norm(f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(filters, f"{prefix}_conv2", seed, use_bias=False)(y)
    y = _batch_norm(f"{prefix}_bn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        # Projection shortcut (He et al.'s option B). Named "*_shortcut" so
        # global pruning can exclude it, as the paper does.
        shortcut = _conv(filters, f"{prefix}_shortcut", seed, kernel_size=1,
                         strides=strides, use_bias=False)(x)
        shortcut = _batch_norm(f"{prefix}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_relu2")(y)


def resnet18(input_shape, num_classes, dropout, seed):
    """The paper's CIFAR-10 ResNet-18 (He et al.'s 6n+2 net with n=3): a
    16-filter stem, three stages of three basic blocks (16, 32, 64 filters),
    global average pooling and a dense output; projection shortcuts where
    the shape changes.

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: logits of the ``"output"`` layer.
        dropout: must be 0.
        seed: base of the per-layer initialiser seeds (None: random).

    Returns:
        A functional model named ``"resnet18"``.

    Example:
        >>> [l.name for l in resnet18((32, 32, 3), 10, 0.0, 0).layers
        ...  if l.name.endswith("_shortcut")]  # doctest: +SKIP
        ['block2_1_shortcut', 'block3_1_shortcut']
    """
    _check_image_shape("resnet18", input_shape)
    _check_no_dropout("resnet18", dropout)
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv(16, "conv_1", seed, use_bias=False)(inputs)
    x = _batch_norm("bn_1")(x)
    x = keras.layers.ReLU(name="relu_1")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            strides = 2 if (stage > 1 and block == 1) else 1
            x = _basic_block(x, filters, strides, f"block{stage}_{block}",
                             seed)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = _dense(num_classes, "output", seed)(x)
    return keras.Model(inputs, outputs, name="resnet18")
