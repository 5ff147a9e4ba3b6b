"""Tests for lth_keras.callbacks.imp: IterativeMagnitudePruning inside model.fit.

Reference values are captured by the tests themselves (θ0 read before fit,
θk read by a recorder callback at step k, trained weights read by a recorder
placed before the IMP callback) or computed from the paper's formula.
"""

import json
import types

import keras
import numpy as np
import pandas as pd
import pytest

import lth_keras
from lth_keras import layers as lth_layers
from tests.helpers import lenet as L

LENET = dict(zip(L.LENET_NAMES, L.LENET_TOTALS))
LENET_RATE = {"fc1": 0.2, "fc2": 0.2, "fc3": 0.1}  # output at half the dense rate
BATCH = 60
N = 300  # 5 steps per epoch


def lenet_expected(rounds, start=None):
    start = start or {}
    return {n: L.expected_alive(t, LENET_RATE[n], rounds, start.get(n)) for n, t in LENET.items()}


def counts(masks):
    return {n: int(np.count_nonzero(m)) for n, m in masks.items()}


def run_imp(seed=0, epochs=4, optimizer=None, model=None, extra_before=(), extra_after=(), x=None, y=None, batch_size=BATCH, steps_per_execution=1, **imp_kwargs):
    """One deterministic IMP fit; returns what a test needs."""
    L.deterministic(seed)
    model = model or L.lenet()
    L.compile_model(model, optimizer, steps_per_execution=steps_per_execution)
    if x is None:
        x, y = L.data(N, model.input_shape[-1] if len(model.input_shape) == 2 else None, seed=seed)
    imp_kwargs.setdefault("round_epochs", 1)
    imp = lth_keras.IterativeMagnitudePruning(**{"rates": 0.2, "verbose": 0, **imp_kwargs})
    before, after = L.EpochRecorder(), L.EpochRecorder()
    theta0 = L.all_variables(model)
    kernels0, masks0 = L.kernels(model), L.masks(model)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True,
              callbacks=[*extra_before, before, imp, after, *extra_after])
    return types.SimpleNamespace(model=model, imp=imp, before=before, after=after, theta0=theta0,
                                 kernels0=kernels0, masks0=masks0)


def assert_reset_to(after_kernels, after_masks, reference_kernels):
    for name, kernel in after_kernels.items():
        keep = after_masks[name] != 0
        assert np.array_equal(kernel[keep], reference_kernels[name][keep]), name
        assert np.all(kernel[~keep] == 0), name


@pytest.fixture(scope="module")
def lenet_run():
    """LeNet-300-100, IMP(rates=0.2, round_epochs=1), epochs=4: 3 prunings."""
    return run_imp(seed=0, epochs=4)


# ============================================================== LeNet counts and P_m


def test_lenet_counts_per_round_follow_the_formula(lenet_run):
    imp, before, after = lenet_run.imp, lenet_run.before, lenet_run.after
    expected = lenet_expected(3)
    assert [expected[n][3] for n in L.LENET_NAMES] == [120422, 15360, 729]
    assert len(imp.rounds) == 4
    for k in range(4):
        entry = imp.rounds[k]
        assert entry["round"] == k and entry["steps"] == N // BATCH
        assert counts(before.masks[k]) == {n: expected[n][k] for n in LENET}  # masks trained in round k
        for n, total in LENET.items():
            assert entry["pm_per_layer"][n] == pytest.approx(100.0 * expected[n][k] / total)
        assert entry["remaining"] == sum(expected[n][k] for n in LENET)
        assert entry["total"] == sum(LENET.values())
    for k in range(3):
        assert counts(after.masks[k]) == {n: expected[n][k + 1] for n in LENET}
    assert counts(L.masks(lenet_run.model)) == {n: expected[n][3] for n in LENET}
    assert round(imp.rounds[3]["pm"], 1) == 51.3  # the paper's P_m after 3 rounds
    assert imp.rounds[0]["pm"] == 100.0


def test_each_round_prunes_the_smallest_trained_weights_per_layer(lenet_run):
    before, after = lenet_run.before, lenet_run.after
    for k in range(3):
        for n in LENET:
            trained = np.abs(before.kernels[k][n])
            old, new = before.masks[k][n] != 0, after.masks[k][n] != 0
            assert not np.any(new & ~old)  # nothing revived
            removed = old & ~new
            assert removed.sum() == round(LENET_RATE[n] * old.sum())
            assert trained[removed].max() <= trained[new].min()


