r"""Instability analysis (Frankle et al. 2020, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis"): the error barrier on the linear path between
two copies of a ticket trained from rewind iteration k with different data
orders.

`run_instability` measures every (trial, round, k) of an experiment,
resumably and under a per-trial lock, into its directory
(``instability.csv``, ``instability/trial_<t>/...``, ``instability.png``);
`barrier` and `path_alphas` are the measurement's arithmetic. The program
``python -m lth_keras.instability`` parses flags and calls
`run_instability`; its doc describes the method and the files in full.

Example:

```python
from lth_keras.analysis import instability

path = instability.run_instability("runs/lenet_fashion_mnist", rounds=[0, 3],
                                   rewind_iterations=[0, 500], points=11)
import pandas; pandas.read_csv(path)["barrier"]
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

import numpy as np

from lth_keras.storage import files, layout, locks
from lth_keras.storage.experiment_dir import ExperimentDir

__all__ = ["InstabilityError", "run_instability", "barrier", "path_alphas", "plot_instability", "CSV_NAME",
           "FIGURE_NAME"]

# The analysis's files in the experiment directory (`layout.ExperimentLayout`
# names them): instability.csv, and the figure's name without its extension.
CSV_NAME = layout.INSTABILITY_CSV
FIGURE_NAME = os.path.splitext(layout.INSTABILITY_FIGURE)[0]
# The two copies' data-order seeds: offsets from the trial's seed, so
# neither reuses the experiment's own order.
_COPY_SEED_OFFSETS = (7_000_003, 9_000_011)


class InstabilityError(ValueError):
    """A bad argument (the message names its flag)."""


def path_alphas(points: int) -> np.ndarray:
    """The α of each evaluated point, 0 … 1.

    Example:
        >>> path_alphas(3).tolist()
        [0.0, 0.5, 1.0]
    """
    return np.linspace(0.0, 1.0, int(points))


def barrier(errors: Sequence[float]) -> float:
    """The error barrier: max error on the path − mean of the two ends.

    Example:
        >>> round(barrier([0.1, 0.3, 0.1]), 6)
        0.2
    """
    errors = np.asarray(errors, np.float64)
    return float(errors.max() - (errors[0] + errors[-1]) / 2)


def _error_column(alpha: float) -> str:
    return f"error_{alpha:.4g}"


# --------------------------------------------------------------------------
# Training from iteration k (the Trainer API of rewound rounds).


def _train_from(trainer, k: int, end: int, log, tag: str, chunk: int = 500) -> None:
    """Steps k+1 … end with `trainer`'s data order (positions k … end−1)."""
    iteration = k
    while iteration < end:
        n = min(chunk, end - iteration)
        loss, _ = trainer.train_steps(iteration, n)
        iteration += n
        log(f"{tag}: iteration {iteration}/{end}, train loss {loss:.4f}")


# --------------------------------------------------------------------------


class _Context:
    """One trial's model, data and trainers (one per data-order seed)."""

    def __init__(self, config, data, exp_dir, trial, log):
        from lth_keras import models, training
        from lth_keras.training import schedule
        from lth_keras.pruning.snapshots import WeightSnapshot

        self.config, self.data, self.exp_dir, self.trial, self.log = config, data, exp_dir, trial, log
        self.seed = schedule.trial_seed(config.seed, trial)
        self.model = models.build(config.model, data.input_shape, data.num_classes,
                                  dropout=config.dropout, seed=self.seed)
        self.hp = training.TrainingHparams(**{
            f.name: getattr(config, f.name) for f in dataclasses.fields(training.TrainingHparams)
            if hasattr(config, f.name)
        })
        self._trainers = {}
        # θ0 as the experiment saved it (round 0's reset point).
        self.theta0 = WeightSnapshot.from_arrays(exp_dir.read_reset_weights(trial, "ticket", 0))

    def trainer(self, seed):
        from lth_keras import training

        if seed not in self._trainers:
            self._trainers[seed] = training.Trainer(self.model, self.data, self.hp, seed=seed)
        return self._trainers[seed]

    def dense_at(self, k):
        """The dense network's weights at iteration k (see the module doc)."""
        from lth_keras import layers
        from lth_keras.pruning.snapshots import WeightSnapshot

        if k == 0:
            return self.theta0
        saved = self.exp_dir.rewind_weights_path(self.trial, "ticket", 0)
        if k == self.config.rewind_iteration and os.path.exists(saved):
            with np.load(saved) as f:
                return WeightSnapshot.from_arrays(dict(f))
        path = self.exp_dir.dense_at_path(self.trial, k)
        if not os.path.exists(path):
            layers.set_masks(self.model, {mw.name: np.ones(tuple(mw.mask.shape)) for mw in layers.masked_weights(self.model)})
            self.theta0.restore(self.model)
            trainer = self.trainer(self.seed)
            trainer.reset_round(iteration=0)
            _train_from(trainer, 0, k, self.log, f"trial {self.trial} dense to iteration {k}")
            files.atomic_write_npz(path, WeightSnapshot.take(self.model).to_arrays())
        with np.load(path) as f:
            return WeightSnapshot.from_arrays(dict(f))


