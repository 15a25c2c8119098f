"""Profile a .tflite model in LiteRT: where the time of one `invoke` goes, op by op, and which ops
XNNPACK runs.

    python -m benchmarks.profile_tflite RUN/model_int8.tflite [--batch 8] [--threads N]
                                        [--repeats 10] [--out benchmarks/tmp/profile]

The pinned LiteRT (ai-edge-litert 2.3) has no op profiler in Python (the C++ benchmark_model
tool's --enable_op_profiling is not shipped), and XNNPACK runs the ops it takes as one DELEGATE
node. So this tool finds out itself:
- which ops XNNPACK takes: the delegated interpreter lists each DELEGATE node with the tensors its
  partition reads and writes; the model's ops between them are that partition's;
- the time of each op: the op alone in a one-op model (its constant tensors; its other inputs the
  values they hold when the whole model runs on one example, repeated to the batch), invoked at the same batch and threads with the kernel it runs
  in the whole model (XNNPACK for delegated ops, the builtin TFLite kernel otherwise), median of
  `--repeats` after a warm-up; the builtin kernel's time is measured beside it for every op;
- the whole model's time at that batch, to compare with the ops' sum (XNNPACK fuses nothing across
  TFLite ops, so the two agree within the run-to-run spread and the per-op overhead).

Prints one table by op type and the slowest ops, and writes both as JSON and Markdown
(OUT/<model>_b<batch>_t<threads>.json and .md). No TensorFlow.
"""

import argparse
import copy
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _interpreter(content, num_threads, xnnpack):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = Interpreter(model_content=bytes(content), num_threads=num_threads, **options)
    interpreter.allocate_tensors()
    return interpreter


def delegated_ops(content, num_ops, num_threads=1):
    """Indices of the model's ops (0..num_ops-1) that XNNPACK takes when the model is loaded with
    LiteRT's default delegates: the ops inside some DELEGATE node's partition (found from its
    output tensors back to its input tensors)."""
    interpreter = _interpreter(content, num_threads, xnnpack=True)
    details = interpreter._get_ops_details()
    producer = {}
    for op in details[:num_ops]:
        for tensor in op["outputs"]:
            producer[int(tensor)] = op["index"]
    taken = set()
    for node in details[num_ops:]:
        if node["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in taken:
                continue
            index = producer[tensor]
            taken.add(index)
            stack.extend(int(t) for t in details[index]["inputs"] if t >= 0)
    return taken


def _is_constant(model, tensor):
    data = model.buffers[tensor.buffer].data if 0 < tensor.buffer < len(model.buffers) else None
    return data is not None and len(data) > 0


def one_op_model(model, index):
    """(flatbuffer bytes, input tensors) of a model holding only op `index` of `model` (a schema
    ModelT of one subgraph): its constant inputs with their data, its other inputs as the model's
    inputs; `input tensors` are those inputs' indices in `model`, in the one-op model's order."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    op = graph.operators[index]
    single = schema.ModelT()
    single.version = model.version
    single.operatorCodes = model.operatorCodes
    single.buffers = [schema.BufferT()]
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs = [], [], []
    mapping = {}

    def add(old):
        if old < 0:
            return old  # an optional input left out
        if old not in mapping:
            tensor = copy.copy(graph.tensors[old])
            if _is_constant(model, tensor):
                single.buffers.append(model.buffers[tensor.buffer])
                tensor.buffer = len(single.buffers) - 1
            else:
                tensor.buffer = 0
            mapping[old] = len(sub.tensors)
            sub.tensors.append(tensor)
        return mapping[old]

    new_op = copy.copy(op)
    new_op.inputs = [add(t) for t in op.inputs]
    new_op.outputs = [add(t) for t in op.outputs]
    fed = [t for t in dict.fromkeys(op.inputs) if t >= 0 and not _is_constant(model, graph.tensors[t])]
    sub.inputs = [mapping[t] for t in fed]
    sub.outputs = list(new_op.outputs)
    sub.operators = [new_op]
    single.subgraphs = [sub]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(single)), fed


def tensor_values(content, x):
    """Every tensor of the model (index -> array) after one builtin-kernel invoke on the input
    batch `x`: what each op really reads at that batch (random values would be invalid for some
    ops: a quantized divisor at its zero point, a computed shape that names the batch)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=bytes(content), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], np.asarray(x, detail["dtype"]))
    interpreter.invoke()
    values = {}
    for tensor in interpreter.get_tensor_details():
        try:
            values[tensor["index"]] = interpreter.get_tensor(tensor["index"])
        except ValueError:  # a tensor without data (an unused optional input)
            pass
    return values




