"""Shared, session-scoped fixtures: one sample data set, its feature cache, one teacher, one student.

Training happens once per test session (about half of this folder's run time); the tests that need
a trained model share these runs.
"""

import copy
from pathlib import Path

import pytest

from asc.config import load
from asc.sample import write_sample
from asc.task import AscTask

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "asc"
PER_CLASS = 10  # 7 training and 3 evaluation clips per scene
FAST = ["train.verbose=0", "train.batch_size=16", "export.mode=ptq", "export.calibration_examples=32"]


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("asc_sample"), per_class=PER_CLASS, seed=0)


@pytest.fixture(scope="session")
def teacher_cfg(sample_dir):
    return load(CONFIGS / "teacher_tiny.yaml", [*FAST, "train.epochs=6"], sample_dir)


@pytest.fixture(scope="session")
def student_cfg(sample_dir):
    return load(CONFIGS / "student.yaml", [*FAST, "train.epochs=4"], sample_dir)


@pytest.fixture(scope="session")
def teacher_run(teacher_cfg, tmp_path_factory):
    """(run directory, common.runner.RunResult) of teacher_tiny trained on the sample data."""
    from common import runner

    out = tmp_path_factory.mktemp("runs") / "teacher"
    return out, runner.train(AscTask(), copy.deepcopy(teacher_cfg), out)


@pytest.fixture(scope="session")
def student_run(student_cfg, teacher_run, tmp_path_factory):
    """(run directory, RunResult) of the student distilled from `teacher_run`."""
    from common import runner

    out = tmp_path_factory.mktemp("runs") / "student"
    return out, runner.distill(AscTask(), copy.deepcopy(student_cfg), out, teacher_run[0])
