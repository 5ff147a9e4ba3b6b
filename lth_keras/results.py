"""On-disk layout, crash-safe writes and summaries for IMP experiments.

An experiment lives under ``<output_dir>/<experiment>`` and looks like::

    config.json                       experiment-defining flags
    summary.csv                       one row per finished (trial, arm, round)
    trial_0/ticket/round_0/
        mask.npz                      masked-weight name -> mask array
        reset_weights.npz             start weights by position (snapshots.WeightSnapshot.to_arrays)
        trained_weights.npz           trained weights, likewise (arms that keep them)
        curve.csv                     one row per evaluation
        summary.json                  written LAST: its presence marks the round done
        checkpoint/                   trainer's mid-round checkpoints (removed when done)

Every file is written to a temporary name in the same directory and then
``os.replace``-d into place, so a crash or pre-emption never leaves a truncated
file under a final name and resuming can trust whatever it finds.

This module deliberately imports neither TensorFlow nor Keras so that analysis
and plotting code can use it cheaply.

Example:
    >>> import tempfile, numpy as np
    >>> exp = ExperimentDir(tempfile.mkdtemp())
    >>> curve = [dict(iteration=0, train_loss=None, train_accuracy=None,
    ...               val_loss=2.3, val_accuracy=0.1, test_accuracy=0.1)]
    >>> _ = exp.write_round(0, "ticket", 0, mask={"d": np.ones(2, bool)},
    ...                     reset_weights={"d": np.zeros(2)}, curve=curve,
    ...                     summary={"pm": 100.0, "pm_per_layer": {"d": 100.0}})
    >>> exp.is_round_done(0, "ticket", 0)
    True
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import re
import shutil
import tempfile
from typing import Any, Iterable

import numpy as np

from lth_keras import arms

CURVE_COLUMNS = (
    "iteration",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_accuracy",
)

SUMMARY_CSV_COLUMNS = (
    "trial",
    "arm",
    "round",
    "pm",
    "early_stop_iteration",
    "early_stop_val_accuracy",
    "early_stop_test_accuracy",
    "early_stop_train_accuracy",
    "final_test_accuracy",
    "final_iteration",
    "wall_time_s",
)

_MASK_FILE = "mask.npz"
_RESET_FILE = "reset_weights.npz"
_CURVE_FILE = "curve.csv"
_SUMMARY_FILE = "summary.json"
_CONFIG_FILE = "config.json"
_SUMMARY_CSV = "summary.csv"
_CHECKPOINT_DIR = "checkpoint"

_TRIAL_RE = re.compile(r"^trial_(\d+)$")
_ROUND_RE = re.compile(r"^round_(\d+)$")


class ConfigMismatchError(ValueError):
    """The saved config.json of an experiment differs from the current flags.

    Example:
        >>> raise ConfigMismatchError("lr: saved=0.1 now=0.2")
        Traceback (most recent call last):
        ...
        lth_keras.results.ConfigMismatchError: lr: saved=0.1 now=0.2
    """


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------


def _atomic_write(path: str, write_fn, mode: str) -> None:
    """Calls ``write_fn(fileobj)`` on a temp file, then renames it to ``path``.

    The temp file sits in the destination directory because ``os.replace`` is
    only atomic within one filesystem.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Leading dot + .tmp suffix: never mistaken for a real result by globbing.
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        kwargs = {"newline": ""} if "b" not in mode else {}
        if "b" not in mode:
            kwargs["encoding"] = "utf-8"
        with os.fdopen(fd, mode, **kwargs) as f:
            write_fn(f)
            f.flush()
            # Without fsync a power loss can leave the renamed file empty.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically, creating parent dirs.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a", "b.txt")
        >>> atomic_write_text(p, "hi")
        >>> open(p).read()
        'hi'
    """
    _atomic_write(path, lambda f: f.write(text), "w")


def _to_jsonable(obj: Any) -> Any:
    """Recursively converts numpy scalars/arrays and tuples to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _json_dumps(obj: Any) -> str:
    # NaN is kept as the (non-standard) NaN token: Python's json reads it back
    # and dropping it would hide a diverged run's metrics.
    return json.dumps(_to_jsonable(obj), sort_keys=True, indent=2) + "\n"


