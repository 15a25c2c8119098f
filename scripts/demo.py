"""`make demo`: every task's small configuration end to end, then one summary table.

Each task runs its own `python -m TASK demo --out runs/demo/TASK` in a fresh process (sample data,
training, evaluation, int8 export, TFLite-vs-Keras check) and writes `summary.json` rows; this
script runs them in turn, then prints the table and writes `runs/demo/report.md`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common.io import write_text

TASKS = ["landslide", "rsic", "asc"]
COLUMNS = [
    ("task", "task"),
    ("model", "model"),
    ("params", "params"),
    ("macs", "MACs"),
    ("metric_name", "metric"),
    ("float_metric", "float"),
    ("int8_metric", "int8"),
    ("tflite_bytes", "TFLite size"),
    ("latency_ms", "latency/example"),
]


def format_cell(key, value):
    if value is None:
        return "-"
    if key in ("params", "macs"):
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"
    if key == "tflite_bytes":
        return f"{value / 1024:.0f} KB" if value < 1024**2 else f"{value / 1024**2:.2f} MB"
    if key in ("float_metric", "int8_metric"):
        return f"{value:.3f}"
    if key == "latency_ms":
        return f"{value:.2f} ms"
    return str(value)


def markdown_table(rows):
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(key, row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, timings, failed = [], {}, []
    for task in args.tasks:
        print(f"\n=== {task}: sample data, train, evaluate, export int8, check TFLite ===", flush=True)
        start = time.time()
        code = subprocess.call([sys.executable, "-m", task, "demo", "--out", str(out / task)], env=os.environ.copy())
        timings[task] = time.time() - start
        summary = out / task / "summary.json"
        if code != 0 or not summary.is_file():
            print(f"=== {task}: FAILED (exit {code})", flush=True)
            failed.append(task)
            continue
        rows.extend(json.loads(summary.read_text()))
        print(f"=== {task}: done in {timings[task]:.0f} s", flush=True)
    table = markdown_table(rows)
    report = [
        "# Demo report",
        "",
        "Sample data written by `python -m TASK sample`; small configurations; numbers are from sample",
        "data and say nothing about the real data sets. Latency: TFLite int8, batch 1, 2 threads.",
        "",
        table,
        "",
        "Stage times: " + ", ".join(f"{task} {seconds:.0f} s" for task, seconds in timings.items()),
        "",
        "Pictures and run directories: " + ", ".join(f"`{task}/`" for task in args.tasks),
    ]
    write_text(out / "report.md", "\n".join(report) + "\n")
    print("\n" + table)
    print(f"\nreport: {out / 'report.md'}  (total {sum(timings.values()):.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
