"""Masked convolutions: `MaskedConv1D/2D/3D`, `MaskedConv2DTranspose`,
`MaskedDepthwiseConv2D` and `MaskedSeparableConv2D`.

Each is its Keras layer with the kernel (both kernels of the separable
convolution) multiplied by a 0/1 mask; biases are not masked. Pruning kind
``"conv"``.

Example:

```python
conv = lth_keras.MaskedConv2D(64, 3, padding="same", activation="relu")
y = conv(np.zeros((1, 32, 32, 3), "float32"))   # shape (1, 32, 32, 64)
conv.mask.shape                                   # (3, 3, 3, 64)
```
"""

from __future__ import annotations

import keras
from keras import ops

from lth_keras.layers import keras_adapter
from lth_keras.layers.base import MaskedLayer

__all__ = [
    "MaskedConv1D",
    "MaskedConv2D",
    "MaskedConv3D",
    "MaskedConv2DTranspose",
    "MaskedDepthwiseConv2D",
    "MaskedSeparableConv2D",
]


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv2D(MaskedLayer, keras.layers.Conv2D):
    """A `keras.layers.Conv2D` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Conv2D`; holds a
    non-trainable ``mask`` of the kernel's shape (all ones when built). The
    bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: size of the convolution window.
        **kwargs: any other `keras.layers.Conv2D` argument.

    Example:

    ```python
    conv = lth_keras.MaskedConv2D(64, 3, padding="same", activation="relu")
    y = conv(np.zeros((1, 32, 32, 3), "float32"))   # shape (1, 32, 32, 64)
    conv.mask.shape                                   # (3, 3, 3, 64)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv2D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.masked("kernel"))
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


def _add_bias(outputs, bias, channels, rank, data_format):
    if data_format == "channels_last":
        shape = (1,) * (rank + 1) + (channels,)
    else:
        shape = (1, channels) + (1,) * rank
    return ops.add(outputs, ops.reshape(bias, shape))


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv1D(MaskedLayer, keras.layers.Conv1D):
    """A `keras.layers.Conv1D` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Conv1D` (``"causal"``
    padding included); holds a non-trainable ``mask`` of the kernel's shape.
    The bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: length of the convolution window.
        **kwargs: any other `keras.layers.Conv1D` argument.

    Example:

    ```python
    conv = lth_keras.MaskedConv1D(8, 3, padding="causal")
    y = conv(np.zeros((2, 20, 4), "float32"))   # shape (2, 20, 8)
    conv.mask.shape                               # (3, 4, 8)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv1D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        padding = self.padding
        if padding == "causal":
            inputs = ops.pad(inputs, keras_adapter.causal_padding(self))
            padding = "valid"
        outputs = ops.conv(
            inputs, self.masked("kernel"), strides=list(self.strides), padding=padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv3D(MaskedLayer, keras.layers.Conv3D):
    """A `keras.layers.Conv3D` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Conv3D`; holds a
    non-trainable ``mask`` of the kernel's shape. The bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: size of the convolution window.
        **kwargs: any other `keras.layers.Conv3D` argument.

    Example:

    ```python
    conv = lth_keras.MaskedConv3D(4, 3, padding="same")
    y = conv(np.zeros((1, 8, 8, 8, 2), "float32"))   # shape (1, 8, 8, 8, 4)
    conv.mask.shape                                    # (3, 3, 3, 2, 4)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv3D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.masked("kernel"))
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv2DTranspose(MaskedLayer, keras.layers.Conv2DTranspose):
    """A `keras.layers.Conv2DTranspose` whose kernel is multiplied by a mask.

    Takes exactly the arguments of `keras.layers.Conv2DTranspose`; holds a
    non-trainable ``mask`` of the kernel's shape ``(kh, kw, filters,
    in_channels)``. The bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: size of the transposed convolution window.
        **kwargs: any other `keras.layers.Conv2DTranspose` argument.

    Example:

    ```python
    up = lth_keras.MaskedConv2DTranspose(8, 3, strides=2, padding="same")
    y = up(np.zeros((1, 16, 16, 4), "float32"))   # shape (1, 32, 32, 8)
    up.mask.shape                                   # (3, 3, 8, 4)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv2DTranspose

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = ops.conv_transpose(
            inputs, self.masked("kernel"), strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedDepthwiseConv2D(MaskedLayer, keras.layers.DepthwiseConv2D):
    """A `keras.layers.DepthwiseConv2D` whose kernel is multiplied by a mask.

    Takes exactly the arguments of `keras.layers.DepthwiseConv2D`; holds a
    non-trainable ``mask`` of the depthwise kernel's shape ``(kh, kw,
    in_channels, depth_multiplier)``. The bias is not masked. MobileNet and
    EfficientNet are mostly made of these.

    Args:
        kernel_size: size of the depthwise window.
        **kwargs: any other `keras.layers.DepthwiseConv2D` argument.

    Example:

    ```python
    dw = lth_keras.MaskedDepthwiseConv2D(3, padding="same")
    y = dw(np.zeros((1, 8, 8, 16), "float32"))   # shape (1, 8, 8, 16)
    dw.mask.shape                                  # (3, 3, 16, 1)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.DepthwiseConv2D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs, self.masked("kernel"), strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            channels = self.depth_multiplier * keras_adapter.input_channels(self, inputs.shape)
            outputs = _add_bias(outputs, self.bias, channels, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedSeparableConv2D(MaskedLayer, keras.layers.SeparableConv2D):
    """A `keras.layers.SeparableConv2D` with both kernels masked.

    Takes exactly the arguments of `keras.layers.SeparableConv2D`; holds
    ``depthwise_mask`` and ``pointwise_mask``. Its masked weights are named
    ``"<layer>/depthwise_kernel"`` and ``"<layer>/pointwise_kernel"``, so
    rates and `exclude` patterns can address either one.

    Args:
        filters: number of output channels.
        kernel_size: size of the depthwise window.
        **kwargs: any other `keras.layers.SeparableConv2D` argument.

    Example:

    ```python
    sep = lth_keras.MaskedSeparableConv2D(8, 3, padding="same", name="sep")
    y = sep(np.zeros((1, 8, 8, 4), "float32"))         # shape (1, 8, 8, 8)
    [mw.name for mw in sep.masked_weights()]
    # ['sep/depthwise_kernel', 'sep/pointwise_kernel']
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.SeparableConv2D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("depthwise_kernel", "depthwise_mask")
        self.add_mask("pointwise_kernel", "pointwise_mask")

    def call(self, inputs):
        outputs = ops.separable_conv(
            inputs, self.masked("depthwise_kernel"), self.masked("pointwise_kernel"),
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs
