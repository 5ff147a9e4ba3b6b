"""Tests for the lth_keras.export program: ``python -m lth_keras.export`` prints the
sizes and checks the file in a fresh process; bad flags are one-line errors.

What it exports is tested in tests/experiment/export_test.py.
"""

import pytest

from lth_keras import export
from tests.helpers.runs import EXPORT_ROUND, EXPORT_SIZES, export_experiment

SIZES, ROUND = EXPORT_SIZES, EXPORT_ROUND


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A 3-round LeNet IMP experiment on synthetic data, ticket at P_m ~16%."""
    return export_experiment(str(tmp_path_factory.mktemp("runs")))


def _main(argv):
    """Runs ``python -m lth_keras.export ARGV`` in this process (its own FlagValues)."""
    export.FLAGS.unparse_flags()
    export.FLAGS(["lth_keras.export"] + argv)
    try:
        export.main(["lth_keras.export"])
    finally:
        export.FLAGS.unparse_flags()


@pytest.mark.slow
def test_command_line_prints_sizes_and_checks_in_a_fresh_process(results_dir, tmp_path, capsys):
    out = tmp_path / "ticket.keras"
    _main([f"--results={results_dir}", "--trial=0", f"--round={ROUND}", "--format=keras", f"--out={out}"])
    stdout = capsys.readouterr().out
    assert out.exists()
    assert "dense:  266,610 parameters" in stdout
    assert "sparse: " in stdout and "nonzero parameters" in stdout
    assert "fresh process without lth_keras" in stdout and "tolerance atol 1e-05" in stdout


def test_command_line_errors_are_one_line(results_dir, tmp_path):
    cases = [
        ([f"--results={tmp_path}", "--round=1", "--format=keras", f"--out={tmp_path / 'x.keras'}"],
         f"error: --results: {str(tmp_path)!r} is not an lth_keras experiment (no config.json)."),
        ([f"--results={results_dir}", "--round=9", "--format=keras", f"--out={tmp_path / 'x.keras'}"],
         f"error: --round: trial 0 ticket round 9 not found in {results_dir} "
         "(finished ticket rounds of trial 0: [0, 1, 2])."),
        ([f"--results={results_dir}", "--round=1", "--format=onnx", f"--out={tmp_path / 'x.onnx'}"],
         "error: --format: unknown format 'onnx'; known: keras, savedmodel, tflite."),
        ([f"--results={results_dir}", "--format=keras", f"--out={tmp_path / 'x.keras'}"],
         "error: --round: required."),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as info:
            _main(argv)
        # sys.exit(str): Python prints exactly this line, no traceback.
        assert info.value.code == message
