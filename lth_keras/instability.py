r"""Instability analysis (Frankle et al. 2020, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis") of an experiment's tickets.

    python -m lth_keras.instability --results=runs/lenet_fashion_mnist \
        --rounds=0,3 --rewind_iterations=0,100,500,2000 --points=11

For each trial, round r (the dense network is round 0) and rewind
iteration k: the ticket's mask of round r is applied to the dense
network's weights at iteration k, two copies are trained from there to the
end of training (iterations k+1 … T, the learning-rate schedule at k and
a freshly reset optimizer, as in a rewound round) with different data orders, and the test error is measured
at `points` evenly spaced points of the linear path αW1 + (1−α)W2 between
them. The **error barrier** is the largest error on the path minus the mean
of the two ends' errors; a network is stable at k when the barrier is
within noise (the paper: about 2%).

Where the weights at k come from: the experiment keeps the dense weights at
its own ``--rewind_iteration`` only (``ticket/round_0/rewind_weights.npz``)
and θ0 (round 0's reset_weights.npz). For any other k the dense network is
retrained from θ0 for k iterations with the trial's seed (the data order
and hyperparameters of the experiment's round 0, so it is the same
network) and the weights are kept in ``instability/trial_<t>/dense_at_<k>.npz``.
The masks are the experiment's: found by IMP with its own rewind
iteration, where the paper finds one mask per k (run one experiment per k
to match it exactly).

Results, all in the experiment directory and written atomically:
``instability/trial_<t>/round_<r>/k_<k>/copy_seed_<seed>.npz`` (each trained copy)
and ``row.json`` (the finished measurement), ``instability.csv`` (one row
per trial, round and k: ``trial, round, pm, rewind_iteration, barrier,
end_error, end_accuracy, error_0, error_0.1, …, error_1``; the columns
``error_<α>`` hold the test error at αW1 + (1−α)W2) and ``instability.png``.
Running the same command again skips what is finished (a killed run loses
at most the copy it was training). One process analyses a trial at a time
(a lock in ``.locks/``): a second one on the same trial stops with one line
naming the holder, or waits for it with ``--wait_for_lock``; processes given
different ``--trials`` run side by side.

Example (from Python):

```python
from lth_keras import instability

path = instability.run_instability("runs/lenet_fashion_mnist", rounds=[0, 3],
                                   rewind_iterations=[0, 500], points=11)
import pandas; pandas.read_csv(path)
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, Sequence

import numpy as np

from lth_keras import _startup

_startup.prepare()  # TensorFlow's log level, set before TensorFlow loads

from lth_keras.storage import locks
from lth_keras.storage import results

__all__ = ["InstabilityError", "run_instability", "barrier", "path_alphas", "plot_instability", "CSV_NAME"]

CSV_NAME = "instability.csv"
FIGURE_NAME = "instability"
_DIR = "instability"
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

    def path(self, *parts):
        return os.path.join(self.exp_dir.root, _DIR, f"trial_{self.trial}", *parts)

    def dense_at(self, k):
        """The dense network's weights at iteration k (see the module doc)."""
        from lth_keras import layers
        from lth_keras.pruning.snapshots import WeightSnapshot

        if k == 0:
            return self.theta0
        saved = os.path.join(self.exp_dir.round_dir(self.trial, "ticket", 0), "rewind_weights.npz")
        if k == self.config.rewind_iteration and os.path.exists(saved):
            with np.load(saved) as f:
                return WeightSnapshot.from_arrays(dict(f))
        path = self.path(f"dense_at_{k}.npz")
        if not os.path.exists(path):
            layers.set_masks(self.model, {mw.name: np.ones(tuple(mw.mask.shape)) for mw in layers.masked_weights(self.model)})
            self.theta0.restore(self.model)
            trainer = self.trainer(self.seed)
            trainer.reset_round(iteration=0)
            _train_from(trainer, 0, k, self.log, f"trial {self.trial} dense to iteration {k}")
            results.atomic_write_npz(path, WeightSnapshot.take(self.model).to_arrays())
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
        path = ctx.path(f"round_{round_}", f"k_{k}", f"copy_seed_{seed}.npz")
        if not os.path.exists(path):
            layers.set_masks(ctx.model, mask)
            start.restore(ctx.model)
            trainer = ctx.trainer(seed)
            trainer.reset_round(iteration=k)
            _train_from(trainer, k, ctx.hp.iterations, log, f"{tag} copy {i} (data seed {seed})")
            results.atomic_write_npz(path, WeightSnapshot.take(ctx.model).to_arrays())
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


def _rows(root):
    found = []
    top = os.path.join(root, _DIR)
    if not os.path.isdir(top):
        return found
    for dirpath, _, files in os.walk(top):
        if "row.json" in files:
            with open(os.path.join(dirpath, "row.json"), encoding="utf-8") as f:
                found.append(json.load(f))
    found.sort(key=lambda r: (r["trial"], r["round"], r["rewind_iteration"]))
    return found


