"""How fast int8 convolutions run in LiteRT (this project's runtime) and in ONNX Runtime, on this CPU.

    python -m benchmarks.int8_runtimes [--layers 4] [--batch 8] [--size 128] [--channels 64] [--out benchmarks]
    make bench-int8 [CPU_CAP=x86-64-v3]

The same stack of 3x3 SAME convolutions (the U-Net's 128x128 level: 64 -> 64 channels, batch 8,
ReLU between) in int8, each runtime in its own process, 2 threads, best of five runs after one
warm-up:

- LiteRT with XNNPACK (`ai-edge-litert`, .venv): the stack converted by the TFLite converter with
  full-integer post-training quantization (int8 activations, per-channel int8 weights), as
  `export` writes the U-Net.
- ONNX Runtime (.venv-peer, benchmarks/peer/ort_conv_stack.py): QLinearConv with uint8
  activations and 7-bit weights, the form its MLAS kernels run with `vpmaddubsw` on AVX2.

Why: on CPUs without VNNI, XNNPACK's int8 convolutions for 8-bit weights use 16-bit multiplies
and run barely faster than float32 (docs/performance.md, "On an AVX2-only CPU"); this measures
what another runtime's kernels would give there (issue 27). The weights and activations are
random: this times kernels, it checks no accuracy.

Writes OUT/INT8_RUNTIMES.md and OUT/int8_runtimes.json (INT8_RUNTIMES_x86-64-v3.md and
int8_runtimes_x86-64-v3.json under `CPU_CAP=x86-64-v3`).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
ORT_SCRIPT = ROOT / "benchmarks" / "peer" / "ort_conv_stack.py"


def litert_conv_stack(layers, batch, size, channels, threads, work, repeats=5):
    """Best milliseconds per invoke of the int8 TFLite conv stack (written into `work`) in LiteRT."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((size, size, channels), batch_size=batch)
    x = inputs
    for _ in range(layers):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(x)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.normal(size=(batch, size, size, channels)).astype(np.float32)]
                                                for _ in range(3))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    Path(work).mkdir(parents=True, exist_ok=True)
    path = Path(work) / "conv_stack_int8.tflite"
    path.write_bytes(converter.convert())
    interpreter = Interpreter(str(path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], rng.integers(-128, 128, detail["shape"], dtype=np.int8))
    interpreter.invoke()  # warm-up: XNNPACK packs the weights on the first run
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    from ai_edge_litert import __version__ as litert_version

    return {"runtime": f"LiteRT {litert_version} (XNNPACK)", "ms": 1000 * min(times),
            "kernel": "CONV_2D, s8 activations x s8 8-bit per-channel weights"}


def onnxruntime_conv_stack(layers, batch, size, channels, threads):
    """The same stack in ONNX Runtime, in .venv-peer (None when that environment lacks it)."""
    if not PEER_PYTHON.is_file() or subprocess.run([str(PEER_PYTHON), "-c", "import onnxruntime"],
                                                   capture_output=True).returncode != 0:
        return None
    result = subprocess.run([str(PEER_PYTHON), str(ORT_SCRIPT), "--layers", str(layers), "--batch", str(batch),
                             "--size", str(size), "--channels", str(channels), "--threads", str(threads)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {ORT_SCRIPT}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(results):
    from common.cpuinfo import cpu_line

    shape = results["shape"]
    lines = ["# int8 convolutions in LiteRT and in ONNX Runtime", "",
             f"Made by `python -m benchmarks.int8_runtimes` on {results['machine']['date']}: {shape['layers']} 3x3 "
             f"convolutions, {shape['channels']} -> {shape['channels']} channels, {shape['size']}x{shape['size']}, "
             f"batch {shape['batch']}, {results['threads']} threads; best of 5 runs after a warm-up. Random weights "
             "and inputs: kernel speed only.", "", cpu_line(results["machine"]), "",
             "| runtime | kernel | ms | GMAC/s |", "|---|---|---:|---:|"]
    for row in results["rows"]:
        lines.append(f"| {row['runtime']} | {row['kernel']} | {row['ms']:.1f} | {row['gmac_per_s']:.1f} |")
    if "onnxruntime_vs_litert" in results:
        lines += ["", f"ONNX Runtime / LiteRT speed: {results['onnxruntime_vs_litert']:.2f}x"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("layers", 4), ("batch", 8), ("size", 128), ("channels", 64), ("threads", 2)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = parser.parse_args(argv)
    from common.bench import machine, write_outputs
    from common.cli import setup_tensorflow
    from common.cpuinfo import level_suffix

    setup_tensorflow(args.threads)
    shape = {"layers": args.layers, "batch": args.batch, "size": args.size, "channels": args.channels}
    macs = args.layers * args.batch * args.size * args.size * args.channels * args.channels * 9
    rows = [litert_conv_stack(args.layers, args.batch, args.size, args.channels, args.threads,
                              Path(args.out) / "tmp" / "int8_runtimes")]
    peer = onnxruntime_conv_stack(args.layers, args.batch, args.size, args.channels, args.threads)
    if peer is None:
        print(f"int8_runtimes: {PEER_PYTHON} with onnxruntime missing (make bench-int8 installs it): LiteRT only",
              flush=True)
    else:
        rows.append(peer)
    for row in rows:
        row["gmac_per_s"] = macs / row["ms"] / 1e6
    results = {"machine": machine(), "threads": args.threads, "shape": shape, "macs": macs, "rows": rows}
    if peer is not None:
        results["onnxruntime_vs_litert"] = rows[0]["ms"] / peer["ms"]
    suffix = level_suffix(results["machine"])  # a run under benchmarks/cpu_cap.c keeps its own files
    write_outputs(args.out, results, f"int8_runtimes{suffix}.json", f"INT8_RUNTIMES{suffix}.md", markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
