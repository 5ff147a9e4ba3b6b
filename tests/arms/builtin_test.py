"""Tests for lth_keras.arms.builtin and the package's names.

The built-in arms are declared apart from the registry, and registered
whenever `lth_keras.arms` is imported, with no deep-learning framework
imported (the figures program reads the arms); one figure tells them apart.
The arms of pruning at initialization reach the ticket's counts, layerwise
and global, in their registered styles (the scores themselves:
tests/pruning/pai_test.py).
"""

import subprocess
import sys
import textwrap

import matplotlib.colors
import numpy as np
import pytest

import lth_keras.arms
from lth_keras.arms import builtin, registry
from lth_keras import arms
from lth_keras.experiment import runner as experiment
from lth_keras.pruning import pai

BUILT_IN = ("ticket", "reinit", "random_mask", "tfmot_gradual", "snip", "snip_shuffled", "grasp", "grasp_shuffled",
            "synflow", "synflow_shuffled", "magnitude_init", "magnitude_init_shuffled", "gradual")


def test_the_package_exports_the_registry():
    for name in ("Arm", "register", "get", "names", "controls", "order_key", "dependencies", "ticket_same_round"):
        assert getattr(lth_keras.arms, name) is getattr(registry, name), name
    assert sorted(lth_keras.arms.__all__) == sorted(registry.__all__)


def test_built_ins_are_declared_apart_from_the_registry():
    assert registry.names()[:len(BUILT_IN)] == BUILT_IN
    assert all(registry.get(name).start is None or registry.get(name).start.__module__ == builtin.__name__
               for name in BUILT_IN)
    assert not [n for n in vars(registry) if n.startswith("_ticket") or n.startswith("_pai")]


