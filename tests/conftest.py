"""Test-wide set-up: quiet TensorFlow, two threads, no GPU, a clean Keras session per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from common.cli import setup_tensorflow  # noqa: E402

setup_tensorflow(threads=2)


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Keep layer names and memory from leaking between tests."""
    yield
    import tf_keras as keras

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
