"""Tests for lth_keras.experiment.resume: what a resumed trial redoes.

What a round depends on, and which files it must keep, come from its arm's
declaration (`lth_keras.arms`). They were once copied into the resume code:
a table in which every control depended on the ticket's round alone, and a
list of required files that named the ticket. The fast tests here build
experiment directories by hand; the slow ones damage real rewound runs.
"""

import os
import shutil
import types

import numpy as np
import pandas as pd
import pytest

from lth_keras import arms
from lth_keras.arms import registry
from lth_keras.experiment import resume
from lth_keras.storage import files
from lth_keras.storage.experiment_dir import ExperimentDir

CURVE = [dict(iteration=10, train_loss=1.0, train_accuracy=0.5, val_loss=1.0, val_accuracy=0.5, test_accuracy=0.5)]


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Arms registered by a test are gone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _config(controls=(), rewind_iteration=0, one_shot=False):
    return types.SimpleNamespace(controls=tuple(controls), rewind_iteration=rewind_iteration, one_shot=one_shot,
                                 wait_for_lock=False)


def _write_round(exp, arm, round_, *, trained=False, rewind=False):
    """A finished round as the runner writes it (tiny arrays)."""
    if trained:
        files.atomic_write_npz(exp.trained_weights_path(0, arm, round_), {"w": np.ones(3, np.float32)})
    if rewind:
        files.atomic_write_npz(exp.rewind_weights_path(0, arm, round_), {"w": np.ones(3, np.float32)})
    exp.write_round(0, arm, round_, mask={"w": np.ones(3, bool)}, reset_weights={"w": np.ones(3, np.float32)},
                    curve=CURVE, summary={"pm": 100.0})


def _tickets(exp, rounds=3, rewind=False):
    for r in range(rounds):
        _write_round(exp, "ticket", r, trained=True, rewind=rewind and r == 0)


def _repair(exp, config):
    with resume.trial_session(exp, 0, config):
        pass
    return sorted(exp.round_dirs(0))


def _start(trial, round_):  # never called: these tests only resume
    raise AssertionError


def test_required_files_are_what_the_arm_keeps():
    arms.register(arms.Arm("keeper", _start, keeps_trained_weights=True))
    rewound = _config(rewind_iteration=100)
    assert resume.required_files(rewound, "keeper", 1) == ["trained_weights.npz"]
    assert resume.required_files(rewound, "gradual", 1) == ["trained_weights.npz"]
    assert resume.required_files(rewound, "reinit", 1) == []
    assert resume.required_files(rewound, "ticket", 0) == ["trained_weights.npz", "rewind_weights.npz"]
    assert resume.required_files(rewound, "ticket", 1) == ["trained_weights.npz"]
    assert resume.required_files(_config(), "ticket", 0) == ["trained_weights.npz"]


def test_an_arm_that_keeps_trained_weights_is_redone_when_they_are_lost(tmp_path, capsys):
    # Once only the ticket's trained weights were required: a user arm (or
    # the gradual arm) that lost them stayed "done", and export failed later.
    arms.register(arms.Arm("keeper", _start, keeps_trained_weights=True))
    exp = ExperimentDir(str(tmp_path / "exp"))
    _tickets(exp)
    for r in (1, 2):
        _write_round(exp, "keeper", r, trained=True)
    lost = exp.trained_weights_path(0, "keeper", 2)
    os.remove(lost)
    assert _repair(exp, _config(controls=("keeper",))) == [("keeper", 1)] + [("ticket", r) for r in range(3)]
    err = capsys.readouterr().err
    assert lost in err and "trial 0 keeper round 2 moved aside" in err


def test_a_round_is_redone_when_a_round_its_arm_reads_is_damaged(tmp_path, capsys):
    # The arm's own `depends`, not a copy in which every control read the
    # ticket alone: this arm reads reinit's round.
    arms.register(arms.Arm("after_reinit", _start, depends=lambda config, r: [("reinit", r)]))
    exp = ExperimentDir(str(tmp_path / "exp"))
    _tickets(exp)
    for arm in ("reinit", "after_reinit"):
        for r in (1, 2):
            _write_round(exp, arm, r)
    with open(exp.mask_path(0, "reinit", 1), "wb") as f:
        f.write(b"garbage")
    left = _repair(exp, _config(controls=("reinit", "after_reinit")))
    assert ("reinit", 1) not in left and ("after_reinit", 1) not in left
    assert ("after_reinit", 2) in left and ("reinit", 2) in left
    assert "with the 1 round(s) built on it" in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["lost", "corrupt"])
def test_an_unfinished_round_0_restarts_when_its_rewind_point_is_damaged(tmp_path, capsys, fault):
    exp = ExperimentDir(str(tmp_path / "exp"))
    os.makedirs(exp.checkpoint_path(0, "ticket", 0))
    meta = np.array('{"curve": [], "iteration": 30, "elapsed": 1.0}')
    files.atomic_write_npz(exp.checkpoint_state_path(0, "ticket", 0), {"meta": meta})
    rewind = exp.rewind_weights_path(0, "ticket", 0)
    if fault == "corrupt":
        with open(rewind, "wb") as f:
            f.write(b"garbage")
    _repair(exp, _config(rewind_iteration=20))
    assert not os.path.exists(exp.checkpoint_path(0, "ticket", 0)) and not os.path.exists(rewind)
    err = capsys.readouterr().err
    assert rewind in err and "trial 0 ticket round 0 restarts from its beginning" in err


