"""The README's model.fit example runs as written (with fewer epochs)."""

import os
import re

import numpy as np
import pandas as pd
import pytest

from lth_keras import datasets

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _first_python_block():
    with open(README) as f:
        text = f.read()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir(datasets.DEBIAN_FASHION_MNIST_DIR),
    reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)",
)
def test_readme_fit_example_finds_a_ticket(tmp_path, monkeypatch):
    code = _first_python_block()
    assert "epochs=5 * 2" in code and "round_epochs=2" in code
    # Two rounds of one epoch keep the test short; everything else is verbatim.
    code = code.replace("epochs=5 * 2", "epochs=2 * 1").replace("round_epochs=2", "round_epochs=1")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    imp = namespace["imp"]
    assert [r["round"] for r in imp.rounds] == [0, 1]
    # Round 1 trains at 20% pruned hidden layers and 10% pruned output.
    expected = (235200 * 0.8 + 30000 * 0.8 + 1000 * 0.9) / 266200 * 100
    assert imp.rounds[1]["pm"] == pytest.approx(expected, abs=1e-9)
    assert imp.rounds[0]["logs"]["val_accuracy"] > 0.8
    rows = pd.read_csv(tmp_path / "rounds.csv")
    assert len(rows) == 2 and np.isclose(rows["pm"].iloc[1], expected)
