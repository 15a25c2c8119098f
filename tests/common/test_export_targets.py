"""common/export/ through the command line: the target registry, a target written here (what
docs/ARCHITECTURE.md "Adding an export target" walks through), one report write per export, the
calibration count, a failed export that keeps the earlier files, mcu reusing a current edge export,
and no module importing another's private names.

One tiny run of the fourth task's "points" classifier (tests/common/test_fourth_task.py) serves
every export here: 8 inputs, 16 hidden units, 3 epochs.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ExportError
from common.export import TARGETS, get_target, register
from common.export.report import file_sha256
from common.export.targets import SingleFileTarget, unregister
from tests.cli_runner import run_in_process
from tests.common.test_fourth_task import PointsTask

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("common", "landslide", "rsic", "asc", "scripts", "benchmarks", "tests")


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    task, folder = PointsTask(), tmp_path_factory.mktemp("points")
    task.sample(folder / "data")
    from common import runner

    cfg = runner.load_task_config(task, None, ["train.epochs=3", "model.units=32"], folder / "data")
    return runner.train(task, cfg, folder / "run").run


class Float32Target(SingleFileTarget):
    """The smallest target: the float model as it is, for LiteRT (no optimization)."""

    name = "float32-test"
    description = "float32 weights and activations"
    device = "any LiteRT CPU"
    file_names = ("model_float32.tflite",)

    def convert_bytes(self, job):
        import tensorflow as tf

        return tf.lite.TFLiteConverter.from_keras_model(job.model).convert(), {"quantization": "none"}


def test_a_target_registered_here_exports_through_the_cli(points_run, capsys):
    register(Float32Target())
    try:
        code, out, _ = run_in_process(PointsTask(), ["export", "--run", points_run, "--target", "float32-test"], capsys)
    finally:
        unregister("float32-test")
    report = json.loads((points_run / "export_report_float32-test.json").read_text())
    assert code == 0 and "model_float32.tflite" in out
    assert report["target"] == "float32-test" and report["quantization"] == "none"
    assert report["tflite_bytes"] == (points_run / "model_float32.tflite").stat().st_size
    assert report["agreement"] == 1.0 and report["max_abs_diff"] < 1e-5  # the same float graph
    assert report["latency_ms"] > 0 and report["parity_examples"] == 100  # the whole test split


@pytest.mark.parametrize("name, fraction", [("gpu", 0.99), ("weights8", 0.99)])
def test_gpu_and_weights8_follow_keras(points_run, name, fraction):
    """float16 weights round to 3 significant digits and dynamic-range int8 weights to 1/127 of
    each tensor's range: on this 2-class model both change a decision only at a near tie (1.0 on
    every machine measured), so 0.99 leaves a margin."""
    from common import runner

    report = runner.export(PointsTask(), points_run, overrides=[f"export.target={name}"])
    assert report["target"] == name and report["agreement"] >= fraction
    assert report["path"] == str(points_run / get_target(name).files()[0])
    assert report["tflite_bytes"] == Path(report["path"]).stat().st_size
    assert json.loads((points_run / f"export_report_{name}.json").read_text())["tflite_bytes"] == report["tflite_bytes"]


def test_unknown_target_is_one_line_before_tensorflow(points_run):
    code = (
        "import sys\n"
        "from common import cli\n"
        "from tests.common.test_fourth_task import PointsTask\n"
        "try:\n"
        f"    cli.run_cli(lambda a: cli.main(PointsTask(), a), ['export', '--run', {str(points_run)!r}, '--target', 'edgy'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 2, exit.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ("error: config key 'export.target': unknown target 'edgy'; choose one of "
                                     + ", ".join(TARGETS))


def test_one_report_write_honest_calibration_failed_export_and_mcu_reuse(points_run, capsys, monkeypatch):
    replaced, original = [], os.replace

    def counting(src, dst, *args, **kwargs):
        replaced.append(Path(dst).name)
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting)
    task = PointsTask()
    code, _, _ = run_in_process(task, ["export", "--run", points_run, "--set", "export.calibration_examples=200"], capsys)
    report = json.loads((points_run / "export_report.json").read_text())
    assert code == 0 and replaced.count("export_report.json") == 1
    assert report["calibration_examples"] == 200  # counted as the converter read them (270 in train)
    kept = {name: (points_run / name).read_bytes() for name in ("model_int8.tflite", "export_report.json")}

    # Verification fails after conversion: the good export's files stay byte for byte.
    from common.export import parity

    def refuse(*args, **kwargs):
        raise ExportError("parity check refused (test)")

    with monkeypatch.context() as patch:
        patch.setattr(parity, "check_litert", refuse)
        code, _, err = run_in_process(task, ["export", "--run", points_run], capsys)
    assert code == 2 and "parity check refused (test)" in err
    assert {name: (points_run / name).read_bytes() for name in kept} == kept
    assert not list(points_run.glob(".export-*"))

    # mcu after a current edge export: the edge file is reused, not redone.
    replaced.clear()
    code, out, _ = run_in_process(task, ["export", "--run", points_run, "--target", "mcu",
                                         "--set", "export.calibration_examples=200"], capsys)
    report = json.loads((points_run / "export_report.json").read_text())
    assert code == 0 and report["edge_reused"] is True and "reusing the current edge export" in out
    assert "model_int8.tflite" not in replaced and replaced.count("export_report.json") == 1
    assert report["mcu"]["flash_bytes"] == (points_run / "model_int8_mcu.tflite").stat().st_size
    assert report["sha256"] == file_sha256(points_run / "model_int8.tflite") and report["agreement"] >= 0.95
    # Other settings (the default calibration count): not current, the edge export is redone.
    code, _, _ = run_in_process(task, ["export", "--run", points_run, "--target", "mcu"], capsys)
    report = json.loads((points_run / "export_report.json").read_text())
    assert code == 0 and report["edge_reused"] is False and report["calibration_examples"] == 32


def _private_imports(path):
    """(line, text) of every `from <project module> import _name` and `<project module>._name`."""
    tree = ast.parse(path.read_text(), str(path))
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PROJECT:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in PROJECT)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_no_module_uses_another_modules_private_names():
    offences = []
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            offences += [f"{path.relative_to(ROOT)}:{line}: {text}" for line, text in _private_imports(path)]
    assert offences == []


def test_private_import_check_finds_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from common.export.quantize import _clock\nfrom common import runner\nrunner._size(3)\n")
    assert [text for _, text in _private_imports(bad)] == ["from common.export.quantize import _clock", "runner._size"]


def test_docs_table_lists_the_registry():
    """docs/export.md's targets table names every registered target with its files, in order."""
    text = (ROOT / "docs" / "export.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    named = [row.split("`")[1] for row in rows]
    assert named == list(TARGETS)
    for row, target in zip(rows, TARGETS.values()):
        assert all(f"`{name}`" in row for name in target.files()), row


def test_no_function_in_common_export_is_over_60_lines():
    long = []
    for path in sorted((ROOT / "common" / "export").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.name}:{node.lineno} {node.name}")
    assert long == []
