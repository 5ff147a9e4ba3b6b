"""bench/bench_training.py and bench/gpu_check.sh run at tiny sizes and print
their lines (never checking timings); the script's docstring shows output a
recorded run printed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO as ROOT
from tests.helpers.runs import subprocess_env



# -- benchmarks ---------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_smoke_prints_ratios(tmp_path):
    """The benchmark runs at tiny sizes and prints every ratio (never asserts
    on timings)."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "bench_training.py"), "--quick",
         "--tfmot_python", str(tmp_path / "no_such_python")],
        capture_output=True, text=True, timeout=600, env=subprocess_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ("masked_vs_bare_tf", "masked_vs_unmasked", "imp_round_vs_training"):
        assert f"ratio {name}: " in out, out
    assert "ratio tfmot_vs_ours: skipped: no tfmot interpreter" in out
    assert "step conv2: " in out and "step resnet18: " in out


@pytest.mark.slow
def test_gpu_check_quick_runs_every_check_on_cpu(tmp_path):
    # bench/gpu_check.sh --quick: the benchmark, a LeNet round, ResNet-18 with
    # rewinding and mixed precision, and --strategy=mirrored, at tiny sizes.
    repo = ROOT
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", os.path.join(repo, "bench", "gpu_check.sh"), "--quick", "--out", str(tmp_path)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| check")]
    by_name = {r[0]: r for r in rows}
    assert sorted(by_name) == ["benchmark", "lenet_50k", "lenet_mirrored", "resnet18_rewind_mp"], proc.stdout
    assert all(r[1] == "ok" for r in rows), rows
    assert "masked_vs_bare_tf" in by_name["benchmark"][7]
    assert by_name["resnet18_rewind_mp"][3] == "2" and "mixed_" in by_name["resnet18_rewind_mp"][7]
    curve = os.path.join(tmp_path, "runs", "resnet18_rewind_mp", "trial_0", "ticket", "round_1", "curve.csv")
    with open(curve) as f:
        assert [int(line.split(",")[0]) for line in f.read().splitlines()[1:]] == [20]  # rewound: 10 -> 20
    assert "MirroredStrategy" in by_name["lenet_mirrored"][7]


def test_benchmark_docstring_shows_output_a_run_printed():
    # Example output in the script's docstring must be copied from a recorded
    # run (bench/README.md), not written by hand.
    repo = ROOT
    with open(os.path.join(repo, "bench", "bench_training.py")) as f:
        doc = f.read().split('"""', 2)[1]
    with open(os.path.join(repo, "bench", "README.md")) as f:
        readme = f.read()
    shown = [line.strip() for line in doc.splitlines() if line.strip().startswith(("ratio ", "step "))]
    assert shown, "the docstring shows no output lines"
    for line in shown:
        assert line in readme, line
