"""common/papers.py: the resumable plan of a paper's table (no TensorFlow: call steps only)."""

import json

import pytest

from common import papers
from common.errors import ConfigError, RunDirError


def _writer(name, calls):
    def call(run):
        calls.append(name)
        (run / f"{name}.txt").write_text(name)
    return call


def _plan(out, calls):
    return [papers.Step(name, "call", out / "runs", output=f"{name}.txt", call=_writer(name, calls), verb="making")
            for name in ("a", "b", "c")]


def test_run_plan_skips_finished_steps_and_stops_after_max_steps(tmp_path):
    (tmp_path / "runs").mkdir()
    calls, tables, lines = [], [], []
    finished = papers.run_plan(None, _plan(tmp_path, calls), lambda: tables.append(len(calls)), max_steps=1,
                               say=lines.append)
    assert finished is False
    assert calls == ["a"]
    assert tables == [0, 1]  # the table is written before the first step and after each step
    assert lines == ["[1/3] a: making ...", "[2/3] b: not started (stopped after 1 steps)"]

    lines.clear()
    assert papers.run_plan(None, _plan(tmp_path, calls), lambda: tables.append(len(calls)), say=lines.append)
    assert calls == ["a", "b", "c"]  # a is not made again
    assert lines[0] == "[1/3] a: done (a.txt), skipped"
    assert lines[1:] == ["[2/3] b: making ...", "[3/3] c: making ..."]


def test_a_step_that_writes_no_output_is_an_error(tmp_path):
    step = papers.Step("broken", "call", tmp_path, output="never.json", call=lambda run: None)
    with pytest.raises(RunDirError, match="never.json: step 'broken' finished without writing it"):
        papers.run_plan(None, [step], lambda: None, say=lambda line: None)


def test_a_step_resolves_its_run_directory_when_its_turn_comes(tmp_path):
    chosen = []
    steps = [papers.Step("pick", "call", tmp_path, output="pick.txt",
                         call=lambda run: (chosen.append(tmp_path / "b"), (run / "pick.txt").write_text("b"))),
             papers.Step("use", "call", lambda: chosen[0], output="used.txt",
                         call=lambda run: (run.mkdir(), (run / "used.txt").write_text("ok")))]
    assert papers.run_plan(None, steps, lambda: None, say=lambda line: None)
    assert (tmp_path / "b" / "used.txt").read_text() == "ok"


def test_check_settings_refuses_other_settings_and_foreign_folders(tmp_path):
    out = tmp_path / "paper"
    settings = {"data": "/d", "quick": True, "overrides": ("train.epochs=1",)}
    papers.check_settings(out, settings, "python -m x paper")
    assert json.loads((out / "settings.json").read_text()) == {"data": "/d", "quick": True,
                                                               "overrides": ["train.epochs=1"]}
    papers.check_settings(out, settings, "python -m x paper")  # the same settings continue
    with pytest.raises(RunDirError, match=r"settings.json: .* with quick = true, not false"):
        papers.check_settings(out, {**settings, "quick": False}, "python -m x paper")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="other: folder is not empty and holds no settings.json"):
        papers.check_settings(tmp_path / "other", settings, "python -m x paper")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_table_helpers():
    assert papers.mean_std([0.5, 0.7, None]) == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 2}
    assert papers.mean_std([None]) is None
    assert papers.percent(0.8407) == "84.1"
    assert papers.percent(0.5, 0.012) == "50.0 ± 1.2"
    assert papers.percent(None) == "-"
    assert papers.markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"
    assert papers.parse_list("b, a", ["a", "b"], "--rungs") == ["b", "a"]
    with pytest.raises(ConfigError, match="--rungs: c is not one of a, b"):
        papers.parse_list("a,c", ["a", "b"], "--rungs")


def test_write_table_and_split_counts(tmp_path):
    papers.write_table(tmp_path, "t", {"rows": [1]}, "# t\n\n")
    assert json.loads((tmp_path / "t.json").read_text()) == {"rows": [1]}
    assert (tmp_path / "t.md").read_text() == "# t\n"
    (tmp_path / "split.json").write_text(json.dumps({"splits": ["train", "val"], "train": ["a", "b"], "val": ["c"]}))
    assert papers.split_counts(tmp_path) == {"train": 2, "val": 1}
    assert papers.split_counts(tmp_path / "none") == {}


def test_repeat_runs_seeds_and_mean_over(tmp_path):
    from common.papers import mean_over, repeat_runs, seeded

    assert repeat_runs(tmp_path / "a", 1) == [(tmp_path / "a", None)]
    assert repeat_runs(tmp_path / "a", 3) == [(tmp_path / "a" / f"seed_{k}", k) for k in range(3)]
    with pytest.raises(ConfigError, match="--repeats"):
        repeat_runs(tmp_path, 0)
    defaults = {"train": {"seed": 0, "epochs": 1}}
    cfg = {"train": {"seed": 0, "epochs": 1}}
    assert seeded(cfg, None, defaults) is cfg
    assert seeded(cfg, 2, defaults) == {"train": {"seed": 2, "epochs": 1}} and cfg["train"]["seed"] == 0
    values = {"x": 0.5, "y": None, "z": 0.7}
    result = mean_over([tmp_path / name for name in values], lambda run: values[run.name])
    assert result == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 2}
