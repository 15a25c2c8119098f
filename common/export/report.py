"""The export report: one `ExportReport` per export, filled by the runner and the target, written
once, atomically, after every file of the export is in place."""

import hashlib
import json
from pathlib import Path

from common.io import write_json

#: Keys every export report has, whatever the target (targets add their own details).
REPORT_KEYS = (
    "target", "path", "tflite_bytes", "params", "macs", "float_keras_bytes", "metric_name", "keras_metric",
    "tflite_metric", "agreement", "max_abs_diff", "parity_examples", "latency_ms", "quantization",
    "calibration_examples",
)


class ExportReport:
    """The dict an export reports, and the one place that writes it.

    Args:
        path: the JSON file (e.g. RUN/export_report.json).

    Example:
        report = ExportReport(run / "export_report.json")
        report.update(target="edge", tflite_bytes=1234)
        report.write()              # once; a second call raises
    """

    def __init__(self, path):
        self.path = Path(path)
        self.data = {}
        self.written = False

    def update(self, values=None, **more):
        self.data.update(values or {}, **more)

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def write(self):
        """Write the report (atomically). An export writes its report once."""
        if self.written:
            raise RuntimeError(f"{self.path}: the export report is written once per export")
        write_json(self.path, self.data)
        self.written = True
        return self.data


def read_report(path):
    """The report at `path`, or None when it is missing or unreadable (an earlier export's)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def file_sha256(path):
    """Hex SHA-256 of a file's bytes, or None when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fields(model, scorer):
    """The Keras model's side of every report: params, macs, float_keras_bytes, metric_name."""
    from common.complexity import model_complexity

    complexity = model_complexity(model)
    return {"params": complexity["params"], "macs": complexity["macs"],
            "float_keras_bytes": complexity["params"] * 4, "metric_name": scorer.metric_name if scorer else None}
