"""What the pruning callbacks share: the model checks, building a model
from the data, and writing their records.

Private to `lth_keras.callbacks`; `imp` and `gradual` import it.
"""

from __future__ import annotations

import inspect

import keras

from lth_keras.layers import keras_adapter

NOT_BUILT = "{callback} needs a built model: call it on a batch (or start it with keras.Input) before fit."


def is_built(model) -> bool:
    """Whether `model` and every layer inside it is built."""
    return all(layer.built for layer in keras_adapter.all_sublayers(model))


def build_from_element_spec(model, iterator, callback) -> None:
    """Builds `model` symbolically from a data iterator's element spec.

    Args:
        model: the unbuilt model `fit` trains.
        iterator: the iterator `fit` hands its train function.
        callback: the callback's name, for the error when the iterator has
            no element spec.
    """
    spec = getattr(iterator, "element_spec", None)
    if spec is None:
        raise ValueError(NOT_BUILT.format(callback=callback))
    x, _, _ = keras.utils.unpack_x_y_sample_weight(spec)
    symbolic = keras.tree.map_structure(lambda s: keras.KerasTensor(tuple(s.shape), s.dtype.name), x)
    model(symbolic, training=False) if _accepts_training(model) else model(symbolic)


def _accepts_training(model):
    try:
        return "training" in inspect.signature(model.call).parameters
    except (TypeError, ValueError):
        return False


def write_rows_csv(path, rows) -> None:
    """Writes `rows` as CSV atomically; rows may differ in their per-layer
    columns, so the header is their union, in first-seen order."""
    # Lazily: writing records is the only use the callbacks make of storage.
    from lth_keras.storage import files

    fields = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    files.atomic_write_csv(path, rows, fieldnames=fields)


def write_json(path, obj) -> None:
    """Writes `obj` as JSON atomically."""
    from lth_keras.storage import files

    files.atomic_write_json(path, obj)


def say(message) -> None:
    """One progress line, flushed at once (fit's own bar may be buffering)."""
    print(message, flush=True)
