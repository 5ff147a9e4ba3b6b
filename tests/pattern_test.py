"""``--pattern=N:M`` in the experiment: the ticket's rounds (and the gradual
arm) are N:M, remove as many weights as unstructured rounds, and a pattern
the rounds would break is refused before anything is written. And the
gradual arm's schedule flags."""

import os

import numpy as np
import pytest

from lth_keras.experiment import runner as experiment
from lth_keras.pruning import sparsity
from lth_keras.experiment.config import ConfigError

QUIET = lambda s: None  # noqa: E731


def _run(tmp_path, name, **kw):
    base = dict(model="lenet", dataset="synthetic", validation_size=200, iterations=60, eval_every=30, rounds=3,
                experiment=name, tensorboard=False, synthetic_sizes=(600, 100))
    base.update(kw)
    return experiment.train_and_evaluate(experiment.ExperimentConfig(**base), str(tmp_path), log=QUIET)


def _min_kept_per_group(mask, axis, m=4):
    return int(np.moveaxis(mask != 0, axis, -1).reshape(-1, m).sum(-1).min())


def _mask(exp, arm, round_):
    with np.load(os.path.join(exp.round_dir(0, arm, round_), "mask.npz")) as f:
        return {k: f[k] for k in f.files if k != "paths"}


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_pattern_rounds_are_n_m_and_prune_as_many_weights(tmp_path, scope):
    kw = dict(pruning=scope, prune_rate_dense=0.2, prune_rate_output=0.1)
    plain = _run(tmp_path / "plain", "p", **kw)
    structured = _run(tmp_path / "nm", "p", pattern="2:4", controls=("gradual",), **kw)
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
    exp = _run(tmp_path, "cap", pattern="2:4", prune_rate_dense=0.5, prune_rate_output=0.5, rounds=2)
    mask = _mask(exp, "ticket", 1)
    assert all(sparsity.pattern_violations(m, "2:4", 0) == 0 and m.mean() == 0.5 for m in mask.values())


@pytest.mark.parametrize("kw, flag, message", [
    (dict(pattern="2:4", rounds=5), "pattern", "above the pattern's cap 0.5"),
    (dict(pattern="3:2"), "pattern", "3:2"),
    (dict(pattern_exclude=("output",)), "pattern_exclude", "has no effect without --pattern"),
    (dict(pattern="2:4", pattern_exclude=("output",), controls=("gradual",)), "pattern_exclude", "gradual"),
    (dict(model="conv2", pattern="2:4", rounds=2), "pattern", "'conv_1"),
])
def test_a_pattern_the_rounds_would_break_is_refused_before_anything_is_written(tmp_path, kw, flag, message):
    with pytest.raises(ConfigError) as e:
        _run(tmp_path, "bad", **kw)
    assert e.value.flag == flag and message in str(e.value), str(e.value)
    assert not os.path.exists(tmp_path / "bad")


def test_pattern_exclude_leaves_a_layer_unstructured(tmp_path):
    # Conv-2's first conv has one input channel: no groups of 4 along it.
    exp = _run(tmp_path, "c", model="conv2", pattern="2:4", pattern_exclude=("conv_1",), rounds=2,
               iterations=30, eval_every=30)
    mask = _mask(exp, "ticket", 1)
    assert mask["conv_1"].sum() < mask["conv_1"].size  # still pruned, without the pattern
    for name in ("conv_2", "dense_1", "dense_2", "output"):
        assert _min_kept_per_group(mask[name], 2 if name.startswith("conv") else 0) >= 2, name


def test_the_gradual_arms_schedule_comes_from_its_flags(tmp_path):
    import dataclasses

    fields = {f.name: f.default for f in dataclasses.fields(experiment.ExperimentConfig)}
    assert {k: fields[f"gradual_{k}"] for k in ("begin", "end", "frequency")} == \
        {"begin": 0.0, "end": 2 / 3, "frequency": 100}

    def trained(name, **kw):
        exp = _run(tmp_path, name, rounds=2, controls=("gradual",), deterministic=True, **kw)
        with np.load(os.path.join(exp.round_dir(0, "gradual", 1), "trained_weights.npz")) as f:
            return {k: f[k] for k in f.files if k != "paths"}, _mask(exp, "gradual", 1)

    default, default_mask = trained("default")
    explicit, _ = trained("explicit", gradual_begin=0.0, gradual_end=2 / 3, gradual_frequency=100)
    early, early_mask = trained("early", gradual_begin=0.1, gradual_end=0.5, gradual_frequency=10)
    assert all(np.array_equal(default[k], explicit[k]) for k in default)
    assert {n: m.sum() for n, m in early_mask.items()} == {n: m.sum() for n, m in default_mask.items()}
    assert any(not np.array_equal(default[k], early[k]) for k in default)


@pytest.mark.parametrize("kw, flag", [
    (dict(gradual_begin=0.7, gradual_end=0.5), "gradual_end"),
    (dict(gradual_begin=-0.1), "gradual_begin"),
    (dict(gradual_frequency=0), "gradual_frequency"),
])
def test_bad_gradual_schedules_name_their_flag(tmp_path, kw, flag):
    with pytest.raises(ConfigError) as e:
        _run(tmp_path, "bad", controls=("gradual",), **kw)
    assert e.value.flag == flag
