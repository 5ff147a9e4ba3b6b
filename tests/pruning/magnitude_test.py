"""Tests for lth_keras.pruning (pure numpy magnitude-pruning math).

Expected values come from the paper (P_m table in PAPER.md) or from small
independent numpy/fractions references written in the tests.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from lth_keras import pruning

LENET_TOTALS = {"fc1": 784 * 300, "fc2": 300 * 100, "fc3": 100 * 10}
LENET_SHAPES = {"fc1": (784, 300), "fc2": (300, 100), "fc3": (100, 10)}
LENET_KINDS = {"fc1": "dense", "fc2": "dense", "fc3": "dense"}


def reference_alive(total, rate, rounds):
    """alive -= round(rate * alive), halves up (as documented, not Python's
    banker's round()), round by round, exactly with fractions."""
    alive, out = total, [total]
    for _ in range(rounds):
        alive -= half_up(str(rate), alive)
        out.append(alive)
    return out


def half_up(rate_text, alive):
    """round(rate * alive) with halves up, computed exactly with fractions."""
    return math.floor(Fraction(rate_text) * alive + Fraction(1, 2))


def reference_layer_prune(weights, mask, n):
    """Removes the n alive entries with the smallest |w|; ties: lower index."""
    w = np.abs(np.asarray(weights, np.float64)).reshape(-1)
    m = (np.asarray(mask) != 0).reshape(-1).copy()
    alive = [i for i in range(w.size) if m[i]]
    alive.sort(key=lambda i: (w[i], i))
    for i in alive[:n]:
        m[i] = False
    return m.reshape(np.shape(mask)).astype(np.float32)


# ---------------------------------------------------------------- validate_rate


@pytest.mark.parametrize("rate", [0, 0.0, 0.2, 0.5, 0.999, np.float32(0.1), np.float64(0.3), 1 - 1e-12])
def test_validate_rate_accepts_rates_in_unit_interval(rate):
    assert pruning.validate_rate(rate) == pytest.approx(float(rate))
    assert isinstance(pruning.validate_rate(rate), float)


@pytest.mark.parametrize(
    "rate",
    [-0.1, 1.0, 1, 1.5, float("nan"), float("inf"), -float("inf"), True, False, "0.2", None, [0.2]],
)
def test_validate_rate_rejects_bad_rates_naming_the_argument(rate):
    with pytest.raises(ValueError, match="my_rate"):
        pruning.validate_rate(rate, "my_rate")


# ---------------------------------------------------------------- counting rule


@pytest.mark.parametrize("rate_text", ["0.2", "0.1", "0.15", "0.5", "0.25", "0.9"])
def test_num_to_prune_is_round_half_up_of_rate_times_alive(rate_text):
    rate = float(rate_text)
    for alive in list(range(0, 400)) + [150528, 235200, 30000, 1000, 120422, 729]:
        assert pruning.num_to_prune(alive, rate) == half_up(rate_text, alive), alive


def test_num_to_prune_absorbs_float_error():
    # 0.2 * 150528 = 30105.600000000002 in floating point; the count is 30106.
    assert pruning.num_to_prune(150528, 0.2) == 30106
    # Exact halves round up (documented), unlike Python's round().
    assert pruning.num_to_prune(5, 0.5) == 3
    assert pruning.num_to_prune(1, 0.5) == 1


def test_remaining_after_matches_the_round_by_round_formula():
    for name, total in LENET_TOTALS.items():
        rate = 0.1 if name == "fc3" else 0.2
        expected = reference_alive(total, rate, 3)
        for k in range(4):
            assert pruning.remaining_after(total, rate, k) == expected[k]
    # The module docstring's numbers follow from the formula too.
    assert reference_alive(235200, 0.2, 3)[-1] == 120422


def test_remaining_after_rounds_exact_halves_up():
    # 0.25 * 10 = 2.5 and 0.5 * 7 = 3.5: ties, where banker's round() would
    # give 2 and 4 (and 8 and 4 weights left instead of 7 and 3).
    assert reference_alive(10, 0.25, 2) == [10, 7, 5]
    assert [pruning.remaining_after(10, 0.25, k) for k in range(3)] == [10, 7, 5]
    assert reference_alive(7, 0.5, 1) == [7, 3]
    assert pruning.remaining_after(7, 0.5, 1) == 3


@pytest.mark.parametrize(
    "rounds,paper_pm", [(3, 51.3), (7, 21.1), (9, 13.5), (12, 7.0), (15, 3.6), (18, 1.9)]
)
def test_lenet_pm_matches_paper_table(rounds, paper_pm):
    alive = sum(
        pruning.remaining_after(total, 0.1 if name == "fc3" else 0.2, rounds)
        for name, total in LENET_TOTALS.items()
    )
    assert round(100.0 * alive / sum(LENET_TOTALS.values()), 1) == paper_pm


def test_remaining_after_validates_rate():
    with pytest.raises(ValueError):
        pruning.remaining_after(100, 1.2, 1)


# ---------------------------------------------------------------- resolve_rates


def test_resolve_rates_float_gives_output_half():
    assert pruning.resolve_rates(0.2, LENET_KINDS, output="fc3") == {
        "fc1": 0.2,
        "fc2": 0.2,
        "fc3": 0.1,
    }
    # Without an output layer every layer gets the rate.
    assert pruning.resolve_rates(0.2, LENET_KINDS) == {"fc1": 0.2, "fc2": 0.2, "fc3": 0.2}


def test_resolve_rates_by_kind():
    kinds = {"conv1": "conv", "conv2": "conv", "fc1": "dense", "out": "dense"}
    assert pruning.resolve_rates({"conv": 0.1, "dense": 0.2}, kinds, output="out") == {
        "conv1": 0.1,
        "conv2": 0.1,
        "fc1": 0.2,
        "out": 0.1,
    }
    # An explicit output rate wins over half the dense rate.
    rates = pruning.resolve_rates({"dense": 0.2, "output": 0.05}, kinds, output="out")
    assert rates["out"] == 0.05 and rates["fc1"] == 0.2
    # Kinds not given are not pruned (the output layer follows "dense").
    assert pruning.resolve_rates({"conv": 0.15}, kinds, output="out") == {
        "conv1": 0.15,
        "conv2": 0.15,
        "fc1": 0.0,
        "out": 0.0,
    }


def test_resolve_rates_by_name_and_name_wins_over_kind():
    rates = pruning.resolve_rates({"fc2": 0.3}, LENET_KINDS, output="fc3")
    assert rates == {"fc1": 0.0, "fc2": 0.3, "fc3": 0.0}
    rates = pruning.resolve_rates({"dense": 0.2, "fc1": 0.5, "fc3": 0.4}, LENET_KINDS, output="fc3")
    assert rates == {"fc1": 0.5, "fc2": 0.2, "fc3": 0.4}


def test_resolve_rates_layer_name_covers_its_masked_weights():
    kinds = {"cell/kernel": "dense", "cell/recurrent": "dense", "fc": "dense"}
    rates = pruning.resolve_rates({"cell": 0.3, "cell/recurrent": 0.1}, kinds)
    assert rates == {"cell/kernel": 0.3, "cell/recurrent": 0.1, "fc": 0.0}


@pytest.mark.parametrize("key", ["fc4", "dens", "Dense"])
def test_resolve_rates_unknown_key_raises_naming_it(key):
    with pytest.raises(ValueError, match=repr(key)):
        pruning.resolve_rates({key: 0.2}, LENET_KINDS, output="fc3")


@pytest.mark.parametrize("value", [1.0, -0.2, True, float("nan"), "0.2"])
def test_resolve_rates_bad_value_raises_naming_key(value):
    with pytest.raises(ValueError, match="fc2"):
        pruning.resolve_rates({"fc2": value}, LENET_KINDS)
    with pytest.raises(ValueError):
        pruning.resolve_rates(value, LENET_KINDS)


def test_resolve_rates_unknown_output_raises():
    with pytest.raises(ValueError, match="nope"):
        pruning.resolve_rates(0.2, LENET_KINDS, output="nope")


# ---------------------------------------------------------------- prune_layerwise


def test_prune_layerwise_docstring_example():
    weights = {"fc": np.array([[0.3, -0.1], [0.05, 2.0]])}
    masks = {"fc": np.ones((2, 2))}
    new = pruning.prune_layerwise(weights, masks, {"fc": 0.5})
    np.testing.assert_array_equal(new["fc"], [[1.0, 0.0], [0.0, 1.0]])
    assert new["fc"].dtype == np.float32


def test_prune_layerwise_matches_reference_on_random_weights():
    rng = np.random.default_rng(0)
    weights = {"a": rng.normal(size=(13, 7)), "b": rng.normal(size=(3, 3, 2, 4)), "c": rng.normal(size=(29,))}
    masks = {n: (rng.random(w.shape) < 0.8).astype(np.float32) for n, w in weights.items()}
    rates = {"a": 0.2, "b": 0.35, "c": 0.1}
    w_before = {n: w.copy() for n, w in weights.items()}
    m_before = {n: m.copy() for n, m in masks.items()}
    new = pruning.prune_layerwise(weights, masks, rates)
    for name in weights:
        alive = int(masks[name].sum())
        n = half_up(str(rates[name]), alive)
        expected = reference_layer_prune(weights[name], masks[name], n)
        np.testing.assert_array_equal(new[name], expected)
        assert new[name].shape == masks[name].shape
        # Pruned stays pruned.
        assert np.all(new[name][masks[name] == 0] == 0)
        # Inputs untouched.
        np.testing.assert_array_equal(weights[name], w_before[name])
        np.testing.assert_array_equal(masks[name], m_before[name])


def test_prune_layerwise_ignores_already_pruned_weights():
    # The pruned entry has the smallest |w|; it must not count as removed.
    weights = {"w": np.array([0.0, 0.5, 0.4, 0.3, 0.2])}
    masks = {"w": np.array([0.0, 1, 1, 1, 1])}
    new = pruning.prune_layerwise(weights, masks, {"w": 0.5})  # round(0.5*4) = 2
    np.testing.assert_array_equal(new["w"], [0, 1, 1, 0, 0])
    # A pruned entry with a big stored weight stays pruned.
    weights = {"w": np.array([9.0, 0.5, 0.4, 0.3])}
    masks = {"w": np.array([0.0, 1, 1, 1])}
    new = pruning.prune_layerwise(weights, masks, {"w": 0.34})  # round(1.02) = 1
    np.testing.assert_array_equal(new["w"], [0, 1, 1, 0])


def test_prune_layerwise_uses_magnitude_not_sign():
    weights = {"w": np.array([-3.0, 0.1, -0.05, 2.0])}
    new = pruning.prune_layerwise(weights, {"w": np.ones(4)}, {"w": 0.5})
    np.testing.assert_array_equal(new["w"], [1, 0, 0, 1])


def test_prune_layerwise_ties_prune_lower_index_first():
    weights = {"w": np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])}
    new = pruning.prune_layerwise(weights, {"w": np.ones((3, 2))}, {"w": 0.5})
    np.testing.assert_array_equal(new["w"], [[0, 0], [0, 1], [1, 1]])
    weights = {"w": np.array([-0.2, 0.2, 0.1, -0.2, 0.2])}
    new = pruning.prune_layerwise(weights, {"w": np.ones(5)}, {"w": 0.6})  # 3
    np.testing.assert_array_equal(new["w"], [0, 0, 0, 1, 1])


