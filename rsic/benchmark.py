"""Paper 3's backbone table: train, evaluate and export a list of backbones under one protocol.

`python -m rsic benchmark --config CONFIG --data DIR --out OUT [--backbones A,B]` trains every
backbone of `benchmark.backbones` with the same config (data split, input size, training), each
in `OUT/<backbone>/`, and writes `OUT/benchmark.json` and `OUT/benchmark.md`: backbone,
parameters, test accuracy, int8 TFLite size, int8 accuracy and latency, and the accuracy paper 3
reports on NWPU-RESISC45. A backbone that already has a finished run in `OUT` is not trained
again (delete its folder, or give --overwrite, to redo it).
"""

import copy
import json
from pathlib import Path

from common.errors import ExportError
from common.io import write_json, write_text
from rsic.models import get_backbone


def run_benchmark(cfg, out, *, overwrite=False, log=print):
    """Run the benchmark of `cfg["benchmark"]` into the folder `out`.

    Returns:
        list of row dicts (also in benchmark.json): backbone, params, macs, accuracy,
        int8_accuracy, tflite_bytes, latency_ms, paper_accuracy, note.
    """
    specs = [get_backbone(name) for name in cfg["benchmark"]["backbones"]]  # all names checked first
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from rsic.train import load_data

    data = load_data(cfg, log=log)  # one validated listing and one split for every backbone
    rows = []
    for spec in specs:
        log(f"--- {spec.name}")
        rows.append(_benchmark_one(cfg, spec, out / spec.name, data, overwrite=overwrite, log=log))
        write_json(out / "benchmark.json", rows)  # after every backbone: a long run shows progress
    write_text(out / "benchmark.md", markdown_table(rows, cfg))
    log(markdown_table(rows, cfg))
    return rows


def _benchmark_one(cfg, spec, run_dir, data, *, overwrite, log):
    from common.complexity import model_complexity
    from common.train import load_run_model
    from rsic.data import read_split_file
    from rsic.export import TFLITE_FILE, export_model
    from rsic.train import train

    run_cfg = copy.deepcopy(cfg)
    model_cfg = run_cfg["model"]
    model_cfg["backbone"] = spec.name
    notes = []
    if model_cfg["alpha"] != 1.0 and not spec.has_alpha:
        model_cfg["alpha"] = 1.0
        notes.append("alpha 1.0")
    if model_cfg["input_size"] < spec.min_size:
        model_cfg["input_size"] = spec.min_size
        notes.append(f"input {spec.min_size}")

    folder, split = data
    finished = (run_dir / "model.keras").is_file() and (run_dir / "metrics.json").is_file()
    if finished and not overwrite:
        log(f"{run_dir}: finished run found, reusing it")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        split = read_split_file(run_dir / "split.json", folder)
    else:
        _, metrics = train(run_cfg, run_dir, overwrite=overwrite, data=data, log=log)
    model = load_run_model(run_dir)
    complexity = model_complexity(model)
    row = {
        "backbone": spec.name,
        "input_size": model_cfg["input_size"],
        "params": complexity["params"],
        "macs": complexity["macs"],
        "accuracy": metrics["accuracy"],
        "int8_accuracy": None,
        "tflite_bytes": None,
        "latency_ms": None,
        "paper_accuracy": spec.paper_accuracy,
        "note": ", ".join(notes),
    }
    if run_cfg["benchmark"]["export"]:
        report_path = run_dir / "export_report.json"
        try:
            if report_path.is_file() and (run_dir / TFLITE_FILE).is_file() and not overwrite:
                report = json.loads(report_path.read_text())
            else:
                report = export_model(model, run_cfg, folder, split, run_dir / TFLITE_FILE, log=log)
            row.update(int8_accuracy=report["tflite_metric"], tflite_bytes=report["tflite_bytes"],
                       latency_ms=report.get("latency_ms"))
        except ExportError as error:
            row["note"] = ", ".join(notes + [f"not exported: {str(error).split(': ', 1)[-1]}"])
            log(f"{spec.name}: {error}")
    return row


def markdown_table(rows, cfg):
    """The benchmark rows as a Markdown table (accuracies in %, sizes in MB)."""
    size = cfg["model"]["input_size"]
    lines = [
        f"Backbones at {size}x{size}, train ratio {cfg['data']['train_ratio']:g} of each class; "
        f"accuracy on the test split. Paper: NWPU-RESISC45 accuracy reported in paper 3.",
        "",
        "| backbone | params | accuracy % | int8 accuracy % | int8 TFLite MB | latency ms | paper % | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['backbone']} | {row['params'] / 1e6:.2f}M | {_percent(row['accuracy'])} | "
            f"{_percent(row['int8_accuracy'])} | {_mb(row['tflite_bytes'])} | {_ms(row['latency_ms'])} | "
            f"{row['paper_accuracy'] if row['paper_accuracy'] is not None else '-'} | {row['note']} |"
        )
    return "\n".join(lines) + "\n"


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _mb(value):
    return "-" if value is None else f"{value / 1e6:.2f}"


def _ms(value):
    return "-" if value is None else f"{value:.1f}"
