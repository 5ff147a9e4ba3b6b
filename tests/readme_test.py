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


def _python_block_with(marker):
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    return next(b for b in blocks if marker in b)


def test_readme_keras_hub_example_prunes_in_place_and_reloads(tmp_path, monkeypatch):
    code = _python_block_with("keras_hub")
    assert "epochs=5" in code and "n = 640" in code
    code = code.replace("epochs=5", "epochs=2").replace("n = 640", "n = 64")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    from lth_keras import layers

    imp, model = namespace["imp"], namespace["model"]
    assert imp.rounds[0]["pm"] == 100.0 and imp.rounds[1]["pm"] < 95  # embeddings stay dense
    # Per block query, key, value, attention output and two feed-forward
    # kernels; pooler and head; token and segment tables (KerasHub's
    # position embedding is a layer of its own, left dense).
    assert len(layers.masked_weights(model)) == 2 * 6 + 2 + 2
    # `model` is the one lth_keras.load_model read back: its masks are the pruned ones.
    assert layers.fraction_remaining(model) == pytest.approx(imp.rounds[1]["pm"] / 100)
