"""The training loop of one IMP round: compiled, on-device, resumable.

`Trainer` keeps the training, validation and test arrays on the device,
reshuffles the training set there every epoch, and runs many optimizer steps
per compiled call: nothing returns to Python between evaluations except the
metrics. Data order is a pure function of (seed, iteration), and so is
augmentation, so a round restored from a checkpoint continues exactly as an
uninterrupted one would.

Example:

```python
from lth_keras import datasets, models, training

data = datasets.load("synthetic", validation_size=200)
model = models.build("lenet", data.input_shape, seed=0)
hp = training.TrainingHparams(iterations=300, batch_size=60,
                              optimizer="adam", learning_rate=1.2e-3)
trainer = training.Trainer(model, data, hp, seed=0)
curve = trainer.train_round(on_eval=print)   # one row every 100 iterations
```
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from lth_keras import layers
from lth_keras.training import schedule
from lth_keras.pruning import snapshots

__all__ = [
    "TrainingHparams",
    "WarmupPiecewiseDecay",
    "make_optimizer",
    "Trainer",
]


@dataclasses.dataclass(frozen=True)
class TrainingHparams:
    """How one round is trained.

    Attributes:
        iterations: optimizer steps per round.
        batch_size: global batch size (split evenly across replicas).
        optimizer: ``"adam"``, ``"sgd"`` or ``"adamw"``.
        learning_rate: base learning rate.
        momentum: SGD momentum.
        weight_decay: the paper's 1e-4 for ResNet-18/VGG-19. For ``"sgd"``
            and ``"adam"`` it is coupled L2, as in the paper and OpenLTH:
            ``weight_decay * w`` is added to the gradient before momentum
            (or the moments) sees it; `Trainer` adds it. For ``"adamw"`` it
            is Keras's decoupled decay. Pruned weights stay exactly zero
            under either.
        lr_boundaries: iterations at which the learning rate is divided by 10.
        warmup_iterations: linear warmup from 0 to `learning_rate`.
        eval_every: evaluate validation and test sets every this many steps.
        augment: random flip + 4-pixel pad/crop of training batches.
        eval_batch_size: batch size for evaluation.
    """

    iterations: int
    batch_size: int
    optimizer: str = "adam"
    learning_rate: float = 1.2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_boundaries: tuple = ()
    warmup_iterations: int = 0
    eval_every: int = 100
    augment: bool = False
    eval_batch_size: int = 1000


@keras.saving.register_keras_serializable(package="lth_keras")
class WarmupPiecewiseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `learning_rate`, then /10 at each boundary.

    Args:
        learning_rate: the rate after warmup.
        boundaries: iterations where the rate is divided by 10.
        warmup_iterations: length of the linear warmup (0 for none).

    Example:

    ```python
    lr = WarmupPiecewiseDecay(0.1, boundaries=(20_000, 25_000))
    float(lr(21_000))   # 0.01
    ```
    """

    def __init__(self, learning_rate, boundaries=(), warmup_iterations=0, offset=None):
        self.learning_rate = float(learning_rate)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.warmup_iterations = int(warmup_iterations)
        # A variable added to the step (not part of the config): a rewound
        # round's schedule continues from k while the optimizer's own count,
        # and with it Adam's bias correction, restarts at 0.
        self.offset = offset

    def __call__(self, step):
        if self.offset is not None:
            step = keras.ops.cast(step, "int64") + keras.ops.cast(self.offset, "int64")
        return schedule.warmup_piecewise(
            step, self.learning_rate, self.boundaries, self.warmup_iterations, keras.ops
        )

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "boundaries": self.boundaries,
            "warmup_iterations": self.warmup_iterations,
        }


