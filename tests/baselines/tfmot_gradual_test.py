"""Tests for lth_keras.baselines.tfmot_gradual: the TFMOT baseline's rounds, the parts
that need no TFMOT (its pruning schedule, its config from the experiment's).

The rounds themselves run in the baseline's venv: tests/baselines/tfmot_test.py.
"""

import json

import pytest

from lth_keras.baselines import tfmot_gradual as baseline
from lth_keras.experiment import runner as experiment
from lth_keras.storage.experiment_dir import ExperimentDir


def test_schedule_ends_on_a_mask_update():
    assert baseline.pruning_schedule_steps(300, 0.0, 2 / 3, 100) == {"begin_step": 0, "end_step": 200, "frequency": 100}
    assert baseline.pruning_schedule_steps(60, 0.0, 2 / 3, 100) == {"begin_step": 0, "end_step": 40, "frequency": 40}
    assert baseline.pruning_schedule_steps(1000, 0.1, 0.75, 100) == {"begin_step": 100, "end_step": 700, "frequency": 100}
    with pytest.raises(baseline.BaselineError, match="pruning_begin"):
        baseline.pruning_schedule_steps(100, 0.5, 0.5, 10)


def test_config_comes_from_the_experiment_and_flags_override_it(tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    config = experiment.ExperimentConfig(model="lenet", dataset="synthetic", iterations=300, validation_size=200)
    (root / "config.json").write_text(json.dumps(config.defining()))
    resolved = baseline.resolve_config(str(root))
    assert (resolved.model, resolved.dataset, resolved.iterations, resolved.learning_rate) == (
        "lenet", "synthetic", 300, 1.2e-3)
    resolved = baseline.resolve_config(str(root), {"learning_rate": 0.01, "iterations": 150})
    assert (resolved.iterations, resolved.learning_rate, resolved.validation_size) == (150, 0.01, 200)
    with pytest.raises(baseline.BaselineError, match="no config.json"):
        baseline.resolve_config(str(tmp_path))
    with pytest.raises(baseline.BaselineError, match="--eval_every"):
        baseline.resolve_config(str(root), {"iterations": 50})
    with pytest.raises(baseline.BaselineError, match="has no finished ticket round"):
        baseline.run(str(root))


def test_the_targets_are_the_tickets_finished_rounds(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    curve = [dict(iteration=10, train_loss=1.0, train_accuracy=0.5, val_loss=1.0, val_accuracy=0.5, test_accuracy=0.5)]
    for trial, round_, pm in ((0, 0, 100.0), (0, 1, 80.0), (0, 2, 64.0), (1, 0, 100.0), (1, 1, 80.0)):
        exp.write_round(trial, "ticket", round_, mask={}, reset_weights={}, curve=curve,
                        summary={"pm": pm, "pm_per_layer": {"dense": pm}})
    exp.write_round(0, "reinit", 1, mask={}, reset_weights={}, curve=curve, summary={"pm": 80.0})
    targets = baseline.ticket_targets(exp)
    # Every finished ticket round of every trial, and no control's.
    assert {t: sorted(rounds) for t, rounds in targets.items()} == {0: [0, 1, 2], 1: [0, 1]}
    assert targets[0][2]["pm"] == 64.0 and targets[0][2]["pm_per_layer"] == {"dense": 64.0}
