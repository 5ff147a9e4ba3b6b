"""Tests for lth_keras.experiment.saved: the config an experiment directory
was run with, read back by the programs that read an experiment (export,
instability, the TFMOT baseline).
"""

import json

import pytest

from lth_keras.experiment.config import ConfigError, ExperimentConfig
from lth_keras.experiment.saved import saved_config


class ReaderError(Exception):
    """A reader's own exception class (export has ExportError)."""


def _experiment(tmp_path, **fields):
    root = tmp_path / "runs" / "mine"
    root.mkdir(parents=True)
    config = ExperimentConfig(model="lenet", dataset="synthetic", iterations=200, eval_every=100,
                              lr_boundaries=(100,), **fields).resolve()
    saved = dict(config.defining(), a_field_of_a_later_version=1)
    (root / "config.json").write_text(json.dumps(saved))
    return root, config


def test_the_saved_config_is_resolved_and_points_at_its_directory(tmp_path):
    root, written = _experiment(tmp_path, seed=3)
    config = saved_config(str(root))
    assert (config.model, config.dataset, config.iterations, config.seed) == ("lenet", "synthetic", 200, 3)
    assert config.lr_boundaries == (100,)  # a JSON list read back as a tuple
    assert config.learning_rate == written.learning_rate  # filled from the paper's defaults
    assert (config.output_dir, config.experiment) == (str(tmp_path / "runs"), "mine")
    assert config.defining() == written.defining()


def test_overrides_replace_saved_values(tmp_path):
    root, _ = _experiment(tmp_path)
    config = saved_config(str(root), {"seed": 9, "rounds": 4})
    assert (config.seed, config.rounds, config.iterations) == (9, 4, 200)
    with pytest.raises(ConfigError) as e:
        saved_config(str(root), {"iterations": 0})
    assert e.value.flag == "iterations"


def test_a_missing_experiment_raises_the_readers_error_naming_results(tmp_path):
    with pytest.raises(ReaderError, match=r"^--results: .* does not exist"):
        saved_config(str(tmp_path / "nowhere"), error=ReaderError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReaderError, match=r"is not an lth_keras experiment \(no config.json\)"):
        saved_config(str(tmp_path / "empty"), error=ReaderError)
    with pytest.raises(ValueError, match="does not exist"):
        saved_config(str(tmp_path / "nowhere"))
