"""What the network sweeps share: the checks, run once per network.

`applications_test` (``keras.applications``) and `keras_hub_test` (KerasHub
backbones from tiny configs) each list their networks as `Network`s and a
`BACKEND_SUBSET`, then subclass `SweepChecks`. Every check is written here
once; the test modules hold only the networks.

Each network is built once (a class-scoped, indirectly parametrized fixture:
pytest runs every check of one network, frees it, then builds the next). Its
`Subject` makes the prunable copy and the pruned model lazily and remembers
them, so the checks give the same answers in any order:

1. the `make_prunable` copy computes what the original computes, and the
   original is left as it was;
2. the masked share of the kernels (sum of mask sizes over the sum of the sizes
   of every trainable weight of rank >= 2) reaches the network's floor;
3. after ``prune_model(model, 0.5, scope="global")`` `fold_masks` gives the
   masked model's outputs;
4. ``model.save`` + `lth_keras.load_model` is exact: same variables, masks
   and outputs;
5. a few `fit` steps keep every pruned weight at exactly zero;
6. `add_masks` masks a plain model in place (the same object and layers, the
   same outputs, the floor's share of the kernels), and `prune_model` prunes
   it;
7. `IterativeMagnitudePruning` prunes a plain model inside `fit` (two
   rounds of one step).

Off TensorFlow only the module's `BACKEND_SUBSET` runs (`for_backend`).
"""

from __future__ import annotations

import gc
from typing import Callable, NamedTuple

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import callbacks as lth_callbacks
from lth_keras import layers as lth_layers

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"
BATCH = 2
SEED = 1234
PRUNE_RATE = 0.5
FIT_STEPS = 3


class Network(NamedTuple):
    """One network of a sweep.

    Attributes:
        name: the test id.
        build: ``build() -> (model, inputs)``: a built, uncompiled model and a
            batch of `BATCH` inputs (numpy, any structure the model takes).
        floor: the smallest acceptable masked share of the kernels (check 2),
            measured; below 1.0 when the network holds kernels in layers that
            are not plain Keras kernel layers (named in `excluded`).
        excluded: what the floor leaves out, for the reader.
        in_place: also run checks 6 and 7, which build the network a second
            time (check 7 traces a second `fit`); off for the networks where
            that would cost most of the sweep's time.
    """

    name: str
    build: Callable
    floor: float = 1.0
    excluded: str = ""
    in_place: bool = True


def for_backend(networks, subset):
    """Every network on TensorFlow; on JAX and PyTorch only those in `subset`."""
    names = [n.name for n in networks]
    unknown = sorted(set(subset) - set(names))
    assert not unknown, f"BACKEND_SUBSET names unknown networks {unknown}"
    assert len(set(names)) == len(names), "network names must be unique"
    if ON_TENSORFLOW:
        return list(networks)
    return [n for n in networks if n.name in subset]


# --------------------------------------------------------------------------
# Numbers.


def to_numpy(tree):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), tree)


def predict(model, inputs):
    """Inference-mode outputs as a numpy structure."""
    return to_numpy(model(inputs, training=False))


def leaves(tree):
    return keras.tree.flatten(tree)


def assert_same_structure(actual, expected):
    keras.tree.assert_same_structure(actual, expected)


def assert_finite(tree, what):
    for leaf in leaves(tree):
        assert np.all(np.isfinite(leaf)), f"{what}: outputs are not all finite"


def assert_outputs_close(actual, expected, what, rtol=1e-5):
    """Tight float32 comparison, leaf by leaf; atol scales with the output."""
    assert_same_structure(actual, expected)
    for a, e in zip(leaves(actual), leaves(expected)):
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * max(scale, 1e-3), err_msg=what)


