"""Models of your own: ``--model=my_package.my_module:build``.

A ``module:callable`` reference in place of a registry key names a function
``(input_shape, num_classes) -> keras.Model``. Its model, plain or masked, is
made prunable in place (`lth_keras.layers.in_place`) and used like the
paper's; having no paper defaults, it needs the flags of
`CUSTOM_REQUIRED_FLAGS` (and the pruning rates that apply to its layers).
Every failure is a `CustomModelError` naming the flag to fix.

Example:

```python
# my_models.py
def build(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes)])

from lth_keras.models import custom
custom.is_custom("my_models:build")  # True
model = custom.build_custom("my_models:build", (28, 28, 1), 10, seed=0)
```
"""

import importlib
import types
from typing import Callable, Optional

import keras

from lth_keras import layers as lth_layers
from lth_keras.layers import in_place

# Flags a model of your own must be given: there are no paper defaults.
CUSTOM_REQUIRED_FLAGS = ("dataset", "iterations", "batch_size", "optimizer", "learning_rate", "pruning")


class CustomModelError(ValueError):
    """A `module:callable` model that cannot be used; `flag` names the flag."""

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag = flag


def is_custom(name: str) -> bool:
    """Whether `name` is a ``module:callable`` reference, not a registry key.

    Example:
        >>> is_custom("my_models:build"), is_custom("lenet")
        (True, False)
    """
    return ":" in str(name)


def load_builder(spec: str) -> Callable:
    """Imports ``module.path:callable`` (the callable may be dotted).

    Args:
        spec: ``"my_package.my_module:build"`` or ``"module:Class.method"``.

    Returns:
        The callable, not yet called.

    Example:
        >>> load_builder("os.path:join")("a", "b")
        'a/b'

    Raises:
        CustomModelError: (flag ``model``) the module does not import, or it
            has no such attribute, or the attribute is not callable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CustomModelError("model", f"{spec!r} is not 'module:callable' (e.g. my_package.my_module:build).")
    try:
        target = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything
        raise CustomModelError("model", f"module {module_name!r} does not import: {type(e).__name__}: {e}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise CustomModelError("model", f"module {module_name!r} has no attribute {attribute!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise CustomModelError("model", f"{spec} is a {type(target).__name__}, not a callable.")
    return target


def build_custom(spec: str, input_shape, num_classes: int, *, seed: Optional[int] = None) -> keras.Model:
    """Calls ``spec``'s callable with ``(input_shape, num_classes)``.

    The callable returns a Keras model, plain or masked. A model without any
    `MaskedLayer` goes through `lth_keras.make_prunable` (a model that has
    some is taken as it is: its author chose what to mask). An unbuilt model
    is built for ``(None, *input_shape)``.

    Args:
        spec: ``"my_package.my_module:build"``.
        input_shape: one example's shape, e.g. ``(28, 28, 1)``.
        num_classes: number of logits the model must produce.
        seed: seeds Python, NumPy and Keras first (`keras.utils.set_random_seed`),
            so the same seed gives the same initial weights.

    Raises:
        CustomModelError: naming the ``model`` flag, for a module that does
            not import, a callable that fails or returns no Keras model, or a
            model with nothing to prune.

    Example:

    ```python
    # my_models.py
    def build(input_shape, num_classes):
        return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                                 keras.layers.Dense(num_classes)])

    model = models.build_custom("my_models:build", (28, 28, 1), 10, seed=0)
    ```
    """
    builder = load_builder(spec)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    input_shape = tuple(input_shape)
    try:
        model = builder(input_shape, num_classes)
    except Exception as e:  # noqa: BLE001 - reported on one line, naming the flag
        raise CustomModelError(
            "model", f"{spec}({input_shape}, {num_classes}) raised {type(e).__name__}: {e}"
        ) from None
    if not isinstance(model, keras.Model):
        raise CustomModelError("model", f"{spec} returned a {type(model).__name__}, not a Keras model.")
    if not model.built:
        try:
            model.build((None, *input_shape))
        except Exception as e:  # noqa: BLE001
            raise CustomModelError(
                "model", f"the model {spec} returned is not built and building it for input shape "
                f"{(None, *input_shape)} failed ({type(e).__name__}: {e}); start it from keras.Input."
            ) from None
    if not lth_layers.masked_layers(model):
        # The model was built for this run: masked in place, no copy needed.
        in_place.add_masks(model)
    if not lth_layers.masked_weights(model):
        raise CustomModelError(
            "model", f"{spec} has nothing to prune: no layer lth_keras can mask "
            f"({in_place.MASKABLE_DESCRIPTION}) and no MaskedLayer."
        )
    return model


def custom_defaults(spec: str, flags: dict, dataset_specs):
    """What the flags' None values become for a model of your own.

    Checks everything a run needs before anything is written: the callable
    imports and returns a prunable Keras model for the dataset's shape, and
    the flags that have no default for it are given: `CUSTOM_REQUIRED_FLAGS`,
    and the rates that apply to its layers (layerwise: ``prune_rate_dense``
    and ``prune_rate_conv`` for the kinds it has, ``prune_rate_output`` when
    its last masked layer is dense; global: ``prune_rate_conv`` when it has
    conv layers, else ``prune_rate_dense``).

    Args:
        spec: the ``--model`` value, ``"module:callable"``.
        flags: the experiment's flag values by name (None: not given).
        dataset_specs: `lth_keras.datasets.DATASETS`.

    Returns:
        An object with the defaults of the optional flags as attributes:
        no momentum, weight decay, warmup, schedule or augmentation; rates
        that do not apply to the model are 0.

    Raises:
        CustomModelError: naming the flag to give or fix.
    """
    load_builder(spec)
    missing = [name for name in CUSTOM_REQUIRED_FLAGS if flags.get(name) is None]
    if missing:
        also = f" (also missing: {', '.join('--' + m for m in missing[1:])})" if missing[1:] else ""
        raise CustomModelError(
            missing[0], f"is required with --model={spec}: a model of your own has no paper defaults{also}."
        )
    if flags.get("dropout"):
        raise CustomModelError("dropout", f"applies to the built-in models only; put Dropout layers in {spec} instead.")
    dataset = dataset_specs.get(flags["dataset"])
    if dataset is None:
        raise CustomModelError("dataset", f"unknown dataset {flags['dataset']!r}; known: {', '.join(sorted(dataset_specs))}.")
    model = build_custom(spec, dataset.input_shape, dataset.num_classes, seed=flags.get("seed"))
    weights = lth_layers.masked_weights(model)
    kinds = {mw.kind for mw in weights}
    output_is_dense = len(weights) > 1 and weights[-1].kind == "dense"
    if flags["pruning"] == "global":
        needed = ["prune_rate_conv" if "conv" in kinds else "prune_rate_dense"]
    else:
        hidden = weights[:-1] if output_is_dense else weights
        needed = [f"prune_rate_{k}" for k in ("dense", "conv") if any(mw.kind == k for mw in hidden)]
        needed += ["prune_rate_output"] if output_is_dense else []
    for name in needed:
        if flags.get(name) is None:
            raise CustomModelError(name, f"is required with --model={spec}: its {flags['pruning']} pruning uses this rate.")
    return types.SimpleNamespace(
        momentum=0.0,
        weight_decay=0.0,
        lr_boundaries=(),
        warmup_iterations=0,
        augment=False,
        global_exclude=(),
        prune_rate_dense=0.0,
        prune_rate_conv=0.0,
        prune_rate_output=0.0,
    )