def test_reset_restores_theta0_bit_for_bit(lenet_run):
    run = lenet_run
    theta0_kernels = {n: run.theta0[f"{n}/kernel"] for n in LENET}
    for k in range(3):
        assert_reset_to(run.after.kernels[k], run.after.masks[k], theta0_kernels)
        # Biases (unmasked) are reset too; they had moved during training.
        for n in LENET:
            assert np.array_equal(run.after.variables[k][f"{n}/bias"], run.theta0[f"{n}/bias"])
            assert not np.array_equal(run.before.variables[k][f"{n}/bias"], run.theta0[f"{n}/bias"])
            assert not np.array_equal(run.before.kernels[k][n], theta0_kernels[n])
    assert np.array_equal(run.kernels0["fc1"], theta0_kernels["fc1"])


def test_optimizer_state_reset_every_round(lenet_run):
    run = lenet_run
    steps = N // BATCH
    assert run.before.iterations == [steps] * 4  # each round counts from 0
    assert run.after.iterations == [0, 0, 0, steps]
    assert int(run.model.optimizer.iterations.numpy()) == steps
    # Adam moments were zeroed by the last reset: a pruned weight's moments
    # stay exactly zero through the last round.
    opt = run.model.optimizer
    checked = []
    for n in LENET:
        layer = run.model.get_layer(n)
        pruned = layer.mask.numpy() == 0
        for slot in opt.variables:
            if slot.path.endswith(f"{n}_kernel_momentum") or slot.path.endswith(f"{n}_kernel_velocity"):
                assert np.all(slot.numpy()[pruned] == 0), slot.path
                checked.append(slot.path)
    assert len(checked) == 2 * len(LENET), [v.path for v in opt.variables]  # m and v of every kernel


def test_to_csv_and_to_json(lenet_run, tmp_path):
    imp = lenet_run.imp
    imp.to_csv(str(tmp_path / "rounds.csv"))
    imp.to_json(str(tmp_path / "rounds.json"))
    table = pd.read_csv(tmp_path / "rounds.csv")
    assert len(table) == 4
    assert list(table["round"]) == [0, 1, 2, 3]
    assert {"pm", "remaining", "total", "steps", "loss", "pm/fc1", "pm/fc2", "pm/fc3"} <= set(table.columns)
    expected = lenet_expected(3)
    assert list(table["remaining"]) == [sum(expected[n][k] for n in LENET) for k in range(4)]
    np.testing.assert_allclose(table["pm/fc3"], [100.0 * expected["fc3"][k] / 1000 for k in range(4)])
    assert round(table["pm"].iloc[-1], 1) == 51.3
    data = json.loads((tmp_path / "rounds.json").read_text())
    assert isinstance(data, list) and len(data) == 4
    assert [d["remaining"] for d in data] == list(table["remaining"])
    assert data[3]["pm_per_layer"]["fc1"] == pytest.approx(100.0 * 120422 / 235200)
    assert np.isfinite(data[0]["logs"]["loss"])


# ============================================================== rewinding


def test_rewind_resets_survivors_to_step_k():
    k = 3
    step_k = L.StepRecorder(k)
    run = run_imp(seed=1, epochs=3, rewind_step=k, extra_before=[step_k])
    assert step_k.values is not None
    theta_k = {n: step_k.values[f"{n}/kernel"] for n in LENET}
    for n in LENET:  # θk is not θ0: the test can tell them apart
        assert not np.array_equal(theta_k[n], run.theta0[f"{n}/kernel"])
    for r in range(2):
        assert_reset_to(run.after.kernels[r], run.after.masks[r], theta_k)
        for n in LENET:
            assert np.array_equal(run.after.variables[r][f"{n}/bias"], step_k.values[f"{n}/bias"])
    assert counts(run.after.masks[1]) == {n: v[2] for n, v in lenet_expected(2).items()}


