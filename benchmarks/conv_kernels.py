"""Which oneDNN convolution kernels a unet_ce training step runs, in TensorFlow and in the PyTorch
peer, and how fast each kind goes: forward, backward to the data, backward to the weights.

    python -m benchmarks.conv_kernels [--width 1] [--batch 8] [--out benchmarks]
    make bench-kernels [CPU_CAP=x86-64-v3]

Both frameworks train on oneDNN's kernels (TensorFlow with TF_ENABLE_ONEDNN_OPTS=1, which
common.cli.setup_tensorflow sets on every x86-64 CPU). Each system runs in its own process with
ONEDNN_VERBOSE=1, one training step of warm-up and one measured step, float32, on the same
batch shape; every convolution primitive that oneDNN executes in the measured step is read back
from oneDNN's own log line (kernel name, kind, memory layout, shape, milliseconds). TensorFlow
runs one op at a time here (inter-op threads 1), as PyTorch's autograd does, so that each
primitive's time is its own. The peer runs only where `.venv-peer` exists (`make bench-peer`
creates it).

Writes OUT/CONV_KERNELS.md and OUT/conv_kernels.json (CONV_KERNELS_x86-64-v3.md and
conv_kernels_x86-64-v3.json under `CPU_CAP=x86-64-v3`): per system and kind, the milliseconds of
the step, the multiply-accumulates per second, the kernels and the source layout (acdb: NHWC as
given; aBcd8b: channels blocked by 8, a layout oneDNN reorders to).
"""

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
KINDS = ("forward_training", "backward_data", "backward_weights")
_SHAPE = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)(?:_id\d+od\d+kd\d+sd\d+dd\d+pd\d+)?_ih(\d+)oh(\d+)kh(\d+)\S*?_iw(\d+)ow(\d+)kw(\d+)")

TENSORFLOW_STEP = """
import sys
import numpy as np
from common.cli import setup_tensorflow
setup_tensorflow(int(sys.argv[3]))
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)
from common.config import load_config
from common.train import make_optimizer, set_precision
from landslide.config import DEFAULTS
from landslide.models import build_models, compile_training_model
width, batch = float(sys.argv[1]), int(sys.argv[2])
cfg = load_config("configs/landslide/unet_ce.yaml", [f"model.width={width}", f"train.batch_size={batch}",
                  "train.precision=float32"], defaults=DEFAULTS)
set_precision(cfg["train"])
model, _ = build_models(cfg, [0.0] * 14, [1.0] * 14)
compile_training_model(model, cfg, make_optimizer(cfg["train"], 100))
rng = np.random.default_rng(0)
x = rng.normal(size=(batch, 128, 128, 14)).astype("float32")
y = (rng.random((batch, 128, 128, 1)) > 0.9).astype("float32")
model.train_on_batch(x, y)
print("MEASURED STEP", flush=True)
model.train_on_batch(x, y)
"""

TORCH_STEP = """
import sys
import torch
sys.path.insert(0, "benchmarks/peer")
from l4s_torch import UNet
width, batch = float(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
torch.manual_seed(0)
model = UNet(width=width)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
x = torch.randn(batch, 14, 128, 128)
y = (torch.rand(batch, 128, 128) > 0.9).long()
for step in range(2):
    if step:
        print("MEASURED STEP", flush=True)
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
"""