def op_macs(name, output_shape, input_shapes):
    """Multiply-accumulates of one op at its output shape (batch included): convolutions and
    fully connected layers, from their weight tensor's shape (TFLite's layouts: CONV_2D
    [out, kh, kw, in], DEPTHWISE_CONV_2D [1, kh, kw, out], FULLY_CONNECTED [out, in]); 0 for
    every other op."""
    weights = input_shapes[1] if len(input_shapes) > 1 and input_shapes[1] is not None else None
    if weights is None or not output_shape:
        return 0
    outputs = int(np.prod(output_shape))
    if name == "CONV_2D":
        return outputs * int(np.prod(weights[1:]))
    if name == "DEPTHWISE_CONV_2D":
        return outputs * int(weights[1]) * int(weights[2])
    if name == "FULLY_CONNECTED":
        return outputs * int(weights[-1])
    return 0


def _gmac_per_s(macs, ms):
    return f"{macs / ms / 1e6:.1f}" if macs and ms else "-"


def _median_ms(interpreter, repeats):
    interpreter.invoke()  # warm-up: XNNPACK packs weights and sets up on the first call
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _time_op(content, inputs, num_threads, xnnpack, repeats):
    """(ms per invoke, whether XNNPACK took the one-op model) of a one-op model on `inputs` (its
    input arrays in order, batched)."""
    interpreter = _interpreter(content, num_threads, xnnpack)
    for detail, value in zip(interpreter.get_input_details(), inputs):
        if tuple(detail["shape"]) != value.shape:
            interpreter.resize_tensor_input(detail["index"], list(value.shape))
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], value)
    took = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return _median_ms(interpreter, repeats), took


