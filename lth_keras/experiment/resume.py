"""Resuming a trial: its lock, and its damaged rounds redone with every
round built on them.

What the runner does around each trial so that an experiment directory
survives real runs:

- `trial_session`: holds the trial's lock while it runs (a second process on
  the same trial is refused, naming the holder, or waits with
  ``--wait_for_lock``), then checks the trial's rounds and moves damaged
  ones aside (`repair_trial`).
- `rounds_to_redo`: which rounds a damaged round takes down with it, from
  the arms' own declarations (`lth_keras.arms.dependencies`): the one table
  of what a round depends on.
- `required_files`: the files a finished round must still have, from its
  arm (`Arm.keeps_trained_weights`, `Arm.keeps_rewind_point`).

The file side (checked reads, moving aside, temp files, θ0 saved once) is
`lth_keras.storage.resume`. Warnings go to stderr as one line each.

Example:

```python
from lth_keras.experiment import resume

with resume.trial_session(exp_dir, trial, config):
    ...   # train the trial's rounds; damaged ones were moved aside
```
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterable, Mapping

from lth_keras import arms
from lth_keras.experiment import trial_state
from lth_keras.storage import errors, files, layout
from lth_keras.storage import resume as disk
from lth_keras.storage.experiment_dir import ExperimentDir

__all__ = ["repair_trial", "required_files", "rounds_to_redo", "trial_session"]

Round = tuple  # (arm, round)


def required_files(config, arm: str, round_: int) -> list[str]:
    """The files a finished round of `arm` must have besides every round's
    (later rounds and export read them back): its trained weights when the
    arm keeps them; in round 0 of the arm keeping the rewind point, the
    weights at the rewind iteration (every arm's reset point) when
    ``config.rewind_iteration`` > 0.

    Example:
        >>> import types
        >>> config = types.SimpleNamespace(rewind_iteration=100)
        >>> required_files(config, "ticket", 0), required_files(config, "gradual", 2), required_files(config, "reinit", 1)
        (['trained_weights.npz', 'rewind_weights.npz'], ['trained_weights.npz'], [])
    """
    spec = arms.get(arm)
    rewind = spec.keeps_rewind_point and round_ == 0 and config.rewind_iteration > 0
    return ([layout.TRAINED_FILE] if spec.keeps_trained_weights else []) + ([layout.REWIND_FILE] if rewind else [])


def rounds_to_redo(
    damaged: Iterable[Round], present: Iterable[Round], depends_on: Mapping[str, Callable]
) -> set:
    """The damaged rounds and every present round built on them, directly or
    through other rounds.

    Args:
        damaged: ``(arm, round)`` pairs whose files are bad or missing.
        present: ``(arm, round)`` pairs that exist on disk.
        depends_on: ``{arm: round -> [(arm, round), ...]}``
            (`lth_keras.arms.dependencies`); arms missing from it depend on
            nothing (they are left alone).

    Example:
        >>> import types
        >>> deps = arms.dependencies(types.SimpleNamespace(controls=("reinit",), one_shot=False))
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


def _check_rewind_point(exp_dir: ExperimentDir, trial: int, arm: str, rewind_iteration: int) -> None:
    """An unfinished round 0 that saves the rewind point restarts from its
    beginning when the rewind point is damaged, or lost while its checkpoint
    is past the rewind iteration (it cannot be saved again from there)."""
    path = exp_dir.rewind_weights_path(trial, arm, 0)
    state = disk.checkpoint_state_path(exp_dir, trial, arm, 0)
    if os.path.lexists(path):
        try:
            files.check_npz(path)
        except errors.CorruptResultError as e:
            disk.restart_round(exp_dir, trial, arm, 0, f"{e}; moved to {disk.move_file_aside(path)}")
        return
    if not os.path.lexists(state):
        return
    try:
        past = trial_state.checkpoint_iteration(state) > rewind_iteration
    except errors.CorruptResultError as e:
        disk.restart_round(exp_dir, trial, arm, 0, str(e))
        return
    if past:
        disk.restart_round(exp_dir, trial, arm, 0, f"{path}: missing, but the round's checkpoint is past the "
                                                    f"rewind iteration {rewind_iteration}")


def repair_trial(exp_dir: ExperimentDir, trial: int, config) -> list[str]:
    """Checks every round of `trial` of the ticket and ``config.controls``;
    moves the damaged ones and those built on them aside
    (``round_<r>.corrupt-<time>``) so that the run retrains them. Returns
    the new paths.

    A round is damaged when a file of a finished round is missing (every
    round's, and `required_files`), truncated or unparsable, or when a round
    others were built on is gone. Each damaged file gets one warning line
    naming it. An unfinished round restarts from its beginning when its
    checkpoint is unreadable, or when it saves the rewind point and that is
    damaged, or lost after the checkpoint passed it.
    """
    depends_on = arms.dependencies(config)
    disk.remove_stale_temp_files(exp_dir, trial, depends_on)
    present = {p for p in exp_dir.round_dirs(trial) if p[0] in depends_on}
    damaged = {}
    for arm, round_ in sorted(present, key=lambda p: (p[1], p[0])):
        status, error = exp_dir.round_status(trial, arm, round_, required_files(config, arm, round_))
        if status == "corrupt":
            damaged[(arm, round_)] = str(error)
        elif status == "unfinished":
            disk.check_checkpoint(exp_dir, trial, arm, round_)
            if round_ == 0 and arms.get(arm).keeps_rewind_point and config.rewind_iteration > 0:
                _check_rewind_point(exp_dir, trial, arm, config.rewind_iteration)
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
        moved.append(exp_dir.move_aside(trial, arm, round_))
    for (arm, round_), message in sorted(damaged.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        others = redo & present - {(arm, round_)}
        name = os.path.basename(exp_dir.round_dir(trial, arm, round_))
        aside = f" moved aside ({name}.corrupt-*) and" if (arm, round_) in present else ""
        disk.warn(f"{message}; trial {trial} {arm} round {round_}{aside} retrained"
                   + (f", with the {len(others)} round(s) built on it" if others else ""))
    return moved


@contextlib.contextmanager
def trial_session(exp_dir: ExperimentDir, trial: int, config, *, sync=None, log=print):
    """Holds trial `trial`'s lock and repairs its rounds (`repair_trial`),
    for the `with` body.

    Only the chief locks and repairs (other workers write nowhere shared);
    with several workers, all of them learn whether the chief was refused.

    Raises:
        lth_keras.storage.locks.LockHeldError: another process runs the
            trial and ``config.wait_for_lock`` is False.
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
            repair_trial(exp_dir, trial, config)
        yield
    finally:
        if lock is not None:
            lock.release()
