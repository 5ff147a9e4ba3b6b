import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _determinism_enabled():
    from tensorflow.python.framework import config as tf_config

    return tf_config.is_op_determinism_enabled()


def _set_determinism(enabled):
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


@pytest.fixture
def deterministic_ops():
    """TensorFlow's deterministic ops for one test, switched back off after it."""
    _set_determinism(True)
    yield


@pytest.fixture(autouse=True)
def _op_determinism_stays_in_its_test():
    # Whatever enables deterministic ops (the fixture above, the
    # tests.helpers.lenet.deterministic helper, a module-scoped fixture, or
    # train_and_evaluate(deterministic=True)) does so for one test only:
    # later tests run in TensorFlow's default mode, as they were written for.
    # TensorFlow is never imported here for tests that do not import it.
    yield
    if "tensorflow" in sys.modules and _determinism_enabled():
        _set_determinism(False)
