"""Shared fixtures: one sample data set and one tiny trained run (through the command line)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "landslide" / "tiny.yaml"


def run_cli(*args, check=True):
    """Run `python -m landslide ARGS` in a subprocess; return the CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0", "EDGE_THREADS": "2"}
    result = subprocess.run([sys.executable, "-m", "landslide", *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"landslide {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A sample data set of 32 labelled patches (and 8 valid, 8 test)."""
    from landslide.sample import write_sample

    root = tmp_path_factory.mktemp("l4s") / "data"
    write_sample(root, n=32, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_run(sample_root, tmp_path_factory):
    """The tiny full model trained by `python -m landslide train` on the sample data; what the
    command printed is beside it in tiny.out (stdout, then stderr)."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_cli("train", "--config", TINY, "--data", sample_root, "--out", run, "--set", "train.epochs=6")
    run.with_suffix(".out").write_text(result.stdout + result.stderr)
    return run
