"""The paper's experiment: trials x arms x rounds of IMP, saved and resumable.

`ExperimentConfig` (`lth_keras.config`) is the typed hyperparameter set; `python -m
lth_keras.main` generates its flags from it. `train_and_evaluate` runs the
experiment into ``<output_dir>/<experiment>/trial_<t>/<arm>/round_<r>/``
(see `lth_keras.storage.layout`). A round whose ``summary.json`` exists is read
back, never retrained; a round that was interrupted restarts from its last
checkpoint.

Every trial runs the ticket arm and each of `controls`, round by round;
the arms (ticket, reinit, random_mask and any a user registers) are declared
in `lth_keras.arms`.

Example:

```python
from lth_keras.experiment import runner as experiment

config = experiment.ExperimentConfig(model="lenet", dataset="fashion_mnist",
                                     iterations=2000, rounds=5,
                                     controls=("reinit",))
exp_dir = experiment.train_and_evaluate(config, "runs")
import pandas; pandas.read_csv(exp_dir.summary_csv_path)
```
"""

from __future__ import annotations

import dataclasses
import os
import time

from lth_keras import arms, pruning
from lth_keras.storage import curves, errors, files
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage import resume
from lth_keras.training import schedule
from lth_keras.experiment import resume as trial_resume
from lth_keras.experiment.config import ConfigError, ExperimentConfig, load_dataset

__all__ = ["ExperimentConfig", "ConfigError", "train_and_evaluate", "load_dataset"]


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


def train_and_evaluate(config: ExperimentConfig, workdir: str | None = None, *, log=None) -> ExperimentDir:
    """Runs (or resumes) an experiment and returns its `ExperimentDir`.

    Args:
        config: the hyperparameters; None fields take the model's defaults.
        workdir: overrides ``config.output_dir``.
        log: a print-like function for progress lines (default: stdout).

    Raises:
        ConfigError: a bad flag value, before anything is written.
        lth_keras.datasets.DataUnavailableError: no source has the data,
            before anything is written.
        lth_keras.storage.errors.ConfigMismatchError: the output directory holds an
            experiment with other defining flags and `overwrite` is False.
    """
    log = log or (lambda message: print(message, flush=True))
    if workdir is not None:
        config = dataclasses.replace(config, output_dir=workdir)
    config = config.resolve()
    from lth_keras.training import distribute

    try:
        strategy = distribute.make_strategy(
            config.strategy, tpu=config.tpu, worker_timeout=config.worker_timeout
        )
    except ValueError as e:
        raise ConfigError("strategy", str(e)) from None
    sync = distribute.WorkerSync(strategy)
    if sync.is_chief:
        _check_output_dir_writable(config.output_dir)
    data = load_dataset(config)
    if config.batch_size > len(data.x_train):
        raise ConfigError(
            "batch_size", f"({config.batch_size}) is larger than the training set ({len(data.x_train)} examples)."
        )

    if config.pattern:
        from lth_keras import models
        from lth_keras.experiment import trial_state

        try:
            trial_state.check_pattern(config, models.build(config.model, data.input_shape, data.num_classes))
        except ValueError as e:
            raise ConfigError("pattern", str(e)) from None

    import tensorflow as tf

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    policy = distribute.mixed_precision_policy(strategy) if config.mixed_precision else None
    with distribute.worker_scratch_dir(strategy) as scratch:
        # Only the chief writes to the output directory; other workers run the
        # same code against a private scratch copy (deleted at exit) and take
        # every file-derived decision and value from the chief (WorkerSync).
        run_config = config if scratch is None else dataclasses.replace(config, output_dir=scratch)
        # Rows of summary.csv in the registry's order of arms (storage cannot import arms).
        exp_dir = ExperimentDir(os.path.join(run_config.output_dir, config.experiment), arm_order=arms.order_key)
        refused = None
        try:
            exp_dir.check_and_save_config(config.defining(), overwrite=config.overwrite)
        except errors.ConfigMismatchError as e:
            refused = e
        if sync.value(refused is not None):
            if refused is not None:
                raise refused
            raise RuntimeError("The chief refused the experiment (config mismatch); see its log.")
        exp_dir.write_flags(config.to_dict())
        if sync.is_chief:
            resume.prepare_experiment(exp_dir)
            replicas = strategy.num_replicas_in_sync
            log(f"Experiment {exp_dir.root}: {config.model} on {data.name} ({data.source}), "
                f"{config.trials} trial(s) x {config.rounds} round(s), arms: ticket"
                + "".join(f", {c}" for c in config.controls)
                + (f"; {type(strategy).__name__}, {replicas} replica(s) x "
                   f"{config.batch_size // max(replicas, 1)} examples"
                   if replicas > 1 or config.strategy not in ("auto", "default") else "")
                + (f"; {policy}" if policy else ""))
        with distribute.dtype_policy(policy), distribute.peer_failures_as_errors(strategy, config.worker_timeout):
            for trial in resume.parse_trial_ids(config.trial_ids, config.trials):
                with trial_resume.trial_session(exp_dir, trial, config, sync=sync, log=log):
                    _Trial(run_config, data, exp_dir, trial, log, strategy=strategy, sync=sync).run()
        path = exp_dir.write_summary_csv()
    if sync.is_chief:
        log(f"Done. Summary: {path}")
    return exp_dir


