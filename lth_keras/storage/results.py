"""On-disk layout, crash-safe writes and summaries for IMP experiments.

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
        curve.csv                     one row per evaluation
        summary.json                  written LAST: its presence marks the round done
        checkpoint/                   trainer's mid-round checkpoints (removed when done)
    trial_0/ticket/round_2.corrupt-<time>/   a damaged round, moved aside and retrained

Every file is written to a temporary name in the same directory and then
``os.replace``-d into place, so a crash or pre-emption never leaves a truncated
file under a final name, and a reader (figures, export) never sees a
half-written one. Files get mode ``0666 & ~umask``, like any other tool's
output. A full or read-only disk raises `ResultsWriteError` (one line naming
the path) and leaves no temporary file behind.

Every file is checked when it is read: a missing, truncated or unparsable
file raises `CorruptResultError`, whose one-line message names it.

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
import errno
import json
import math
import operator
import os
import re
import shutil
import tempfile
import time
import zipfile
from typing import Any, Iterable, Sequence

import numpy as np

from lth_keras import arms
from lth_keras.storage import locks

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
_TRAINED_FILE = "trained_weights.npz"
_FLAGS_FILE = "flags.json"
_LOCK_DIR = ".locks"
# Present while write_round writes a round's files: a round with result files
# but no summary.json was interrupted while being written, not damaged.
_WRITING_MARKER = ".writing"
# Files whose presence without summary.json means a finished round lost its
# summary (write_round writes them only after training, summary.json last).
_RESULT_FILES = (_MASK_FILE, _RESET_FILE, _CURVE_FILE)
# Keys every round summary has (write_round adds them).
_SUMMARY_KEYS = ("trial", "arm", "round", "pm", "early_stop_iteration", "final_iteration")

# How long a writer waits for another process's short lock around
# config.json and summary.csv before it gives up with one line naming it.
SHARED_LOCK_TIMEOUT_S = 300.0

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


class ResultsError(Exception):
    """An experiment directory cannot be read or written; the message is one
    line naming the file and what to do."""


class CorruptResultError(ResultsError, ValueError):
    """A result file is missing, truncated or unparsable.

    Attributes:
        path: the file.
        reason: what is wrong with it.

    Example:
        >>> str(CorruptResultError("runs/x/config.json", "not valid JSON"))
        'runs/x/config.json: not valid JSON'
    """

    def __init__(self, path: str, reason: str):
        self.path, self.reason = os.fspath(path), _one_line(reason)
        super().__init__(f"{self.path}: {self.reason}")


class ResultsWriteError(ResultsError, OSError):
    """A write failed because the disk is full, read-only or not writable.

    Nothing finished is lost and no temporary file is left: rerunning the same
    command after freeing space resumes the experiment.

    Attributes:
        path: the file that could not be written.
    """

    def __init__(self, path: str, error: OSError):
        self.path = os.fspath(path)
        what = error.strerror or str(error)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = "free space, then rerun the same command: the experiment resumes where it stopped"
        else:
            advice = ("make it writable (or free space), then rerun the same command: "
                      "the experiment resumes where it stopped")
        OSError.__init__(self, error.errno, f"cannot write {self.path}: {what}; {advice}")

    def __str__(self) -> str:
        return self.strerror


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# Errors a user fixes by freeing space or changing permissions, not bugs.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: str, write_fn, mode: str) -> None:
    """Calls ``write_fn(fileobj)`` on a temp file, then renames it to ``path``.

    The temp file sits in the destination directory because ``os.replace`` is
    only atomic within one filesystem. It is removed on any failure; a full or
    read-only disk raises `ResultsWriteError`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        # Leading dot + .tmp suffix: never mistaken for a real result by globbing.
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
        )
        try:
            # mkstemp makes 0600 files; results follow the umask like any output.
            os.fchmod(fd, 0o666 & ~_umask())
        except BaseException:
            os.close(fd)
            raise
        kwargs = {"newline": ""} if "b" not in mode else {}
        if "b" not in mode:
            kwargs["encoding"] = "utf-8"
        with os.fdopen(fd, mode, **kwargs) as f:
            write_fn(f)
            f.flush()
            # Without fsync a power loss can leave the renamed file empty.
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and not isinstance(e, ResultsError) and e.errno in _DISK_ERRNOS:
            raise ResultsWriteError(path, e) from None
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


