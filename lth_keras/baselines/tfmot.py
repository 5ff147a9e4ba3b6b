r"""TFMOT gradual magnitude pruning, written into an IMP experiment as the arm
``tfmot_gradual``.

    # once: a venv that sees the installed TensorFlow and adds TFMOT + tf_keras
    python -m lth_keras.baselines.tfmot --setup_venv=/tmp/lth_tfmot_venv
    # then, for an experiment made by `python -m lth_keras.main`:
    /tmp/lth_tfmot_venv/bin/python -m lth_keras.baselines.tfmot --results=runs/lenet

For every trial and every ticket round r >= 1 of the IMP experiment, the same
architecture is built in tf_keras, every layer IMP prunes is wrapped in
``tfmot.sparsity.keras.prune_low_magnitude`` with a ``PolynomialDecay`` to
that layer's P_m at round r (so the overall P_m matches the ticket's), and it
is trained from the trial's θ0 (the ticket's round-0 starting weights) with
the experiment's optimizer, batch size, data order and evaluation schedule.
Sparsity rises from 0 at ``--pruning_begin`` to the target at
``--pruning_end`` (fractions of training), with a mask update every
``--pruning_frequency`` iterations; the rest of training fine-tunes the final
mask. Training lasts one IMP round (``--iterations``) by default, or with
``--training_length=total`` as long as the IMP run that produced round r
((r + 1) x iterations; learning-rate boundaries are stretched to match).

Each round is written with `lth_keras.results.ExperimentDir.write_round`
(mask.npz, reset_weights.npz = θ0, trained_weights.npz, curve.csv,
summary.json with early-stop metrics) and summary.csv is rewritten, so the
figures pick the arm up. P_m in summary.json is counted from the final,
stripped weights (nonzero entries of the pruned kernels); ``target_pm`` is
the ticket's.

Flags: every `lth_keras.main` flag is accepted; the experiment-defining ones
(model, dataset, hyperparameters) default to the experiment's config.json and
override it when given. ``--rounds`` / ``--trials`` limit which rounds and
trials are run (default: all the ticket has), ``--overwrite`` redoes finished
tfmot rounds (they are skipped otherwise). config.json is never rewritten.

tensorflow-model-optimization only works with tf_keras and switches
``tf.keras`` to it for the whole process, so this runs in its own process
(and, because TFMOT pins absl-py 1.x, preferably its own venv, see
`lth_keras.baselines.venv`). The Keras-3 model is only inspected (to copy
its architecture, `lth_keras.baselines.architecture`) before TFMOT is
imported. Data order, learning-rate schedule, optimizer, evaluation points
and log lines are the runner's (`lth_keras.schedule`); this module keeps
what needs tf_keras.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras import cli, datasets
from lth_keras.storage import results
from lth_keras.training import schedule
from lth_keras.pruning import sparsity
from lth_keras.experiment import config as lth_config
from lth_keras.baselines import architecture as arch
from lth_keras.baselines.venv import VenvError, setup_venv, venv_python, venv_requirements  # noqa: F401

__all__ = ["ARM", "BaselineError", "run", "setup_venv", "venv_python", "venv_requirements"]

ARM = "tfmot_gradual"
# A private FlagValues: every lth_keras.main flag, plus the baseline's own
# (other command-line modules use some of these names on the global FLAGS).
FLAGS = flags.FlagValues()
cli.define_flags(flag_values=FLAGS)
flags.DEFINE_string("results", None, "The IMP experiment directory (<output_dir>/<experiment>, holding config.json).",
                    flag_values=FLAGS)
flags.DEFINE_enum(
    "training_length", "round", ["round", "total"],
    "round: train as long as one IMP round (--iterations); total: as long as the IMP run "
    "that reached the round ((round + 1) x iterations).",
    flag_values=FLAGS,
)
flags.DEFINE_float("pruning_begin", 0.0, "Fraction of training after which pruning starts.", flag_values=FLAGS)
flags.DEFINE_float("pruning_end", 2.0 / 3.0, "Fraction of training at which the target sparsity is reached.",
                   flag_values=FLAGS)
flags.DEFINE_integer("pruning_frequency", 100, "Iterations between mask updates (shortened if training is short).",
                     flag_values=FLAGS)
flags.DEFINE_string(
    "setup_venv", None,
    "Create (or reuse) a venv at this path that sees the installed TensorFlow and adds "
    "tf_keras, tensorflow-model-optimization and absl-py 1.x, print its python, and exit.",
    flag_values=FLAGS,
)


def parse_flags(argv):
    """absl flags parser: this module's flags, then absl's own (--verbosity)."""
    return cli.parse_command_line(argv, FLAGS, __doc__)


class BaselineError(ValueError):
    """A bad flag, a missing experiment or a missing TFMOT install (one line)."""


# --------------------------------------------------------------------------
# Configuration and targets


def resolve_config(results_dir: str, overrides: dict | None = None) -> lth_config.ExperimentConfig:
    """The experiment's config.json, with `overrides` applied, resolved."""
    try:
        return cli.saved_config(results_dir, overrides, error=BaselineError)
    except lth_config.ConfigError as e:
        raise BaselineError(str(e)) from None


