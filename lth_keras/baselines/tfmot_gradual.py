r"""The TFMOT gradual-pruning baseline's rounds: TensorFlow Model
Optimization's ``prune_low_magnitude`` + ``PolynomialDecay`` trained to each
ticket round's P_m and written into the IMP experiment as the arm
``tfmot_gradual``.

`run` does it for every finished ticket round >= 1 (the program
``python -m lth_keras.baselines.tfmot`` parses flags and calls it; its doc
describes the method). Each trial's rounds are written under the trial's
lock, as every other writer of an experiment does. tf_keras and TFMOT are
imported only inside functions, and only in the baseline's own venv
(`lth_keras.baselines.venv`).

Example (in the venv's python):

```python
from lth_keras.baselines import tfmot_gradual

summaries = tfmot_gradual.run("runs/lenet", training_length="total")
[s["pm"] for s in summaries]
```
"""

from __future__ import annotations

import os
import time

import numpy as np

from lth_keras import arms, datasets
from lth_keras.storage import files
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.training import schedule
from lth_keras.pruning import sparsity
from lth_keras.experiment import config as lth_config
from lth_keras.experiment import saved
from lth_keras.baselines import architecture as arch

__all__ = ["ARM", "BaselineError", "pruning_schedule_steps", "resolve_config", "run", "ticket_targets",
           "weight_pairs"]

ARM = "tfmot_gradual"


class BaselineError(ValueError):
    """A bad flag, a missing experiment or a missing TFMOT install (one line)."""


# --------------------------------------------------------------------------
# Configuration and targets


def resolve_config(results_dir: str, overrides: dict | None = None) -> lth_config.ExperimentConfig:
    """The experiment's config.json, with `overrides` applied, resolved."""
    try:
        return saved.saved_config(results_dir, overrides, error=BaselineError)
    except lth_config.ConfigError as e:
        raise BaselineError(str(e)) from None


def ticket_targets(exp_dir: ExperimentDir) -> dict[int, dict[int, dict]]:
    """``{trial: {round: ticket summary}}`` for every finished ticket round."""
    targets: dict[int, dict[int, dict]] = {}
    for s in exp_dir.summaries():
        if s.get("arm") == "ticket":
            targets.setdefault(int(s["trial"]), {})[int(s["round"])] = s
    return targets


def pruning_schedule_steps(iterations: int, begin: float, end: float, frequency: int) -> dict:
    """begin_step, end_step and frequency of the PolynomialDecay: the shared
    `lth_keras.sparsity.schedule_steps`, which the in-process ``gradual`` arm
    uses too, so both arms prune on the same schedule.

    The wrapper counts steps from 1 and updates masks at steps where
    ``(step - begin_step) % frequency == 0``; end_step is a multiple of the
    frequency past begin_step so the last update reaches the target exactly.
    """
    try:
        return sparsity.schedule_steps(iterations, begin, end, frequency)
    except ValueError as e:
        raise BaselineError(f"--pruning_begin/--pruning_end/--pruning_frequency: {e}") from None


# --------------------------------------------------------------------------
# tf_keras / TFMOT (imported only from here on)


def _import_tfmot():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as e:
        raise BaselineError(
            f"{e}: the TFMOT baseline needs tensorflow-model-optimization and tf_keras. Run "
            "`python -m lth_keras.baselines.tfmot --setup_venv=DIR` and use DIR/bin/python "
            "(see BUILD.md)."
        ) from None
    return tfmot, tf_keras


def _base_layer(layer):
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return layer.layer if isinstance(layer, pruning_wrapper.PruneLowMagnitude) else layer


def weight_pairs(model, snapshot_paths):
    """``[(tf_keras variable, index in the Keras 3 snapshot)]`` matched by
    ``<layer name>/<weight name>``; every tf_keras weight must match."""
    index = {}
    for i, p in enumerate(snapshot_paths):
        index.setdefault(str(p), []).append(i)
    pairs = []
    for layer in model.layers:
        base = _base_layer(layer)
        for w in base.weights:
            key = f"{base.name}/{w.name.split('/')[-1].split(':')[0]}"
            if len(index.get(key, ())) != 1:
                raise BaselineError(
                    f"tf_keras weight {key!r} matches {len(index.get(key, ()))} weights of the experiment's "
                    f"θ0 (paths {list(snapshot_paths)[:6]}...)."
                )
            pairs.append((w, index[key][0]))
    return pairs


