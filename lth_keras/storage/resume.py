"""Resuming and fanning out an experiment safely.

What the experiment binary does around each trial so that an experiment
directory survives real runs:

- `parse_trial_ids`: ``--trial_ids=3,4`` or ``0-7`` picks the trials one
  process runs; many processes (a Slurm array, one per GPU) share one
  experiment directory.
- `trial_session`: holds the trial's lock while it runs (a second process on
  the same trial is refused, naming the holder, or waits with
  ``--wait_for_lock``), then checks the trial's finished rounds and moves
  damaged ones aside (`repair_trial`).
- `rounds_to_redo`: which rounds a damaged round takes down with it, from a
  table of dependencies (`experiment_dependencies`).
- `saved_snapshot`: θ0 and the reinit draws, saved once when first made and
  read back by every later round and process instead of being regenerated.

Warnings go to stderr as one line each. Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterable, Mapping

import numpy as np

from lth_keras.storage import results

__all__ = [
    "SnapshotMismatchError",
    "experiment_dependencies",
    "parse_trial_ids",
    "prepare_experiment",
    "repair_trial",
    "rounds_to_redo",
    "saved_snapshot",
    "trial_session",
]

Round = tuple  # (arm, round)


class SnapshotMismatchError(results.ResultsError, ValueError):
    """A saved θ0 (or reinit draw) does not fit the model being trained."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Which trials


def parse_trial_ids(spec: str | None, trials: int) -> list[int]:
    """The trials a process runs: every trial < `trials` when `spec` is
    empty, else the ids in `spec` ("3", "3,4", "0-7", "0-3,8"), sorted.

    Raises:
        ValueError: a malformed spec or an id not below `trials`.

    Example:
        >>> parse_trial_ids("0-2,5", trials=8)
        [0, 1, 2, 5]
        >>> parse_trial_ids(None, trials=2)
        [0, 1]
        >>> parse_trial_ids("9", trials=8)
        Traceback (most recent call last):
        ...
        ValueError: trial 9 is not below --trials=8 (ids run from 0 to 7)
    """
    if spec is None or not str(spec).strip():
        return list(range(trials))
    ids = set()
    for part in str(spec).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                ids.update(range(lo, hi + 1))
            else:
                ids.add(int(part))
        except ValueError:
            raise ValueError(
                f"{part!r} is not a trial id or range (expected e.g. 3 or 3,4 or 0-7)"
            ) from None
    for t in sorted(ids):
        if t < 0 or t >= trials:
            raise ValueError(f"trial {t} is not below --trials={trials} (ids run from 0 to {trials - 1})")
    return sorted(ids)


# --------------------------------------------------------------------------
# Dependencies between rounds


def experiment_dependencies(arms: Iterable[str], *, one_shot: bool = False) -> dict[str, Callable]:
    """``{arm: round -> [(arm, round) it is built from]}`` for the experiment.

    Ticket round r's mask is pruned from ticket round r-1's mask and trained
    weights (round 0's, with one-shot pruning); every round >= 1 also resets
    to round 0's rewind point. A control at round r takes ticket round r's
    mask (and reset point).

    Example:
        >>> deps = experiment_dependencies(["ticket", "reinit"])
        >>> deps["ticket"](3), deps["reinit"](3)
        ([('ticket', 2)], [('ticket', 3)])
    """
    def ticket(r):
        if r == 0:
            return []
        return [("ticket", 0)] if one_shot else [("ticket", r - 1)]

    table = {"ticket": ticket}
    for arm in arms:
        if arm != "ticket":
            table[arm] = lambda r: [("ticket", r)]
    return table


def rounds_to_redo(
    damaged: Iterable[Round], present: Iterable[Round], depends_on: Mapping[str, Callable]
) -> set:
    """The damaged rounds and every present round built on them, directly or
    through other rounds.

    Args:
        damaged: ``(arm, round)`` pairs whose files are bad or missing.
        present: ``(arm, round)`` pairs that exist on disk.
        depends_on: ``{arm: round -> [(arm, round), ...]}``; arms missing
            from it depend on nothing (they are left alone).

    Example:
        >>> deps = experiment_dependencies(["ticket", "reinit"])
        >>> present = {("ticket", r) for r in range(4)} | {("reinit", r) for r in (1, 2, 3)}
        >>> sorted(rounds_to_redo({("ticket", 2)}, present, deps))
        [('reinit', 2), ('reinit', 3), ('ticket', 2), ('ticket', 3)]
    """
    redo = set(damaged)
    pending = sorted(set(present) - redo, key=lambda p: (p[1], p[0]))
    changed = True
    while changed:  # rounds are few; a fixed point is cheap and order-free
        changed = False
        for item in pending:
            if item in redo:
                continue
            deps = depends_on.get(item[0], lambda r: [])(item[1])
            if any(d in redo for d in deps):
                redo.add(item)
                changed = True
    return redo


