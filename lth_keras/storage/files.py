"""Crash-safe writes and checked reads of one file (JSON, .npz, CSV, text).

Every file is written to a temporary name in the same directory and then
``os.replace``-d into place, so a crash or pre-emption never leaves a truncated
file under a final name, and a reader (figures, export) never sees a
half-written one. Files get mode ``0666 & ~umask``, like any other tool's
output. A full or read-only disk raises `ResultsWriteError` (one line naming
the path) and leaves no temporary file behind.

Every file is checked when it is read: a missing, truncated or unparsable
file raises `CorruptResultError`, whose one-line message names it.

Knows no experiment layout (see `lth_keras.storage.layout`); numpy and the
standard library only.

Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a", "x.json")
    >>> atomic_write_json(p, {"lr": 0.1})
    >>> read_json(p)
    {'lr': 0.1}
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
import zipfile
from typing import Any, Iterable, Sequence

import numpy as np

from lth_keras.storage.errors import DISK_ERRNOS, CorruptResultError, ResultsError, ResultsWriteError, one_line

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_write_npz", "atomic_write_csv", "to_jsonable",
           "json_text", "read_json", "read_npz", "check_npz", "read_checked_csv", "move_aside", "is_temp_file"]

# Temporary files are ".<final name>.<random>.tmp": never mistaken for a
# result by globbing, and recognisable as leftovers of a killed write.
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"


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
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=_TEMP_PREFIX + os.path.basename(path) + ".", suffix=_TEMP_SUFFIX
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
        if isinstance(e, OSError) and not isinstance(e, ResultsError) and e.errno in DISK_ERRNOS:
            raise ResultsWriteError(path, e) from None
        raise


def is_temp_file(name: str) -> bool:
    """True for the name of an atomic write's temporary file (a killed
    write's leftover, never a result).

    Example:
        >>> is_temp_file(".mask.npz.k2j4.tmp"), is_temp_file("mask.npz")
        (True, False)
    """
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


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


def to_jsonable(obj: Any) -> Any:
    """`obj` with numpy scalars and arrays made Python numbers and lists,
    tuples made lists and keys made strings, recursively.

    Example:
        >>> to_jsonable({1: (np.float32(0.5), np.arange(2))})
        {'1': [0.5, [0, 1]]}
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def json_text(obj: Any) -> str:
    """`obj` as the JSON text the writes use: sorted keys, indent 2, a final newline.

    Example:
        >>> json_text({"b": 1, "a": float("nan")})
        '{\\n  "a": NaN,\\n  "b": 1\\n}\\n'
    """
    # NaN is kept as the (non-standard) NaN token: Python's json reads it back
    # and dropping it would hide a diverged run's metrics.
    return json.dumps(to_jsonable(obj), sort_keys=True, indent=2) + "\n"


def atomic_write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as JSON (sorted keys, indent 2) atomically.

    numpy scalars and arrays are converted to Python numbers and lists.

    Example:
        >>> import tempfile, os, json
        >>> p = os.path.join(tempfile.mkdtemp(), "x.json")
        >>> atomic_write_json(p, {"b": np.float32(0.5), "a": np.arange(2)})
        >>> json.load(open(p))
        {'a': [0, 1], 'b': 0.5}
    """
    atomic_write_text(path, json_text(obj))


def atomic_write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``arrays`` to an uncompressed .npz atomically (dtypes preserved).

    Writing through a file object stops numpy from appending ".npz" to the
    temp file's name.

    Example:
        >>> import tempfile, os
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


def atomic_write_csv(path: str, rows: list[dict], fieldnames: Iterable[str] | None = None) -> None:
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


def move_aside(path: str) -> str:
    """Renames `path` to ``<path>.corrupt-<UTC time>`` (never deletes it) and
    returns the new path; a full or read-only disk raises `ResultsWriteError`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.replace(path, target)
    except OSError as e:
        if e.errno in DISK_ERRNOS:
            raise ResultsWriteError(target, e) from None
        raise
    return target


# --------------------------------------------------------------------------
# Checked reads
# --------------------------------------------------------------------------


def reason(error: BaseException) -> str:
    """What an exception says about a file, in a few words for `CorruptResultError`."""
    if isinstance(error, FileNotFoundError):
        return "missing"
    if isinstance(error, IsADirectoryError):
        return "is a directory, expected a file"
    text = one_line(error) or "unreadable"
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
        lth_keras.storage.errors.CorruptResultError: ...m.npz: truncated or not an .npz file (BadZipFile: File is not a zip file)
    """
    path = os.fspath(path)
    check_npz(path)  # else np.load takes garbage for a pickle or a bare .npy
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as e:
        raise CorruptResultError(path, reason(e)) from None
    except Exception as e:  # BadZipFile (CRC), zlib.error, EOFError from a damaged member
        raise CorruptResultError(path, f"truncated or not an .npz file ({reason(e)})") from None


def check_npz(path: str) -> list[str]:
    """Cheaply checks an .npz file (zip directory and every array header,
    not the data) and returns its array names; raises `CorruptResultError`.

    A truncated zip loses its central directory, so truncation is caught
    without reading gigabytes of weights on every resume.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> atomic_write_npz(p, {"w": np.zeros(3)})
        >>> check_npz(p)
        ['w']
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
        raise CorruptResultError(path, reason(e)) from None
    except Exception as e:
        raise CorruptResultError(path, f"truncated or not an .npz file ({reason(e)})") from None


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
        lth_keras.storage.errors.CorruptResultError: ...config.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 12 (char 11))
    """
    path = os.fspath(path)
    suffix = f"; {what}" if what else ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CorruptResultError(path, reason(e) + suffix) from None
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
    write). `advice` ends the error's message.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.csv")
        >>> atomic_write_csv(p, [{"a": 1, "b": 0.5}])
        >>> read_checked_csv(p, ("a",))
        [{'a': '1', 'b': '0.5'}]
    """
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
        raise CorruptResultError(path, reason(e)) from None
    except (OSError, ValueError, csv.Error, UnicodeDecodeError) as e:
        raise CorruptResultError(path, f"truncated or unparsable ({reason(e)}){advice}") from None
