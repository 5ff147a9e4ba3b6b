"""Tests for lth_keras.arms.registry: the README's custom arm runs through
train_and_evaluate, registered arms are accepted by --controls (also from
--arm_modules), and the runner checks what an arm depends on.
"""

import os
import re

import numpy as np
import pytest

from lth_keras.arms import registry as arms
from lth_keras.experiment import runner as experiment
from lth_keras.analysis import plotting
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.summary import load_summary
from tests.helpers import REPO

README = os.path.join(REPO, "README.md")
README_CONFIG = 'model="lenet", dataset="fashion_mnist", rounds=4,'
TINY = ('model="lenet", dataset="synthetic", rounds=3, iterations=40, eval_every=20, batch_size=60, '
        'synthetic_sizes=(600, 100), validation_size=100, tensorboard=False, checkpoint_every=0,')


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Arms registered by a test are gone after it."""
    monkeypatch.setattr(arms, "_REGISTRY", dict(arms._REGISTRY))


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _readme_arm_block():
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    (block,) = [b for b in blocks if "arms.register" in b]
    return block


def test_readme_custom_arm_runs_through_train_and_evaluate(tmp_path, monkeypatch):
    code = _readme_arm_block()
    assert README_CONFIG in code
    # Synthetic data and short rounds; everything else is verbatim.
    code = code.replace(README_CONFIG, TINY)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})

    root = tmp_path / "runs" / "lenet"
    done = {(s["arm"], s["round"]) for s in ExperimentDir(str(root)).summaries()}
    assert done == {("ticket", 0), ("ticket", 1), ("ticket", 2), ("reinit", 1), ("reinit", 2),
                    ("shuffled_signs", 1), ("shuffled_signs", 2)}
    for r in (1, 2):
        ticket, shuffled = (root / "trial_0" / arm / f"round_{r}" for arm in ("ticket", "shuffled_signs"))
        masks, masks_shuffled = _npz(ticket / "mask.npz"), _npz(shuffled / "mask.npz")
        assert masks.keys() == masks_shuffled.keys()
        for name in masks:
            np.testing.assert_array_equal(masks[name], masks_shuffled[name])
        start, start_shuffled = _npz(ticket / "reset_weights.npz"), _npz(shuffled / "reset_weights.npz")
        kernels = [k for k in start if k != "paths" and start[k].ndim == 2]
        assert len(kernels) == 3
        flipped = 0
        for k in kernels:
            np.testing.assert_array_equal(np.abs(start[k]), np.abs(start_shuffled[k]))
            alive = start[k] != 0
            flipped += int(np.sum(np.sign(start[k][alive]) != np.sign(start_shuffled[k][alive])))
        assert flipped > 0.3 * sum(int(np.count_nonzero(start[k])) for k in kernels)
        biases = [k for k in start if k != "paths" and start[k].ndim == 1]
        for k in biases:  # only the masked weights were changed
            np.testing.assert_array_equal(start[k], start_shuffled[k])
    # Results and figures take the arm from the data and the registry.
    assert "shuffled_signs" in set(load_summary(str(root))["arm"])
    assert plotting.arm_color("shuffled_signs") in plotting.FALLBACK_ARM_COLORS
    points, _ = plotting.metric_points(str(root), "early_stop_test_accuracy", arms=None)
    assert "shuffled_signs" in set(points["arm"])


def test_controls_accept_registered_arms_only():
    with pytest.raises(experiment.ConfigError, match="--controls: unknown control.*my_arm"):
        experiment.ExperimentConfig(controls=("my_arm",)).resolve()
    arms.register(arms.Arm("my_arm", lambda trial, r: None))
    assert experiment.ExperimentConfig(controls=("my_arm",)).resolve().controls == ("my_arm",)
    assert "my_arm" in experiment.CONTROLS
    # External arms (trained by their own binary) and the ticket are no controls.
    for name in ("tfmot_gradual", "ticket"):
        with pytest.raises(experiment.ConfigError, match="--controls"):
            experiment.ExperimentConfig(controls=(name,)).resolve()


def test_arm_modules_register_arms(tmp_path, monkeypatch):
    (tmp_path / "my_arms_mod.py").write_text(
        "from lth_keras import arms\narms.register(arms.Arm('from_module', lambda trial, r: None))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = experiment.ExperimentConfig(controls=("from_module",), arm_modules=("my_arms_mod",)).resolve()
    assert config.controls == ("from_module",)
    with pytest.raises(experiment.ConfigError, match="--arm_modules: cannot import 'no_such_mod'"):
        experiment.ExperimentConfig(arm_modules=("no_such_mod",)).resolve()


def test_register_refuses_taken_and_bad_names():
    with pytest.raises(ValueError, match="already registered"):
        arms.register(arms.Arm("reinit", lambda trial, r: None))
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="plain directory name"):
            arms.register(arms.Arm(bad, lambda trial, r: None))
    with pytest.raises(KeyError, match="unknown arm 'nope'; registered: ticket, reinit"):
        arms.get("nope")


def test_an_arm_whose_dependency_is_missing_fails_before_training(tmp_path):
    arms.register(arms.Arm("needs_next", lambda trial, r: None,
                           depends=lambda config, r: [("ticket", r + 1)]))
    config = dict(eval(f"dict({TINY})"), rounds=2, controls=("needs_next",))
    with pytest.raises(RuntimeError, match=r"arm 'needs_next' round 1 needs the unfinished rounds \[\('ticket', 2\)\]"):
        experiment.train_and_evaluate(experiment.ExperimentConfig(**config), str(tmp_path), log=lambda s: None)


def test_order_and_styles_come_from_the_registry():
    assert arms.names()[:4] == ("ticket", "reinit", "random_mask", "tfmot_gradual")
    assert plotting.DEFAULT_ARMS == ("ticket", "reinit", "random_mask")
    assert plotting.arm_color("tfmot_gradual") == "#9467bd"
    arms.register(arms.Arm("styled", lambda trial, r: None, color="#000000", label="Styled"))
    assert plotting.arm_color("styled") == "#000000" and plotting.arm_label("styled") == "Styled"
    assert sorted(["zz", "styled", "tfmot_gradual", "ticket"], key=arms.order_key) == [
        "ticket", "styled", "tfmot_gradual", "zz"]
