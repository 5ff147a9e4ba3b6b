"""The paper's experiment: trials x arms x rounds of IMP, saved and resumable.

`ExperimentConfig` is the typed hyperparameter set; `python -m
lth_keras.main` generates its flags from it. `train_and_evaluate` runs the
experiment into ``<output_dir>/<experiment>/trial_<t>/<arm>/round_<r>/``
(see `lth_keras.results`). A round whose ``summary.json`` exists is read
back, never retrained; a round that was interrupted restarts from its last
checkpoint.

Arms:
    ticket: iterative magnitude pruning with reset to θ0, or to the weights
        at `rewind_iteration` (late resetting). With `one_shot`, each round's
        mask is pruned directly from the dense-trained weights instead.
    reinit: the ticket's mask with a fresh random initialisation.
    random_mask: a random mask with the ticket's per-layer counts, trained
        from the ticket's reset point.

Example:

```python
from lth_keras import experiment

config = experiment.ExperimentConfig(model="lenet", dataset="fashion_mnist",
                                     iterations=2000, rounds=5,
                                     controls=("reinit",))
exp_dir = experiment.train_and_evaluate(config, "runs")
import pandas; pandas.read_csv(exp_dir.summary_csv_path)
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import typing

import numpy as np

from lth_keras import datasets, pruning, results

__all__ = ["ExperimentConfig", "ConfigError", "CONTROLS", "train_and_evaluate"]

CONTROLS = ("reinit", "random_mask")
_SEED_STRIDE = 1000  # trial t uses seed + t * _SEED_STRIDE


class ConfigError(ValueError):
    """A bad flag value; `flag` names it."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"--{flag}: {message}")
        self.flag = flag


