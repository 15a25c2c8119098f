"""The command line once end to end (a subprocess running the demo, tiny) and its error exits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asc.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "EDGE_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "asc", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    done = _run(
        "demo", "--out", str(out), "--per-class", "4",
        "--set", "features.kinds=[logmel]", "--set", "train.epochs=1", "--set", "train.verbose=0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in rows] == ["teacher_tiny", "student"]
    student = rows[1]
    keys = {"task", "model", "params", "macs", "metric_name", "float_metric", "int8_metric", "tflite_bytes", "latency_ms"}
    assert set(student) == keys and student["task"] == "asc" and student["metric_name"] == "accuracy"
    assert student["tflite_bytes"] > 0 and student["latency_ms"] > 0 and 0 <= student["int8_metric"] <= 1
    assert (out / "student" / "metrics.json").is_file() and (out / "data" / "features.h5").is_file()


def test_bad_input_exits_with_code_2(tmp_path, capsys):
    done = _run("sample", "--out", str(tmp_path / "s"), "--per-class", "1")
    assert done.returncode == 2 and done.stderr.strip() == "error: --per-class: need at least 2 clips per scene, got 1"

    with pytest.raises(SystemExit) as exit_:
        cli(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere: data folder not found" in err

    with pytest.raises(SystemExit) as exit_:
        cli(["evaluate", "--run", str(tmp_path / "norun"), "--data", str(tmp_path)])
    assert exit_.value.code == 2 and "not a run directory" in capsys.readouterr().err