def __getattr__(name):
    if name == "CONTROLS":  # the name before lth_keras.arms; stays current with the registry
        return arms.controls()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Trial:
    """One trial: every arm round by round, each after what it depends on."""

    def __init__(self, config, data, exp_dir, trial, log, strategy=None, sync=None):
        from lth_keras import models, training
        from lth_keras.training import distribute
        from lth_keras.experiment import trial_state

        self.config, self.data, self.exp_dir, self.trial, self.log = config, data, exp_dir, trial, log
        if strategy is None:
            import tensorflow as tf

            strategy = tf.distribute.get_strategy()
        self.strategy = strategy
        # With several workers, every file-derived decision and value is the
        # chief's (self.sync); other workers' own files are never read.
        self.sync = sync or distribute.WorkerSync(strategy)
        if not self.sync.is_chief:
            self.log = lambda message: None
        self.seed = schedule.trial_seed(config.seed, trial)
        with strategy.scope():
            self.model = models.build(
                config.model, data.input_shape, data.num_classes, dropout=config.dropout, seed=self.seed
            )
        hp = training.TrainingHparams(**{
            f.name: getattr(config, f.name) for f in dataclasses.fields(training.TrainingHparams)
            if hasattr(config, f.name)
        })
        try:
            self.trainer = training.Trainer(self.model, data, hp, seed=self.seed, strategy=strategy)
        except ValueError as e:
            raise ConfigError("batch_size", str(e)) from None
        self.state = trial_state.TrialState(
            config, exp_dir, trial, self.model, self.seed, data=data, strategy=strategy, chief=self.sync.is_chief,
        )

    def run(self):
        for round_ in range(self.config.rounds):
            for arm in [arms.get(name) for name in ("ticket",) + tuple(self.config.controls)]:
                if round_ >= arm.first_round and not self._done(arm.name, round_, say=True):
                    self._round(arm, round_)

    def _done(self, arm, round_, say=False):
        if not self.sync.value(bool(self.exp_dir.is_round_done(self.trial, arm, round_))):
            return False
        if say and self.sync.is_chief:
            summary = self.exp_dir.read_round_summary(self.trial, arm, round_)
            self.log(f"trial {self.trial} {arm} round {round_}: done (P_m {summary['pm']:.1f}%), skipped")
        return True

    def _start(self, arm, round_):
        """Sets the round's masks and start weights; returns (masks, reset snapshot)."""
        from lth_keras import layers

        missing = [d for d in arm.depends(self.config, round_) if not self._done(*d)]
        if missing:
            raise RuntimeError(f"arm {arm.name!r} round {round_} needs the unfinished rounds {missing}.")
        mask, start = arm.start(self.state, round_)
        layers.set_masks(self.model, mask)
        start.restore(self.model)
        if self.sync.active:
            # Masks and reset weights: the chief's, on every replica of every worker.
            self.sync.variables(self.model.variables)
            mask = layers.get_masks(self.model)
        final = arm.final_learning_rate and round_ > 0
        self.trainer.reset_round(iteration=self._first_iteration(arm, round_),
                                 schedule_iteration=self.config.iterations if final else None)
        return mask, self.state.snapshot()

    def _first_iteration(self, arm, round_):
        """Where a round starts: a rewound round (after round 0) continues from
        the rewind iteration k, with the schedule and data order at k, for
        the remaining T - k steps (Frankle et al. 2019, OpenLTH); an arm
        that does not rewind trains all T steps from 0."""
        return self.config.rewind_iteration if round_ > 0 and arm.rewinds else 0

    def _resume(self, tag, state_path, first):
        """(curve, start iteration, elapsed seconds) from the round's checkpoint."""
        from lth_keras.experiment import trial_state

        if not self.sync.value(bool(os.path.exists(state_path))):
            return [], first, 0.0
        curve, start_iteration, elapsed = [], first, 0.0
        if self.sync.is_chief:
            curve, start_iteration, elapsed = trial_state.load_checkpoint(state_path, self.trainer)
            if start_iteration <= first:  # written when rewound rounds still restarted at 0
                raise ConfigError("rewind_iteration", f"{state_path} is from a round that started at 0, not at "
                                  f"{first}; delete {os.path.dirname(state_path)} to retrain the round.")
        if self.sync.active:
            self.sync.variables(list(self.model.variables) + list(self.trainer.optimizer.variables))
            start_iteration = self.sync.value(int(start_iteration))
        self.log(f"{tag}: resuming at iteration {start_iteration}")
        return curve, start_iteration, elapsed

    def _rewind_stops(self, arm, round_, start_iteration, checkpoint_dir):
        """Where training pauses to save the rewind point (round 0 of the arm keeping it)."""
        rewind, path = self.config.rewind_iteration, self.state.rewind_path()
        if not self.sync.value(bool(arm.keeps_rewind_point and round_ == 0 and rewind > 0
                                    and not os.path.exists(path))):
            return {}
        if start_iteration > rewind:
            raise RuntimeError(
                f"The checkpoint is past the rewind iteration {rewind} but "
                f"{path} is missing; delete {checkpoint_dir} to retrain round 0."
            )
        return {rewind: lambda _: files.atomic_write_npz(path, self.state.snapshot().to_arrays())}

    def _round(self, arm, round_):
        exp_dir, trial = self.exp_dir, self.trial
        mask, reset_weights = self._start(arm, round_)
        pm, pm_per_layer = pruning.percent_remaining(mask)
        checkpoint_dir = exp_dir.checkpoint_path(trial, arm.name, round_)
        state_path = exp_dir.checkpoint_state_path(trial, arm.name, round_)
        curve, start_iteration, elapsed = self._resume(f"trial {trial} {arm.name} round {round_}", state_path,
                                                       self._first_iteration(arm, round_))
        stops = self._rewind_stops(arm, round_, start_iteration, checkpoint_dir)
        tag = f"trial {trial} {arm.name} round {round_} (P_m {pm:.1f}%{' at start' if arm.train else ''})"
        wall = self._train(arm, round_, tag, curve, start_iteration, elapsed, stops, state_path)
        if arm.train is not None:  # it pruned while training: its mask is the final one
            from lth_keras import layers

            mask = layers.get_masks(self.model)
            pm, pm_per_layer = pruning.percent_remaining(mask)
        if arm.keeps_trained_weights:
            exp_dir.write_trained_weights(trial, arm.name, round_, self.state.snapshot().to_arrays())
        summary = exp_dir.write_round(
            trial, arm.name, round_, mask={n: m.astype(bool) for n, m in mask.items()},
            reset_weights=reset_weights.to_arrays(), curve=curve,
            summary={"pm": pm, "pm_per_layer": pm_per_layer, "wall_time_s": wall,
                     "iterations": self.config.iterations, "seed": self.seed},
        )
        exp_dir.write_summary_csv()
        self.log(schedule.done_line(tag, summary, wall))

    def _train(self, arm, round_, tag, curve, start_iteration, elapsed, stops, state_path):
        """Trains the round into `curve` (logs, TensorBoard, checkpoints); returns its wall time."""
        from lth_keras.experiment import trial_state

        total, every = self.config.iterations, self.config.checkpoint_every
        writer = self._tensorboard_writer(arm.name, round_)
        began = time.perf_counter()
        last_checkpoint = [start_iteration]

        def on_eval(row):
            seconds = elapsed + time.perf_counter() - began
            self.log(schedule.progress_line(tag, row, total, seconds))
            if writer is not None:
                import tensorflow as tf

                with writer.as_default(step=row["iteration"]):
                    for key in curves.CURVE_COLUMNS[1:]:
                        tf.summary.scalar(key, row[key])
            # At the first evaluation at or after each multiple of `every`, so none is skipped.
            if every and row["iteration"] // every > last_checkpoint[0] // every and row["iteration"] < total:
                last_checkpoint[0] = row["iteration"]
                trial_state.save_checkpoint(state_path, self.trainer, curve, row["iteration"], seconds)

        for row in curve:
            row.pop("seconds", None)
        kwargs = dict(start_iteration=start_iteration, round_start=self._first_iteration(arm, round_),
                      curve=curve, on_eval=on_eval, stops=stops)
        if arm.train is None:
            self.trainer.train_round(**kwargs)
        else:
            arm.train(self.state, self.trainer, round_, **kwargs)
        if writer is not None:
            writer.close()
        for row in curve:
            row.pop("seconds", None)
        return elapsed + time.perf_counter() - began

    def _tensorboard_writer(self, arm, round_):
        if not self.config.tensorboard:
            return None
        import tensorflow as tf

        return tf.summary.create_file_writer(
            self.exp_dir.tensorboard_dir(self.trial, arm, round_))
