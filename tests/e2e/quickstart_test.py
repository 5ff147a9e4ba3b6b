"""The quickstart flagfile and the dense LeNet on the real Fashion-MNIST,
end to end through `python -m lth_keras.main` (slow).
"""

import math
import os
import time

import pandas as pd
import pytest

from tests.helpers.runs import own_lines, run_main

FASHION_DIR = "/usr/share/datasets/fashion-mnist"




def _round_half_up(x):
    return math.floor(x + 0.5)


# -- quickstart and real data ------------------------------------------------------------------


def _lenet_pm(k):
    sizes = {784 * 300: 0.2, 300 * 100: 0.2, 100 * 10: 0.1}
    alive = dict((s, s) for s in sizes)
    for _ in range(k):
        for s, rate in sizes.items():
            alive[s] -= _round_half_up(rate * alive[s])
    return 100.0 * sum(alive.values()) / sum(sizes)


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    began = time.time()
    proc = run_main("--flagfile=flags/quickstart.flags", f"--output_dir={tmp_path}", timeout=900)
    wall = time.time() - began
    assert proc.returncode == 0, own_lines(proc.stderr)[-20:]
    print(f"quickstart: {wall:.0f}s\n" + "\n".join(proc.stdout.splitlines()[-10:]))
    df = pd.read_csv(tmp_path / "quickstart" / "summary.csv")
    assert sorted(zip(df["arm"], df["round"])) == sorted(
        [("ticket", r) for r in range(4)] + [("reinit", r) for r in range(1, 4)]
    )
    for _, row in df.iterrows():
        assert row["pm"] == pytest.approx(_lenet_pm(row["round"]))
    dense = df[(df["arm"] == "ticket") & (df["round"] == 0)].iloc[0]
    assert dense["final_test_accuracy"] > 0.8  # chance is 0.1
    assert (df["final_test_accuracy"] > 0.7).all()


@pytest.mark.slow
def test_dense_lenet_on_fashion_mnist_reaches_84_percent(tmp_path):
    assert os.path.isdir(FASHION_DIR), "the Debian package dataset-fashion-mnist is required"
    proc = run_main(
        "--dataset=fashion_mnist", "--iterations=2000", "--eval_every=1000", "--rounds=1",
        "--tensorboard=false", f"--output_dir={tmp_path}",
    )
    assert proc.returncode == 0, own_lines(proc.stderr)[-20:]
    assert FASHION_DIR in proc.stdout  # read from the Debian files
    df = pd.read_csv(tmp_path / "lenet" / "summary.csv")
    assert len(df) == 1
    assert df["final_test_accuracy"].iloc[0] >= 0.84
