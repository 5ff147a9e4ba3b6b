"""A model of your own for ``python -m lth_keras.main --model=...``.

``build(input_shape, num_classes)`` returns a plain Keras model: a
``keras.applications.MobileNetV2`` (width 0.35, random init) behind a
zero-padding layer, because Fashion-MNIST's 28x28 images are smaller than
MobileNetV2's 32x32 minimum. Its batch-norm layers keep moving averages
with momentum 0.9 instead of Keras's 0.999 for MobileNetV2: at 0.999 the
averages still lag far behind after a few thousand iterations, and the
network predicts one class in inference mode (validation and test accuracy
stay at 10% while train accuracy passes 80%). The binary makes it prunable with
`lth_keras.make_prunable` (every Conv2D, DepthwiseConv2D and the Dense head
get masks).

    python -m lth_keras.main --model=examples.mobilenet_v2_fashion:build \\
        --flagfile=figures/mobilenet_v2_fashion_mnist.flags
"""

import keras


def build(input_shape, num_classes):
    height, width, channels = input_shape
    pad_h, pad_w = max(0, 32 - height), max(0, 32 - width)
    inputs = keras.Input(input_shape)
    x = keras.layers.ZeroPadding2D(((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))(inputs)
    backbone = keras.applications.MobileNetV2(
        input_shape=(height + pad_h, width + pad_w, channels),
        alpha=0.35,
        include_top=False,
        weights=None,
        pooling="avg",
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    outputs = keras.layers.Dense(num_classes, name="output")(backbone(x))
    return keras.Model(inputs, outputs, name="mobilenet_v2_035")
