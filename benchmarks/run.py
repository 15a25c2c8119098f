"""`make bench`: speed, size and accuracy of every task's models on this machine.

Each task package has a `bench.py` with `run(quick=False) -> list of row dicts` (see
benchmarks/README section in the project README). This script runs them, adds the machine and the
date, and writes `benchmarks/results.json` and `benchmarks/RESULTS.md`.

    python -m benchmarks.run [--tasks landslide rsic asc] [--quick] [--out benchmarks]
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from common.bench import machine
from common.cpuinfo import cpu_line
from common.io import write_json, write_text

TASKS = ["landslide", "rsic", "asc"]

# (key, column title, format) of the speed/size table.
SPEED_COLUMNS = [
    ("task", "task", "{}"),
    ("model", "model", "{}"),
    ("input", "input", "{}"),
    ("params", "params", "{:,}"),
    ("macs", "MACs", "{:,}"),
    ("float_bytes", "float size", "bytes"),
    ("int8_bytes", "int8 TFLite", "bytes"),
    ("train_precision", "train precision", "{}"),
    ("train_examples_per_s", "train ex/s", "{:.1f}"),
    ("keras_latency_ms", "Keras float ms", "{:.1f}"),
    ("tflite_latency_ms", "TFLite int8 ms", "{:.1f}"),
    ("pipeline_examples_per_s", "pipeline ex/s", "{:.0f}"),
]
ACCURACY_COLUMNS = [
    ("task", "task", "{}"),
    ("model", "model", "{}"),
    ("data", "data", "{}"),
    ("metric_name", "metric", "{}"),
    ("float_metric", "float", "{:.3f}"),
    ("int8_metric", "int8", "{:.3f}"),
    ("agreement", "Keras/TFLite agreement", "{:.3f}"),
]


def cell(value, fmt):
    if value is None:
        return "-"
    if fmt == "bytes":
        return f"{value / 1024:.0f} KB" if value < 1024**2 else f"{value / 1024**2:.1f} MB"
    if isinstance(value, dict):  # {"median": ..., "min": ..., "max": ...}
        return f"{fmt.format(value['median'])} ({fmt.format(value['min'])}-{fmt.format(value['max'])})"
    return fmt.format(value)


def table(rows, columns):
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(key), fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


def keep_scale_section(text, path):
    """`text` with the "Scale" section of the RESULTS.md at `path` appended, when it has one:
    `make bench-scale` writes that section, and `make bench` must not lose it."""
    from benchmarks.scale import BEGIN, END

    old = Path(path).read_text() if Path(path).is_file() else ""
    if BEGIN not in old or END not in old:
        return text
    return text.rstrip("\n") + "\n\n" + old[old.index(BEGIN) : old.index(END) + len(END)] + "\n"


def render(results):
    info = results["machine"]
    speed = [row for row in results["rows"] if row.get("kind", "speed") == "speed"]
    accuracy = [row for row in results["rows"] if row.get("kind") == "accuracy"]
    notes = [row["note"] for row in results["rows"] if row.get("note")]
    lines = [
        "# Benchmark results",
        "",
        f"Made by `make bench` on {info['date']}: {info['cpu']}, {info['cores']} cores, Python {info['python']},",
        f"TensorFlow {info['tensorflow']}. Medians over repeated runs after a warm-up; the range (min-max)",
        "in brackets. Latency: batch 1; TFLite int8 through ai-edge-litert with 2 threads.",
        "Training throughput: examples per second of `fit` steps at the config's batch size.",
        "Pipeline: examples per second the task's tf.data input pipeline delivers alone (read, decode,",
        "augment); the ratio pipeline/training says how far the input is from being the bottleneck.",
        "",
        "## Speed and size",
        "",
        cpu_line(info),
        "",
        table(speed, SPEED_COLUMNS),
        "",
        "## Accuracy, float vs int8",
        "",
        "On the sample data (`python -m TASK sample`), unless the data column says otherwise: these",
        "numbers show that export keeps what the model learned, not how good the model is.",
        "",
        cpu_line(info),
        "",
        table(accuracy, ACCURACY_COLUMNS),
        "",
    ]
    paper4 = [row for row in results["rows"] if row.get("kind") == "paper4"]
    if paper4:
        lines += ["## Paper 4: attention model beside its backbone", "", cpu_line(info), ""] + paper4_table(paper4) + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines.append(f"Total benchmark time: {results['seconds']:.0f} s.")
    from benchmarks.peer import peer_sections
    from benchmarks.peer import render as render_peer

    lines += [line for peer in peer_sections(results) for line in ("", render_peer(peer))]
    return "\n".join(lines) + "\n"


def paper4_table(rows):
    """Markdown lines for the `kind: paper4` rows (rsic.bench.paper4_rows)."""
    first = rows[0]
    att = first["attention"]
    lines = [
        f"int8 PTQ at {first['input']}, untrained, batch 1, 2 LiteRT threads; the two models of a row are",
        "timed in alternation (median of round medians, range in brackets), so their ratio holds on a busy",
        f"machine better than the ms. Attention formulation: `model.attention` {att}.",
        f"Accuracy: {first['accuracy_data']}; float / int8 (Keras-int8 agreement).",
        "",
        "| backbone | MACs backbone | MACs +attention | int8 size backbone | int8 size +attention "
        "| int8 ms backbone | int8 ms +attention | ratio | accuracy backbone | accuracy +attention |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        accuracy = [f"{a['float_metric']:.3f} / {a['int8_metric']:.3f} ({a['agreement']:.2f})"
                    for a in (row["backbone_accuracy"], row["attention_accuracy"])]
        lines.append(
            f"| {row['backbone']} | {row['backbone_macs'] / 1e6:.1f}M | {row['attention_macs'] / 1e6:.1f}M "
            f"| {cell(row['backbone_int8_bytes'], 'bytes')} | {cell(row['attention_int8_bytes'], 'bytes')} "
            f"| {cell(row['backbone_int8_ms'], '{:.1f}')} | {cell(row['attention_int8_ms'], '{:.1f}')} "
            f"| {row['latency_ratio']:.2f}x | {accuracy[0]} | {accuracy[1]} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, small models only (a smoke run)")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--real-data", default="data",
                        help="the folder holding real data sets (used for the accuracy part when present; "
                             "default data/, `make bench REAL_DATA=DIR`)")
    args = parser.parse_args(argv)
    from common.cli import quiet_native_logs, setup_tensorflow

    quiet_native_logs()  # TensorFlow's native start-up lines stay out of the terminal
    setup_tensorflow()
    start = time.time()
    rows = []
    for task in args.tasks:
        print(f"=== bench {task}", flush=True)
        module = importlib.import_module(f"{task}.bench")
        rows.extend(module.run(quick=args.quick, real_data=args.real_data))
    out = Path(args.out)
    suffix = "_quick" if args.quick else ""
    # Benchmarking one task keeps the other tasks' rows of an earlier run on this machine.
    previous = out / f"results{suffix}.json"
    if previous.is_file():
        kept = [row for row in json.loads(previous.read_text())["rows"] if row.get("task") not in args.tasks]
        rows = kept + rows
    rows.sort(key=lambda row: TASKS.index(row["task"]) if row.get("task") in TASKS else len(TASKS))
    results = {"machine": machine(), "seconds": time.time() - start, "rows": rows}
    if previous.is_file():  # `make bench-peer`'s sections, one per CPU level
        results.update({key: value for key, value in json.loads(previous.read_text()).items()
                        if key.startswith("peer")})
    write_json(out / f"results{suffix}.json", results)
    write_text(out / f"RESULTS{suffix}.md", keep_scale_section(render(results), out / f"RESULTS{suffix}.md"))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