def test_an_unfinished_round_0_before_its_rewind_point_keeps_its_checkpoint(tmp_path, capsys):
    exp = ExperimentDir(str(tmp_path / "exp"))
    os.makedirs(exp.checkpoint_path(0, "ticket", 0))
    meta = np.array('{"curve": [], "iteration": 10, "elapsed": 1.0}')
    files.atomic_write_npz(exp.checkpoint_state_path(0, "ticket", 0), {"meta": meta})
    _repair(exp, _config(rewind_iteration=20))
    assert os.path.exists(exp.checkpoint_state_path(0, "ticket", 0))
    assert capsys.readouterr().err == ""


def test_rounds_to_redo_follows_the_dependency_table():
    from types import SimpleNamespace

    from lth_keras import arms
    from lth_keras.experiment import resume as trial_resume

    deps = arms.dependencies(SimpleNamespace(controls=("reinit", "random_mask"), one_shot=False))
    present = {("ticket", r) for r in range(4)} | {(c, r) for c in ("reinit", "random_mask") for r in (1, 2, 3)}
    assert trial_resume.rounds_to_redo({("ticket", 3)}, present, deps) == {
        ("ticket", 3), ("reinit", 3), ("random_mask", 3)}
    assert trial_resume.rounds_to_redo({("reinit", 1)}, present, deps) == {("reinit", 1)}
    assert len(trial_resume.rounds_to_redo({("ticket", 0)}, present, deps)) == len(present)
    # One-shot: every ticket round is pruned from round 0 alone.
    one_shot = arms.dependencies(SimpleNamespace(controls=(), one_shot=True))
    tickets = {("ticket", r) for r in range(4)}
    assert trial_resume.rounds_to_redo({("ticket", 1)}, tickets, one_shot) == {("ticket", 1)}
    # Arms the table does not know are left alone.
    assert trial_resume.rounds_to_redo({("ticket", 1)}, tickets | {("tfmot_gradual", 1)}, deps) == tickets - {("ticket", 0)}


# -- real rewound runs --------------------------------------------------------------------

TINY = dict(
    model="lenet", dataset="synthetic", validation_size=100, synthetic_sizes=(600, 200),
    iterations=20, eval_every=5, rounds=3, trials=1, controls=("random_mask",), tensorboard=False,
    deterministic=True, checkpoint_every=10, experiment="tiny", rewind_iteration=5,
)


def _run(out, log=None):
    from lth_keras.experiment import runner

    return runner.train_and_evaluate(runner.ExperimentConfig(**TINY), str(out), log=log or (lambda line: None))


def _summary(root):
    return pd.read_csv(os.path.join(root, "summary.csv")).drop(columns=["wall_time_s"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted rewound run every resumed one must end equal to."""
    return _run(tmp_path_factory.mktemp("reference")).root


class _Killed(Exception):
    pass


def _killed_in_round_0_after_a_checkpoint(out, monkeypatch):
    """A run killed in the ticket's round 0 right after its checkpoint at
    iteration 10, past the rewind iteration 5 (the rewind point is saved)."""
    from lth_keras.experiment import trial_state

    save = trial_state.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(trial_state, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _run(out)
    monkeypatch.undo()
    exp = ExperimentDir(os.path.join(str(out), "tiny"))
    assert os.path.exists(exp.checkpoint_state_path(0, "ticket", 0))
    return exp


def test_a_finished_rewound_trial_whose_rewind_point_is_lost_is_redone(reference, tmp_path, capsys):
    shutil.copytree(reference, tmp_path / "tiny")
    exp = ExperimentDir(str(tmp_path / "tiny"))
    os.remove(exp.rewind_weights_path(0, "ticket", 0))
    _run(tmp_path)
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference))
    assert "rewind_weights.npz: missing; trial 0 ticket round 0 moved aside" in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["lost", "corrupt"])
def test_a_rewind_point_damaged_while_round_0_was_unfinished_is_redone(reference, tmp_path, monkeypatch, capsys,
                                                                        fault):
    # Lost: the run once stopped, asking to delete the checkpoint by hand.
    # Corrupt: round 0 once finished on it and round 1 failed to read it.
    exp = _killed_in_round_0_after_a_checkpoint(tmp_path, monkeypatch)
    rewind = exp.rewind_weights_path(0, "ticket", 0)
    if fault == "lost":
        os.remove(rewind)
    else:
        with open(rewind, "r+b") as f:
            f.truncate(os.path.getsize(rewind) // 2)
    capsys.readouterr()
    lines = []
    _run(tmp_path, log=lines.append)
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference))
    assert rewind in capsys.readouterr().err
    assert not [line for line in lines if "resuming at iteration" in line]
