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
`setup_venv`). The Keras-3 model is only inspected (to copy its architecture
and θ0) before TFMOT is imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from lth_keras import datasets, experiment, results
from lth_keras import main as _lth_main

__all__ = ["ARM", "BaselineError", "run", "setup_venv", "venv_python", "venv_requirements"]

ARM = "tfmot_gradual"
# A private FlagValues: every lth_keras.main flag, plus the baseline's own
# (other command-line modules use some of these names on the global FLAGS).
FLAGS = flags.FlagValues()
_lth_main.define_flags(flag_values=FLAGS)
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
    from lth_keras import main as lth_main

    return lth_main.parse_command_line(argv, FLAGS, __doc__)


class BaselineError(ValueError):
    """A bad flag, a missing experiment or a missing TFMOT install (one line)."""


# --------------------------------------------------------------------------
# The venv


def venv_python(path: str) -> str:
    """The interpreter of the venv at `path`."""
    return os.path.join(os.path.abspath(path), "bin", "python")


def venv_requirements() -> list[str]:
    """What the TFMOT venv installs: tf_keras matching the installed TensorFlow."""
    try:
        from importlib.metadata import version

        tf_version = version("tensorflow")
    except Exception:  # tensorflow-cpu, nightlies: ask TensorFlow itself
        import tensorflow as tf

        tf_version = tf.__version__
    major_minor = ".".join(tf_version.split(".")[:2])
    return [f"tf_keras=={major_minor}.*", "tensorflow-model-optimization>=0.8", "absl-py~=1.2"]


_READY_FILE = "lth_keras_tfmot_ready.json"


def setup_venv(path: str, *, log=print) -> str:
    """Creates (once) a venv for the baseline and returns its python.

    ``python -m venv --system-site-packages`` so the installed TensorFlow,
    numpy and lth_keras are reused, then pip installs `venv_requirements`
    (tf_keras, tensorflow-model-optimization, absl-py~=1.2, ~3 MB) into it.
    A venv that already has them is reused; concurrent callers wait on a
    lock file.
    """
    import fcntl

    path = os.path.abspath(path)
    wanted = {"requirements": venv_requirements(), "python": sys.version.split()[0]}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = os.path.join(path, _READY_FILE)
        try:
            with open(ready) as f:
                if json.load(f) == wanted and os.path.exists(venv_python(path)):
                    return venv_python(path)
        except (OSError, ValueError):
            pass
        if os.path.exists(path) and os.listdir(path):
            if not os.path.exists(os.path.join(path, "pyvenv.cfg")):
                raise BaselineError(f"--setup_venv: {path!r} exists and is not a venv; not touching it.")
            shutil.rmtree(path)  # an unfinished or outdated one
        log(f"Creating the TFMOT venv {path} (installs {' '.join(wanted['requirements'])})")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", path], check=True)
        subprocess.run(
            [venv_python(path), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *wanted["requirements"]],
            check=True,
        )
        with open(ready, "w") as f:
            json.dump(wanted, f)
    return venv_python(path)


# --------------------------------------------------------------------------
# Configuration and targets


_SEED_STRIDE = 1000  # as lth_keras.experiment: trial t uses seed + 1000 t


def _overridable_fields():
    fields = {}
    for f in dataclasses.fields(experiment.ExperimentConfig):
        if f.metadata.get("defining", True) is not False or f.name in ("data_dir", "tfds_data_dir", "deterministic"):
            fields[f.name] = f
    return fields


