"""What a round of training does when, independent of the Keras flavour.

Shared by `lth_keras.training` (Keras 3) and the TFMOT baseline (tf_keras,
`lth_keras.baselines.tfmot`), so both train with the same data order,
learning-rate schedule and optimizer, evaluate at the same iterations and
report the same curves and log lines. Nothing here imports Keras, and
TensorFlow only inside the functions that build tensors, so the module
imports the same under Keras 3 and tf_keras.

Example:

```python
from lth_keras.training import schedule

schedule.evaluation_points(300, 100, stops=(50,))   # [50, 100, 200, 300]
schedule.trial_seed(0, 2)                           # 2000
```
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = [
    "SEED_STRIDE", "trial_seed", "evaluation_points", "epoch_permutation", "warmup_piecewise",
    "coupled_weight_decay", "build_optimizer", "train_and_measure", "progress_line", "done_line",
]

SEED_STRIDE = 1000  # trial t uses seed + t * SEED_STRIDE


def trial_seed(seed: int, trial: int) -> int:
    """The seed of trial `trial` (model initialisation, data order)."""
    return seed + trial * SEED_STRIDE


def evaluation_points(iterations: int, eval_every: int, stops=(), round_start: int = 0) -> list[int]:
    """Iterations where training pauses: every `eval_every` after
    `round_start`, the last one, and any of `stops` inside the round."""
    points = set(range(round_start + eval_every, iterations + 1, eval_every)) | {iterations}
    points |= {s for s in stops if 0 < s <= iterations}
    return sorted(points)


def epoch_permutation(n, seed, epoch):
    """The training set's order in `epoch`: a pure function of (seed, epoch)."""
    import tensorflow as tf

    keys = tf.random.stateless_uniform([n], seed=tf.stack([seed, tf.cast(epoch, tf.int32)]))
    return tf.argsort(keys)


def warmup_piecewise(step, learning_rate, boundaries, warmup_iterations, ops):
    """Linear warmup to `learning_rate`, then /10 at each boundary.

    `ops` is `keras.ops` or `tensorflow` (both name cast, convert_to_tensor,
    where and minimum alike).
    """
    step = ops.cast(step, "float32")
    lr = ops.convert_to_tensor(learning_rate, "float32")
    for boundary in boundaries:
        lr = ops.where(step >= boundary, lr / 10.0, lr)
    if warmup_iterations:
        lr = lr * ops.minimum(1.0, (step + 1.0) / warmup_iterations)
    return lr


def coupled_weight_decay(name: str, weight_decay) -> float:
    """The L2 coefficient the training step adds to the gradient
    (``weight_decay * w``, before momentum, as the paper and OpenLTH do):
    `weight_decay` for ``sgd`` and ``adam``, 0 for ``adamw``, whose decay is
    decoupled and carried by the optimizer itself."""
    return float(weight_decay or 0.0) if name in ("sgd", "adam") else 0.0


def build_optimizer(optimizers, name: str, learning_rate, momentum, weight_decay):
    """``adam``, ``adamw`` or ``sgd`` from `optimizers` (`keras.optimizers`
    or tf_keras's); `learning_rate` may be a schedule.

    Only ``adamw`` carries `weight_decay` (decoupled). For ``sgd`` and
    ``adam`` the caller adds `coupled_weight_decay` to the gradient.
    """
    if name == "adam":
        return optimizers.Adam(learning_rate)
    if name == "adamw":
        return optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return optimizers.SGD(learning_rate, momentum=momentum or 0.0)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}.")


def train_and_measure(
    train_steps: Callable[[int, int], tuple],
    evaluate: Callable[[str], tuple],
    iterations: int,
    eval_every: int,
    *,
    start_iteration: int | None = None,
    round_start: int = 0,
    curve: list | None = None,
    on_eval: Callable[[dict], None] | None = None,
    stops: dict | None = None,
) -> list[dict]:
    """Trains from `start_iteration` to `iterations`, evaluating every
    `eval_every` steps (and at the end); returns the learning curve.

    Args:
        train_steps: ``train_steps(start, n) -> (mean loss, accuracy)``.
        evaluate: ``evaluate("val" | "test") -> (mean loss, accuracy)``.
        start_iteration: where a resumed round continues (default:
            `round_start`).
        round_start: the iteration the round starts at: 0, or the rewind
            iteration k of a rewound round, which trains the
            ``iterations - k`` steps k+1 … T with curve rows at
            k + eval_every, k + 2 * eval_every, … and T.
        curve: rows already measured (when resuming); extended in place.
        on_eval: called with each new curve row (progress, checkpoints).
        stops: ``{iteration: fn}`` extra points where the loop pauses to call
            ``fn(iteration)``, e.g. to capture the rewind weights.

    Returns:
        Dicts with iteration, train_loss, train_accuracy, val_loss,
        val_accuracy, test_accuracy, and seconds (training time since the
        round started, this process).
    """
    curve = [] if curve is None else curve
    stops = dict(stops or {})
    if not 0 <= round_start < iterations:
        raise ValueError(f"round_start must be in [0, {iterations}), got {round_start}.")
    if start_iteration is None:
        start_iteration = round_start
    if not round_start <= start_iteration <= iterations:
        raise ValueError(f"start_iteration must be in [round_start={round_start}, {iterations}], got {start_iteration}.")
    iteration = start_iteration
    if start_iteration in stops and start_iteration == round_start:
        stops[start_iteration](start_iteration)
    train_loss_sum, train_correct_sum, train_seen = 0.0, 0.0, 0
    started = time.perf_counter()
    for point in (p for p in evaluation_points(iterations, eval_every, stops, round_start) if p > start_iteration):
        loss, acc = train_steps(iteration, point - iteration)
        steps = point - iteration
        train_loss_sum += loss * steps
        train_correct_sum += acc * steps
        train_seen += steps
        iteration = point
        if point in stops:
            stops[point](point)
        if (point - round_start) % eval_every == 0 or point == iterations:
            val_loss, val_acc = evaluate("val")
            _, test_acc = evaluate("test")
            row = {
                "iteration": point,
                "train_loss": train_loss_sum / train_seen,
                "train_accuracy": train_correct_sum / train_seen,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
                "seconds": time.perf_counter() - started,
            }
            train_loss_sum, train_correct_sum, train_seen = 0.0, 0.0, 0
            curve.append(row)
            if on_eval is not None:
                on_eval(row)
    return curve


def progress_line(tag: str, row: dict, total: int, seconds: float, prefix: str = "") -> str:
    """One evaluation's log line."""
    return (
        f"{tag} it {row['iteration']}/{total}: {prefix}train loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.4f} | val loss {row['val_loss']:.4f} "
        f"acc {row['val_accuracy']:.4f} | test acc {row['test_accuracy']:.4f} "
        f"[{seconds:.1f}s]"
    )


def done_line(tag: str, summary: dict, wall: float, prefix: str = "") -> str:
    """A finished round's log line, from its summary (see
    `lth_keras.storage.curves.early_stop_metrics`)."""
    return (
        f"== {tag} done: {prefix}early stop at iteration {summary['early_stop_iteration']} "
        f"(val acc {summary['early_stop_val_accuracy']:.4f}, test acc "
        f"{summary['early_stop_test_accuracy']:.4f}), final test acc "
        f"{summary['final_test_accuracy']:.4f}, {wall:.1f}s"
    )
