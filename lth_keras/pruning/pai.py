"""Pruning at initialization (PaI): SNIP, GraSP, SynFlow and magnitude at θ0.

The baselines lottery-ticket work is compared with today (Frankle et al.
2021, "Pruning Neural Networks at Initialization: Why Are We Missing the
Mark?"). Each method scores every prunable weight at θ0 and keeps the
highest scores, to exactly the number of weights the ticket keeps at the
same round (scored at the ticket's reset point: θ0, or the weights at
``--rewind_iteration``): the same count in every layer (``--pruning=layerwise``) or the
same total over the prunable layers (``--pruning=global``, where the
method picks its own per-layer sparsities). The arm then trains from θ0
like the ticket and is written in the same schema. Scores:

    magnitude_init: |θ0|.
    snip: |∂L/∂θ ⊙ θ| (Lee et al. 2019), L the cross-entropy on
        `examples` training examples at θ0, summed over batches.
    grasp: θ ⊙ Hg (Wang et al. 2020), g = ∂L/∂θ over the prunable weights
        with the logits divided by a temperature of 200, and Hg the gradient
        of gᵀ·stop_grad(g). The
        paper removes the highest S(−θ) = −θ ⊙ Hg; keeping the highest
        θ ⊙ Hg is the same mask (and what ganguli-lab/Synaptic-Flow does).
    synflow: |θ ⊙ ∂R/∂θ| (Tanaka et al. 2020), R the sum of the outputs
        of the network with every parameter replaced by its absolute value,
        on one all-ones input; data-free and iterative: 100 steps, step j
        keeping the fraction (target)^(j/100), each step scoring the
        previous step's sparse network.

Each method also has a ``<method>_shuffled`` arm: its mask shuffled within
each layer (Frankle et al. 2021's test of whether a method's per-layer
sparsities are all that matters). Under ``--pruning=layerwise`` every PaI
mask has the ticket's per-layer counts, so a shuffled PaI mask is a
``random_mask`` draw; the shuffle test is informative with
``--pruning=global``.

The arms are registered in `lth_keras.arms` (their names go in
``--controls``); this module holds the scores and the selection. Scores
are `keras.ops`; gradients use the backend's own autodiff (`tf.GradientTape`,
`jax.grad`, `torch.autograd`). CI checks the scores against hand
computations on all three backends, and JAX's against TensorFlow's.

Example:

```python
from lth_keras.experiment import runner as experiment

config = experiment.ExperimentConfig(
    model="lenet", dataset="fashion_mnist", iterations=2000, rounds=8,
    pruning="global", controls=("reinit", "snip", "snip_shuffled", "synflow"))
experiment.train_and_evaluate(config, "runs")

# Or one score on any masked model:
from lth_keras.pruning import pai
scores = pai.snip_scores(model, x, y)          # {masked weight: array}
masks = pai.keep_top(scores, {n: 100 for n in scores})
```
"""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "METHODS",
    "SYNFLOW_ITERATIONS",
    "GRASP_TEMPERATURE",
    "magnitude_scores",
    "snip_scores",
    "grasp_scores",
    "hessian_gradient_product",
    "synflow_scores",
    "synflow_masks",
    "keep_top",
    "keep_top_global",
    "shuffle_within_layers",
    "target_counts",
    "pai_masks",
    "start",
]

METHODS = ("snip", "grasp", "synflow", "magnitude_init")
SYNFLOW_ITERATIONS = 100
GRASP_TEMPERATURE = 200.0
# Examples per class scored by SNIP and GraSP (Synaptic-Flow's
# prune_dataset_ratio): 100 examples for 10 classes.
EXAMPLES_PER_CLASS = 10


# --------------------------------------------------------------------------
# Selection (numpy): exact counts, ties broken by position.


