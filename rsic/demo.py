"""The rsic stage of `make demo`: sample data -> tiny teacher -> distilled tiny student -> evaluate
-> int8 TFLite export of both -> `OUT/summary.json`.

    python -m rsic demo --out runs/demo/rsic

Writes `OUT/data/` (the sample), `OUT/teacher/` and `OUT/student/` (run directories with
metrics.json, model_int8.tflite, export_report.json) and `OUT/summary.json`, a list of rows
`{task, model, params, macs, metric_name, float_metric, int8_metric, tflite_bytes, latency_ms}`
(accuracies on the test split, latency of one image through LiteRT in milliseconds). Running it
again replaces the demo's own runs. About 2-3 minutes on 2 CPU cores.
"""

import time
from pathlib import Path

from common.errors import RunDirError
from common.io import write_json

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "rsic"


def run_demo(out, *, overwrite=False, log=print):
    """Run the demo into the folder `out`; returns the summary rows."""
    from common.train import load_run_model
    from rsic.cli import load_task_config
    from rsic.export import TFLITE_FILE, export_model
    from rsic.sample import write_sample
    from rsic.train import distill, load_data, train

    out = Path(out)
    started = time.perf_counter()
    data_dir = out / "data"
    if not data_dir.is_dir() or overwrite:
        write_sample(data_dir, classes=5, per_class=40, size=64, seed=0)
    log(f"sample data: {data_dir}")

    teacher_cfg = load_task_config(CONFIGS / "tiny.yaml", [], data=data_dir)
    teacher_dir, teacher_metrics = train(teacher_cfg, out / "teacher", overwrite=_own_run(out / "teacher"),
                                         log=log)
    student_cfg = load_task_config(CONFIGS / "tiny_student.yaml", [], data=data_dir)
    student_dir, student_metrics = distill(student_cfg, teacher_dir, out / "student",
                                           overwrite=_own_run(out / "student"), log=log)

    folder, split = load_data(teacher_cfg, split_from=teacher_dir, log=lambda _: None)
    rows = []
    for name, run_dir, cfg in (("teacher", teacher_dir, teacher_cfg), ("student", student_dir, student_cfg)):
        model = load_run_model(run_dir)
        report = export_model(model, cfg, folder, split, run_dir / TFLITE_FILE, log=log)
        rows.append({
            "task": "rsic",
            "model": f"{name} {cfg['model']['backbone']} alpha {cfg['model']['alpha']:g} "
                     f"{cfg['model']['input_size']}px",
            "params": report["params"],
            "macs": report["macs"],
            "metric_name": "accuracy",
            "float_metric": report["keras_metric"],
            "int8_metric": report["tflite_metric"],
            "tflite_bytes": report["tflite_bytes"],
            "latency_ms": report["latency_ms"],
        })
    write_json(out / "summary.json", rows)
    log(f"teacher accuracy {teacher_metrics['accuracy']:.3f}, student {student_metrics['accuracy']:.3f} "
        f"(agreement with the teacher {student_metrics['teacher_agreement']:.3f}); "
        f"{out / 'summary.json'} in {time.perf_counter() - started:.0f} s")
    return rows


def _own_run(path):
    """True when `path` holds an earlier run (the demo replaces it); a foreign folder is refused."""
    path = Path(path)
    if not path.exists() or not any(path.iterdir()):
        return False
    if not (path / "config.yaml").is_file():
        raise RunDirError(f"{path}: exists and is not a run directory; use another --out for the demo")
    return True
