"""2:4 structured sparsity against unstructured pruning at 50%, on Fashion-MNIST.

For LeNet-300-100 and Conv-2 (the models of `lth_keras.models`), per trial:

- ``ticket``: IMP with `lth_keras.IterativeMagnitudePruning`, two rounds
  (dense, then 50% of every pruned layer removed by magnitude, survivors
  reset to θ0), unstructured;
- ``ticket_2:4``: the same with ``pattern="2:4"`` (exactly 2 of every 4
  weights along each kernel's input dimension survive);
- ``gradual`` / ``gradual_2:4``: one run from θ0 with
  `lth_keras.GradualMagnitudePruning` to 50% (reached at 2/3 of training,
  mask update every 100 steps), unstructured or 2:4.

Every layer is pruned at 50% (the output layer too), except Conv-2's first
convolution, which has one input channel (not a multiple of 4) and stays
dense in all four arms. Test accuracy is measured at the end of training
(no early stopping). Writes one CSV row per (model, trial, arm).

    python examples/nm_sparsity_fashion_mnist.py --epochs=2 --trials=3 --out=nm.csv
"""

import argparse
import csv
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lth_keras  # noqa: E402
from lth_keras import datasets, models  # noqa: E402
from lth_keras.pruning import gradual
from lth_keras import layers as lth_layers  # noqa: E402


def run(model_name, arm, data, trial, epochs, batch_size=60):
    keras.utils.set_random_seed(trial)
    model = models.build(model_name, data.input_shape, data.num_classes, seed=1000 * trial)
    exclude = ["conv_1"] if model_name == "conv2" else None
    names = [mw.name for mw in lth_layers.masked_weights(model)]
    if exclude:
        assert "conv_1" in names, names
    model.compile(keras.optimizers.Adam(1.2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    pattern = "2:4" if arm.endswith("2:4") else None
    steps = len(data.x_train) // batch_size * epochs
    if arm.startswith("ticket"):
        callback = lth_keras.IterativeMagnitudePruning(0.5, round_epochs=epochs, output_layer=None, exclude=exclude,
                                                       pattern=pattern, verbose=0)
        total_epochs = 2 * epochs
    else:
        callback = lth_keras.GradualMagnitudePruning(0.5, end_step=(2 * steps // 3) // 100 * 100, frequency=100,
                                                     exclude=exclude, pattern=pattern)
        total_epochs = epochs
    began = time.perf_counter()
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=total_epochs, callbacks=[callback],
              shuffle=True, verbose=0)
    loss, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=1000, verbose=0)
    counts = lth_layers.count_weights(model)
    chosen = [n for n in counts if not exclude or n not in exclude]
    violations = gradual.check_pattern(model, "2:4", exclude=exclude) if pattern else {}
    return {
        "model": model_name, "trial": trial, "arm": arm, "test_accuracy": accuracy, "test_loss": loss,
        "pm": 100.0 * sum(r for r, _ in counts.values()) / sum(t for _, t in counts.values()),
        "pm_pruned_layers": 100.0 * sum(counts[n][0] for n in chosen) / sum(counts[n][1] for n in chosen),
        "pattern_violations": sum(violations.values()), "iterations": steps * (2 if arm.startswith("ticket") else 1),
        "seconds": time.perf_counter() - began,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet,conv2")
    parser.add_argument("--arms", default="ticket,ticket_2:4,gradual,gradual_2:4")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round (and of the gradual run)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--first_trial", type=int, default=0, help="run trials first_trial .. trials - 1")
    parser.add_argument("--out", default="nm_sparsity.csv")
    args = parser.parse_args()
    data = datasets.load("fashion_mnist", validation_size=5000)
    rows = []
    for model_name in args.models.split(","):
        for trial in range(args.first_trial, args.trials):
            for arm in args.arms.split(","):
                row = run(model_name, arm, data, trial, args.epochs)
                rows.append(row)
                print(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
                with open(args.out, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)


if __name__ == "__main__":
    main()
