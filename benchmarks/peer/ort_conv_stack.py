"""The int8 convolution stack of benchmarks/int8_runtimes.py in ONNX Runtime (run by .venv-peer).

    .venv-peer/bin/python benchmarks/peer/ort_conv_stack.py --layers 4 --batch 8 --size 128 --channels 64 --threads 2

QLinearConv with uint8 activations and int8 per-channel weights: the operator ONNX Runtime's
quantizer writes, which MLAS runs with `vpmaddubsw` on AVX2 (u8 x s8). That instruction adds
pairs of products into 16 bits with saturation, so the weights here are 7-bit ([-64, 63]), as
ONNX Runtime's `reduce_range` makes them for such CPUs. Prints one JSON line: the best
milliseconds per run over the repeats, and the ONNX Runtime version.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def conv_stack(layers, batch, size, channels, seed=0):
    """An ONNX model of `layers` 3x3 SAME QLinearConv (channels -> channels), NCHW uint8."""
    rng = np.random.default_rng(seed)
    initializers = [numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
                    numpy_helper.from_array(np.array(128, np.uint8), "zero")]
    nodes, previous = [], "x"
    for i in range(layers):
        weights = rng.integers(-64, 64, size=(channels, channels, 3, 3)).astype(np.int8)
        initializers += [numpy_helper.from_array(weights, f"w{i}"),
                         numpy_helper.from_array(np.full(channels, 0.002, np.float32), f"w{i}_scale"),
                         numpy_helper.from_array(np.zeros(channels, np.int8), f"w{i}_zero"),
                         numpy_helper.from_array(np.zeros(channels, np.int32), f"b{i}")]
        nodes.append(helper.make_node(
            "QLinearConv", [previous, "scale", "zero", f"w{i}", f"w{i}_scale", f"w{i}_zero", "scale", "zero", f"b{i}"],
            [f"y{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        previous = f"y{i}"
    shape = [batch, channels, size, size]
    graph = helper.make_graph(nodes, "conv_stack", [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
                              [helper.make_tensor_value_info(previous, TensorProto.UINT8, shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("layers", 4), ("batch", 8), ("size", 128), ("channels", 64), ("threads", 2),
                          ("repeats", 5)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(conv_stack(args.layers, args.batch, args.size, args.channels).SerializeToString(),
                                   options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).integers(0, 256, size=(args.batch, args.channels, args.size, args.size), dtype=np.uint8)
    session.run(None, {"x": x})  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    print(json.dumps({"runtime": f"ONNX Runtime {ort.__version__}", "ms": 1000 * min(times),
                      "kernel": "QLinearConv, u8 activations x s8 7-bit weights (MLAS)"}))


if __name__ == "__main__":
    main()
