r"""The TFMOT baseline: tf_keras + prune_low_magnitude LeNet-300-100 via model.fit.

Run it with the interpreter of a separate venv (TFMOT needs tf_keras, pins
absl-py<2 and switches tf.keras to tf_keras for the whole process, so it
never shares a process or an environment with lth_keras):

    python -m venv /tmp/lth_tfmot_venv
    /tmp/lth_tfmot_venv/bin/pip install 'tensorflow==2.21.*' 'tf_keras==2.21.*' tensorflow-model-optimization
    TF_USE_LEGACY_KERAS=1 /tmp/lth_tfmot_venv/bin/python bench/bench_tfmot.py

`bench_training.py --tfmot_python=...` runs it and prints the ratio. It trains
the same network (batch 60, Adam 1.2e-3) with a constant-sparsity schedule
that prunes every 100 steps, as TFMOT's magnitude pruning does, data in
memory (a cached, shuffled tf.data pipeline) and ``steps_per_execution``
equal to the timed chunk, i.e. TFMOT's best case. Prints ``TFMOT_RESULT
{json}`` with the best seconds per step over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train_size", type=int, default=55_000)
    p.add_argument("--steps", type=int, default=500, help="steps per timed fit() call")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.train_size, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, args.train_size).astype(np.int32)
    ds = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .cache()
        .shuffle(args.train_size, seed=0, reshuffle_each_iteration=True)
        .batch(60, drop_remainder=True)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )
    prune = tfmot.sparsity.keras.prune_low_magnitude
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=0, frequency=100)
    init = tf_keras.initializers.GlorotNormal
    model = tf_keras.Sequential([
        tf_keras.Input((28, 28, 1)),
        tf_keras.layers.Flatten(),
        prune(tf_keras.layers.Dense(300, activation="relu", kernel_initializer=init(1)), pruning_schedule=schedule),
        prune(tf_keras.layers.Dense(100, activation="relu", kernel_initializer=init(2)), pruning_schedule=schedule),
        prune(tf_keras.layers.Dense(10, kernel_initializer=init(3)), pruning_schedule=schedule),
    ])
    model.compile(
        tf_keras.optimizers.Adam(1.2e-3),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=args.steps,
    )
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    fit = lambda: model.fit(ds, epochs=1, steps_per_epoch=args.steps, callbacks=callbacks, verbose=0)  # noqa: E731
    fit()  # trace and warm up
    best = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        fit()
        best = min(best, time.perf_counter() - t)
    print("TFMOT_RESULT " + json.dumps({
        "seconds_per_step": best / args.steps,
        "tf_keras": tf_keras.__version__,
        "tfmot": tfmot.__version__,
        "tensorflow": tf.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
