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
from common.tables import markdown_table

TASKS = ["landslide", "rsic", "asc"]


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
        "data and say nothing about the real data sets. Export target: what `export --target` made",
        "(docs/export.md); exported: its metric; latency: that file in LiteRT, batch 1, 2 threads.",
        "MCU flash and arena: the fully integer model in TFLite Micro (`export --target mcu`).",
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
