"""ERK and uniform layer densities (`lth_keras.pruning.erk`), against hand computations."""

import numpy as np
import pytest

from lth_keras.pruning import erk


def test_erk_matches_a_hand_computation_with_a_layer_capped_at_one():
    # raw: a 20/100 = 0.2, b 200/10000 = 0.02. Budget 0.5 * 10100 = 5050;
    # eps = 5050 / (0.2*100 + 0.02*10000) = 22.95 puts a at 4.59 > 1: a is dense.
    # Then eps = (5050 - 100) / 200 = 24.75 and b = 24.75 * 0.02 = 0.495.
    densities = erk.erk_densities({"a": (10, 10), "b": (100, 100)}, 0.5)
    assert densities == {"a": 1.0, "b": pytest.approx(0.495)}


def test_erk_counts_a_convolution_kernel_spatial_dimensions():
    # conv (3,3,2,4): raw 12/72 = 1/6; dense (6,4): raw 10/24 = 5/12.
    # Budget 0.25 * 96 = 24; eps = 24 / (12 + 10) = 12/11.
    densities = erk.erk_densities({"conv": (3, 3, 2, 4), "fc": (6, 4)}, 0.25)
    assert densities["conv"] == pytest.approx(12 / 11 / 6)
    assert densities["fc"] == pytest.approx(12 / 11 * 5 / 12)
    # Erdős–Rényi on (in, out) alone would give the conv 6/8 as its raw share: not this.
    er = erk.erk_densities({"conv": (2, 4), "fc": (6, 4)}, 0.25)
    assert er["conv"] != pytest.approx(densities["conv"])


@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.6, 0.95])
def test_erk_keeps_exactly_the_density_of_all_weights(density):
    shapes = {"conv1": (5, 5, 1, 20), "conv2": (5, 5, 20, 50), "fc1": (800, 500), "fc2": (500, 10)}
    densities = erk.erk_densities(shapes, density)
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    kept = sum(densities[n] * sizes[n] for n in shapes)
    assert kept == pytest.approx(density * sum(sizes.values()), rel=1e-12)
    assert all(0 < d <= 1 for d in densities.values())
    # Smaller layers are never sparser than larger ones of the same kind.
    assert densities["fc2"] >= densities["fc1"]


def test_a_layer_pushed_over_one_by_the_rescale_is_capped_too():
    # raw: tiny 6/9, small 40/400 = 0.1, big 100/2500 = 0.04; budget 0.5 * 2909.
    # First pass: eps = 1454.5 / (6 + 40 + 100) = 9.96: only tiny (6.64) is over 1,
    # small is at 0.996. Capping tiny raises eps to (1454.5 - 9) / 140 = 10.33,
    # which puts small at 1.03: the second pass caps it, and big gets the rest.
    densities = erk.erk_densities({"tiny": (3, 3), "small": (20, 20), "big": (50, 50)}, 0.5)
    assert densities["tiny"] == densities["small"] == 1.0
    assert densities["big"] == pytest.approx((1454.5 - 9 - 400) / 2500)


def test_power_scale_zero_is_uniform_and_uniform_is_uniform():
    shapes = {"a": (3, 3, 4, 8), "b": (64, 10)}
    assert erk.erk_densities(shapes, 0.3, power_scale=0) == pytest.approx({"a": 0.3, "b": 0.3})
    assert erk.layer_densities(shapes, 0.3, "uniform") == {"a": 0.3, "b": 0.3}
    assert erk.layer_densities(shapes, 0.3, "erk") == erk.erk_densities(shapes, 0.3)


def test_kept_counts_round_and_keep_at_least_one():
    shapes = {"a": (10, 10), "b": (100, 100)}
    assert erk.kept_counts(shapes, {"a": 1.0, "b": 0.495}) == {"a": 100, "b": 4950}
    assert erk.kept_counts(shapes, {"a": 0.001, "b": 0.0}) == {"a": 1, "b": 1}


@pytest.mark.parametrize("bad, match", [
    (dict(density=0.0), "`density`"), (dict(density=1.5), "`density`"), (dict(density=True), "`density`"),
    (dict(density=0.5, power_scale=-1), "`power_scale`"), (dict(density=0.5, shapes={}), "`shapes`"),
    (dict(density=0.5, shapes={"a": (0, 3)}), "shapes\\['a'\\]"),
])
def test_bad_arguments_name_the_argument(bad, match):
    kwargs = {"shapes": {"a": (3, 3)}, **bad}
    with pytest.raises(ValueError, match=match):
        erk.erk_densities(**kwargs)


def test_unknown_distribution_names_the_argument():
    with pytest.raises(ValueError, match="`distribution`"):
        erk.layer_densities({"a": (3, 3)}, 0.5, "random")
