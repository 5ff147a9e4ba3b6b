"""A venv for a baseline whose library needs its own packages (TFMOT:
tf_keras and absl-py 1.x), seeing the installed TensorFlow and lth_keras.

Example:

```python
python = setup_venv("/tmp/lth_tfmot_venv")   # once; then run a baseline with it
```
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

__all__ = ["VenvError", "setup_venv", "venv_python", "venv_requirements"]


class VenvError(ValueError):
    """A path that cannot become the venv (one line)."""


def venv_python(path: str) -> str:
    """The interpreter of the venv at `path`."""
    return os.path.join(os.path.abspath(path), "bin", "python")


def venv_requirements() -> list[str]:
    """What the TFMOT venv installs: tf_keras matching the installed TensorFlow."""
    try:
        from importlib.metadata import version

        tf_version = version("tensorflow")
    except Exception:  # tensorflow-cpu, nightlies: ask TensorFlow itself
        import tensorflow as tf

        tf_version = tf.__version__
    major_minor = ".".join(tf_version.split(".")[:2])
    return [f"tf_keras=={major_minor}.*", "tensorflow-model-optimization>=0.8", "absl-py~=1.2"]


_READY_FILE = "lth_keras_tfmot_ready.json"


def setup_venv(path: str, *, log=print) -> str:
    """Creates (once) a venv for the baseline and returns its python.

    ``python -m venv --system-site-packages`` so the installed TensorFlow,
    numpy and lth_keras are reused, then pip installs `venv_requirements`
    (tf_keras, tensorflow-model-optimization, absl-py~=1.2, ~3 MB) into it.
    A venv that already has them is reused; concurrent callers wait on a
    lock file.
    """
    import fcntl

    path = os.path.abspath(path)
    wanted = {"requirements": venv_requirements(), "python": sys.version.split()[0]}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = os.path.join(path, _READY_FILE)
        try:
            with open(ready) as f:
                if json.load(f) == wanted and os.path.exists(venv_python(path)):
                    return venv_python(path)
        except (OSError, ValueError):
            pass
        if os.path.exists(path) and os.listdir(path):
            if not os.path.exists(os.path.join(path, "pyvenv.cfg")):
                raise VenvError(f"--setup_venv: {path!r} exists and is not a venv; not touching it.")
            shutil.rmtree(path)  # an unfinished or outdated one
        log(f"Creating the TFMOT venv {path} (installs {' '.join(wanted['requirements'])})")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", path], check=True)
        subprocess.run(
            [venv_python(path), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *wanted["requirements"]],
            check=True,
        )
        with open(ready, "w") as f:
            json.dump(wanted, f)
    return venv_python(path)