# --------------------------------------------------------------------------
# Checked reads
# --------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError):
        return "missing"
    if isinstance(error, IsADirectoryError):
        return "is a directory, expected a file"
    text = _one_line(error) or "unreadable"
    return f"{type(error).__name__}: {text}"


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file; a missing, truncated or garbled file
    raises `CorruptResultError` naming it (zip CRCs are checked).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> open(p, "wb").write(b"not a zip")
        9
        >>> read_npz(p)
        Traceback (most recent call last):
        ...
        lth_keras.results.CorruptResultError: ...m.npz: truncated or not an .npz file (BadZipFile: File is not a zip file)
    """
    path = os.fspath(path)
    check_npz(path)  # else np.load takes garbage for a pickle or a bare .npy
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as e:
        raise CorruptResultError(path, _reason(e)) from None
    except Exception as e:  # BadZipFile (CRC), zlib.error, EOFError from a damaged member
        raise CorruptResultError(path, f"truncated or not an .npz file ({_reason(e)})") from None


def check_npz(path: str) -> list[str]:
    """Cheaply checks an .npz file (zip directory and every array header,
    not the data) and returns its array names; raises `CorruptResultError`.

    A truncated zip loses its central directory, so truncation is caught
    without reading gigabytes of weights on every resume.
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = []
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not an array")
                with z.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = header(member)
                    data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    if info.file_size < member.tell() + data_bytes:
                        raise ValueError(f"array {info.filename[:-4]!r} is cut short")
                names.append(info.filename[:-4])
            return names
    except FileNotFoundError as e:
        raise CorruptResultError(path, _reason(e)) from None
    except Exception as e:
        raise CorruptResultError(path, f"truncated or not an .npz file ({_reason(e)})") from None


def read_json(path: str, *, expect: type = dict, what: str = "") -> Any:
    """A JSON file's value, which must be an `expect`; raises
    `CorruptResultError` naming the file (`what` is added to the message).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "config.json")
        >>> open(p, "w").write('{"lr": 0.1,')
        11
        >>> read_json(p)
        Traceback (most recent call last):
        ...
        lth_keras.results.CorruptResultError: ...config.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 12 (char 11))
    """
    path = os.fspath(path)
    suffix = f"; {what}" if what else ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CorruptResultError(path, _reason(e) + suffix) from None
    except UnicodeDecodeError:
        raise CorruptResultError(path, "not valid JSON (not UTF-8 text)" + suffix) from None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise CorruptResultError(path, f"not valid JSON ({e}){suffix}") from None
    if not isinstance(value, expect):
        raise CorruptResultError(
            path, f"expected a JSON {'object' if expect is dict else expect.__name__}, "
                  f"got {type(value).__name__}{suffix}")
    return value


def read_checked_csv(path: str, required: Sequence[str], advice: str = "") -> list[dict]:
    """A CSV's rows as dicts of strings, checked: raises `CorruptResultError`
    when the file is missing or empty, its header lacks a `required` column,
    or a row has another number of cells than the header (a cut-short
    write). `advice` ends the error's message."""
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise ValueError("empty file")
            missing = [c for c in required if c not in header]
            if missing:
                raise ValueError(f"no column {missing[0]!r} in the header")
            rows = []
            for line_number, cells in enumerate(reader, start=2):
                if len(cells) != len(header):
                    raise ValueError(f"line {line_number} has {len(cells)} cells, the header {len(header)}")
                rows.append(dict(zip(header, cells)))
            return rows
    except FileNotFoundError as e:
        raise CorruptResultError(path, _reason(e)) from None
    except (OSError, ValueError, csv.Error, UnicodeDecodeError) as e:
        raise CorruptResultError(path, f"truncated or unparsable ({_reason(e)}){advice}") from None


def read_curve_file(path: str) -> list[dict]:
    """A curve.csv: "iteration" an int, every other value a float (empty
    cells are NaN). Raises `CorruptResultError` when the file is missing, has
    no rows, lacks a column, or has a cut-short or non-numeric row."""
    path = os.fspath(path)
    try:
        rows = [{**{k: _as_float(v) for k, v in cells.items()}, "iteration": int(cells["iteration"])}
                for cells in read_checked_csv(path, CURVE_COLUMNS)]
    except ValueError as e:
        raise CorruptResultError(path, f"truncated or unparsable ({_reason(e)})") from None
    if not rows:
        raise CorruptResultError(path, "truncated (no rows)")
    return rows


