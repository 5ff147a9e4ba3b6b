"""Tests for lth_keras.storage.layout: the one place an experiment's file names are spelled.

Every other module asks `ExperimentLayout` (or its subclass `ExperimentDir`)
for paths, trials and rounds instead of spelling ``summary.csv`` or parsing
``trial_<t>``/``round_<r>`` itself.
"""

import ast
import glob
import os
import re

import pytest

from lth_keras.storage import layout
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.layout import ExperimentLayout, is_experiment_dir

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(layout.__file__)))

# The names of an experiment directory's files: spelled in storage/layout.py only.
FILE_NAMES = ("summary.csv", "summary.json", "config.json", "flags.json", "curve.csv", "mask.npz",
              "reset_weights.npz", "trained_weights.npz", "rewind_weights.npz", "state.npz", "theta0.npz",
              "instability.csv")
# A trial_/round_ folder spelled or parsed: "trial_" + number, "round_{r}",
# "round_*" (glob), r"round_(\d+)" (regex), or a bare "round_" prefix. (The
# names of draws saved under init/, like "reinit_round_3", are their arm's.)
FOLDER = re.compile(r"(?<![A-Za-z0-9_])(trial|round)_($|\*|\\d|\d|\{|\()")
# Modules not yet converted to the layout API (none left: every module asks
# ExperimentLayout / ExperimentDir for its paths).
PENDING = ()