def make_optimizer(hp: TrainingHparams, schedule_offset=None) -> keras.optimizers.Optimizer:
    """The round's optimizer, with the warmup/step-decay schedule if any.

    `schedule_offset` (a variable, optional) is added to the optimizer's
    iteration count wherever the schedule is evaluated (see
    `Trainer.reset_round`).

    Under the ``mixed_float16`` global dtype policy it is wrapped in a
    `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling);
    ``mixed_bfloat16`` needs none.

    Only ``"adamw"`` carries `hp.weight_decay` itself (decoupled). For
    ``"sgd"`` and ``"adam"`` the weight decay is coupled L2, which lives in
    the gradient (`coupled_l2`), not in the optimizer: `Trainer` adds it.
    """
    lr = hp.learning_rate
    if hp.lr_boundaries or hp.warmup_iterations:
        lr = WarmupPiecewiseDecay(hp.learning_rate, hp.lr_boundaries, hp.warmup_iterations, schedule_offset)
    optimizer = schedule.build_optimizer(keras.optimizers, hp.optimizer, lr, hp.momentum, hp.weight_decay)
    if keras.mixed_precision.dtype_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def coupled_l2(hp: TrainingHparams) -> float:
    """The L2 coefficient `Trainer` adds to the gradients (0.0 for none).

    The paper's ResNet-18/VGG-19 (and OpenLTH) train with SGD, momentum 0.9
    and weight decay 1e-4 added to the gradient, ``g + 1e-4 * w``, so
    momentum amplifies it about tenfold against a decoupled decay of the
    same coefficient. ``"adamw"`` keeps Keras's decoupled decay instead.
    """
    return schedule.coupled_weight_decay(hp.optimizer, hp.weight_decay)


