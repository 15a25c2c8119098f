"""The command line end to end, in-process through `common.cli.run_cli` as `python -m rsic` runs it
(same parser and code path, no second TensorFlow start), and its exit code 2 on bad input."""

import csv
import json

import pytest

from rsic.cli import main
from tests.cli_runner import run_in_process
from tests.rsic.conftest import CONFIGS


def cli(*args):
    """Run `python -m rsic ARGS` in-process; returns the exit code."""
    return run_in_process(main, args)[0]


def test_cli_end_to_end(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert cli("sample", "--out", data, "--classes", "3", "--per-class", "8", "--size", "32") == 0
    assert sorted(p.name for p in data.iterdir()) == ["airplane", "airport", "baseball_diamond"]

    assert cli("train", "--config", CONFIGS / "tiny.yaml", "--data", data, "--out", run,
               "--set", "train.epochs=1", "--set", "model.input_size=32") == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (run / "model.keras").is_file() and (run / "labels.txt").read_text().split()[0] == "airplane"

    assert cli("sample", "--out", tmp_path / "s", "--classes", "1") == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --classes must be at least 2, got 1"]

    assert cli("evaluate", "--run", run, "--out", tmp_path / "eval") == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and (tmp_path / "eval" / "confusion_matrix.png").is_file()

    # The export and `predict --tflite` run in tests/rsic/test_edge.py on the shared teacher.
    assert cli("predict", "--run", run, data / "airport", "--out", tmp_path / "p.csv") == 0
    with open(tmp_path / "p.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and set(rows[0]) == {"file", "label", "probability"}
    assert all(r["label"] in ("airplane", "airport", "baseball_diamond") and 0 <= float(r["probability"]) <= 1
               for r in rows)


@pytest.mark.parametrize("args,message", [
    (["sample", "--out", "{tmp}/s", "--per-class", "1"], "--per-class must be at least 2"),
    (["train", "--data", "{tmp}/nowhere", "--out", "{tmp}/r"], "nowhere: data folder not found"),
    (["train", "--set", "model.bakbone=X", "--out", "{tmp}/r"], "unknown config key 'model.bakbone'"),
    (["evaluate", "--run", "{tmp}/not_a_run"], "not a run directory"),
])
def test_bad_input_one_line_exit_2(args, message, tmp_path, capsys):
    from rsic.cli import entry

    with pytest.raises(SystemExit) as exit_info:
        entry([a.format(tmp=tmp_path) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_run_errors_exit_2(tmp_path, teacher_run, sample_dir, capsys):
    from rsic.cli import entry

    run_dir, _ = teacher_run
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    commands = [
        (["predict", "--run", str(run_dir), str(bad)], "broken.jpg: unreadable or truncated image"),
        (["train", "--config", str(CONFIGS / "tiny.yaml"), "--data", str(sample_dir), "--out", str(run_dir)],
         "already holds a run; use --overwrite"),
        (["export", "--run", str(run_dir), "--set", "export.mode=ptq", "--set", "export.size_budget_mb=0.01"],
         "MB ("),  # the message gives the model's size
    ]
    for args, message in commands:
        with pytest.raises(SystemExit) as exit_info:
            entry(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert "over the size budget of 0.01 MB" in err
    assert not (run_dir / "model_int8.tflite").exists()
