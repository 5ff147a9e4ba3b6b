"""`lth_keras.layers.keras_adapter`: the one module that touches Keras's
private attributes, and what each of its functions returns on the
installed Keras (a Keras release that renames one fails here first)."""

import ast
import glob
import os

import keras
import numpy as np
import pytest

from lth_keras import layers as lth_layers
from lth_keras.layers import keras_adapter

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lth_keras")
ADAPTER = os.path.join(PACKAGE, "layers", "keras_adapter.py")
# The tf_keras baseline lives in another Keras (its own venv): not ours to adapt.
OUTSIDE = os.path.join(PACKAGE, "baselines")

# Private attributes of Keras layers, models and optimizers that lth_keras
# has used (or that a newcomer would reach for). Attribute reads, getattr
# strings and the like all count.
PRIVATE_KERAS = {
    "_flatten_layers", "_layers", "_tracker", "_auto_config", "_inbound_nodes", "_outbound_nodes",
    "_trainable_variables", "_non_trainable_variables", "_seed_generators", "_torch_params",
    "_track_variables", "_distribute_strategy", "_run_through_graph", "_nodes_by_depth",
    "_compute_causal_padding", "_get_input_channel", "_query_dense", "_key_dense", "_value_dense",
    "_output_dense", "_learning_rate", "_self_setattr_tracking", "_build_shapes_dict", "_modules",
    "_trainable", "_functional", "_operations", "_called", "_built",
}


def private_uses(path):
    """(line, what) for every private Keras name or `keras.src` import in `path`."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_KERAS:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Constant) and node.value in PRIVATE_KERAS:
            found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("keras.src", "keras_hub.src")):
            found.append((node.lineno, f"from {node.module}"))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, f"import {a.name}") for a in node.names
                         if a.name.startswith(("keras.src", "keras_hub.src")))
        elif isinstance(node, ast.Attribute) and node.attr == "src" and ast.unparse(node.value) in ("keras", "keras_hub"):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_module_but_the_adapter_touches_private_keras_attributes():
    offenders = {}
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        if path == ADAPTER or path.startswith(OUTSIDE + os.sep):
            continue
        uses = private_uses(path)
        if uses:
            offenders[os.path.relpath(path, PACKAGE)] = uses
    assert offenders == {}, f"Private Keras attributes outside keras_adapter.py: {offenders}"


def test_the_scan_finds_what_the_adapter_wraps():
    names = {what for _, what in private_uses(ADAPTER)}
    assert {"._flatten_layers", "._tracker", "'_learning_rate'"} <= names


def test_sublayers_and_all_sublayers():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")],
                             name="inner")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="c")(inner(inputs)))
    assert [layer.name for layer in keras_adapter.sublayers(model)] == [model.layers[0].name, "inner", "c"]
    everything = [layer.name for layer in keras_adapter.all_sublayers(model)]
    assert everything[0] == model.name and {"inner", "a", "b", "c"} <= set(everything)
    assert model.name not in [layer.name for layer in keras_adapter.all_sublayers(model, include_self=False)]
    assert keras_adapter.is_graph_model(model) and keras_adapter.is_graph_model(inner)


def test_own_variables_seed_states_and_init_arguments():
    dense = keras.layers.Dense(3, name="d")
    dense.build((None, 4))
    assert [v.name for v in keras_adapter.own_variables(dense)] == ["kernel", "bias"]
    masked = lth_layers.MaskedDense(3)
    masked.build((None, 4))
    assert [v.name for v in keras_adapter.own_variables(masked)] == ["kernel", "bias", "mask"]
    dropout = keras.layers.Dropout(0.5, seed=1)
    assert len(keras_adapter.seed_states(dropout)) == 1 and keras_adapter.seed_states(dense) == []
    assert keras_adapter.init_arguments(dense)["units"] == 3


def test_unlocked_lets_a_built_layer_take_a_variable_and_locks_it_again():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    with pytest.raises(ValueError):
        dense.add_weight(shape=(1,), name="late")
    with keras_adapter.unlocked(dense):
        dense.add_weight(shape=(1,), name="late")
    assert [v.name for v in dense.weights][-1] == "late"
    with pytest.raises(ValueError):
        dense.add_weight(shape=(1,), name="later")


def test_attention_projections_are_replaced_in_their_tracked_position():
    mha = keras.layers.MultiHeadAttention(2, key_dim=3)
    x = np.ones((1, 4, 6), "float32")
    mha(x, x)
    projections = keras_adapter.attention_projections(mha)
    assert list(projections) == ["query", "key", "value", "attention_output"]
    assert all(isinstance(p, keras.layers.EinsumDense) for p in projections.values())
    shapes = [tuple(v.shape) for v in mha.weights]
    plain = projections["key"]
    new = keras.layers.EinsumDense.from_config(plain.get_config())
    new.build_from_config(plain.get_build_config())
    keras_adapter.set_attention_projection(mha, "key", new)
    assert keras_adapter.attention_projections(mha)["key"] is new
    assert [tuple(v.shape) for v in mha.weights] == shapes
    assert not any(v is w for v in mha.weights for w in plain.weights)


def test_convolution_helpers():
    conv = keras.layers.Conv1D(2, 3, dilation_rate=2, padding="causal")
    assert keras_adapter.causal_padding(conv) == [[0, 0], [4, 0], [0, 0]]
    depthwise = keras.layers.DepthwiseConv2D(3)
    assert keras_adapter.input_channels(depthwise, (1, 8, 8, 5)) == 5


def test_learning_rate_source_and_optimizer_built_for():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert keras_adapter.learning_rate_source(keras.optimizers.SGD(schedule)) is schedule
    plain = keras.optimizers.Adam(1e-3)
    assert isinstance(keras_adapter.learning_rate_source(plain), keras.Variable)
    assert keras_adapter.optimizer_built_for(plain) == []
    variables = [keras.Variable(np.zeros((2,), "float32")), keras.Variable(np.zeros((3,), "float32"))]
    plain.build(variables)
    assert [id(v) for v in keras_adapter.optimizer_built_for(plain)] == [id(v) for v in variables]
