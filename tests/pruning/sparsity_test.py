"""Tests for lth_keras.pruning.sparsity: the gradual schedule and N:M counts, pure numpy.

The module is pure numpy; CI runs this file on every backend (.ci/run).
"""

import numpy as np
import pytest

from lth_keras.pruning import sparsity


# --------------------------------------------------------------------------
# The schedule (pure)


def test_polynomial_sparsity_is_tfmots_formula():
    for step in (0, 10, 37, 100, 150):
        p = min(1.0, max(0.0, (step - 10) / 90))
        expected = 0.8 + (0.1 - 0.8) * (1 - p) ** 3
        assert sparsity.polynomial_sparsity(step, 0.1, 0.8, 10, 100, 3) == pytest.approx(expected, abs=1e-12)
    assert sparsity.polynomial_sparsity(5, 0.1, 0.8, 10, 100) == pytest.approx(0.1)
    assert [s for s in range(0, 60) if sparsity.is_update_step(s, 10, 40, 15)] == [10, 25, 40]
    assert sparsity.last_update_step(9, 10, 40, 15) is None
    assert sparsity.last_update_step(33, 10, 40, 15) == 25
    assert sparsity.last_update_step(99, 10, 40, 15) == 40
    assert sparsity.last_update_step(99, 10, -1, 15) == 85


def test_pattern_keeps_the_two_largest_of_each_group():
    w = np.array([[4.0, 0.1], [-5.0, -0.2], [6.0, 0.3], [7.0, 9.0]], "float32")
    mask = sparsity.prune_to_counts({"fc": w}, {"fc": np.ones_like(w)}, {"fc": 4}, pattern="2:4", axes={"fc": 0})
    np.testing.assert_array_equal(mask["fc"], [[0, 0], [0, 0], [1, 1], [1, 1]])
    # Unstructured pruning of the same count would break the pattern.
    plain = sparsity.prune_to_counts({"fc": w}, {"fc": np.ones_like(w)}, {"fc": 4})
    assert sparsity.pattern_violations(plain["fc"], "2:4", 0) == 1


# --------------------------------------------------------------------------
# Schedule arguments and counts


@pytest.mark.parametrize("args, match", [
    ((-1, 10, 3, 1), "begin_step"),
    ((5, 5, 3, 1), "end_step"),
    ((0, 10.0, 3, 1), "end_step"),
    ((0, 10, 3, 0), "frequency"),
    ((0, 10, 0, 1), "power"),
    ((0, 10, True, 1), "power"),
])
def test_validate_schedule_names_the_bad_argument(args, match):
    with pytest.raises(ValueError, match=match):
        sparsity.validate_schedule(*args)


def test_a_ramp_that_never_ends_stays_at_the_initial_sparsity():
    sparsity.validate_schedule(0, -1, 3, 1)
    assert sparsity.polynomial_sparsity(10**6, 0.3, 0.9, 0, -1) == 0.3


def test_schedule_steps_from_fractions_of_training():
    assert sparsity.schedule_steps(3000, 0.0, 2 / 3, 100) == {"begin_step": 0, "end_step": 2000, "frequency": 100}
    # end_step lands on an update: a multiple of the frequency past begin_step.
    assert sparsity.schedule_steps(1000, 0.1, 0.75, 100) == {"begin_step": 100, "end_step": 700, "frequency": 100}
    # A short run lowers the frequency to the length of the ramp.
    assert sparsity.schedule_steps(60, 0.0, 2 / 3, 100) == {"begin_step": 0, "end_step": 40, "frequency": 40}
    for begin, end in ((0.5, 0.5), (-0.1, 0.5), (0.2, 1.5)):
        with pytest.raises(ValueError, match="begin < end"):
            sparsity.schedule_steps(100, begin, end, 10)
    with pytest.raises(ValueError, match="frequency"):
        sparsity.schedule_steps(100, 0.0, 0.5, 0)


def test_kept_count_rounds_half_up_and_counts_for_sparsity_never_regrow():
    assert [sparsity.kept_count(10, s) for s in (0.0, 0.25, 0.35, 0.5, 0.99)] == [10, 7, 6, 5, 0]
    masks = {"a": np.ones(10), "b": np.array([1.0] * 3 + [0.0] * 7)}
    assert sparsity.counts_for_sparsity(masks, {"a": 0.5, "b": 0.5}) == {"a": 5, "b": 0}
    # Together (global): one target over both, reported under the first name.
    assert sparsity.counts_for_sparsity(masks, {"a": 0.5, "b": 0.5}, together=["a", "b"]) == {"a": 3}


def test_prune_to_counts_removes_the_smallest_and_refuses_more_than_is_alive():
    w = {"a": np.array([0.5, -3.0, 1.0, 2.0]), "b": np.array([0.1, 4.0])}
    m = {"a": np.array([1.0, 1.0, 0.0, 1.0]), "b": np.ones(2)}
    new = sparsity.prune_to_counts(w, m, {"a": 1})
    np.testing.assert_array_equal(new["a"], [0, 1, 0, 1])  # 0.5 goes; 1.0 was already pruned
    np.testing.assert_array_equal(new["b"], [1, 1])
    assert new["a"].dtype == np.float32 and m["a"][0] == 1.0  # inputs unchanged
    together = sparsity.prune_to_counts(w, m, {"a": 2}, together=["a", "b"])
    np.testing.assert_array_equal(together["a"], [0, 1, 0, 1])
    np.testing.assert_array_equal(together["b"], [0, 1])
    with pytest.raises(ValueError, match="only 3 go"):
        sparsity.prune_to_counts(w, m, {"a": 4})


# --------------------------------------------------------------------------
# N:M patterns


@pytest.mark.parametrize("pattern, parsed", [("2:4", (2, 4)), ((1, 2), (1, 2)), (None, None)])
def test_parse_pattern(pattern, parsed):
    assert sparsity.parse_pattern(pattern) == parsed


@pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "2-4", "a:b", "2:4:8"])
def test_a_bad_pattern_is_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match="`pattern_flag`"):
        sparsity.parse_pattern(bad, "pattern_flag")


def test_pattern_cap_axis_and_violations():
    assert sparsity.pattern_cap("2:4") == 0.5 and sparsity.pattern_cap("1:8") == 0.875
    sparsity.check_pattern_axis((8, 3), 0, "2:4")
    with pytest.raises(ValueError, match=r"not a multiple of M=4.*exclude=\['conv'\]"):
        sparsity.check_pattern_axis((3, 3, 6, 8), 2, "2:4", "conv/kernel")
    mask = np.array([[1, 1], [1, 0], [0, 1], [0, 1]])  # (in=4, out=2): along axis 0
    assert sparsity.pattern_violations(mask, "2:4", 0) == 1  # column 1 keeps 3 of 4
    assert sparsity.pattern_violations(mask, "3:4", 0) == 0
    assert sparsity.pattern_violations(mask.T, "2:4", 1) == 1
