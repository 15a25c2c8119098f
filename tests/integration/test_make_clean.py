"""`make clean` keeps the trained runs; `make clean-runs` deletes runs/ and lists what it deletes."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_clean_keeps_runs_and_clean_runs_lists_what_it_deletes(tmp_path):
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "runs" / "demo" / "rsic").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "rsic" / "model.keras").write_text("a user's model")
    (tmp_path / ".pytest_cache").mkdir()

    def make(target):
        return subprocess.run(["make", "--no-print-directory", target], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=True).stdout

    make("clean")
    assert not (tmp_path / ".pytest_cache").exists()
    assert (tmp_path / "runs" / "demo" / "rsic" / "model.keras").read_text() == "a user's model"

    said = make("clean-runs").splitlines()
    assert said[0].startswith("deleting runs/ (") and said[1:] == ["  runs/demo", "  runs/demo/rsic"]
    assert not (tmp_path / "runs").exists()
    assert make("clean-runs").strip() == "no runs/ folder: nothing to delete"
