"""The model registry: each of the paper's models with its hyperparameters.

`MODELS` maps a name (``"lenet"``, ``"conv2"``, ``"conv4"``, ``"conv6"``,
``"vgg19"``, ``"resnet18"``) to a `ModelSpec`: the builder from
`lth_keras.models.paper` and the paper's training and pruning
hyperparameters as a frozen `ModelDefaults` (Frankle & Carbin, ICLR 2019,
PAPER.md). `build` also takes a model of your own, ``"module:callable"``
(`lth_keras.models.custom`).

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
import math
from typing import Callable, Optional

import keras

from lth_keras import layers as lth_layers
from lth_keras.models import custom, paper


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
        # PAPER.md lists flip + pad/crop only for ResNet-18 and VGG-19.
        augment=False,
        prunable_weights=prunable_weights,
    )


def _deep_net_defaults(iterations, batch_size, global_exclude, lr_boundaries,
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
        augment=True,
        prunable_weights=prunable_weights,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "lenet",
            paper.lenet,
            # 784*300 + 300*100 + 100*10, the paper's "266K".
            _small_net_defaults("mnist", 50_000, 1.2e-3, 0.0, 266_200),
        ),
        ModelSpec(
            "conv2",
            paper.conv_net("conv2", (64,)),
            _small_net_defaults("cifar10", 20_000, 2e-4, 0.1, 4_300_000),
        ),
        ModelSpec(
            "conv4",
            paper.conv_net("conv4", (64, 128)),
            _small_net_defaults("cifar10", 25_000, 3e-4, 0.1, 2_400_000),
        ),
        ModelSpec(
            "conv6",
            paper.conv_net("conv6", (64, 128, 256)),
            # The paper's table says 1.7M, but the architecture it describes
            # (same as conv4 plus 256, 256, pool) has 2,261,184 kernel
            # weights at 32x32x3; we follow the architecture.
            _small_net_defaults("cifar10", 30_000, 3e-4, 0.15, 1_700_000),
        ),
        ModelSpec(
            "resnet18",
            paper.resnet18,
            _deep_net_defaults(
                iterations=30_000,
                batch_size=128,
                global_exclude=("output", "*_shortcut"),
                # lr 0.1 for 20K, 0.01 for 5K, 0.001 for 5K.
                # (The paper's warmup variant: 20K iterations to lr 0.03.)
                lr_boundaries=(20_000, 25_000),
                prunable_weights=274_000,
            ),
        ),
        ModelSpec(
            "vgg19",
            paper.vgg19,
            _deep_net_defaults(
                iterations=112_000,
                batch_size=64,
                global_exclude=("output",),
                # Epochs 80 and 120 of 160, with 160 epochs == 112K iterations.
                # (The paper's warmup variant: 10K iterations to lr 0.1.)
                lr_boundaries=(56_000, 84_000),
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
            ``"my_package.my_module:build"`` (see `custom.build_custom`).
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
    if custom.is_custom(name):
        if dropout:
            raise custom.CustomModelError("dropout", f"applies to the built-in models only, not to {name}.")
        return custom.build_custom(name, input_shape, num_classes, seed=seed)
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
