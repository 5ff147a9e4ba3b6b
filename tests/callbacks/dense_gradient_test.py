"""RigL's dense gradient inside the compiled step (`lth_keras.callbacks._dense_gradient`), on every backend."""

import keras
import numpy as np

from lth_keras import layers as lth_layers
from lth_keras.callbacks import _dense_gradient
from lth_keras.layers import in_place


class _Capture(keras.callbacks.Callback):
    """Makes the probe when training starts (fit makes its train function
    first), and asks for the gradient on `steps_on`."""

    def __init__(self, steps_on):
        super().__init__()
        self.steps_on, self.grads, self.weights = steps_on, {}, {}

    def on_train_begin(self, logs=None):
        mw = lth_layers.masked_weights(self.model)[0]
        self.probe = _dense_gradient.Probe(self.model, [mw.weight], [mw.mask])

    def on_train_end(self, logs=None):
        self.probe.close()

    def on_train_batch_begin(self, batch, logs=None):
        self.probe.use(batch in self.steps_on)
        self.weights[batch] = keras.ops.convert_to_numpy(self.model.layers[0].kernel)

    def on_train_batch_end(self, batch, logs=None):
        grads = _dense_gradient.pop_gradients(logs, 1)
        if grads is not None:
            self.grads[batch] = grads[0]
        assert not any(k.startswith(_dense_gradient.PREFIX) for k in (logs or {}))


def test_probe_steps_return_the_gradient_at_every_position_of_the_effective_weight():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.normal(size=(16, 3)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    in_place.add_masks(model)
    mw = lth_layers.masked_weights(model)[0]
    mask = (rng.random((6, 3)) < 0.5).astype("float32")
    mw.mask.assign(mask)
    mw.weight.assign(keras.ops.convert_to_numpy(mw.weight) * mask)
    capture = _Capture(steps_on={1})
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[capture])
    assert sorted(capture.grads) == [1]  # only the step asked for
    w = capture.weights[1]               # the weights that step started from
    xb, yb = x[4:8], y[4:8]             # the batch of step 1
    expected = 2.0 / (4 * 3) * xb.T @ (xb @ (w * mask) - yb)  # d mean((xW - y)^2) / dW
    np.testing.assert_allclose(capture.grads[1], expected, rtol=1e-4, atol=1e-6)
    assert (np.abs(capture.grads[1][mask == 0]) > 0).all()  # pruned positions have a gradient
    # The step itself still trained with the mask: pruned weights stayed 0.
    assert (keras.ops.convert_to_numpy(mw.weight)[mask == 0] == 0).all()
    assert "train_step" not in vars(model)
