"""Session-scoped fixtures shared by the rsic tests: one sample data set and one trained tiny teacher.

Training happens once per session; the tests that need a trained model share this run.
"""

from pathlib import Path

import pytest

from rsic.cli import load_task_config
from rsic.sample import write_sample

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rsic"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """5 classes x 40 JPEG scenes of 64x64 pixels (the demo's data set)."""
    return write_sample(tmp_path_factory.mktemp("rsic_sample") / "data", classes=5, per_class=40, size=64)


@pytest.fixture(scope="session")
def teacher_run(sample_dir, tmp_path_factory):
    """A tiny MobileNetV2 (configs/rsic/tiny.yaml) trained on the sample: (run_dir, metrics)."""
    from rsic.train import train

    cfg = load_task_config(CONFIGS / "tiny.yaml", [], data=sample_dir)
    return train(cfg, tmp_path_factory.mktemp("rsic_runs") / "teacher", log=lambda _: None)