def profile(path, batch=1, num_threads=None, repeats=10, seed=0, x=None):
    """Profile the .tflite at `path`.

    Args:
        path: the model file. batch: examples per invoke (the model's batch axis is resized).
        num_threads: LiteRT threads (None: the cores this process may use). repeats: timed
            invokes per measurement, after one warm-up. x: an input example (its first), None:
            random normal values (seeded by `seed`), which is all a timing needs of raw bands.

    Returns:
        dict: "model", "batch", "threads", "machine" (common.cpuinfo.cpu_info), "whole_ms" (one
        invoke of the whole model, XNNPACK as LiteRT loads it by default), "ops_sum_ms", "ops":
        one dict per op in graph order (index, op, input_dtype, output_shape, runs_in ("XNNPACK"
        or "builtin"), ms (in the kernel it runs in), builtin_ms, macs (op_macs)), "by_type": op
        type -> (count, XNNPACK count, ms, share of ops_sum_ms, macs), slowest first.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    from common.cpuinfo import cpu_info
    from common.errors import DataError

    path = Path(path)
    machine = cpu_info()
    num_threads = int(num_threads or machine["cores"] or 1)
    content = path.read_bytes()
    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    except Exception as error:  # the flatbuffer reader raises anything on a foreign file
        raise DataError(f"{path}: not a readable TFLite model ({error})") from error
    if len(model.subgraphs) != 1:
        raise DataError(f"{path}: {len(model.subgraphs)} subgraphs; the profiler handles models of one")
    rng = np.random.default_rng(seed)
    graph = model.subgraphs[0]
    taken = delegated_ops(content, len(graph.operators), num_threads)
    plain = _interpreter(content, num_threads, xnnpack=False)
    details = plain._get_ops_details()
    tensors = {t["index"]: t for t in plain.get_tensor_details()}
    source = plain.get_input_details()[0]
    example = rng.normal(size=source["shape"][1:]) if x is None else np.asarray(x)[0]
    batched = np.repeat(example[None], batch, axis=0).astype(source["dtype"])
    values = tensor_values(content, batched)
    ops = []
    for index, op in enumerate(details[:len(graph.operators)]):
        single, fed = one_op_model(model, index)
        inputs = [values[t] for t in fed]
        builtin_ms, _ = _time_op(single, inputs, num_threads, False, repeats)
        xnnpack = index in taken
        ms = _time_op(single, inputs, num_threads, True, repeats)[0] if xnnpack else builtin_ms
        first_in = next((int(t) for t in op["inputs"] if t >= 0), None)
        out = int(op["outputs"][0])
        output_shape = [int(d) for d in np.shape(values[out])] if out in values else []
        ops.append({
            "index": index, "op": op["op_name"],
            "input_dtype": np.dtype(tensors[first_in]["dtype"]).name if first_in is not None else "none",
            "output_shape": output_shape,
            "runs_in": "XNNPACK" if xnnpack else "builtin", "ms": ms, "builtin_ms": builtin_ms,
            "macs": op_macs(op["op_name"], output_shape, [tensors[int(t)]["shape"] if t >= 0 else None
                                                           for t in op["inputs"]]),
        })
    whole = _interpreter(content, num_threads, xnnpack=True)
    detail = whole.get_input_details()[0]
    whole.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
    whole.allocate_tensors()
    whole.set_tensor(detail["index"], batched)
    whole_ms = _median_ms(whole, repeats)
    total = sum(op["ms"] for op in ops)
    by_type = defaultdict(lambda: {"count": 0, "xnnpack": 0, "ms": 0.0})
    for op in ops:
        entry = by_type[op["op"]]
        entry["count"] += 1
        entry["xnnpack"] += op["runs_in"] == "XNNPACK"
        entry["ms"] += op["ms"]
        entry["macs"] = entry.get("macs", 0) + op["macs"]
    for entry in by_type.values():
        entry["share"] = entry["ms"] / total if total else 0.0
    return {
        "model": str(path), "batch": batch, "threads": num_threads, "repeats": repeats, "machine": machine,
        "whole_ms": whole_ms, "ops_sum_ms": total, "ops": ops,
        "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1]["ms"])),
    }


def markdown(report, top=10):
    """The report as Markdown: the CPU line, a table by op type, the `top` slowest ops."""
    from common.cpuinfo import cpu_line

    delegated = sum(op["runs_in"] == "XNNPACK" for op in report["ops"])
    lines = [
        f"# LiteRT op profile: {Path(report['model']).name}", "",
        cpu_line(report["machine"]), "",
        f"Batch {report['batch']}, {report['threads']} threads; whole model {report['whole_ms']:.2f} ms per invoke "
        f"({report['whole_ms'] / report['batch']:.2f} ms per example), ops one at a time "
        f"{report['ops_sum_ms']:.2f} ms; {delegated} of {len(report['ops'])} ops run in XNNPACK. Medians of "
        f"{report['repeats']} invokes. GMAC/s: multiply-accumulates per second (convolutions and fully "
        "connected layers).", "",
        "| op type | ops | in XNNPACK | ms per invoke | share | GMAC/s |", "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["by_type"].items():
        lines.append(f"| {name} | {entry['count']} | {entry['xnnpack']} | {entry['ms']:.2f} | "
                     f"{100 * entry['share']:.1f} % | {_gmac_per_s(entry.get('macs', 0), entry['ms'])} |")
    lines += ["", f"Slowest {top} ops (builtin: the TFLite kernel's time for the same op):", "",
              "| # | op | input | output shape | runs in | ms | GMAC/s | builtin ms |",
              "|---:|---|---|---|---|---:|---:|---:|"]
    for op in sorted(report["ops"], key=lambda op: -op["ms"])[:top]:
        lines.append(f"| {op['index']} | {op['op']} | {op['input_dtype']} | {'x'.join(map(str, op['output_shape']))} | "
                     f"{op['runs_in']} | {op['ms']:.2f} | {_gmac_per_s(op.get('macs', 0), op['ms'])} | "
                     f"{op['builtin_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def profiler_main(argv, description, what, profile_fn, markdown_fn, suffix=""):
    """The command line of a profiler (this one, benchmarks/profile_onnx.py): parse MODEL --batch
    --threads --repeats --out, profile, write OUT/<model><suffix>_b<batch>_t<threads>.json and .md,
    print the Markdown."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", help=f"the {what} file")
    parser.add_argument("--batch", type=int, default=1, help="examples per run (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: the cores)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "tmp" / "profile"))
    args = parser.parse_args(argv)
    from common.io import write_json, write_text

    report = profile_fn(args.model, args.batch, args.threads, args.repeats)
    stem = Path(args.out) / f"{Path(args.model).stem}{suffix}_b{report['batch']}_t{report['threads']}"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), report)
    text = markdown_fn(report)
    write_text(stem.with_suffix(".md"), text)
    print(text, end="")
    print(f"written: {stem}.json, {stem}.md")
    return 0


def main(argv=None):
    return profiler_main(argv, __doc__.splitlines()[0], ".tflite", profile, markdown)


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main, sys.argv[1:])
