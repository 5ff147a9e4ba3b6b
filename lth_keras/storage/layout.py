"""Where every file of an experiment directory lives: the one place its names are spelled.

An experiment lives under ``<output_dir>/<experiment>`` and looks like::

    config.json                       experiment-defining flags
    flags.json                        every flag of the latest run
    summary.csv                       one row per finished (trial, arm, round)
    .locks/                           OS file locks: one per trial, one for the shared files
    trial_0/init/
        theta0.npz                    θ0, saved when first drawn, read back ever after
        reinit_round_<r>.npz          the reinit control's draws, likewise
    trial_0/ticket/round_0/
        mask.npz                      masked-weight name -> mask array
        reset_weights.npz             start weights by position (snapshots.WeightSnapshot.to_arrays)
        trained_weights.npz           trained weights, likewise (arms that keep them)
        rewind_weights.npz            weights at the rewind iteration (the arm that keeps them, round 0)
        curve.csv                     one row per evaluation
        summary.json                  written LAST: its presence marks the round done
        checkpoint/state.npz          trainer's mid-round checkpoint (removed when done)
    trial_0/ticket/round_2.corrupt-<time>/   a damaged round, moved aside and retrained
    tensorboard/trial_0/ticket/round_0/      TensorBoard logs (--tensorboard)
    instability.csv, instability.png  the instability analysis (python -m lth_keras.instability)
    instability/trial_0/
        dense_at_<k>.npz              the dense network at iteration k
        round_<r>/k_<k>/copy_seed_<s>.npz, row.json   trained copies, the finished measurement

`ExperimentLayout` turns (trial, arm, round) into these paths and lists what
is on disk; `lth_keras.storage.experiment_dir.ExperimentDir` adds the checked
reads and writes. Neither imports TensorFlow or Keras.

Example:
    >>> import os, tempfile
    >>> exp = ExperimentLayout(tempfile.mkdtemp())
    >>> os.path.relpath(exp.mask_path(1, "reinit", 3), exp.root)
    'trial_1/reinit/round_3/mask.npz'
    >>> exp.trials(), exp.is_experiment()
    ([], False)
"""

from __future__ import annotations

import operator
import os
import re
from typing import Any

from lth_keras.storage import locks

__all__ = ["ExperimentLayout", "is_experiment_dir", "check_index", "check_arm", "CONFIG_FILE", "FLAGS_FILE",
           "SUMMARY_CSV", "MASK_FILE", "RESET_FILE", "TRAINED_FILE", "REWIND_FILE", "CURVE_FILE", "SUMMARY_FILE",
           "INSTABILITY_CSV", "INSTABILITY_FIGURE", "SHARED_LOCK_TIMEOUT_S", "EXPERIMENT_MARKERS"]

# -- the experiment's own files ---------------------------------------------
CONFIG_FILE = "config.json"
FLAGS_FILE = "flags.json"
SUMMARY_CSV = "summary.csv"
LOCK_DIR = ".locks"
TENSORBOARD_DIR = "tensorboard"
# -- trials, arms, rounds ---------------------------------------------------
_TRIAL_DIR = "trial_{}"
_ROUND_DIR = "round_{}"
_TRIAL_RE = re.compile(r"trial_(\d+)", re.ASCII)  # matched whole (fullmatch)
_ROUND_RE = re.compile(r"round_(\d+)", re.ASCII)
INIT_DIR = "init"
# What marks a directory as an experiment (`is_experiment_dir`), for messages.
EXPERIMENT_MARKERS = f"{SUMMARY_CSV} or {_TRIAL_DIR.format('*')}/"
# -- a round's files --------------------------------------------------------
MASK_FILE = "mask.npz"
RESET_FILE = "reset_weights.npz"
TRAINED_FILE = "trained_weights.npz"
REWIND_FILE = "rewind_weights.npz"
CURVE_FILE = "curve.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.npz"
# Present while a round's files are being written: a round with result files
# but no summary.json was interrupted while being written, not damaged.
WRITING_MARKER = ".writing"
# Files whose presence without summary.json means a finished round lost its
# summary (they are written only after training, summary.json last).
RESULT_FILES = (MASK_FILE, RESET_FILE, CURVE_FILE)
# -- the instability analysis -----------------------------------------------
INSTABILITY_CSV = "instability.csv"
INSTABILITY_FIGURE = "instability.png"
_INSTABILITY_DIR = "instability"
_INSTABILITY_ROW = "row.json"

# How long a writer waits for another process's short lock around
# config.json and summary.csv before it gives up with one line naming it.
SHARED_LOCK_TIMEOUT_S = 300.0


