"""The config an experiment directory was run with, read back.

The programs that read an experiment (export, instability, the TFMOT
baseline) rebuild its model and data from its config.json: `saved_config`
reads it, applies a reader's overrides and resolves it.

Example:

```python
from lth_keras.experiment.saved import saved_config

config = saved_config("runs/lenet")        # resolved: the paper's defaults filled in
config.model, config.iterations            # ('lenet', 50000)
```
"""

from __future__ import annotations

import dataclasses
import os

from lth_keras.storage import files, layout
from lth_keras.experiment.config import ExperimentConfig

__all__ = ["saved_config"]


def saved_config(results_dir: str, overrides: dict | None = None, *, error=ValueError) -> ExperimentConfig:
    """The resolved config of the experiment in `results_dir`.

    Args:
        results_dir: the experiment directory (``<output_dir>/<experiment>``).
        overrides: fields replacing config.json's values.
        error: the exception class raised for a missing experiment (a
            reader's own, e.g. ``ExportError``).

    Returns:
        config.json's fields with `overrides` applied, resolved; output_dir
        and experiment point at `results_dir`.

    Raises:
        error: (a one-line message naming --results) when the directory is
            missing or holds no config.json.
        ConfigError: a bad value.
        lth_keras.storage.errors.ResultsError: config.json is unreadable.
    """
    path = layout.ExperimentLayout(results_dir).config_path
    if not os.path.isdir(results_dir):
        raise error(f"--results: {results_dir!r} does not exist.")
    if not os.path.isfile(path):
        raise error(f"--results: {results_dir!r} is not an lth_keras experiment (no {layout.CONFIG_FILE}).")
    saved = files.read_json(path)
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    values = {k: v for k, v in saved.items() if k in names}
    values.update(overrides or {})
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
    root = os.path.abspath(results_dir)
    values["output_dir"], values["experiment"] = os.path.dirname(root), os.path.basename(root)
    return ExperimentConfig(**values).resolve()