def _measure(ctx, round_, k, alphas, seeds):
    """The row of (round_, k): trains (or reloads) the two copies and
    evaluates the path."""
    from lth_keras import layers
    from lth_keras.pruning.snapshots import WeightSnapshot

    exp_dir, trial, log = ctx.exp_dir, ctx.trial, ctx.log
    mask = exp_dir.read_mask(trial, "ticket", round_)
    pm = float(exp_dir.read_round_summary(trial, "ticket", round_)["pm"])
    tag = f"trial {trial} round {round_} (P_m {pm:.1f}%) k={k}"
    start = ctx.dense_at(k)
    copies = []
    for i, seed in enumerate(seeds):
        path = exp_dir.instability_copy_path(trial, round_, k, seed)
        if not os.path.exists(path):
            layers.set_masks(ctx.model, mask)
            start.restore(ctx.model)
            trainer = ctx.trainer(seed)
            trainer.reset_round(iteration=k)
            _train_from(trainer, k, ctx.hp.iterations, log, f"{tag} copy {i} (data seed {seed})")
            files.atomic_write_npz(path, WeightSnapshot.take(ctx.model).to_arrays())
        with np.load(path) as f:
            copies.append(WeightSnapshot.from_arrays(dict(f)))
    layers.set_masks(ctx.model, mask)
    evaluator = ctx.trainer(seeds[0])
    errors = []
    for alpha in alphas:
        WeightSnapshot([alpha * a + (1.0 - alpha) * b for a, b in zip(copies[0].values, copies[1].values)],
                       copies[0].paths).restore(ctx.model)
        errors.append(1.0 - evaluator.evaluate("test")[1])
    row = {"trial": trial, "round": round_, "pm": pm, "rewind_iteration": k, "barrier": barrier(errors),
           "end_error": (errors[0] + errors[-1]) / 2, "end_accuracy": 1.0 - (errors[0] + errors[-1]) / 2,
           "iterations": ctx.hp.iterations, "seed_0": int(seeds[0]), "seed_1": int(seeds[1])}
    row.update({_error_column(a): e for a, e in zip(alphas, errors)})
    log(f"{tag}: barrier {row['barrier']:.4f} (end errors {errors[-1]:.4f}, {errors[0]:.4f}; "
        f"max {max(errors):.4f})")
    return row


def _rows(exp_dir):
    found = []
    for path in exp_dir.instability_row_paths():
        with open(path, encoding="utf-8") as f:
            found.append(json.load(f))
    found.sort(key=lambda r: (r["trial"], r["round"], r["rewind_iteration"]))
    return found


def _write_csv(exp_dir) -> str:
    # Under the shared lock: a process that listed the rows before another
    # one's newest row must not write its CSV after that one's.
    with exp_dir.shared_lock():
        rows = _rows(exp_dir)
        fixed = ["trial", "round", "pm", "rewind_iteration", "barrier", "end_error", "end_accuracy", "iterations",
                 "seed_0", "seed_1"]
        errors = sorted({k for r in rows for k in r if k.startswith("error_")}, key=lambda c: float(c[6:]))
        path = exp_dir.instability_csv_path
        files.atomic_write_csv(path, rows, fieldnames=fixed + errors)
    return path