def ticket_targets(exp_dir: results.ExperimentDir) -> dict[int, dict[int, dict]]:
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
        log: a print-like function.

    Raises:
        BaselineError: bad flags, no experiment/ticket rounds, no TFMOT.
    """
    log = log or (lambda message: print(message, flush=True))
    if training_length not in ("round", "total"):
        raise BaselineError(f"--training_length: must be 'round' or 'total', got {training_length!r}.")
    config = resolve_config(results_dir, overrides)
    exp_dir = results.ExperimentDir(results_dir)
    targets = {t: r for t, r in ticket_targets(exp_dir).items() if trials is None or t < trials}
    jobs = [(t, r) for t in sorted(targets) for r in sorted(targets[t]) if r >= 1 and (rounds is None or r < rounds)]
    if not jobs:
        raise BaselineError(f"--results: {results_dir!r} has no finished ticket round >= 1 to match.")
    for t in sorted({t for t, _ in jobs}):
        if not os.path.exists(os.path.join(exp_dir.round_dir(t, "ticket", 0), "reset_weights.npz")):
            raise BaselineError(f"--results: trial {t} has no ticket round 0 (its θ0 is the baseline's start).")
        results.check_npz(os.path.join(exp_dir.round_dir(t, "ticket", 0), "reset_weights.npz"))
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
    for trial, round_ in jobs:
        if exp_dir.is_round_done(trial, ARM, round_) and not overwrite:
            log(f"trial {trial} {ARM} round {round_}: done (P_m {exp_dir.read_round_summary(trial, ARM, round_)['pm']:.1f}%), skipped")
            continue
        target, theta0 = targets[trial][round_], exp_dir.read_reset_weights(trial, "ticket", 0)
        seed = schedule.trial_seed(config.seed, trial)
        iterations = config.iterations * (round_ + 1 if training_length == "total" else 1)
        sched = pruning_schedule_steps(iterations, pruning_begin, pruning_end, pruning_frequency)
        tag = f"trial {trial} {ARM} round {round_} (target P_m {target['pm']:.1f}%)"
        curve, kernels, trained, wall = _Round(spec, config, tensors, theta0, target, iterations, sched, seed).run(
            lambda row, seconds: log(schedule.progress_line(tag, row, iterations, seconds,
                                                            prefix=f"P_m {row['pm']:.1f}% | ")))
        remaining = {n: int(np.count_nonzero(k)) for n, k in kernels.items()}
        pm = 100.0 * sum(remaining.values()) / sum(k.size for k in kernels.values())
        results.atomic_write_npz(os.path.join(exp_dir.round_dir(trial, ARM, round_), "trained_weights.npz"), trained)
        summary = exp_dir.write_round(
            trial, ARM, round_, mask={n: k != 0 for n, k in kernels.items()}, reset_weights=theta0, curve=curve,
            summary={
                "pm": pm, "pm_per_layer": {n: 100.0 * remaining[n] / kernels[n].size for n in kernels},
                "target_pm": float(target["pm"]), "target_pm_per_layer": target["pm_per_layer"],
                "wall_time_s": wall, "iterations": iterations, "training_length": training_length, "seed": seed,
                "pruning_schedule": dict(sched, kind="PolynomialDecay", initial_sparsity=0.0),
                "tfmot_version": getattr(tfmot, "__version__", None), "overrides": overrides or {},
            },
        )
        exp_dir.write_summary_csv()
        written.append(summary)
        log(schedule.done_line(tag, summary, wall, prefix=f"P_m {pm:.2f}% (target {target['pm']:.2f}%), "))
        if abs(pm - target["pm"]) > 0.5:
            log(f"WARNING: {tag}: P_m {pm:.2f}% is more than 0.5 points from the target.")
    exp_dir.write_summary_csv()
    return written


# --------------------------------------------------------------------------
# Command line


def _overrides_from_flags() -> dict:
    values = {}
    for f in dataclasses.fields(lth_config.ExperimentConfig):
        overridable = f.metadata.get("defining", True) is not False or f.name in ("data_dir", "tfds_data_dir", "deterministic")
        if overridable and FLAGS[f.name].present:
            value = FLAGS[f.name].value
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if FLAGS.setup_venv:
            print(setup_venv(FLAGS.setup_venv))
            return
        if not FLAGS.results:
            raise BaselineError("--results: required (the IMP experiment directory).")
        run(
            FLAGS.results, _overrides_from_flags(),
            rounds=FLAGS.rounds if FLAGS["rounds"].present else None,
            trials=FLAGS.trials if FLAGS["trials"].present else None,
            overwrite=FLAGS.overwrite, training_length=FLAGS.training_length, pruning_begin=FLAGS.pruning_begin,
            pruning_end=FLAGS.pruning_end, pruning_frequency=FLAGS.pruning_frequency,
        )
    except (BaselineError, VenvError, results.ResultsError) as e:
        sys.exit(f"error: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: --setup_venv: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
