"""The command line once end to end (a subprocess running the demo, tiny), the TensorFlow-free
commands, and the error exits."""

import json
import os
import subprocess
import sys
from pathlib import Path

from asc.sample import write_sample
from asc.task import AscTask
from tests.cli_runner import run_in_process

REPO = Path(__file__).resolve().parents[2]


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "EDGE_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "asc", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    write_sample(out / "data", per_class=4, seed=0)  # the demo keeps sample data it finds (20 per scene otherwise)
    # The plan exports the student for microcontrollers too (tested in test_edge.py); skipped here.
    assert "export.target=mcu" in AscTask().demo_plan()[1].overrides
    done = _run("demo", "--out", out, "--set", "features.kinds=[logmel]", "--set", "train.epochs=1",
                "--set", "export.target=edge")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in rows] == ["teacher: teacher, 1 x residual CNN (logmel)",
                                          "student: student, 1 x depthwise-separable CNN (logmel)"]
    teacher, student = rows
    keys = {"task", "model", "params", "macs", "metric_name", "float_metric", "int8_metric", "tflite_bytes", "latency_ms"}
    assert keys <= set(student) and student["task"] == "asc" and student["metric_name"] == "accuracy"
    assert student["tflite_bytes"] > 0 and student["latency_ms"] > 0 and 0 <= student["int8_metric"] <= 1
    assert teacher["params"] > 0 and teacher["tflite_bytes"] is None
    assert (out / "student" / "metrics.json").is_file() and (out / "data" / "features.h5").is_file()
    assert json.loads((out / "student" / "split.json").read_text())["teacher"] == str((out / "teacher").resolve())
    assert "| asc | student: student" in done.stdout  # the summary table
    assert "Traceback" not in done.stderr and "cuInit" not in done.stderr


def test_sample_and_features_never_import_tensorflow(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "logmel.h5"
    script = (
        "import sys\n"
        "from asc.task import AscTask\n"
        "from common.cli import main\n"
        f"main(AscTask(), ['sample', '--out', {str(data)!r}, '--per-class', '2'])\n"
        f"main(AscTask(), ['features', '--data', {str(data)!r}, '--set', 'features.kinds=[logmel]', '--out', {str(cache)!r}])\n"
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"asc: wrote {data}: 20 clips (10 scenes x 2)" in done.stdout
    assert f"asc: {cache}: 20 computed, 0 reused, shape (128, 87, 1)" in done.stdout and cache.is_file()


def test_bad_input_exits_with_code_2(tmp_path, capsys):
    done = _run("sample", "--out", tmp_path / "s", "--per-class", "1")
    assert done.returncode == 2 and done.stderr.strip() == "error: --per-class: need at least 2 clips per scene, got 1"

    code, _, err = run_in_process(AscTask(), ["train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "nowhere: data folder not found" in err
    assert not (tmp_path / "run").exists()

    code, _, err = run_in_process(AscTask(), ["evaluate", "--run", tmp_path / "norun"], capsys)
    assert code == 2 and "not a run directory" in err

    code, _, err = run_in_process(AscTask(), ["features"], capsys)
    assert code == 2 and "give --data DIR" in err