def atomic_write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as JSON (sorted keys, indent 2) atomically.

    numpy scalars and arrays are converted to Python numbers and lists.

    Example:
        >>> import tempfile, os, json, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "x.json")
        >>> atomic_write_json(p, {"b": np.float32(0.5), "a": np.arange(2)})
        >>> json.load(open(p))
        {'a': [0, 1], 'b': 0.5}
    """
    atomic_write_text(path, _json_dumps(obj))


def atomic_write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``arrays`` to an uncompressed .npz atomically (dtypes preserved).

    Writing through a file object stops numpy from appending ".npz" to the
    temp file's name.

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> atomic_write_npz(p, {"w": np.array([True, False])})
        >>> np.load(p)["w"]
        array([ True, False])
    """
    arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
    _atomic_write(path, lambda f: np.savez(f, **arrays), "wb")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        # repr round-trips floats exactly; "nan" is read back by float() and pandas.
        return repr(value)
    return value


def atomic_write_csv(
    path: str, rows: list[dict], fieldnames: Iterable[str] | None = None
) -> None:
    """Writes ``rows`` as CSV with a header atomically.

    Without ``fieldnames`` the columns are the keys in order of first
    appearance. None becomes an empty cell; keys outside ``fieldnames`` are
    dropped.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.csv")
        >>> atomic_write_csv(p, [{"a": 1, "b": 0.5}])
        >>> open(p).read().split()
        ['a,b', '1,0.5']
    """
    if fieldnames is None:
        fieldnames = []
        for row in rows:
            for key in row:
                if key not in fieldnames:
                    fieldnames.append(key)
    fieldnames = list(fieldnames)

    def write(f):
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(row.get(k)) for k in fieldnames})

    _atomic_write(path, write, "w")


# --------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------


def _as_float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


def early_stop_metrics(curve: list[dict]) -> dict:
    """Metrics at the early-stop point (min val_loss) and at the end of a curve.

    Ties take the earliest iteration, matching the paper's "first minimum".
    Rows whose val_loss is None/NaN (e.g. a diverged run) are never chosen
    unless no row has a finite val_loss, in which case the first row is used.

    Example:
        >>> rows = [dict(iteration=i, train_loss=None, train_accuracy=None,
        ...              val_loss=l, val_accuracy=a, test_accuracy=a)
        ...         for i, l, a in [(0, 2.0, .1), (100, 0.5, .9), (200, 0.7, .8)]]
        >>> m = early_stop_metrics(rows)
        >>> m["early_stop_iteration"], m["early_stop_test_accuracy"], m["final_iteration"]
        (100, 0.9, 200)
    """
    if not curve:
        raise ValueError("early_stop_metrics: curve is empty")
    best_index, best_loss = 0, math.inf
    for i, row in enumerate(curve):
        loss = _as_float(row.get("val_loss"))
        # Strict < keeps the first of equal minima.
        if math.isfinite(loss) and loss < best_loss:
            best_index, best_loss = i, loss
    best, last = curve[best_index], curve[-1]
    return {
        "early_stop_iteration": int(best["iteration"]),
        "early_stop_val_accuracy": _as_float(best.get("val_accuracy")),
        "early_stop_test_accuracy": _as_float(best.get("test_accuracy")),
        "early_stop_train_accuracy": _as_float(best.get("train_accuracy")),
        "final_test_accuracy": _as_float(last.get("test_accuracy")),
        "final_iteration": int(last["iteration"]),
    }


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------


def round_sort_key(arm: str) -> tuple[int, str]:
    """Sort key putting the arms the runner trains first (`lth_keras.arms`,
    in registration order), then others by name.

    Example:
        >>> sorted(["zeta", "random_mask", "ticket", "alpha"], key=round_sort_key)
        ['ticket', 'random_mask', 'alpha', 'zeta']
    """
    return arms.order_key(arm)


