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