class Trainer:
    """Trains a (masked) model on a `Dataset`, a round at a time.

    Args:
        model: a built Keras model producing logits.
        data: a `lth_keras.datasets.Dataset`.
        hp: `TrainingHparams`.
        seed: seeds the data order and augmentation; the model's own
            initialisation is seeded where it is built.
        strategy: a `tf.distribute.Strategy`; the model must have been built
            under its scope. Defaults to the current strategy.
        xla_update: with a single replica, compile each step's gradient
            masking and optimizer update with XLA (about 25% off a
            LeNet-300-100 step on CPU). Same math, rounding may differ in
            the last bit.

    The optimizer is created here (inside the strategy's scope) and its state
    is reset with `reset_round`.

    Masks cost one elementwise pass per kernel per step, not two: each
    compiled call first zeroes the pruned weights, the step reads kernels
    as stored (`lth_keras.layers.premasked`) and multiplies their gradients
    by the masks. Pruned weights therefore stay exactly zero and the forward
    pass equals ``weight * mask``, provided their optimizer state is zero:
    call `reset_round` after changing masks, as every IMP round does.
    These are the invariants `lth_keras.layers.premasked` relies on: the
    Trainer zeroes pruned weights at the start of each compiled call, traces
    its step inside `premasked` and multiplies the kernels' gradients by
    their masks, so pruned weights (and, after `reset_round` /
    `lth_keras.snapshots.reset_optimizer_state`, their optimizer moments)
    stay exactly zero.

    Rewinding: a round that starts from the weights at iteration k (Frankle
    et al. 2019) runs ``reset_round(iteration=k)`` and
    ``train_round(round_start=k)``: the learning-rate schedule starts at k
    (warmup and drops continue, not replay), the optimizer's own state
    restarts as a fresh optimizer's (see `reset_round`), the data order
    continues from position k, and the round runs the remaining
    ``iterations - k`` steps.
    """

    def __init__(self, model, data, hp: TrainingHparams, seed: int = 0, strategy=None,
                 xla_update: bool = True):
        if hp.iterations < 1:
            raise ValueError(f"iterations must be positive, got {hp.iterations}.")
        if hp.eval_every < 1 or hp.eval_every > hp.iterations:
            raise ValueError(
                f"eval_every must be in [1, iterations={hp.iterations}], got {hp.eval_every}."
            )
        self.model = model
        self.data = data
        self.hp = hp
        self.seed = int(seed)
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if hp.batch_size % replicas:
            raise ValueError(
                f"batch_size ({hp.batch_size}) must be divisible by the number of "
                f"replicas ({replicas})."
            )
        self.per_replica_batch = hp.batch_size // replicas
        n_train = len(data.x_train)
        if hp.batch_size > n_train:
            raise ValueError(f"batch_size ({hp.batch_size}) exceeds the training set ({n_train}).")
        self.steps_per_epoch = n_train // hp.batch_size
        with self.strategy.scope():
            self._schedule_offset = tf.Variable(0, dtype=tf.int64, trainable=False, name="schedule_offset")
            self.optimizer = make_optimizer(hp, self._schedule_offset)
            self.optimizer.build(model.trainable_variables)
        self._loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        self._mask_of = {id(mw.weight): mw.mask for mw in layers.masked_weights(model)}
        self._l2 = coupled_l2(hp)
        # Arrays live on the device once; batches are gathered there.
        with tf.device(self._data_device()):
            self._x_train = tf.constant(data.x_train, tf.float32)
            self._y_train = tf.constant(data.y_train, tf.int32)
            self._eval_sets = {
                "val": (tf.constant(data.x_val, tf.float32), tf.constant(data.y_val, tf.int32)),
                "test": (tf.constant(data.x_test, tf.float32), tf.constant(data.y_test, tf.int32)),
            }
        # With several local replicas (GPUs, TPU cores) each one keeps its own
        # copy of the training set, so batches are gathered on its device.
        self._replica_data = ()
        if len(self._worker_devices()) > 1:
            x_np = np.asarray(data.x_train, np.float32)
            y_np = np.asarray(data.y_train, np.int32)
            self._replica_data = (
                self.strategy.experimental_distribute_values_from_function(lambda _: tf.identity(x_np)),
                self.strategy.experimental_distribute_values_from_function(lambda _: tf.identity(y_np)),
            )
        # With one replica the gradient masks and the optimizer update compile
        # into one XLA cluster, fusing the elementwise chain (mask, moments,
        # weight) into about one pass per variable. Across replicas the
        # update all-reduces, which stays outside XLA.
        self._fused_update = None
        # Only without cross-replica reduction: a MirroredStrategy of one
        # replica (one GPU) still all-reduces inside optimizer.apply, which a
        # nested compiled function cannot do.
        single = isinstance(self.strategy, tf.distribute.OneDeviceStrategy) or (
            type(self.strategy).__name__ == "_DefaultDistributionStrategy"
        )
        if xla_update and replicas == 1 and single:
            self._fused_update = tf.function(self._update, jit_compile=True)
        self._train_chunk = tf.function(self._train_chunk_fn, reduce_retracing=True)
        self._eval_split = tf.function(self._eval_split_fn, reduce_retracing=True)

    def _worker_devices(self):
        try:
            return tuple(self.strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: wherever TF places ops
            return ()

    def _data_device(self):
        devices = self._worker_devices()
        if not devices:
            return None
        return devices[0] if len(devices) == 1 else "/cpu:0"

    # -- compiled pieces ---------------------------------------------------

    def _permutation(self, epoch):
        return schedule.epoch_permutation(tf.shape(self._x_train)[0], self.seed, epoch)

    def _replica_step(self, iteration, perm, x_train=None, y_train=None):
        ctx = tf.distribute.get_replica_context()
        b = self.per_replica_batch
        pos = iteration % self.steps_per_epoch
        start = pos * self.hp.batch_size + ctx.replica_id_in_sync_group * b
        idx = perm[start : start + b]
        x = tf.gather(self._x_train if x_train is None else x_train, idx)
        y = tf.gather(self._y_train if y_train is None else y_train, idx)
        if self.hp.augment:
            from lth_keras.datasets.augment import augment_flip_crop

            x = augment_flip_crop(
                x, tf.stack([self.seed + 7919 * (1 + ctx.replica_id_in_sync_group), tf.cast(iteration, tf.int32)])
            )
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(x, training=True), tf.float32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_sum(ce) / self.hp.batch_size
            if self.model.losses:
                loss += tf.add_n(self.model.losses) / self.strategy.num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        if self._loss_scaled and self.strategy.num_replicas_in_sync > 1:
            # The loss-scale optimizer decides from each replica's own
            # gradients whether the step overflowed; make that decision the
            # same everywhere, or replicas would skip different steps.
            bad = tf.add_n([tf.reduce_sum(tf.cast(~tf.math.is_finite(g), tf.float32)) for g in grads])
            bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad)
            grads = [tf.where(bad > 0, tf.cast(float("nan"), g.dtype), g) for g in grads]
        (self._fused_update or self._update)(grads)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return tf.reduce_sum(ce), correct

    def _update(self, grads):
        # The forward pass read the kernels unmasked (see _train_chunk_fn), so
        # the mask enters here, once: pruned entries get exactly zero gradient.
        # Coupled L2 joins the gradient before the mask, so it is masked too.
        variables = self.model.trainable_variables
        if self._l2:
            grads = [self._with_l2(g, v) for g, v in zip(grads, variables)]
        grads = [self._masked_gradient(g, v) for g, v in zip(grads, variables)]
        self.optimizer.apply(grads, variables)

    def _with_l2(self, grad, variable):
        if grad is None:
            return grad
        if isinstance(grad, tf.IndexedSlices):
            grad = tf.convert_to_tensor(grad)
        value = tf.convert_to_tensor(variable)
        return grad + tf.cast(self._l2, grad.dtype) * tf.cast(value, grad.dtype)

    def _masked_gradient(self, grad, variable):
        mask = self._mask_of.get(id(variable))
        if grad is None or mask is None:
            return grad
        if isinstance(grad, tf.IndexedSlices):
            grad = tf.convert_to_tensor(grad)
        return grad * tf.cast(mask, grad.dtype)

    def _train_chunk_fn(self, start, n_steps, replica_data=()):
        loss_sum = tf.constant(0.0)
        correct_sum = tf.constant(0.0)
        perm = self._permutation(start // self.steps_per_epoch)
        # Makes the premasked forward pass exact even if masks were assigned
        # without zeroing their weights.
        layers.apply_masks_to_weights(self.model)
        # One elementwise pass over each kernel per step (the gradient mask in
        # _replica_step) instead of two (weight * mask forward and backward).
        with layers.premasked(self.model):
            for i in tf.range(n_steps):
                iteration = start + i
                if iteration % self.steps_per_epoch == 0:
                    perm = self._permutation(iteration // self.steps_per_epoch)
                loss, correct = self.strategy.run(
                    self._replica_step, args=(iteration, perm) + tuple(replica_data)
                )
                loss_sum += self.strategy.reduce("SUM", loss, axis=None)
                correct_sum += self.strategy.reduce("SUM", correct, axis=None)
        return loss_sum, correct_sum

    def _eval_batch_fn(self, x, y):
        logits = tf.cast(self.model(x, training=False), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_sum(ce), tf.reduce_sum(correct)

    def _eval_split_fn(self, x, y):
        # The whole split in one compiled call: batches are sliced on device.
        bs = self.hp.eval_batch_size
        n = tf.shape(x)[0]
        loss_sum = tf.constant(0.0)
        correct_sum = tf.constant(0.0)
        for start in tf.range(0, n, bs):
            l, c = self._eval_batch_fn(x[start : start + bs], y[start : start + bs])
            loss_sum += l
            correct_sum += c
        return loss_sum, correct_sum

    # -- public ------------------------------------------------------------

    def evaluate(self, split: str) -> tuple[float, float]:
        """(mean loss, accuracy) on ``"val"`` or ``"test"``."""
        x, y = self._eval_sets[split]
        n = int(x.shape[0])
        if n == 0:
            return float("nan"), float("nan")
        loss, correct = self._eval_split(x, y)
        return float(loss) / n, float(correct) / n

    def reset_round(self, iteration: int = 0, schedule_iteration: int | None = None) -> None:
        """Re-initialises the optimizer (moments, momentum, accumulators and
        its iteration count) for a round that starts at `iteration`: 0 for
        a round from θ0, the rewind iteration k for a rewound round.

        A rewound round's learning-rate schedule (warmup, drops) continues
        from k, while the optimizer's own step count restarts at 0 with its
        zeroed moments, as a freshly built optimizer's does: Adam's bias
        correction then scales the first steps as it should. (With the
        count itself at k, Adam's correction would already have saturated
        and its first steps from zeroed moments would be about 3x too
        large.) This is OpenLTH's behaviour: its PyTorch optimizer restarts
        while the schedule is stepped to k. The step count is the
        optimizer's ``iterations`` plus k (`round_iteration`).

        `schedule_iteration` (default `iteration`) is where the schedule
        starts instead: fine-tuning passes ``hp.iterations`` to train at
        the schedule's final rate (Renda et al. 2020).
        """
        if not 0 <= iteration < self.hp.iterations:
            raise ValueError(f"iteration must be in [0, {self.hp.iterations}), got {iteration}.")
        snapshots.reset_optimizer_state(self.optimizer)
        self._schedule_offset.assign(iteration if schedule_iteration is None else int(schedule_iteration))

    @property
    def round_iteration(self) -> int:
        """The learning-rate schedule's iteration: where `reset_round` put
        it plus the optimizer's steps since."""
        return int(self._schedule_offset.numpy()) + int(self.optimizer.iterations.numpy())

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step."""
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def train_steps(self, start: int, n_steps: int) -> tuple[float, float]:
        """Runs `n_steps` optimizer steps from iteration `start`.

        Returns the mean training loss and accuracy over those steps.
        """
        loss_sum, correct_sum = self._train_chunk(
            tf.constant(start, tf.int32), tf.constant(n_steps, tf.int32), self._replica_data
        )
        seen = n_steps * self.hp.batch_size
        return float(loss_sum) / seen, float(correct_sum) / seen

    def train_round(
        self,
        *,
        start_iteration: int | None = None,
        round_start: int = 0,
        curve: list | None = None,
        on_eval: Callable[[dict], None] | None = None,
        stops: dict[int, Callable[[int], None]] | None = None,
    ) -> list[dict]:
        """Trains from `start_iteration` to `hp.iterations`, evaluating every
        `hp.eval_every` steps after `round_start` (and at the end).

        Args:
            start_iteration: where a resumed round continues (default:
                `round_start`).
            round_start: the iteration the round starts at: 0, or the rewind
                iteration k of a rewound round, which trains the
                ``iterations - k`` steps k+1 … T with curve rows at
                k + eval_every, k + 2 * eval_every, … and T. Call
                ``reset_round(iteration=k)`` first.
            curve: rows already measured (when resuming); extended in place.
            on_eval: called with each new curve row (progress, checkpoints).
            stops: ``{iteration: fn}`` extra points where the loop pauses to
                call ``fn(iteration)``, e.g. to capture the rewind weights.

        Returns:
            The learning curve: dicts with iteration, train_loss,
            train_accuracy, val_loss, val_accuracy, test_accuracy, and
            seconds (training time since the round started, this process).
        """
        return schedule.train_and_measure(
            self.train_steps, self.evaluate, self.hp.iterations, self.hp.eval_every,
            start_iteration=start_iteration, round_start=round_start, curve=curve, on_eval=on_eval, stops=stops,
        )

    # -- checkpoints -------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Model and optimizer state by position (see `load_state_arrays`)."""
        arrays = {f"model/{i:05d}": np.array(v.numpy()) for i, v in enumerate(self.model.variables)}
        arrays.update(
            {f"optimizer/{i:05d}": np.array(v.numpy()) for i, v in enumerate(self.optimizer.variables)}
        )
        arrays["schedule/offset"] = np.array(self._schedule_offset.numpy())
        return arrays

    def load_state_arrays(self, arrays) -> None:
        """Restores what `state_arrays` returned (same architecture)."""
        for prefix, variables in (("model", self.model.variables), ("optimizer", self.optimizer.variables)):
            keys = sorted(k for k in arrays if k.startswith(prefix + "/"))
            if len(keys) != len(variables):
                raise ValueError(
                    f"Checkpoint has {len(keys)} {prefix} variables, expected {len(variables)}."
                )
            for key, variable in zip(keys, variables):
                variable.assign(arrays[key])
        # A checkpoint without it was written when a rewound round's
        # optimizer count itself started at k: offset 0 continues it as it was.
        self._schedule_offset.assign(int(arrays.get("schedule/offset", 0)))