def _check_index(name: str, value: Any) -> int:
    value = operator.index(value)  # accepts numpy ints, rejects floats
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _check_arm(arm: str) -> str:
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


def _read_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _summary_csv_rows(summaries: list[dict]) -> tuple[list[dict], list[str]]:
    """Flattens summaries into summary.csv rows and the column list."""
    layers: list[str] = []
    for s in summaries:
        for layer in (s.get("pm_per_layer") or {}):
            if layer not in layers:  # first-seen keeps the model's layer order
                layers.append(layer)
    columns = list(SUMMARY_CSV_COLUMNS) + [f"pm/{l}" for l in layers]
    rows = []
    for s in summaries:
        row = {c: s.get(c) for c in SUMMARY_CSV_COLUMNS}
        per_layer = s.get("pm_per_layer") or {}
        for layer in layers:
            row[f"pm/{layer}"] = per_layer.get(layer)
        rows.append(row)
    return rows, columns


class ExperimentDir:
    """Paths and readers/writers for one experiment's directory.

    Example:
        >>> import tempfile
        >>> exp = ExperimentDir(tempfile.mkdtemp())
        >>> exp.round_dir(1, "reinit", 3).endswith("trial_1/reinit/round_3")
        True
    """

    def __init__(self, root: str):
        self.root = os.fspath(root)

    # -- paths ---------------------------------------------------------------

    def round_dir(self, trial: int, arm: str, round_: int) -> str:
        """root/trial_<t>/<arm>/round_<r>."""
        return os.path.join(
            self.root,
            f"trial_{_check_index('trial', trial)}",
            _check_arm(arm),
            f"round_{_check_index('round', round_)}",
        )

    def checkpoint_path(self, trial: int, arm: str, round_: int) -> str:
        """Directory for the trainer's mid-round checkpoints (not created here)."""
        return os.path.join(self.round_dir(trial, arm, round_), _CHECKPOINT_DIR)

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, _CONFIG_FILE)

    @property
    def summary_csv_path(self) -> str:
        return os.path.join(self.root, _SUMMARY_CSV)

    def _file(self, trial, arm, round_, name) -> str:
        return os.path.join(self.round_dir(trial, arm, round_), name)

    # -- rounds --------------------------------------------------------------

    def is_round_done(self, trial: int, arm: str, round_: int) -> bool:
        """True iff the round's summary.json exists and parses as a JSON object."""
        try:
            with open(self._file(trial, arm, round_, _SUMMARY_FILE), encoding="utf-8") as f:
                return isinstance(json.load(f), dict)
        except (OSError, ValueError):
            return False

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
        trial = _check_index("trial", trial)
        round_ = _check_index("round", round_)
        _check_arm(arm)
        merged = dict(summary)
        merged.update(early_stop_metrics(curve))
        merged.update({"trial": trial, "arm": arm, "round": round_})
        merged = _to_jsonable(merged)

        summary_path = self._file(trial, arm, round_, _SUMMARY_FILE)
        # When redoing a round, un-mark it first so a crash mid-rewrite cannot
        # leave an old summary next to new arrays.
        if os.path.exists(summary_path):
            os.remove(summary_path)

        atomic_write_npz(self._file(trial, arm, round_, _MASK_FILE), mask)
        atomic_write_npz(self._file(trial, arm, round_, _RESET_FILE), reset_weights)
        extra = []
        for row in curve:
            for key in row:
                if key not in CURVE_COLUMNS and key not in extra:
                    extra.append(key)
        atomic_write_csv(
            self._file(trial, arm, round_, _CURVE_FILE),
            curve,
            fieldnames=list(CURVE_COLUMNS) + extra,
        )
        atomic_write_json(summary_path, merged)
        # Checkpoints only matter for resuming an unfinished round.
        shutil.rmtree(self.checkpoint_path(trial, arm, round_), ignore_errors=True)
        return merged

    def read_round_summary(self, trial: int, arm: str, round_: int) -> dict:
        """The round's summary.json as a dict."""
        with open(self._file(trial, arm, round_, _SUMMARY_FILE), encoding="utf-8") as f:
            return json.load(f)

    def read_curve(self, trial: int, arm: str, round_: int) -> list[dict]:
        """The round's curve; "iteration" is an int, every other value a float
        (empty cells become NaN)."""
        with open(self._file(trial, arm, round_, _CURVE_FILE), newline="", encoding="utf-8") as f:
            rows = []
            for raw in csv.DictReader(f):
                row = {k: _as_float(v) for k, v in raw.items()}
                row["iteration"] = int(row["iteration"])
                rows.append(row)
            return rows

    def read_mask(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The round's masks, dtype as saved."""
        return _read_npz(self._file(trial, arm, round_, _MASK_FILE))

    def read_reset_weights(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The weights the round was reset to before training, dtype as saved."""
        return _read_npz(self._file(trial, arm, round_, _RESET_FILE))

    # -- aggregation ---------------------------------------------------------

    def summaries(self) -> list[dict]:
        """Every finished round's summary, sorted by (trial, arm order, round).

        Example:
            >>> import tempfile
            >>> ExperimentDir(tempfile.mkdtemp()).summaries()
            []
        """
        found = []
        if not os.path.isdir(self.root):
            return found
        for trial_name in os.listdir(self.root):
            m = _TRIAL_RE.match(trial_name)
            trial_path = os.path.join(self.root, trial_name)
            if not m or not os.path.isdir(trial_path):
                continue
            trial = int(m.group(1))
            for arm in os.listdir(trial_path):
                arm_path = os.path.join(trial_path, arm)
                if not os.path.isdir(arm_path):
                    continue
                for round_name in os.listdir(arm_path):
                    r = _ROUND_RE.match(round_name)
                    if not r or not self.is_round_done(trial, arm, int(r.group(1))):
                        continue
                    round_ = int(r.group(1))
                    found.append(
                        ((trial, round_sort_key(arm), round_),
                         self.read_round_summary(trial, arm, round_))
                    )
        found.sort(key=lambda item: item[0])
        return [s for _, s in found]

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
        rows, columns = _summary_csv_rows(self.summaries())
        atomic_write_csv(self.summary_csv_path, rows, fieldnames=columns)
        return self.summary_csv_path

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
            lth_keras.results.ConfigMismatchError: ...
        """
        # Normalising via JSON makes tuples equal lists, as they would on reload.
        now = json.loads(_json_dumps(config))
        if os.path.exists(self.config_path):
            with open(self.config_path, encoding="utf-8") as f:
                saved = json.load(f)
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
            root = os.path.abspath(self.root)
            # A mistaken root like "/" would be catastrophic to rmtree.
            if os.path.dirname(root) == root:
                raise ValueError(f"refusing to delete filesystem root {root!r}")
            shutil.rmtree(root)
        atomic_write_json(self.config_path, now)


def load_summary(path_or_root: str):
    """Reads an experiment's summary.csv into a pandas DataFrame.

    ``path_or_root`` is the CSV itself or the experiment directory. If the
    directory has no summary.csv yet, the table is built from the finished
    rounds in memory (nothing is written).

    Example:
        >>> import tempfile
        >>> list(load_summary(tempfile.mkdtemp()).columns)[:3]
        ['trial', 'arm', 'round']
    """
    import pandas as pd  # optional dependency: only analysis code needs it

    path = os.fspath(path_or_root)
    if os.path.isdir(path):
        csv_path = os.path.join(path, _SUMMARY_CSV)
        if not os.path.exists(csv_path):
            rows, columns = _summary_csv_rows(ExperimentDir(path).summaries())
            return pd.DataFrame(rows, columns=columns)
        path = csv_path
    return pd.read_csv(path)
