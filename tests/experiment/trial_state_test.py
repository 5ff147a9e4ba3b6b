"""Tests for lth_keras.experiment.trial_state: the trial an arm reads.

`TrialState.prune` once re-implemented the N:M selection that
`lth_keras.callbacks.prune_model` does on a model; both now call
`lth_keras.pruning.gradual.pattern_masks`. The selections agreed (checked
here on tied weights, conv, einsum and dense kernels, both scopes, three
patterns); the copy's error past the pattern's cap did not name the pattern.
"""

import types

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers
from lth_keras.experiment import trial_state
from lth_keras.pruning import snapshots
from lth_keras.storage.experiment_dir import ExperimentDir


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
