"""train.weight_gradients: convolution weight gradients as matrix products (common/weight_gradients.py)."""

import platform

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.config import TRAIN_DEFAULTS, load_config, same_run_settings
from common.errors import ConfigError
from common.weight_gradients import (
    MIN_CHANNEL_PRODUCT,
    MIN_OUTPUT_PIXELS,
    matmul_weight_gradient,
    resolve,
    weight_gradients,
)

DEFAULTS = {"train": dict(TRAIN_DEFAULTS)}
MATMUL = {"weight_gradients": "matmul"}


def _tensorflow_weight_gradient(x, dy, kernel_size, padding):
    return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[*kernel_size, x.shape[-1], dy.shape[-1]],
                                           out_backprop=dy, strides=[1, 1, 1, 1], padding=padding)


@pytest.mark.parametrize("kernel_size,padding", [((3, 3), "SAME"), ((2, 2), "SAME"), ((1, 3), "SAME"),
                                                 ((1, 1), "SAME"), ((3, 3), "VALID"), ((2, 3), "VALID")])
def test_matmul_form_equals_tensorflows_kernel(kernel_size, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 9, 7, 5)), tf.float32)
    out = (9, 7) if padding == "SAME" else (9 - kernel_size[0] + 1, 7 - kernel_size[1] + 1)
    dy = tf.constant(rng.normal(size=(3, *out, 4)), tf.float32)
    got = matmul_weight_gradient(x, dy, kernel_size, padding)
    assert got.shape == (*kernel_size, 5, 4)
    np.testing.assert_allclose(got.numpy(), _tensorflow_weight_gradient(x, dy, kernel_size, padding).numpy(),
                               rtol=1e-4, atol=1e-4)


def _conv_gradients(size, strides=1, channels=(32, 64)):
    """(weight gradient, input gradient, op types of the traced backward graph) of one Conv2D."""
    keras.utils.set_random_seed(1)
    layer = keras.layers.Conv2D(channels[1], 3, strides=strides, padding="same", use_bias=False)
    x = tf.random.normal([2, size, size, channels[0]])
    layer.build(x.shape)

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [layer.kernel, x])

    kernel_grad, input_grad = gradients(x)
    graph = gradients.get_concrete_function(x).graph
    return kernel_grad.numpy(), input_grad.numpy(), {op.type for op in graph.get_operations()}


def test_training_step_takes_the_matmul_form_inside_the_context_only():
    side = int(np.sqrt(MIN_OUTPUT_PIXELS))
    reference_w, reference_x, ops = _conv_gradients(side)
    assert "Conv2DBackpropFilter" in ops and "MatMul" not in ops
    with weight_gradients(MATMUL) as (used, why):
        assert used and why == "set in the config"
        matmul_w, matmul_x, ops = _conv_gradients(side)
        assert "MatMul" in ops and "Conv2DBackpropFilter" not in ops  # TensorFlow took our gradient
        # Smaller maps, fewer channels and strided convolutions keep TensorFlow's kernel.
        assert "Conv2DBackpropFilter" in _conv_gradients(side // 2)[2]
        assert "Conv2DBackpropFilter" in _conv_gradients(side, channels=(16, MIN_CHANNEL_PRODUCT // 16 - 1))[2]
        assert "Conv2DBackpropFilter" in _conv_gradients(side, strides=2)[2]
    np.testing.assert_allclose(matmul_w, reference_w, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(matmul_x, reference_x, rtol=1e-5, atol=1e-5)
    assert "Conv2DBackpropFilter" in _conv_gradients(side)[2]  # restored on leaving


def test_fit_learns_the_same_weights_either_way():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype(np.float32)
    y = (x[..., :1] > 0.3).astype(np.float32)

    def trained(choice):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((32, 32, 3))
        hidden = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
        hidden = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(hidden)  # 64 x 32 channels
        outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(hidden)
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
        with weight_gradients({"weight_gradients": choice}):
            history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        return model.get_weights(), history.history["loss"]

    (tf_weights, tf_loss), (mm_weights, mm_loss) = trained("tensorflow"), trained("matmul")
    assert mm_loss[-1] < mm_loss[0]
    np.testing.assert_allclose(mm_loss, tf_loss, rtol=1e-4)
    for a, b in zip(mm_weights, tf_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_auto_takes_the_matmul_form_on_x86_cpus_without_avx512():
    no_gpu = not tf.config.list_physical_devices("GPU")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    auto = {"weight_gradients": "auto"}
    assert resolve(auto, {"cpu_flags": ["avx2", "fma"]}) == (
        (True, "auto: an x86-64 CPU without AVX-512") if no_gpu and x86 else (False, resolve(auto)[1]))
    assert resolve(auto, {"cpu_flags": ["avx2", "fma", "avx512f"]})[0] is False
    assert resolve(auto, {"cpu_flags": None})[0] is False
    assert resolve({"weight_gradients": "tensorflow"}, {"cpu_flags": ["avx2"]}) == (False, "set in the config")
    assert resolve(MATMUL, {"cpu_flags": ["avx512f"]}) == (True, "set in the config")


def test_the_cpu_rule_needs_x86_64_without_avx512():
    from common.cpuinfo import slow_weight_gradient_kernel

    avx2 = {"cpu_flags": ["avx2", "fma"]}
    assert slow_weight_gradient_kernel(avx2, "x86_64") == (True, "an x86-64 CPU without AVX-512")
    assert slow_weight_gradient_kernel(avx2, "aarch64") == (False, "a CPU of type aarch64")
    assert slow_weight_gradient_kernel({"cpu_flags": ["avx2", "avx512f"]}, "x86_64")[0] is False
    assert slow_weight_gradient_kernel({"cpu_flags": None}, "x86_64") == (False, "CPU flags unknown")


def test_config_key_is_checked_and_not_part_of_a_runs_identity():
    assert load_config(None, [], defaults=DEFAULTS)["train"]["weight_gradients"] == "auto"
    with pytest.raises(ConfigError, match="train.weight_gradients"):
        load_config(None, ["train.weight_gradients=fast"], defaults=DEFAULTS)
    with pytest.raises(ConfigError, match="train.weight_gradients"):
        resolve({"weight_gradients": "fast"})
    # Resuming with another choice (or a run saved before the key) is the same run.
    assert same_run_settings({"train": {"epochs": 3}}, {"train": {"epochs": 3, "weight_gradients": "matmul"}})
