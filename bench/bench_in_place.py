r"""Masks in place: speed against lth_keras's masked layers, and why not a
mask constraint. Ratios timed in one run, through `model.fit`.

    python bench/bench_in_place.py              # LeNet-300-100 and Conv-2 sizes
    python bench/bench_in_place.py --quick      # seconds, as CI's smoke test runs it
    KERAS_BACKEND=jax python bench/bench_in_place.py --exactness_only

Contenders, each the same network at batch 60 with Adam, trained with
`model.fit` (`steps_per_execution=10`):

* ``plain``: Keras layers, no masks (the floor);
* ``masked_layers``: lth_keras's `MaskedDense`/`MaskedConv2D`;
* ``in_place``: plain layers masked by `lth_keras.add_masks` (the mask is
  multiplied in the forward pass, inside the layer's wrapped call);
* ``constraint``: plain layers whose kernels carry a mask constraint, which
  Keras optimizers apply after every update (the forward pass is the plain
  layer's). Not used by lth_keras: see the exactness line.

Prints ``ratio in_place_vs_masked_layers`` (target <= 1.10),
``ratio in_place_vs_plain`` and ``ratio constraint_vs_plain`` (reported), and
``exactness constraint``: how many pruned weights left zero when masks change
between two `fit` calls with the constraint mechanism. On JAX the optimizer
applies constraints outside the model's state, so a mask variable is read
as a constant compiled into the step (stale after pruning) or, when the
layer tracks it, as a purged value (an error); in-place masks are model state
on every backend.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lth_keras  # noqa: E402


class MaskConstraint(keras.constraints.Constraint):
    """``w * mask`` after every optimizer update (the alternative measured)."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, w):
        return keras.ops.multiply(w, keras.ops.cast(self.mask, w.dtype))


def lenet(kind):
    dense = lth_keras.MaskedDense if kind == "masked_layers" else keras.layers.Dense
    return keras.Sequential([keras.Input((784,)), dense(300, activation="relu"), dense(100, activation="relu"),
                             dense(10)])


def conv2(kind):
    masked = kind == "masked_layers"
    conv = lth_keras.MaskedConv2D if masked else keras.layers.Conv2D
    dense = lth_keras.MaskedDense if masked else keras.layers.Dense
    return keras.Sequential([
        keras.Input((32, 32, 3)), conv(64, 3, padding="same", activation="relu"),
        conv(64, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        dense(256, activation="relu"), dense(256, activation="relu"), dense(10)])


def with_constraints(model):
    masks = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if isinstance(kernel, keras.Variable):
            mask = keras.Variable(np.ones(kernel.shape, "float32"), trainable=False)
            kernel.constraint = MaskConstraint(mask)
            masks.append((kernel, mask))
    return masks


def build(network, kind):
    model = {"lenet": lenet, "conv2": conv2}[network](kind)
    if kind == "in_place":
        lth_keras.add_masks(model)
    elif kind == "constraint":
        with_constraints(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=10)
    return model


def time_steps(models, x, y, steps, repeats):
    """Best seconds per step of each model; timed chunks alternate."""
    best = {k: float("inf") for k in models}
    for model in models.values():  # trace and warm up
        model.fit(x[: 60 * 20], y[: 60 * 20], batch_size=60, epochs=1, verbose=0)
    n = 60 * steps
    for _ in range(repeats):
        for kind, model in models.items():
            start = time.perf_counter()
            model.fit(x[:n], y[:n], batch_size=60, epochs=1, verbose=0, shuffle=False)
            best[kind] = min(best[kind], (time.perf_counter() - start) / steps)
    return best


def constraint_exactness():
    """Pruned weights that moved off zero, masks changed between fits."""
    model = build("lenet", "constraint")
    pairs = [(v.constraint.mask, v) for v in model.trainable_variables if v.constraint is not None]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 784)).astype("float32"), rng.integers(0, 10, 600)
    model.fit(x, y, batch_size=60, epochs=1, verbose=0)
    for mask, kernel in pairs:
        keep = rng.random(mask.shape) < 0.5
        mask.assign(keep.astype("float32"))
        kernel.assign(np.where(keep, keras.ops.convert_to_numpy(kernel), 0))
    model.fit(x, y, batch_size=60, epochs=1, verbose=0)
    moved = total = 0
    for mask, kernel in pairs:
        pruned = keras.ops.convert_to_numpy(mask) == 0
        moved += int(np.count_nonzero(keras.ops.convert_to_numpy(kernel)[pruned]))
        total += int(pruned.sum())
    return moved, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--steps", type=int, default=200, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=5, help="timed chunks per contender (best kept)")
    parser.add_argument("--networks", default="lenet,conv2", help="comma-separated: lenet, conv2")
    parser.add_argument("--exactness_only", action="store_true", help="only the constraint exactness line")
    args = parser.parse_args(argv)
    steps, repeats = (20, 1) if args.quick else (args.steps, args.repeats)
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}")
    moved, total = constraint_exactness()
    print(f"exactness constraint: {moved} of {total} pruned weights nonzero after a second fit "
          f"({'exact' if moved == 0 else 'NOT exact'})")
    if args.exactness_only:
        return
    rng = np.random.default_rng(0)
    for network in [n for n in args.networks.split(",") if n]:
        shape = (784,) if network == "lenet" else (32, 32, 3)
        count = 60 * max(steps, 20)
        x, y = rng.normal(size=(count, *shape)).astype("float32"), rng.integers(0, 10, count)
        models = {k: build(network, k) for k in ("plain", "masked_layers", "in_place", "constraint")}
        best = time_steps(models, x, y, steps, repeats)
        ms = {k: 1000 * v for k, v in best.items()}
        print(f"step {network}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()))
        ratio = ms["in_place"] / ms["masked_layers"]
        print(f"ratio in_place_vs_masked_layers {network}: {ratio:.3f} (target <= 1.10, "
              f"{'ok' if ratio <= 1.10 else 'MISSED'})")
        print(f"ratio in_place_vs_plain {network}: {ms['in_place'] / ms['plain']:.3f} (reported)")
        print(f"ratio constraint_vs_plain {network}: {ms['constraint'] / ms['plain']:.3f} (reported)")


if __name__ == "__main__":
    main()
