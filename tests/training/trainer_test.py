"""Tests for lth_keras.training: the schedule, the compiled Trainer loop,
masking under every optimizer, data order, determinism and checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lth_keras import datasets, layers, models, training


def _synthetic(shape=(28, 28, 1), sizes=(1200, 200), validation_size=200, seed=0):
    return datasets.load(
        "synthetic", validation_size=validation_size, seed=seed,
        synthetic_shape=shape, synthetic_sizes=sizes,
    )


def _hp(**kw):
    base = dict(iterations=100, batch_size=60, optimizer="adam", learning_rate=1.2e-3, eval_every=50)
    base.update(kw)
    return training.TrainingHparams(**base)


def _variables(model):
    return [np.array(v.numpy()) for v in model.variables]


def _kernels(model):
    return {mw.name: np.array(mw.weight.numpy()) for mw in layers.masked_weights(model)}


# -- WarmupPiecewiseDecay ---------------------------------------------------


def _schedule_values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_piecewise_decay_divides_by_ten_at_each_boundary():
    lr = training.WarmupPiecewiseDecay(0.1, boundaries=(20_000, 25_000))
    steps = [0, 1, 19_999, 20_000, 20_001, 24_999, 25_000, 29_999]
    expected = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    np.testing.assert_allclose(_schedule_values(lr, steps), expected, rtol=1e-6)


def test_warmup_is_linear_then_constant():
    peak, warmup = 0.03, 200
    lr = training.WarmupPiecewiseDecay(peak, warmup_iterations=warmup)
    values = _schedule_values(lr, range(0, 400))
    during, after = values[:warmup], values[warmup:]
    # Linear: constant increments of peak/warmup, from about 0 to peak.
    np.testing.assert_allclose(np.diff(during), peak / warmup, rtol=1e-4)
    assert 0 < during[0] <= peak / warmup * (1 + 1e-6)
    assert during[-1] == pytest.approx(peak, rel=1e-6)
    np.testing.assert_allclose(after, peak, rtol=1e-6)
    # Halfway through warmup, about half the rate (within one step's increment).
    assert abs(values[warmup // 2] - peak / 2) <= peak / warmup


def test_warmup_and_boundaries_combined_like_resnet18():
    # The paper's ResNet-18 ticket schedule: 20K warmup to 0.03, /10 at 20K and 25K.
    lr = training.WarmupPiecewiseDecay(0.03, boundaries=(20_000, 25_000), warmup_iterations=20_000)
    steps = np.array([0, 9_999, 19_999, 20_000, 24_999, 25_000, 29_999])
    # Independent reference: linear ramp reaching the peak at the end of
    # warmup (whether step 0 counts as 0 or 1/20000 of it: one increment's slack).
    ramp = np.minimum(1.0, steps / 20_000)
    decay = 10.0 ** -((steps >= 20_000).astype(int) + (steps >= 25_000).astype(int))
    np.testing.assert_allclose(
        _schedule_values(lr, steps), 0.03 * ramp * decay, rtol=1e-5, atol=0.03 / 20_000 * 1.0001
    )
    assert float(lr(19_999)) == pytest.approx(0.03, rel=1e-4)
    assert float(lr(20_000)) == pytest.approx(0.003, rel=1e-5)


def test_optimizer_follows_the_schedule_as_it_steps():
    hp = _hp(optimizer="sgd", learning_rate=0.1, momentum=0.9, lr_boundaries=(2, 4))
    opt = training.make_optimizer(hp)
    var = keras.Variable(np.zeros(1, np.float32))
    opt.build([var])
    seen = []
    for _ in range(6):
        seen.append(float(opt.learning_rate))
        opt.apply([tf.ones(1)], [var])
    np.testing.assert_allclose(seen, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


# -- pruned weights stay zero -------------------------------------------------


@pytest.mark.parametrize(
    "optimizer,extra",
    [
        ("adam", {}),
        ("sgd", {"momentum": 0.9, "learning_rate": 0.05, "weight_decay": 1e-2}),
        ("adamw", {"weight_decay": 1e-2}),
    ],
)
@pytest.mark.parametrize("xla_update", [True, False])
def test_pruned_weights_stay_exactly_zero_through_trainer(optimizer, extra, xla_update):
    data = _synthetic()
    model = models.build("lenet", data.input_shape, data.num_classes, seed=1)
    trainer = training.Trainer(model, data, _hp(optimizer=optimizer, **extra), seed=0, xla_update=xla_update)
    rng = np.random.default_rng(0)

    def random_mask(previous):
        return {n: (m * (rng.random(m.shape) < 0.7)).astype(np.float32) for n, m in previous.items()}

    masks = random_mask({n: np.ones(w.shape, np.float32) for n, w in _kernels(model).items()})
    layers.set_masks(model, masks)
    before = _kernels(model)
    trainer.train_round()
    after = _kernels(model)
    for name, mask in masks.items():
        assert np.all(after[name][mask == 0] == 0.0), name
        assert np.any(after[name][mask == 1] != before[name][mask == 1]), name  # it trained

    # A second round with a smaller mask: the optimizer's moments/momentum for
    # the newly pruned weights are non-zero now, so only a proper reset keeps
    # them at zero.
    masks = random_mask(masks)
    layers.set_masks(model, masks)
    trainer.reset_round()
    trainer.train_round()
    after = _kernels(model)
    for name, mask in masks.items():
        assert np.all(after[name][mask == 0] == 0.0), name


class _MultiplyingMaskedDense(layers.MaskedDense):
    """Computes with ``kernel * mask`` in every call, ignoring `premasked`."""

    def call(self, inputs, training=None):
        x = keras.ops.matmul(inputs, keras.ops.multiply(self.kernel, self.mask)) + self.bias
        return self.activation(x)


@pytest.mark.parametrize("xla_update", [True, False])
def test_premasked_trainer_step_equals_multiplying_by_the_mask(xla_update, deterministic_ops):
    # The Trainer reads kernels unmasked and masks their gradients instead;
    # a model whose layers multiply by the mask in every call must follow the
    # same trajectory, even when masks were assigned directly (without zeroing
    # the pruned weights) and the mask changes between rounds. Not bit for
    # bit: the two graphs fuse matmul, bias and relu differently (last-ulp
    # differences from the second step on).
    data = _synthetic()
    ours = models.build("lenet", data.input_shape, data.num_classes, seed=3)
    inputs = keras.Input(data.input_shape)
    x = keras.layers.Flatten()(inputs)
    for units, activation in ((300, "relu"), (100, "relu"), (data.num_classes, None)):
        x = _MultiplyingMaskedDense(units, activation=activation)(x)
    multiplying = keras.Model(inputs, x)
    for a, b in zip(layers.masked_weights(ours), layers.masked_weights(multiplying)):
        b.weight.assign(a.weight.numpy())
        b.layer.bias.assign(a.layer.bias.numpy())
    hp = _hp(iterations=40, eval_every=40)
    trainers = [training.Trainer(m, data, hp, seed=5, xla_update=xla_update) for m in (ours, multiplying)]
    rng = np.random.default_rng(1)
    keep = {mw.name: np.ones(mw.mask.shape, np.float32) for mw in layers.masked_weights(ours)}
    for round_ in range(2):
        keep = {n: k * (rng.random(k.shape) < 0.6).astype(np.float32) for n, k in keep.items()}
        for model, trainer in zip((ours, multiplying), trainers):
            for mw, mask in zip(layers.masked_weights(model), keep.values()):
                mw.mask.assign(mask)
            trainer.reset_round()
            trainer.train_steps(0, 20)
            trainer.train_steps(20, 20)
        for a, b, mask in zip(layers.masked_weights(ours), layers.masked_weights(multiplying), keep.values()):
            np.testing.assert_allclose(a.weight.numpy(), b.weight.numpy(), rtol=1e-4, atol=1e-6)
            assert np.all(a.weight.numpy()[mask == 0] == 0)
            assert np.signbit(a.weight.numpy()[mask == 0]).sum() == 0  # +0.0, not -0.0
        np.testing.assert_allclose(trainers[0].evaluate("test"), trainers[1].evaluate("test"), rtol=1e-5)


# -- data order ----------------------------------------------------------------


def _one_hot_problem(n=12, classes=3):
    """Example i is the one-hot vector e_i: after an SGD step on a zero-
    initialised linear model, row i of the kernel moved iff i was in the batch."""
    rng = np.random.default_rng(0)
    eye = np.eye(n, dtype=np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return datasets.Dataset(
        name="onehot", x_train=eye, y_train=y, x_val=eye[:2], y_val=y[:2],
        x_test=eye[:2], y_test=y[:2], num_classes=classes, augment=False, source="test",
    )


def _batches(seed, steps, data=None, batch_size=4, start=0):
    data = data or _one_hot_problem()
    n = len(data.x_train)
    model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(3, use_bias=False, kernel_initializer="zeros")])
    hp = _hp(iterations=100, batch_size=batch_size, optimizer="sgd", learning_rate=1.0, eval_every=100)
    trainer = training.Trainer(model, data, hp, seed=seed)
    kernel = model.trainable_variables[0]
    batches = []
    for it in range(start, start + steps):
        before = kernel.numpy().copy()
        trainer.train_steps(it, 1)
        moved = np.flatnonzero(np.any(kernel.numpy() != before, axis=1))
        batches.append(frozenset(moved.tolist()))
    return batches


def test_each_epoch_visits_every_example_once_and_is_reshuffled():
    batches = _batches(seed=0, steps=9)  # 3 epochs of 3 batches of 4
    epochs = [batches[0:3], batches[3:6], batches[6:9]]
    for epoch in epochs:
        assert all(len(b) == 4 for b in epoch)
        assert frozenset().union(*epoch) == frozenset(range(12))
    # Shuffled at all, and differently every epoch.
    assert epochs[0] != [frozenset(range(0, 4)), frozenset(range(4, 8)), frozenset(range(8, 12))]
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]


def test_data_order_depends_on_the_seed_and_only_on_it():
    assert _batches(seed=0, steps=6) == _batches(seed=0, steps=6)
    assert _batches(seed=0, steps=6) != _batches(seed=1, steps=6)


def test_data_order_is_a_function_of_the_iteration():
    # Starting a fresh trainer at iteration 4 (as a resumed round does) sees
    # the batches an uninterrupted run sees at iterations 4 and 5.
    assert _batches(seed=3, steps=6)[4:] == _batches(seed=3, steps=2, start=4)


# -- determinism and checkpoints ---------------------------------------------------


def _trained_weights(seed_model, seed_data, steps, hp=None, chunks=None):
    data = _synthetic()
    model = models.build("lenet", data.input_shape, data.num_classes, seed=seed_model)
    trainer = training.Trainer(model, data, hp or _hp(), seed=seed_data)
    start = 0
    for n in chunks or [steps]:
        trainer.train_steps(start, n)
        start += n
    return _variables(model)


def _assert_identical(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_same_seed_and_initial_weights_give_bit_identical_weights(deterministic_ops):
    a = _trained_weights(seed_model=0, seed_data=0, steps=40)
    b = _trained_weights(seed_model=0, seed_data=0, steps=40)
    _assert_identical(a, b)
    c = _trained_weights(seed_model=0, seed_data=1, steps=40)  # other data order
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_state_arrays_round_trip_continues_identically(deterministic_ops):
    # Warmup makes the step count matter and Adam has moments: both must be restored.
    hp = _hp(warmup_iterations=50)
    data = _synthetic()
    k = 25  # not a multiple of the 16 steps per epoch (1000 examples / 60)

    straight = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    trainer = training.Trainer(straight, data, hp, seed=7)
    trainer.train_steps(0, 2 * k)

    first = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    t1 = training.Trainer(first, data, hp, seed=7)
    t1.train_steps(0, k)
    arrays = t1.state_arrays()

    second = models.build("lenet", data.input_shape, data.num_classes, seed=123)  # other init
    t2 = training.Trainer(second, data, hp, seed=7)
    t2.load_state_arrays(arrays)
    t2.train_steps(k, k)
    _assert_identical(_variables(straight), _variables(second))


def test_load_state_arrays_rejects_another_architecture():
    data = _synthetic()
    lenet = training.Trainer(models.build("lenet", data.input_shape, seed=0), data, _hp(), seed=0)
    other = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(), keras.layers.Dense(10)])
    small = training.Trainer(other, data, _hp(), seed=0)
    with pytest.raises(ValueError):
        small.load_state_arrays(lenet.state_arrays())


# -- argument checks -------------------------------------------------------------


def test_batch_size_larger_than_training_set_raises():
    data = _synthetic(sizes=(300, 50), validation_size=100)  # 200 training examples
    model = models.build("lenet", data.input_shape, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        training.Trainer(model, data, _hp(batch_size=201), seed=0)
    training.Trainer(model, data, _hp(batch_size=200), seed=0)  # the boundary is fine


def test_eval_every_larger_than_iterations_raises():
    data = _synthetic()
    model = models.build("lenet", data.input_shape, seed=0)
    with pytest.raises(ValueError, match="eval_every"):
        training.Trainer(model, data, _hp(iterations=100, eval_every=101), seed=0)
    with pytest.raises(ValueError, match="iterations"):
        training.Trainer(model, data, _hp(iterations=0, eval_every=1), seed=0)


# -- the curve ---------------------------------------------------------------------


def test_train_round_evaluates_every_eval_every_and_at_the_end():
    data = _synthetic()
    model = models.build("lenet", data.input_shape, seed=0)
    trainer = training.Trainer(model, data, _hp(iterations=130, eval_every=50), seed=0)
    curve = trainer.train_round()
    assert [r["iteration"] for r in curve] == [50, 100, 130]
    # Test accuracy of the last row is the model's accuracy on the test set,
    # computed here independently.
    logits = model.predict(data.x_test, verbose=0)
    assert curve[-1]["test_accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == data.y_test))
    # The synthetic task is learnable: well above the 10% chance level.
    assert curve[-1]["val_accuracy"] > 0.5


# -- every model trains through Trainer ---------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "lenet",
        pytest.param("conv2", marks=pytest.mark.slow),
        pytest.param("conv4", marks=pytest.mark.slow),
        pytest.param("conv6", marks=pytest.mark.slow),
        pytest.param("resnet18", marks=pytest.mark.slow),
        pytest.param("vgg19", marks=pytest.mark.slow),
    ],
)
def test_every_model_takes_trainer_steps_with_its_paper_optimizer(name):
    shape = (28, 28, 1) if name == "lenet" else (32, 32, 3)
    data = _synthetic(shape=shape, sizes=(12, 4), validation_size=4)  # 8 training examples
    model = models.build(name, data.input_shape, data.num_classes, seed=0)
    d = models.defaults(name)
    hp = training.TrainingHparams(
        iterations=2, batch_size=4, optimizer=d.optimizer, learning_rate=d.learning_rate,
        momentum=d.momentum, weight_decay=d.weight_decay, eval_every=2, augment=d.augment,
    )
    trainer = training.Trainer(model, data, hp, seed=0)
    # Half of every masked weight pruned: training must keep those at zero.
    rng = np.random.default_rng(0)
    masks = {n: (rng.random(w.shape) < 0.5).astype(np.float32) for n, w in _kernels(model).items()}
    layers.set_masks(model, masks)
    before = _kernels(model)
    curve = trainer.train_round()
    assert [r["iteration"] for r in curve] == [2]
    assert np.isfinite(curve[0]["train_loss"])
    after = _kernels(model)
    for n, mask in masks.items():
        assert np.all(after[n][mask == 0] == 0.0), n
    assert any(np.any(after[n] != before[n]) for n in masks)


# -- rewinding: a rewound round continues from iteration k ----------------------------


def test_rewound_round_continues_from_iteration_k_like_an_uninterrupted_run(deterministic_ops):
    # Plain SGD has no state but the iteration count, so a round rewound to θk
    # with its optimizer reset to iteration k must reproduce the last T - k
    # steps of an uninterrupted run bit for bit: same learning rates (the
    # schedule drops at 60, after k) and the same batches (k is not a
    # multiple of the 16 steps per epoch).
    data = _synthetic()
    k, total = 37, 100
    hp = _hp(optimizer="sgd", learning_rate=0.05, lr_boundaries=(60,), warmup_iterations=20,
             iterations=total, eval_every=25)
    straight = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    t1 = training.Trainer(straight, data, hp, seed=5)
    t1.train_steps(0, total)

    rewound = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    t2 = training.Trainer(rewound, data, hp, seed=5)
    t2.train_steps(0, k)
    theta_k = _variables(rewound)
    t2.train_steps(k, 20)  # a round goes on past k; the rewind brings it back
    for v, value in zip(rewound.variables, theta_k):
        v.assign(value)
    t2.reset_round(iteration=k)
    assert t2.round_iteration == k
    assert t2.learning_rate == pytest.approx(0.05)  # warmup (20) is over at k, the drop (60) to come
    curve = t2.train_round(round_start=k)
    assert [r["iteration"] for r in curve] == [62, 87, 100]
    assert int(t2.optimizer.iterations.numpy()) == total - k  # T - k steps ran
    assert t2.round_iteration == total
    _assert_identical(_variables(straight), _variables(rewound))


def test_rewound_adam_restarts_its_bias_correction_while_the_schedule_continues(deterministic_ops):
    # OpenLTH: the rewound round's optimizer is a fresh one (step count 0,
    # zeroed moments) and only the schedule is stepped to k. Adam's first
    # step from zeroed moments then moves every weight by about lr(k), as a
    # fresh Adam's first step does. With the count itself at k, Adam's bias
    # correction would scale it by sqrt(1 - 0.999^(k+1)) / (1 - 0.9^(k+1)) x
    # 3.16: about 0.6 lr(k) at k = 40, 2.9 lr(k) at k = 2,000.
    data = _synthetic()
    k = 40
    hp = _hp(optimizer="adam", learning_rate=1e-3, warmup_iterations=80, iterations=100)
    model = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    trainer = training.Trainer(model, data, hp, seed=1)
    trainer.train_steps(0, 5)  # moments and count that the reset must clear
    trainer.reset_round(iteration=k)
    lr_k = 1e-3 * (k + 1) / 80  # the warmup continues from k
    assert trainer.learning_rate == pytest.approx(lr_k)
    before = _kernels(model)
    trainer.train_steps(k, 1)
    after = _kernels(model)
    moved = np.concatenate([np.abs(after[n] - before[n]).ravel() for n in before])
    moved = moved[moved > 0]
    # |Δ| = lr·|g|/(|g| + ε) ≤ lr on the first step of a fresh Adam.
    assert moved.max() <= lr_k * (1 + 1e-4)
    assert np.median(moved) > 0.9 * lr_k


def test_rewound_round_resumes_from_a_checkpoint_identically(deterministic_ops):
    data = _synthetic()
    k = 30
    hp = _hp(optimizer="adam", warmup_iterations=50, iterations=100, eval_every=20)

    def fresh():
        model = models.build("lenet", data.input_shape, data.num_classes, seed=0)
        trainer = training.Trainer(model, data, hp, seed=2)
        trainer.reset_round(iteration=k)
        return model, trainer

    model_a, ta = fresh()
    curve_a = ta.train_round(round_start=k)
    model_b, tb = fresh()
    seen = []

    class Stop(Exception):
        pass

    def interrupt(row):
        seen.append(row)
        if row["iteration"] == 70:
            raise Stop

    with pytest.raises(Stop):
        tb.train_round(round_start=k, on_eval=interrupt)
    arrays = tb.state_arrays()
    model_c, tc = fresh()
    tc.load_state_arrays(arrays)
    curve_c = tc.train_round(round_start=k, start_iteration=70, curve=[dict(r) for r in seen])
    assert [r["iteration"] for r in curve_a] == [r["iteration"] for r in curve_c] == [50, 70, 90, 100]
    _assert_identical(_variables(model_a), _variables(model_c))


def test_train_round_refuses_a_start_outside_the_round():
    data = _synthetic()
    trainer = training.Trainer(models.build("lenet", data.input_shape, seed=0), data, _hp(), seed=0)
    with pytest.raises(ValueError, match="round_start"):
        trainer.train_round(round_start=100)
    with pytest.raises(ValueError, match="start_iteration"):
        trainer.train_round(round_start=50, start_iteration=10)
    with pytest.raises(ValueError, match="iteration"):
        trainer.reset_round(iteration=-1)


# -- weight decay: coupled L2 for sgd/adam, decoupled for adamw ------------------------


def _full_batch_gradients(model, data):
    x = tf.constant(data.x_train, tf.float32)
    y = tf.constant(data.y_train, tf.int32)
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize("xla_update", [True, False])
def test_sgd_weight_decay_is_coupled_l2_through_momentum(xla_update):
    # Batch = the whole training set, so each step's gradient is the
    # full-batch gradient whatever the order; computed here independently.
    data = _synthetic(sizes=(400, 50), validation_size=100)  # 300 training examples
    lr, mom, wd = 0.05, 0.9, 0.01
    hp = _hp(optimizer="sgd", learning_rate=lr, momentum=mom, weight_decay=wd, batch_size=300)
    model = models.build("lenet", data.input_shape, data.num_classes, seed=3)
    trainer = training.Trainer(model, data, hp, seed=0, xla_update=xla_update)
    rng = np.random.default_rng(0)
    masks = {n: (rng.random(w.shape) < 0.6).astype(np.float32) for n, w in _kernels(model).items()}
    layers.set_masks(model, masks)
    names = {id(mw.weight): mw.name for mw in layers.masked_weights(model)}
    mask_list = [masks.get(names.get(id(v))) for v in model.trainable_variables]

    w = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    velocity = [np.zeros_like(x) for x in w]
    for step in range(2):
        grads = _full_batch_gradients(model, data)
        trainer.train_steps(step, 1)
        for i, (g, m) in enumerate(zip(grads, mask_list)):
            g = g + wd * w[i]  # coupled: L2 joins the gradient before momentum
            if m is not None:
                g = g * m
            velocity[i] = mom * velocity[i] - lr * g
            w[i] = w[i] + velocity[i]
        for i, v in enumerate(model.trainable_variables):
            np.testing.assert_allclose(v.numpy(), w[i], rtol=2e-4, atol=2e-6)
    for name, mask in masks.items():
        assert np.all(_kernels(model)[name][mask == 0] == 0.0), name


def test_adamw_weight_decay_stays_decoupled():
    data = _synthetic(sizes=(400, 50), validation_size=100)
    lr, wd = 1e-3, 0.5
    hp = _hp(optimizer="adamw", learning_rate=lr, weight_decay=wd, batch_size=300)
    model = models.build("lenet", data.input_shape, data.num_classes, seed=3)
    trainer = training.Trainer(model, data, hp, seed=0)
    w0 = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    grads = _full_batch_gradients(model, data)
    trainer.train_steps(0, 1)
    eps = 1e-7
    for v, w, g in zip(model.trainable_variables, w0, grads):
        # Keras AdamW, step 1: w <- w (1 - lr wd), then the Adam step, whose
        # bias-corrected update is lr * g / (|g| + eps) (not involving wd).
        m, s = 0.1 * g, 0.001 * g * g
        alpha = lr * np.sqrt(1 - 0.999) / (1 - 0.9)
        expected = w * (1 - lr * wd) - alpha * m / (np.sqrt(s) + eps)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_weight_decay_help_says_coupled_for_sgd_and_decoupled_for_adamw():
    from absl import flags

    from lth_keras import main

    flag_values = flags.FlagValues()
    main.define_flags(flag_values=flag_values)
    text = " ".join(flag_values["weight_decay"].help.lower().split())
    assert "sgd and adam coupled l2" in text and "adamw decoupled" in text


def test_mirrored_strategy_with_one_replica_trains():
    # --strategy=mirrored on a machine with one GPU (or none): one replica,
    # whose optimizer update still all-reduces.
    data = _synthetic()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        model = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    trainer = training.Trainer(model, data, _hp(iterations=20, eval_every=10), seed=0, strategy=strategy)
    before = _kernels(model)
    curve = trainer.train_round()
    assert [r["iteration"] for r in curve] == [10, 20]
    assert all(np.any(_kernels(model)[n] != before[n]) for n in before)
