"""Layers written from scratch and made prunable through the MaskedLayer
protocol, for the layers tests (registered with Keras once, here)."""

import keras

import lth_keras


@keras.saving.register_keras_serializable(package="lth_layers_test")
class UserMaskedLinear(lth_keras.MaskedLayer, keras.layers.Layer):
    """A layer written from scratch and made prunable through MaskedLayer."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_normal", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.add_mask("kernel")

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.masked("kernel")) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="lth_layers_test")
class TwoMaskCell(lth_keras.MaskedLayer, keras.layers.Layer):
    """Masks two weights: names become '<layer>/<weight>'."""

    pruning_kind = "recurrent"

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.recurrent = self.add_weight(shape=(3, 3), name="recurrent")
        self.add_mask("kernel")
        self.add_mask("recurrent", "rec_mask")

    def call(self, inputs):
        h = keras.ops.matmul(inputs, self.masked("kernel"))
        return keras.ops.matmul(h, self.masked("recurrent"))