def run_instability(results_dir: str, *, rounds: Sequence[int] | None = None,
                    rewind_iterations: Sequence[int] = (0, 100, 500, 2000), points: int = 11,
                    trials: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
                    figure: bool = True, wait_for_lock: bool = False,
                    log: Callable[[str], None] | None = None) -> str:
    """Measures the error barrier of the ticket of each round at each rewind
    iteration (see the module doc) and returns instability.csv's path.

    Args:
        results_dir: an experiment directory (``<output_dir>/<experiment>``).
        rounds: ticket rounds (0 = dense); default: every finished one.
        rewind_iterations: the k's, each in [0, iterations).
        points: points on the linear path (at least 2, ends included).
        trials: default: every trial whose ticket round 0 is finished.
        seeds: the two copies' data-order seeds (default: derived from the
            trial's seed, different from each other and from the
            experiment's). Equal seeds give identical copies: barrier 0.
        figure: also draw instability.png.
        wait_for_lock: when another process analyses one of the trials,
            wait for it instead of raising `lth_keras.locks.LockHeldError`.
        log: progress lines (default: stdout).

    Raises:
        InstabilityError: a bad argument, naming its flag.
        lth_keras.locks.LockHeldError: another process analyses a trial
            (one line naming its pid and host).
    """
    from lth_keras.training import schedule
    from lth_keras.experiment import saved
    from lth_keras.experiment.config import ConfigError, load_dataset

    log = log or (lambda message: print(message, flush=True))
    if seeds is not None and len(seeds) != 2:
        raise InstabilityError(f"--copy_seeds takes two seeds, got {list(seeds)}.")
    try:
        config = saved.saved_config(results_dir, error=InstabilityError)
    except ConfigError as e:
        raise InstabilityError(f"--results: {e}") from None
    exp_dir = ExperimentDir(os.path.abspath(results_dir))
    if int(points) < 2:
        raise InstabilityError(f"--points must be at least 2 (the two ends), got {points}.")
    ks = [int(k) for k in rewind_iterations]
    bad = [k for k in ks if not 0 <= k < config.iterations]
    if bad or not ks:
        raise InstabilityError(f"--rewind_iterations must be in [0, {config.iterations}) (the experiment's "
                               f"--iterations), got {list(rewind_iterations)}.")
    if trials is None:  # what the directory holds (config.json keeps only the defining flags' run)
        trials = [t for t in exp_dir.trials() if exp_dir.is_round_done(t, "ticket", 0)]
    trials = [int(t) for t in trials]
    if not trials:
        raise InstabilityError(f"--results: {results_dir!r} has no finished ticket round 0.")
    for t in trials:
        if not exp_dir.is_round_done(t, "ticket", 0):
            raise InstabilityError(f"--trials: trial {t} has no finished ticket round 0.")
    if rounds is None:
        found = set().union(*(exp_dir.rounds(t, "ticket") for t in trials))
        rounds = sorted(r for r in found if all(exp_dir.is_round_done(t, "ticket", r) for t in trials))
    rounds = [int(r) for r in rounds]
    missing = [(t, r) for t in trials for r in rounds if not exp_dir.is_round_done(t, "ticket", r)]
    if missing:
        raise InstabilityError(f"--rounds: the ticket rounds (trial, round) {missing} are not finished.")
    alphas = path_alphas(points)

    def pair(t):
        if seeds is not None:
            return [int(s) for s in seeds]
        return [schedule.trial_seed(config.seed, t) + o for o in _COPY_SEED_OFFSETS]

    todo = [(t, r, k) for t in trials for r in rounds for k in ks
            if not _is_measured(exp_dir, t, r, k, alphas, pair(t))]
    log(f"Instability of {exp_dir.root}: trials {trials}, rounds {rounds}, k {ks}, {points} points; "
        f"{len(todo)} of {len(trials) * len(rounds) * len(ks)} to measure")
    if todo:
        data = load_dataset(config)
        import tensorflow as tf

        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        for t in sorted({x[0] for x in todo}):
            # One process per trial's analysis: a second one is refused (or
            # waits), instead of training the same copies twice.
            lock = exp_dir.instability_lock_path(t)
            with locks.FileLock(lock, what=f"the instability analysis of trial {t} of {exp_dir.root}",
                                wait=wait_for_lock, advice="pass --wait_for_lock to wait for it, or run other --trials",
                                on_wait=lambda who, t=t: log(f"trial {t}: waiting for {who} (--wait_for_lock)")):
                ctx = None
                for trial, r, k in todo:
                    if trial != t or _is_measured(exp_dir, t, r, k, alphas, pair(t)):
                        continue  # another trial, or measured while this process waited
                    ctx = ctx or _Context(config, data, exp_dir, t, log)
                    row = _measure(ctx, r, k, alphas, pair(t))
                    files.atomic_write_json(exp_dir.instability_row_path(t, r, k), row)
                    _write_csv(exp_dir)
    path = _write_csv(exp_dir)
    if figure:
        plot_instability(path, exp_dir.instability_figure_path)
    log(f"Done. Instability: {path}")
    return path


def _is_measured(exp_dir, trial, round_, k, alphas, seeds):
    """A finished row with these points and seeds (another setting is remeasured;
    trained copies are reused by seed)."""
    try:
        with open(exp_dir.instability_row_path(trial, round_, k), encoding="utf-8") as f:
            row = json.load(f)
    except (OSError, ValueError):
        return False
    return (sum(c.startswith("error_") for c in row) == len(alphas)
            and [row.get("seed_0"), row.get("seed_1")] == list(seeds))


# --------------------------------------------------------------------------
# Figure (matplotlib and pandas only).


def plot_instability(csv_path: str, out_path: str | None = None, *, accuracy: bool = True):
    """Error barrier against rewind iteration k, one line per sparsity, and
    the copies' test accuracy beside it (`lth_keras.plotting.plot_instability`,
    which the figures manifest's ``"instability"`` kind also draws). Returns
    the matplotlib Figure (saved to `out_path` when given).

    Example:
        >>> fig = plot_instability("runs/lenet/instability.csv")   # doctest: +SKIP
    """
    from lth_keras.analysis import plotting

    fig, _ = plotting.plot_instability(csv_path, accuracy=accuracy)
    if out_path:
        fig.savefig(out_path, dpi=120)
    return fig
