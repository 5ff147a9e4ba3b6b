"""Tests for lth_keras.storage.experiment_dir: an experiment's rounds, summary.csv and
config.json, written and read back safely (pure numpy/json; no TensorFlow)."""

import json
import math
import os
import threading

import numpy as np
import pandas as pd
import pytest

from lth_keras import arms as arm_registry
from lth_keras.storage import experiment_dir, files
from lth_keras.storage.errors import ConfigMismatchError, ResultsWriteError
from lth_keras.storage.files import atomic_write_npz
from lth_keras.storage.summary import load_summary
from tests.helpers.faults import FullDisk
from tests.helpers.csv_experiments import curve_row


def ExperimentDir(root):
    # As the runner opens it: summary rows in the registry's order of arms.
    return experiment_dir.ExperimentDir(root, arm_order=arm_registry.order_key)


_row = curve_row


def _listing(directory):
    out = []
    for dirpath, _, names in os.walk(directory):
        out += [os.path.relpath(os.path.join(dirpath, f), directory) for f in names]
    return sorted(out)


# ---------------------------------------------------------------- layout


def test_round_sort_key_and_round_dir(tmp_path):
    arms = ["tfmot_gradual", "random_mask", "ticket", "abc", "reinit"]
    assert sorted(arms, key=arm_registry.order_key) == [
        "ticket", "reinit", "random_mask", "abc", "tfmot_gradual"]
    exp = ExperimentDir(str(tmp_path))
    assert exp.round_dir(2, "reinit", 7) == os.path.join(
        str(tmp_path), "trial_2", "reinit", "round_7")
    assert exp.checkpoint_path(0, "ticket", 1) == os.path.join(
        str(tmp_path), "trial_0", "ticket", "round_1", "checkpoint")
    for bad in ["", "..", "a/b"]:
        with pytest.raises(ValueError):
            exp.round_dir(0, bad, 0)


def _write(exp, trial, arm, round_, pm_layers, seed=0):
    rng = np.random.default_rng(seed)
    mask = {name: rng.random((4, 3)) < frac / 100 for name, frac in pm_layers.items()}
    reset = {name: rng.normal(size=(4, 3)).astype(np.float32) for name in pm_layers}
    curve = [
        _row(0, 2.0 - round_ * 0.01, 0.1, 0.1),
        _row(10, 0.5, 0.8 + trial * 0.01, 0.79 + round_ * 0.001, train_acc=0.9),
        _row(20, 0.6, 0.7, 0.75, train_acc=0.95, train_loss=0.2),
    ]
    summary = {
        "pm": float(np.mean(list(pm_layers.values()))),
        "pm_per_layer": dict(pm_layers),
        "wall_time_s": 1.5 + seed,
        "iterations": 20,
    }
    merged = exp.write_round(trial, arm, round_, mask=mask, reset_weights=reset,
                             curve=curve, summary=summary)
    return mask, reset, curve, summary, merged


def test_write_round_read_round_trip(tmp_path):
    exp = ExperimentDir(str(tmp_path / "exp"))
    assert not exp.is_round_done(0, "ticket", 1)
    ckpt = exp.checkpoint_path(0, "ticket", 1)
    os.makedirs(ckpt)
    open(os.path.join(ckpt, "ckpt.weights.h5"), "w").close()

    mask, reset, curve, summary, merged = _write(
        exp, 0, "ticket", 1, {"dense": 80.0, "out": 90.0})
    # float masks must round-trip exactly too.
    fmask = {"dense": np.where(mask["dense"], 1.0, 0.0).astype(np.float32)}
    exp.write_round(0, "ticket", 2, mask=fmask, reset_weights=reset, curve=curve,
                    summary=summary)

    assert exp.is_round_done(0, "ticket", 1)
    assert not os.path.exists(ckpt)  # checkpoint removed once done

    got = exp.read_mask(0, "ticket", 1)
    assert sorted(got) == sorted(mask)
    for k in mask:
        assert got[k].dtype == np.bool_
        np.testing.assert_array_equal(got[k], mask[k])
    got_f = exp.read_mask(0, "ticket", 2)["dense"]
    assert got_f.dtype == np.float32
    np.testing.assert_array_equal(got_f, fmask["dense"])
    got_r = exp.read_reset_weights(0, "ticket", 1)
    for k in reset:
        assert got_r[k].dtype == np.float32
        np.testing.assert_array_equal(got_r[k], reset[k])

    read = exp.read_curve(0, "ticket", 1)
    assert len(read) == len(curve)
    for r, c in zip(read, curve):
        assert list(r)[:6] == ["iteration", "train_loss", "train_accuracy",
                               "val_loss", "val_accuracy", "test_accuracy"]
        assert r["iteration"] == c["iteration"]
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                  "test_accuracy"):
            if c[k] is None:
                assert math.isnan(r[k])
            else:
                assert isinstance(r[k], float) and r[k] == c[k]

    s = exp.read_round_summary(0, "ticket", 1)
    # Expected values from the hand-made curve: min val_loss is row 1.
    assert s["early_stop_iteration"] == 10
    assert s["early_stop_test_accuracy"] == curve[1]["test_accuracy"]
    assert s["early_stop_train_accuracy"] == 0.9
    assert s["final_test_accuracy"] == 0.75 and s["final_iteration"] == 20
    assert (s["trial"], s["arm"], s["round"]) == (0, "ticket", 1)
    assert s["pm_per_layer"] == {"dense": 80.0, "out": 90.0}
    assert s["wall_time_s"] == 1.5 and s["iterations"] == 20 and s["pm"] == 85.0
    assert s == merged
    assert sorted(os.listdir(exp.round_dir(0, "ticket", 1))) == [
        "curve.csv", "mask.npz", "reset_weights.npz", "summary.json"]


