"""The package's layering: who may import whom, and the names that moved.

Lower modules (layers, pruning, snapshots, training, experiment, export,
the baselines, ...) never import the callback module, the runner or a binary
above them; names that moved stay importable from where they were
documented."""

import ast
import glob
import os
import warnings

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module -> the lth_keras modules it may not import (directly, anywhere in it).
FORBIDDEN = {
    "callbacks": {"experiment", "main", "training", "export", "cli"},
    "training": {"callbacks", "experiment", "main"},
    "trial_state": {"callbacks", "experiment", "main"},
    "experiment": {"callbacks", "main", "export", "cli"},
    "export": {"callbacks", "main"},
    "baselines.tfmot": {"callbacks", "experiment", "main", "training"},
    "cli": {"callbacks", "experiment", "main"},
    "config": {"callbacks", "experiment", "main", "training", "cli"},
    "pai": {"callbacks", "experiment", "main", "training", "cli", "trial_state"},
    "instability": {"callbacks", "experiment", "main"},
}
# Modules below everything Keras: they import no other lth_keras module
# that pulls in the callback, the runner or a binary.
LOWEST = ("layers", "pruning", "results", "arms", "schedule", "datasets", "snapshots", "models", "plotting")


def imports(module):
    path = os.path.join(REPO, "lth_keras", *module.split(".")) + ".py"
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lth_keras"):
            if node.module in ("lth_keras", "lth_keras.baselines"):
                found.update(f"{node.module}.{a.name}" for a in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lth_keras."))
    return {m[len("lth_keras."):] for m in found if m.startswith("lth_keras.")}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_no_upward_imports(module):
    assert not imports(module) & FORBIDDEN[module]


@pytest.mark.parametrize("module", LOWEST)
def test_lowest_modules_import_nothing_above_them(module):
    assert not imports(module) & {"callbacks", "experiment", "main", "training", "export", "cli", "config",
                                  "trial_state", "figures"}


def test_only_the_package_exports_import_the_callback_module():
    modules = {os.path.relpath(p, os.path.join(REPO, "lth_keras"))[:-3].replace(os.sep, ".")
               for p in glob.glob(os.path.join(REPO, "lth_keras", "**", "*.py"), recursive=True)}
    importers = sorted(m for m in modules if "callbacks" in imports(m))
    assert importers == ["__init__"]  # the package exports IterativeMagnitudePruning


def test_moved_names_are_still_importable():
    from lth_keras import callbacks, main
    from lth_keras.pruning import snapshots

    for name in ("WeightSnapshot", "prune_model", "reset_optimizer_state", "default_output_layer"):
        assert getattr(callbacks, name) is getattr(snapshots, name)
    from lth_keras import cli

    assert main.define_flags is cli.define_flags and main.parse_command_line is cli.parse_command_line


def test_rewind_step_is_a_deprecated_name_of_rewind_iteration():
    import lth_keras

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = lth_keras.IterativeMagnitudePruning(0.2, round_steps=10, rewind_step=3, verbose=0)
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "rewind_iteration" in str(caught[0].message)
    assert old.rewind_iteration == old.rewind_step == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = lth_keras.IterativeMagnitudePruning(0.2, round_steps=10, rewind_iteration=3, verbose=0)
    assert new.rewind_iteration == 3
    with pytest.raises(ValueError, match="`rewind_iteration` \\(10\\) must be smaller than `round_steps`"):
        lth_keras.IterativeMagnitudePruning(0.2, round_steps=10, rewind_iteration=10, verbose=0)
