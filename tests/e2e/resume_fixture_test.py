"""An experiment directory written by an earlier lth_keras still resumes.

tests/fixtures/resume_v1 was written by the code of commit 2d631d5 (see
tests/fixtures/make_resume_fixture.py): the tiny_mlp model on synthetic
data, 2 rounds, rewinding to iteration 20, the reinit control. Extending it
to 3 rounds must train only round 2, leave rounds 0 and 1 untouched, and
start round 2 from the same masks and weights as that code did (saved in
tests/fixtures/resume_v1_expected: both follow from the saved files without
training, so they are exact on any machine).
"""

import filecmp
import os
import shutil

import numpy as np
import pytest

from lth_keras import models
from lth_keras.experiment import runner as experiment
from tests.fixtures import make_resume_fixture
from tests.helpers import tiny_model as _tiny_model

FIXTURES = os.path.dirname(os.path.abspath(make_resume_fixture.__file__))


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture
def old_experiment(tmp_path, monkeypatch):
    monkeypatch.setitem(models.MODELS, _tiny_model.NAME, _tiny_model.spec())
    shutil.copytree(os.path.join(FIXTURES, "resume_v1"), tmp_path / "resume_v1")
    return tmp_path


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_resuming_the_same_rounds_trains_nothing(old_experiment):
    lines = []
    config = experiment.ExperimentConfig(**make_resume_fixture.CONFIG)
    experiment.train_and_evaluate(config, str(old_experiment), log=lines.append)
    assert [l for l in lines if "skipped" in l] == [
        "trial 0 ticket round 0: done (P_m 100.0%), skipped",
        "trial 0 ticket round 1: done (P_m 80.1%), skipped",
        "trial 0 reinit round 1: done (P_m 80.1%), skipped",
    ]
    assert not [l for l in lines if " it " in l]


def test_extending_an_old_experiment_by_a_round(old_experiment):
    root = old_experiment / "resume_v1"
    before = _files(os.path.join(FIXTURES, "resume_v1"))
    lines = []
    config = experiment.ExperimentConfig(**dict(make_resume_fixture.CONFIG, rounds=3))
    experiment.train_and_evaluate(config, str(old_experiment), log=lines.append)

    trained = sorted({l.split(" it ")[0].split(" (P_m")[0] for l in lines if " it " in l})
    assert trained == ["trial 0 reinit round 2", "trial 0 ticket round 2"]
    for name in before:
        if os.path.basename(name) not in ("summary.csv", "flags.json"):
            assert filecmp.cmp(os.path.join(FIXTURES, "resume_v1", name), root / name, shallow=False), name
    for arm in ("ticket", "reinit"):
        round_dir = root / "trial_0" / arm / "round_2"
        assert (round_dir / "summary.json").exists()
        for kind in ("mask", "reset_weights"):
            got = _npz(round_dir / f"{kind}.npz")
            want = _npz(os.path.join(FIXTURES, "resume_v1_expected", f"{arm}_round_2_{kind}.npz"))
            assert sorted(got) == sorted(want)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{arm} {kind} {key}")
    import pandas as pd

    summary = pd.read_csv(root / "summary.csv")
    assert sorted(zip(summary["arm"], summary["round"])) == [
        ("reinit", 1), ("reinit", 2), ("ticket", 0), ("ticket", 1), ("ticket", 2)
    ]