def test_prune_layerwise_lenet_three_rounds_counts_and_pm():
    rng = np.random.default_rng(1)
    kinds = {n: "dense" for n in LENET_SHAPES}
    rates = pruning.resolve_rates(0.2, kinds, output="fc3")
    masks = {n: np.ones(s, np.float32) for n, s in LENET_SHAPES.items()}
    expected = {
        n: reference_alive(LENET_TOTALS[n], 0.1 if n == "fc3" else 0.2, 3) for n in LENET_SHAPES
    }
    for k in range(1, 4):
        weights = {n: rng.normal(size=s).astype(np.float32) for n, s in LENET_SHAPES.items()}
        masks = pruning.prune_layerwise(weights, masks, rates)
        for n in LENET_SHAPES:
            assert int(np.count_nonzero(masks[n])) == expected[n][k]
    assert [expected[n][3] for n in LENET_SHAPES] == [120422, 15360, 729]
    pm, per_layer = pruning.percent_remaining(masks)
    assert round(pm, 1) == 51.3
    assert per_layer["fc3"] == pytest.approx(72.9)


def test_prune_layerwise_missing_rates_not_pruned_and_errors():
    weights = {"a": np.arange(4.0), "b": np.arange(4.0)}
    masks = {"a": np.ones(4), "b": np.ones(4)}
    new = pruning.prune_layerwise(weights, masks, {"a": 0.5})
    np.testing.assert_array_equal(new["b"], np.ones(4))
    assert new["a"].sum() == 2
    with pytest.raises(ValueError, match="zzz"):
        pruning.prune_layerwise(weights, masks, {"zzz": 0.5})
    with pytest.raises(ValueError, match="a"):
        pruning.prune_layerwise(weights, masks, {"a": 1.0})
    with pytest.raises(ValueError, match="shape"):
        pruning.prune_layerwise({"a": np.ones(4), "b": np.ones(3)}, masks, {})
    with pytest.raises(ValueError):
        pruning.prune_layerwise({"a": np.ones(4)}, masks, {})


