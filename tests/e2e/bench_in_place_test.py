"""bench/bench_in_place.py runs and prints its lines (never checks values)."""

import subprocess
import sys

from tests.helpers import REPO as ROOT


def test_in_place_benchmark_smoke_prints_its_lines():
    proc = subprocess.run([sys.executable, "bench/bench_in_place.py", "--quick", "--networks=lenet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("exactness constraint: ", "step lenet: plain ", "ratio in_place_vs_masked_layers lenet: ",
                 "ratio in_place_vs_plain lenet: ", "ratio constraint_vs_plain lenet: "):
        assert line in proc.stdout, proc.stdout