def _field(default, help_text, *, defining=True):
    """A config field. `defining`: True, False, or ``"if_set"`` (defining only
    when it differs from its default, so experiments saved before the field
    existed still resume)."""
    return dataclasses.field(default=default, metadata={"help": help_text, "defining": defining})


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Every hyperparameter of an experiment; each field is a flag.

    Fields marked ``defining`` identify the experiment: they are saved in
    ``config.json`` and a rerun that changes one is refused (unless
    `overwrite`). The others (rounds, trials, controls, paths, ...) may change
    between runs: raising ``--rounds`` or ``--trials`` extends an experiment.
    None means "the model's default from the paper" (`lth_keras.models`).
    """

    model: str = _field("lenet", "Model: lenet, conv2, conv4, conv6, vgg19, resnet18, or your own as module:callable (see lth_keras.models.build_custom).")
    dataset: typing.Optional[str] = _field(None, "Dataset: mnist, fashion_mnist, cifar10, synthetic (default: the model's).")
    data_dir: typing.Optional[str] = _field(None, "Directory with local IDX files or CIFAR10 binary batches.", defining=False)
    tfds_data_dir: typing.Optional[str] = _field(None, "tensorflow-datasets data dir.", defining=False)
    validation_size: int = _field(5000, "Examples held out of the training set for validation.")
    dropout: float = _field(0.0, "Dropout rate after hidden dense layers (the paper's variant: 0.5).")
    iterations: typing.Optional[int] = _field(None, "Training iterations per round.")
    batch_size: typing.Optional[int] = _field(None, "Global batch size.")
    optimizer: typing.Optional[str] = _field(None, "adam, adamw or sgd.")
    learning_rate: typing.Optional[float] = _field(None, "Learning rate (after warmup).")
    momentum: typing.Optional[float] = _field(None, "SGD momentum.")
    weight_decay: typing.Optional[float] = _field(None, "Decoupled weight decay.")
    lr_boundaries: typing.Optional[tuple] = _field(None, "Iterations at which the learning rate is divided by 10.")
    warmup_iterations: typing.Optional[int] = _field(None, "Linear learning-rate warmup iterations.")
    augment: typing.Optional[bool] = _field(None, "Random flip + 4-pixel pad/crop (CIFAR nets).")
    eval_every: int = _field(100, "Evaluate validation/test accuracy every this many iterations.")
    pruning: typing.Optional[str] = _field(None, "layerwise or global.")
    prune_rate_dense: typing.Optional[float] = _field(None, "Fraction of alive dense weights pruned per round.")
    prune_rate_conv: typing.Optional[float] = _field(None, "Fraction of alive conv weights pruned per round (the global rate for global pruning).")
    prune_rate_output: typing.Optional[float] = _field(None, "Fraction of alive output-layer weights pruned per round.")
    global_exclude: typing.Optional[tuple] = _field(None, "Layer-name patterns never pruned by global pruning.")
    rewind_iteration: int = _field(0, "Reset to the weights at this iteration instead of θ0 (late resetting).")
    one_shot: bool = _field(False, "Prune each round's sparsity directly from the dense-trained weights.")
    seed: int = _field(0, "Base seed; trial t uses seed + 1000 * t.")
    rounds: int = _field(3, "Rounds per trial, including the dense round 0.", defining=False)
    trials: int = _field(1, "Trials (distinct seeds).", defining=False)
    controls: tuple = _field((), "Comma-separated controls to run at every round: reinit, random_mask.", defining=False)
    output_dir: str = _field("runs", "Where experiments are written.", defining=False)
    experiment: typing.Optional[str] = _field(None, "Experiment name (default: the model name).", defining=False)
    overwrite: bool = _field(False, "Replace an existing experiment whose defining flags differ.", defining=False)
    checkpoint_every: int = _field(1000, "Checkpoint a round every this many iterations (0: never).", defining=False)
    deterministic: bool = _field(False, "Enable TensorFlow's deterministic ops (bitwise-reproducible resumes).", defining=False)
    tensorboard: bool = _field(True, "Write TensorBoard scalars per round.", defining=False)
    synthetic_sizes: typing.Optional[tuple] = _field(None, "For --dataset=synthetic: n_train,n_test.")
    strategy: str = _field(
        "auto",
        "Distribution: auto (mirrored with >1 GPU, one_device with 1 GPU, default on CPU), default, "
        "one_device, mirrored, multi_worker (cluster from TF_CONFIG) or tpu. --batch_size stays global.",
        defining=False,
    )
    tpu: typing.Optional[str] = _field(None, "TPU address for --strategy=tpu (empty: local TPU VM).", defining=False)
    worker_timeout: int = _field(
        300,
        "--strategy=multi_worker: seconds after which a dead or stuck peer worker stops the run "
        "with an error (heartbeat and collective timeout).",
        defining=False,
    )
    mixed_precision: bool = _field(
        False,
        "Mixed precision: mixed_float16 (with loss scaling) on GPU, mixed_bfloat16 on TPU and CPU. Masks stay exact.",
        defining="if_set",
    )

    # -- validation and defaults ------------------------------------------

    def resolve(self) -> "ExperimentConfig":
        """Fills every None from the model's paper defaults and validates.

        Raises:
            ConfigError: naming the offending flag.
        """
        from lth_keras import models

        if models.is_custom(self.model):
            try:
                d = models.custom_defaults(self.model, dataclasses.asdict(self), datasets.DATASETS)
            except models.CustomModelError as e:
                raise ConfigError(e.flag, str(e)) from None
        elif self.model not in models.MODELS:
            raise ConfigError("model", f"unknown model {self.model!r}; known: {', '.join(sorted(models.MODELS))}.")
        else:
            d = models.defaults(self.model)
        filled = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and hasattr(d, f.name):
                value = getattr(d, f.name)
            filled[f.name] = value
        if filled["experiment"] is None:
            filled["experiment"] = self.model
        for key in ("lr_boundaries", "global_exclude", "controls", "synthetic_sizes"):
            if filled[key] is not None:
                filled[key] = tuple(filled[key])
        try:
            filled["lr_boundaries"] = tuple(int(b) for b in filled["lr_boundaries"])
            if filled["synthetic_sizes"] is not None:
                filled["synthetic_sizes"] = tuple(int(s) for s in filled["synthetic_sizes"])
        except (TypeError, ValueError) as e:
            raise ConfigError("lr_boundaries", f"must be integers ({e}).") from None
        config = dataclasses.replace(self, **filled)
        config._validate()
        return config

    def _validate(self):
        if self.dataset not in datasets.DATASETS:
            raise ConfigError("dataset", f"unknown dataset {self.dataset!r}; known: {', '.join(sorted(datasets.DATASETS))}.")
        for name in ("iterations", "rounds", "trials", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be a positive integer, got {value}.")
        if self.eval_every > self.iterations:
            raise ConfigError("eval_every", f"({self.eval_every}) is larger than --iterations ({self.iterations}).")
        for name in ("prune_rate_dense", "prune_rate_conv", "prune_rate_output", "dropout"):
            try:
                pruning.validate_rate(getattr(self, name), name)
            except ValueError as e:
                raise ConfigError(name, str(e)) from None
        if self.pruning not in ("layerwise", "global"):
            raise ConfigError("pruning", f"must be 'layerwise' or 'global', got {self.pruning!r}.")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ConfigError("optimizer", f"must be adam, adamw or sgd, got {self.optimizer!r}.")
        if not (self.learning_rate > 0):
            raise ConfigError("learning_rate", f"must be positive, got {self.learning_rate}.")
        if self.rewind_iteration < 0 or self.rewind_iteration >= self.iterations:
            raise ConfigError("rewind_iteration", f"must be in [0, iterations={self.iterations}), got {self.rewind_iteration}.")
        if self.checkpoint_every < 0:
            raise ConfigError("checkpoint_every", f"must be >= 0, got {self.checkpoint_every}.")
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ConfigError("controls", f"unknown control(s) {unknown}; known: {', '.join(CONTROLS)}.")
        if self.validation_size < 0:
            raise ConfigError("validation_size", f"must be >= 0, got {self.validation_size}.")
        if not self.experiment or os.sep in self.experiment or self.experiment in (".", ".."):
            raise ConfigError("experiment", f"must be a plain directory name, got {self.experiment!r}.")
        from lth_keras import distribute

        if self.strategy not in distribute.STRATEGIES:
            raise ConfigError("strategy", f"must be one of {', '.join(distribute.STRATEGIES)}, got {self.strategy!r}.")
        if not isinstance(self.worker_timeout, int) or self.worker_timeout < 1:
            raise ConfigError("worker_timeout", f"must be a positive integer, got {self.worker_timeout}.")

    def defining(self) -> dict:
        """The experiment-defining values, as saved in ``config.json``."""
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("defining", True) is True
            or (f.metadata.get("defining") == "if_set" and getattr(self, f.name) != f.default)
        }

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------


def _check_output_dir_writable(path: str) -> None:
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError("output_dir", f"{path!r} is not writable (checked {probe!r}).")


def train_and_evaluate(config: ExperimentConfig, workdir: str | None = None, *, log=None) -> results.ExperimentDir:
    """Runs (or resumes) an experiment and returns its `ExperimentDir`.

    Args:
        config: the hyperparameters; None fields take the model's defaults.
        workdir: overrides ``config.output_dir``.
        log: a print-like function for progress lines (default: stdout).

    Raises:
        ConfigError: a bad flag value, before anything is written.
        lth_keras.datasets.DataUnavailableError: no source has the data,
            before anything is written.
        lth_keras.results.ConfigMismatchError: the output directory holds an
            experiment with other defining flags and `overwrite` is False.
    """
    log = log or (lambda message: print(message, flush=True))
    if workdir is not None:
        config = dataclasses.replace(config, output_dir=workdir)
    config = config.resolve()
    from lth_keras import distribute

    try:
        strategy = distribute.make_strategy(
            config.strategy, tpu=config.tpu, worker_timeout=config.worker_timeout
        )
    except ValueError as e:
        raise ConfigError("strategy", str(e)) from None
    sync = distribute.WorkerSync(strategy)
    if sync.is_chief:
        _check_output_dir_writable(config.output_dir)
    data = _load_data(config)
    if config.batch_size > len(data.x_train):
        raise ConfigError(
            "batch_size", f"({config.batch_size}) is larger than the training set ({len(data.x_train)} examples)."
        )

    import tensorflow as tf

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    policy = distribute.mixed_precision_policy(strategy) if config.mixed_precision else None
    with distribute.worker_scratch_dir(strategy) as scratch:
        # Only the chief writes to the output directory; other workers run the
        # same code against a private scratch copy (deleted at exit) and take
        # every file-derived decision and value from the chief (WorkerSync).
        run_config = config if scratch is None else dataclasses.replace(config, output_dir=scratch)
        exp_dir = results.ExperimentDir(os.path.join(run_config.output_dir, config.experiment))
        refused = None
        try:
            exp_dir.check_and_save_config(config.defining(), overwrite=config.overwrite)
        except results.ConfigMismatchError as e:
            refused = e
        if sync.value(refused is not None):
            if refused is not None:
                raise refused
            raise RuntimeError("The chief refused the experiment (config mismatch); see its log.")
        results.atomic_write_json(os.path.join(exp_dir.root, "flags.json"), config.to_dict())
        if sync.is_chief:
            replicas = strategy.num_replicas_in_sync
            log(f"Experiment {exp_dir.root}: {config.model} on {data.name} ({data.source}), "
                f"{config.trials} trial(s) x {config.rounds} round(s), arms: ticket"
                + "".join(f", {c}" for c in config.controls)
                + (f"; {type(strategy).__name__}, {replicas} replica(s) x "
                   f"{config.batch_size // max(replicas, 1)} examples"
                   if replicas > 1 or config.strategy not in ("auto", "default") else "")
                + (f"; {policy}" if policy else ""))
        with distribute.dtype_policy(policy), distribute.peer_failures_as_errors(strategy, config.worker_timeout):
            for trial in range(config.trials):
                _Trial(run_config, data, exp_dir, trial, log, strategy=strategy, sync=sync).run()
        path = exp_dir.write_summary_csv()
    if sync.is_chief:
        log(f"Done. Summary: {path}")
    return exp_dir


def _load_data(config):
    kwargs = dict(
        data_dir=config.data_dir,
        seed=config.seed,
        validation_size=config.validation_size,
        tfds_data_dir=config.tfds_data_dir,
    )
    if config.dataset == "synthetic" and config.synthetic_sizes:
        kwargs["synthetic_sizes"] = config.synthetic_sizes
    try:
        return datasets.load(config.dataset, **kwargs)
    except ValueError as e:
        raise ConfigError("validation_size" if "validation_size" in str(e) else "dataset", str(e)) from None


class _Trial:
    """One trial: the ticket arm round by round, each control after it."""

    def __init__(self, config, data, exp_dir, trial, log, strategy=None, sync=None):
        from lth_keras import callbacks, distribute, models, training

        self.config, self.data, self.exp_dir, self.trial, self.log = config, data, exp_dir, trial, log
        if strategy is None:
            import tensorflow as tf

            strategy = tf.distribute.get_strategy()
        self.strategy = strategy
        self.sync = sync or distribute.WorkerSync(strategy)
        if not self.sync.is_chief:
            self.log = lambda message: None
        self.seed = config.seed + trial * _SEED_STRIDE
        with strategy.scope():
            self.model = models.build(
                config.model, data.input_shape, data.num_classes, dropout=config.dropout, seed=self.seed
            )
        self._callbacks = callbacks
        hp = training.TrainingHparams(
            iterations=config.iterations,
            batch_size=config.batch_size,
            optimizer=config.optimizer,
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            lr_boundaries=config.lr_boundaries,
            warmup_iterations=config.warmup_iterations,
            eval_every=config.eval_every,
            augment=config.augment,
        )
        try:
            self.trainer = training.Trainer(self.model, data, hp, seed=self.seed, strategy=strategy)
        except ValueError as e:
            raise ConfigError("batch_size", str(e)) from None
        from lth_keras import layers

        weights = layers.masked_weights(self.model)
        self.kinds = {mw.name: mw.kind for mw in weights}
        self.output = callbacks.default_output_layer(self.model)
        self.theta0 = callbacks.WeightSnapshot.take(self.model)
        exclude = config.global_exclude if config.pruning == "global" else None
        self.prunable = [mw.name for mw in layers.masked_weights(self.model, exclude=exclude or None)]
        self.has_conv = any(k == "conv" for k in self.kinds.values())

    # -- masks -------------------------------------------------------------

    def _rates(self):
        c = self.config
        if c.pruning == "global":
            return c.prune_rate_conv if self.has_conv else c.prune_rate_dense
        return {"dense": c.prune_rate_dense, "conv": c.prune_rate_conv, "output": c.prune_rate_output}

    def _prune(self, weights, masks):
        return pruning.prune(
            weights, masks, self._rates(), kinds=self.kinds, scope=self.config.pruning,
            output=self.output, include=self.prunable,
        )

    def _ticket_mask(self, round_):
        """The ticket's mask for `round_`, from saved results of earlier rounds."""
        ones = {n: np.ones(v.shape, np.float32) for n, v in self.theta0.masked_values(self.model).items()}
        if round_ == 0:
            return ones
        if self.config.one_shot:
            dense = self._trained(0).masked_values(self.model)
            mask = ones
            for _ in range(round_):
                mask = self._prune(dense, mask)
            return mask
        previous = self.exp_dir.read_mask(self.trial, "ticket", round_ - 1)
        return self._prune(self._trained(round_ - 1).masked_values(self.model), previous)

    def _trained(self, round_):
        path = os.path.join(self.exp_dir.round_dir(self.trial, "ticket", round_), "trained_weights.npz")
        with np.load(path) as f:
            return self._callbacks.WeightSnapshot.from_arrays(dict(f))

    def _reset_point(self):
        """θ0, or the weights at the rewind iteration (saved in round 0)."""
        if self.config.rewind_iteration == 0:
            return self.theta0
        path = self._rewind_path()
        with np.load(path) as f:
            return self._callbacks.WeightSnapshot.from_arrays(dict(f))

    def _rewind_path(self):
        return os.path.join(self.exp_dir.round_dir(self.trial, "ticket", 0), "rewind_weights.npz")

    # -- running -----------------------------------------------------------

    def run(self):
        for round_ in range(self.config.rounds):
            ticket_mask = self._round("ticket", round_)
            if round_ == 0:
                continue
            for control in self.config.controls:
                self._round(control, round_, ticket_mask=ticket_mask)

    def _round(self, arm, round_, ticket_mask=None):
        exp_dir, trial = self.exp_dir, self.trial
        # With several workers, every file-derived decision and value below is
        # the chief's (self.sync); other workers' own files are never read.
        sync, chief = self.sync, self.sync.is_chief
        from lth_keras import layers

        if sync.value(bool(exp_dir.is_round_done(trial, arm, round_))):
            mask = None
            if chief:
                summary = exp_dir.read_round_summary(trial, arm, round_)
                self.log(f"trial {trial} {arm} round {round_}: done (P_m {summary['pm']:.1f}%), skipped")
                mask = exp_dir.read_mask(trial, arm, round_)
            return sync.dict(mask, template=layers.get_masks(self.model)) if sync.active else mask

        callbacks = self._callbacks
        if arm == "ticket":
            mask = self._ticket_mask(round_) if chief else None
            start = self.theta0 if round_ == 0 or not chief else self._reset_point()
        elif arm == "reinit":
            mask = ticket_mask
            from lth_keras import models

            with self.strategy.scope():
                fresh = models.build(
                    self.config.model, self.data.input_shape, self.data.num_classes,
                    dropout=self.config.dropout, seed=self.seed + 100_003 * (round_ + 1),
                )
            start = callbacks.WeightSnapshot.take(fresh)
        elif arm == "random_mask":
            mask = pruning.random_masks(ticket_mask, seed=self.seed + 200_003 * (round_ + 1))
            start = self._reset_point() if chief else self.theta0
        else:  # pragma: no cover - arms come from CONTROLS
            raise ValueError(arm)

        if mask is not None:
            layers.set_masks(self.model, mask)
        start.restore(self.model)
        if sync.active:
            # Masks and reset weights: the chief's, on every replica of every worker.
            sync.variables(self.model.variables)
            mask = layers.get_masks(self.model)
        self.trainer.reset_round()
        reset_weights = callbacks.WeightSnapshot.take(self.model)
        pm, pm_per_layer = pruning.percent_remaining(mask)

        checkpoint_dir = exp_dir.checkpoint_path(trial, arm, round_)
        state_path = os.path.join(checkpoint_dir, "state.npz")
        curve, start_iteration, elapsed = [], 0, 0.0
        if sync.value(bool(os.path.exists(state_path))):
            if chief:
                with np.load(state_path) as f:
                    arrays = dict(f)
                meta = json.loads(str(arrays.pop("meta")))
                self.trainer.load_state_arrays(arrays)
                curve, start_iteration, elapsed = meta["curve"], meta["iteration"], meta["elapsed"]
            if sync.active:
                sync.variables(list(self.trainer.model.variables) + list(self.trainer.optimizer.variables))
                start_iteration = sync.value(int(start_iteration))
            self.log(f"trial {trial} {arm} round {round_}: resuming at iteration {start_iteration}")

        stops = {}
        rewind = self.config.rewind_iteration
        if sync.value(bool(arm == "ticket" and round_ == 0 and rewind > 0 and not os.path.exists(self._rewind_path()))):
            if start_iteration > rewind:
                raise RuntimeError(
                    f"The checkpoint is past the rewind iteration {rewind} but "
                    f"{self._rewind_path()} is missing; delete {checkpoint_dir} to retrain round 0."
                )

            def capture(_):
                results.atomic_write_npz(self._rewind_path(), callbacks.WeightSnapshot.take(self.model).to_arrays())

            stops[rewind] = capture

        tag = f"trial {trial} {arm} round {round_} (P_m {pm:.1f}%)"
        writer = self._tensorboard_writer(arm, round_)
        began = time.perf_counter()
        total = self.config.iterations

        def on_eval(row):
            seconds = elapsed + time.perf_counter() - began
            self.log(
                f"{tag} it {row['iteration']}/{total}: train loss {row['train_loss']:.4f} "
                f"acc {row['train_accuracy']:.4f} | val loss {row['val_loss']:.4f} "
                f"acc {row['val_accuracy']:.4f} | test acc {row['test_accuracy']:.4f} "
                f"[{seconds:.1f}s]"
            )
            if writer is not None:
                import tensorflow as tf

                with writer.as_default(step=row["iteration"]):
                    for key in results.CURVE_COLUMNS[1:]:
                        tf.summary.scalar(key, row[key])
            every = self.config.checkpoint_every
            if every and row["iteration"] % every == 0 and row["iteration"] < total:
                arrays = self.trainer.state_arrays()
                arrays["meta"] = np.array(json.dumps(
                    {"curve": curve, "iteration": row["iteration"], "elapsed": seconds}
                ))
                results.atomic_write_npz(state_path, arrays)

        for row in curve:
            row.pop("seconds", None)
        self.trainer.train_round(start_iteration=start_iteration, curve=curve, on_eval=on_eval, stops=stops)
        wall = elapsed + time.perf_counter() - began
        if writer is not None:
            writer.close()
        for row in curve:
            row.pop("seconds", None)
        if arm == "ticket":
            results.atomic_write_npz(
                os.path.join(exp_dir.round_dir(trial, arm, round_), "trained_weights.npz"),
                callbacks.WeightSnapshot.take(self.model).to_arrays(),
            )
        summary = exp_dir.write_round(
            trial, arm, round_,
            mask={n: m.astype(bool) for n, m in mask.items()},
            reset_weights=reset_weights.to_arrays(),
            curve=curve,
            summary={
                "pm": pm,
                "pm_per_layer": pm_per_layer,
                "wall_time_s": wall,
                "iterations": total,
                "seed": self.seed,
            },
        )
        exp_dir.write_summary_csv()
        self.log(
            f"== {tag} done: early stop at iteration {summary['early_stop_iteration']} "
            f"(val acc {summary['early_stop_val_accuracy']:.4f}, test acc "
            f"{summary['early_stop_test_accuracy']:.4f}), final test acc "
            f"{summary['final_test_accuracy']:.4f}, {wall:.1f}s"
        )
        return mask

    def _tensorboard_writer(self, arm, round_):
        if not self.config.tensorboard:
            return None
        import tensorflow as tf

        logdir = os.path.join(self.exp_dir.root, "tensorboard", f"trial_{self.trial}", arm, f"round_{round_}")
        return tf.summary.create_file_writer(logdir)