@pytest.mark.parametrize("scheduled", [True, False], ids=["schedule", "constant_lr"])
def test_rewind_with_round_steps(scheduled):
    k = 3
    step_k = L.StepRecorder(k)
    # 5 steps per epoch, 3 epochs = 15 steps: a first round of 5, then rounds
    # of 5 - k = 2 steps that continue from iteration k, as in OpenLTH.
    lr = keras.optimizers.schedules.PiecewiseConstantDecay([4], [1.2e-3, 1.2e-4]) if scheduled else 1.2e-3
    run = run_imp(seed=2, epochs=3, optimizer=keras.optimizers.Adam(lr), round_epochs=None, round_steps=5,
                  rewind_step=k, extra_before=[step_k])
    assert [r["steps"] for r in run.imp.rounds] == [5, 2, 2, 2, 2, 2]
    theta_k = {n: step_k.values[f"{n}/kernel"] for n in LENET}
    # The round boundary is at the end of epoch 0: the recorder after IMP sees the reset.
    assert_reset_to(run.after.kernels[0], run.after.masks[0], theta_k)
    assert counts(run.after.masks[0]) == {n: v[1] for n, v in lenet_expected(1).items()}
    if scheduled:  # the schedule continues from k
        assert run.after.iterations[0] == k
        assert run.before.iterations[1] == k + 1  # step 10 is the first step of the round after 8..9
        assert int(run.model.optimizer.iterations.numpy()) == 5  # every round ends at T
    else:  # nothing to continue: the count restarts with Adam's moments, as a fresh Adam's
        assert run.after.iterations[0] == 0
        assert run.before.iterations[1] == 1
        assert int(run.model.optimizer.iterations.numpy()) == 5 - k
    assert counts(L.masks(run.model)) == {n: v[5] for n, v in lenet_expected(5).items()}


# ============================================================== optimizers

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1.2e-3),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "adamw": lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_with_optimizer(name):
    run = run_imp(seed=3, epochs=3, optimizer=OPTIMIZERS[name]())
    # During every round (recorder before IMP = trained weights) and at the end.
    for k in range(3):
        for n in LENET:
            assert np.all(run.before.kernels[k][n][run.before.masks[k][n] == 0] == 0), (k, n)
    for layer in lth_layers.masked_layers(run.model):
        kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
        assert np.all(kernel[mask == 0] == 0)
        assert np.count_nonzero(mask == 0) > 0
    steps = N // BATCH
    assert int(run.model.optimizer.iterations.numpy()) == steps  # last round only
    assert run.after.iterations[:2] == [0, 0]


def test_without_optimizer_reset_iterations_keep_counting():
    # Contrast to the test above: shows the iteration check can fail.
    run = run_imp(seed=3, epochs=2, optimizer=keras.optimizers.SGD(0.05, momentum=0.9), reset_optimizer=False)
    assert int(run.model.optimizer.iterations.numpy()) == 2 * (N // BATCH)


def test_mixed_float16_with_metrics():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        L.deterministic(12)
        model = L.lenet(input_dim=20, hidden=(16, 12), classes=10)
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        x, y = L.data(120, 20, seed=12)
        imp = lth_keras.IterativeMagnitudePruning(0.2, round_epochs=1, verbose=0)
        model.fit(x, y, batch_size=40, epochs=3, verbose=0, callbacks=[imp])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    totals = {"fc1": 320, "fc2": 192, "fc3": 120}
    rates = {"fc1": 0.2, "fc2": 0.2, "fc3": 0.1}
    assert counts(L.masks(model)) == {n: L.expected_alive(t, rates[n], 2)[-1] for n, t in totals.items()}
    for layer in lth_layers.masked_layers(model):
        assert layer.kernel.dtype == "float32"
        assert np.all(layer.kernel.numpy()[layer.mask.numpy() == 0] == 0)
    assert int(model.optimizer.iterations.numpy()) == 3
    assert "accuracy" in imp.rounds[-1]["logs"]


# ============================================================== user-defined MaskedLayer


@keras.saving.register_keras_serializable(package="lth_callbacks_test")
class UserMaskedLinear(lth_keras.MaskedLayer, keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_normal", name="kernel")
        self.add_mask("kernel")

    def call(self, inputs):
        return keras.ops.relu(keras.ops.matmul(inputs, self.masked("kernel")))


def test_user_masked_layers_are_pruned_by_the_callback():
    L.deterministic(4)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.MaskedDepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            keras.layers.Flatten(),
            UserMaskedLinear(32, name="user"),
            lth_keras.MaskedDense(10, name="out"),
        ]
    )
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, size=120)
    run = run_imp(seed=4, epochs=3, model=model, x=x, y=y, batch_size=40, rates={"conv": 0.3, "dense": 0.2})
    totals = {"dw": 3 * 3 * 3 * 2, "user": 6 * 6 * 6 * 32, "out": 320}
    rates = {"dw": 0.3, "user": 0.2, "out": 0.1}
    for r in range(2):
        for n, t in totals.items():
            assert int(np.count_nonzero(run.after.masks[r][n])) == L.expected_alive(t, rates[n], r + 1)[-1], n
    assert_reset_to(run.after.kernels[1], run.after.masks[1], run.kernels0)
    final = counts(L.masks(run.model))
    assert final["dw"] < totals["dw"] and final["user"] < totals["user"]


