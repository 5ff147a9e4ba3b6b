"""The experiment's arms that tickets are measured against: ``lr_rewind`` and
``finetune`` (their own chains of rounds, keeping trained weights) and
``static_erk``, ``set`` and ``rigl`` (`lth_keras.arms.sparse_training`:
sparse training from θ0 at the ticket's P_m with ERK densities). Real
experiments on synthetic data; TensorFlow (the runner's backend). Resuming
each after SIGKILL: tests/e2e/faults_test.py.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lth_keras import layers, models, training
from lth_keras.arms import sparse_training
from lth_keras.experiment import runner as experiment
from lth_keras.experiment import trial_state
from lth_keras.pruning import erk
from lth_keras.pruning.snapshots import WeightSnapshot
from tests.helpers.runs import QUIET

NEW_ARMS = ("lr_rewind", "finetune", "static_erk", "set", "rigl")
ROUNDS = 3


def _config(**kw):
    base = dict(model="lenet", dataset="synthetic", validation_size=200, synthetic_sizes=(600, 100),
                iterations=120, eval_every=40, rounds=ROUNDS, tensorboard=False, optimizer="adam",
                learning_rate=3e-3, batch_size=30, lr_boundaries=(60,), pruning="global", prune_rate_dense=0.5,
                controls=NEW_ARMS, dst_update_frequency=20, experiment="arms")
    base.update(kw)
    return experiment.ExperimentConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = _config()
    exp = experiment.train_and_evaluate(config, str(tmp_path_factory.mktemp("runs")), log=QUIET)
    return exp, config.resolve()


def _trial(exp, config):
    """The trial's saved state as an arm reads it, and the trainer the runner builds."""
    data = experiment.load_dataset(config)
    seed = training.schedule.trial_seed(config.seed, 0)
    model = models.build(config.model, data.input_shape, data.num_classes, seed=seed)
    state = trial_state.TrialState(config, exp, 0, model, seed, data=data)
    hp = training.TrainingHparams(**{f.name: getattr(config, f.name)
                                     for f in dataclasses.fields(training.TrainingHparams) if hasattr(config, f.name)})
    return state, training.Trainer(model, data, hp, seed=seed)


def _masked(state, path):
    with np.load(path) as f:
        return state.masked_values(WeightSnapshot.from_arrays(dict(f)))


def test_every_arm_trains_each_round_at_the_tickets_pm(run):
    exp, _ = run
    summary = pd.read_csv(exp.summary_csv_path)
    ticket = summary[summary.arm == "ticket"].set_index("round").pm
    for arm in NEW_ARMS:
        rows = summary[summary.arm == arm].set_index("round")
        assert list(rows.index) == list(range(1, ROUNDS)), arm
        # ERK rounds each layer's count: within a weight per layer of the ticket's total.
        np.testing.assert_allclose(rows.pm, ticket.loc[1:], atol=0.1, err_msg=arm)


@pytest.mark.parametrize("arm", ["lr_rewind", "finetune"])
def test_the_chain_arms_start_from_their_previous_rounds_pruned_trained_weights(run, arm):
    exp, config = run
    state, _ = _trial(exp, config)
    # Round 1 prunes what the ticket's dense round 0 trained: the ticket's round-1 mask.
    for a, b in zip(exp.read_mask(0, arm, 1).values(), exp.read_mask(0, "ticket", 1).values()):
        np.testing.assert_array_equal(a, b)
    for round_, previous in ((1, ("ticket", 0)), (2, (arm, 1))):
        mask = exp.read_mask(0, arm, round_)
        trained = _masked(state, exp.trained_weights_path(0, *previous))
        start = _masked(state, exp.reset_weights_path(0, arm, round_))
        expected = state.prune(trained, exp.read_mask(0, *previous))
        for name in mask:
            np.testing.assert_array_equal(mask[name], expected[name].astype(bool))
            np.testing.assert_array_equal(start[name] * mask[name], trained[name] * mask[name])
    # Round 2 pruned further than round 1, from its own chain (not the ticket's).
    assert sum(m.sum() for m in exp.read_mask(0, arm, 2).values()) < sum(m.sum() for m in exp.read_mask(0, arm, 1).values())


def test_finetuning_differs_from_lr_rewinding_only_by_the_learning_rate(run, tmp_path):
    exp, _ = run
    summary = pd.read_csv(exp.summary_csv_path).set_index(["arm", "round"])
    # With a decaying schedule (÷10 at 60) the two chains train differently ...
    assert summary.loc[("finetune", 1), "final_test_accuracy"] != summary.loc[("lr_rewind", 1), "final_test_accuracy"] \
        or not np.array_equal(*(_npz_values(exp.trained_weights_path(0, a, 1)) for a in ("finetune", "lr_rewind")))
    # ... and with a constant one (its final rate is its only rate) they are the same run.
    flat = experiment.train_and_evaluate(_config(lr_boundaries=None, rounds=2, controls=("lr_rewind", "finetune"),
                                                 experiment="flat"), str(tmp_path), log=QUIET)
    np.testing.assert_array_equal(_npz_values(flat.trained_weights_path(0, "finetune", 1)),
                                  _npz_values(flat.trained_weights_path(0, "lr_rewind", 1)))


def _npz_values(path):
    with np.load(path) as f:
        return np.concatenate([f[k].ravel() for k in sorted(f.files)])


def test_trainer_holds_the_final_learning_rate_for_finetuning(run):
    exp, config = run
    _, trainer = _trial(exp, config)
    trainer.reset_round(iteration=0)
    assert trainer.learning_rate == pytest.approx(config.learning_rate)
    trainer.reset_round(iteration=0, schedule_iteration=config.iterations)
    assert trainer.learning_rate == pytest.approx(config.learning_rate / 10)
    trainer.train_steps(0, 70)  # past the boundary at 60: still the final rate
    assert trainer.learning_rate == pytest.approx(config.learning_rate / 10)