def _top_indices(flat_scores: np.ndarray, alive: np.ndarray, k: int) -> np.ndarray:
    candidates = np.flatnonzero(alive)
    if k > candidates.size:
        raise ValueError(f"cannot keep {k} weights, only {candidates.size} are alive.")
    scores = np.asarray(flat_scores, np.float64)[candidates]
    scores = np.where(np.isnan(scores), -np.inf, scores)
    # Stable sort of the negated scores: highest first, ties by lower index.
    return candidates[np.argsort(-scores, kind="stable")[:k]]


def keep_top(scores: Mapping[str, np.ndarray], counts: Mapping[str, int],
             masks: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Layerwise: in each layer, keep the `counts[name]` highest scores.

    Args:
        scores: ``{name: array}``; higher is kept.
        counts: weights to keep per name (exact).
        masks: only entries alive here may be kept (default: all).

    Returns:
        ``{name: float32 0/1 array}`` with exactly ``counts[name]`` ones.

    Example:
        >>> keep_top({"a": np.array([0.1, 3.0, 2.0])}, {"a": 2})["a"]
        array([0., 1., 1.], dtype=float32)
    """
    result = {}
    for name, score in scores.items():
        score = np.asarray(score)
        alive = np.ones(score.size, bool) if masks is None else np.asarray(masks[name]).reshape(-1) != 0
        new = np.zeros(score.size, np.float32)
        new[_top_indices(score.reshape(-1), alive, int(counts[name]))] = 1.0
        result[name] = new.reshape(score.shape)
    return result


def keep_top_global(scores: Mapping[str, np.ndarray], total: int, include: Sequence[str],
                    masks: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Global: keep the `total` highest scores over the layers in `include`;
    the other layers keep their masks (all ones when `masks` is None).

    Example:
        >>> m = keep_top_global({"a": np.array([1.0, 5.0]), "b": np.array([4.0, 2.0])}, 2, ["a", "b"])
        >>> m["a"], m["b"]
        (array([0., 1.], dtype=float32), array([1., 0.], dtype=float32))
    """
    names = [n for n in scores if n in set(include)]
    flat = np.concatenate([np.asarray(scores[n], np.float64).reshape(-1) for n in names])
    alive = np.concatenate([
        (np.ones(np.size(scores[n]), bool) if masks is None else np.asarray(masks[n]).reshape(-1) != 0)
        for n in names
    ])
    keep = np.zeros(flat.size, np.float32)
    keep[_top_indices(flat, alive, int(total))] = 1.0
    result, offset = {}, 0
    for name, score in scores.items():
        shape = np.shape(score)
        if name in names:
            result[name] = keep[offset:offset + int(np.prod(shape))].reshape(shape)
            offset += int(np.prod(shape))
        else:
            result[name] = (np.ones(shape, np.float32) if masks is None
                            else (np.asarray(masks[name]) != 0).astype(np.float32))
    return result


def shuffle_within_layers(masks: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each layer's mask with its entries randomly permuted (same count).

    Example:
        >>> m = shuffle_within_layers({"a": np.array([1.0, 1.0, 0.0, 0.0])}, seed=0)
        >>> int(m["a"].sum())
        2
    """
    rng = np.random.default_rng(seed)
    return {name: np.asarray(mask, np.float32).reshape(-1)[rng.permutation(np.size(mask))].reshape(np.shape(mask))
            for name, mask in masks.items()}


def target_counts(ticket_masks: Mapping[str, np.ndarray], scope: str, include: Sequence[str]):
    """What a PaI mask must match: ``{name: count}`` (layerwise) or the
    total over `include` (global)."""
    if scope == "global":
        return int(sum(np.count_nonzero(ticket_masks[n]) for n in ticket_masks if n in set(include)))
    return {n: int(np.count_nonzero(m)) for n, m in ticket_masks.items()}


def _select(scores, counts, include, masks=None):
    if isinstance(counts, dict):
        return keep_top(scores, counts, masks)
    return keep_top_global(scores, counts, include, masks)


# --------------------------------------------------------------------------
# Gradients through the backend's autodiff, on a functional model call.


def _gradients(fn, params):
    """∂fn(params)/∂params for a scalar `fn` of a list of tensors; nests
    (a gradient of a gradient) on every backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(params)
            value = fn(params)
        grads = tape.gradient(value, params)
        return [tf.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    if backend == "jax":
        import jax

        return jax.grad(fn)(list(params))
    if backend == "torch":
        import torch

        leaves = [p if p.requires_grad else p.detach().requires_grad_(True) for p in params]
        grads = torch.autograd.grad(fn(leaves), leaves, create_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves)]
    raise NotImplementedError(f"pruning-at-initialization scores need gradients; backend {backend!r} is not supported.")


class _Functional:
    """The model as a pure function of its trainable values, with given
    masks and non-trainable values (nothing in the model is assigned)."""

    def __init__(self, model, weights=None, masks=None):
        import keras

        from lth_keras import layers

        self.model = model
        self.masked = layers.masked_weights(model)
        mask_value = {id(mw.mask): mw.mask for mw in self.masked}
        snapshot_of = {}
        if weights is not None:
            from lth_keras.pruning.snapshots import WeightSnapshot

            snapshot_of = {id(v): a for v, a in zip(WeightSnapshot._variables(model), weights.values)}
        names_of_mask = {id(mw.mask): mw.name for mw in self.masked}

        def value(variable):
            if id(variable) in mask_value:
                name = names_of_mask[id(variable)]
                array = masks[name] if masks is not None and name in masks else variable.numpy()
                return keras.ops.convert_to_tensor(np.asarray(array, variable.dtype))
            array = snapshot_of.get(id(variable))
            return keras.ops.convert_to_tensor(variable.numpy() if array is None else np.asarray(array, variable.dtype))

        self.trainable = [value(v) for v in model.trainable_variables]
        self.non_trainable = [value(v) for v in model.non_trainable_variables]
        position = {id(v): i for i, v in enumerate(model.trainable_variables)}
        self.kernel_index = {mw.name: position[id(mw.weight)] for mw in self.masked}

    def __call__(self, trainable, x):
        outputs, _ = self.model.stateless_call(trainable, self.non_trainable, x, training=False)
        return outputs

    def kernels(self, values):
        return {name: values[i] for name, i in self.kernel_index.items()}


def _cross_entropy(logits, y):
    import keras

    return keras.ops.mean(keras.ops.sparse_categorical_crossentropy(y, logits, from_logits=True))


def _to_numpy(tensors):
    import keras

    return {n: np.asarray(keras.ops.convert_to_numpy(t)) for n, t in tensors.items()}


def _batches(x, y, batch_size):
    n = len(x)
    batch_size = max(1, min(int(batch_size), n))
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def magnitude_scores(model, weights=None) -> dict[str, np.ndarray]:
    """|θ| of every masked weight (of `weights`, a `WeightSnapshot`, or the
    model's current values).

    Example:
        >>> scores = magnitude_scores(model)    # doctest: +SKIP
    """
    import keras

    f = _Functional(model, weights)
    return _to_numpy({n: keras.ops.abs(w) for n, w in f.kernels(f.trainable).items()})


def snip_scores(model, x, y, *, weights=None, batch_size=None) -> dict[str, np.ndarray]:
    """SNIP's connection sensitivity |∂L/∂θ ⊙ θ| (Lee et al. 2019), summed
    over batches of `batch_size` and normalised to sum to 1 over all
    masked weights. Computed with all-ones masks (the dense network).

    Args:
        model: a built model with masked layers, producing logits.
        x, y: examples and integer labels.
        weights: a `WeightSnapshot` to score (default: current values).
        batch_size: default: all of `x` at once.
    """
    import keras

    f = _Functional(model, weights, masks=_ones(model))
    total = None
    for xb, yb in _batches(x, y, batch_size or len(x)):
        xb, yb = keras.ops.convert_to_tensor(xb, "float32"), keras.ops.convert_to_tensor(yb, "int32")
        grads = _gradients(lambda p: _cross_entropy(f(p, xb), yb), f.trainable)
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
    scores = {n: keras.ops.abs(g * w) for (n, g), w in zip(f.kernels(total).items(), f.kernels(f.trainable).values())}
    norm = sum(keras.ops.sum(s) for s in scores.values())
    return _to_numpy({n: s / norm for n, s in scores.items()})


def hessian_gradient_product(model, x, y, *, weights=None, temperature=GRASP_TEMPERATURE, batch_size=None):
    """(g, Hg) for every trainable variable, in `model.trainable_variables`
    order: g the gradient of the cross-entropy of logits / `temperature`
    with respect to the masked weights (zero for biases and other unmasked
    variables, as GraSP and Synaptic-Flow score only the prunable weights),
    and Hg the gradient of gᵀ·stop_grad(g), summed over batches."""
    import keras

    f = _Functional(model, weights, masks=_ones(model))
    batches = [(keras.ops.convert_to_tensor(xb, "float32"), keras.ops.convert_to_tensor(yb, "int32"))
               for xb, yb in _batches(x, y, batch_size or len(x))]
    kernels = sorted(f.kernel_index.values())

    def loss(p, xb, yb):
        return _cross_entropy(f(p, xb) / temperature, yb)

    g = None
    for xb, yb in batches:
        grads = _gradients(lambda p: loss(p, xb, yb), f.trainable)
        g = grads if g is None else [a + b for a, b in zip(g, grads)]
    g = [np.asarray(keras.ops.convert_to_numpy(t)) if i in kernels else np.zeros(tuple(t.shape), np.float32)
         for i, t in enumerate(g)]
    stopped = [keras.ops.stop_gradient(keras.ops.convert_to_tensor(t)) for t in g]
    hg = None
    for xb, yb in batches:
        def g_dot(p):
            inner = _gradients(lambda q: loss(q, xb, yb), p)
            return sum(keras.ops.sum(inner[i] * stopped[i]) for i in kernels)

        h = _gradients(g_dot, f.trainable)
        hg = h if hg is None else [a + b for a, b in zip(hg, h)]
    return g, [np.asarray(keras.ops.convert_to_numpy(t)) for t in hg]


def grasp_scores(model, x, y, *, weights=None, temperature=GRASP_TEMPERATURE, batch_size=None):
    """GraSP's keep-score θ ⊙ Hg (Wang et al. 2020), normalised by |Σ|.

    Keeping the highest θ ⊙ Hg removes the highest S(−θ) = −θ ⊙ Hg, the
    paper's rule."""
    f = _Functional(model, weights)
    _, hg = hessian_gradient_product(model, x, y, weights=weights, temperature=temperature, batch_size=batch_size)
    theta = [np.asarray(t) for t in _to_numpy(f.kernels(f.trainable)).values()]
    scores = {n: hg[i] * w for (n, i), w in zip(f.kernel_index.items(), theta)}
    norm = abs(sum(float(np.sum(s, dtype=np.float64)) for s in scores.values())) + 1e-12
    return {n: (s / norm).astype(np.float32) for n, s in scores.items()}


def synflow_scores(model, masks=None, *, weights=None) -> dict[str, np.ndarray]:
    """SynFlow's synaptic saliency |θ ⊙ ∂R/∂θ| with every parameter
    replaced by |θ|, R the sum of the outputs on one all-ones input, under
    `masks` (default: the model's). One step of `synflow_masks`."""
    import keras

    f = _Functional(model, weights, masks=masks)
    params = [keras.ops.abs(t) for t in f.trainable]
    ones = keras.ops.ones((1,) + tuple(model.input_shape[1:]), "float32")
    grads = _gradients(lambda p: keras.ops.sum(f(p, ones)), params)
    return _to_numpy({n: keras.ops.abs(grads[i] * params[i]) for n, i in f.kernel_index.items()})


def synflow_masks(model, counts, *, include=None, weights=None, iterations=SYNFLOW_ITERATIONS):
    """SynFlow's iterative pruning to `counts` (``{name: count}``, or a
    total over `include`): at step j of `iterations` it keeps the fraction
    (target)^(j/iterations) of the layer (layerwise) or of the included
    weights (global), scored on step j−1's mask; the last step is exact."""
    from lth_keras import layers

    shapes = {mw.name: tuple(mw.mask.shape) for mw in layers.masked_weights(model)}
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    include = list(shapes) if include is None else list(include)
    masks = {n: np.ones(s, np.float32) for n, s in shapes.items()}
    for j in range(1, iterations + 1):
        scores = synflow_scores(model, masks, weights=weights)
        if isinstance(counts, dict):
            step = {n: _interpolated_count(sizes[n], counts[n], j, iterations) for n in shapes}
        else:
            step = _interpolated_count(sum(sizes[n] for n in include), counts, j, iterations)
        masks = _select(scores, step, include, masks)
    return masks


def _interpolated_count(size: int, target: int, j: int, iterations: int) -> int:
    if j >= iterations or size == 0:
        return int(target)
    return max(int(target), int(round(size * (target / size) ** (j / iterations))))


def _ones(model):
    from lth_keras import layers

    return {mw.name: np.ones(tuple(mw.mask.shape), np.float32) for mw in layers.masked_weights(model)}


# --------------------------------------------------------------------------
# The arms' start: a round's PaI mask at the ticket's counts, from θ0.


def _scoring_examples(trial):
    """The examples SNIP and GraSP score on: `EXAMPLES_PER_CLASS` per class
    of the trial's training set (``trial.data``, the dataset the runner
    trains on), drawn with the trial's seed."""
    data = getattr(trial, "data", None)
    if data is None:
        raise ValueError("SNIP and GraSP score on training examples: the trial has no `data` "
                         "(give TrialState the dataset the round trains on).")
    n = min(len(data.x_train), EXAMPLES_PER_CLASS * data.num_classes)
    index = np.random.default_rng(trial.seed).permutation(len(data.x_train))[:n]
    return np.asarray(data.x_train[index], np.float32), np.asarray(data.y_train[index], np.int32)


def pai_masks(method: str, trial, ticket_masks, weights=None) -> dict[str, np.ndarray]:
    """`method`'s masks with the ticket's counts, scored at `weights`
    (default θ0; see the module doc)."""
    if method not in METHODS:
        raise ValueError(f"unknown pruning-at-initialization method {method!r}; known: {', '.join(METHODS)}.")
    scope = trial.config.pruning
    include = trial.prunable
    counts = target_counts(ticket_masks, scope, include)
    model, theta0 = trial.model, trial.theta0 if weights is None else weights
    if method == "synflow":
        masks = synflow_masks(model, counts, include=include, weights=theta0)
    else:
        if method == "magnitude_init":
            scores = magnitude_scores(model, theta0)
        else:
            x, y = _scoring_examples(trial)
            score = snip_scores if method == "snip" else grasp_scores
            scores = score(model, x, y, weights=theta0, batch_size=trial.config.batch_size)
        masks = _select(scores, counts, include)
    return {n: masks[n] for n in ticket_masks}


def start(trial, round_: int, method: str, shuffled: bool = False):
    """An arm's ``start``: ``(masks, weights)`` for round `round_` (`lth_keras.arms`).

    The weights are the ticket's reset point, where the masks are also
    scored: θ0, or with ``--rewind_iteration=k`` the weights at k (pruning
    "after initialization", which then trains from k like the ticket and
    the random-mask control)."""
    weights = trial.reset_point()
    masks = pai_masks(method, trial, trial.mask("ticket", round_), weights)
    if shuffled:
        seed = trial.seed + 300_007 * (round_ + 1) + zlib.crc32(method.encode()) % 100_003
        masks = shuffle_within_layers(masks, seed)
    return masks, weights