def _docstrings(tree):
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_names(source):
    """(line, text) of every string literal in `source` (docstrings aside,
    f-string pieces included) that spells a file or folder name of an
    experiment directory."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if any(name in text for name in FILE_NAMES) or FOLDER.search(text):
                found.append((node.lineno, text))
    return found


def _modules():
    for path in sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
        if rel == "storage/layout.py" or any(rel == p or rel.startswith(p) for p in PENDING if p.endswith("/")) \
                or rel in PENDING:
            continue
        yield rel, path


def test_the_scan_finds_spelled_names_and_parsing():
    source = '''
"""A docstring may name summary.csv and trial_<t>/."""
path = os.path.join(root, "summary.csv")
d = f"trial_{t}"
pattern = re.compile(r"^round_(\\d+)$")
ok = name.startswith("round_")
fine = "round_steps must be positive; trial 3 round 2"
'''
    assert [line for line, _ in spelled_names(source)] == [3, 4, 5, 6]


@pytest.mark.parametrize("rel", [rel for rel, _ in _modules()])
def test_file_and_folder_names_are_spelled_only_in_the_layout_module(rel):
    with open(os.path.join(PACKAGE, rel), encoding="utf-8") as f:
        found = spelled_names(f.read())
    assert found == [], f"lth_keras/{rel} spells {found}: ask lth_keras.storage.layout.ExperimentLayout"


def test_the_layout_module_spells_every_name():
    with open(layout.__file__, encoding="utf-8") as f:
        spelled = " ".join(text for _, text in spelled_names(f.read()))
    for name in FILE_NAMES:
        assert name in spelled or name == "theta0.npz", name  # init_path(trial, "theta0")


# -------------------------------------------------------------------- listing


def test_trials_arms_and_rounds_are_listed_from_the_directories(tmp_path):
    exp = ExperimentLayout(str(tmp_path))
    assert (exp.trials(), exp.arms(0), exp.rounds(0, "ticket"), exp.round_dirs(0)) == ([], [], [], set())
    assert not exp.is_experiment()
    for trial, arm, round_ in [(0, "ticket", 0), (0, "ticket", 10), (0, "ticket", 2), (0, "reinit", 1),
                               (3, "ticket", 0)]:
        os.makedirs(exp.round_dir(trial, arm, round_))
    os.makedirs(exp.init_dir(0))
    # Not rounds: a damaged round moved aside, a file, a name that only looks like one.
    os.makedirs(os.path.join(exp.arm_dir(0, "ticket"), "round_3.corrupt-20250101T000000Z"))
    open(os.path.join(exp.arm_dir(0, "ticket"), "round_4"), "w").close()
    os.makedirs(os.path.join(exp.arm_dir(0, "ticket"), "round_x"))
    os.makedirs(os.path.join(str(tmp_path), "trial_b"))
    open(os.path.join(str(tmp_path), "trial_7"), "w").close()

    assert exp.trials() == [0, 3]
    assert exp.arms(0) == ["reinit", "ticket"]  # init/ holds draws, not rounds
    assert exp.rounds(0, "ticket") == [0, 2, 10]  # by number, not by name
    assert exp.rounds(0, "random_mask") == []
    assert exp.round_dirs(0) == {("ticket", 0), ("ticket", 2), ("ticket", 10), ("reinit", 1)}
    assert exp.is_experiment() and is_experiment_dir(str(tmp_path))
    assert not is_experiment_dir(os.path.join(str(tmp_path), "nope"))


def test_a_directory_with_only_summary_csv_is_an_experiment(tmp_path):
    exp = ExperimentLayout(str(tmp_path))
    open(exp.summary_csv_path, "w").close()
    assert exp.is_experiment() and exp.trials() == []


def test_finished_rounds_are_those_with_a_summary(tmp_path):
    exp = ExperimentDir(str(tmp_path))
    curve = [dict(iteration=0, train_loss=None, train_accuracy=None, val_loss=1.0, val_accuracy=0.5,
                  test_accuracy=0.4)]
    for r in (0, 1):
        exp.write_round(0, "ticket", r, mask={}, reset_weights={}, curve=curve, summary={"pm": 100.0})
    os.makedirs(exp.checkpoint_path(0, "ticket", 2))  # started, not finished
    assert exp.rounds(0, "ticket") == [0, 1, 2]
    assert exp.finished_rounds(0, "ticket") == [0, 1]
    assert exp.finished_rounds(0, "reinit") == [] and exp.finished_rounds(0, "../x") == []


# -------------------------------------------------------------------- paths


def test_paths(tmp_path):
    exp = ExperimentLayout("runs/lenet")
    rel = lambda p: os.path.relpath(p, "runs/lenet").replace(os.sep, "/")  # noqa: E731
    assert rel(exp.config_path) == "config.json"
    assert rel(exp.flags_path) == "flags.json"
    assert rel(exp.summary_csv_path) == "summary.csv"
    assert rel(exp.mask_path(1, "reinit", 3)) == "trial_1/reinit/round_3/mask.npz"
    assert rel(exp.reset_weights_path(0, "ticket", 0)) == "trial_0/ticket/round_0/reset_weights.npz"
    assert rel(exp.trained_weights_path(0, "ticket", 2)) == "trial_0/ticket/round_2/trained_weights.npz"
    assert rel(exp.rewind_weights_path(0, "ticket", 0)) == "trial_0/ticket/round_0/rewind_weights.npz"
    assert rel(exp.curve_path(2, "gradual", 1)) == "trial_2/gradual/round_1/curve.csv"
    assert rel(exp.summary_path(0, "ticket", 0)) == "trial_0/ticket/round_0/summary.json"
    assert rel(exp.checkpoint_state_path(0, "ticket", 1)) == "trial_0/ticket/round_1/checkpoint/state.npz"
    assert rel(exp.init_path(4, "theta0")) == "trial_4/init/theta0.npz"
    assert rel(exp.tensorboard_dir(0, "ticket", 1)) == "tensorboard/trial_0/ticket/round_1"
    assert rel(exp.lock_path("experiment")) == ".locks/experiment.lock"
    assert rel(exp.trial_lock(2).path) == ".locks/trial_2.lock"
    assert rel(exp.instability_lock_path(2)) == ".locks/instability_trial_2.lock"
    assert rel(exp.instability_csv_path) == "instability.csv"
    assert rel(exp.instability_figure_path) == "instability.png"
    assert rel(exp.dense_at_path(0, 100)) == "instability/trial_0/dense_at_100.npz"
    assert rel(exp.instability_copy_path(0, 2, 100, 7)) == "instability/trial_0/round_2/k_100/copy_seed_7.npz"
    assert rel(exp.instability_row_path(0, 2, 100)) == "instability/trial_0/round_2/k_100/row.json"


def test_instability_rows_are_found_under_their_folder(tmp_path):
    exp = ExperimentLayout(str(tmp_path))
    assert exp.instability_row_paths() == []
    for args in [(0, 1, 0), (1, 2, 100)]:
        path = exp.instability_row_path(*args)
        os.makedirs(os.path.dirname(path))
        open(path, "w").close()
    assert sorted(exp.instability_row_paths()) == sorted(exp.instability_row_path(*a) for a in [(0, 1, 0), (1, 2, 100)])


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", None])
def test_an_arm_cannot_escape_the_experiment(bad):
    with pytest.raises(ValueError):
        ExperimentLayout("runs/x").round_dir(0, bad, 0)


@pytest.mark.parametrize("trial, round_", [(-1, 0), (0, -1), (0.0, 0), (0, 1.5)])
def test_indices_are_non_negative_integers(trial, round_):
    with pytest.raises((TypeError, ValueError)):
        ExperimentLayout("runs/x").round_dir(trial, "ticket", round_)
