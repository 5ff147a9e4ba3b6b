"""Build callables for the `--model=module:callable` tests: ``--model=tests.helpers.custom_models:small_cnn``."""

import keras

import lth_keras


def small_cnn(input_shape, num_classes):
    """A plain functional network: the binary makes it prunable."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="output")(x))


def masked_mlp(input_shape, num_classes):
    """Masked already, and unbuilt: taken as it is, built for the data."""
    return keras.Sequential(
        [keras.layers.Flatten(), lth_keras.MaskedDense(8, activation="relu"), lth_keras.MaskedDense(num_classes)]
    )


def not_a_model(input_shape, num_classes):
    return "a string"


def nothing_to_prune(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def raises(input_shape, num_classes):
    raise RuntimeError("the architecture is broken")


NOT_CALLABLE = 3
