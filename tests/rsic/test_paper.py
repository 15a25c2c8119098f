"""`python -m rsic paper3 / paper4 --quick` (rsic/paper.py): the tables, resume, the exported models.

One paper3 run (module fixture) serves both tests: paper4 takes its candidates from paper3's
benchmark folder (`--benchmark`), as a user who ran paper 3 first does, so nothing is trained twice.
One epoch per run (`--set train.epochs=1`) keeps the tests short.
"""

import argparse
import json

import pytest

from common import runner
from common.config import read_saved_config
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


def test_paper4_quick_on_paper3_benchmark(paper3_run, tmp_path, capsys):
    bench_dir = paper3_run[0] / "benchmark"
    out = tmp_path / "paper4"
    assert paper.run_paper4(TASK, _args(out, benchmark=str(bench_dir))) is True
    bench = json.loads((bench_dir / "benchmark.json").read_text())
    best = bench["best_paper4"]["backbone"]

    table = json.loads((out / "paper4.json").read_text())
    assert table["data"]["path"] == str((paper3_run[0] / "data").resolve())  # the benchmark's data
    assert table["best_candidate"] == best
    assert [row["kind"] for row in table["rows"]] == ["candidate", "candidate", "attention", "attention int8"]
    assert [row["model"] for row in table["rows"][:2]] == ["MobileNetV2", "MobileNet"]
    assert all(row["under_5m"] is True for row in table["rows"][:2])
    assert table["rows"][2]["model"] == f"attention on {best} (float)"
    for row in table["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0, row
    saved = read_saved_config(out / "attention" / "config.yaml")
    assert saved["model"]["backbone"] == best and saved["model"]["attention"]["enabled"] is True
    # Size before (float Keras) and after (int8 TFLite) against paper 4's 20 MB budget.
    size = table["size"]
    assert size["float_keras_bytes"] == (out / "attention" / "model.keras").stat().st_size
    assert size["int8_tflite_bytes"] == (out / "attention" / "model_int8.tflite").stat().st_size
    assert 0 < size["int8_tflite_bytes"] < size["float_keras_bytes"]
    assert size["budget_mb"] == 20.0 and size["within_budget"] is True
    assert table["published"]["size_budget_mb"] == 20.0 and table["published"]["max_params"] == 5e6
    markdown = (out / "paper4.md").read_text()
    assert "within the 20 MB budget" in markdown and f"Best candidate by validation accuracy in `{bench_dir}`: {best}" in markdown

    # Run again through the command line: every step is done, nothing trains, exit code 0;
    # other settings are refused.
    code, said, _ = run_in_process(TASK, ["paper4", "--quick", "--out", out, "--benchmark", bench_dir,
                                          *(arg for item in ONE_EPOCH for arg in ("--set", item))], capsys)
    assert code == 0 and f"rsic: paper 4 done -> {out / 'paper4.md'}" in said
    from common.errors import RunDirError

    with pytest.raises(RunDirError, match="settings.json.*attention_config"):
        paper.run_paper4(TASK, _args(out, benchmark=str(bench_dir), attention_config="attention.yaml"))
