"""The experiment's hyperparameters: `ExperimentConfig`, one flag per field.

`python -m lth_keras.main` (and every other binary, through
`lth_keras.cli`) generates its flags from `ExperimentConfig`;
`lth_keras.experiment.train_and_evaluate` runs one. `load_dataset` builds
the dataset a config names, for every binary.

Example:

```python
from lth_keras.experiment import config as lth_config

c = lth_config.ExperimentConfig(model="lenet", rounds=5).resolve()
c.iterations, c.prune_rate_dense     # (50000, 0.2): the paper's defaults
data = lth_config.load_dataset(c)
```
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import typing

from lth_keras import arms, datasets, pruning

__all__ = ["ExperimentConfig", "ConfigError", "load_dataset"]


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
    validation_size: typing.Optional[int] = _field(None, "Examples held out of the training set for validation, at least 1: early stopping reads validation accuracy (default: 5000; 200 for synthetic).")
    dropout: float = _field(0.0, "Dropout rate after hidden dense layers (the paper's variant: 0.5).")
    iterations: typing.Optional[int] = _field(None, "Training iterations per round.")
    batch_size: typing.Optional[int] = _field(None, "Global batch size.")
    optimizer: typing.Optional[str] = _field(None, "adam, adamw or sgd.")
    learning_rate: typing.Optional[float] = _field(None, "Learning rate (after warmup).")
    momentum: typing.Optional[float] = _field(None, "SGD momentum.")
    weight_decay: typing.Optional[float] = _field(None, "Weight decay: for sgd and adam coupled L2 (weight_decay * w added to the gradient before momentum, as the paper and OpenLTH); for adamw decoupled (Keras AdamW).")
    lr_boundaries: typing.Optional[tuple] = _field(None, "Iterations at which the learning rate is divided by 10.")
    warmup_iterations: typing.Optional[int] = _field(None, "Linear learning-rate warmup iterations.")
    augment: typing.Optional[bool] = _field(None, "Random flip + 4-pixel pad/crop (CIFAR nets).")
    eval_every: int = _field(100, "Evaluate validation/test accuracy every this many iterations.")
    pruning: typing.Optional[str] = _field(None, "layerwise or global.")
    prune_rate_dense: typing.Optional[float] = _field(None, "Fraction of alive dense weights pruned per round.")
    prune_rate_conv: typing.Optional[float] = _field(None, "Fraction of alive conv weights pruned per round (the global rate for global pruning).")
    prune_rate_output: typing.Optional[float] = _field(None, "Fraction of alive output-layer weights pruned per round.")
    global_exclude: typing.Optional[tuple] = _field(None, "Layer-name patterns never pruned by global pruning.")
    pattern: typing.Optional[str] = _field(
        None, "N:M structured sparsity, e.g. 2:4: the ticket's rounds (and the gradual arm) prune so that every "
        "M consecutive weights along a kernel's input dimension keep at least N, capping a layer's sparsity at "
        "1 - N/M. Each round still removes the flags' number of weights, the smallest the pattern lets go. "
        "The other controls keep their own masks.", defining="if_set")
    pattern_exclude: tuple = _field(
        (), "Layer-name patterns that --pattern leaves unstructured (pruned as without it), e.g. a first conv "
        "layer whose input channels are not a multiple of M.", defining="if_set")
    # The gradual arm's schedule; the defaults are the TFMOT baseline's
    # (--pruning_begin, --pruning_end, --pruning_frequency of
    # lth_keras.baselines.tfmot), so the two compare on one schedule.
    gradual_begin: float = _field(0.0, "The gradual arm starts pruning at this fraction of a round's iterations.",
                                  defining="if_set")
    gradual_end: float = _field(2.0 / 3.0, "The gradual arm reaches the ticket's sparsity at this fraction of a "
                                "round's iterations (polynomial decay, power 3, as TFMOT).", defining="if_set")
    gradual_frequency: int = _field(100, "The gradual arm updates its masks every this many iterations.",
                                    defining="if_set")
    # The sparse-training arms' schedule (static_erk, set, rigl); RigL's
    # defaults for drop fraction and end (Evci et al. 2020).
    dst_update_frequency: int = _field(100, "The set and rigl arms move their masks every this many iterations.",
                                       defining="if_set")
    dst_drop_fraction: float = _field(0.3, "The set and rigl arms' first update moves this fraction of each "
                                      "layer's active weights; it decays by cosine to 0 at --dst_end.",
                                      defining="if_set")
    dst_end: float = _field(0.75, "The set and rigl arms stop moving masks at this fraction of a round's "
                            "iterations.", defining="if_set")
    rewind_iteration: int = _field(0, "Reset to the weights at this iteration k instead of θ0 (late resetting); rounds after the first then train iterations k+1..T, with the schedule and data order continuing from k.")
    one_shot: bool = _field(False, "Prune each round's sparsity directly from the dense-trained weights.")
    seed: int = _field(0, "Base seed; trial t uses seed + 1000 * t.")
    rounds: int = _field(3, "Rounds per trial, including the dense round 0.", defining=False)
    trials: int = _field(1, "Trials (distinct seeds).", defining=False)
    trial_ids: typing.Optional[str] = _field(
        None, "Run only these trials, e.g. 3 or 3,4 or 0-7 (default: all of --trials). Processes with "
        "different --trial_ids may share one experiment directory (a Slurm array, one per GPU).", defining=False)
    wait_for_lock: bool = _field(
        False, "When another process is running a trial, wait for it instead of exiting.", defining=False)
    controls: tuple = _field((), "Comma-separated controls to run at every round: reinit, random_mask, or an arm registered with lth_keras.arms.", defining=False)
    arm_modules: tuple = _field((), "Python modules imported first: they register more arms (lth_keras.arms) for --controls.", defining=False)
    output_dir: str = _field("runs", "Where experiments are written.", defining=False)
    experiment: typing.Optional[str] = _field(None, "Experiment name (default: the model name).", defining=False)
    overwrite: bool = _field(False, "Replace an existing experiment whose defining flags differ.", defining=False)
    checkpoint_every: int = _field(1000, "Checkpoint a round every this many iterations (0: never), at the first evaluation at or after each multiple.", defining=False)
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
        if filled["validation_size"] is None:
            filled["validation_size"] = datasets.default_validation_size(filled["dataset"])
        for module in (self.arm_modules,) if isinstance(self.arm_modules, str) else self.arm_modules:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise ConfigError("arm_modules", f"cannot import {module!r}: {e}") from None
        for key in ("lr_boundaries", "global_exclude", "controls", "synthetic_sizes", "arm_modules", "pattern_exclude"):
            if filled[key] is not None:
                filled[key] = tuple(filled[key])
        try:
            filled["lr_boundaries"] = tuple(int(b) for b in filled["lr_boundaries"])
        except (TypeError, ValueError) as e:
            raise ConfigError("lr_boundaries", f"must be integers ({e}).") from None
        try:
            if filled["synthetic_sizes"] is not None:
                filled["synthetic_sizes"] = tuple(int(s) for s in filled["synthetic_sizes"])
        except (TypeError, ValueError) as e:
            raise ConfigError("synthetic_sizes", f"must be two integers n_train,n_test ({e}).") from None
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
        unknown = [c for c in self.controls if c not in arms.controls()]
        if unknown:
            raise ConfigError("controls", f"unknown control(s) {unknown}; known: {', '.join(arms.controls())}.")
        if "gradual" in self.controls and self.rewind_iteration:
            raise ConfigError("controls", "the gradual arm trains from θ0: it needs --rewind_iteration=0.")
        from lth_keras.pruning import sparsity

        try:
            sparsity.schedule_steps(self.iterations, self.gradual_begin, self.gradual_end, self.gradual_frequency)
        except ValueError as e:
            flag = "gradual_frequency" if "frequency" in str(e) else "gradual_begin" if self.gradual_begin < 0 \
                else "gradual_end"
            raise ConfigError(flag, str(e)) from None
        if isinstance(self.dst_update_frequency, bool) or not isinstance(self.dst_update_frequency, int) \
                or self.dst_update_frequency < 1:
            raise ConfigError("dst_update_frequency", f"must be an integer >= 1, got {self.dst_update_frequency!r}.")
        if not 0 <= self.dst_drop_fraction <= 1:
            raise ConfigError("dst_drop_fraction", f"must be in [0, 1], got {self.dst_drop_fraction!r}.")
        if not 0 < self.dst_end <= 1:
            raise ConfigError("dst_end", f"must be in (0, 1] (a fraction of --iterations), got {self.dst_end!r}.")
        if self.pattern is not None:

            try:
                sparsity.parse_pattern(self.pattern)
            except ValueError as e:
                raise ConfigError("pattern", str(e)) from None
            if "gradual" in self.controls and self.pattern_exclude:
                raise ConfigError("pattern_exclude", "the gradual arm prunes every layer in the --pattern; "
                                  "run it without --pattern_exclude.")
        elif self.pattern_exclude:
            raise ConfigError("pattern_exclude", "has no effect without --pattern.")
        if self.validation_size < 1:
            raise ConfigError("validation_size", f"must be >= 1: early stopping needs a validation set, got {self.validation_size}.")
        if self.synthetic_sizes is not None and (len(self.synthetic_sizes) != 2 or min(self.synthetic_sizes) < 1):
            raise ConfigError("synthetic_sizes", f"must be two positive integers n_train,n_test, got {','.join(map(str, self.synthetic_sizes))}.")
        if not self.experiment or os.sep in self.experiment or self.experiment in (".", ".."):
            raise ConfigError("experiment", f"must be a plain directory name, got {self.experiment!r}.")
        from lth_keras.training import distribute

        if self.strategy not in distribute.STRATEGIES:
            raise ConfigError("strategy", f"must be one of {', '.join(distribute.STRATEGIES)}, got {self.strategy!r}.")
        if not isinstance(self.worker_timeout, int) or self.worker_timeout < 1:
            raise ConfigError("worker_timeout", f"must be a positive integer, got {self.worker_timeout}.")
        from lth_keras.storage import resume

        try:
            resume.parse_trial_ids(self.trial_ids, self.trials)
        except ValueError as e:
            raise ConfigError("trial_ids", str(e)) from None

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


def load_dataset(config) -> datasets.Dataset:
    """The dataset a resolved `ExperimentConfig` describes (every binary's).

    Raises:
        ConfigError: naming --validation_size or --dataset.
        lth_keras.datasets.DataUnavailableError: no source has the data.
    """
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