# ============================================================== global pruning


def test_global_scope_in_fit():
    run = run_imp(seed=5, epochs=3, rates=0.2, scope="global", exclude=["fc3"])
    included = ["fc1", "fc2"]
    for k in range(2):
        old = {n: run.before.masks[k][n] != 0 for n in included}
        new = {n: run.after.masks[k][n] != 0 for n in included}
        trained = {n: np.abs(run.before.kernels[k][n]) for n in included}
        removed = np.concatenate([trained[n][old[n] & ~new[n]] for n in included])
        kept = np.concatenate([trained[n][new[n]] for n in included])
        alive = sum(int(old[n].sum()) for n in included)
        assert removed.size == round(0.2 * alive)
        assert removed.max() <= kept.min()
        assert np.array_equal(run.after.masks[k]["fc3"], np.ones((100, 10)))
        # The excluded layer is still reset with the others.
        assert np.array_equal(run.after.kernels[k]["fc3"], run.theta0["fc3/kernel"])
    # Global ranking is not layerwise: the layers end at different densities.
    final = counts(L.masks(run.model))
    assert final["fc1"] / LENET["fc1"] != pytest.approx(final["fc2"] / LENET["fc2"], abs=1e-3)


# ============================================================== determinism


def test_same_seed_same_masks_different_seed_different_masks():
    masks = [L.masks(run_imp(seed=s, epochs=2).model) for s in (7, 7, 8)]
    for n in LENET:
        assert np.array_equal(masks[0][n], masks[1][n]), n
    assert any(not np.array_equal(masks[0][n], masks[2][n]) for n in LENET)


# ============================================================== steps_per_execution


def test_steps_per_execution_gives_the_same_counts():
    # 300 examples / batch 20 = 15 steps per epoch; 2 epochs = 3 rounds of 10.
    results = {}
    for spe in (1, 5):
        run = run_imp(seed=9, epochs=2, batch_size=20, steps_per_execution=spe, round_epochs=None, round_steps=10)
        assert [r["steps"] for r in run.imp.rounds] == [10, 10, 10]
        assert int(run.model.optimizer.iterations.numpy()) == 10
        results[spe] = [r["pm_per_layer"] for r in run.imp.rounds], counts(L.masks(run.model))
    expected = lenet_expected(2)
    assert results[1][1] == results[5][1] == {n: v[2] for n, v in expected.items()}
    assert results[1][0] == results[5][0]


@pytest.mark.parametrize("kwargs", [dict(round_steps=7), dict(round_epochs=1, rewind_step=3)])
def test_steps_not_multiple_of_steps_per_execution_raises(kwargs):
    L.deterministic(0)
    model = L.compile_model(L.lenet(input_dim=8, hidden=(4,), classes=2), steps_per_execution=5)
    counter = L.BatchCounter()
    imp = lth_keras.IterativeMagnitudePruning(0.2, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="steps_per_execution"):  # 14 steps per epoch, 4 rounds of 7
        model.fit(np.zeros((28, 8), "float32"), np.zeros(28), batch_size=2, epochs=2, verbose=0, callbacks=[imp, counter])
    assert counter.batches == 0


# ============================================================== pre-sparse masks


