"""Tests for lth_keras.experiment.runner: the on-disk layout of an IMP run, P_m per
round, the arms, rewinding, extending an experiment with more rounds, and
what the runner hands to the arms.

Runs are tiny (synthetic data, 150 iterations per round) and in-process; the
binary, resuming after a kill and real data are tested in
tests/programs/main_test.py.

The pruning-at-initialization arms score on the runner's dataset, handed to
them through the trial (`TrialState.data`). They once loaded the dataset
again from disk, into a module-level cache in `lth_keras.pruning.pai`.
"""

import dataclasses
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from lth_keras import datasets, layers, models, training
from lth_keras.experiment import runner

# LeNet-300-100: layer sizes and the paper's rates (fc 20%, output 10%).
LENET_LAYERS = {(784, 300): 0.2, (300, 100): 0.2, (100, 10): 0.1}
ITERATIONS, EVAL_EVERY, ROUNDS = 150, 50, 3


def expected_alive(rounds):
    """Alive weights per layer shape after `rounds` pruning rounds: each round
    removes round(rate * alive), halves rounded up."""
    alive = {shape: shape[0] * shape[1] for shape in LENET_LAYERS}
    for _ in range(rounds):
        for shape, rate in LENET_LAYERS.items():
            alive[shape] -= math.floor(rate * alive[shape] + 0.5)
    return alive


def expected_pm(rounds):
    alive = expected_alive(rounds)
    return 100.0 * sum(alive.values()) / sum(a * b for a, b in LENET_LAYERS)


def _config(**kw):
    base = dict(
        model="lenet", dataset="synthetic", validation_size=200, iterations=ITERATIONS,
        eval_every=EVAL_EVERY, rounds=ROUNDS, controls=("reinit", "random_mask"),
        experiment="lenet_synth", tensorboard=False,
    )
    base.update(kw)
    return runner.ExperimentConfig(**base)


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _kernels_by_shape(snapshot_arrays, shapes):
    """Kernels of a saved WeightSnapshot (position-keyed npz), by shape."""
    out = {}
    for key, value in snapshot_arrays.items():
        if key != "paths" and tuple(value.shape) in shapes:
            out[tuple(value.shape)] = value
    assert set(out) == set(shapes)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs"))
    lines = []
    exp_dir = runner.train_and_evaluate(_config(), out, log=lines.append)
    return exp_dir, lines


def _round_dir(exp_dir, arm, r, trial=0):
    return os.path.join(exp_dir.root, f"trial_{trial}", arm, f"round_{r}")


def _masks_by_shape(exp_dir, arm, r):
    masks = _npz(os.path.join(_round_dir(exp_dir, arm, r), "mask.npz"))
    by_shape = {tuple(m.shape): m for m in masks.values()}
    assert set(by_shape) == set(LENET_LAYERS)
    return masks, by_shape


def test_layout(run):
    exp_dir, _ = run
    arms = {"ticket": range(ROUNDS), "reinit": range(1, ROUNDS), "random_mask": range(1, ROUNDS)}
    assert exp_dir.root.endswith(os.path.join("", "lenet_synth"))
    # init/ holds θ0 and the reinit draws, saved once per trial.
    assert sorted(os.listdir(os.path.join(exp_dir.root, "trial_0"))) == sorted(list(arms) + ["init"])
    assert sorted(os.listdir(os.path.join(exp_dir.root, "trial_0", "init"))) == [
        "reinit_round_1.npz", "reinit_round_2.npz", "theta0.npz"]
    for arm, rounds in arms.items():
        names = sorted(os.listdir(os.path.join(exp_dir.root, "trial_0", arm)))
        assert names == [f"round_{r}" for r in rounds]
        for r in rounds:
            files = set(os.listdir(_round_dir(exp_dir, arm, r)))
            assert {"mask.npz", "reset_weights.npz", "curve.csv", "summary.json"} <= files
            assert "checkpoint" not in files  # removed once a round is done
            assert not [f for f in files if f.endswith(".tmp")]


