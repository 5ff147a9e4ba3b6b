"""Tests for lth_keras.baselines.venv: the TFMOT baseline's own venv.

Creating one installs packages (tests/baselines/tfmot_test.py does, once
per machine); these tests check what is asked for and when an existing
directory is reused or refused, without installing anything.
"""

import json
import os
import sys

import pytest

from lth_keras.baselines import venv


def test_the_interpreter_is_under_bin_of_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert venv.venv_python("v") == os.path.join(str(tmp_path), "v", "bin", "python")


def test_tf_keras_matches_the_installed_tensorflow():
    from importlib.metadata import version

    major, minor = version("tensorflow").split(".")[:2]
    requirements = venv.venv_requirements()
    assert requirements[0] == f"tf_keras=={major}.{minor}.*"
    assert "tensorflow-model-optimization>=0.8" in requirements and "absl-py~=1.2" in requirements


def test_a_ready_venv_is_reused_without_creating_anything(tmp_path):
    path = tmp_path / "venv"
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    wanted = {"requirements": venv.venv_requirements(), "python": sys.version.split()[0]}
    (path / "lth_keras_tfmot_ready.json").write_text(json.dumps(wanted))
    created = []
    assert venv.setup_venv(str(path), log=created.append) == str(path / "bin" / "python")
    assert created == [] and sorted(os.listdir(path)) == ["bin", "lth_keras_tfmot_ready.json"]


def test_a_directory_that_is_not_a_venv_is_never_touched(tmp_path):
    path = tmp_path / "mine"
    path.mkdir()
    (path / "notes.txt").write_text("keep me")
    with pytest.raises(venv.VenvError) as info:
        venv.setup_venv(str(path), log=lambda line: None)
    assert str(info.value) == f"--setup_venv: {str(path)!r} exists and is not a venv; not touching it."
    assert isinstance(info.value, ValueError)
    assert (path / "notes.txt").read_text() == "keep me"