def test_is_round_done_requires_valid_summary(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    atomic_write_npz(os.path.join(exp.round_dir(0, "reinit", 0), "mask.npz"),
                     {"a": np.ones(2)})
    assert not exp.is_round_done(0, "reinit", 0)
    path = os.path.join(exp.round_dir(0, "reinit", 0), "summary.json")
    with open(path, "w") as f:
        f.write('{"trial": 0, ')  # truncated
    assert not exp.is_round_done(0, "reinit", 0)
    assert exp.summaries() == []


def test_write_round_failure_before_summary_leaves_round_not_done(tmp_path, monkeypatch):
    exp = ExperimentDir(str(tmp_path))
    _write(exp, 0, "ticket", 0, {"d": 100.0})
    assert exp.is_round_done(0, "ticket", 0)

    real = files.atomic_write_csv

    def fail(*a, **k):
        raise OSError("preempted")

    monkeypatch.setattr(files, "atomic_write_csv", fail)
    with pytest.raises(OSError):
        _write(exp, 0, "ticket", 0, {"d": 100.0})
    monkeypatch.setattr(files, "atomic_write_csv", real)
    # Redo started: the stale summary must not mark the half-rewritten round done.
    assert not exp.is_round_done(0, "ticket", 0)


def test_a_round_cut_short_while_being_written_is_unfinished_not_damaged(tmp_path, monkeypatch):
    exp = experiment_dir.ExperimentDir(str(tmp_path))
    curve = [dict(iteration=10, train_loss=0.1, train_accuracy=0.9, val_loss=1.0, val_accuracy=0.8, test_accuracy=0.7)]
    kwargs = dict(mask={"d": np.ones(3, bool)}, reset_weights={"d": np.zeros(3)}, curve=curve, summary={"pm": 100.0})
    monkeypatch.setattr(os, "fsync", FullDisk(allowed=3))  # marker, mask, reset; then the disk is full
    with pytest.raises(ResultsWriteError):
        exp.write_round(0, "ticket", 0, **kwargs)
    monkeypatch.undo()
    assert exp.round_status(0, "ticket", 0) == ("unfinished", None)
    exp.write_round(0, "ticket", 0, **kwargs)
    assert exp.round_status(0, "ticket", 0) == ("done", None)
    os.remove(os.path.join(exp.round_dir(0, "ticket", 0), "summary.json"))  # lost after it was finished
    status, error = exp.round_status(0, "ticket", 0)
    assert status == "corrupt" and "summary.json: missing" in str(error)


# ---------------------------------------------------------------- summary.csv


def test_summaries_and_summary_csv(tmp_path):
    exp = ExperimentDir(str(tmp_path / "exp"))
    layers = {0: {"dense": 100.0, "out": 100.0}, 1: {"dense": 80.0, "out": 90.0}}
    written = []
    # Write in scrambled order; summaries() must sort.
    for trial in (1, 0):
        for arm in ("tfmot_gradual", "random_mask", "ticket", "reinit"):
            for r in (1, 0):
                written.append((trial, arm, r))
                _write(exp, trial, arm, r, layers[r], seed=trial)
    # An unfinished round must not appear.
    atomic_write_npz(os.path.join(exp.round_dir(0, "ticket", 2), "mask.npz"),
                     {"a": np.ones(1)})

    expected_order = [
        (t, a, r)
        for t in (0, 1)
        for a in ("ticket", "reinit", "random_mask", "tfmot_gradual")
        for r in (0, 1)
    ]
    got = [(s["trial"], s["arm"], s["round"]) for s in exp.summaries()]
    assert got == expected_order

    path = exp.write_summary_csv()
    assert path == os.path.join(str(tmp_path / "exp"), "summary.csv")
    df = pd.read_csv(path)
    assert len(df) == len(written) == 16
    assert list(df.columns) == [
        "trial", "arm", "round", "pm", "early_stop_iteration",
        "early_stop_val_accuracy", "early_stop_test_accuracy",
        "early_stop_train_accuracy", "final_test_accuracy", "final_iteration",
        "wall_time_s", "pm/dense", "pm/out"]
    assert list(zip(df["trial"], df["arm"], df["round"])) == expected_order
    row = df[(df.trial == 1) & (df.arm == "reinit") & (df["round"] == 1)].iloc[0]
    assert row["pm"] == 85.0 and row["pm/dense"] == 80.0 and row["pm/out"] == 90.0
    assert row["early_stop_iteration"] == 10 and row["final_iteration"] == 20
    assert row["early_stop_val_accuracy"] == pytest.approx(0.81)
    assert row["early_stop_test_accuracy"] == pytest.approx(0.791)
    assert row["wall_time_s"] == 2.5

    pd.testing.assert_frame_equal(load_summary(str(tmp_path / "exp"), arm_order=arm_registry.order_key), df)
    pd.testing.assert_frame_equal(load_summary(path), df)


def test_load_summary_without_csv_builds_in_memory(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    _write(exp, 0, "ticket", 0, {"d": 100.0})
    df = load_summary(str(tmp_path))
    assert len(df) == 1 and df["pm/d"].tolist() == [100.0]
    assert not os.path.exists(os.path.join(str(tmp_path), "summary.csv"))


def test_summary_csv_readers_never_see_a_half_written_file(tmp_path):
    exp = experiment_dir.ExperimentDir(str(tmp_path))
    curve = [dict(iteration=i, train_loss=0.1, train_accuracy=0.9, val_loss=1.0 / (i + 1),
                  val_accuracy=0.8, test_accuracy=0.7) for i in range(50)]
    for r in range(30):
        exp.write_round(0, "ticket", r, mask={"d": np.ones(3, bool)}, reset_weights={"d": np.zeros(3)},
                        curve=curve, summary={"pm": 100.0 - r, "pm_per_layer": {f"layer{i}": 1.0 * i for i in range(40)}})
    exp.write_summary_csv()
    stop, seen, errors = threading.Event(), [], []

    def read():
        while not stop.is_set():
            try:
                seen.append(len(load_summary(exp.root)))
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(150):
            exp.write_summary_csv()
    finally:
        stop.set()
        reader.join()
    assert errors == [] and seen and set(seen) == {30}


# ---------------------------------------------------------------- config


def test_check_and_save_config(tmp_path):
    root = tmp_path / "out" / "exp"
    exp = ExperimentDir(str(root))
    config = {"lr": 0.1, "prune_rates": (0.2, 0.1), "dataset": "mnist"}
    exp.check_and_save_config(config, overwrite=False)
    assert json.loads((root / "config.json").read_text()) == {
        "lr": 0.1, "prune_rates": [0.2, 0.1], "dataset": "mnist"}

    _write(exp, 0, "ticket", 0, {"d": 100.0})
    exp.check_and_save_config(dict(config), overwrite=False)  # resume: fine
    assert exp.is_round_done(0, "ticket", 0)

    changed = dict(config, lr=0.2, seed=3)
    with pytest.raises(ConfigMismatchError) as err:
        exp.check_and_save_config(changed, overwrite=False)
    msg = str(err.value)
    assert "lr: saved=0.1 now=0.2" in msg
    assert "seed:" in msg and "now=3" in msg
    assert "dataset" not in msg and "prune_rates" not in msg
    assert "--overwrite" in msg and "--output_dir" in msg and "--experiment" in msg
    assert isinstance(err.value, ValueError)
    assert exp.is_round_done(0, "ticket", 0)  # nothing deleted
    assert json.loads((root / "config.json").read_text())["lr"] == 0.1

    exp.check_and_save_config(changed, overwrite=True)
    assert not exp.is_round_done(0, "ticket", 0)
    # Lock files stay (another process may be waiting on them); all else goes.
    assert [p for p in _listing(root) if not p.startswith(".locks/")] == ["config.json"]
    assert json.loads((root / "config.json").read_text())["lr"] == 0.2
    assert os.path.isdir(tmp_path / "out")  # only the experiment dir is wiped
