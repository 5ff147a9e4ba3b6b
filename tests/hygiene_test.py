"""The test suite's own hygiene: global TensorFlow modes do not leak between tests.

The two tests run in file order: the first switches deterministic ops on the
way several test helpers do; the second must find TensorFlow's default mode.
"""

from tensorflow.python.framework import config as tf_config

from tests.helpers import lenet as L


def test_a_helper_switches_deterministic_ops_on():
    L.deterministic(0)
    assert tf_config.is_op_determinism_enabled()


def test_deterministic_ops_do_not_leak_into_the_next_test():
    assert not tf_config.is_op_determinism_enabled()


def test_the_fixture_switches_them_on_for_its_test(deterministic_ops):
    assert tf_config.is_op_determinism_enabled()


def test_and_off_after_it():
    assert not tf_config.is_op_determinism_enabled()
