"""Tests for lth_keras.analysis.figures: the figures of one or several experiments,
and regenerate_all from a manifest (CSV-only inputs).

The program around them (flags, ``python -m lth_keras.figures``) is tested
in tests/programs/figures_test.py.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

from lth_keras.analysis import figures, plotting
from tests.helpers import REPO
from tests.helpers.csv_experiments import fake_save, figures_dir, runs  # noqa: F401 - fixtures
from tests.helpers.csv_experiments import expected_figures, files_under

NAMES = ("accuracy_curves",) + plotting.PAPER_METRICS + ("early_stop_panel",)



def test_make_figures_single(runs, tmp_path, fake_save):
    out = tmp_path / "out"
    lines = []
    written, missing = figures.make_figures([str(runs / "a")], str(out), log=lines.append)
    assert files_under(out) == expected_figures(NAMES)
    assert sorted(os.path.relpath(p, out) for p in written) == expected_figures(NAMES)
    assert [f"wrote {p}" for p in written] == [l for l in lines if l.startswith("wrote ")]
    assert "a: ticket at P_m 3.6%: no round within 10%" in missing
    assert "missing: a: ticket at P_m 3.6%: no round within 10%" in lines


def test_make_figures_several(runs, tmp_path, fake_save):
    out = tmp_path / "out"
    written, missing = figures.make_figures(
        [str(runs / "a"), str(runs / "b")], str(out), labels=["Conv 2", "conv4"], log=lambda s: None)
    multi = [f"{n}.{e}" for n in NAMES[1:] for e in ("png", "pdf")]
    assert files_under(out) == sorted(expected_figures(NAMES, "Conv_2") + expected_figures(NAMES, "conv4") + multi)
    assert "conv4: arm 'random_mask': no finished rounds" in missing
    assert len(missing) == len(set(missing))
    with pytest.raises(figures.FiguresError, match="--labels: got 1 labels for 2"):
        figures.make_figures([str(runs / "a"), str(runs / "b")], str(out), labels=["x"])


def test_expand_results(runs, tmp_path):
    a, b = str(runs / "a"), str(runs / "b")
    assert figures.expand_results([str(runs)]) == [a, b]
    assert figures.expand_results([b, a]) == [b, a]
    with pytest.raises(figures.FiguresError, match="^--results: no such directory"):
        figures.expand_results([str(tmp_path / "nope")])
    (tmp_path / "void").mkdir()
    with pytest.raises(figures.FiguresError, match="^--results: no experiment in"):
        figures.expand_results([str(tmp_path / "void")])
    assert figures.default_labels(["x/lenet", "y/lenet", "y/conv2"]) == ["x/lenet", "y/lenet", "conv2"]


# ---------------------------------------------------------------- manifest


def test_regenerate_all(runs, tmp_path):
    fdir, _ = figures_dir(tmp_path, runs)
    before = set(files_under(fdir))
    lines = []
    written = figures.regenerate_all(str(fdir), log=lines.append)
    want = ["a/accuracy_curves.png", "a/accuracy_curves.pdf", "a/early_stop_iteration.png",
            "both/final_test_accuracy.png"]
    assert [os.path.relpath(p, fdir) for p in written] == want
    assert set(files_under(fdir)) - before == set(want)
    assert all(os.path.getsize(p) > 0 for p in written)
    assert "missing: both/final_test_accuracy: Net B: arm 'random_mask': no finished rounds" in lines
    assert [l for l in lines if l.startswith("wrote ")] == [f"wrote {p}" for p in written]


def test_regenerate_draws_the_instability_figure_from_its_csv(runs, tmp_path):
    fdir, manifest = figures_dir(tmp_path, runs)
    rows = [dict(trial=t, round=r, pm=pm, rewind_iteration=k, barrier=0.01 * (r + 1) / (k + 1) + 0.001 * t,
                 end_error=0.12, end_accuracy=0.88 - 0.001 * k, **{"error_0": 0.1, "error_1": 0.12})
            for t in (0, 1) for r, pm in ((0, 100.0), (3, 51.2)) for k in (0, 100, 500)]
    pd.DataFrame(rows).to_csv(fdir / "a" / "instability.csv", index=False)
    manifest["figures"] = [{"name": "a/instability", "plot": "instability", "experiments": ["a"]},
                           {"name": "b/instability", "plot": "instability", "experiments": ["b"],
                            "accuracy": False}]
    (fdir / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    written = figures.regenerate_all(str(fdir), log=lines.append)
    assert [os.path.relpath(p, fdir) for p in written] == ["a/instability.png", "b/instability.png"]
    assert any(l.startswith("missing: b/instability: ") and "instability.csv" in l for l in lines), lines
    fig, data = plotting.plot_instability(str(fdir / "a"))
    assert len(fig.axes) == 2 and len(data["rows"]) == 12 and not data["missing"]
    # One line per sparsity, through the mean over trials at each k.
    means = sorted(tuple(np.round(np.asarray(c.lines[0].get_ydata(), float), 6)) for c in fig.axes[0].containers)
    want = sorted(tuple(np.round([0.01 * (r + 1) / (k + 1) + 0.0005 for k in (0, 100, 500)], 6)) for r in (0, 3))
    assert means == want
    manifest["figures"][0]["experiments"] = ["a", "b"]
    (fdir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(figures.FiguresError, match="instability takes exactly one experiment"):
        figures.regenerate_all(str(fdir), log=lambda s: None)


@pytest.mark.parametrize("change, message", [
    ({"plot": "pie"}, "unknown plot 'pie'"),
    ({"experiments": ["zz"]}, "experiment directory not found"),
    ({"metric": "loss"}, '"metric" must be one of'),
    ({"colour": "red"}, "unknown keys \\['colour'\\]"),
    ({"name": "../escape"}, "name must be a path inside"),
])
def test_bad_manifest(runs, tmp_path, change, message):
    fdir, manifest = figures_dir(tmp_path, runs)
    manifest["figures"][1].update(change)
    (fdir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(figures.FiguresError, match=message):
        figures.regenerate_all(str(fdir), log=lambda s: None)
    # Validated before drawing: nothing written.
    assert not os.path.exists(fdir / "a" / "accuracy_curves.png")


@pytest.mark.parametrize("name", ["lenet_fashion_mnist", "conv2_fashion_mnist"])
def test_committed_reproductions_avoid_the_paths_issue_12_changed(name):
    # figures/README.md says these runs stay valid because they use none of
    # rewinding, weight decay, SGD or a non-Adam optimizer reset.
    with open(os.path.join(REPO, "figures", name, "config.json")) as f:
        config = json.load(f)
    assert config["optimizer"] == "adam"
    assert config["rewind_iteration"] == 0
    assert config["weight_decay"] == 0.0
    assert config["lr_boundaries"] == [] and config["warmup_iterations"] == 0
    with open(os.path.join(REPO, "figures", f"{name}.flags")) as f:
        flags_text = f.read()
    for flag in ("--rewind_iteration", "--weight_decay", "--optimizer", "--strategy", "--checkpoint_every"):
        assert flag not in flags_text