def parse_verbose(text):
    """The convolution primitives oneDNN executed after the "MEASURED STEP" line of `text` (the
    process's stdout with ONEDNN_VERBOSE=1): a list of dicts with kernel, kind, layout (the
    source memory's), macs (multiply-accumulates) and ms."""
    text = text.split("MEASURED STEP", 1)[-1]
    found = []
    for line in text.splitlines():
        fields = line.strip().split(",")
        if len(fields) < 10 or fields[0] != "onednn_verbose" or "exec" not in fields[:5]:
            continue
        at = fields.index("exec")
        if fields[at + 2] != "convolution":
            continue
        shape = _SHAPE.search(line)
        if shape is None:
            continue
        mb, ic, oc, _, oh, kh, _, ow, kw = (int(v) for v in shape.groups())
        source = next((part for part in fields[at + 5].split() if part.startswith("src:")), "")
        found.append({"kernel": fields[at + 3], "kind": fields[at + 4], "layout": source.split(":")[4] if source.count(":") >= 4 else "",
                      "shape": fields[-2], "macs": mb * oc * oh * ow * ic * kh * kw, "ms": float(fields[-1])})
    return found


def summarise(primitives):
    """Per kind (forward_training, backward_data, backward_weights): ms, GMAC/s, kernels, layouts."""
    kinds = defaultdict(lambda: {"ms": 0.0, "macs": 0, "kernels": set(), "layouts": set(), "primitives": 0})
    for primitive in primitives:
        kind = kinds[primitive["kind"]]
        kind["ms"] += primitive["ms"]
        kind["macs"] += primitive["macs"]
        kind["kernels"].add(primitive["kernel"])
        kind["layouts"].add(primitive["layout"])
        kind["primitives"] += 1
    return {name: {"ms": round(value["ms"], 1), "gmac_per_s": round(value["macs"] / value["ms"] / 1e6, 1),
                   "kernels": sorted(value["kernels"]), "layouts": sorted(value["layouts"]),
                   "primitives": value["primitives"]}
            for name, value in sorted(kinds.items(), key=lambda kv: KINDS.index(kv[0]) if kv[0] in KINDS else 9)}


def run_system(python, code, width, batch, threads):
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([str(python), "-c", code, str(width), str(batch), str(threads)], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {python}: the training step failed:\n{result.stderr[-2000:]}")
    primitives = parse_verbose(result.stdout)
    if not primitives:
        raise SystemExit(f"error: {python}: oneDNN logged no convolution (is oneDNN off?)")
    return primitives


def markdown(results):
    from common.cpuinfo import cpu_line

    lines = ["# oneDNN convolution kernels of one unet_ce training step", "",
             f"Made by `python -m benchmarks.conv_kernels` on {results['machine']['date']}: width "
             f"{results['width']:g}, batch {results['batch']}, 128x128 patches, float32, {results['threads']} threads; "
             "one measured step after one warm-up step, each primitive's time from oneDNN's log (ONEDNN_VERBOSE).",
             "", cpu_line(results["machine"]), "",
             "| system | kind | primitives | ms in the step | GMAC/s | kernels | source layout |",
             "|---|---|---:|---:|---:|---|---|"]
    for system, kinds in results["systems"].items():
        for kind, value in kinds.items():
            lines.append(f"| {system} | {kind} | {value['primitives']} | {value['ms']:.1f} | {value['gmac_per_s']:.1f} | "
                         f"{', '.join(value['kernels'])} | {', '.join(value['layouts'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = parser.parse_args(argv)
    from common.bench import machine, write_outputs
    from common.cpuinfo import level_suffix

    systems = {"this project (TensorFlow)": run_system(sys.executable, TENSORFLOW_STEP, args.width, args.batch,
                                                       args.threads)}
    if PEER_PYTHON.is_file():
        systems["PyTorch peer"] = run_system(PEER_PYTHON, TORCH_STEP, args.width, args.batch, args.threads)
    else:
        print(f"conv_kernels: {PEER_PYTHON} missing (make bench-peer creates it): TensorFlow only", flush=True)
    results = {"machine": machine(), "width": args.width, "batch": args.batch, "threads": args.threads,
               "systems": {name: summarise(primitives) for name, primitives in systems.items()}}
    suffix = level_suffix(results["machine"])  # a run under benchmarks/cpu_cap.c keeps its own files
    write_outputs(args.out, results, f"conv_kernels{suffix}.json", f"CONV_KERNELS{suffix}.md", markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
