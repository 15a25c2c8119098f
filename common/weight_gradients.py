"""Convolution weight gradients as matrix products, for CPUs where TensorFlow's own kernel is slow.

On x86 CPUs without AVX-512, TensorFlow's `Conv2DBackpropFilter` runs oneDNN's NHWC kernel
(`jit:avx2`), which computes at about half the speed of the forward convolution
(benchmarks/CONV_KERNELS_x86-64-v3.md: 62 against 123 GMAC/s in the U-Net's training step). The
same gradient is a sum of kh*kw matrix products, which oneDNN's matmul runs near the forward speed:

    dW[i, j] = sum over positions p of  x_padded[p + (i, j)]^T  dy[p]       ([ci, co] each)

Laid out on the padded input's grid and flattened to rows, each shifted input is a contiguous slice
of one [rows, ci] matrix, and the dy rows that fall on padding are zeros, so the nine products of a
3x3 kernel read the input once each without copying it (`matmul_weight_gradient`).

`weight_gradients(train_cfg)` swaps TensorFlow's gradient of the `Conv2D` op for one that uses the
matmul form where it is faster, for the duration of a training run. It changes no result beyond
float rounding (tested against TensorFlow's kernel). Where it is used (`train.weight_gradients`):

- `auto` (default): on x86-64 CPUs without AVX-512 and without a GPU. With AVX-512 TensorFlow's
  kernel is as fast or faster (measured on this project's AVX-512 machine), and GPUs use cuDNN.
- `matmul`: everywhere, `tensorflow`: never.

Either way only stride-1, undilated NHWC convolutions with SAME or VALID padding, at least
MIN_OUTPUT_PIXELS output pixels per example and at least MIN_CHANNEL_PRODUCT input times output
channels take the matmul form. Elsewhere TensorFlow's kernel was faster, measured layer by layer on
AVX2: on small maps with many channels (16x16, 256 -> 512 channels: 28 against 41 ms, batch 8) and
on few channels, where the products are too thin to pay for the padded copies (3x3, 16 -> 16
channels at 128x32: 4.3 against 5.4 ms, batch 32; 1 -> 16: 3.5 against 14 ms).
"""

import contextlib

import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import gen_nn_ops

from common.errors import ConfigError

CHOICES = ("auto", "matmul", "tensorflow")
# Output pixels per example, and input x output channels, from which the matmul form was faster
# on AVX2 (32x32 maps and up; 64 -> 64 and 24 -> 144 channels were faster, 32 -> 32 even).
MIN_OUTPUT_PIXELS = 32 * 32
MIN_CHANNEL_PRODUCT = 2048


def matmul_weight_gradient(x, dy, kernel_size, padding):
    """The weight gradient of a stride-1, undilated NHWC 2-D convolution, by kh*kw matrix products.

    Args:
        x: [batch, height, width, ci] input of the convolution (static height, width and ci).
        dy: [batch, out_height, out_width, co] gradient of the loss with respect to its output.
        kernel_size: (kh, kw).
        padding: "SAME" or "VALID", as the convolution was called.

    Returns:
        [kh, kw, ci, co] gradient with respect to the kernel, in x's dtype.
    """
    kh, kw = kernel_size
    _, height, width, ci = x.shape
    co = dy.shape[-1]
    if padding == "SAME":  # TensorFlow puts the odd pixel of padding after (bottom, right)
        top, left = (kh - 1) // 2, (kw - 1) // 2
        pads = [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]]
    elif padding == "VALID":
        pads = [[0, 0], [0, 0], [0, 0], [0, 0]]
    else:
        raise ValueError(f"padding must be SAME or VALID, got {padding!r}")
    padded_width = width + pads[2][0] + pads[2][1]
    x_rows = tf.reshape(tf.pad(x, pads), [-1, ci])
    # dy on the same grid: output pixel (r, c) sits where its window starts; the rest are zeros.
    dy_rows = tf.reshape(tf.pad(dy, [[0, 0], [0, kh - 1], [0, kw - 1], [0, 0]]), [-1, co])
    rows = tf.shape(x_rows)[0] - ((kh - 1) * padded_width + (kw - 1))
    dy_rows = dy_rows[:rows]
    products = []
    for i in range(kh):
        for j in range(kw):
            shift = i * padded_width + j
            products.append(tf.matmul(x_rows[shift:shift + rows], dy_rows, transpose_a=True))
    return tf.reshape(tf.stack(products), [kh, kw, ci, co])


