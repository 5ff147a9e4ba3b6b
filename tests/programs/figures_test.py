"""Tests for the lth_keras.figures program: its flags, its one-line errors, and
``python -m lth_keras.figures`` as a process (CSV-only inputs).

What it draws is tested in tests/analysis/figures_test.py.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from lth_keras import figures
from lth_keras.analysis import plotting
from tests.helpers import REPO
from tests.helpers.csv_experiments import fake_save, figures_dir, runs  # noqa: F401 - fixtures
from tests.helpers.csv_experiments import expected_figures, files_under

NAMES = ("accuracy_curves",) + plotting.PAPER_METRICS + ("early_stop_panel",)


def _cli(args, real=True, cwd=REPO):
    # The real entry point: it imports neither TensorFlow nor Keras (about a
    # second; see test_figures_help_does_not_import_tensorflow).
    return subprocess.run([sys.executable, "-m", "lth_keras.figures", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)



def _main(argv):
    """figures.main in-process after parsing argv; returns the exit code/message."""
    with flagsaver.flagsaver():
        figures.FLAGS.unparse_flags()
        figures.FLAGS(["figures"] + argv)
        try:
            figures.main(["figures"])
            code = 0
        except SystemExit as e:
            code = e.code
    return code


def test_main_flags_reach_make_figures(runs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    # Repeated, comma-separated, or a parent directory standing for its experiments.
    calls = []
    monkeypatch.setattr(figures, "make_figures", lambda roots, out, **kw: calls.append((roots, kw)) or ([], []))
    a, b = str(runs / "a"), str(runs / "b")
    for argv in ([f"--results={a},{b}"], [f"--results={a}", f"--results={b}"], [f"--results={runs}"]):
        assert _main(argv + [f"--out={out}"]) == 0
        assert calls[-1][0] == [a, b]
    assert _main([f"--results={a},{b}", "--labels=A,B", f"--out={out}"]) == 0
    assert calls[-1][1]["labels"] == ["A", "B"]
    assert _main([f"--results={a}", f"--out={out}", "--pms=100,7", "--reinit_pms=", "--trial=1",
                  "--arms=ticket", "--formats=png", "--dpi=40"]) == 0
    assert calls[-1] == ([a], dict(labels=None, arms=["ticket"], pms=[100.0, 7.0], reinit_pms=[],
                                   trial=1, formats=["png"], dpi=40))


@pytest.mark.parametrize("args, message", [
    (["--out={tmp}/o"], "error: --results: required (or pass --regenerate)"),
    (["--results={tmp}", "--out={tmp}/o"], "error: --results: no experiment in {tmp}"),
    (["--results={runs}/a"], "error: --out: required"),
    (["--results={runs}/a", "--out={tmp}/o", "--labels=x,y"], "error: --labels: got 2 labels for 1"),
    (["--results={runs}/a", "--out={tmp}/o", "--pms=1,x"], "error: --pms: expected numbers"),
    (["--regenerate", "--figures_dir={tmp}"], "error: manifest not found: {tmp}/manifest.json"),
])
def test_main_bad_input(runs, tmp_path, args, message):
    fmt = dict(tmp=tmp_path / "x", runs=runs)
    (tmp_path / "x").mkdir()
    code = _main([a.format(**fmt) for a in args])
    assert isinstance(code, str) and code.startswith(message.format(**fmt)) and "\n" not in code
    assert not (tmp_path / "x" / "o").exists()


def test_cli_writes_png_and_pdf(runs, tmp_path):
    out = tmp_path / "out"
    r = _cli([f"--results={runs / 'a'}", f"--out={out}", "--dpi=40"])
    assert r.returncode == 0, r.stderr
    assert files_under(out) == expected_figures(NAMES)
    for f in files_under(out):
        assert f"wrote {out / f}" in r.stdout
        assert os.path.getsize(out / f) > 0
    assert "missing: a: ticket at P_m 3.6%: no round within 10%" in r.stdout
    assert open(out / "early_stop_panel.png", "rb").read(4) == b"\x89PNG"
    assert open(out / "early_stop_panel.pdf", "rb").read(5) == b"%PDF-"


def test_cli_bad_input(tmp_path):
    r = _cli([f"--results={tmp_path}/nope", f"--out={tmp_path}/o"])
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: --results: no such directory: {tmp_path}/nope"
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_real_entry_point(runs, tmp_path):
    # Imports lth_keras/__init__.py, hence TensorFlow.
    out = tmp_path / "out"
    r = _cli([f"--results={runs / 'a'}", f"--out={out}", "--formats=png", "--dpi=30"], real=True)
    assert r.returncode == 0, r.stderr
    assert files_under(out) == [f"{n}.png" for n in sorted(NAMES)]


def test_regenerate_flag(runs, tmp_path, fake_save, capsys):
    fdir, _ = figures_dir(tmp_path, runs, panel=True)
    assert _main(["--regenerate", f"--figures_dir={fdir}"]) == 0
    assert f"wrote {fdir / 'both' / 'panel.png'}" in capsys.readouterr().out
    assert os.path.exists(fdir / "a" / "accuracy_curves.pdf")
    assert _main(["--regenerate", f"--figures_dir={fdir}", f"--results={runs}"]).startswith(
        "error: --regenerate: do not combine with --results")


@pytest.mark.slow
def test_committed_figures_regenerate_from_committed_csvs(tmp_path):
    """`python -m lth_keras.figures --regenerate` redraws every figure in
    figures/manifest.json from the CSVs committed beside it."""
    committed = os.path.join(REPO, "figures")
    with open(os.path.join(committed, "manifest.json")) as f:
        manifest = json.load(f)
    copy = tmp_path / "figures"
    # Only the CSVs (and the manifest) travel: no npz, no summary.json.
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("*.png", "*.pdf", "*.npz", "*.json"))
    shutil.copy(os.path.join(committed, "manifest.json"), copy / "manifest.json")
    proc = _cli(["--regenerate", f"--figures_dir={copy}"], real=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    formats = manifest.get("formats", ["png", "pdf"])
    for entry in manifest["figures"]:
        for ext in entry.get("formats", formats):
            path = copy / f"{entry['name']}.{ext}"
            assert path.is_file() and path.stat().st_size > 10_000, path
            # Every committed figure is one the manifest can regenerate.
            assert os.path.isfile(os.path.join(committed, f"{entry['name']}.{ext}"))


def test_figures_help_does_not_import_tensorflow():
    # -X importtime lists every module the process imports.
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "lth_keras.figures", "--help"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "--results" in proc.stdout, proc.stderr[-2000:]  # absl's --help exits with status 1
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "lth_keras.analysis.plotting" in imported  # the check sees our modules
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "jax", "torch")]