def test_importing_the_arms_registers_the_built_ins_without_a_framework():
    code = """
        import sys
        from lth_keras.arms import registry
        print(",".join(registry.names()))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax", "torch")))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    names, frameworks = out.stdout.splitlines()
    assert tuple(names.split(","))[:len(BUILT_IN)] == BUILT_IN
    assert frameworks == "[]"


def test_the_gradual_arm_trains_with_the_arms_layer():
    # Its training loop needs lth_keras.training, above lth_keras.pruning.
    from lth_keras.arms import gradual
    from lth_keras.pruning import gradual as pruning_gradual

    assert gradual.train_gradual_arm and gradual.train_gradual
    assert not hasattr(pruning_gradual, "train_gradual") and not hasattr(pruning_gradual, "ARM_SCHEDULE")


def test_built_in_arms_are_told_apart_by_colour_and_marker():
    # One figure can overlay every built-in arm; a *_shuffled arm shares its
    # method's colour and marker on purpose (dotted line).
    base = [arms.get(n) for n in arms.names() if not n.endswith("_shuffled") and arms.get(n).color]
    builtin = [a for a in base if a.name in ("ticket", "reinit", "random_mask", "tfmot_gradual", "gradual", "snip",
                                             "grasp", "synflow", "magnitude_init")]
    assert len(builtin) == 9
    for field in ("color", "marker"):
        values = [getattr(a, field) for a in builtin]
        assert len(set(values)) == len(values), {a.name: getattr(a, field) for a in builtin}


# -- the arms of pruning at initialization (lth_keras.pruning.pai), in the runner ---------


PAI_ARMS = ("snip", "grasp", "synflow", "magnitude_init",
            "snip_shuffled", "grasp_shuffled", "synflow_shuffled", "magnitude_init_shuffled")


def test_arms_are_registered_with_styles():
    for name in PAI_ARMS:
        arm = arms.get(name)
        assert name in arms.controls() and arm.label and arm.color and arm.marker
    assert arms.get("snip").linestyle != arms.get("snip_shuffled").linestyle


def _run(tmp_path, name, **kw):
    config = experiment.ExperimentConfig(
        model="lenet", dataset="synthetic", validation_size=200, iterations=20, eval_every=10,
        experiment=name, tensorboard=False, controls=PAI_ARMS, **kw)
    return experiment.train_and_evaluate(config, str(tmp_path), log=lambda s: None)


def test_each_arm_reaches_the_tickets_counts_layerwise(tmp_path):
    exp = _run(tmp_path, "layerwise", rounds=3)
    theta0 = exp.read_reset_weights(0, "ticket", 0)
    for round_ in (1, 2):
        ticket = exp.read_mask(0, "ticket", round_)
        counts = {n: int(np.count_nonzero(m)) for n, m in ticket.items()}
        for name in PAI_ARMS:
            mask = exp.read_mask(0, name, round_)
            assert {n: int(np.count_nonzero(m)) for n, m in mask.items()} == counts, (name, round_)
            summary = exp.read_round_summary(0, name, round_)
            assert summary["pm"] == pytest.approx(exp.read_round_summary(0, "ticket", round_)["pm"])
            # Trained from θ0 (masked).
            reset = exp.read_reset_weights(0, name, round_)
            for key, value in theta0.items():
                if key != "paths" and value.ndim == 1:  # biases are never pruned
                    np.testing.assert_array_equal(reset[key], value)
        for method in pai.METHODS:
            a, b = exp.read_mask(0, method, round_), exp.read_mask(0, f"{method}_shuffled", round_)
            assert any(not np.array_equal(a[n], b[n]) for n in a)
    # Magnitude at init keeps exactly the largest |θ0| of each layer.
    mask = exp.read_mask(0, "magnitude_init", 2)
    kernels = [v for k, v in sorted(theta0.items()) if k != "paths" and v.ndim == 2]
    for kernel, (name, m) in zip(kernels, mask.items()):
        kept = np.abs(kernel)[m.astype(bool)]
        dropped = np.abs(kernel)[~m.astype(bool)]
        assert kept.min() >= dropped.max(), name
    rows = {(r["arm"], r["round"]) for r in __import__("csv").DictReader(open(exp.summary_csv_path))}
    assert {(a, "2") for a in PAI_ARMS} <= rows
    # Figures overlay the arms an experiment ran, in their registered styles.
    from lth_keras.analysis import plotting

    fig, data = plotting.plot_metric_vs_pm(exp.root, "final_test_accuracy", arms=None)
    assert set(PAI_ARMS) <= set(data["points"]["arm"])
    assert all("'reinit'" in m or "'random_mask'" in m for m in data["missing"]), data["missing"]
    handles, labels = fig.axes[0].get_legend_handles_labels()
    by_label = {label: handle for handle, label in zip(handles, labels)}
    for name in ("snip", "snip_shuffled", "synflow"):
        arm = arms.get(name)
        label = next(text for text in by_label if arm.label in text and ("shuffled" in text) == ("shuffled" in name))
        handle = by_label[label]
        line = handle[0] if isinstance(handle, tuple) or hasattr(handle, "lines") else handle
        assert matplotlib.colors.same_color(line.get_color(), arm.color), (name, labels)


def test_each_arm_reaches_the_tickets_total_global(tmp_path):
    exp = _run(tmp_path, "global", rounds=2, pruning="global", rewind_iteration=10)
    ticket = exp.read_mask(0, "ticket", 1)
    # With rewinding, scored at and trained from the ticket's reset point (θ10).
    rewound, theta0 = exp.read_reset_weights(0, "ticket", 1), exp.read_reset_weights(0, "ticket", 0)
    for name in PAI_ARMS:
        reset = exp.read_reset_weights(0, name, 1)
        biases = [k for k, v in rewound.items() if k != "paths" and v.ndim == 1]
        assert all(np.array_equal(reset[k], rewound[k]) for k in biases), name
        assert not all(np.array_equal(reset[k], theta0[k]) for k in biases), name
    total = sum(int(np.count_nonzero(m)) for m in ticket.values())
    per_layer = {}
    for name in PAI_ARMS:
        mask = exp.read_mask(0, name, 1)
        assert sum(int(np.count_nonzero(m)) for m in mask.values()) == total, name
        per_layer[name] = {n: int(np.count_nonzero(m)) for n, m in mask.items()}
        if name.endswith("_shuffled"):  # shuffling keeps the method's own layer sparsities
            assert per_layer[name] == per_layer[name[: -len("_shuffled")]]
    # Global PaI chooses its own per-layer sparsities.
    assert len({tuple(sorted(c.items())) for c in per_layer.values()}) > 1


def test_the_arms_tickets_are_measured_against_declare_their_rounds():
    from lth_keras import arms

    # lr_rewind and finetune: their own chain, from the ticket's dense round 0.
    for name in ("lr_rewind", "finetune"):
        arm = arms.get(name)
        assert arm.depends(None, 1) == [("ticket", 0)]
        assert arm.depends(None, 3) == [(name, 2)]
        assert arm.keeps_trained_weights and arm.rewinds
    assert arms.get("finetune").final_learning_rate and not arms.get("lr_rewind").final_learning_rate
    # static_erk, set, rigl: the ticket's round (its P_m), from θ0 for all T iterations.
    for name in ("static_erk", "set", "rigl"):
        arm = arms.get(name)
        assert arm.depends(None, 2) == [("ticket", 2)]
        assert not arm.rewinds and arm.keeps_trained_weights and not arm.final_learning_rate
    assert arms.get("static_erk").train is None and arms.get("set").train and arms.get("rigl").train
    assert set(arms.controls()) >= {"lr_rewind", "finetune", "static_erk", "set", "rigl"}
