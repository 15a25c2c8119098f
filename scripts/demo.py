"""`make demo`: every task's small configuration end to end, then one summary table.

Each task runs its own `python -m TASK demo --out runs/demo/TASK` in a fresh process (sample data,
training, evaluation, int8 export, TFLite-vs-Keras check) and writes `summary.json` rows; this
script runs them in turn, then prints the table and writes `runs/demo/report.md`. A full run (every
task, none failed) also writes `docs/results/demo.md`: the same table stamped with the command, the
machine and the date, the file the README and docs/ quote their sample-data numbers from.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common.bench import machine
from common.cpuinfo import cpu_info, cpu_line
from common.io import write_text
from common.tables import markdown_table

TASKS = ["landslide", "rsic", "asc"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--doc", default="docs/results/demo.md",
                        help="the stamped copy of the report for the docs (written after a full run only)")
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
    table = cpu_line(cpu_info()) + "\n\n" + markdown_table(rows)
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
        "Pictures and run directories: " + ", ".join(f"`{out / task}/`" for task in args.tasks),
    ]
    write_text(out / "report.md", "\n".join(report) + "\n")
    if args.doc and not failed and args.tasks == TASKS:
        write_text(Path(args.doc), stamped(report, argv))
        print(f"docs copy: {args.doc}")
    print("\n" + table)
    print(f"\nreport: {out / 'report.md'}  (total {sum(timings.values()):.0f} s)")
    return 1 if failed else 0


def environment_bytes():
    """Disk bytes of the Python environment running this script (its virtualenv, as `du` counts
    them: allocated blocks), or None outside a virtualenv."""
    if sys.prefix == sys.base_prefix:
        return None
    total = 0
    for folder, _, files in os.walk(sys.prefix):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass
    return total


def stamped(report, argv):
    """The report under lines saying which command made it, on which machine, when, and what it
    needed: the environment's disk size and the peak resident memory of the largest task process."""
    where = machine()
    command = "make demo" if argv is None and sys.argv[1:] == ["--out", "runs/demo"] else \
        "python -m scripts.demo " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp = (f"Made by `{command}` on {where['date']}: {where['cpu']}, {where['cores']} cores, "
             f"Python {where['python']}, TensorFlow {where['tensorflow']}. Generated file: do not edit; "
             "run `make demo` again to refresh it.")
    venv = environment_bytes()
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    needs = (f"Resources: the largest task process peaked at {peak_mb:,.0f} MB resident memory"
             + (f"; the virtualenv ({os.path.relpath(sys.prefix)}) takes {venv / 1e9:.1f} GB on disk." if venv else "."))
    return "\n".join([report[0], "", stamp, "", needs, *report[1:]]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
