"""Tests for lth_keras.arms.builtin and the package's names.

The built-in arms are declared apart from the registry, and registered
whenever `lth_keras.arms` is imported, with no deep-learning framework
imported (the figures program reads the arms).
"""

import subprocess
import sys
import textwrap

import lth_keras.arms
from lth_keras.arms import builtin, registry

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