def resolve_config(results_dir: str, overrides: dict | None = None) -> experiment.ExperimentConfig:
    """The experiment's config.json, with `overrides` applied, resolved."""
    exp_dir = results.ExperimentDir(results_dir)
    if not os.path.isdir(results_dir):
        raise BaselineError(f"--results: {results_dir!r} does not exist.")
    if not os.path.isfile(exp_dir.config_path):
        raise BaselineError(f"--results: {results_dir!r} is not an lth_keras experiment (no config.json).")
    saved = results.read_json(exp_dir.config_path)
    names = {f.name for f in dataclasses.fields(experiment.ExperimentConfig)}
    values = {k: v for k, v in saved.items() if k in names}
    values.update(overrides or {})
    for key in ("lr_boundaries", "global_exclude", "controls", "synthetic_sizes"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    root = os.path.abspath(results_dir)
    values["output_dir"], values["experiment"] = os.path.dirname(root), os.path.basename(root)
    try:
        return experiment.ExperimentConfig(**values).resolve()
    except experiment.ConfigError as e:
        raise BaselineError(str(e)) from None


def _load_data(config):
    kwargs = dict(data_dir=config.data_dir, seed=config.seed, validation_size=config.validation_size,
                  tfds_data_dir=config.tfds_data_dir)
    if config.dataset == "synthetic" and config.synthetic_sizes:
        kwargs["synthetic_sizes"] = config.synthetic_sizes
    try:
        return datasets.load(config.dataset, **kwargs)
    except (ValueError, datasets.DataUnavailableError) as e:
        raise BaselineError(f"--dataset: {e}") from None


def ticket_targets(exp_dir: results.ExperimentDir) -> dict[int, dict[int, dict]]:
    """``{trial: {round: ticket summary}}`` for every finished ticket round."""
    targets: dict[int, dict[int, dict]] = {}
    for s in exp_dir.summaries():
        if s.get("arm") == "ticket":
            targets.setdefault(int(s["trial"]), {})[int(s["round"])] = s
    return targets


def pruning_schedule_steps(iterations: int, begin: float, end: float, frequency: int) -> dict:
    """begin_step, end_step and frequency of the PolynomialDecay.

    The wrapper counts steps from 1 and updates masks at steps where
    ``(step - begin_step) % frequency == 0``; end_step is a multiple of the
    frequency past begin_step so the last update reaches the target exactly.
    """
    if not 0.0 <= begin < end <= 1.0:
        raise BaselineError(f"--pruning_begin/--pruning_end: need 0 <= begin < end <= 1, got {begin}, {end}.")
    if frequency < 1:
        raise BaselineError(f"--pruning_frequency: must be positive, got {frequency}.")
    begin_step = int(iterations * begin)
    end = max(begin_step + 1, int(round(iterations * end)))
    frequency = max(1, min(frequency, end - begin_step))
    end_step = begin_step + ((end - begin_step) // frequency) * frequency
    return {"begin_step": begin_step, "end_step": end_step, "frequency": frequency}


# --------------------------------------------------------------------------
# The architecture, read from the Keras 3 model before TFMOT is imported.

_LAYER_KEYS = {
    "Dense": ("units", "activation", "use_bias"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
               "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling2D": ("pool_size", "strides", "padding", "data_format"),
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "Flatten": ("data_format",),
    "Dropout": ("rate", "noise_shape", "seed"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "Add": (),
    "Concatenate": ("axis",),
}


def architecture(config, input_shape, num_classes) -> dict:
    """The Keras 3 model of `config` as plain data, plus its masked layers.

    Returns ``{"inputs": [...], "layers": [...], "outputs": [...],
    "masked": [names]}``; each layer holds its class (a Keras class both
    Keras 3 and tf_keras have), the constructor arguments in `_LAYER_KEYS`,
    and its call arguments with tensors replaced by ``{"tensor": id}``.
    """
    import keras

    from lth_keras import layers as lth_layers
    from lth_keras import models

    model = models.build(config.model, input_shape, num_classes, dropout=config.dropout,
                         seed=config.seed)
    ids: dict[int, str] = {}

    def tensor_id(t):
        return ids.setdefault(id(t), f"t{len(ids)}")

    def encode(value):
        if isinstance(value, keras.KerasTensor):
            return {"tensor": tensor_id(value)}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            return {"dict": {k: encode(v) for k, v in value.items()}}
        return {"value": value}

    spec = {"inputs": [], "layers": [], "outputs": [], "masked": []}
    for t in model.inputs:
        spec["inputs"].append({"tensor": tensor_id(t), "shape": list(t.shape[1:]), "name": t.name})
    masked_names = {}
    for mw in lth_layers.masked_weights(model):
        masked_names[id(mw.layer)] = mw.name
        if mw.name != mw.layer.name:
            raise BaselineError(f"layer {mw.layer.name!r} masks several weights; TFMOT prunes one kernel per layer.")
    for op in model.operations:
        if isinstance(op, keras.layers.InputLayer):
            continue
        nodes = [n for n in op._inbound_nodes if all(id(t) in ids for t in n.input_tensors)]
        if len(nodes) != 1:
            raise BaselineError(f"layer {op.name!r} is called {len(nodes)} times; shared layers are not supported.")
        kind = next((k for k in _LAYER_KEYS if isinstance(op, getattr(keras.layers, k))), None)
        if kind is None:
            raise BaselineError(f"layer {op.name!r} ({type(op).__name__}) has no tf_keras translation.")
        config_ = op.get_config()
        params = {k: config_[k] for k in _LAYER_KEYS[kind] if k in config_}
        for key in ("activation",):
            if key in params and not isinstance(params[key], str):
                params[key] = keras.activations.serialize(op.activation)
                if not isinstance(params[key], str):
                    raise BaselineError(f"layer {op.name!r}: activation {params[key]!r} is not a built-in.")
        node = nodes[0]
        spec["layers"].append({
            "name": op.name,
            "class": kind,
            "params": params,
            "args": encode(list(node.arguments.args)),
            "kwargs": encode(dict(node.arguments.kwargs)),
            "outputs": [tensor_id(t) for t in node.output_tensors],
            "masked": id(op) in masked_names,
        })
        if id(op) in masked_names:
            spec["masked"].append(op.name)
    spec["outputs"] = [tensor_id(t) for t in model.outputs]
    return spec


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


def _decode(value, tensors):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if "tensor" in value:
        return tensors[value["tensor"]]
    if "dict" in value:
        return {k: _decode(v, tensors) for k, v in value["dict"].items()}
    return value["value"]


def build_tf_keras(spec, tfk, wrap=None):
    """The tf_keras twin of `architecture`'s spec; ``wrap(name, layer)`` may
    replace a masked layer (e.g. by a pruning wrapper)."""
    tensors = {}
    inputs = []
    for inp in spec["inputs"]:
        tensors[inp["tensor"]] = tfk.Input(shape=tuple(inp["shape"]), name=inp["name"])
        inputs.append(tensors[inp["tensor"]])
    for layer in spec["layers"]:
        obj = getattr(tfk.layers, layer["class"])(name=layer["name"], **layer["params"])
        if layer["masked"] and wrap is not None:
            obj = wrap(layer["name"], obj)
        out = obj(*_decode(layer["args"], tensors), **_decode(layer["kwargs"], tensors))
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        for name, t in zip(layer["outputs"], outs):
            tensors[name] = t
    outputs = [tensors[t] for t in spec["outputs"]]
    return tfk.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0])


def _is_wrapper(layer):
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return isinstance(layer, pruning_wrapper.PruneLowMagnitude)


def _base_layer(layer):
    return layer.layer if _is_wrapper(layer) else layer


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
        """lth_keras.training.WarmupPiecewiseDecay in tf_keras."""

        def __init__(self, learning_rate, boundaries, warmup):
            self.learning_rate, self.boundaries, self.warmup = float(learning_rate), tuple(boundaries), int(warmup)

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            lr = tf.constant(self.learning_rate, tf.float32)
            for b in self.boundaries:
                lr = tf.where(step >= b, lr / 10.0, lr)
            if self.warmup:
                lr = lr * tf.minimum(1.0, (step + 1.0) / self.warmup)
            return lr

        def get_config(self):
            return {"learning_rate": self.learning_rate, "boundaries": self.boundaries, "warmup": self.warmup}

    lr = config.learning_rate
    if boundaries or config.warmup_iterations:
        lr = Schedule(config.learning_rate, boundaries, config.warmup_iterations)
    wd = config.weight_decay or None
    if config.optimizer == "adam":
        return tfk.optimizers.Adam(lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return tfk.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return tfk.optimizers.SGD(lr, momentum=config.momentum or 0.0, weight_decay=wd)


class _Round:
    """One tfmot_gradual round: build, prune while training, strip, measure."""

    def __init__(self, spec, config, data_tensors, theta0, target, iterations, schedule, seed, log, tag):
        self.spec, self.config, self.data, self.theta0 = spec, config, data_tensors, theta0
        self.target, self.iterations, self.schedule, self.seed = target, iterations, schedule, seed
        self.log, self.tag = log, tag

    def run(self):
        import tensorflow as tf

        tfmot, tfk = _import_tfmot()
        tfk.backend.clear_session()  # nothing of the previous round is kept
        tf.random.set_seed(self.seed)
        targets = self.target["pm_per_layer"]
        sched = self.schedule

        def wrap(name, layer):
            pm = float(targets.get(name, 100.0))
            if pm >= 100.0:
                return layer
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer,
                pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                    initial_sparsity=0.0, final_sparsity=1.0 - pm / 100.0,
                    begin_step=sched["begin_step"], end_step=sched["end_step"], frequency=sched["frequency"],
                ),
            )

        model = build_tf_keras(self.spec, tfk, wrap)
        pairs = weight_pairs(model, self.theta0["paths"])
        keys = sorted(k for k in self.theta0 if k != "paths")
        for variable, i in pairs:
            value = self.theta0[keys[i]]
            if tuple(value.shape) != tuple(variable.shape):
                raise BaselineError(f"θ0 value {self.theta0['paths'][i]!r} has shape {value.shape}, "
                                    f"tf_keras weight has {tuple(variable.shape)}.")
            variable.assign(value)
        wrappers = [l for l in model.layers if _is_wrapper(l)]
        for w in wrappers:  # what UpdatePruningStep.on_train_begin does
            w.pruning_step.assign(0)

        config = self.config
        scale = self.iterations / config.iterations
        boundaries = tuple(int(round(b * scale)) for b in config.lr_boundaries)
        optimizer = _make_optimizer(tfk, config, boundaries)
        optimizer.build(model.trainable_variables)

        x_train, y_train = self.data["train"]
        batch = config.batch_size
        steps_per_epoch = int(x_train.shape[0]) // batch
        seed = self.seed
        augment = bool(config.augment)

        def permutation(epoch):
            keys_ = tf.random.stateless_uniform([tf.shape(x_train)[0]], seed=tf.stack([seed, tf.cast(epoch, tf.int32)]))
            return tf.argsort(keys_)

        @tf.function(reduce_retracing=True)
        def train_chunk(start, n_steps):
            loss_sum, correct_sum = tf.constant(0.0), tf.constant(0.0)
            perm = permutation(start // steps_per_epoch)
            for i in tf.range(n_steps):
                iteration = start + i
                if iteration % steps_per_epoch == 0:
                    perm = permutation(iteration // steps_per_epoch)
                pos = iteration % steps_per_epoch
                idx = perm[pos * batch: pos * batch + batch]
                x, y = tf.gather(x_train, idx), tf.gather(y_train, idx)
                if augment:
                    x = datasets.augment_flip_crop(x, tf.stack([seed + 7919, tf.cast(iteration, tf.int32)]))
                with tf.GradientTape() as tape:
                    logits = tf.cast(model(x, training=True), tf.float32)
                    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                    loss = tf.reduce_sum(ce) / batch
                    if model.losses:
                        loss += tf.add_n(model.losses)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                loss_sum += tf.reduce_sum(ce)
                correct_sum += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
            return loss_sum, correct_sum

        @tf.function(reduce_retracing=True)
        def eval_batch(x, y):
            logits = tf.cast(model(x, training=False), tf.float32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
            return tf.reduce_sum(ce), tf.reduce_sum(correct)

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

        def current_pm():
            remaining = total = 0
            for layer in model.layers:
                base = _base_layer(layer)
                if base.name not in self.spec["masked"]:
                    continue
                if layer is base:
                    remaining += int(np.prod(base.kernel.shape))
                else:
                    remaining += int(np.count_nonzero(layer.pruning_vars[0][1].numpy()))
                total += int(np.prod(base.kernel.shape))
            return 100.0 * remaining / total

        every = config.eval_every
        points = sorted(set(range(every, self.iterations + 1, every)) | {self.iterations})
        curve, iteration = [], 0
        began = time.perf_counter()
        sums = [0.0, 0.0, 0]
        for point in points:
            l, c = train_chunk(tf.constant(iteration, tf.int32), tf.constant(point - iteration, tf.int32))
            sums = [sums[0] + float(l), sums[1] + float(c), sums[2] + (point - iteration) * batch]
            iteration = point
            val_loss, val_acc = evaluate("val")
            _, test_acc = evaluate("test")
            row = {
                "iteration": point,
                "train_loss": sums[0] / sums[2],
                "train_accuracy": sums[1] / sums[2],
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
                "pm": current_pm(),
            }
            sums = [0.0, 0.0, 0]
            curve.append(row)
            self.log(
                f"{self.tag} it {point}/{self.iterations}: P_m {row['pm']:.1f}% | train loss "
                f"{row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | val loss {val_loss:.4f} "
                f"acc {val_acc:.4f} | test acc {test_acc:.4f} [{time.perf_counter() - began:.1f}s]"
            )
        wall = time.perf_counter() - began

        # What UpdatePruningStep.on_epoch_end does: the last optimizer step
        # moved pruned weights, re-apply the masks before stripping.
        for w in wrappers:
            w.pruning_obj.weight_mask_op()
        stripped = tfmot.sparsity.keras.strip_pruning(model)
        kernels = {name: stripped.get_layer(name).kernel.numpy() for name in self.spec["masked"]}
        trained = dict(self.theta0)
        for variable, i in weight_pairs(stripped, self.theta0["paths"]):
            trained[keys[i]] = variable.numpy()
        return curve, kernels, trained, wall


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
    targets = ticket_targets(exp_dir)
    targets = {t: r for t, r in targets.items() if trials is None or t < trials}
    jobs = [(t, r) for t in sorted(targets) for r in sorted(targets[t])
            if r >= 1 and (rounds is None or r < rounds)]
    if not jobs:
        raise BaselineError(f"--results: {results_dir!r} has no finished ticket round >= 1 to match.")
    for t in sorted({t for t, _ in jobs}):
        if not os.path.exists(os.path.join(exp_dir.round_dir(t, "ticket", 0), "reset_weights.npz")):
            raise BaselineError(f"--results: trial {t} has no ticket round 0 (its θ0 is the baseline's start).")
        results.check_npz(os.path.join(exp_dir.round_dir(t, "ticket", 0), "reset_weights.npz"))
    data = _load_data(config)
    spec = architecture(config, data.input_shape, data.num_classes)

    import tensorflow as tf

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    tfmot, _ = _import_tfmot()
    log(f"TFMOT {getattr(tfmot, '__version__', '?')} gradual pruning baseline for {exp_dir.root}: "
        f"{config.model} on {data.name}, {len(jobs)} round(s), training length: {training_length}")
    data_tensors = {
        "train": (tf.constant(data.x_train, tf.float32), tf.constant(data.y_train, tf.int32)),
        "val": (tf.constant(data.x_val, tf.float32), tf.constant(data.y_val, tf.int32)),
        "test": (tf.constant(data.x_test, tf.float32), tf.constant(data.y_test, tf.int32)),
    }
    if config.batch_size > len(data.x_train):
        raise BaselineError(f"--batch_size: {config.batch_size} exceeds the training set ({len(data.x_train)}).")
    written = []
    for trial, round_ in jobs:
        if exp_dir.is_round_done(trial, ARM, round_) and not overwrite:
            s = exp_dir.read_round_summary(trial, ARM, round_)
            log(f"trial {trial} {ARM} round {round_}: done (P_m {s['pm']:.1f}%), skipped")
            continue
        target = targets[trial][round_]
        theta0 = exp_dir.read_reset_weights(trial, "ticket", 0)
        seed = config.seed + trial * _SEED_STRIDE
        iterations = config.iterations * (round_ + 1 if training_length == "total" else 1)
        schedule = pruning_schedule_steps(iterations, pruning_begin, pruning_end, pruning_frequency)
        tag = f"trial {trial} {ARM} round {round_} (target P_m {target['pm']:.1f}%)"
        curve, kernels, trained, wall = _Round(
            spec, config, data_tensors, theta0, target, iterations, schedule, seed, log, tag
        ).run()
        remaining = {n: int(np.count_nonzero(k)) for n, k in kernels.items()}
        sizes = {n: int(k.size) for n, k in kernels.items()}
        pm = 100.0 * sum(remaining.values()) / sum(sizes.values())
        pm_per_layer = {n: 100.0 * remaining[n] / sizes[n] for n in kernels}
        results.atomic_write_npz(os.path.join(exp_dir.round_dir(trial, ARM, round_), "trained_weights.npz"), trained)
        summary = exp_dir.write_round(
            trial, ARM, round_,
            mask={n: k != 0 for n, k in kernels.items()},
            reset_weights=theta0,
            curve=curve,
            summary={
                "pm": pm,
                "pm_per_layer": pm_per_layer,
                "target_pm": float(target["pm"]),
                "target_pm_per_layer": target["pm_per_layer"],
                "wall_time_s": wall,
                "iterations": iterations,
                "training_length": training_length,
                "seed": seed,
                "pruning_schedule": dict(schedule, kind="PolynomialDecay", initial_sparsity=0.0),
                "tfmot_version": getattr(tfmot, "__version__", None),
                "overrides": overrides or {},
            },
        )
        exp_dir.write_summary_csv()
        written.append(summary)
        log(
            f"== {tag} done: P_m {pm:.2f}% (target {target['pm']:.2f}%), early stop at iteration "
            f"{summary['early_stop_iteration']} (test acc {summary['early_stop_test_accuracy']:.4f}), "
            f"final test acc {summary['final_test_accuracy']:.4f}, {wall:.1f}s"
        )
        if abs(pm - target["pm"]) > 0.5:
            log(f"WARNING: {tag}: P_m {pm:.2f}% is more than 0.5 points from the target.")
    exp_dir.write_summary_csv()
    return written


# --------------------------------------------------------------------------
# Command line


def _overrides_from_flags() -> dict:
    values = {}
    for name in _overridable_fields():
        if FLAGS[name].present:
            value = FLAGS[name].value
            values[name] = tuple(value) if isinstance(value, list) else value
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
            FLAGS.results,
            _overrides_from_flags(),
            rounds=FLAGS.rounds if FLAGS["rounds"].present else None,
            trials=FLAGS.trials if FLAGS["trials"].present else None,
            overwrite=FLAGS.overwrite,
            training_length=FLAGS.training_length,
            pruning_begin=FLAGS.pruning_begin,
            pruning_end=FLAGS.pruning_end,
            pruning_frequency=FLAGS.pruning_frequency,
        )
    except (BaselineError, results.ResultsError) as e:
        sys.exit(f"error: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: --setup_venv: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
