"""Tests for lth_keras.storage.resume: the file side of resuming an experiment.

Which trials a process runs, cleaning up after a killed process (temp files,
unreadable checkpoints), summary.csv rebuilt, and θ0 saved once. Experiment
directories are built by hand; which rounds a damaged round takes down with
it is tested in tests/experiment/resume_test.py, whole runs in
tests/e2e/faults_test.py.
"""

import os

import numpy as np
import pandas as pd
import pytest

from lth_keras.pruning.snapshots import WeightSnapshot
from lth_keras.storage import files, resume
from lth_keras.storage.experiment_dir import ExperimentDir

CURVE = [dict(iteration=10, train_loss=1.0, train_accuracy=0.5, val_loss=1.0, val_accuracy=0.5, test_accuracy=0.5)]


def _write_round(exp, trial, arm, round_):
    exp.write_round(trial, arm, round_, mask={"d": np.ones(3, bool)}, reset_weights={"d": np.zeros(3)},
                    curve=CURVE, summary={"pm": 100.0, "pm_per_layer": {"d": 100.0}})


def _warnings(capsys):
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line]


@pytest.mark.parametrize("spec, trials, ids", [
    (None, 3, [0, 1, 2]),
    ("", 2, [0, 1]),
    (" ", 2, [0, 1]),
    ("3", 4, [3]),
    ("3,0-1", 4, [0, 1, 3]),
    ("0-3,8, 2", 9, [0, 1, 2, 3, 8]),
    (5, 6, [5]),
])
def test_trial_ids(spec, trials, ids):
    assert resume.parse_trial_ids(spec, trials) == ids


@pytest.mark.parametrize("spec, message", [
    ("x", "'x' is not a trial id or range (expected e.g. 3 or 3,4 or 0-7)"),
    ("3-1", "'3-1' is not a trial id or range"),
    ("-1", "'-1' is not a trial id or range"),
    ("1,,2", "'' is not a trial id or range"),
    ("4", "trial 4 is not below --trials=4 (ids run from 0 to 3)"),
    ("0-5", "trial 4 is not below --trials=4"),
])
def test_bad_trial_ids_are_refused(spec, message):
    with pytest.raises(ValueError) as info:
        resume.parse_trial_ids(spec, 4)
    assert str(info.value).startswith(message)