# ---------------------------------------------------------------- prune_global


def test_prune_global_hand_made_arrays():
    weights = {"a": np.array([[0.1, 5.0], [3.0, 0.2]]), "b": np.array([0.15, 4.0, -0.3, 6.0])}
    masks = {"a": np.ones((2, 2)), "b": np.ones(4)}
    new = pruning.prune_global(weights, masks, 0.5)  # 4 of 8: 0.1, 0.15, 0.2, 0.3
    np.testing.assert_array_equal(new["a"], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(new["b"], [0, 1, 0, 1])
    # One layer can lose everything it has when its weights are the smallest.
    weights = {"a": np.array([0.01, 0.02]), "b": np.array([1.0, 2.0, 3.0, 4.0])}
    new = pruning.prune_global(weights, {"a": np.ones(2), "b": np.ones(4)}, 0.5)
    np.testing.assert_array_equal(new["a"], [0, 0])
    np.testing.assert_array_equal(new["b"], [0, 1, 1, 1])


def test_prune_global_include_leaves_others_untouched():
    weights = {"a": np.array([0.1, 0.2, 0.3, 0.4]), "out": np.array([0.0001, 0.0002]), "b": np.array([0.15, 0.25])}
    masks = {"a": np.ones(4), "out": np.array([1.0, 0.0]), "b": np.ones(2)}
    new = pruning.prune_global(weights, masks, 0.5, include=["a", "b"])  # 3 of 6
    np.testing.assert_array_equal(new["a"], [0, 0, 1, 1])
    np.testing.assert_array_equal(new["b"], [0, 1])
    np.testing.assert_array_equal(new["out"], [1, 0])
    with pytest.raises(ValueError, match="nope"):
        pruning.prune_global(weights, masks, 0.5, include=["a", "nope"])
    with pytest.raises(ValueError):
        pruning.prune_global(weights, masks, 1.0)


def test_prune_global_ties_earlier_layer_then_lower_index():
    weights = {"x": np.array([0.5, 0.5, 0.1]), "y": np.array([0.5, 0.5])}
    masks = {"x": np.ones(3), "y": np.ones(2)}
    new = pruning.prune_global(weights, masks, 0.6)  # 3 of 5: 0.1, then x[0], x[1]
    np.testing.assert_array_equal(new["x"], [0, 0, 0])
    np.testing.assert_array_equal(new["y"], [1, 1])
    new = pruning.prune_global(weights, masks, 0.8)  # 4 of 5
    np.testing.assert_array_equal(new["y"], [0, 1])


def test_prune_global_random_weights_threshold_and_count():
    rng = np.random.default_rng(3)
    weights = {"a": rng.normal(size=(20, 10)), "b": rng.normal(scale=0.1, size=(3, 3, 4, 5)), "c": rng.normal(size=(50,))}
    masks = {n: (rng.random(w.shape) < 0.7).astype(np.float32) for n, w in weights.items()}
    new = pruning.prune_global(weights, masks, 0.3)
    total_alive = sum(int(m.sum()) for m in masks.values())
    removed_count = sum(int(masks[n].sum() - new[n].sum()) for n in masks)
    assert removed_count == half_up("0.3", total_alive)
    removed = np.concatenate([np.abs(weights[n])[(masks[n] != 0) & (new[n] == 0)] for n in masks])
    kept = np.concatenate([np.abs(weights[n])[new[n] != 0] for n in masks])
    assert removed.max() <= kept.min()
    for n in masks:
        assert np.all(new[n][masks[n] == 0] == 0)
    # Equals the layerwise reference applied to the concatenation.
    flat_w = np.concatenate([weights[n].reshape(-1) for n in masks])
    flat_m = np.concatenate([masks[n].reshape(-1) for n in masks])
    ref = reference_layer_prune(flat_w, flat_m, removed_count)
    np.testing.assert_array_equal(np.concatenate([new[n].reshape(-1) for n in masks]), ref)


# ---------------------------------------------------------------- random_masks


def test_random_masks_keep_counts_and_depend_on_seed():
    rng = np.random.default_rng(0)
    ref = {"a": (rng.random((30, 20)) < 0.3).astype(np.float32), "b": (rng.random((3, 3, 8)) < 0.6).astype(np.float32)}
    one = pruning.random_masks(ref, seed=1)
    again = pruning.random_masks(ref, seed=1)
    other = pruning.random_masks(ref, seed=2)
    for n in ref:
        assert one[n].shape == ref[n].shape
        assert set(np.unique(one[n])) <= {0.0, 1.0}
        assert int(np.count_nonzero(one[n])) == int(np.count_nonzero(ref[n]))
        assert int(np.count_nonzero(other[n])) == int(np.count_nonzero(ref[n]))
        np.testing.assert_array_equal(one[n], again[n])
        assert not np.array_equal(one[n], ref[n])
    assert any(not np.array_equal(one[n], other[n]) for n in ref)


def test_random_masks_positions_are_spread_uniformly():
    ref = {"a": np.concatenate([np.ones(50), np.zeros(50)]).astype(np.float32)}
    hits = np.zeros(100)
    for seed in range(200):
        hits += pruning.random_masks(ref, seed)["a"]
    # Each position is kept with probability 1/2: 100 +- ~7 (sd); far from 0 or 200.
    assert hits.min() > 60 and hits.max() < 140


# ---------------------------------------------------------------- percent_remaining


def test_percent_remaining():
    pm, per_layer = pruning.percent_remaining({"a": np.array([1, 0, 0, 0]), "b": np.ones((2, 3))})
    assert pm == pytest.approx(70.0)
    assert per_layer == {"a": pytest.approx(25.0), "b": pytest.approx(100.0)}
    with pytest.raises(ValueError):
        pruning.percent_remaining({})


# ---------------------------------------------------------------- prune (entry point)


def test_prune_dispatches_layerwise_and_global():
    rng = np.random.default_rng(5)
    weights = {"a": rng.normal(size=(10, 6)), "b": rng.normal(scale=0.1, size=(6, 4)), "out": rng.normal(size=(4, 3))}
    masks = {n: np.ones(w.shape, np.float32) for n, w in weights.items()}
    kinds = {n: "dense" for n in weights}
    layerwise = pruning.prune(weights, masks, 0.2, kinds=kinds, output="out")
    assert {n: int(m.sum()) for n, m in layerwise.items()} == {"a": 48, "b": 19, "out": 11}
    for n in weights:
        np.testing.assert_array_equal(layerwise[n], reference_layer_prune(weights[n], masks[n], int(masks[n].sum() - layerwise[n].sum())))
    only_a = pruning.prune(weights, masks, 0.5, kinds=kinds, output="out", include=["a"])
    assert {n: int(m.sum()) for n, m in only_a.items()} == {"a": 30, "b": 24, "out": 12}
    glob = pruning.prune(weights, masks, 0.25, kinds=kinds, scope="global", include=["a", "b"])
    np.testing.assert_array_equal(glob["out"], masks["out"])
    removed = np.concatenate([np.abs(weights[n])[glob[n] == 0] for n in ("a", "b")])
    kept = np.concatenate([np.abs(weights[n])[glob[n] != 0] for n in ("a", "b")])
    assert removed.size == round(0.25 * 84) and removed.max() <= kept.min()
    # "b" has the small weights: global ranking takes more from it than layerwise.
    assert glob["b"].sum() < 24 * 0.75
    with pytest.raises(ValueError, match="scope"):
        pruning.prune(weights, masks, 0.2, kinds=kinds, scope="local")
    with pytest.raises(ValueError):
        pruning.prune(weights, masks, {"dense": 0.2}, kinds=kinds, scope="global")


def test_a_layers_own_kind_is_a_rates_key():
    kinds = {"emb": "embedding", "fc": "dense", "out": "dense"}
    rates = pruning.resolve_rates({"embedding": 0.3, "dense": 0.2}, kinds, output="out")
    assert rates == {"emb": 0.3, "fc": 0.2, "out": 0.1}
    assert pruning.resolve_rates({"embedding": 0.3}, kinds) == {"emb": 0.3, "fc": 0.0, "out": 0.0}
    with pytest.raises(ValueError, match=r"Unknown key 'attention'.*'embedding'"):
        pruning.resolve_rates({"attention": 0.3}, kinds)
