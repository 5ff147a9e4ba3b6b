"""CSV-only experiment directories, as figures/ commits them: summary.csv and
each round's curve.csv filled with random numbers, nothing trained.

Shared by the tests of the plots (tests/analysis/) and of the figures
program (tests/programs/figures_test.py), with `figures_dir`: such
experiments copied into a figures/ directory beside a manifest.json.

Example:
    >>> summary = make_experiment(str(tmp_path / "lenet"), trials=2, rounds=4)   # doctest: +SKIP
"""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

PMS = [100.0, 51.3, 21.1, 7.0, 3.6]  # P_m of rounds 0..4
ITERATIONS = [0, 100, 200, 300]
CONTROLS = ("reinit", "random_mask")


def make_experiment(root, trials=3, rounds=5, arms=("ticket",) + CONTROLS, skip=(), seed=0):
    """Writes summary.csv and curve.csv files with random numbers.

    ``skip`` holds (trial, arm, round) to leave out (round not finished).
    Returns the summary DataFrame written.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(trials):
        for arm in arms:
            for r in range(0 if arm == "ticket" else 1, rounds):
                if (t, arm, r) in skip:
                    continue
                curve = pd.DataFrame(dict(
                    iteration=ITERATIONS,
                    train_loss=[np.nan] + list(rng.uniform(0, 2, 3)),
                    train_accuracy=[np.nan] + list(rng.uniform(0.5, 1, 3)),
                    val_loss=rng.uniform(0, 2, 4),
                    val_accuracy=rng.uniform(0.5, 1, 4),
                    test_accuracy=rng.uniform(0.5, 1, 4),
                ))
                d = os.path.join(root, f"trial_{t}", arm, f"round_{r}")
                os.makedirs(d)
                curve.to_csv(os.path.join(d, "curve.csv"), index=False)
                pm = PMS[r] + (0.0 if arm == "ticket" else 1e-9 * t)  # float noise
                rows.append(dict(
                    trial=t, arm=arm, round=r, pm=pm,
                    early_stop_iteration=int(rng.choice(ITERATIONS[1:])),
                    early_stop_val_accuracy=rng.uniform(0.5, 1),
                    early_stop_test_accuracy=rng.uniform(0.5, 1),
                    early_stop_train_accuracy=rng.uniform(0.5, 1),
                    final_test_accuracy=rng.uniform(0.5, 1),
                    final_iteration=ITERATIONS[-1],
                    wall_time_s=rng.uniform(1, 2),
                    **{"pm/dense": pm, "pm/output": min(100.0, 2 * pm)},
                ))
    summary = pd.DataFrame(rows)
    summary.to_csv(os.path.join(root, "summary.csv"), index=False)
    return summary


def figures_dir(tmp_path, runs, panel=False):
    """A figures/ directory: copies of the experiments "a" and "b" under `runs` and a
    manifest.json of three figures (four with `panel`); returns (its path, the manifest)."""
    fdir = tmp_path / "figures"
    for name in ("a", "b"):  # committed CSVs only
        shutil.copytree(runs / name, fdir / name)
    manifest = {"dpi": 40, "formats": ["png"], "figures": [
        {"name": "a/accuracy_curves", "plot": "accuracy_curves", "experiments": ["a"],
         "pms": [100, 51.3, 21.1], "reinit_pms": [51.3], "formats": ["png", "pdf"]},
        {"name": "a/early_stop_iteration", "plot": "metric_vs_pm",
         "metric": "early_stop_iteration", "experiments": ["a"], "arms": ["ticket", "reinit"]},
        {"name": "both/final_test_accuracy", "plot": "metric_vs_pm", "metric": "final_test_accuracy",
         "experiments": ["a", "b"], "labels": ["Net A", "Net B"]},
    ]}
    if panel:
        manifest["figures"].append(
            {"name": "both/panel", "plot": "early_stop_panel", "experiments": ["a", "b"]})
    (fdir / "manifest.json").write_text(json.dumps(manifest))
    return fdir, manifest



def files_under(directory):
    """Every file under `directory`, relative to it, sorted."""
    return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs)


def expected_figures(names, prefix=""):
    return sorted(os.path.join(prefix, f"{n}.{ext}") for n in names for ext in ("png", "pdf"))


@pytest.fixture
def runs(tmp_path):
    """An --output_dir with two experiments; "b" lacks random_mask."""
    make_experiment(str(tmp_path / "runs" / "a"), trials=2, rounds=4)
    make_experiment(str(tmp_path / "runs" / "b"), trials=2, rounds=3, arms=("ticket", "reinit"))
    return tmp_path / "runs"


@pytest.fixture
def fake_save(monkeypatch):
    """plotting.save writing empty files: the file-set logic without rendering."""
    from lth_keras.analysis import plotting

    def save(fig, path, formats=("png", "pdf"), dpi=150):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        paths = [f"{path}.{f}" for f in formats]
        for q in paths:
            open(q, "w").close()
        return paths
    monkeypatch.setattr(plotting, "save", save)


def curve_row(it, val_loss, val_acc=0.5, test_acc=0.5, train_acc=None, train_loss=None):
    """One row of a round's curve.csv (`lth_keras.storage.curves.CURVE_COLUMNS`)."""
    return dict(
        iteration=it,
        train_loss=train_loss,
        train_accuracy=train_acc,
        val_loss=val_loss,
        val_accuracy=val_acc,
        test_accuracy=test_acc,
    )
