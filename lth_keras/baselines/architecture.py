"""A functional Keras 3 model as plain data, and rebuilt in another Keras.

Baselines whose library needs tf_keras (TFMOT) train the experiment's
architecture there: `architecture` reads the Keras 3 model from its public
``get_config()`` (before tf_keras is imported) and `rebuild` builds the same
graph from any Keras's ``layers`` module (``tf_keras``).

Example:

```python
spec = architecture(config, (28, 28, 1), 10)   # {"inputs", "layers", "outputs", "masked"}
model = rebuild(spec, tf_keras)                # the same LeNet in tf_keras
```
"""

from __future__ import annotations

__all__ = ["LAYER_KEYS", "ArchitectureError", "architecture", "rebuild"]

# The classes both Keras 3 and tf_keras have, and the constructor arguments
# that carry over.
LAYER_KEYS = {
    "Dense": ("units", "activation", "use_bias"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
               "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling2D": ("pool_size", "strides", "padding", "data_format"),
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "Flatten": ("data_format",),
    "Dropout": ("rate", "noise_shape", "seed"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "Add": (),
    "Concatenate": ("axis",),
}


class ArchitectureError(ValueError):
    """The model has a layer or a wiring the translation does not cover."""


def _encode(value):
    """A serialized call argument, with Keras tensors as ``{"tensor": id}``."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        layer, node, index = value["config"]["keras_history"]
        return {"tensor": f"{layer}:{node}:{index}"}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: _encode(v) for k, v in value.items()}}
    return {"value": value}


def architecture(config, input_shape, num_classes) -> dict:
    """The Keras 3 model of `config` as plain data, plus its masked layers.

    Returns ``{"inputs": [...], "layers": [...], "outputs": [...],
    "masked": [names]}``; each layer holds its class (one of `LAYER_KEYS`),
    the constructor arguments listed there, and its call arguments with
    tensors replaced by ``{"tensor": id}``.

    Raises:
        ArchitectureError: a layer without translation, a shared layer, or a
            masked layer with several masked weights.
    """
    import keras

    from lth_keras import layers, models

    model = models.build(config.model, input_shape, num_classes, dropout=config.dropout, seed=config.seed)
    masked = {mw.layer.name for mw in layers.masked_weights(model)}
    for mw in layers.masked_weights(model):
        if mw.name != mw.layer.name:
            raise ArchitectureError(f"layer {mw.layer.name!r} masks several weights; TFMOT prunes one kernel per layer.")
    graph = model.get_config()
    spec = {"inputs": [], "layers": [], "outputs": [], "masked": []}
    for entry in graph["layers"]:
        name, layer = entry["name"], model.get_layer(entry["name"])
        if isinstance(layer, keras.layers.InputLayer):
            spec["inputs"].append({"tensor": f"{name}:0:0", "shape": list(layer.batch_shape[1:]), "name": name})
            continue
        if len(entry["inbound_nodes"]) != 1:
            raise ArchitectureError(f"layer {name!r} is called {len(entry['inbound_nodes'])} times; "
                                    "shared layers are not supported.")
        kind = next((k for k in LAYER_KEYS if isinstance(layer, getattr(keras.layers, k))), None)
        if kind is None:
            raise ArchitectureError(f"layer {name!r} ({type(layer).__name__}) has no tf_keras translation.")
        params = {k: v for k, v in layer.get_config().items() if k in LAYER_KEYS[kind]}
        if "activation" in params and not isinstance(params["activation"], str):
            params["activation"] = keras.activations.serialize(layer.activation)
            if not isinstance(params["activation"], str):
                raise ArchitectureError(f"layer {name!r}: activation {params['activation']!r} is not a built-in.")
        node = entry["inbound_nodes"][0]
        spec["layers"].append({
            "name": name, "class": kind, "params": params, "masked": name in masked,
            "args": _encode(node["args"]), "kwargs": _encode(node["kwargs"]),
            "outputs": [f"{name}:0:0"],  # every class in LAYER_KEYS has one output
        })
        if name in masked:
            spec["masked"].append(name)
    spec["outputs"] = [f"{n}:{i}:{j}" for n, i, j in _history_list(graph["output_layers"])]
    return spec


def _history_list(entries):
    """``output_layers`` as a list of [layer, node, index] (Keras gives one bare
    triple for a single output)."""
    return [entries] if entries and isinstance(entries[0], str) else list(entries)


def _decode(value, tensors):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if "tensor" in value:
        return tensors[value["tensor"]]
    if "dict" in value:
        return {k: _decode(v, tensors) for k, v in value["dict"].items()}
    return value["value"]


def rebuild(spec, keras_module, wrap=None):
    """The model `spec` describes, built with `keras_module` (e.g. tf_keras).

    ``wrap(name, layer)`` may replace a masked layer (e.g. by a pruning
    wrapper) before it is called.
    """
    tensors, inputs = {}, []
    for inp in spec["inputs"]:
        tensors[inp["tensor"]] = keras_module.Input(shape=tuple(inp["shape"]), name=inp["name"])
        inputs.append(tensors[inp["tensor"]])
    for layer in spec["layers"]:
        obj = getattr(keras_module.layers, layer["class"])(name=layer["name"], **layer["params"])
        if layer["masked"] and wrap is not None:
            obj = wrap(layer["name"], obj)
        out = obj(*_decode(layer["args"], tensors), **_decode(layer["kwargs"], tensors))
        for name, t in zip(layer["outputs"], list(out) if isinstance(out, (list, tuple)) else [out]):
            tensors[name] = t
    outputs = [tensors[t] for t in spec["outputs"]]
    return keras_module.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0])
