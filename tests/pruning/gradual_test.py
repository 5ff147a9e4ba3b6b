"""Tests for lth_keras.pruning.gradual: `GradualPruner`, the core the gradual
callback and the experiment's gradual arm share, driven here by hand.

Targets per layer follow the polynomial schedule (the output layer at half
of a float); an update keeps the largest surviving weights, zeroes the rest
and is idempotent; update steps; bad arguments. Nothing here imports
TensorFlow (the callback over it runs on every backend).
"""

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers as lth_layers
from lth_keras.pruning import gradual


def _mlp():
    """10-20-4, kernels with distinct magnitudes (a known order)."""
    model = keras.Sequential([keras.Input((10,)), lth_keras.MaskedDense(20, name="fc"),
                              lth_keras.MaskedDense(4, name="out")])
    rng = np.random.default_rng(0)
    for mw in lth_layers.masked_weights(model):
        size = int(np.prod(mw.weight.shape))
        values = (rng.permutation(size) + 1) * rng.choice([-1.0, 1.0], size)
        mw.weight.assign(values.reshape(mw.weight.shape).astype("float32"))
    return model


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_targets_follow_the_schedule_with_the_output_layer_at_half():
    pruner = gradual.GradualPruner(0.8, end_step=100, output_layer="out").bind(_mlp())
    assert pruner.targets(0) == {"fc": 0.0, "out": 0.0}
    assert pruner.targets(50) == pytest.approx({"fc": 0.8 * (1 - 0.5 ** 3), "out": 0.4 * (1 - 0.5 ** 3)})
    assert pruner.targets(100) == pytest.approx({"fc": 0.8, "out": 0.4})
    assert pruner.targets(1000) == pytest.approx({"fc": 0.8, "out": 0.4})
    capped = gradual.GradualPruner(0.8, initial_sparsity=0.5, end_step=100, output_layer="out").bind(_mlp())
    assert capped.targets(0) == pytest.approx({"fc": 0.5, "out": 0.4})  # initial capped at the final


def test_update_keeps_the_largest_weights_zeroes_the_rest_and_is_idempotent():
    model = _mlp()
    kernels = {mw.name: np.abs(_numpy(mw.weight)) for mw in lth_layers.masked_weights(model)}
    pruner = gradual.GradualPruner(0.75, end_step=10, frequency=5)
    record = pruner.update(model, 10)
    assert record["update_step"] == 10 and record["sparsity"] == pytest.approx(0.75)
    for mw in lth_layers.masked_weights(model):
        mask, weight = _numpy(mw.mask), _numpy(mw.weight)
        kept = int(mask.sum())
        assert kept == mask.size - round(0.75 * mask.size), mw.name
        assert kernels[mw.name][mask == 1].min() > kernels[mw.name][mask == 0].max(), mw.name
        assert np.all(weight[mask == 0] == 0), mw.name
    before = lth_layers.get_masks(model)
    again = pruner.update(model, 10)
    assert again["remaining"] == record["remaining"]
    for name, mask in lth_layers.get_masks(model).items():
        np.testing.assert_array_equal(mask, before[name])


def test_global_scope_ranks_all_layers_together():
    model = _mlp()
    record = gradual.GradualPruner(0.5, end_step=1, scope="global").update(model, 1)
    assert record["total"] == 10 * 20 + 20 * 4 and record["remaining"] == record["total"] // 2
    assert record["sparsity_per_layer"]["fc"] != pytest.approx(record["sparsity_per_layer"]["out"])


def test_update_steps():
    pruner = gradual.GradualPruner(0.5, begin_step=10, end_step=40, frequency=15)
    assert [s for s in range(60) if pruner.is_update_step(s)] == [10, 25, 40]
    assert [pruner.next_update_step(s) for s in (0, 10, 24, 25, 40)] == [10, 25, 25, 40, None]
    assert (pruner.last_update_step(9), pruner.last_update_step(30)) == (None, 25)
    forever = gradual.GradualPruner(0.5, begin_step=10, end_step=-1, frequency=15)
    assert forever.next_update_step(40) == 55


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="final_sparsity"):
        gradual.GradualPruner(end_step=10)
    with pytest.raises(ValueError, match="end_step"):
        gradual.GradualPruner(0.5)
    assert gradual.GradualPruner(pattern="2:4", end_step=10).final_sparsity == 0.5  # the pattern's cap
    with pytest.raises(ValueError, match="cap"):
        gradual.GradualPruner(0.6, end_step=10, pattern="2:4").bind(_mlp())
    with pytest.raises(ValueError, match="leave no masked layer"):
        gradual.GradualPruner(0.5, end_step=10, exclude=["fc", "out"]).bind(_mlp())
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no MaskedLayer"):
        gradual.GradualPruner(0.5, end_step=10).bind(plain)
