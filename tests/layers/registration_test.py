"""The masked layers keep their `keras.saving` names (``lth_keras>MaskedDense``,
...) whichever module defines them, so `.keras` files saved before the
layers were split into `dense`, `conv`, ... load as they did."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from lth_keras import layers as lth_layers

MASKED_CLASSES = [getattr(lth_layers, n) for n in lth_layers.__all__
                  if isinstance(getattr(lth_layers, n), type) and issubclass(getattr(lth_layers, n), keras.layers.Layer)]


def test_every_masked_layer_is_registered_under_its_old_name():
    assert len(MASKED_CLASSES) == 10
    for cls in MASKED_CLASSES:
        name = f"lth_keras>{cls.__name__}"
        assert keras.saving.get_registered_name(cls) == name
        assert keras.saving.get_registered_object(name) is cls


def _model():
    inputs = keras.Input((6, 6, 2))
    x = lth_layers.MaskedConv2D(3, 3, name="conv")(inputs)
    x = keras.layers.Reshape((16, 3))(x)
    x = lth_layers.MaskedMultiHeadAttention(2, key_dim=2, name="mha")(x, x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, lth_layers.MaskedDense(2, name="out")(x))
    rng = np.random.default_rng(0)
    lth_layers.set_masks(model, {mw.name: (rng.random(tuple(mw.mask.shape)) > 0.5).astype("float32")
                                 for mw in lth_layers.masked_weights(model)})
    return model


def _rewrite_modules(path, module):
    """The same file, its masked layers' configs naming `module`."""
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}

    def visit(node):
        if isinstance(node, dict):
            if str(node.get("registered_name", "")).startswith("lth_keras>"):
                node["module"] = module
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    config = json.loads(entries["config.json"])
    visit(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("module", ["lth_keras.layers.masked", "lth_keras.layers"])
def test_a_file_saved_by_an_older_layout_loads(tmp_path, module):
    model = _model()
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    _rewrite_modules(path, module)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(1).random((2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)),
                               rtol=1e-5, atol=1e-6)
    expected = lth_layers.get_masks(model)
    got = lth_layers.get_masks(loaded)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
