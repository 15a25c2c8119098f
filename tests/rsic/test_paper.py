"""`python -m rsic paper3 --quick` (rsic/paper.py): the tables, resume, the exported models.

One paper3 run (module fixture); paper4's tests are in test_paper4.py. One epoch per run
(`--set train.epochs=1`) keeps the tests short.
"""

import argparse
import json

import pytest

from common import runner
from rsic import paper
from rsic.task import RsicTask
from tests.cli_runner import run_in_process

TASK = RsicTask()
ONE_EPOCH = ["train.epochs=1", "benchmark.export=false"]  # the benchmark rows need no int8 file here


def _args(out, **changes):
    return argparse.Namespace(**{"data": None, "out": str(out), "config": None, "backbones": None,
                                 "student_config": None, "teachers": 1, "attention_config": None, "benchmark": None,
                                 "quick": True, "overrides": list(ONE_EPOCH), **changes})


@pytest.fixture(scope="module")
def paper3_run(tmp_path_factory):
    """paper3 --quick --teachers 2, stopped after the two benchmark runs, then run again to the end.
    Returns (out, mtimes of the benchmark models after the first part, runs the second part trained)."""
    out = tmp_path_factory.mktemp("rsic_paper") / "paper3"
    assert paper.run_paper3(TASK, _args(out, teachers=2), max_steps=2) is False
    models = {name: (out / "benchmark" / name / "model.keras").stat().st_mtime_ns for name in paper.QUICK_BACKBONES}
    table = json.loads((out / "paper3.json").read_text())
    assert [row["accuracy"] is not None for row in table["rows"]][:2] == [True, True]
    assert table["rows"][-1]["accuracy"] is None  # the student not yet distilled

    trained, original = [], runner.train
    runner.train = lambda *a, **k: (trained.append(str(a[2])), original(*a, **k))[1]
    try:
        assert paper.run_paper3(TASK, _args(out, teachers=2)) is True
    finally:
        runner.train = original
    return out, models, trained


def test_paper3_quick_table_resume_and_export(paper3_run, capsys):
    out, models, trained = paper3_run
    # The rerun skipped the finished benchmark runs: only the student trained.
    assert trained == [str(out / "student")]
    for name, mtime in models.items():
        assert (out / "benchmark" / name / "model.keras").stat().st_mtime_ns == mtime
    bench = json.loads((out / "benchmark" / "benchmark.json").read_text())
    assert [row["backbone"] for row in bench["rows"]] == ["MobileNetV2", "MobileNet"]

    table = json.loads((out / "paper3.json").read_text())
    assert table["data"]["path"] == str((out / "data").resolve())
    assert table["data"]["examples_per_split"] == {"train": 95, "val": 25, "test": 80}
    kinds = [row["kind"] for row in table["rows"]]
    assert kinds == ["benchmark", "benchmark", "teacher", "teacher", "teacher ensemble", "student", "student int8"]
    # Paper 3's published accuracies beside the benchmark rows (PAPERS.md: MobileNetV2 88.0, MobileNet 90.8).
    assert [row["published_accuracy"] for row in table["rows"][:2]] == [0.88, 0.908]
    assert table["published"]["benchmark"] == {"MobileNetV2": 0.88, "MobileNet": 0.908}
    assert table["published"]["student"] is None  # PAPERS.md has no distillation number
    for row in table["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0, row
    # Teachers: both benchmark runs, best first; the student's split.json names the same runs.
    ranked = sorted(bench["rows"], key=lambda row: (-row["val_accuracy"], row["params"]))  # validation picks
    assert table["teachers"] == [row["backbone"] for row in ranked]
    split = json.loads((out / "student" / "split.json").read_text())
    assert split["teachers"] == [str((out / "benchmark" / row["backbone"]).resolve()) for row in ranked]
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert table["rows"][4]["accuracy"] == metrics["teacher_accuracy"]  # the ensemble on the test split
    assert table["rows"][5]["accuracy"] == metrics["accuracy"]
    # The int8 student: its file exists and its size and whole-test-split accuracy are in the table.
    tflite = out / "student" / "model_int8.tflite"
    int8 = json.loads((out / "student" / "metrics_int8.json").read_text())
    assert table["rows"][6]["tflite_bytes"] == tflite.stat().st_size > 0
    assert table["rows"][6]["accuracy"] == int8["accuracy"] and int8["model"] == "int8 tflite"
    markdown = (out / "paper3.md").read_text()
    assert "| MobileNetV2 | 0.57M |" in markdown and "| 88.0 |" in markdown and "| 90.8 |" in markdown
    assert "teacher ensemble (2, mean probabilities)" in markdown and "94.7%" in markdown
    assert f"| {tflite.stat().st_size / 1e6:.2f} |" in markdown

    # The finished plan through the command line: nothing runs again and the exit code is 0.
    code, said, _ = run_in_process(TASK, ["paper3", "--quick", "--out", out, "--teachers", "2",
                                          *(arg for item in ONE_EPOCH for arg in ("--set", item))], capsys)
    assert code == 0 and f"rsic: paper 3 done -> {out / 'paper3.md'}" in said
    assert (out / "paper3.md").read_text() == markdown

