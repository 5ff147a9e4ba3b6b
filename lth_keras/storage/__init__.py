"""An experiment directory on disk. No Keras and no TensorFlow: the figures and every reader use it as it is.

- `layout`: every file and folder name, and `ExperimentLayout` (paths, trials, arms, rounds, locks).
- `experiment_dir`: `ExperimentDir`, a layout's rounds, summary.csv and config.json, read and written safely.
- `summary`: a round's summary.json, summary.csv's rows and order, `load_summary`.
- `curves`: a round's learning curve: columns, checked read, early-stop metrics.
- `files`: atomic writes and checked reads of one JSON, .npz or CSV file.
- `errors`: `ResultsError` and its kinds, one-line messages.
- `locks`: OS file locks, one writer per trial and per shared file.
- `resume`: cleaning up after a killed process; θ0 and other draws saved once.
"""
