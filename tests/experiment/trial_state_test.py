"""Tests for lth_keras.experiment.trial_state: the trial an arm reads.

`TrialState.prune` once re-implemented the N:M selection that
`lth_keras.callbacks.prune_model` does on a model; both now call
`lth_keras.pruning.gradual.pattern_masks`. The selections agreed (checked
here on tied weights, conv, einsum and dense kernels, both scopes, three
patterns); the copy's error past the pattern's cap did not name the pattern.

Through the experiment (``--pattern=N:M``): the ticket's rounds and the
gradual arm's are N:M and remove as many weights as unstructured rounds, and
``--pattern_exclude`` leaves a layer unstructured.
"""

import os
import types

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers
from lth_keras.experiment import trial_state
from lth_keras.pruning import snapshots
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.pruning import sparsity
from tests.helpers.runs import lenet_rounds


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.EinsumDense("ab,bc->ac", output_shape=16, name="einsum")(x)
    outputs = keras.layers.Dense(8, name="output")(x)
    model = lth_keras.make_prunable(keras.Model(inputs, outputs))
    for mw in layers.masked_weights(model):
        # Few distinct magnitudes: many ties, broken by position.
        mw.weight.assign(np.round(keras.ops.convert_to_numpy(mw.weight) * 3) / 3)
    return model


def _config(scope, pattern, rate=0.2):
    return types.SimpleNamespace(pruning=scope, pattern=pattern, pattern_exclude=(), global_exclude=None,
                                 prune_rate_dense=rate, prune_rate_conv=rate, prune_rate_output=rate / 2,
                                 rewind_iteration=0, model="unused", dropout=0.0)


def _state(tmp_path, config, model):
    return trial_state.TrialState(config, ExperimentDir(str(tmp_path / "exp")), 0, model, seed=0)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8", None])
def test_prune_selects_what_prune_model_selects(tmp_path, scope, pattern):
    model = _model()
    config = _config(scope, pattern)
    state = _state(tmp_path, config, model)
    masks = state.ones()
    for _ in range(3):
        ours = state.prune(state.masked_values(state.snapshot()), masks)
        theirs = snapshots.prune_model(model, trial_state.prune_rates(config, state.kinds), scope=scope,
                                       include=state.prunable, output_layer=state.output, pattern=pattern)
        assert set(ours) == set(theirs)
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
        masks = ours
    assert any(m.mean() < 0.6 for m in masks.values())


def test_prune_past_the_patterns_cap_names_the_pattern(tmp_path):
    model = _model()
    state = _state(tmp_path, _config("layerwise", "2:4", rate=0.6), model)
    with pytest.raises(ValueError, match=r"^pattern 2:4: Cannot prune"):
        state.prune(state.masked_values(state.snapshot()), state.ones())


def test_the_trial_holds_the_data_it_was_given(tmp_path):
    model = _model()
    data = types.SimpleNamespace(input_shape=(4, 4, 8), num_classes=8)
    state = trial_state.TrialState(_config("layerwise", None), ExperimentDir(str(tmp_path / "exp")), 0, model,
                                   seed=0, data=data)
    assert state.data is data and state.input_shape == (4, 4, 8) and state.num_classes == 8


# -- --pattern=N:M in the experiment: the ticket's rounds and the gradual arm's ----------



def _min_kept_per_group(mask, axis, m=4):
    return int(np.moveaxis(mask != 0, axis, -1).reshape(-1, m).sum(-1).min())


def _mask(exp, arm, round_):
    with np.load(os.path.join(exp.round_dir(0, arm, round_), "mask.npz")) as f:
        return {k: f[k] for k in f.files if k != "paths"}


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_pattern_rounds_are_n_m_and_prune_as_many_weights(tmp_path, scope):
    kw = dict(pruning=scope, prune_rate_dense=0.2, prune_rate_output=0.1)
    plain = lenet_rounds(tmp_path / "plain", "p", **kw)
    structured = lenet_rounds(tmp_path / "nm", "p", pattern="2:4", controls=("gradual",), **kw)
    for r in (1, 2):
        nm, free = _mask(structured, "ticket", r), _mask(plain, "ticket", r)
        for name, mask in nm.items():
            # On the way to 2:4: every group of 4 inputs keeps at least 2.
            assert _min_kept_per_group(mask, 0) >= 2, (r, name)
            if scope == "layerwise":
                assert mask.sum() == free[name].sum(), (r, name)
        assert sum(m.sum() for m in nm.values()) == sum(m.sum() for m in free.values())
        assert any(_min_kept_per_group(m, 0) < 2 for m in free.values())  # unstructured rounds break it
        gradual = _mask(structured, "gradual", r)
        assert all(_min_kept_per_group(m, 0) >= 2 for m in gradual.values())
        assert {n: m.sum() for n, m in gradual.items()} == {n: m.sum() for n, m in nm.items()}


def test_pruned_to_the_cap_the_masks_are_exactly_n_m(tmp_path):
    exp = lenet_rounds(tmp_path, "cap", pattern="2:4", prune_rate_dense=0.5, prune_rate_output=0.5, rounds=2)
    mask = _mask(exp, "ticket", 1)
    assert all(sparsity.pattern_violations(m, "2:4", 0) == 0 and m.mean() == 0.5 for m in mask.values())


def test_pattern_exclude_leaves_a_layer_unstructured(tmp_path):
    # Conv-2's first conv has one input channel: no groups of 4 along it.
    exp = lenet_rounds(tmp_path, "c", model="conv2", pattern="2:4", pattern_exclude=("conv_1",), rounds=2,
               iterations=30, eval_every=30)
    mask = _mask(exp, "ticket", 1)
    assert mask["conv_1"].sum() < mask["conv_1"].size  # still pruned, without the pattern
    for name in ("conv_2", "dense_1", "dense_2", "output"):
        assert _min_kept_per_group(mask[name], 2 if name.startswith("conv") else 0) >= 2, name
