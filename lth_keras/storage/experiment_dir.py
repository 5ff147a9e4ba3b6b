"""`ExperimentDir`: one experiment's rounds, summary.csv and config.json, read and written safely.

It adds to `lth_keras.storage.layout.ExperimentLayout` (where each file is)
what is done with the files: a finished round is written file by file with
summary.json last (`write_round`), read back checked (`read_mask`, ...),
checked whole and repaired (`round_status`, `move_aside`), summarised into
summary.csv (`write_summary_csv`), and a rerun is compared with the saved
config.json (`check_and_save_config`).

Every write is atomic and every read checked (`lth_keras.storage.files`).
Imports neither TensorFlow nor Keras, so analysis and plotting use it cheaply.

Example:
    >>> import tempfile, numpy as np
    >>> exp = ExperimentDir(tempfile.mkdtemp())
    >>> curve = [dict(iteration=0, train_loss=None, train_accuracy=None,
    ...               val_loss=2.3, val_accuracy=0.1, test_accuracy=0.1)]
    >>> _ = exp.write_round(0, "ticket", 0, mask={"d": np.ones(2, bool)},
    ...                     reset_weights={"d": np.zeros(2)}, curve=curve,
    ...                     summary={"pm": 100.0, "pm_per_layer": {"d": 100.0}})
    >>> exp.is_round_done(0, "ticket", 0), exp.finished_rounds(0, "ticket")
    (True, [0])
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Iterable

import numpy as np

from lth_keras.storage import curves, files, layout, summary as summary_io
from lth_keras.storage.errors import ConfigMismatchError, CorruptResultError

__all__ = ["ExperimentDir"]


class ExperimentDir(layout.ExperimentLayout):
    """Readers and writers for one experiment's directory.

    Args:
        root: the experiment directory (``<output_dir>/<experiment>``).
        arm_order: the sort key of arms in `summaries` and summary.csv; the
            experiment runner passes `lth_keras.arms.order_key`. None sorts
            arms by name.

    Example:
        >>> import tempfile
        >>> exp = ExperimentDir(tempfile.mkdtemp())
        >>> exp.round_dir(1, "reinit", 3).endswith("trial_1/reinit/round_3")
        True
    """

    def __init__(self, root: str, *, arm_order: summary_io.ArmOrder = None):
        super().__init__(root)
        self.arm_order = arm_order

    # -- the experiment's files ----------------------------------------------

    def read_config(self) -> dict:
        """config.json (the defining flags); checked: `CorruptResultError`."""
        return files.read_json(self.config_path)

    def read_flags(self) -> dict:
        """flags.json (every flag of the latest run); checked: `CorruptResultError`."""
        return files.read_json(self.flags_path)

    def write_flags(self, flags: dict) -> None:
        """Writes flags.json (every flag of this run), atomically."""
        files.atomic_write_json(self.flags_path, flags)

    # -- rounds --------------------------------------------------------------

    def is_round_done(self, trial: int, arm: str, round_: int) -> bool:
        """True iff the round's summary.json exists and parses as a JSON object."""
        return summary_io.is_round_summary(self.summary_path(trial, arm, round_))

    def finished_rounds(self, trial: int, arm: str) -> list[int]:
        """The arm's done rounds in the trial, sorted (an invalid arm has none)."""
        try:
            rounds = self.rounds(trial, arm)
        except (TypeError, ValueError):
            return []
        return [r for r in rounds if self.is_round_done(trial, arm, r)]

    def write_round(
        self,
        trial: int,
        arm: str,
        round_: int,
        *,
        mask: dict[str, np.ndarray],
        reset_weights: dict[str, np.ndarray],
        curve: list[dict],
        summary: dict,
    ) -> dict:
        """Saves a finished round; returns the summary as written to summary.json.

        The summary is ``summary`` merged with ``early_stop_metrics(curve)`` and
        {"trial", "arm", "round"} (later ones win). summary.json is written last
        so a crash at any point leaves the round "not done" and it is redone.

        Example:
            >>> import tempfile, numpy as np
            >>> exp = ExperimentDir(tempfile.mkdtemp())
            >>> row = dict(iteration=0, train_loss=None, train_accuracy=None,
            ...            val_loss=1.0, val_accuracy=0.5, test_accuracy=0.4)
            >>> s = exp.write_round(0, "ticket", 0, mask={}, reset_weights={},
            ...                     curve=[row], summary={"pm": 100.0})
            >>> s["final_test_accuracy"], s["arm"]
            (0.4, 'ticket')
        """
        trial = layout.check_index("trial", trial)
        round_ = layout.check_index("round", round_)
        layout.check_arm(arm)
        merged = dict(summary)
        merged.update(curves.early_stop_metrics(curve))
        merged.update({"trial": trial, "arm": arm, "round": round_})
        merged = files.to_jsonable(merged)

        summary_path = self.summary_path(trial, arm, round_)
        # When redoing a round, un-mark it first so a crash mid-rewrite cannot
        # leave an old summary next to new arrays.
        if os.path.exists(summary_path):
            os.remove(summary_path)
        marker = self.writing_marker_path(trial, arm, round_)
        files.atomic_write_text(marker, "")

        files.atomic_write_npz(self.mask_path(trial, arm, round_), mask)
        files.atomic_write_npz(self.reset_weights_path(trial, arm, round_), reset_weights)
        files.atomic_write_csv(self.curve_path(trial, arm, round_), curve, fieldnames=curves.curve_columns(curve))
        files.atomic_write_json(summary_path, merged)
        os.remove(marker)
        # Checkpoints only matter for resuming an unfinished round.
        shutil.rmtree(self.checkpoint_path(trial, arm, round_), ignore_errors=True)
        return merged

    def write_trained_weights(self, trial: int, arm: str, round_: int, arrays: dict[str, np.ndarray]) -> str:
        """Writes the round's trained_weights.npz (before `write_round`, which
        marks the round done) and returns its path."""
        path = self.trained_weights_path(trial, arm, round_)
        files.atomic_write_npz(path, arrays)
        return path

    def read_round_summary(self, trial: int, arm: str, round_: int) -> dict:
        """The round's summary.json as a dict (checked: `CorruptResultError`)."""
        return summary_io.read_round_summary(self.summary_path(trial, arm, round_))

    def read_curve(self, trial: int, arm: str, round_: int) -> list[dict]:
        """The round's curve; "iteration" is an int, every other value a float
        (empty cells become NaN). Checked: `CorruptResultError`."""
        return curves.read_curve_file(self.curve_path(trial, arm, round_))

    def read_mask(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The round's masks, dtype as saved. Checked: `CorruptResultError`."""
        return files.read_npz(self.mask_path(trial, arm, round_))

    def read_reset_weights(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The weights the round was reset to before training, dtype as saved.
        Checked: `CorruptResultError`."""
        return files.read_npz(self.reset_weights_path(trial, arm, round_))

    def read_trained_weights(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The round's trained weights (rounds of arms that keep them).
        Checked: `CorruptResultError`."""
        return files.read_npz(self.trained_weights_path(trial, arm, round_))

    # -- checking and repairing rounds ---------------------------------------

    def check_round(self, trial: int, arm: str, round_: int, required: Iterable[str] = ()) -> None:
        """Checks a finished round's files; raises `CorruptResultError` for
        the first missing, truncated or unparsable one.

        summary.json must parse and name this round; curve.csv must parse and
        end at the summary's final iteration; mask.npz, reset_weights.npz,
        the names in `required` and every other .npz present must be whole
        (headers only, see `check_npz`, except the small mask.npz, read whole).
        """
        directory = self.round_dir(trial, arm, round_)
        summary = self.read_round_summary(trial, arm, round_)
        if (summary.get("trial"), summary.get("arm"), summary.get("round")) != (trial, arm, round_):
            raise CorruptResultError(
                self.summary_path(trial, arm, round_),
                f"is the summary of trial {summary.get('trial')} {summary.get('arm')} "
                f"round {summary.get('round')}, not of this round")
        curve = self.read_curve(trial, arm, round_)
        if curve[-1]["iteration"] != summary["final_iteration"]:
            raise CorruptResultError(
                self.curve_path(trial, arm, round_),
                f"truncated (ends at iteration {curve[-1]['iteration']}, {layout.SUMMARY_FILE} says "
                f"{summary['final_iteration']})")
        always = [layout.MASK_FILE, layout.RESET_FILE]
        names = always + [n for n in required if n not in always]
        try:
            present = sorted(os.listdir(directory))
        except OSError:
            present = []
        names += [n for n in present if n.endswith(".npz") and n not in names]
        for name in names:
            files.check_npz(os.path.join(directory, name))
        # Masks are small and read back on every resume: check their data too.
        files.read_npz(self.mask_path(trial, arm, round_))

    def round_status(self, trial: int, arm: str, round_: int, required: Iterable[str] = ()):
        """``(status, error)``: ("absent", None) no directory; ("unfinished",
        None) started, not done (it resumes); ("done", None); or ("corrupt",
        CorruptResultError) a finished round with a bad or missing file.

        A round with result files but neither summary.json nor a checkpoint
        to resume from lost its summary.json: corrupt, not unfinished.
        """
        directory = self.round_dir(trial, arm, round_)
        if not os.path.isdir(directory):
            return "absent", None
        summary_path = self.summary_path(trial, arm, round_)
        if not os.path.lexists(summary_path):
            if any(os.path.lexists(os.path.join(directory, n)) for n in layout.RESULT_FILES) \
                    and not os.path.exists(self.checkpoint_state_path(trial, arm, round_)) \
                    and not os.path.lexists(self.writing_marker_path(trial, arm, round_)):
                return "corrupt", CorruptResultError(summary_path, "missing (the round's other files are there)")
            return "unfinished", None
        try:
            self.check_round(trial, arm, round_, required)
        except CorruptResultError as e:
            return "corrupt", e
        return "done", None

    def move_aside(self, trial: int, arm: str, round_: int) -> str:
        """Renames the round's directory to ``round_<r>.corrupt-<UTC time>``
        (never deletes it) and returns the new path."""
        return files.move_aside(self.round_dir(trial, arm, round_))

    # -- summary.csv ---------------------------------------------------------

    def summaries(self) -> list[dict]:
        """Every finished round's summary, sorted by (trial, arm order, round).

        Example:
            >>> import tempfile
            >>> ExperimentDir(tempfile.mkdtemp()).summaries()
            []
        """
        return summary_io.collect(self, self.arm_order)

    def write_summary_csv(self) -> str:
        """Writes root/summary.csv (one row per finished round) and returns its path.

        Columns: SUMMARY_CSV_COLUMNS, then "pm/<layer>" per layer in the order
        layers first appear.

        Example:
            >>> import tempfile, os
            >>> p = ExperimentDir(tempfile.mkdtemp()).write_summary_csv()
            >>> os.path.basename(p)
            'summary.csv'
        """
        # Under the shared lock, so that of two processes finishing rounds of
        # different trials the later rebuild always sees both rounds.
        with self.shared_lock():
            rows, columns = summary_io.csv_rows(self.summaries())
            files.atomic_write_csv(self.summary_csv_path, rows, fieldnames=columns)
        return self.summary_csv_path

    def check_summary_csv(self) -> CorruptResultError | None:
        """None if summary.csv is absent or parses; else the error describing it.

        (A summary.csv that parses but lacks the latest rounds is merely out
        of date, as after a crash between a round and the rebuild.)
        """
        path = self.summary_csv_path
        if not os.path.lexists(path):
            return None
        try:
            summary_io.read_summary_csv(path)
        except CorruptResultError as e:
            return e
        return None

    # -- config --------------------------------------------------------------

    def check_and_save_config(self, config: dict, *, overwrite: bool) -> None:
        """Guards against resuming an experiment with different flags.

        Writes root/config.json if absent. If present and equal, does nothing
        (resume). If different: raises ConfigMismatchError, or with
        ``overwrite`` deletes the whole experiment directory and starts afresh.

        Example:
            >>> import tempfile
            >>> exp = ExperimentDir(tempfile.mkdtemp())
            >>> exp.check_and_save_config({"lr": 0.1}, overwrite=False)
            >>> exp.check_and_save_config({"lr": 0.2}, overwrite=False)
            Traceback (most recent call last):
            ...
            lth_keras.storage.errors.ConfigMismatchError: ...
        """
        # Normalising via JSON makes tuples equal lists, as they would on reload.
        now = json.loads(files.json_text(config))
        with self.shared_lock():
            self._check_and_save_config(now, overwrite)

    def _check_and_save_config(self, now: dict, overwrite: bool) -> None:
        if os.path.lexists(self.config_path):
            saved = files.read_json(
                self.config_path,
                what="restore it, or delete it to have it written from this command's flags",
            )
            if saved == now:
                return
            if not overwrite:
                missing = "<missing>"
                differences = []
                for key in sorted(set(saved) | set(now)):
                    a, b = saved.get(key, missing), now.get(key, missing)
                    if a != b:
                        differences.append(f"--{key}: saved={a!r} now={b!r}")
                # One line, so a command-line user sees it whole.
                raise ConfigMismatchError(
                    "; ".join(differences) + f" (experiment {self.root} was created "
                    "with other flags; pass --overwrite to delete it and start over, "
                    "or choose another --output_dir/--experiment)"
                )
            self._delete_all()
        files.atomic_write_json(self.config_path, now)

    def _delete_all(self) -> None:
        """Deletes everything under root but the lock directory, holding every trial's lock."""
        root = os.path.abspath(self.root)
        # A mistaken root like "/" would be catastrophic to rmtree.
        if os.path.dirname(root) == root:
            raise ValueError(f"refusing to delete filesystem root {root!r}")
        # Never delete a trial another process is running.
        held = []
        try:
            for trial in self.trials():
                lock = self.trial_lock(trial)
                lock.acquire()
                held.append(lock)
            # The lock directory stays: other processes may be waiting on its files.
            for name in os.listdir(root):
                if name != layout.LOCK_DIR:
                    path = os.path.join(root, name)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.remove(path)
        finally:
            for lock in held:
                lock.release()
