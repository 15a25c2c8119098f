"""The float export targets (`gpu`, `weights8`) checked on a task's already-trained tiny run."""

import shutil
from pathlib import Path

#: float16 weights and int8 weights with float activations change a decision only near a tie:
#: measured 1.0 agreement on every tiny run of the three tasks; 0.99 is the issue's bar.
FLOAT_AGREEMENT = 0.99


def check_float_targets(task, run, folder):
    """Export a copy of `run` (in `folder`) for gpu and weights8 through common.runner.export;
    assert each report's file, size and parity. Returns {target: report}."""
    from common import runner

    copy = Path(folder) / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.tflite", "export_report*"))
    reports = {}
    for name in ("gpu", "weights8"):
        report = runner.export(task, copy, overrides=[f"export.target={name}"])
        assert report["target"] == name and report["agreement"] >= FLOAT_AGREEMENT, report
        assert report["tflite_bytes"] == Path(report["path"]).stat().st_size and report["latency_ms"] > 0
        assert report["input_dtype"] == report["output_dtype"] == "float32"
        assert (copy / f"export_report_{name}.json").is_file()
        reports[name] = report
    assert not (copy / "model_int8.tflite").exists() and not (copy / "export_report.json").exists()
    return reports
