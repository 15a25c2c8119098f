"""`python -m rsic paper3 --quick` (rsic/paper.py): the tables, resume, the exported models.

One paper3 run (the session fixture `paper3_run` of conftest.py, which test_teacher.py also uses
for its combined teacher); paper4's tests are in test_paper4.py. One epoch per run
(`--set train.epochs=1`) keeps the tests short.
"""

import json

import pytest

from common import runner
from common.config import read_saved_config
from rsic import paper
from rsic.task import RsicTask
from tests.cli_runner import run_in_process

from .conftest import ONE_EPOCH

TASK = RsicTask()
# The benchmark rows need no int8 file here; the combined teacher's head learns in a few epochs.
def test_paper3_quick_table_resume_and_export(paper3_run, capsys):
    out, models, trained = paper3_run
    # The rerun skipped the finished benchmark runs: only the student trained (the combined
    # teacher trains its head on cached embeddings, not through runner.train).
    assert trained == [str(out / "student")]
    for name, mtime in models.items():
        assert (out / "benchmark" / name / "model.keras").stat().st_mtime_ns == mtime
    bench = json.loads((out / "benchmark" / "benchmark.json").read_text())
    assert [row["backbone"] for row in bench["rows"]] == ["MobileNetV2", "MobileNet"]

    table = json.loads((out / "paper3.json").read_text())
    assert table["data"]["path"] == str((out / "data").resolve())
    assert table["data"]["examples_per_split"] == {"train": 95, "val": 25, "test": 80}
    assert [row["kind"] for row in table["rows"]] == ["benchmark", "benchmark"]
    assert [row["kind"] for row in table["table2"]] == ["teacher", "student", "student int8"]
    # Paper 3's published accuracies beside the benchmark rows (PAPERS.md: MobileNetV2 88.0, MobileNet 90.8).
    assert [row["published_accuracy"] for row in table["rows"][:2]] == [0.88, 0.908]
    assert table["published"]["benchmark"] == {"MobileNetV2": 0.88, "MobileNet": 0.908}
    # Table II's published accuracy and parameters beside each row (PAPERS.md).
    assert [row["published_accuracy"] for row in table["table2"][:2]] == [0.962, 0.948]
    assert [row["published_params"] for row in table["table2"][:2]] == [280_800_000, 4_700_000]
    for row in table["rows"] + table["table2"]:
        assert 0.0 <= row["accuracy"] <= 1.0, row
    # The teacher combines both benchmark runs, best first; the student distilled from it.
    ranked = sorted(bench["rows"], key=lambda row: (-row["val_accuracy"], row["params"]))  # validation picks
    assert table["teachers"] == [row["backbone"] for row in ranked]
    members = read_saved_config(out / "teacher" / "config.yaml")["teacher"]["members"]
    assert members == [str((out / "benchmark" / row["backbone"]).resolve()) for row in ranked]
    split = json.loads((out / "student" / "split.json").read_text())
    assert split["teachers"] == [str((out / "teacher").resolve())]
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    teacher_metrics = json.loads((out / "teacher" / "metrics.json").read_text())
    assert table["table2"][0]["accuracy"] == teacher_metrics["accuracy"]
    # Scored twice on the same 80 test images (files, then arrays): at most one near-tie apart.
    assert abs(teacher_metrics["accuracy"] - metrics["teacher_accuracy"]) <= 1 / 80 + 1e-9
    assert table["table2"][1]["accuracy"] == metrics["accuracy"]
    # The int8 student: its file exists and its size and whole-test-split accuracy are in the table.
    tflite = out / "student" / "model_int8.tflite"
    int8 = json.loads((out / "student" / "metrics_int8.json").read_text())
    assert table["table2"][2]["tflite_bytes"] == tflite.stat().st_size > 0
    assert table["table2"][2]["accuracy"] == int8["accuracy"] and int8["model"] == "int8 tflite"
    markdown = (out / "paper3.md").read_text()
    assert "| MobileNetV2 | 0.57M |" in markdown and "| 88.0 |" in markdown and "| 90.8 |" in markdown
    assert "## Table II" in markdown and "| 96.2 | 280.80M |" in markdown and "94.7%" in markdown
    assert f"| {tflite.stat().st_size / 1e6:.2f} |" in markdown

    # The finished plan through the command line: nothing runs again and the exit code is 0.
    code, said, _ = run_in_process(TASK, ["paper3", "--quick", "--out", out, "--teachers", "2", "--rows", "none",
                                          *(arg for item in ONE_EPOCH for arg in ("--set", item))], capsys)
    assert code == 0 and f"rsic: paper 3 done -> {out / 'paper3.md'}" in said
    assert (out / "paper3.md").read_text() == markdown


def test_paper3_table_ii_repeats_and_cut_rows(tmp_path):
    """Table II from run folders written by hand (no training): --repeats 2 gives mean ± std over
    the seeds' metrics.json; a cut row not run yet (or without model.cut_after) says so."""
    student_cfg = runner.load_task_config(TASK, "tiny_student.yaml")
    for row, scores in {"teacher": (0.9, 0.8), "student_alone": (0.5, 0.7), "student": (0.6, None),
                        "student_5b": (0.4, 0.5)}.items():
        for seed, accuracy in enumerate(scores):
            if accuracy is not None:
                (tmp_path / row / f"seed_{seed}").mkdir(parents=True)
                (tmp_path / row / f"seed_{seed}" / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    table = paper.paper3_table(TASK, tmp_path, ["MobileNetV2", "MobileNet"], 2, student_cfg,
                               rows=["alone", "5B", "3B"], repeats=2)
    rows = {row["kind"] + ":" + row["model"].split(" ")[0]: row for row in table["table2"]}
    teacher, alone = table["table2"][0], rows["student alone:MobileNetV2"]
    assert teacher["accuracy"] == pytest.approx(0.85) and teacher["accuracy_std"] == pytest.approx(0.05)
    assert alone["accuracy"] == pytest.approx(0.6) and alone["accuracy_std"] == pytest.approx(0.1)
    assert "mean ± std of 2 of 2 seeds" in alone["note"]
    distilled = rows["student:MobileNetV2"]  # one seed of two finished
    assert distilled["accuracy"] == pytest.approx(0.6) and "1 of 2 seeds" in distilled["note"]
    cuts = [row for row in table["table2"] if row["kind"] == "cut student"]
    assert [row["published_accuracy"] for row in cuts] == [0.935, 0.856]  # -5B, -3B (PAPERS.md)
    assert [row["published_params"] for row in cuts] == [930_000, 110_000]
    if "cut_after" in TASK.defaults["model"]:  # the key of rsic.models.build_model
        assert cuts[0]["accuracy"] == pytest.approx(0.45) and cuts[1]["note"] == "not run yet"
        assert "block_12_add" in cuts[0]["model"]
    else:
        assert all(row["note"] == "not run: this build has no model.cut_after" for row in cuts)
    markdown = paper.paper3_markdown({**table, "paper": "p3", "quick": False,
                                      "data": {"path": "d", "examples_per_split": {}, "reported_split": "test"}})
    assert "mean ± std of 2 seeds" in markdown and "| 85.0 ± 5.0 | 96.2 | 280.80M |" in markdown