def test_flags_saved_beside_the_results(run):
    exp_dir, _ = run
    with open(os.path.join(exp_dir.root, "flags.json")) as f:
        saved = json.load(f)
    assert saved["model"] == "lenet" and saved["dataset"] == "synthetic"
    assert saved["iterations"] == ITERATIONS and saved["eval_every"] == EVAL_EVERY
    assert saved["rounds"] == ROUNDS and saved["controls"] == ["reinit", "random_mask"]
    # Defaults filled in from the paper's LeNet settings.
    assert saved["batch_size"] == 60 and saved["optimizer"] == "adam"
    assert saved["learning_rate"] == pytest.approx(1.2e-3)
    assert (saved["prune_rate_dense"], saved["prune_rate_output"]) == (0.2, 0.1)
    with open(os.path.join(exp_dir.root, "config.json")) as f:
        defining = json.load(f)
    assert defining["iterations"] == ITERATIONS and "rounds" not in defining


@pytest.mark.parametrize("arm,r", [("ticket", 0), ("ticket", 2), ("reinit", 1), ("random_mask", 2)])
def test_curve_and_summary(run, arm, r):
    exp_dir, _ = run
    d = _round_dir(exp_dir, arm, r)
    curve = pd.read_csv(os.path.join(d, "curve.csv"))
    assert list(curve.columns[:6]) == [
        "iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_accuracy",
    ]
    assert curve["iteration"].tolist() == list(range(EVAL_EVERY, ITERATIONS + 1, EVAL_EVERY))
    assert curve[["train_loss", "val_loss"]].notna().all().all()
    for col in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert curve[col].between(0, 1).all()
    with open(os.path.join(d, "summary.json")) as f:
        s = json.load(f)
    best = curve.loc[curve["val_loss"].idxmin()]  # first minimum
    assert s["early_stop_iteration"] == int(best["iteration"])
    assert s["early_stop_val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert s["early_stop_test_accuracy"] == pytest.approx(best["test_accuracy"])
    assert s["early_stop_train_accuracy"] == pytest.approx(best["train_accuracy"])
    assert s["final_test_accuracy"] == pytest.approx(curve["test_accuracy"].iloc[-1])
    assert s["wall_time_s"] > 0
    assert s["pm"] == pytest.approx(expected_pm(r))
    masks, _ = _masks_by_shape(exp_dir, arm, r)
    alive = expected_alive(r)
    for name, mask in masks.items():
        assert s["pm_per_layer"][name] == pytest.approx(100.0 * alive[mask.shape] / mask.size)


def test_summary_csv_rows_are_in_the_registry_order_of_arms(run):
    # Sorted by (trial, arm, round), arms in the registry's order: the runner
    # hands the storage layer that key (by name, random_mask would come first).
    exp_dir, _ = run
    df = pd.read_csv(exp_dir.summary_csv_path)
    assert list(zip(df["arm"], df["round"])) == (
        [("ticket", r) for r in range(ROUNDS)] + [(arm, r) for arm in ("reinit", "random_mask")
                                                   for r in range(1, ROUNDS)])


def test_summary_csv_pm_per_round_matches_the_formula(run):
    exp_dir, _ = run
    df = pd.read_csv(os.path.join(exp_dir.root, "summary.csv"))
    got = {(a, r) for a, r in zip(df["arm"], df["round"])}
    assert got == {("ticket", r) for r in range(ROUNDS)} | {
        (arm, r) for arm in ("reinit", "random_mask") for r in range(1, ROUNDS)
    }
    assert (df["trial"] == 0).all()
    for _, row in df.iterrows():
        assert row["pm"] == pytest.approx(expected_pm(row["round"]), abs=1e-9)
    # Cross-check against the paper's rounding: 100, 80.0, 64.1 %.
    ticket = df[df["arm"] == "ticket"].sort_values("round")
    assert [round(p, 1) for p in ticket["pm"]] == [100.0, 80.0, 64.1]
    # Per-layer columns: fc layers 100/80/64 %, output 100/90/81 %.
    masks, _ = _masks_by_shape(exp_dir, "ticket", 0)
    for name, mask in masks.items():
        rate = LENET_LAYERS[mask.shape]
        expected = [100.0 * expected_alive(r)[mask.shape] / mask.size for r in range(ROUNDS)]
        assert ticket[f"pm/{name}"].tolist() == pytest.approx(expected)
        assert expected[1] == pytest.approx(100 * (1 - rate))
    for col in ("early_stop_iteration", "final_test_accuracy", "wall_time_s"):
        assert df[col].notna().all()


def test_ticket_masks_prune_the_smallest_trained_weights_and_nest(run):
    exp_dir, _ = run
    for r in range(1, ROUNDS):
        _, prev = _masks_by_shape(exp_dir, "ticket", r - 1)
        _, cur = _masks_by_shape(exp_dir, "ticket", r)
        trained = _kernels_by_shape(
            _npz(os.path.join(_round_dir(exp_dir, "ticket", r - 1), "trained_weights.npz")), set(LENET_LAYERS)
        )
        for shape in LENET_LAYERS:
            p, c = prev[shape].astype(bool), cur[shape].astype(bool)
            assert not np.any(c & ~p)  # nested: nothing revived
            assert c.sum() == expected_alive(r)[shape]
            mag = np.abs(trained[shape])
            pruned_now = p & ~c
            assert mag[pruned_now].max() <= mag[c].min()


def test_ticket_resets_to_theta0_and_controls_differ(run):
    exp_dir, _ = run
    shapes = set(LENET_LAYERS)
    theta0 = _kernels_by_shape(_npz(os.path.join(_round_dir(exp_dir, "ticket", 0), "reset_weights.npz")), shapes)
    for r in range(1, ROUNDS):
        _, ticket_mask = _masks_by_shape(exp_dir, "ticket", r)
        _, reinit_mask = _masks_by_shape(exp_dir, "reinit", r)
        _, random_mask = _masks_by_shape(exp_dir, "random_mask", r)
        ticket = _kernels_by_shape(_npz(os.path.join(_round_dir(exp_dir, "ticket", r), "reset_weights.npz")), shapes)
        reinit = _kernels_by_shape(_npz(os.path.join(_round_dir(exp_dir, "reinit", r), "reset_weights.npz")), shapes)
        rand = _kernels_by_shape(_npz(os.path.join(_round_dir(exp_dir, "random_mask", r), "reset_weights.npz")), shapes)
        for shape in shapes:
            keep = ticket_mask[shape].astype(bool)
            # The winning ticket: m ⊙ θ0, pruned entries exactly zero.
            np.testing.assert_array_equal(ticket[shape], np.where(keep, theta0[shape], 0.0))
            # Random reinit: same mask, fresh initial values.
            np.testing.assert_array_equal(reinit_mask[shape], ticket_mask[shape])
            assert np.all(reinit[shape][~keep] == 0)
            assert not np.allclose(reinit[shape][keep], theta0[shape][keep])
            # Random sparse network: same count per layer, other positions, θ0 values.
            rkeep = random_mask[shape].astype(bool)
            assert rkeep.sum() == keep.sum()
            assert np.any(rkeep != keep)
            np.testing.assert_array_equal(rand[shape], np.where(rkeep, theta0[shape], 0.0))


def test_log_reports_every_round(run):
    _, lines = run
    done = [l for l in lines if l.startswith("== ")]
    assert len(done) == ROUNDS + 2 * (ROUNDS - 1)
    assert lines[-1].startswith("Done. Summary:")


def test_extending_with_more_rounds_trains_only_the_new_rounds(tmp_path):
    config = _config(rounds=2, controls=("reinit",))
    exp_dir = runner.train_and_evaluate(config, str(tmp_path))
    finished = [("ticket", 0), ("ticket", 1), ("reinit", 1)]
    stamps = {
        (arm, r, f): os.stat(os.path.join(_round_dir(exp_dir, arm, r), f)).st_mtime_ns
        for arm, r in finished for f in ("summary.json", "mask.npz", "curve.csv")
    }
    lines = []
    runner.train_and_evaluate(dataclasses.replace(config, rounds=3), str(tmp_path), log=lines.append)
    for key, stamp in stamps.items():
        assert os.stat(os.path.join(_round_dir(exp_dir, key[0], key[1]), key[2])).st_mtime_ns == stamp, key
    for arm, r in finished:
        assert any(l.startswith(f"trial 0 {arm} round {r}:") and "skipped" in l for l in lines)
        assert not any(l.startswith(f"trial 0 {arm} round {r} (") for l in lines)  # no training lines
    assert any(l.startswith("== trial 0 ticket round 2 ") for l in lines)
    assert any(l.startswith("== trial 0 reinit round 2 ") for l in lines)
    df = pd.read_csv(os.path.join(exp_dir.root, "summary.csv"))
    assert sorted(zip(df["arm"], df["round"])) == sorted(finished + [("ticket", 2), ("reinit", 2)])
    assert df.loc[(df["arm"] == "ticket") & (df["round"] == 2), "pm"].item() == pytest.approx(expected_pm(2))


def test_more_trials_use_other_seeds(tmp_path):
    exp_dir = runner.train_and_evaluate(_config(rounds=1, controls=(), trials=2, iterations=50), str(tmp_path))
    a = _npz(os.path.join(_round_dir(exp_dir, "ticket", 0, trial=0), "reset_weights.npz"))
    b = _npz(os.path.join(_round_dir(exp_dir, "ticket", 0, trial=1), "reset_weights.npz"))
    ka, kb = (_kernels_by_shape(x, set(LENET_LAYERS)) for x in (a, b))
    assert all(not np.array_equal(ka[s], kb[s]) for s in LENET_LAYERS)
    df = pd.read_csv(os.path.join(exp_dir.root, "summary.csv"))
    assert sorted(df["trial"]) == [0, 1]


def test_rewinding_resets_to_the_weights_at_the_rewind_iteration(tmp_path, deterministic_ops):
    k = 40
    config = _config(rounds=2, controls=("random_mask",), rewind_iteration=k, iterations=100, deterministic=True)
    exp_dir = runner.train_and_evaluate(config, str(tmp_path))

    # Independently: the same model, data and data order, trained k steps.
    data = datasets.load("synthetic", seed=0, validation_size=200)
    model = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    hp = training.TrainingHparams(iterations=100, batch_size=60, optimizer="adam", learning_rate=1.2e-3, eval_every=50)
    training.Trainer(model, data, hp, seed=0).train_steps(0, k)
    at_k = {tuple(mw.weight.shape): mw.weight.numpy() for mw in layers.masked_weights(model)}

    shapes = set(LENET_LAYERS)
    theta0 = _kernels_by_shape(_npz(os.path.join(_round_dir(exp_dir, "ticket", 0), "reset_weights.npz")), shapes)
    for arm in ("ticket", "random_mask"):
        _, mask = _masks_by_shape(exp_dir, arm, 1)
        reset = _kernels_by_shape(_npz(os.path.join(_round_dir(exp_dir, arm, 1), "reset_weights.npz")), shapes)
        for shape in shapes:
            keep = mask[shape].astype(bool)
            np.testing.assert_array_equal(reset[shape], np.where(keep, at_k[shape], 0.0))
            assert not np.array_equal(reset[shape][keep], theta0[shape][keep])


def test_one_shot_prunes_from_the_dense_weights(tmp_path):
    exp_dir = runner.train_and_evaluate(_config(rounds=3, controls=(), one_shot=True, iterations=50), str(tmp_path))
    trained = _kernels_by_shape(
        _npz(os.path.join(_round_dir(exp_dir, "ticket", 0), "trained_weights.npz")), set(LENET_LAYERS)
    )
    for r in (1, 2):
        _, mask = _masks_by_shape(exp_dir, "ticket", r)
        for shape in LENET_LAYERS:
            keep = mask[shape].astype(bool)
            assert keep.sum() == expected_alive(r)[shape]
            mag = np.abs(trained[shape])
            # The survivors are the largest dense-trained weights.
            assert mag[~keep].max() <= mag[keep].min()


def test_rewound_rounds_train_from_the_rewind_iteration_to_the_end(tmp_path):
    # Frankle et al. 2019 / OpenLTH: a round rewound to θk trains iterations
    # k+1 … T (T - k steps) with the schedule and the data order at k.
    k, total = 40, ITERATIONS
    config = _config(rounds=2, controls=("reinit", "random_mask"), rewind_iteration=k, deterministic=True)
    exp_dir = runner.train_and_evaluate(config, str(tmp_path))
    curve0 = pd.read_csv(os.path.join(_round_dir(exp_dir, "ticket", 0), "curve.csv"))
    assert list(curve0["iteration"]) == [50, 100, 150]
    df = pd.read_csv(os.path.join(exp_dir.root, "summary.csv"))
    for arm in ("ticket", "reinit", "random_mask"):
        curve = pd.read_csv(os.path.join(_round_dir(exp_dir, arm, 1), "curve.csv"))
        assert list(curve["iteration"]) == [k + 50, k + 100, total], arm
        stop = df.loc[(df["arm"] == arm) & (df["round"] == 1), "early_stop_iteration"].item()
        assert k < stop <= total

    # The ticket's round 1, trained independently from its saved mask and
    # reset weights: an optimizer at iteration k and T - k steps from there.
    data = datasets.load("synthetic", seed=0, validation_size=200)
    model = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    masks = _npz(os.path.join(_round_dir(exp_dir, "ticket", 1), "mask.npz"))
    layers.set_masks(model, {n: m.astype(np.float32) for n, m in masks.items()})
    from lth_keras import callbacks

    callbacks.WeightSnapshot.from_arrays(_npz(os.path.join(_round_dir(exp_dir, "ticket", 1), "reset_weights.npz"))).restore(model)
    hp = training.TrainingHparams(iterations=total, batch_size=60, optimizer="adam", learning_rate=1.2e-3, eval_every=EVAL_EVERY)
    trainer = training.Trainer(model, data, hp, seed=0)
    trainer.reset_round(iteration=k)
    trainer.train_round(round_start=k)
    trained = _npz(os.path.join(_round_dir(exp_dir, "ticket", 1), "trained_weights.npz"))
    expected = callbacks.WeightSnapshot.take(model).values
    assert len(expected) == len([key for key in trained if key != "paths"])
    for i, value in enumerate(expected):
        np.testing.assert_array_equal(trained[f"{i:05d}"], value)


def test_checkpoints_follow_evaluations_that_are_not_multiples(tmp_path):
    # --checkpoint_every=50 with --eval_every=30: a checkpoint at the first
    # evaluation at or after each multiple of 50 (60, 120, 180), none skipped.
    class Stop(Exception):
        pass

    def log(line):
        if " it 150/" in line:
            raise Stop  # before the checkpoint logic of iteration 150 runs

    config = _config(rounds=1, controls=(), iterations=200, eval_every=30, checkpoint_every=50)
    with pytest.raises(Stop):
        runner.train_and_evaluate(config, str(tmp_path), log=log)
    state = os.path.join(tmp_path, "lenet_synth", "trial_0", "ticket", "round_0", "checkpoint", "state.npz")
    assert os.path.exists(state)
    with np.load(state) as f:
        meta = json.loads(str(f["meta"]))
    assert meta["iteration"] == 120
    assert [r["iteration"] for r in meta["curve"]] == [30, 60, 90, 120]


def test_a_rewound_round_refuses_a_checkpoint_from_before_its_start(tmp_path):
    # A checkpoint at iteration 30 of a round that now starts at k = 40 (left
    # by a version whose rewound rounds restarted at 0) is refused, naming
    # the flag and what to delete, instead of being trained from the wrong place.
    config = _config(rounds=2, controls=(), rewind_iteration=40, iterations=100)
    exp_dir = runner.train_and_evaluate(dataclasses.replace(config, rounds=1), str(tmp_path))
    state = os.path.join(_round_dir(exp_dir, "ticket", 1), "checkpoint", "state.npz")
    os.makedirs(os.path.dirname(state))
    data = datasets.load("synthetic", seed=0, validation_size=200)
    model = models.build("lenet", data.input_shape, data.num_classes, seed=0)
    hp = training.TrainingHparams(iterations=100, batch_size=60, eval_every=50)
    arrays = training.Trainer(model, data, hp, seed=0).state_arrays()
    arrays["meta"] = np.array(json.dumps({"curve": [], "iteration": 30, "elapsed": 1.0}))
    np.savez(state, **arrays)
    with pytest.raises(runner.ConfigError, match="rewind_iteration"):
        runner.train_and_evaluate(config, str(tmp_path))


# ---------------------------------------------------------------- what the arms get


def test_pai_arms_score_on_the_runners_dataset_without_loading_it_again(tmp_path, monkeypatch):
    loads = []
    load = datasets.load

    def counted(*args, **kwargs):
        loads.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load", counted)
    config = runner.ExperimentConfig(
        model="lenet", dataset="synthetic", validation_size=100, synthetic_sizes=(600, 200), seed=7,
        iterations=20, eval_every=10, rounds=2, controls=("snip", "grasp_shuffled"), tensorboard=False,
        checkpoint_every=0)
    exp = runner.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
    assert sorted(pd.read_csv(exp.summary_csv_path)["arm"]) == ["grasp_shuffled", "snip", "ticket", "ticket"]
    assert len(loads) == 1


def test_the_pai_module_keeps_no_data():
    from lth_keras.pruning import pai

    assert not [name for name, value in vars(pai).items()
                if isinstance(value, (dict, list, set)) and not name.startswith("__")]