def _required_files(arm: str, round_: int, rewind: bool) -> list[str]:
    # Later rounds read these back: the ticket's trained weights (next mask),
    # round 0's weights at the rewind iteration (every reset).
    if arm != "ticket":
        return []
    return ["trained_weights.npz"] + (["rewind_weights.npz"] if round_ == 0 and rewind else [])


def _remove_stale_temp_files(exp_dir, trial, arms) -> None:
    """Deletes the temp files of writes a killed process never finished.

    They are never results (a write is renamed into place only when whole),
    and the caller holds the trial's lock, so no live process owns them.
    Other arms' directories (a baseline writing on its own) are left alone.
    """
    trial_dir = os.path.join(exp_dir.root, f"trial_{int(trial)}")
    for sub in [*arms, "init"]:
        for directory, _, files in os.walk(os.path.join(trial_dir, sub)):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    try:
                        os.remove(os.path.join(directory, name))
                    except OSError:
                        pass


def repair_trial(
    exp_dir: results.ExperimentDir,
    trial: int,
    depends_on: Mapping[str, Callable],
    *,
    required: Callable[[str, int], list] = lambda arm, r: [],
) -> list[str]:
    """Checks every round of `trial` whose arm is in `depends_on`; moves the
    damaged ones and those built on them aside (``round_<r>.corrupt-<time>``)
    so that the run retrains them. Returns the new paths.

    A round is damaged when a file of a finished round is missing, truncated
    or unparsable, or when a round others were built on is gone. Each damaged
    file gets one warning line naming it. An unfinished round's unreadable
    checkpoint is moved aside too (the round restarts from its beginning).
    """
    _remove_stale_temp_files(exp_dir, trial, depends_on)
    present = {p for p in exp_dir.round_dirs(trial) if p[0] in depends_on}
    damaged = {}
    for arm, round_ in sorted(present, key=lambda p: (p[1], p[0])):
        status, error = exp_dir.round_status(trial, arm, round_, required(arm, round_))
        if status == "corrupt":
            damaged[(arm, round_)] = str(error)
        elif status == "unfinished":
            state = os.path.join(exp_dir.checkpoint_path(trial, arm, round_), "state.npz")
            if os.path.lexists(state):
                try:
                    results.check_npz(state)
                except results.CorruptResultError as e:
                    moved = results._move_aside(os.path.dirname(state))
                    warn(f"{e}; moved to {moved}; trial {trial} {arm} round {round_} restarts from its beginning")
    # A round that others were built on but that is gone entirely.
    for arm, round_ in present:
        for dep in depends_on[arm](round_):
            if dep not in present and dep not in damaged and dep[0] in depends_on:
                damaged[dep] = (f"{exp_dir.round_dir(trial, *dep)}: missing, but "
                                f"{exp_dir.round_dir(trial, arm, round_)} was built on it")
    if not damaged:
        return []
    redo = rounds_to_redo(damaged, present, depends_on)
    moved = []
    for arm, round_ in sorted(redo & present, key=lambda p: (p[1], p[0])):
        path = exp_dir.move_aside(trial, arm, round_)
        moved.append(path)
    for (arm, round_), message in sorted(damaged.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        others = redo & present - {(arm, round_)}
        aside = " moved aside (round_{}.corrupt-*) and".format(round_) if (arm, round_) in present else ""
        warn(f"{message}; trial {trial} {arm} round {round_}{aside} retrained"
             + (f", with the {len(others)} round(s) built on it" if others else ""))
    return moved


# --------------------------------------------------------------------------
# Per-trial session: lock + repair


@contextlib.contextmanager
def trial_session(exp_dir: results.ExperimentDir, trial: int, config, *, sync=None, log=print,
                  depends_on: Mapping[str, Callable] | None = None):
    """Holds trial `trial`'s lock and repairs its rounds, for the `with` body.

    Only the chief locks and repairs (other workers write nowhere shared);
    with several workers, all of them learn whether the chief was refused.
    `depends_on` (see `rounds_to_redo`) defaults to `experiment_dependencies`
    of the ticket and ``config.controls``.

    Raises:
        lth_keras.locks.LockHeldError: another process runs the trial and
            ``config.wait_for_lock`` is False.
    """
    chief = sync is None or sync.is_chief
    lock, refused = None, None
    if chief:
        lock = exp_dir.trial_lock(
            trial, wait=getattr(config, "wait_for_lock", False),
            on_wait=lambda who: log(f"trial {trial}: waiting for {who} to finish it (--wait_for_lock)"),
        )
        try:
            lock.acquire()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the workers agree
            refused = e
    if sync is not None and sync.value(refused is not None) and refused is None:
        raise RuntimeError(f"The chief could not lock trial {trial}; see its log.")
    if refused is not None:
        raise refused
    try:
        if chief:
            deps = depends_on or experiment_dependencies(("ticket",) + tuple(config.controls), one_shot=config.one_shot)
            rewind = config.rewind_iteration > 0
            repair_trial(exp_dir, trial, deps, required=lambda a, r: _required_files(a, r, rewind))
        yield
    finally:
        if lock is not None:
            lock.release()


def prepare_experiment(exp_dir: results.ExperimentDir) -> None:
    """Rebuilds summary.csv from the finished rounds, with a warning when it
    was unreadable (the chief calls this once config.json is settled): a
    deleted, damaged or out-of-date summary.csv is never trusted."""
    error = exp_dir.check_summary_csv()
    exp_dir.write_summary_csv()
    if error is not None:
        warn(f"{error.path}: {error.reason.split('; rerun')[0]}; rebuilt from the finished rounds")


# --------------------------------------------------------------------------
# θ0 and reinit draws, saved once


def _init_path(exp_dir: results.ExperimentDir, trial: int, name: str) -> str:
    return os.path.join(exp_dir.root, f"trial_{int(trial)}", "init", f"{name}.npz")


def saved_snapshot(exp_dir: results.ExperimentDir, trial: int, name: str, snapshot, *, fallback: str | None = None):
    """The weights saved as ``trial_<t>/init/<name>.npz``; saved from
    `snapshot` (a `WeightSnapshot` just drawn) when absent.

    θ0 must be one draw for the whole life of a trial: a resumed process on
    another TensorFlow or Keras version may draw other values from the same
    seed. Experiments from before this file existed take θ0 from `fallback`
    (ticket round 0's reset weights, which are θ0) when that is present.

    Raises:
        SnapshotMismatchError: the saved weights do not fit the model
            (another architecture), naming the file.
        lth_keras.results.CorruptResultError: the file is unreadable.
    """
    path = _init_path(exp_dir, trial, name)
    source = path
    if not os.path.lexists(path) and fallback and os.path.lexists(fallback):
        source = fallback
    if not os.path.lexists(source):
        results.atomic_write_npz(path, snapshot.to_arrays())
        return snapshot
    saved = type(snapshot).from_arrays(results.read_npz(source))
    if len(saved.values) != len(snapshot.values):
        raise SnapshotMismatchError(
            f"{source}: holds {len(saved.values)} variables but the model has {len(snapshot.values)}: "
            "it was saved for another architecture; restore the right file or start a new --experiment")
    for i, (have, want) in enumerate(zip(saved.values, snapshot.values)):
        if tuple(have.shape) != tuple(want.shape) or np.dtype(have.dtype) != np.dtype(want.dtype):
            raise SnapshotMismatchError(
                f"{source}: variable {i} ({snapshot.paths[i]}) is {have.dtype}{list(have.shape)} but the model's "
                f"is {np.dtype(want.dtype)}{list(want.shape)}: it was saved for another architecture; "
                "restore the right file or start a new --experiment")
    saved.paths = list(snapshot.paths)
    if source != path:
        results.atomic_write_npz(path, saved.to_arrays())
    return saved