def kernel_size_total(model):
    """Sum of the sizes of every trainable weight of rank >= 2."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights if len(v.shape) >= 2)


def masked_size_total(model):
    return sum(int(np.prod(mw.mask.shape)) for mw in lth_layers.masked_weights(model))


def masked_share(model):
    return masked_size_total(model) / kernel_size_total(model)


def state_variables(model):
    """The model's variables but its random seed states (which Keras does not
    restore: a loaded Dropout gets a new seed)."""
    return [v for v in model.variables if "seed_generator" not in v.path]


def variable_values(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in state_variables(model)]


def variable_values_by_path(variables):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in variables}


def fit_data(model, inputs, outputs, steps=FIT_STEPS, seed=SEED):
    """`steps` batches of random inputs (same kinds as `inputs`) and targets."""
    rng = np.random.default_rng(seed)

    def more(a):
        a = np.asarray(a)
        reps = np.concatenate([a] * steps, axis=0)
        if np.issubdtype(a.dtype, np.floating):
            return reps + rng.normal(scale=0.1, size=reps.shape).astype(a.dtype)
        return reps  # token ids, masks, segment ids: reuse the valid ones

    xs = keras.tree.map_structure(more, inputs)
    ys = keras.tree.map_structure(
        lambda y: rng.normal(size=(y.shape[0] * steps,) + y.shape[1:]).astype("float32"), outputs
    )
    return xs, ys


def compile_sgd(model):
    # mse on every output (a dict of outputs gets the loss on each): works for
    # logits and for backbone features alike. A large rate so training moves.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")


# --------------------------------------------------------------------------
# One network under test.


class Subject:
    """A network, built once, and what the checks derive from it (lazily)."""

    def __init__(self, network: Network):
        self.network = network
        keras.utils.set_random_seed(SEED)
        self.model, self.inputs = network.build()
        self.outputs = predict(self.model, self.inputs)
        assert_finite(self.outputs, f"{network.name} (original)")
        self._prunable = None
        self._pruned = False

    @property
    def prunable(self):
        """The `make_prunable` copy; its pre-pruning outputs and masks are kept."""
        if self._prunable is None:
            copy = lth_keras.make_prunable(self.model)
            self.prunable_outputs = predict(copy, self.inputs)
            self.initial_masks = lth_layers.get_masks(copy)
            self._prunable = copy
        return self._prunable

    @property
    def pruned(self):
        """The prunable copy after one global magnitude prune at 50%."""
        model = self.prunable
        if not self._pruned:
            lth_callbacks.prune_model(model, PRUNE_RATE, scope="global")
            self._pruned = True
        return model

    def fresh(self):
        """A second, plain instance of the network (for in-place checks)."""
        keras.utils.set_random_seed(SEED + 1)
        model, _ = self.network.build()
        return model

    def close(self):
        self.model = self._prunable = None
        keras.backend.clear_session()
        gc.collect()


def assert_pruned_weights_zero(model, what):
    for mw in lth_layers.masked_weights(model):
        mask = keras.ops.convert_to_numpy(mw.mask)
        weight = keras.ops.convert_to_numpy(mw.weight)
        assert mask.shape == weight.shape, f"{what}: {mw.name}: mask {mask.shape} vs weight {weight.shape}"
        pruned = mask == 0
        nonzero = int(np.count_nonzero(weight[pruned]))
        assert nonzero == 0, f"{what}: {mw.name}: {nonzero} of {int(pruned.sum())} pruned weights are not 0"


def assert_half_pruned(model, what):
    counts = lth_layers.count_weights(model)
    remaining = sum(r for r, _ in counts.values())
    total = sum(t for _, t in counts.values())
    expected = total - int(np.floor(total * PRUNE_RATE))
    # The same number of weights, give or take ties at the threshold.
    assert abs(remaining - expected) <= max(1, total // 10_000), (
        f"{what}: {remaining} of {total} masked weights remain after a global prune at "
        f"{PRUNE_RATE}; expected about {expected}"
    )


class SweepChecks:
    """The checks, for the networks a subclass lists in `NETWORKS`."""

    NETWORKS: list = []

    # Checks that build the network a second time: only for the networks
    # marked `in_place` (the cheaper ones), not collected for the others.
    IN_PLACE_CHECKS = ("test_add_masks_in_place", "test_imp_prunes_a_plain_model_in_fit")

    def pytest_generate_tests(self, metafunc):
        if "subject" in metafunc.fixturenames:
            second_build = metafunc.function.__name__ in self.IN_PLACE_CHECKS
            metafunc.parametrize(
                "subject",
                [pytest.param(n, id=n.name) for n in self.NETWORKS if n.in_place or not second_build],
                indirect=True,
                scope="class",
            )

    @pytest.fixture(scope="class")
    def subject(self, request):
        subject = Subject(request.param)
        yield subject
        subject.close()

    # 1
    def test_outputs_equal_before_pruning(self, subject):
        name = subject.network.name
        copy = subject.prunable
        assert copy is not subject.model
        assert lth_layers.masked_weights(copy), f"{name}: make_prunable masked nothing"
        assert_outputs_close(subject.prunable_outputs, subject.outputs, f"{name}: make_prunable copy vs original")
        # The argument is untouched: still plain, still computing the same.
        assert not lth_layers.masked_weights(subject.model), f"{name}: make_prunable masked its argument"
        assert_outputs_close(predict(subject.model, subject.inputs), subject.outputs, f"{name}: original after copy")

    # 2
    def test_masked_share_of_kernels(self, subject):
        name = subject.network.name
        copy = subject.prunable
        for mask_name, mask in subject.initial_masks.items():
            assert np.all(mask == 1), f"{name}: {mask_name}: a new mask is not all ones"
        trainable = {id(v) for v in copy.trainable_weights}
        for mw in lth_layers.masked_weights(copy):
            assert tuple(mw.mask.shape) == tuple(mw.weight.shape), mw.name
            assert id(mw.weight) in trainable, f"{name}: {mw.name}: masked weight is not trainable"
            assert id(mw.mask) not in trainable, f"{name}: {mw.name}: mask is trainable"
        share = masked_share(copy)
        floor = subject.network.floor
        assert floor <= share <= 1.0 + 1e-12, (
            f"{name}: masks cover {share:.6f} of the kernel weights "
            f"({masked_size_total(copy)} of {kernel_size_total(copy)}); floor {floor}"
            + (f" (floor leaves out: {subject.network.excluded})" if subject.network.excluded else "")
        )

    # 3
    def test_fold_masks_after_global_prune(self, subject):
        name = subject.network.name
        model = subject.pruned
        assert_half_pruned(model, name)
        assert_pruned_weights_zero(model, name)
        masked_outputs = predict(model, subject.inputs)
        assert_finite(masked_outputs, f"{name} (pruned)")
        folded = lth_keras.fold_masks(model)
        assert folded is not model
        assert not lth_layers.masked_weights(folded), f"{name}: fold_masks left masks"
        assert_outputs_close(predict(folded, subject.inputs), masked_outputs, f"{name}: folded vs masked")
        # Pruning the copy left the original alone.
        assert_outputs_close(predict(subject.model, subject.inputs), subject.outputs, f"{name}: original after prune")

    # 4
    def test_keras_file_round_trip_is_exact(self, subject, tmp_path):
        name = subject.network.name
        model = subject.pruned
        path = str(tmp_path / f"{name.replace('(', '_').replace(')', '')}.keras")
        model.save(path)
        loaded = lth_keras.load_model(path)
        # In model order: a sublayer Keras named automatically ("conv2d_4")
        # gets another number when the model is loaded, and so does its
        # masked weight's name; the file itself matches by attribute path.
        saved = [(mw.name, to_numpy(mw.mask)) for mw in lth_layers.masked_weights(model)]
        restored = [(mw.name, to_numpy(mw.mask)) for mw in lth_layers.masked_weights(loaded)]
        assert len(restored) == len(saved), f"{name}: {len(saved)} masks saved, {len(restored)} loaded"
        for (key, mask), (_, loaded_mask) in zip(saved, restored):
            np.testing.assert_array_equal(loaded_mask, mask, err_msg=f"{name}: mask {key}")
        masks = dict(saved)
        assert any(not np.all(m == 1) for m in masks.values()), f"{name}: nothing was pruned before saving"
        before, after = variable_values(model), variable_values(loaded)
        assert len(after) == len(before), f"{name}: {len(before)} variables saved, {len(after)} loaded"
        for i, (a, b) in enumerate(zip(after, before)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: variable {i} ({state_variables(model)[i].path})")
        assert_outputs_close(
            predict(loaded, subject.inputs), predict(model, subject.inputs), f"{name}: loaded vs saved", rtol=1e-6)

    # 5
    def test_fit_keeps_pruned_weights_zero(self, subject):
        name = subject.network.name
        model = subject.pruned
        masks = lth_layers.get_masks(model)
        before = variable_values_by_path(model.trainable_variables)
        compile_sgd(model)
        xs, ys = fit_data(model, subject.inputs, subject.outputs)
        model.fit(xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        after = lth_layers.get_masks(model)
        assert sorted(after) == sorted(masks), f"{name}: fit changed which weights are masked"
        for key, mask in after.items():
            np.testing.assert_array_equal(mask, masks[key], err_msg=f"{name}: fit changed mask {key}")
        assert_pruned_weights_zero(model, f"{name} after fit")
        # Some variable moved, so the steps ran. (Not necessarily a kernel: a
        # global prune at 50% of a fresh network can cut it in two, e.g. it
        # removes every weight of MobileNet's conv_dw_13, and then only the
        # classifier's bias has a gradient.)
        moved = [p for p, v in variable_values_by_path(model.trainable_variables).items()
                 if not np.array_equal(v, before[p])]
        assert moved, f"{name}: {FIT_STEPS} fit steps changed no trainable variable"

    # 6
    def test_add_masks_in_place(self, subject):
        name = subject.network.name
        model = subject.fresh()
        layers_before = [id(layer) for layer in model._flatten_layers(include_self=False, recursive=True)]
        outputs_before = predict(model, subject.inputs)
        result = lth_keras.add_masks(model)
        assert result is model, f"{name}: add_masks returned another model"
        layers_after = [id(layer) for layer in model._flatten_layers(include_self=False, recursive=True)]
        assert set(layers_before) <= set(layers_after), f"{name}: add_masks replaced layers"
        assert lth_layers.masked_weights(model), f"{name}: add_masks masked nothing"
        assert masked_share(model) >= subject.network.floor, (
            f"{name}: add_masks covers {masked_share(model):.6f} of the kernels; floor {subject.network.floor}"
        )
        assert_outputs_close(predict(model, subject.inputs), outputs_before, f"{name}: after add_masks")
        lth_callbacks.prune_model(model, PRUNE_RATE, scope="global")
        assert_half_pruned(model, f"{name} (add_masks)")
        assert_pruned_weights_zero(model, f"{name} (add_masks)")

    # 7
    def test_imp_prunes_a_plain_model_in_fit(self, subject):
        name = subject.network.name
        model = subject.fresh()
        compile_sgd(model)
        imp = lth_keras.IterativeMagnitudePruning(rates=PRUNE_RATE, round_steps=1, scope="global", verbose=0)
        xs, ys = fit_data(model, subject.inputs, subject.outputs, steps=2)
        model.fit(xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[imp])
        assert len(imp.rounds) == 2, f"{name}: {len(imp.rounds)} IMP rounds recorded, expected 2"
        assert lth_layers.masked_weights(model), f"{name}: IMP left the model without masks"
        assert masked_share(model) >= subject.network.floor
        assert_half_pruned(model, f"{name} (IMP)")
        assert_pruned_weights_zero(model, f"{name} (IMP)")