def test_stale_temp_files_go_only_in_the_trials_own_arms(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    _write_round(exp, 0, "ticket", 1)
    _write_round(exp, 0, "tfmot_gradual", 1)
    _write_round(exp, 1, "ticket", 1)
    stale = os.path.join(exp.round_dir(0, "ticket", 1), ".mask.npz.abc.tmp")
    stale_init = os.path.join(exp.init_dir(0), ".theta0.npz.x.tmp")
    # Another writer's (a baseline's, or another trial's) temp files may be live.
    other_arm = os.path.join(exp.round_dir(0, "tfmot_gradual", 1), ".mask.npz.def.tmp")
    other_trial = os.path.join(exp.round_dir(1, "ticket", 1), ".mask.npz.ghi.tmp")
    for path in (stale, stale_init, other_arm, other_trial):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").write(b"half a file")
    resume.remove_stale_temp_files(exp, 0, ["ticket", "reinit"])
    assert not os.path.exists(stale) and not os.path.exists(stale_init)
    assert os.path.exists(other_arm) and os.path.exists(other_trial)
    assert exp.is_round_done(0, "ticket", 1)  # results untouched


def test_an_unreadable_checkpoint_is_moved_aside_and_its_round_restarts(tmp_path, capsys):
    exp = ExperimentDir(str(tmp_path))
    assert resume.check_checkpoint(exp, 0, "ticket", 2) is None  # none: nothing to do
    state = resume.checkpoint_state_path(exp, 0, "ticket", 2)
    files.atomic_write_npz(state, {"w": np.zeros(4)})
    assert resume.check_checkpoint(exp, 0, "ticket", 2) is None  # whole: kept
    assert os.path.exists(state) and _warnings(capsys) == []

    open(state, "wb").write(b"garbage")
    moved = resume.check_checkpoint(exp, 0, "ticket", 2)
    assert moved.startswith(exp.checkpoint_path(0, "ticket", 2) + ".corrupt-")
    assert open(os.path.join(moved, "state.npz"), "rb").read() == b"garbage"  # kept, not deleted
    assert not os.path.exists(exp.checkpoint_path(0, "ticket", 2))
    (line,) = _warnings(capsys)
    assert line.startswith(f"warning: {state}: truncated or not an .npz file")
    assert line.endswith(f"moved to {moved}; trial 0 ticket round 2 restarts from its beginning")


def test_restart_round_moves_the_checkpoint_aside_with_the_reason(tmp_path, capsys):
    exp = ExperimentDir(str(tmp_path))
    assert resume.restart_round(exp, 1, "reinit", 1, "its rewind point is lost") is None
    (line,) = _warnings(capsys)
    assert line == "warning: its rewind point is lost; trial 1 reinit round 1 restarts from its beginning"
    files.atomic_write_npz(resume.checkpoint_state_path(exp, 1, "reinit", 1), {"w": np.zeros(2)})
    moved = resume.restart_round(exp, 1, "reinit", 1, "its rewind point is lost")
    assert os.path.isfile(os.path.join(moved, "state.npz"))
    (line,) = _warnings(capsys)
    assert f"{exp.checkpoint_path(1, 'reinit', 1)} moved to {moved}; trial 1 reinit round 1 restarts" in line


def test_a_damaged_summary_csv_is_rebuilt_from_the_rounds_with_a_warning(tmp_path, capsys):
    exp = ExperimentDir(str(tmp_path))
    for round_ in (0, 1):
        _write_round(exp, 0, "ticket", round_)
    resume.prepare_experiment(exp)  # absent: built, no warning
    assert _warnings(capsys) == []
    built = pd.read_csv(exp.summary_csv_path)
    open(exp.summary_csv_path, "wb").write(b"\x00\x01garbage")
    resume.prepare_experiment(exp)
    pd.testing.assert_frame_equal(pd.read_csv(exp.summary_csv_path), built)
    (line,) = _warnings(capsys)
    assert line.startswith(f"warning: {exp.summary_csv_path}: ") and line.endswith("rebuilt from the finished rounds")


def _snapshot(*shapes, scale=1.0):
    return WeightSnapshot([np.full(s, scale, np.float32) for s in shapes], [f"layer{i}/kernel" for i in range(len(shapes))])


def test_theta0_is_saved_once_and_what_a_later_draw_gets(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    first = resume.saved_snapshot(exp, 0, "theta0", _snapshot((3, 2), (2,)))
    path = exp.init_path(0, "theta0")
    assert os.path.isfile(path)
    # A later process draws other values (another TF version, say): the saved draw wins.
    later = resume.saved_snapshot(exp, 0, "theta0", _snapshot((3, 2), (2,), scale=7.0))
    for got, want in zip(later.values, first.values):
        np.testing.assert_array_equal(got, want)
    assert later.paths == ["layer0/kernel", "layer1/kernel"]


def test_an_old_experiment_takes_theta0_from_ticket_round_0(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    fallback = str(tmp_path / "reset_weights.npz")
    files.atomic_write_npz(fallback, _snapshot((4,), scale=3.0).to_arrays())
    got = resume.saved_snapshot(exp, 0, "theta0", _snapshot((4,)), fallback=fallback)
    np.testing.assert_array_equal(got.values[0], np.full(4, 3.0, np.float32))
    # ... and saves it where later rounds look first.
    np.testing.assert_array_equal(files.read_npz(exp.init_path(0, "theta0"))["00000"], got.values[0])


@pytest.mark.parametrize("model, needle", [
    (((3, 2),), "holds 2 variables but the model has 1"),
    (((3, 2), (5,)), "variable 1 (layer1/kernel) is float32[2] but the model's is float32[5]"),
])
def test_a_saved_theta0_of_another_architecture_is_refused_naming_the_file(tmp_path, model, needle):
    exp = ExperimentDir(str(tmp_path))
    resume.saved_snapshot(exp, 0, "theta0", _snapshot((3, 2), (2,)))
    with pytest.raises(resume.SnapshotMismatchError) as info:
        resume.saved_snapshot(exp, 0, "theta0", _snapshot(*model))
    message = str(info.value)
    assert message.startswith(exp.init_path(0, "theta0") + ": ") and needle in message and "\n" not in message
    assert "another architecture" in message
