"""Session-scoped fixtures shared by the rsic tests: one sample data set and one trained tiny teacher.

Training happens once per session (through common.runner, as `python -m rsic train` does); the
tests that need a trained model share this run.
"""

from pathlib import Path

import pytest

from common import runner
from rsic.sample import write_sample
from rsic.task import RsicTask

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rsic"
TASK = RsicTask()


def tiny_config(data, name="tiny.yaml", overrides=()):
    """The resolved config of configs/rsic/NAME with `--data data` applied."""
    return runner.load_task_config(TASK, CONFIGS / name, list(overrides), data)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """5 classes x 40 JPEG scenes of 64x64 pixels (the demo's data set)."""
    return write_sample(tmp_path_factory.mktemp("rsic_sample") / "data", classes=5, per_class=40, size=64)


@pytest.fixture(scope="session")
def teacher_run(sample_dir, tmp_path_factory):
    """A tiny MobileNetV2 (configs/rsic/tiny.yaml) trained on the sample: (run_dir, metrics)."""
    result = runner.train(TASK, tiny_config(sample_dir), tmp_path_factory.mktemp("rsic_runs") / "teacher")
    return result.run, result.metrics


# paper3/paper4 --quick in tests: one epoch per run, no int8 file for the benchmark rows; the
# combined teacher's head trains 30 epochs on ~100 cached vectors (a few seconds).
ONE_EPOCH = ["train.epochs=1", "benchmark.export=false", "teacher.epochs=30"]


def paper_args(out, **changes):
    """The parsed options of `python -m rsic paper3/paper4 --quick --out OUT --set ONE_EPOCH...`."""
    import argparse

    return argparse.Namespace(**{"data": None, "out": str(out), "config": None, "backbones": None,
                                 "student_config": None, "teachers": 1, "attention_config": None,
                                 "benchmark": None, "teacher_config": None, "rows": "none",
                                 "repeats": 1, "quick": True, "overrides": list(ONE_EPOCH),
                                 **changes})


@pytest.fixture(scope="session")
def paper3_run(tmp_path_factory):
    """paper3 --quick --teachers 2 --rows none, stopped after the two benchmark runs, then run
    again to the end: (out, mtimes of the benchmark models after the first part, runs the second
    part trained). Its OUT/teacher (the benchmark runs combined) also serves test_teacher.py."""
    import json

    from rsic import paper

    out = tmp_path_factory.mktemp("rsic_paper") / "paper3"
    assert paper.run_paper3(TASK, paper_args(out, teachers=2), max_steps=2) is False
    models = {name: (out / "benchmark" / name / "model.keras").stat().st_mtime_ns
              for name in paper.QUICK_BACKBONES}
    table = json.loads((out / "paper3.json").read_text())
    assert [row["accuracy"] is not None for row in table["rows"]][:2] == [True, True]
    assert table["table2"][1]["accuracy"] is None  # the student not yet distilled

    trained, original = [], runner.train
    runner.train = lambda *a, **k: (trained.append(str(a[2])), original(*a, **k))[1]
    try:
        assert paper.run_paper3(TASK, paper_args(out, teachers=2)) is True
    finally:
        runner.train = original
    return out, models, trained
