"""Errors that say what to do: the closest config key, command, config file or option; a run of
another task named as such. In-process and before any training, so each case costs milliseconds."""

import json

import pytest

from common.errors import did_you_mean
from common.task import task_by_name
from tests.cli_runner import run_in_process


def one_error_line(task, argv, capsys):
    """Run `python -m TASK argv`; assert exit code 2 and one `error:` line on stderr; return it."""
    code, out, err = run_in_process(task_by_name(task), argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    return lines[0]


def test_did_you_mean():
    assert did_you_mean("epoch", ["epochs", "lr"], "train.") == " (did you mean 'train.epochs'?)"
    assert did_you_mean("colour", ["epochs", "lr"]) == ""  # nothing close: no guess


def test_a_config_key_typo_names_the_key(tmp_path, capsys):
    line = one_error_line("rsic", ["train", "--out", tmp_path / "run", "--set", "train.epoch=2"], capsys)
    assert line == "error: --set: unknown config key 'train.epoch' (did you mean 'train.epochs'?)"
    assert not (tmp_path / "run").exists()


def test_an_unknown_command_names_the_closest_and_the_list(capsys):
    line = one_error_line("landslide", ["trian", "--out", "x"], capsys)
    assert line.startswith("error: trian: unknown command (did you mean 'train'?); the commands are download, ")
    assert line.endswith(", stats, summary, ladder")


def test_an_unknown_config_file_lists_the_task_configs(tmp_path, capsys):
    line = one_error_line("asc", ["train", "--config", "studnet.yaml", "--out", tmp_path / "run"], capsys)
    assert line.startswith("error: studnet.yaml: config file not found (did you mean 'student.yaml'?); the "
                           "configs in ")
    assert line.endswith("configs/asc are student.yaml, teacher.yaml, teacher_tiny.yaml, or give the path of a "
                         "YAML file")


def test_an_option_of_another_command_or_task_is_refused(capsys):
    # --folds averages landslide's fold_K runs (train --fold all); rsic and asc train no folds.
    line = one_error_line("rsic", ["evaluate", "--run", "r", "--folds"], capsys)
    assert line == ("error: --folds: not an option of `python -m rsic evaluate`; "
                    "`python -m rsic evaluate --help` lists its options")
    line = one_error_line("asc", ["train", "--out", "r", "--overwirte"], capsys)
    assert "--overwirte: not an option of `python -m asc train` (did you mean '--overwrite'?)" in line
    line = one_error_line("landslide", ["evaluate", "--run", "missing", "--folds"], capsys)
    assert line == "error: missing: no trained fold_K runs (train with --fold all)"  # parsed: landslide's option


@pytest.mark.parametrize("command", [["evaluate"], ["export"], ["predict", "a.wav", "--out", "p.csv"]])
def test_a_run_of_another_task_is_named(tmp_path, capsys, command):
    run = tmp_path / "rsic_run"  # what `rsic train` writes first: config.yaml and split.json
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  train_ratio: 0.6\n")
    (run / "split.json").write_text(json.dumps({"task": "rsic", "splits": ["train"], "train": []}))
    line = one_error_line("asc", [*command, "--run", run], capsys)
    assert line == f"error: {run}: this run is for rsic, not asc; use `python -m rsic` with it"
