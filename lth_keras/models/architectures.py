"""Model registry: the architectures of Frankle & Carbin (ICLR 2019).

Every model is a functional `keras.Model` whose `Dense`/`Conv2D` layers are the
masked variants from `lth_keras.layers`, so that pruning only has to flip
entries of each layer's `mask`. Each model comes with the paper's training and
pruning hyperparameters as a frozen `ModelDefaults`.

Example:

```python
from lth_keras import models

model = models.build("conv4", input_shape=(32, 32, 3), seed=0)
hparams = models.defaults("conv4")
hparams.learning_rate  # 3e-4
models.count_prunable_weights(model)  # 2_425_024
```
"""

import dataclasses
import importlib
import math
import types
import zlib
from typing import Callable, Optional

import keras

from lth_keras.layers import in_place
from lth_keras import layers as lth_layers


@dataclasses.dataclass(frozen=True)
class ModelDefaults:
    """The paper's hyperparameters for one model.

    Args:
        dataset: Dataset the paper trains the model on: `"mnist"` or
            `"cifar10"`.
        iterations: Training iterations per pruning round.
        batch_size: Minibatch size.
        optimizer: `"adam"` or `"sgd"`.
        learning_rate: Base learning rate.
        momentum: SGD momentum; 0.0 for Adam.
        weight_decay: L2 weight decay coefficient.
        prune_rate_dense: Fraction of the remaining weights of each hidden
            dense layer pruned per round.
        prune_rate_conv: Fraction of the remaining conv weights pruned per
            round (per layer for `"layerwise"`, over all ranked weights for
            `"global"`).
        prune_rate_output: Fraction of the remaining weights of the `"output"`
            layer pruned per round; 0.0 means the layer is never pruned.
        pruning: `"layerwise"` or `"global"`.
        global_exclude: `fnmatch` patterns of layer names left out of global
            pruning (and therefore never pruned).
        lr_boundaries: Iterations at which the learning rate is divided by 10.
        warmup_iterations: Linear learning-rate warmup length used by default
            (0: none).
        warmup_iterations_paper: Warmup length the paper uses to find tickets
            in the deep networks, for the opt-in warmup variant.
        warmup_learning_rate_paper: Learning rate reached at the end of the
            paper's warmup.
        augment: Whether to apply flip + 4-pixel pad/crop augmentation.
        prunable_weights: Number of prunable weights as reported (rounded) in
            the paper's table, at the paper's input shape.
    """

    dataset: str
    iterations: int
    batch_size: int
    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    prune_rate_dense: float
    prune_rate_conv: float
    prune_rate_output: float
    pruning: str
    global_exclude: tuple[str, ...]
    lr_boundaries: tuple[int, ...]
    warmup_iterations: int
    warmup_iterations_paper: int
    warmup_learning_rate_paper: float
    augment: bool
    prunable_weights: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Args:
        name: Registry key.
        builder: Callable `(input_shape, num_classes, dropout, seed)` that
            returns a functional `keras.Model`.
        defaults: The paper's hyperparameters for this model.
    """

    name: str
    builder: Callable[..., keras.Model]
    defaults: ModelDefaults


# ---------------------------------------------------------------------------
# Layer factories.


def _layer_seed(seed, layer_name):
    # Derive the per-layer seed from the layer *name* rather than a running
    # counter, so that adding a layer to an architecture does not silently
    # change the initial weights of every layer after it.
    return (seed * 1_000_003 + zlib.crc32(layer_name.encode())) % (2**31 - 1)


def _kernel_init(seed, layer_name):
    if seed is None:
        return keras.initializers.GlorotNormal()
    return keras.initializers.GlorotNormal(seed=_layer_seed(seed, layer_name))


def _dense(units, name, seed, activation=None, use_bias=True):
    return lth_layers.MaskedDense(
        units,
        activation=activation,
        use_bias=use_bias,
        kernel_initializer=_kernel_init(seed, name),
        bias_initializer="zeros",
        name=name,
    )


def _conv(filters, name, seed, kernel_size=3, strides=1, activation=None,
          use_bias=True):
    return lth_layers.MaskedConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        use_bias=use_bias,
        kernel_initializer=_kernel_init(seed, name),
        bias_initializer="zeros",
        name=name,
    )


def _batch_norm(name):
    # PyTorch's BatchNorm2d defaults (momentum 0.1 == Keras 0.9, eps 1e-5),
    # which the paper's VGG/ResNet results were obtained with; Keras's 0.99
    # moving average lags far behind over a short 30K-iteration schedule.
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                           name=name)


def _dropout(rate, name, seed):
    dropout_seed = None if seed is None else _layer_seed(seed, name)
    return keras.layers.Dropout(rate, seed=dropout_seed, name=name)


def _check_image_shape(model_name, input_shape):
    if len(input_shape) != 3:
        raise ValueError(
            f"Model {model_name!r} expects an image "
            f"`input_shape=(height, width, channels)`. "
            f"Received: input_shape={input_shape}"
        )


def _check_no_dropout(model_name, dropout):
    # These nets have no hidden dense layer to put dropout after; silently
    # ignoring the flag would make a "dropout" run identical to a plain one.
    if dropout:
        raise ValueError(
            f"Model {model_name!r} does not support dropout. "
            f"Received: dropout={dropout}"
        )


# ---------------------------------------------------------------------------
# Architectures.


def _lenet(input_shape, num_classes, dropout, seed):
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate((300, 100), start=1):
        x = _dense(units, f"dense_{i}", seed, activation="relu")(x)
        if dropout:
            x = _dropout(dropout, f"dropout_{i}", seed)(x)
    outputs = _dense(num_classes, "output", seed)(x)
    return keras.Model(inputs, outputs, name="lenet")


def _make_conv_net(name, conv_blocks):
    def builder(input_shape, num_classes, dropout, seed):
        _check_image_shape(name, input_shape)
        inputs = keras.Input(shape=input_shape, name="input")
        x = inputs
        conv_index = 0
        for pool_index, filters in enumerate(conv_blocks, start=1):
            for _ in range(2):
                conv_index += 1
                x = _conv(filters, f"conv_{conv_index}", seed,
                          activation="relu")(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool_{pool_index}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        for i in (1, 2):
            x = _dense(256, f"dense_{i}", seed, activation="relu")(x)
            if dropout:
                x = _dropout(dropout, f"dropout_{i}", seed)(x)
        outputs = _dense(num_classes, "output", seed)(x)
        return keras.Model(inputs, outputs, name=name)

    return builder


_VGG19_PLAN = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


def _vgg19(input_shape, num_classes, dropout, seed):
    _check_image_shape("vgg19", input_shape)
    _check_no_dropout("vgg19", dropout)
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    conv_index = 0
    for stage, widths in enumerate(_VGG19_PLAN, start=1):
        if stage > 1:
            # "same" pooling rounds up instead of down, so 28x28 inputs
            # (28 -> 14 -> 7 -> 4 -> 2) never shrink to an empty feature map.
            x = keras.layers.MaxPooling2D(
                2, padding="same", name=f"pool_{stage - 1}"
            )(x)
        for filters in widths:
            conv_index += 1
            # No conv bias: the following batch norm's beta subsumes it.
            x = _conv(filters, f"conv_{conv_index}", seed, use_bias=False)(x)
            x = _batch_norm(f"bn_{conv_index}")(x)
            x = keras.layers.ReLU(name=f"relu_{conv_index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = _dense(num_classes, "output", seed)(x)
    return keras.Model(inputs, outputs, name="vgg19")


def _basic_block(x, filters, strides, prefix, seed):
    shortcut = x
    y = _conv(filters, f"{prefix}_conv1", seed, strides=strides,
              use_bias=False)(x)
    y = _batch_norm(f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(filters, f"{prefix}_conv2", seed, use_bias=False)(y)
    y = _batch_norm(f"{prefix}_bn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        # Projection shortcut (He et al.'s option B). Named "*_shortcut" so
        # global pruning can exclude it, as the paper does.
        shortcut = _conv(filters, f"{prefix}_shortcut", seed, kernel_size=1,
                         strides=strides, use_bias=False)(x)
        shortcut = _batch_norm(f"{prefix}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_relu2")(y)


def _resnet18(input_shape, num_classes, dropout, seed):
    _check_image_shape("resnet18", input_shape)
    _check_no_dropout("resnet18", dropout)
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv(16, "conv_1", seed, use_bias=False)(inputs)
    x = _batch_norm("bn_1")(x)
    x = keras.layers.ReLU(name="relu_1")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            strides = 2 if (stage > 1 and block == 1) else 1
            x = _basic_block(x, filters, strides, f"block{stage}_{block}",
                             seed)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = _dense(num_classes, "output", seed)(x)
    return keras.Model(inputs, outputs, name="resnet18")


# ---------------------------------------------------------------------------
# Hyperparameters (PAPER.md, "Architectures and hyperparameters").


def _small_net_defaults(dataset, iterations, learning_rate, prune_rate_conv,
                        prunable_weights):
    return ModelDefaults(
        dataset=dataset,
        iterations=iterations,
        batch_size=60,
        optimizer="adam",
        learning_rate=learning_rate,
        momentum=0.0,
        weight_decay=0.0,
        prune_rate_dense=0.2,
        prune_rate_conv=prune_rate_conv,
        # The paper prunes the output layer at half the fc rate.
        prune_rate_output=0.1,
        pruning="layerwise",
        global_exclude=(),
        lr_boundaries=(),
        warmup_iterations=0,
        warmup_iterations_paper=0,
        warmup_learning_rate_paper=0.0,
        # PAPER.md lists flip + pad/crop only for ResNet-18 and VGG-19.
        augment=False,
        prunable_weights=prunable_weights,
    )


def _deep_net_defaults(iterations, batch_size, global_exclude, lr_boundaries,
                       warmup_iterations_paper, warmup_learning_rate_paper,
                       prunable_weights):
    return ModelDefaults(
        dataset="cifar10",
        iterations=iterations,
        batch_size=batch_size,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        prune_rate_dense=0.2,
        prune_rate_conv=0.2,
        # Only conv weights are ranked globally; the classifier is kept dense.
        prune_rate_output=0.0,
        pruning="global",
        global_exclude=global_exclude,
        lr_boundaries=lr_boundaries,
        warmup_iterations=0,
        warmup_iterations_paper=warmup_iterations_paper,
        warmup_learning_rate_paper=warmup_learning_rate_paper,
        augment=True,
        prunable_weights=prunable_weights,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "lenet",
            _lenet,
            # 784*300 + 300*100 + 100*10, the paper's "266K".
            _small_net_defaults("mnist", 50_000, 1.2e-3, 0.0, 266_200),
        ),
        ModelSpec(
            "conv2",
            _make_conv_net("conv2", (64,)),
            _small_net_defaults("cifar10", 20_000, 2e-4, 0.1, 4_300_000),
        ),
        ModelSpec(
            "conv4",
            _make_conv_net("conv4", (64, 128)),
            _small_net_defaults("cifar10", 25_000, 3e-4, 0.1, 2_400_000),
        ),
        ModelSpec(
            "conv6",
            _make_conv_net("conv6", (64, 128, 256)),
            # The paper's table says 1.7M, but the architecture it describes
            # (same as conv4 plus 256, 256, pool) has 2,261,184 kernel
            # weights at 32x32x3; we follow the architecture.
            _small_net_defaults("cifar10", 30_000, 3e-4, 0.15, 1_700_000),
        ),
        ModelSpec(
            "resnet18",
            _resnet18,
            _deep_net_defaults(
                iterations=30_000,
                batch_size=128,
                global_exclude=("output", "*_shortcut"),
                # lr 0.1 for 20K, 0.01 for 5K, 0.001 for 5K.
                lr_boundaries=(20_000, 25_000),
                warmup_iterations_paper=20_000,
                warmup_learning_rate_paper=0.03,
                prunable_weights=274_000,
            ),
        ),
        ModelSpec(
            "vgg19",
            _vgg19,
            _deep_net_defaults(
                iterations=112_000,
                batch_size=64,
                global_exclude=("output",),
                # Epochs 80 and 120 of 160, with 160 epochs == 112K iterations.
                lr_boundaries=(56_000, 84_000),
                warmup_iterations_paper=10_000,
                warmup_learning_rate_paper=0.1,
                prunable_weights=20_000_000,
            ),
        ),
    )
}


# ---------------------------------------------------------------------------
# Public API.


def _get_spec(name):
    if name not in MODELS:
        raise ValueError(
            f"Unknown model name={name!r}. "
            f"Known models: {', '.join(sorted(MODELS))}."
        )
    return MODELS[name]


def defaults(name: str) -> ModelDefaults:
    """Returns the paper's hyperparameters for model `name`.

    Args:
        name: A key of `MODELS`.

    Returns:
        A frozen `ModelDefaults`.

    Raises:
        ValueError: If `name` is not a registered model.

    Example:

    >>> defaults("lenet").learning_rate
    0.0012
    """
    return _get_spec(name).defaults


def build(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int = 10,
    *,
    dropout: float = 0.0,
    seed: Optional[int] = None,
) -> keras.Model:
    """Builds a fresh, randomly initialised model from the registry.

    Args:
        name: A key of `MODELS`: `"lenet"`, `"conv2"`, `"conv4"`, `"conv6"`,
            `"vgg19"` or `"resnet18"`; or a model of your own as
            ``"my_package.my_module:build"`` (see `build_custom`).
        input_shape: Shape of one example without the batch dimension, e.g.
            `(28, 28, 1)` or `(32, 32, 3)`. The conv nets need
            `(height, width, channels)`.
        num_classes: Number of logits produced by the `"output"` layer.
        dropout: Dropout rate applied after each hidden dense layer (the
            paper's dropout variant uses 0.5). Only `lenet` and `conv*` have
            hidden dense layers; other models raise on a nonzero rate.
        seed: If given, every kernel initialiser (and dropout layer) gets a
            seed derived from `seed` and its layer name, so the same seed
            gives identical initial weights. If `None`, weights are random.

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Raises:
        ValueError: On an unknown `name`, an invalid `dropout` rate, or a
            non-image `input_shape` for a conv net.

    Example:

    >>> model = build("lenet", (28, 28, 1), seed=1)
    >>> model.output_shape
    (None, 10)
    """
    if is_custom(name):
        if dropout:
            raise CustomModelError("dropout", f"applies to the built-in models only, not to {name}.")
        return build_custom(name, input_shape, num_classes, seed=seed)
    spec = _get_spec(name)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"`dropout` must be in [0, 1). Received: dropout={dropout}"
        )
    return spec.builder(tuple(input_shape), num_classes, dropout, seed)


def count_prunable_weights(model: keras.Model) -> int:
    """Counts the masked (prunable) weight entries of `model`.

    This is the quantity the paper reports as a network's "weights": biases
    and batch-norm parameters are not prunable and are not counted. Layers
    excluded from pruning by a schedule (e.g. ResNet shortcuts) still count.

    Args:
        model: A model built from masked layers, e.g. by `build()`.

    Returns:
        The total number of prunable weights.

    Example:

    >>> count_prunable_weights(build("lenet", (28, 28, 1)))
    266200
    """
    # Go through the `MaskedLayer` protocol rather than class names, so
    # user-defined masked layers are counted exactly as pruning sees them.
    return sum(math.prod(mw.weight.shape) for mw in lth_layers.masked_weights(model))


# ---------------------------------------------------------------------------
# Models of your own: ``--model=my_package.my_module:build``.

# Flags a model of your own must be given: there are no paper defaults.
CUSTOM_REQUIRED_FLAGS = ("dataset", "iterations", "batch_size", "optimizer", "learning_rate", "pruning")


class CustomModelError(ValueError):
    """A `module:callable` model that cannot be used; `flag` names the flag."""

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag = flag


def is_custom(name: str) -> bool:
    """Whether `name` is a ``module:callable`` reference, not a registry key."""
    return ":" in str(name)


def load_builder(spec: str) -> Callable:
    """Imports ``module.path:callable`` (the callable may be dotted).

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