def _attr(op, name):
    value = op.get_attr(name)
    return value.decode() if isinstance(value, bytes) else value


def takes_matmul_form(op, grad):
    """Whether the Conv2D `op`'s weight gradient is computed by `matmul_weight_gradient` (`grad`: the
    gradient of its output; the op's own outputs are not kept when a gradient tape records it)."""
    x, kernel = op.inputs
    if (_attr(op, "data_format") != "NHWC" or _attr(op, "padding") not in ("SAME", "VALID")
            or list(op.get_attr("strides")) != [1, 1, 1, 1] or list(op.get_attr("dilations")) != [1, 1, 1, 1]):
        return False
    if x.shape.rank != 4 or not x.shape[1:].is_fully_defined() or not kernel.shape.is_fully_defined():
        return False
    if kernel.shape[2] * kernel.shape[3] < MIN_CHANNEL_PRODUCT:
        return False
    out_height, out_width = grad.shape[1:3] if grad.shape.rank == 4 else (None, None)
    return out_height is not None and out_width is not None and out_height * out_width >= MIN_OUTPUT_PIXELS


def _conv2d_gradient(op, grad):
    """Gradient of Conv2D: TensorFlow's for the input, the matmul form for the weights where it applies."""
    if not takes_matmul_form(op, grad):
        return _TENSORFLOW_GRADIENT(op, grad)
    x, kernel = op.inputs
    dx = gen_nn_ops.conv2d_backprop_input(
        tf.shape(x), kernel, grad, strides=op.get_attr("strides"), padding=op.get_attr("padding"),
        explicit_paddings=op.get_attr("explicit_paddings"), use_cudnn_on_gpu=op.get_attr("use_cudnn_on_gpu"),
        data_format=op.get_attr("data_format"), dilations=op.get_attr("dilations"))
    dw = matmul_weight_gradient(x, grad, kernel.shape[:2], _attr(op, "padding"))
    return [dx, dw]


# TensorFlow keeps one gradient function per op type in this registry (what @tf.RegisterGradient
# fills), and looks it up when a gradient is built, eagerly or while tracing a tf.function. There
# is no public way to replace an entry; tests/common/test_weight_gradients.py checks that this one
# still takes effect with the pinned TensorFlow.
_ENTRY = ops._gradient_registry._registry["Conv2D"]
_TENSORFLOW_GRADIENT = _ENTRY["type"]


def resolve(train_cfg, info=None):
    """(use the matmul form, why) for `train.weight_gradients` on this machine (`info`: cpu_info())."""
    choice = str(train_cfg.get("weight_gradients", "auto"))
    if choice not in CHOICES:
        raise ConfigError(f"config key 'train.weight_gradients' must be {', '.join(CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice == "matmul", "set in the config"
    if tf.config.list_physical_devices("GPU"):
        return False, "auto: a GPU (cuDNN)"
    from common.cpuinfo import cpu_info, slow_weight_gradient_kernel

    use, why = slow_weight_gradient_kernel(cpu_info() if info is None else info)
    return use, f"auto: {why}"


@contextlib.contextmanager
def weight_gradients(train_cfg, info=None):
    """While open, Conv2D weight gradients follow `train.weight_gradients` (see the module docstring).
    Yields (use the matmul form, why)."""
    use, why = resolve(train_cfg, info)
    if not use:
        yield use, why
        return
    previous = _ENTRY["type"]
    _ENTRY["type"] = _conv2d_gradient
    try:
        yield use, why
    finally:
        _ENTRY["type"] = previous
