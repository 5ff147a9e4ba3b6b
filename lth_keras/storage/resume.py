"""Resuming and fanning out an experiment safely: the file side.

What the experiment binary does on disk so that an experiment directory
survives real runs; which rounds depend on which, and so what a damaged
round takes down with it, is the arms' business
(`lth_keras.experiment.resume`, which calls these):

- `parse_trial_ids`: ``--trial_ids=3,4`` or ``0-7`` picks the trials one
  process runs; many processes (a Slurm array, one per GPU) share one
  experiment directory.
- `remove_stale_temp_files`, `check_checkpoint`, `restart_round`,
  `move_file_aside`: cleaning up after a killed process, with one warning
  line each.
- `prepare_experiment`: summary.csv rebuilt from the finished rounds.
- `saved_snapshot`: θ0 and the reinit draws, saved once when first made and
  read back by every later round and process instead of being regenerated.

Warnings go to stderr as one line each. Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable

import numpy as np

from lth_keras.storage import errors, files
from lth_keras.storage.experiment_dir import ExperimentDir

__all__ = [
    "SnapshotMismatchError",
    "check_checkpoint",
    "checkpoint_state_path",
    "move_file_aside",
    "parse_trial_ids",
    "prepare_experiment",
    "remove_stale_temp_files",
    "restart_round",
    "saved_snapshot",
    "warn",
]


class SnapshotMismatchError(errors.ResultsError, ValueError):
    """A saved θ0 (or reinit draw) does not fit the model being trained."""


def warn(message: str) -> None:
    """One warning line on stderr."""
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
# After a killed process


def remove_stale_temp_files(exp_dir: ExperimentDir, trial: int, arms: Iterable[str]) -> None:
    """Deletes the temp files of writes a killed process never finished, in
    the directories of `arms` and ``init`` of trial `trial`.

    They are never results (a write is renamed into place only when whole),
    and the caller holds the trial's lock, so no live process owns them.
    Other arms' directories (a baseline writing on its own) are left alone.
    """
    for top in [*(exp_dir.arm_dir(trial, arm) for arm in arms), exp_dir.init_dir(trial)]:
        for directory, _, names in os.walk(top):
            for name in names:
                if files.is_temp_file(name):
                    try:
                        os.remove(os.path.join(directory, name))
                    except OSError:
                        pass


def checkpoint_state_path(exp_dir: ExperimentDir, trial: int, arm: str, round_: int) -> str:
    """An unfinished round's mid-training checkpoint (state.npz)."""
    return exp_dir.checkpoint_state_path(trial, arm, round_)


def check_checkpoint(exp_dir: ExperimentDir, trial: int, arm: str, round_: int) -> str | None:
    """Moves an unfinished round's unreadable checkpoint aside, with a
    warning (the round restarts from its beginning); returns the new path,
    or None when the checkpoint is absent or whole."""
    state = checkpoint_state_path(exp_dir, trial, arm, round_)
    if not os.path.lexists(state):
        return None
    try:
        files.check_npz(state)
    except errors.CorruptResultError as e:
        moved = files.move_aside(os.path.dirname(state))
        warn(f"{e}; moved to {moved}; trial {trial} {arm} round {round_} restarts from its beginning")
        return moved
    return None


def restart_round(exp_dir: ExperimentDir, trial: int, arm: str, round_: int, why: str) -> str | None:
    """Moves an unfinished round's checkpoint aside, so that it restarts
    from its beginning, with a warning starting with `why`; returns the new
    path (None: there was no checkpoint, and only the warning is given)."""
    directory = exp_dir.checkpoint_path(trial, arm, round_)
    moved = files.move_aside(directory) if os.path.lexists(directory) else None
    warn(f"{why}; " + (f"{directory} moved to {moved}; " if moved else "")
         + f"trial {trial} {arm} round {round_} restarts from its beginning")
    return moved


def move_file_aside(path: str) -> str:
    """Renames a damaged file to ``<path>.corrupt-<UTC time>`` (never
    deletes it); returns the new path."""
    return files.move_aside(path)


# --------------------------------------------------------------------------
# Summary


def prepare_experiment(exp_dir: ExperimentDir) -> None:
    """Rebuilds summary.csv from the finished rounds, with a warning when it
    was unreadable (the chief calls this once config.json is settled): a
    deleted, damaged or out-of-date summary.csv is never trusted."""
    error = exp_dir.check_summary_csv()
    exp_dir.write_summary_csv()
    if error is not None:
        warn(f"{error.path}: {error.reason.split('; rerun')[0]}; rebuilt from the finished rounds")


# --------------------------------------------------------------------------
# θ0 and reinit draws, saved once


def _init_path(exp_dir: ExperimentDir, trial: int, name: str) -> str:
    return exp_dir.init_path(trial, name)


def saved_snapshot(exp_dir: ExperimentDir, trial: int, name: str, snapshot, *, fallback: str | None = None):
    """The weights saved as ``trial_<t>/init/<name>.npz``; saved from
    `snapshot` (a `WeightSnapshot` just drawn) when absent.

    θ0 must be one draw for the whole life of a trial: a resumed process on
    another TensorFlow or Keras version may draw other values from the same
    seed. Experiments from before this file existed take θ0 from `fallback`
    (ticket round 0's reset weights, which are θ0) when that is present.

    Raises:
        SnapshotMismatchError: the saved weights do not fit the model
            (another architecture), naming the file.
        lth_keras.storage.errors.CorruptResultError: the file is unreadable.
    """
    path = _init_path(exp_dir, trial, name)
    source = path
    if not os.path.lexists(path) and fallback and os.path.lexists(fallback):
        source = fallback
    if not os.path.lexists(source):
        files.atomic_write_npz(path, snapshot.to_arrays())
        return snapshot
    saved = type(snapshot).from_arrays(files.read_npz(source))
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
        files.atomic_write_npz(path, saved.to_arrays())
    return saved