def check_index(name: str, value: Any) -> int:
    """`value` as a trial or round index; raises for a negative or non-integer one.

    Example:
        >>> check_index("round", 3)
        3
    """
    value = operator.index(value)  # accepts numpy ints, rejects floats
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_arm(arm: str) -> str:
    """`arm` if it is a safe directory name, else ValueError.

    Example:
        >>> check_arm("../x")
        Traceback (most recent call last):
        ...
        ValueError: invalid arm name: '../x'
    """
    # The arm becomes a directory name; refuse anything that could escape root.
    if (
        not isinstance(arm, str)
        or not arm
        or arm in (".", "..")
        or "/" in arm
        or (os.altsep and os.altsep in arm)
        or os.sep in arm
    ):
        raise ValueError(f"invalid arm name: {arm!r}")
    return arm


def _subdirs(path: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n)))
    except OSError:
        return []


def _indices(path: str, pattern: re.Pattern) -> list[int]:
    return sorted(int(m.group(1)) for m in map(pattern.fullmatch, _subdirs(path)) if m)


def is_experiment_dir(path: str) -> bool:
    """True if `path` holds summary.csv or a trial_<t>/ directory.

    Example:
        >>> import tempfile
        >>> is_experiment_dir(tempfile.mkdtemp())
        False
    """
    return ExperimentLayout(path).is_experiment()


