"""Test-wide set-up: quiet TensorFlow, two threads, no GPU, a clean Keras session per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def _start_tensorflow_quietly():
    """TensorFlow's native start-up lines (absl writes them before it reads TF_CPP_MIN_LOG_LEVEL)
    go to /dev/null: pytest captures them in a test process, but not in pytest-xdist's controller.
    Python errors still surface, raised after file descriptor 2 is back."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        from common.cli import setup_tensorflow

        setup_tensorflow(threads=2)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_start_tensorflow_quietly()


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Keep layer names and memory from leaking between tests."""
    yield
    import tf_keras as keras

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