def test_masks_sparse_at_train_begin_are_honoured():
    L.deterministic(10)
    model = L.lenet()
    rng = np.random.default_rng(10)
    start = {}
    for layer in lth_layers.masked_layers(model):
        # A raw mask assign: the kernel still holds values where mask == 0.
        layer.mask.assign((rng.random(layer.mask.shape) < 0.6).astype("float32"))
        start[layer.name] = int(np.count_nonzero(layer.mask.numpy()))
        assert np.any(layer.kernel.numpy()[layer.mask.numpy() == 0] != 0)
    run = run_imp(seed=10, epochs=3, model=model)
    begin_kernels, begin_masks = run.after.at_train_begin
    for n in LENET:
        assert np.all(begin_kernels[n][begin_masks[n] == 0] == 0)
        assert np.array_equal(begin_masks[n], run.masks0[n])
    expected = lenet_expected(2, start=start)
    for k in range(3):
        assert counts(run.before.masks[k]) == {n: expected[n][k] for n in LENET}
    assert_reset_to(run.after.kernels[1], run.after.masks[1], run.kernels0)
    assert not any(np.any(run.after.masks[1][n][run.masks0[n] == 0]) for n in LENET)  # never revived


# ============================================================== errors and validation


def tiny_model():
    # Eager: these fits are a few steps long; tracing would dominate.
    return L.compile_model(L.lenet(input_dim=4, hidden=(3,), classes=2), run_eagerly=True)


def test_a_plain_model_is_masked_in_place_and_one_with_nothing_to_prune_raises_in_fit():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    imp = lth_keras.IterativeMagnitudePruning(0.5, round_epochs=1, verbose=0, output_layer=None)
    model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=2, verbose=0, callbacks=[imp])
    assert [r["pm"] for r in imp.rounds] == [100.0, 50.0]
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="IterativeMagnitudePruning found nothing to prune"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 4)), epochs=1, verbose=0,
                  callbacks=[lth_keras.IterativeMagnitudePruning(0.2, round_epochs=1, verbose=0)])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rates=1.0, round_epochs=1), "rates"),
        (dict(rates=-0.1, round_epochs=1), "rates"),
        (dict(rates=True, round_epochs=1), "rates"),
        (dict(rates=float("nan"), round_epochs=1), "rates"),
        (dict(rates={"dense": 0.2}, round_epochs=1, scope="global"), "rates"),
        (dict(rates=0.2), "round_epochs"),
        (dict(rates=0.2, round_epochs=1, round_steps=5), "round_epochs"),
        (dict(rates=0.2, round_epochs=0), "round_epochs"),
        (dict(rates=0.2, round_steps=2.5), "round_steps"),
        (dict(rates=0.2, round_epochs=1, scope="local"), "scope"),
        (dict(rates=0.2, round_epochs=1, rewind_step=-1), "rewind_step"),
        (dict(rates=0.2, round_steps=5, rewind_step=5), "rewind_step"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lth_keras.IterativeMagnitudePruning(**kwargs)


@pytest.mark.parametrize("key", ["fc9", "Dense", "output_layer"])
def test_unknown_rate_name_in_fit_raises_naming_it(key):
    L.deterministic(0)
    model = tiny_model()
    imp = lth_keras.IterativeMagnitudePruning({key: 0.2}, round_epochs=1, verbose=0)
    with pytest.raises(ValueError, match=repr(key)):
        model.fit(np.zeros((8, 4), "float32"), np.zeros(8), batch_size=4, epochs=2, verbose=0, callbacks=[imp])


@pytest.mark.parametrize("rates", [{"fc9": 0.2}, {"dense": 1.5}])
def test_bad_rate_dict_rejected_before_training(rates):
    L.deterministic(0)
    model = tiny_model()
    counter = L.BatchCounter()
    with pytest.raises(ValueError):
        imp = lth_keras.IterativeMagnitudePruning(rates, round_epochs=1, verbose=0)
        model.fit(np.zeros((8, 4), "float32"), np.zeros(8), batch_size=4, epochs=2, verbose=0, callbacks=[imp, counter])
    assert counter.batches == 0


def test_epochs_not_multiple_of_round_epochs_raises():
    model = tiny_model()
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_epochs=2, verbose=0)
    with pytest.raises(ValueError, match="multiple of round_epochs"):
        model.fit(np.zeros((8, 4), "float32"), np.zeros(8), batch_size=4, epochs=3, verbose=0, callbacks=[imp])


