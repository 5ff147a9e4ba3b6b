"""examples/vit_fashion_mnist.py: a KerasHub ViT pruned in place, end to end
on a few steps of the real data (the committed figure's script)."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from lth_keras import datasets
from tests.helpers import REPO as ROOT


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir(datasets.DEBIAN_FASHION_MNIST_DIR),
    reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)",
)
def test_vit_example_finds_rounds_and_reinit_rows(tmp_path):
    out = tmp_path / "vit"
    proc = subprocess.run(
        [sys.executable, "examples/vit_fashion_mnist.py", f"--out_dir={out}", "--rounds=2", "--round_steps=20",
         "--eval_every=10", "--trials=1", "--batch_size=32"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = pd.read_csv(out / "summary.csv")
    assert list(zip(summary["arm"], summary["round"])) == [("ticket", 0), ("ticket", 1), ("reinit", 1)]
    ticket_1, reinit_1 = summary.iloc[1], summary.iloc[2]
    assert ticket_1["pm"] < 100 and reinit_1["pm"] == ticket_1["pm"]
    assert (out / "test_accuracy.png").exists()
