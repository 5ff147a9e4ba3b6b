"""Tests for lth_keras.training.schedule: what a round of training does when.

Seeds, evaluation points, the data order, the learning-rate schedule, the
optimizer and its coupled weight decay, and the train-and-evaluate loop
(driven here by stand-in step and evaluation functions), shared by the
trainer and the TFMOT baseline.
"""

import keras
import numpy as np
import pytest

from lth_keras.training import schedule


def test_trial_seeds_are_a_stride_apart():
    assert schedule.trial_seed(0, 2) == 2000 == 2 * schedule.SEED_STRIDE
    assert schedule.trial_seed(7, 0) == 7 and schedule.trial_seed(7, 1) == 1007


def test_evaluation_points():
    assert schedule.evaluation_points(300, 100, stops=(50,)) == [50, 100, 200, 300]
    assert schedule.evaluation_points(250, 100) == [100, 200, 250]  # and the last iteration
    # A rewound round counts from its start; stops outside the round are ignored.
    assert schedule.evaluation_points(100, 30, stops=(0, 101, 90), round_start=20) == [50, 80, 90, 100]


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    def order(seed, epoch):
        return np.asarray(schedule.epoch_permutation(50, seed, epoch))

    assert sorted(order(0, 0)) == list(range(50))
    np.testing.assert_array_equal(order(3, 1), order(3, 1))
    assert not np.array_equal(order(3, 1), order(3, 2))
    assert not np.array_equal(order(3, 1), order(4, 1))


def test_warmup_then_divided_by_ten_at_each_boundary():
    def lr(step, warmup=0):
        return float(schedule.warmup_piecewise(step, 1.0, (10, 20), warmup, keras.ops))

    assert [lr(s) for s in (0, 9, 10, 19, 20, 30)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert [lr(s, warmup=4) for s in (0, 1, 3, 9)] == pytest.approx([0.25, 0.5, 1.0, 1.0])


def test_weight_decay_is_coupled_for_sgd_and_adam_only():
    assert schedule.coupled_weight_decay("sgd", 1e-4) == 1e-4
    assert schedule.coupled_weight_decay("adam", 5e-4) == 5e-4
    assert schedule.coupled_weight_decay("adamw", 1e-4) == 0.0
    assert schedule.coupled_weight_decay("sgd", None) == 0.0


def test_build_optimizer():
    adamw = schedule.build_optimizer(keras.optimizers, "adamw", 1e-3, None, 0.01)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(0.01)
    sgd = schedule.build_optimizer(keras.optimizers, "sgd", 0.1, 0.9, 1e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == pytest.approx(0.9)
    assert not sgd.weight_decay  # coupled: the training step adds it, not the optimizer
    assert type(schedule.build_optimizer(keras.optimizers, "adam", 1e-3, None, 1e-4)) is keras.optimizers.Adam
    with pytest.raises(ValueError, match="'rmsprop'"):
        schedule.build_optimizer(keras.optimizers, "rmsprop", 1e-3, None, 0.0)


class _Fake:
    """Training steps whose loss is the iteration they start at, and an
    evaluation that counts its calls."""

    def __init__(self):
        self.calls, self.evaluations = [], 0

    def train_steps(self, start, n):
        self.calls.append((start, n))
        return float(start), 0.5

    def evaluate(self, split):
        self.evaluations += 1
        return 1.0, {"val": 0.25, "test": 0.75}[split]


def test_train_and_measure_trains_between_evaluations_and_averages_the_loss():
    fake, seen, stopped = _Fake(), [], []
    curve = schedule.train_and_measure(fake.train_steps, fake.evaluate, 100, 40, on_eval=seen.append,
                                       stops={10: stopped.append})
    assert fake.calls == [(0, 10), (10, 30), (40, 40), (80, 20)]
    assert stopped == [10]
    assert [r["iteration"] for r in curve] == [40, 80, 100] and seen == curve
    # Weighted by steps: (0 * 10 + 10 * 30) / 40.
    assert [r["train_loss"] for r in curve] == pytest.approx([7.5, 40.0, 80.0])
    assert all((r["val_accuracy"], r["test_accuracy"], r["train_accuracy"]) == (0.25, 0.75, 0.5) for r in curve)
    assert fake.evaluations == 2 * len(curve)


def test_train_and_measure_resumes_a_rewound_round():
    fake = _Fake()
    curve = [{"iteration": 50}]
    schedule.train_and_measure(fake.train_steps, fake.evaluate, 100, 30, start_iteration=50, round_start=20,
                               curve=curve)
    assert fake.calls == [(50, 30), (80, 20)]
    assert [r["iteration"] for r in curve] == [50, 80, 100]
    with pytest.raises(ValueError, match="round_start"):
        schedule.train_and_measure(fake.train_steps, fake.evaluate, 100, 30, round_start=100)
    with pytest.raises(ValueError, match="start_iteration"):
        schedule.train_and_measure(fake.train_steps, fake.evaluate, 100, 30, start_iteration=10, round_start=20)


def test_log_lines():
    row = dict(iteration=40, train_loss=1.23456, train_accuracy=0.5, val_loss=2.0, val_accuracy=0.25,
               test_accuracy=0.75)
    assert schedule.progress_line("ticket r1", row, 100, 3.21) == (
        "ticket r1 it 40/100: train loss 1.2346 acc 0.5000 | val loss 2.0000 acc 0.2500 | test acc 0.7500 [3.2s]")
    summary = dict(early_stop_iteration=80, early_stop_val_accuracy=0.9, early_stop_test_accuracy=0.8,
                   final_test_accuracy=0.85)
    assert schedule.done_line("ticket r1", summary, 12.0, prefix="P_m 80.00%, ") == (
        "== ticket r1 done: P_m 80.00%, early stop at iteration 80 (val acc 0.9000, test acc 0.8000), "
        "final test acc 0.8500, 12.0s")