def _make_optimizer(tfk, config, boundaries):
    import tensorflow as tf

    class Schedule(tfk.optimizers.schedules.LearningRateSchedule):
        """lth_keras.training.trainer.WarmupPiecewiseDecay in tf_keras."""

        def __init__(self, learning_rate, boundaries, warmup):
            self.learning_rate, self.boundaries, self.warmup = float(learning_rate), tuple(boundaries), int(warmup)

        def __call__(self, step):
            return schedule.warmup_piecewise(step, self.learning_rate, self.boundaries, self.warmup, tf)

        def get_config(self):
            return {"learning_rate": self.learning_rate, "boundaries": self.boundaries, "warmup": self.warmup}

    lr = config.learning_rate
    if boundaries or config.warmup_iterations:
        lr = Schedule(config.learning_rate, boundaries, config.warmup_iterations)
    return schedule.build_optimizer(tfk.optimizers, config.optimizer, lr, config.momentum, config.weight_decay)


class _Round:
    """One tfmot_gradual round: build, prune while training, strip, measure."""

    def __init__(self, spec, config, data, theta0, target, iterations, sched, seed):
        self.spec, self.config, self.data, self.theta0 = spec, config, data, theta0
        self.target, self.iterations, self.sched, self.seed = target, iterations, sched, seed

    def _model(self, tfmot, tfk):
        def wrap(name, layer):
            pm = float(self.target["pm_per_layer"].get(name, 100.0))
            if pm >= 100.0:
                return layer
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                initial_sparsity=0.0, final_sparsity=1.0 - pm / 100.0, **self.sched))

        model = arch.rebuild(self.spec, tfk, wrap)
        keys = sorted(k for k in self.theta0 if k != "paths")
        for variable, i in weight_pairs(model, self.theta0["paths"]):
            value = self.theta0[keys[i]]
            if tuple(value.shape) != tuple(variable.shape):
                raise BaselineError(f"θ0 value {self.theta0['paths'][i]!r} has shape {value.shape}, "
                                    f"tf_keras weight has {tuple(variable.shape)}.")
            variable.assign(value)
        return model

    def run(self, on_eval):
        """Trains, calling ``on_eval(row, seconds)`` per evaluation; returns (curve,
        kernels of the stripped model, trained weights, wall seconds)."""
        import tensorflow as tf

        tfmot, tfk = _import_tfmot()
        tfk.backend.clear_session()  # nothing of the previous round is kept
        tf.random.set_seed(self.seed)
        model = self._model(tfmot, tfk)
        wrappers = [l for l in model.layers if _base_layer(l) is not l]
        for w in wrappers:  # what UpdatePruningStep.on_train_begin does
            w.pruning_step.assign(0)
        config, (x_train, y_train), seed = self.config, self.data["train"], self.seed
        scale = self.iterations / config.iterations
        optimizer = _make_optimizer(tfk, config, tuple(int(round(b * scale)) for b in config.lr_boundaries))
        l2 = schedule.coupled_weight_decay(config.optimizer, config.weight_decay)
        optimizer.build(model.trainable_variables)
        batch = config.batch_size
        steps_per_epoch = int(x_train.shape[0]) // batch

        @tf.function(reduce_retracing=True)
        def train_chunk(start, n_steps):
            loss_sum, correct_sum = tf.constant(0.0), tf.constant(0.0)
            perm = schedule.epoch_permutation(tf.shape(x_train)[0], seed, start // steps_per_epoch)
            for i in tf.range(n_steps):
                iteration = start + i
                if iteration % steps_per_epoch == 0:
                    perm = schedule.epoch_permutation(tf.shape(x_train)[0], seed, iteration // steps_per_epoch)
                pos = iteration % steps_per_epoch
                idx = perm[pos * batch: pos * batch + batch]
                x, y = tf.gather(x_train, idx), tf.gather(y_train, idx)
                if config.augment:
                    x = datasets.augment_flip_crop(x, tf.stack([seed + 7919, tf.cast(iteration, tf.int32)]))
                with tf.GradientTape() as tape:
                    logits = tf.cast(model(x, training=True), tf.float32)
                    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                    loss = tf.reduce_sum(ce) / batch
                    if model.losses:
                        loss += tf.add_n(model.losses)
                grads = tape.gradient(loss, model.trainable_variables)
                if l2:  # coupled weight decay, as lth_keras.training.Trainer
                    grads = [g + l2 * v for g, v in zip(grads, model.trainable_variables)]
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                loss_sum += tf.reduce_sum(ce)
                correct_sum += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
            return loss_sum, correct_sum

        @tf.function(reduce_retracing=True)
        def eval_batch(x, y):
            logits = tf.cast(model(x, training=False), tf.float32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            return tf.reduce_sum(ce), tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))

        def train_steps(start, n):
            loss, correct = train_chunk(tf.constant(start, tf.int32), tf.constant(n, tf.int32))
            return float(loss) / (n * batch), float(correct) / (n * batch)

        def evaluate(split):
            x, y = self.data[split]
            n = int(x.shape[0])
            if n == 0:
                return float("nan"), float("nan")
            loss = correct = 0.0
            for s in range(0, n, 1000):
                l, c = eval_batch(x[s: s + 1000], y[s: s + 1000])
                loss, correct = loss + float(l), correct + float(c)
            return loss / n, correct / n

        def measure(row):
            seconds = row.pop("seconds")
            row["pm"] = 100.0 * sum(self._remaining(model)) / sum(self._sizes(model))
            on_eval(row, seconds)

        began = time.perf_counter()
        curve = schedule.train_and_measure(train_steps, evaluate, self.iterations, config.eval_every, on_eval=measure)
        wall = time.perf_counter() - began
        # What UpdatePruningStep.on_epoch_end does: the last optimizer step
        # moved pruned weights, re-apply the masks before stripping.
        for w in wrappers:
            w.pruning_obj.weight_mask_op()
        stripped = tfmot.sparsity.keras.strip_pruning(model)
        kernels = {name: stripped.get_layer(name).kernel.numpy() for name in self.spec["masked"]}
        trained, keys = dict(self.theta0), sorted(k for k in self.theta0 if k != "paths")
        for variable, i in weight_pairs(stripped, self.theta0["paths"]):
            trained[keys[i]] = variable.numpy()
        return curve, kernels, trained, wall

    def _masked_layers(self, model):
        return [(l, _base_layer(l)) for l in model.layers if _base_layer(l).name in self.spec["masked"]]

    def _remaining(self, model):
        return [int(np.prod(b.kernel.shape)) if l is b else int(np.count_nonzero(l.pruning_vars[0][1].numpy()))
                for l, b in self._masked_layers(model)]

    def _sizes(self, model):
        return [int(np.prod(b.kernel.shape)) for _, b in self._masked_layers(model)]


def _write_round(exp_dir, trial, round_, target, *, config, spec, tensors, iterations, sched, log, extra):
    """Trains one tfmot_gradual round and writes it; returns its summary.
    The caller holds the trial's lock."""
    theta0 = exp_dir.read_reset_weights(trial, "ticket", 0)
    seed = schedule.trial_seed(config.seed, trial)
    tag = f"trial {trial} {ARM} round {round_} (target P_m {target['pm']:.1f}%)"
    curve, kernels, trained, wall = _Round(spec, config, tensors, theta0, target, iterations, sched, seed).run(
        lambda row, seconds: log(schedule.progress_line(tag, row, iterations, seconds,
                                                        prefix=f"P_m {row['pm']:.1f}% | ")))
    remaining = {n: int(np.count_nonzero(k)) for n, k in kernels.items()}
    pm = 100.0 * sum(remaining.values()) / sum(k.size for k in kernels.values())
    exp_dir.write_trained_weights(trial, ARM, round_, trained)
    summary = exp_dir.write_round(
        trial, ARM, round_, mask={n: k != 0 for n, k in kernels.items()}, reset_weights=theta0, curve=curve,
        summary={
            "pm": pm, "pm_per_layer": {n: 100.0 * remaining[n] / kernels[n].size for n in kernels},
            "target_pm": float(target["pm"]), "target_pm_per_layer": target["pm_per_layer"],
            "wall_time_s": wall, "iterations": iterations, "training_length": extra["training_length"],
            "seed": seed, "pruning_schedule": dict(sched, kind="PolynomialDecay", initial_sparsity=0.0),
            "tfmot_version": extra["tfmot_version"], "overrides": extra["overrides"],
        },
    )
    exp_dir.write_summary_csv()
    log(schedule.done_line(tag, summary, wall, prefix=f"P_m {pm:.2f}% (target {target['pm']:.2f}%), "))
    if abs(pm - target["pm"]) > 0.5:
        log(f"WARNING: {tag}: P_m {pm:.2f}% is more than 0.5 points from the target.")
    return summary


def run(
    results_dir: str,
    overrides: dict | None = None,
    *,
    rounds: int | None = None,
    trials: int | None = None,
    overwrite: bool = False,
    training_length: str = "round",
    pruning_begin: float = 0.0,
    pruning_end: float = 2.0 / 3.0,
    pruning_frequency: int = 100,
    wait_for_lock: bool = False,
    log=None,
) -> list[dict]:
    """Runs the baseline into `results_dir`; returns the summaries written.

    Args:
        results_dir: the IMP experiment (holding config.json and ticket rounds).
        overrides: ExperimentConfig fields replacing config.json's values.
        rounds: only rounds < `rounds` (default: every finished ticket round).
        trials: only trials < `trials` (default: every trial with ticket rounds).
        overwrite: redo tfmot rounds that are already finished.
        training_length: ``"round"`` or ``"total"`` (see the module doc).
        pruning_begin, pruning_end: fractions of training where the
            PolynomialDecay starts and reaches the target.
        pruning_frequency: iterations between mask updates.
        wait_for_lock: when another process writes a trial (its lock,
            `lth_keras.storage.layout.ExperimentLayout.trial_lock`), wait for
            it instead of raising.
        log: a print-like function.

    Raises:
        BaselineError: bad flags, no experiment/ticket rounds, no TFMOT.
        lth_keras.storage.locks.LockHeldError: another process writes one
            of the trials and `wait_for_lock` is False (one line naming it).
    """
    log = log or (lambda message: print(message, flush=True))
    if training_length not in ("round", "total"):
        raise BaselineError(f"--training_length: must be 'round' or 'total', got {training_length!r}.")
    config = resolve_config(results_dir, overrides)
    # Arms in the registry's order, as the runner writes summary.csv.
    exp_dir = ExperimentDir(results_dir, arm_order=arms.order_key)
    targets = {t: r for t, r in ticket_targets(exp_dir).items() if trials is None or t < trials}
    jobs = [(t, r) for t in sorted(targets) for r in sorted(targets[t]) if r >= 1 and (rounds is None or r < rounds)]
    if not jobs:
        raise BaselineError(f"--results: {results_dir!r} has no finished ticket round >= 1 to match.")
    for t in sorted({t for t, _ in jobs}):
        theta0 = exp_dir.reset_weights_path(t, "ticket", 0)
        if not os.path.exists(theta0):
            raise BaselineError(f"--results: trial {t} has no ticket round 0 (its θ0 is the baseline's start).")
        files.check_npz(theta0)
    try:
        data = lth_config.load_dataset(config)
        spec = arch.architecture(config, data.input_shape, data.num_classes)
    except (lth_config.ConfigError, arch.ArchitectureError) as e:
        raise BaselineError(str(e)) from None
    except datasets.DataUnavailableError as e:
        raise BaselineError(f"--dataset: {e}") from None
    if config.batch_size > len(data.x_train):
        raise BaselineError(f"--batch_size: {config.batch_size} exceeds the training set ({len(data.x_train)}).")

    import tensorflow as tf

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    tfmot, _ = _import_tfmot()
    log(f"TFMOT {getattr(tfmot, '__version__', '?')} gradual pruning baseline for {exp_dir.root}: "
        f"{config.model} on {data.name}, {len(jobs)} round(s), training length: {training_length}")
    tensors = {split: (tf.constant(x, tf.float32), tf.constant(y, tf.int32)) for split, (x, y) in
               {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                "test": (data.x_test, data.y_test)}.items()}
    written = []
    for trial in sorted({t for t, _ in jobs}):
        # The lock every writer of the trial's rounds holds (the runner, a
        # resumed run, another baseline): one writer per trial.
        with exp_dir.trial_lock(trial, wait=wait_for_lock, on_wait=lambda who, t=trial: log(
                f"trial {t}: waiting for {who} to finish it (--wait_for_lock)")):
            for round_ in [r for t, r in jobs if t == trial]:
                if exp_dir.is_round_done(trial, ARM, round_) and not overwrite:
                    pm = exp_dir.read_round_summary(trial, ARM, round_)["pm"]
                    log(f"trial {trial} {ARM} round {round_}: done (P_m {pm:.1f}%), skipped")
                    continue
                iterations = config.iterations * (round_ + 1 if training_length == "total" else 1)
                sched = pruning_schedule_steps(iterations, pruning_begin, pruning_end, pruning_frequency)
                written.append(_write_round(
                    exp_dir, trial, round_, targets[trial][round_], config=config, spec=spec, tensors=tensors,
                    iterations=iterations, sched=sched, log=log, extra={
                        "training_length": training_length, "overrides": overrides or {},
                        "tfmot_version": getattr(tfmot, "__version__", None)}))
    exp_dir.write_summary_csv()
    return written
