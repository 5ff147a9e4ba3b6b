"""Tests for lth_keras.experiment.runner: what it hands to the arms.

The pruning-at-initialization arms score on the runner's dataset, handed to
them through the trial (`TrialState.data`). They once loaded the dataset
again from disk, into a module-level cache in `lth_keras.pruning.pai`.
"""

import pandas as pd

from lth_keras import datasets
from lth_keras.experiment import runner


def test_pai_arms_score_on_the_runners_dataset_without_loading_it_again(tmp_path, monkeypatch):
    loads = []
    load = datasets.load

    def counted(*args, **kwargs):
        loads.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load", counted)
    config = runner.ExperimentConfig(
        model="lenet", dataset="synthetic", validation_size=100, synthetic_sizes=(600, 200), seed=7,
        iterations=20, eval_every=10, rounds=2, controls=("snip", "grasp_shuffled"), tensorboard=False,
        checkpoint_every=0)
    exp = runner.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
    assert sorted(pd.read_csv(exp.summary_csv_path)["arm"]) == ["grasp_shuffled", "snip", "ticket", "ticket"]
    assert len(loads) == 1


def test_the_pai_module_keeps_no_data():
    from lth_keras.pruning import pai

    assert not [name for name, value in vars(pai).items()
                if isinstance(value, (dict, list, set)) and not name.startswith("__")]
