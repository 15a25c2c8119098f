"""Profile an .onnx model in ONNX Runtime (the edge export's `model_int8.onnx`): where the time of
one run goes, by operator, as ONNX Runtime ran it (after its own graph rewrites, e.g. QLinearConv
to the NHWC form). The sibling of benchmarks/profile_tflite.py.

    python -m benchmarks.profile_onnx RUN/model_int8.onnx [--batch 8] [--threads N]
                                      [--repeats 10] [--out benchmarks/tmp/profile]

Uses ONNX Runtime's own profiler (per-node kernel times of every run); reported: medians over
`--repeats` runs after a warm-up, per node and summed by operator type, with the multiply-adds of
the convolutions (GMAC/s), and the whole run's median time measured without the profiler.
Writes OUT/<model>_onnx_b<batch>_t<threads>.json and .md. No TensorFlow.
"""

import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _session(path, num_threads, profile_prefix=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = int(num_threads), 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(Path(path).read_bytes(), options, providers=["CPUExecutionProvider"])


def weight_shapes(path):
    """Node name -> weight shape [O, I / groups, kH, kW] of every convolution in the .onnx file
    (ONNX Runtime packs the weights, so its profile does not show them)."""
    import onnx

    model = onnx.load_model_from_string(Path(path).read_bytes())
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    position = {"QLinearConv": 3, "Conv": 1}
    return {node.name: shapes[node.input[position[node.op_type]]] for node in model.graph.node
            if node.op_type in position and node.input[position[node.op_type]] in shapes}


def conv_macs(weights, output_shape):
    """Multiply-adds of one convolution: output elements x (input channels per group x kernel
    area); 0 without a weight shape."""
    if not weights or not output_shape:
        return 0
    return int(np.prod(output_shape)) * int(np.prod(weights[1:]))


def _shapes(entries):
    """ONNX Runtime's [{"uint8": [8, 64, 128, 128]}, ...] -> [[8, 64, 128, 128], ...]."""
    return [list(next(iter(entry.values()))) if entry else [] for entry in entries or []]


def profile(path, batch=1, num_threads=None, repeats=10, seed=0):
    """Profile the .onnx at `path` (float32 NHWC input, as common.onnx_runtime runs it).

    Returns:
        dict: model, batch, threads, repeats, machine (common.cpuinfo.cpu_info), whole_ms (median
        of one run without the profiler), nodes_sum_ms, nodes (per node in run order: name, op,
        output_shape, ms (median), macs), by_type (op -> count, ms, share, macs), slowest first.
    """
    from common.cpuinfo import cpu_info

    machine = cpu_info()
    num_threads = int(num_threads or machine["cores"] or 1)
    plain = _session(path, num_threads)
    source = plain.get_inputs()[0]
    x = np.random.default_rng(seed).normal(size=[batch, *source.shape[1:]]).astype(np.float32)
    plain.run(None, {source.name: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        plain.run(None, {source.name: x})
        times.append(1000.0 * (time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as folder:
        profiled = _session(path, num_threads, Path(folder) / "ort")
        for _ in range(repeats + 1):
            profiled.run(None, {source.name: x})
        events = json.loads(Path(profiled.end_profiling()).read_text())
    weights = weight_shapes(path)
    runs = defaultdict(list)
    info = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        name, args = event["name"][: -len("_kernel_time")], event.get("args", {})
        runs[name].append(event["dur"] / 1000.0)
        if name not in info:
            output = _shapes(args.get("output_type_shape"))
            # ONNX Runtime's rewrites keep our node names, with a suffix (`qconv_31_token_8`).
            base = re.sub(r"_token_\d+$", "", name)
            info[name] = {"op": args.get("op_name", "?"), "output_shape": output[0] if output else [],
                          "macs": conv_macs(weights.get(base), output[0] if output else [])}
    nodes = [{"name": name, **info[name], "ms": statistics.median(durations[1:] or durations)}
             for name, durations in runs.items()]
    total = sum(node["ms"] for node in nodes)
    by_type = defaultdict(lambda: {"count": 0, "ms": 0.0, "macs": 0})
    for node in nodes:
        entry = by_type[node["op"]]
        entry["count"] += 1
        entry["ms"] += node["ms"]
        entry["macs"] += node["macs"]
    for entry in by_type.values():
        entry["share"] = entry["ms"] / total if total else 0.0
    return {"model": str(path), "batch": batch, "threads": num_threads, "repeats": repeats, "machine": machine,
            "whole_ms": statistics.median(times), "nodes_sum_ms": total, "nodes": nodes,
            "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1]["ms"]))}


def _gmac_per_s(macs, ms):
    return f"{macs / ms / 1e6:.1f}" if macs and ms > 0 else "-"


def markdown(report, top=10):
    """The report as Markdown: the CPU line, a table by operator type, the `top` slowest nodes."""
    import onnxruntime as ort

    from common.cpuinfo import cpu_line

    lines = [
        f"# ONNX Runtime op profile: {Path(report['model']).name}", "",
        cpu_line(report["machine"]), "",
        f"ONNX Runtime {ort.__version__}, batch {report['batch']}, {report['threads']} threads; whole model "
        f"{report['whole_ms']:.2f} ms per run ({report['whole_ms'] / report['batch']:.2f} ms per example), nodes "
        f"{report['nodes_sum_ms']:.2f} ms; medians of {report['repeats']} runs. GMAC/s: multiply-accumulates per "
        "second (convolutions).", "",
        "| op type | nodes | ms per run | share | GMAC/s |", "|---|---:|---:|---:|---:|",
    ]
    for name, entry in report["by_type"].items():
        lines.append(f"| {name} | {entry['count']} | {entry['ms']:.2f} | {100 * entry['share']:.1f} % | "
                     f"{_gmac_per_s(entry['macs'], entry['ms'])} |")
    lines += ["", f"Slowest {top} nodes:", "", "| node | op | output shape | ms | GMAC/s |", "|---|---|---|---:|---:|"]
    for node in sorted(report["nodes"], key=lambda node: -node["ms"])[:top]:
        lines.append(f"| {node['name']} | {node['op']} | {'x'.join(map(str, node['output_shape']))} | "
                     f"{node['ms']:.2f} | {_gmac_per_s(node['macs'], node['ms'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from benchmarks.profile_tflite import profiler_main

    return profiler_main(argv, __doc__.splitlines()[0], ".onnx", profile, markdown, suffix="_onnx")


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main, sys.argv[1:])
