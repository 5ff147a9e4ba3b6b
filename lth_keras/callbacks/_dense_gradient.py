"""RigL's dense gradient: ∂loss/∂(effective weight) on the batch `fit` trains on.

The gradient with respect to a masked kernel is zero where the mask is 0, so
it cannot say which pruned position would help. Pruned weights are exactly 0,
so the effective weight ``kernel * mask`` equals the kernel: the loss of the
same forward pass with every mask set to 1 has, with respect to the kernel,
the gradient with respect to the effective weight, at every position.

`fit` shows no batch to a callback, so the gradient is computed inside the
compiled step: `Probe` builds a second train function whose
step computes it (stateless: no variable is assigned) before the usual step,
and returns it in the step's logs under `key(i)`. The callback swaps it in
for the steps that end at an update, so the other steps cost nothing extra.
"""

from __future__ import annotations

import keras

PREFIX = "lth_keras/dense_gradient/"


def key(i: int) -> str:
    return f"{PREFIX}{i}"


def pop_gradients(logs, count: int):
    """The gradients a probe step put in `logs`, removed from them (so that no
    later callback, the progress bar included, sees arrays)."""
    if logs is None or key(0) not in logs:
        return None
    return [keras.ops.convert_to_numpy(logs.pop(key(i))) for i in range(count)]


def _positions(model, kernels, masks):
    trainable = {id(v): i for i, v in enumerate(model.trainable_variables)}
    non_trainable = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
    return [trainable[id(k)] for k in kernels], [non_trainable[id(m)] for m in masks]


def _loss(model, trainable, non_trainable, x, y, sample_weight):
    y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)


def _step_with_gradients(model, kernels, masks):
    """A train step that also returns ∂loss/∂kernel with all masks at 1."""
    kernel_at, mask_at = _positions(model, kernels, masks)
    original = model.train_step  # the class's step, bound to the model
    backend = keras.backend.backend()

    def ones_for_masks(values):
        values = list(values)
        for i in mask_at:
            values[i] = keras.ops.ones_like(values[i])
        return values

    if backend == "jax":
        import jax

        def step(state, data):
            trainable, non_trainable, optimizer_variables, metrics = state
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            ones = ones_for_masks(non_trainable)

            def loss(values):
                value, _ = model.compute_loss_and_updates(values, ones, metrics, x, y, sample_weight,
                                                          training=True, optimizer_variables=optimizer_variables)
                return value

            grads = jax.grad(loss)(list(trainable))
            logs, state = original(state, data)
            return {**logs, **{key(i): grads[j] for i, j in enumerate(kernel_at)}}, state

        return step

    def step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        non_trainable = ones_for_masks([v.value for v in model.non_trainable_variables])
        if backend == "tensorflow":
            import tensorflow as tf

            values = [tf.convert_to_tensor(v.value) for v in model.trainable_variables]
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss = _loss(model, values, non_trainable, x, y, sample_weight)
            grads = tape.gradient(loss, [values[j] for j in kernel_at])
            grads = [tf.zeros_like(values[j]) if g is None else g for g, j in zip(grads, kernel_at)]
        elif backend == "torch":
            import torch

            values = [v.value.detach().requires_grad_(True) for v in model.trainable_variables]
            loss = _loss(model, values, non_trainable, x, y, sample_weight)
            grads = torch.autograd.grad(loss, [values[j] for j in kernel_at], allow_unused=True)
            grads = [torch.zeros_like(values[j]) if g is None else g.detach() for g, j in zip(grads, kernel_at)]
        else:
            raise NotImplementedError(f"RigL needs gradients; backend {backend!r} is not supported.")
        logs = original(data)
        return {**logs, **{key(i): g for i, g in enumerate(grads)}}

    return step


class Probe:
    """The model's train step, with RigL's dense gradients in its logs on the
    steps asked for.

    `use(True)` before a step makes it compute them; `close()` gives the
    model its own step back.

    Keras builds a train function around `model.train_step`: JAX reads it
    when the function is made (and caches traces per function object), while
    TensorFlow and PyTorch read it when they trace or call. So the probe is
    made around the gradient step itself, and the model keeps, until
    `close`, a step that dispatches on `on`, set before every step to match
    the function that runs it.
    """

    def __init__(self, model, kernels, masks):
        self.model = model
        self.on = False
        original = model.train_step
        gradient_step = _step_with_gradients(model, kernels, masks)

        def dispatch(*args):
            return gradient_step(*args) if self.on else original(*args)

        self.on = True
        model.train_step = gradient_step
        self.probe = self._fresh()
        self.on = False
        model.train_step = dispatch
        self.plain = self._fresh()

    def _fresh(self):
        self.model.make_train_function(force=True)
        return self.model.train_function

    def use(self, on: bool) -> None:
        self.on = bool(on)
        self.model.train_function = self.probe if self.on else self.plain

    def close(self) -> None:
        self.on = False
        if "train_step" in vars(self.model):
            del self.model.train_step
        self.model.train_function = self.plain