def test_sparse_training_arms_draw_one_erk_mask_from_theta0(run):
    exp, config = run
    state, _ = _trial(exp, config)
    for round_ in (1, 2):
        start, weights = sparse_training.erk_start(state, round_)
        assert weights is state.theta0
        ticket_kept = sum(int(m.sum()) for m in exp.read_mask(0, "ticket", round_).values())
        assert abs(sum(int(m.sum()) for m in start.values()) - ticket_kept) <= len(start)
        shapes = {n: m.shape for n, m in start.items()}
        density = ticket_kept / sum(m.size for m in start.values())
        assert {n: int(m.sum()) for n, m in start.items()} == erk.kept_counts(shapes, erk.erk_densities(shapes, density))
        # static_erk keeps it; SET and RigL start from it and move it, each layer keeping its count.
        for name, m in exp.read_mask(0, "static_erk", round_).items():
            np.testing.assert_array_equal(m, start[name].astype(bool))
        for arm in ("set", "rigl"):
            final = exp.read_mask(0, arm, round_)
            assert {n: int(m.sum()) for n, m in final.items()} == {n: int(m.sum()) for n, m in start.items()}
            assert any(not np.array_equal(final[n], start[n].astype(bool)) for n in final), arm
            trained = _masked(state, exp.trained_weights_path(0, arm, round_))
            assert all(not trained[n][~final[n]].any() for n in final), arm  # pruned weights exactly 0


def test_set_and_rigl_move_different_weights(run):
    exp, _ = run
    a, b = exp.read_mask(0, "set", 1), exp.read_mask(0, "rigl", 1)
    assert any(not np.array_equal(a[n], b[n]) for n in a)


def test_dense_gradient_is_the_gradient_the_trainer_steps_along(run):
    # Plain SGD at rate 1 on a dense model: one trainer step moves each
    # kernel by minus the gradient of the batch at that iteration, the
    # batch DenseGradient must read.
    exp, config = run
    config = dataclasses.replace(config, optimizer="sgd", learning_rate=1.0, momentum=0.0, lr_boundaries=(),
                                 weight_decay=0.0)
    _, trainer = _trial(exp, config)
    weights = layers.masked_weights(trainer.model)
    trainer.reset_round()
    trainer.train_steps(0, 7)
    gradient = sparse_training.DenseGradient(trainer, weights)(7)
    before = [np.array(w.weight) for w in weights]
    trainer.train_steps(7, 1)
    for g, b, mw in zip(gradient, before, weights):
        np.testing.assert_allclose(g, b - np.array(mw.weight), rtol=1e-4, atol=1e-6)


def test_dense_gradient_has_a_value_at_pruned_weights(run):
    # A finite difference at a pruned position: give it weight eps in the forward pass.
    exp, config = run
    _, trainer = _trial(exp, config)
    weights = layers.masked_weights(trainer.model)
    hidden = weights[0]
    # Random, so that every hidden unit keeps inputs (a unit with none sits at ReLU's kink, gradient 0).
    mask = (np.random.default_rng(0).random(hidden.mask.shape) < 0.5).astype(np.float32)
    layers.set_masks(trainer.model, {hidden.name: mask})
    layers.apply_masks_to_weights(trainer.model)
    probe = sparse_training.DenseGradient(trainer, weights)
    gradient = probe(0)[0]
    x, y = probe.batch(0)
    kernel = np.array(hidden.weight)
    i, j = np.unravel_index(np.argmax(np.abs(gradient) * (mask == 0)), mask.shape)
    assert mask[i, j] == 0 and gradient[i, j] != 0
    assert np.count_nonzero(gradient[mask == 0]) > 0.5 * (mask == 0).sum()

    def loss(value):
        import tensorflow as tf

        k, m = kernel.copy(), mask.copy()
        k[i, j], m[i, j] = value, 1
        hidden.weight.assign(k)
        hidden.mask.assign(m)
        logits = trainer.model(x, training=False)
        return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))

    eps = 1e-3
    assert (loss(eps) - loss(-eps)) / (2 * eps) == pytest.approx(gradient[i, j], rel=0.02)


def test_dst_flags_give_one_line_errors():
    for kw, flag in ((dict(dst_update_frequency=0), "dst_update_frequency"), (dict(dst_drop_fraction=1.5), "dst_drop_fraction"),
                     (dict(dst_end=0.0), "dst_end")):
        with pytest.raises(experiment.ConfigError, match=f"^--{flag}: "):
            _config(**kw).resolve()


def test_with_rewinding_the_chains_start_at_k_and_sparse_training_trains_all_iterations(tmp_path):
    exp = experiment.train_and_evaluate(
        _config(rewind_iteration=40, rounds=2, controls=("lr_rewind", "static_erk", "rigl"), experiment="rewound"),
        str(tmp_path), log=QUIET)
    iterations = {arm: [row["iteration"] for row in exp.read_curve(0, arm, 1)]
                  for arm in ("ticket", "lr_rewind", "static_erk", "rigl")}
    assert iterations["ticket"] == iterations["lr_rewind"] == [80, 120]
    assert iterations["static_erk"] == iterations["rigl"] == [40, 80, 120]
    # From θ0 (its kept entries), not from the rewind point.
    state, _ = _trial(exp, _config(rewind_iteration=40).resolve())
    theta0, mask = state.masked_values(state.theta0), exp.read_mask(0, "static_erk", 1)
    start = _masked(state, exp.reset_weights_path(0, "static_erk", 1))
    assert all(np.array_equal(start[n], np.where(mask[n], theta0[n], 0)) for n in theta0)
