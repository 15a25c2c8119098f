"""Paper 4's tri-plane network at the paper's size next to its backbone and to the token form.

    python -m benchmarks.paper4_network [--size 246] [--rounds 7] [--out benchmarks]

Builds, untrained (model.weights null: nothing downloaded), attention.yaml (tri-plane attention on
EfficientNetB0's blocks 5-7), the same EfficientNetB0 with attention off, and attention_tokens.yaml
on EfficientNetB0, all at --size px with 45 classes; exports each to int8 TFLite (post-training
quantization, random calibration: the file and its speed do not depend on the weights) and times
them in alternation, batch 1 on 2 LiteRT threads (rsic.bench.paper4_network_row). Writes
OUT/paper4_network.json and OUT/PAPER4_NETWORK.md, stamped with the command and the machine
(docs/rsic.md quotes the table). Latency depends on the machine
and its load; the ratios hold better than the milliseconds.

    python -m benchmarks.paper4_network --train-steps 5 [--train-batch 8] [--size 246]

measures instead the training speed of attention.yaml's network (untrained, 45 classes, random
images, the precision `train.precision: auto` picks): the median time of a training step after two
warm-up steps (graph tracing), into OUT/paper4_train_speed.json. docs/rsic.md ("Paper 4's tables")
multiplies it by the data paper 4 trains on for its estimate of a full `paper4` run.
"""

import argparse
import sys
from pathlib import Path

KINDS = {"backbone": "EfficientNetB0 + head (attention off)",
         "triplane": "tri-plane, blocks 5-7 (attention.yaml)",
         "tokens": "tokens (attention_tokens.yaml on EfficientNetB0)"}


def markdown(results):
    """PAPER4_NETWORK.md: one table row per model of `results["row"]`."""
    from common.cpuinfo import cpu_line

    m, row = results["machine"], results["row"]
    lines = ["# Paper 4's network at the edge: int8 size and latency", "",
             f"`{results['command']}` on {m['cpu']} ({m['cores']} cores), {m['date']}, "
             f"TensorFlow {m['tensorflow']}; {row['input']}, untrained, int8 by PTQ, batch 1, "
             "2 LiteRT threads, the three timed in alternation.", "", cpu_line(m), "",
             "| model | parameters | GMACs | int8 MB | int8 ms (median, min-max) | x backbone | float ops |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for kind, label in KINDS.items():
        ms = row[f"{kind}_int8_ms"]
        lines.append(f"| {label} | {row[f'{kind}_params']:,} | {row[f'{kind}_macs'] / 1e9:.3f} | "
                     f"{row[f'{kind}_int8_bytes'] / 1e6:.2f} | {ms['median']:.1f} ({ms['min']:.1f}-"
                     f"{ms['max']:.1f}) | {row[f'{kind}_latency_ratio']:.2f} | "
                     f"{', '.join(row[f'{kind}_float_ops']) or 'none'} |")
    return "\n".join(lines) + "\n"


def train_speed(size, steps, batch):
    """Training speed of attention.yaml's network at `size` px (45 classes, `batch` random images,
    Adam, cross-entropy): {"batch", "steps", "precision", "step_s": {median, min, max} seconds per
    step, "images_per_s": batch / median}; two warm-up steps first (tracing)."""
    import time

    import numpy as np
    import tf_keras as keras

    from common.runner import load_task_config
    from common.train import set_precision
    from rsic.models import build_model
    from rsic.task import RsicTask

    cfg = load_task_config(RsicTask(), "attention.yaml", ["model.weights=null",
                                                          f"model.input_size={size}"])
    set_precision(cfg["train"])
    model = build_model(cfg["model"], 45)
    model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = np.eye(45, dtype="float32")[rng.integers(0, 45, batch)]
    times = []
    for step in range(2 + steps):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        if step >= 2:
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"input": f"{size}x{size}x3, 45 classes", "params": model.count_params(),
            "batch": batch, "steps": steps, "precision": keras.mixed_precision.global_policy().name,
            "step_s": {"median": median, "min": min(times), "max": max(times)},
            "images_per_s": batch / median}


def main(argv=None):
    from common.bench import machine, write_outputs
    from common.io import write_json
    from rsic.bench import WORK, paper4_network_row

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=246, help="input side in pixels (default 246)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds (default 7)")
    parser.add_argument("--out", default="benchmarks", help="folder for paper4_network.json")
    parser.add_argument("--train-steps", type=int, default=0, help="N > 0: time N training steps "
                        "instead (OUT/paper4_train_speed.json)")
    parser.add_argument("--train-batch", type=int, default=8, help="batch of those steps (default 8)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.paper4_network " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.train_steps > 0:
        results = {"command": command, "machine": machine(),
                   "train": train_speed(args.size, args.train_steps, args.train_batch)}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "paper4_train_speed.json", results)
        print(results)
        return
    row = paper4_network_row(WORK, size=args.size, rounds=args.rounds, log=print)
    results = {"command": command, "machine": machine(), "row": row}
    write_outputs(args.out, results, "paper4_network.json", "PAPER4_NETWORK.md", markdown(results))


if __name__ == "__main__":
    main()