def _write_csv(exp_dir) -> str:
    # Under the shared lock: a process that listed the rows before another
    # one's newest row must not write its CSV after that one's.
    with exp_dir.shared_lock():
        rows = _rows(exp_dir.root)
        fixed = ["trial", "round", "pm", "rewind_iteration", "barrier", "end_error", "end_accuracy", "iterations",
                 "seed_0", "seed_1"]
        errors = sorted({k for r in rows for k in r if k.startswith("error_")}, key=lambda c: float(c[6:]))
        path = os.path.join(exp_dir.root, CSV_NAME)
        results.atomic_write_csv(path, rows, fieldnames=fixed + errors)
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
    from lth_keras import cli
    from lth_keras.training import schedule
    from lth_keras.experiment.config import ConfigError, load_dataset

    log = log or (lambda message: print(message, flush=True))
    if seeds is not None and len(seeds) != 2:
        raise InstabilityError(f"--copy_seeds takes two seeds, got {list(seeds)}.")
    try:
        config = cli.saved_config(results_dir, error=InstabilityError)
    except ConfigError as e:
        raise InstabilityError(f"--results: {e}") from None
    exp_dir = results.ExperimentDir(os.path.abspath(results_dir))
    if int(points) < 2:
        raise InstabilityError(f"--points must be at least 2 (the two ends), got {points}.")
    ks = [int(k) for k in rewind_iterations]
    bad = [k for k in ks if not 0 <= k < config.iterations]
    if bad or not ks:
        raise InstabilityError(f"--rewind_iterations must be in [0, {config.iterations}) (the experiment's "
                               f"--iterations), got {list(rewind_iterations)}.")
    if trials is None:  # what the directory holds (config.json keeps only the defining flags' run)
        trials = sorted(t for t in _indices(exp_dir.root, "trial_") if exp_dir.is_round_done(t, "ticket", 0))
    trials = [int(t) for t in trials]
    if not trials:
        raise InstabilityError(f"--results: {results_dir!r} has no finished ticket round 0.")
    for t in trials:
        if not exp_dir.is_round_done(t, "ticket", 0):
            raise InstabilityError(f"--trials: trial {t} has no finished ticket round 0.")
    if rounds is None:
        found = set().union(*(_indices(os.path.join(exp_dir.root, f"trial_{t}", "ticket"), "round_") for t in trials))
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
            if not _is_measured(exp_dir.root, t, r, k, alphas, pair(t))]
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
            lock = exp_dir.lock_path(f"instability_trial_{t}")
            with locks.FileLock(lock, what=f"the instability analysis of trial {t} of {exp_dir.root}",
                                wait=wait_for_lock, advice="pass --wait_for_lock to wait for it, or run other --trials",
                                on_wait=lambda who, t=t: log(f"trial {t}: waiting for {who} (--wait_for_lock)")):
                ctx = None
                for trial, r, k in todo:
                    if trial != t or _is_measured(exp_dir.root, t, r, k, alphas, pair(t)):
                        continue  # another trial, or measured while this process waited
                    ctx = ctx or _Context(config, data, exp_dir, t, log)
                    row = _measure(ctx, r, k, alphas, pair(t))
                    results.atomic_write_json(_row_path(exp_dir.root, t, r, k), row)
                    _write_csv(exp_dir)
    path = _write_csv(exp_dir)
    if figure:
        plot_instability(path, os.path.join(exp_dir.root, FIGURE_NAME + ".png"))
    log(f"Done. Instability: {path}")
    return path


def _indices(directory, prefix):
    """The n of every ``<prefix><n>`` directory in `directory`."""
    if not os.path.isdir(directory):
        return set()
    return {int(name[len(prefix):]) for name in os.listdir(directory)
            if name.startswith(prefix) and name[len(prefix):].isdigit()}


def _row_path(root, trial, round_, k):
    return os.path.join(root, _DIR, f"trial_{trial}", f"round_{round_}", f"k_{k}", "row.json")


def _is_measured(root, trial, round_, k, alphas, seeds):
    """A finished row with these points and seeds (another setting is remeasured;
    trained copies are reused by seed)."""
    try:
        with open(_row_path(root, trial, round_, k), encoding="utf-8") as f:
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


# --------------------------------------------------------------------------
# Binary


def _define_flags(flag_values):
    from absl import flags

    flags.DEFINE_string("results", None, "The experiment directory to analyse (<output_dir>/<experiment>).",
                        flag_values=flag_values)
    flags.DEFINE_list("rounds", [], "Ticket rounds (sparsities) to analyse; 0 is the dense network. "
                      "Default: every finished round.", flag_values=flag_values)
    flags.DEFINE_list("rewind_iterations", ["0", "100", "500", "2000"],
                      "Rewind iterations k the two copies start from.", flag_values=flag_values)
    flags.DEFINE_integer("points", 11, "Points on the linear path between the copies (ends included).",
                         flag_values=flag_values)
    flags.DEFINE_list("trials", [], "Trials to analyse (default: every finished one).", flag_values=flag_values)
    flags.DEFINE_list("copy_seeds", [], "Two data-order seeds for the copies (default: derived from the "
                      "trial's seed). Equal seeds: the same data order.", flag_values=flag_values)
    flags.DEFINE_bool("figure", True, "Also draw instability.png.", flag_values=flag_values)
    flags.DEFINE_bool("wait_for_lock", False, "When another process analyses one of the trials, wait for it "
                      "instead of stopping with an error.", flag_values=flag_values)


def _ints(values, flag):
    try:
        return [int(v) for v in values]
    except ValueError:
        raise InstabilityError(f"--{flag} takes integers, got {','.join(values)}.") from None


def main(argv=None) -> None:
    """Parses the flags and calls `run_instability`; errors are one line."""
    from absl import flags

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lth_keras import cli

    flag_values = flags.FlagValues()
    _define_flags(flag_values)
    cli.parse_command_line(list(sys.argv if argv is None else argv), flag_values, __doc__)
    f = flag_values
    try:
        if not f.results:
            raise InstabilityError("--results is required (an experiment directory).")
        run_instability(
            f.results,
            rounds=_ints(f.rounds, "rounds") or None,
            rewind_iterations=_ints(f.rewind_iterations, "rewind_iterations"),
            points=f.points,
            trials=_ints(f.trials, "trials") or None,
            seeds=_ints(f.copy_seeds, "copy_seeds") or None,
            figure=f.figure,
            wait_for_lock=f.wait_for_lock,
        )
    except (InstabilityError, locks.LockError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