def test_rewind_step_beyond_first_round_raises():
    model = tiny_model()
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_epochs=1, rewind_step=100, verbose=0)
    with pytest.raises(ValueError, match="rewind_step"):
        model.fit(np.zeros((8, 4), "float32"), np.zeros(8), batch_size=4, epochs=2, verbose=0, callbacks=[imp])


# ============================================================== every fit setting


def _seeded_lenet_layers(seed=0):
    init = lambda i: keras.initializers.GlorotNormal(seed=seed + i)  # noqa: E731
    return [
        lth_keras.MaskedDense(16, activation="relu", kernel_initializer=init(0), name="fc1"),
        lth_keras.MaskedDense(12, activation="relu", kernel_initializer=init(1), name="fc2"),
        lth_keras.MaskedDense(4, kernel_initializer=init(2), name="fc3"),
    ]


def test_unbuilt_model_resets_to_its_initial_weights():
    # No keras.Input: TensorFlow would build the model inside the first step.
    L.deterministic(13)
    unbuilt = keras.Sequential(_seeded_lenet_layers())
    reference = keras.Sequential([keras.Input((20,)), *_seeded_lenet_layers()])
    theta0 = L.kernels(reference)
    x, y = L.data(120, 20, 4, seed=13)
    L.compile_model(unbuilt)
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_epochs=1, verbose=0)
    after = L.EpochRecorder()
    unbuilt.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[imp, after])
    assert len(imp.rounds) == 2 and [r["steps"] for r in imp.rounds] == [6, 6]
    assert_reset_to(after.kernels[0], after.masks[0], theta0)
    assert counts(L.masks(unbuilt)) == {"fc1": 256, "fc2": 154, "fc3": 43}


def _unknown_length_dataset(n=200, batch=20):
    import tensorflow as tf

    x, y = L.data(n, 20, 4, seed=14)
    # filter() hides the cardinality: fit cannot know the epoch's length.
    return tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(batch)


def test_unknown_data_length_needs_num_rounds():
    L.deterministic(14)
    model = L.compile_model(L.lenet(input_dim=20, hidden=(16, 12), classes=4))
    counter = L.BatchCounter()
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_steps=5, verbose=0)
    with pytest.raises(ValueError, match="num_rounds"):
        model.fit(_unknown_length_dataset(), epochs=1, verbose=0, shuffle=False, callbacks=[imp, counter])
    assert counter.batches == 0


def test_unknown_data_length_never_prunes_after_the_last_round():
    L.deterministic(14)
    model = L.compile_model(L.lenet(input_dim=20, hidden=(16, 12), classes=4))
    counter = L.BatchCounter()
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_steps=4, num_rounds=2, verbose=0)
    model.fit(_unknown_length_dataset(), epochs=1, verbose=0, shuffle=False, callbacks=[imp, counter])  # 10 batches
    assert [r["steps"] for r in imp.rounds] == [4, 4]
    assert counter.batches == 8  # the fit stops after the last round
    # The model holds the last round's mask and its trained weights.
    assert sum(counts(L.masks(model)).values()) == imp.rounds[-1]["remaining"]
    assert imp.rounds[-1]["remaining"] < imp.rounds[0]["remaining"]


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="Keras's PyTorch trainer has no steps_per_execution")
def test_step_counts_are_exact_with_steps_per_execution():
    # 10 batches per epoch in executions of 4, 4 and 2 steps.
    run = run_imp(seed=15, epochs=2, batch_size=30, steps_per_execution=4)
    assert [r["steps"] for r in run.imp.rounds] == [10, 10]
    assert run.before.iterations == [10, 10]


def test_round_steps_not_dividing_the_fit_is_refused():
    L.deterministic(0)
    model = tiny_model()
    counter = L.BatchCounter()
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_steps=3, verbose=0)
    with pytest.raises(ValueError, match="not a whole number of rounds"):  # 2 epochs x 4 steps = 8
        model.fit(np.zeros((16, 4), "float32"), np.zeros(16), batch_size=4, epochs=2, verbose=0, callbacks=[imp, counter])
    assert counter.batches == 0