class ExperimentLayout:
    """The paths of one experiment directory, and what it holds (see the module doc).

    Nothing is created or read here except directory listings.

    Args:
        root: the experiment directory (``<output_dir>/<experiment>``).

    Example:
        >>> exp = ExperimentLayout("runs/lenet")
        >>> exp.round_dir(1, "reinit", 3)
        'runs/lenet/trial_1/reinit/round_3'
        >>> exp.summary_csv_path
        'runs/lenet/summary.csv'
    """

    def __init__(self, root: str):
        self.root = os.fspath(root)

    # -- the experiment's files ----------------------------------------------

    @property
    def config_path(self) -> str:
        """config.json: the experiment-defining flags."""
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def flags_path(self) -> str:
        """flags.json: every flag of the latest run."""
        return os.path.join(self.root, FLAGS_FILE)

    @property
    def summary_csv_path(self) -> str:
        """summary.csv: one row per finished round."""
        return os.path.join(self.root, SUMMARY_CSV)

    def tensorboard_dir(self, trial: int, arm: str, round_: int) -> str:
        """TensorBoard's log directory for a round (``tensorboard/trial_<t>/<arm>/round_<r>``)."""
        return os.path.join(self.root, TENSORBOARD_DIR, _TRIAL_DIR.format(check_index("trial", trial)),
                            check_arm(arm), _ROUND_DIR.format(check_index("round", round_)))

    # -- trials, arms and rounds ---------------------------------------------

    def trial_dir(self, trial: int) -> str:
        """root/trial_<t>."""
        return os.path.join(self.root, _TRIAL_DIR.format(check_index("trial", trial)))

    def arm_dir(self, trial: int, arm: str) -> str:
        """root/trial_<t>/<arm>: the arm's rounds."""
        return os.path.join(self.trial_dir(trial), check_arm(arm))

    def round_dir(self, trial: int, arm: str, round_: int) -> str:
        """root/trial_<t>/<arm>/round_<r>."""
        return os.path.join(self.arm_dir(trial, arm), _ROUND_DIR.format(check_index("round", round_)))

    def init_dir(self, trial: int) -> str:
        """root/trial_<t>/init: θ0 and other draws saved once."""
        return os.path.join(self.trial_dir(trial), INIT_DIR)

    def init_path(self, trial: int, name: str) -> str:
        """root/trial_<t>/init/<name>.npz (θ0 is ``theta0``)."""
        return os.path.join(self.init_dir(trial), f"{name}.npz")

    def trials(self) -> list[int]:
        """Every t with a trial_<t>/ directory, sorted."""
        return _indices(self.root, _TRIAL_RE)

    def arms(self, trial: int) -> list[str]:
        """The arm directories of a trial (every subdirectory but init/), sorted by name."""
        return [a for a in _subdirs(self.trial_dir(trial)) if a != INIT_DIR]

    def rounds(self, trial: int, arm: str) -> list[int]:
        """Every r with a round_<r>/ directory of the arm, finished or not, sorted.

        Example:
            >>> import tempfile
            >>> exp = ExperimentLayout(tempfile.mkdtemp())
            >>> for r in (10, 2):
            ...     os.makedirs(exp.round_dir(0, "ticket", r))
            >>> exp.rounds(0, "ticket"), exp.rounds(0, "reinit")
            ([2, 10], [])
        """
        return _indices(self.arm_dir(trial, arm), _ROUND_RE)

    def round_dirs(self, trial: int) -> set[tuple[str, int]]:
        """Every ``(arm, round)`` with a round_<r> directory in the trial."""
        return {(arm, r) for arm in self.arms(trial) for r in self.rounds(trial, arm)}

    def is_experiment(self) -> bool:
        """True if root holds summary.csv or a trial_<t>/ directory."""
        if not os.path.isdir(self.root):
            return False
        return os.path.isfile(self.summary_csv_path) or bool(self.trials())

    # -- a round's files -----------------------------------------------------

    def _file(self, trial: int, arm: str, round_: int, name: str) -> str:
        return os.path.join(self.round_dir(trial, arm, round_), name)

    def mask_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's mask.npz."""
        return self._file(trial, arm, round_, MASK_FILE)

    def reset_weights_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's reset_weights.npz (the weights it started from; θ0 for ticket round 0)."""
        return self._file(trial, arm, round_, RESET_FILE)

    def trained_weights_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's trained_weights.npz (arms that keep trained weights)."""
        return self._file(trial, arm, round_, TRAINED_FILE)

    def rewind_weights_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's rewind_weights.npz: the weights at the rewind iteration
        (round 0 of the arm that keeps the rewind point)."""
        return self._file(trial, arm, round_, REWIND_FILE)

    def curve_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's curve.csv."""
        return self._file(trial, arm, round_, CURVE_FILE)

    def summary_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's summary.json (present: the round is done)."""
        return self._file(trial, arm, round_, SUMMARY_FILE)

    def writing_marker_path(self, trial: int, arm: str, round_: int) -> str:
        """Present while the round's result files are being written."""
        return self._file(trial, arm, round_, WRITING_MARKER)

    def checkpoint_path(self, trial: int, arm: str, round_: int) -> str:
        """Directory for the trainer's mid-round checkpoints (not created here)."""
        return self._file(trial, arm, round_, CHECKPOINT_DIR)

    def checkpoint_state_path(self, trial: int, arm: str, round_: int) -> str:
        """The round's mid-round checkpoint file (checkpoint/state.npz)."""
        return os.path.join(self.checkpoint_path(trial, arm, round_), CHECKPOINT_STATE)

    # -- locks ---------------------------------------------------------------

    def lock_path(self, name: str) -> str:
        """root/.locks/<name>.lock (see `lth_keras.storage.locks`)."""
        return os.path.join(self.root, LOCK_DIR, f"{name}.lock")

    def shared_lock(self) -> "locks.FileLock":
        """The short lock around the experiment's shared files (config.json,
        summary.csv, instability.csv). Writers take it; readers need not
        (writes are atomic)."""
        # Held for milliseconds; minutes mean a stopped or hung holder.
        return locks.FileLock(self.lock_path("experiment"), what=f"the shared files of experiment {self.root}",
                              wait=True, timeout=SHARED_LOCK_TIMEOUT_S)

    def trial_lock(self, trial: int, *, wait: bool = False, on_wait=None) -> "locks.FileLock":
        """The lock a process holds while it runs trial `trial`."""
        return locks.FileLock(
            self.lock_path(_TRIAL_DIR.format(check_index("trial", trial))),
            what=f"trial {trial} of {self.root}", wait=wait, on_wait=on_wait,
            advice="pass --wait_for_lock to wait for it, or run other --trial_ids",
        )

    def instability_lock_path(self, trial: int) -> str:
        """The lock file of trial `trial`'s instability analysis."""
        return self.lock_path(f"{_INSTABILITY_DIR}_{_TRIAL_DIR.format(check_index('trial', trial))}")

    # -- the instability analysis --------------------------------------------

    @property
    def instability_csv_path(self) -> str:
        """instability.csv: one row per measured (trial, round, k)."""
        return os.path.join(self.root, INSTABILITY_CSV)

    @property
    def instability_figure_path(self) -> str:
        """instability.png: the analysis's figure."""
        return os.path.join(self.root, INSTABILITY_FIGURE)

    def instability_dir(self, trial: int) -> str:
        """root/instability/trial_<t>: the analysis's files of one trial."""
        return os.path.join(self.root, _INSTABILITY_DIR, _TRIAL_DIR.format(check_index("trial", trial)))

    def dense_at_path(self, trial: int, k: int) -> str:
        """The dense network's weights at iteration k (instability/trial_<t>/dense_at_<k>.npz)."""
        return os.path.join(self.instability_dir(trial), f"dense_at_{check_index('k', k)}.npz")

    def _instability_point(self, trial: int, round_: int, k: int) -> str:
        return os.path.join(self.instability_dir(trial), _ROUND_DIR.format(check_index("round", round_)),
                            f"k_{check_index('k', k)}")

    def instability_copy_path(self, trial: int, round_: int, k: int, seed: int) -> str:
        """One trained copy of (round, k), by its data-order seed."""
        return os.path.join(self._instability_point(trial, round_, k), f"copy_seed_{int(seed)}.npz")

    def instability_row_path(self, trial: int, round_: int, k: int) -> str:
        """The finished measurement of (round, k): row.json."""
        return os.path.join(self._instability_point(trial, round_, k), _INSTABILITY_ROW)

    def instability_row_paths(self) -> list[str]:
        """Every row.json under root/instability/, in directory-walk order."""
        found = []
        for dirpath, _, files in os.walk(os.path.join(self.root, _INSTABILITY_DIR)):
            if _INSTABILITY_ROW in files:
                found.append(os.path.join(dirpath, _INSTABILITY_ROW))
        return found
