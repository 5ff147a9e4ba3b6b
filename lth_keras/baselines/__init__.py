"""Baselines to compare winning tickets against, each run in its own process.

`lth_keras.baselines.tfmot`: TensorFlow Model Optimization's gradual
magnitude pruning (``prune_low_magnitude`` + ``PolynomialDecay``), written
into an IMP experiment as the arm ``tfmot_gradual`` (the program; its
rounds are `lth_keras.baselines.tfmot_gradual`). It needs
tensorflow-model-optimization and tf_keras, which switch ``tf.keras`` to
Keras 2 for the whole process; the core package never imports them, and
nothing in this package is imported by ``import lth_keras``.
"""