class ReversedAttributes(keras.Model):
    """Layers assigned in the opposite order to the one they are called in."""

    def __init__(self):
        super().__init__()
        self.head = lth_keras.MaskedDense(3, name="head")
        self.body = lth_keras.MaskedDense(8, activation="relu", name="body")

    def call(self, x):
        return self.head(self.body(x))


def test_subclassed_model_must_name_its_output_layer():
    L.deterministic(0)
    x, y = L.data(40, 6, 3, seed=0)
    model = L.compile_model(ReversedAttributes())
    counter = L.BatchCounter()
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_epochs=1, verbose=0)
    with pytest.raises(ValueError, match="output_layer"):
        model.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[imp, counter])
    assert counter.batches == 0
    model = L.compile_model(ReversedAttributes())
    imp = lth_keras.IterativeMagnitudePruning(0.2, round_epochs=1, output_layer="head", verbose=0)
    model.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[imp])
    assert counts(L.masks(model)) == {"head": 24 - round(0.1 * 24), "body": 48 - round(0.2 * 48)}


@pytest.mark.parametrize("rates", [{"d1": 1.5}, {"dense": -0.1}, {"conv": float("nan")}, {"fc1": True}])
def test_bad_rate_in_a_dict_is_refused_in_the_constructor(rates):
    with pytest.raises(ValueError, match="rates"):
        lth_keras.IterativeMagnitudePruning(rates, round_epochs=1)


# -- reset="lr" and reset="finetune" (Renda et al. 2020) ------------------------


class _RoundStart(keras.callbacks.Callback):
    """Placed before the IMP callback: the trained weights at each step's end
    (before IMP prunes), and the state each step starts from."""

    def __init__(self):
        super().__init__()
        self.ends, self.starts = [], []

    def _state(self):
        kernel = self.model.layers[0].kernel
        return (keras.ops.convert_to_numpy(kernel), lth_layers.get_masks(self.model),
                int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

    def on_train_batch_begin(self, batch, logs=None):
        self.starts.append(self._state())

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(self._state())


def _reset_run(reset, rewind_iteration=0):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(2)])
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([5], [0.1, 0.01])
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = lth_keras.IterativeMagnitudePruning(0.5, round_steps=8, rewind_iteration=rewind_iteration, reset=reset,
                                              verbose=0)
    spy = _RoundStart()
    steps = 8 + 2 * (8 - rewind_iteration)  # 3 rounds: T, then T - k each; 8 steps per epoch
    model.fit(x, y, batch_size=8, epochs=steps // 8, verbose=0, callbacks=[spy, imp])
    return spy, imp


@pytest.mark.parametrize("k", [0, 4])
def test_lr_rewinding_starts_from_the_pruned_trained_weights_with_the_schedule_at_k(k):
    spy, imp = _reset_run("lr", rewind_iteration=k)
    trained, _, _ = spy.ends[7]            # the end of round 0, before pruning
    start, masks, iteration = spy.starts[8]  # what round 1 starts from
    np.testing.assert_array_equal(start, trained * masks["hidden"])
    assert masks["hidden"].mean() == pytest.approx(0.5)
    assert iteration == k
    assert len(imp.rounds) == 3


def test_weight_rewinding_still_starts_from_the_weights_at_k():
    spy, _ = _reset_run("weights", rewind_iteration=4)
    rewind_point, _, _ = spy.ends[3]       # the weights after 4 steps
    start, masks, iteration = spy.starts[8]
    np.testing.assert_array_equal(start, rewind_point * masks["hidden"])
    assert iteration == 4


def test_finetune_continues_from_the_pruned_trained_weights_at_the_final_rate():
    spy, imp = _reset_run("finetune")
    trained, _, _ = spy.ends[7]
    start, masks, iteration = spy.starts[8]
    np.testing.assert_array_equal(start, trained * masks["hidden"])
    assert iteration == 8  # past the boundary at 5: the final rate, 0.01
    assert len(imp.rounds) == 3


def test_reset_must_be_a_known_kind():
    with pytest.raises(ValueError, match="`reset`"):
        lth_keras.IterativeMagnitudePruning(0.2, round_steps=10, reset="rewind")
