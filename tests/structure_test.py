"""The package's layout: folders are layers of the architecture.

Every import in `lth_keras/` (at the top of a file or inside a function)
goes to the module's own package or to a lower layer; modules import no
cycle; no module is over 500 lines; the pure layers import no Keras; and the
public names are the same whatever the entry point.
"""

import ast
import glob
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "lth_keras")

# Lowest first. A module imports only its own package and lower layers.
LAYERS = (
    ("storage",),
    ("layers",),
    ("pruning",),
    ("callbacks",),
    ("models", "datasets"),
    ("training",),
    ("arms",),
    ("experiment",),
    ("analysis",),
    ("main", "export", "instability", "figures", "cli", "_startup", "baselines"),
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
# Modules that import no deep-learning framework, anywhere in them: the
# pure math, the disk, and all that the figures program reads.
FRAMEWORK_FREE_PACKAGES = ("storage",)
FRAMEWORK_FREE = ("pruning", "pruning.magnitude", "pruning.sparsity", "pruning.erk", "arms", "arms.registry", "analysis",
                  "analysis.styles", "analysis.points",
                  "analysis.plotting", "figures")
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "tf_keras", "tensorflow_model_optimization")
MAX_LINES = 500


def _module_name(path):
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


MODULES = {_module_name(p): p for p in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)}


def _tree(module):
    with open(MODULES[module], encoding="utf-8") as f:
        return ast.parse(f.read())


def _resolve(name):
    """The module `name` refers to: itself if it is one, else its package."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(module):
    """Every lth_keras module `module` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}: relative import")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lth_keras":
            for alias in node.names:
                found.add(_resolve(f"{node.module}.{alias.name}"))
        elif isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.split(".")[0] == "lth_keras")
    found.discard(module)
    return found


def framework_imports(module):
    names = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    return names & set(FRAMEWORKS)


def layer_of(module):
    parts = module.split(".")
    return None if len(parts) == 1 else LEVEL[parts[1]]


def package_of(module):
    return module.split(".")[1] if "." in module else None


INNER = sorted(m for m in MODULES if m != "lth_keras")


def test_every_module_has_a_layer():
    assert [m for m in INNER if package_of(m) not in LEVEL] == []


@pytest.mark.parametrize("module", INNER)
def test_imports_go_to_the_same_package_or_a_lower_layer(module):
    upward = sorted(
        m for m in imports(module)
        if m == "lth_keras" or (package_of(m) != package_of(module) and layer_of(m) > layer_of(module))
    )
    assert upward == [], f"{module} imports {upward} above it (layers: {LAYERS})"


def _cycle(graph):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycles_lazy_imports_included():
    graph = {m: imports(m) for m in INNER}
    assert _cycle(graph) is None


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_500_lines(module):
    with open(MODULES[module], encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= MAX_LINES


def _framework_free(module):
    name = module[len("lth_keras."):]
    return name in FRAMEWORK_FREE or name.split(".")[0] in FRAMEWORK_FREE_PACKAGES


@pytest.mark.parametrize("module", sorted(m for m in INNER if _framework_free(m)))
def test_pure_layers_import_no_framework(module):
    assert framework_imports(module) == set()


def test_the_package_init_reads_no_command_line():
    source = ast.dump(_tree("lth_keras"))
    assert "argv" not in source and "_startup" not in source


def _run(code, *args):
    out = subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_public_names_import_whatever_the_entry_point():
    # The figures program once hid the library's names; argv is what it looked at.
    code = """
        import sys
        sys.orig_argv = [sys.executable, "-m", "lth_keras.figures"]
        import lth_keras
        from lth_keras import arms, experiment, gradual, pai
        from lth_keras.callbacks import prune_model
        from lth_keras.layers import fraction_remaining, masked_weights
        for name in ("MaskedDense", "MaskedConv2D", "MaskedLayer", "make_prunable", "fold_masks", "add_masks",
                     "load_model", "remove_masks", "IterativeMagnitudePruning", "GradualMagnitudePruning"):
            assert getattr(lth_keras, name) is not None, name
        assert gradual.check_pattern and pai.snip_scores and arms.Arm and arms.register
        assert experiment.ExperimentConfig and experiment.train_and_evaluate
        assert set(lth_keras.__all__) <= set(dir(lth_keras))
        print("ok")
    """
    assert _run(code).strip() == "ok"


def test_import_lth_keras_alone_loads_no_framework():
    code = """
        import sys
        import lth_keras
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax", "torch")))
    """
    assert _run(code).strip() == "[]"


def test_import_after_keras_registers_the_masked_layers():
    # `import keras, lth_keras` then keras.saving.load_model must find MaskedDense.
    code = """
        import keras
        import lth_keras
        print(keras.saving.get_registered_object("lth_keras>MaskedDense") is not None)
    """
    assert _run(code).strip() == "True"


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


def _test_file(module):
    parts = module.split(".")[1:]
    name = parts[-1].lstrip("_") + "_test.py"
    folder = parts[0] if len(parts) > 1 else "programs"
    return os.path.join(REPO, "tests", folder, name)


@pytest.mark.parametrize("module", sorted(m for m in INNER if os.path.basename(MODULES[m]) != "__init__.py"))
def test_every_module_has_its_test_file(module):
    # A package's __init__ only re-exports; every other module has tests/<folder>/<module>_test.py.
    assert os.path.exists(_test_file(module)), f"{module} has no {os.path.relpath(_test_file(module), REPO)}"