def _move_aside(path: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.replace(path, target)
    except OSError as e:
        if e.errno in _DISK_ERRNOS:
            raise ResultsWriteError(target, e) from None
        raise
    return target


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

    @property
    def flags_path(self) -> str:
        return os.path.join(self.root, _FLAGS_FILE)

    def read_config(self) -> dict:
        """config.json (the defining flags); checked: `CorruptResultError`."""
        return read_json(self.config_path)

    def read_flags(self) -> dict:
        """flags.json (every flag of the latest run); checked: `CorruptResultError`."""
        return read_json(self.flags_path)

    def lock_path(self, name: str) -> str:
        """root/.locks/<name>.lock (see `lth_keras.locks`)."""
        return os.path.join(self.root, _LOCK_DIR, f"{name}.lock")

    def shared_lock(self) -> "locks.FileLock":
        """The short lock around the experiment's shared files (config.json,
        summary.csv). Writers take it; readers need not (writes are atomic)."""
        # Held for milliseconds; minutes mean a stopped or hung holder.
        return locks.FileLock(self.lock_path("experiment"), what=f"the shared files of experiment {self.root}",
                              wait=True, timeout=SHARED_LOCK_TIMEOUT_S)

    def trial_lock(self, trial: int, *, wait: bool = False, on_wait=None) -> "locks.FileLock":
        """The lock a process holds while it runs trial `trial`."""
        return locks.FileLock(
            self.lock_path(f"trial_{_check_index('trial', trial)}"),
            what=f"trial {trial} of {self.root}", wait=wait, on_wait=on_wait,
            advice="pass --wait_for_lock to wait for it, or run other --trial_ids",
        )

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
        marker = self._file(trial, arm, round_, _WRITING_MARKER)
        atomic_write_text(marker, "")

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
        os.remove(marker)
        # Checkpoints only matter for resuming an unfinished round.
        shutil.rmtree(self.checkpoint_path(trial, arm, round_), ignore_errors=True)
        return merged

    def read_round_summary(self, trial: int, arm: str, round_: int) -> dict:
        """The round's summary.json as a dict (checked: `CorruptResultError`)."""
        path = self._file(trial, arm, round_, _SUMMARY_FILE)
        summary = read_json(path)
        missing = [k for k in _SUMMARY_KEYS if k not in summary]
        if missing:
            raise CorruptResultError(path, f"truncated or not a round summary (no {missing[0]!r})")
        return summary

    def read_curve(self, trial: int, arm: str, round_: int) -> list[dict]:
        """The round's curve; "iteration" is an int, every other value a float
        (empty cells become NaN). Checked: `CorruptResultError`."""
        return read_curve_file(self._file(trial, arm, round_, _CURVE_FILE))

    def read_mask(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The round's masks, dtype as saved. Checked: `CorruptResultError`."""
        return read_npz(self._file(trial, arm, round_, _MASK_FILE))

    def read_reset_weights(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The weights the round was reset to before training, dtype as saved.
        Checked: `CorruptResultError`."""
        return read_npz(self._file(trial, arm, round_, _RESET_FILE))

    def read_trained_weights(self, trial: int, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The round's trained weights (ticket and baseline rounds store them).
        Checked: `CorruptResultError`."""
        return read_npz(self._file(trial, arm, round_, _TRAINED_FILE))

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
        summary_path = self._file(trial, arm, round_, _SUMMARY_FILE)
        if (summary.get("trial"), summary.get("arm"), summary.get("round")) != (trial, arm, round_):
            raise CorruptResultError(
                summary_path, f"is the summary of trial {summary.get('trial')} {summary.get('arm')} "
                              f"round {summary.get('round')}, not of this round")
        curve = self.read_curve(trial, arm, round_)
        if curve[-1]["iteration"] != summary["final_iteration"]:
            raise CorruptResultError(
                self._file(trial, arm, round_, _CURVE_FILE),
                f"truncated (ends at iteration {curve[-1]['iteration']}, summary.json says "
                f"{summary['final_iteration']})")
        names = [_MASK_FILE, _RESET_FILE] + [n for n in required if n not in (_MASK_FILE, _RESET_FILE)]
        try:
            present = sorted(os.listdir(directory))
        except OSError:
            present = []
        names += [n for n in present if n.endswith(".npz") and n not in names]
        for name in names:
            check_npz(os.path.join(directory, name))
        # Masks are small and read back on every resume: check their data too.
        read_npz(os.path.join(directory, _MASK_FILE))

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
        summary_path = self._file(trial, arm, round_, _SUMMARY_FILE)
        if not os.path.lexists(summary_path):
            state = os.path.join(self.checkpoint_path(trial, arm, round_), "state.npz")
            if any(os.path.lexists(os.path.join(directory, n)) for n in _RESULT_FILES) \
                    and not os.path.exists(state) \
                    and not os.path.lexists(os.path.join(directory, _WRITING_MARKER)):
                return "corrupt", CorruptResultError(summary_path, "missing (the round's other files are there)")
            return "unfinished", None
        try:
            self.check_round(trial, arm, round_, required)
        except CorruptResultError as e:
            return "corrupt", e
        return "done", None

    def round_dirs(self, trial: int) -> set[tuple[str, int]]:
        """Every ``(arm, round)`` with a round_<r> directory in the trial."""
        found = set()
        trial_path = os.path.join(self.root, f"trial_{_check_index('trial', trial)}")
        try:
            arms = os.listdir(trial_path)
        except OSError:
            return found
        for arm in arms:
            try:
                names = os.listdir(os.path.join(trial_path, arm))
            except OSError:
                continue
            for name in names:
                m = _ROUND_RE.match(name)
                if m and os.path.isdir(os.path.join(trial_path, arm, name)):
                    found.add((arm, int(m.group(1))))
        return found

    def move_aside(self, trial: int, arm: str, round_: int) -> str:
        """Renames the round's directory to ``round_<r>.corrupt-<UTC time>``
        (never deletes it) and returns the new path."""
        return _move_aside(self.round_dir(trial, arm, round_))

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
                    try:
                        summary = self.read_round_summary(trial, arm, round_)
                    except CorruptResultError:
                        continue  # not a finished round; the experiment redoes it
                    found.append(((trial, round_sort_key(arm), round_), summary))
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
        # Under the shared lock, so that of two processes finishing rounds of
        # different trials the later rebuild always sees both rounds.
        with self.shared_lock():
            rows, columns = _summary_csv_rows(self.summaries())
            atomic_write_csv(self.summary_csv_path, rows, fieldnames=columns)
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
            _read_summary_csv(path)
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
            lth_keras.results.ConfigMismatchError: ...
        """
        # Normalising via JSON makes tuples equal lists, as they would on reload.
        now = json.loads(_json_dumps(config))
        with self.shared_lock():
            self._check_and_save_config(now, overwrite)

    def _check_and_save_config(self, now: dict, overwrite: bool) -> None:
        if os.path.lexists(self.config_path):
            saved = read_json(
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
            root = os.path.abspath(self.root)
            # A mistaken root like "/" would be catastrophic to rmtree.
            if os.path.dirname(root) == root:
                raise ValueError(f"refusing to delete filesystem root {root!r}")
            # Never delete a trial another process is running.
            trials = sorted(int(m.group(1)) for m in map(_TRIAL_RE.match, os.listdir(root)) if m)
            held = []
            try:
                for trial in trials:
                    lock = self.trial_lock(trial)
                    lock.acquire()
                    held.append(lock)
                # The lock directory stays: other processes may be waiting on its files.
                for name in os.listdir(root):
                    if name != _LOCK_DIR:
                        path = os.path.join(root, name)
                        if os.path.isdir(path) and not os.path.islink(path):
                            shutil.rmtree(path)
                        else:
                            os.remove(path)
            finally:
                for lock in held:
                    lock.release()
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
    _read_summary_csv(path)  # one-line CorruptResultError for a broken file
    return pd.read_csv(path)


def _read_summary_csv(path: str) -> list[dict]:
    """summary.csv's rows as dicts of strings; raises `CorruptResultError`."""
    return read_checked_csv(path, ("trial", "arm", "round"),
                            "; rerun the experiment's command to rebuild it from the rounds")
