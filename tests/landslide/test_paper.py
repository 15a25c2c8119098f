"""`python -m landslide ladder --quick` (landslide/paper.py): the table, resume, the exported model."""

import argparse
import json

import numpy as np
import pytest

from common import runner
from landslide import paper
from landslide.task import LandslideTask
from tests.cli_runner import run_in_process

RUNGS = "unet_ce,features"  # the two cheapest rungs keep the test short; the plan is the same


def _args(out, **changes):
    return argparse.Namespace(**{"data": None, "out": str(out), "folds": None, "rungs": RUNGS, "quick": True,
                                 "overrides": [], **changes})


def _counting(monkeypatch, name, run_arg):
    """Record the run directory (positional argument `run_arg`) of every call of runner.NAME."""
    calls = []
    original = getattr(runner, name)

    def counted(*args, **kwargs):
        calls.append(str(args[run_arg]))
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, name, counted)
    return calls


def test_ladder_quick_table_resume_and_export(tmp_path, monkeypatch, capsys):
    out, task = tmp_path / "paper1", LandslideTask()
    # Stopped after two steps (a killed command): unet_ce's two folds are done, features' are not.
    assert paper.run(task, _args(out), max_steps=2) is False
    table = json.loads((out / "ladder.json").read_text())
    assert [row["folds_done"] for row in table["rows"]] == [[0, 1], []]
    assert table["best"]["rung"] == "unet_ce" and table["best"]["exported"] is False
    first = {fold: (out / "unet_ce" / f"fold_{fold}" / "model.keras").stat().st_mtime_ns for fold in (0, 1)}

    # The same command again: only the four unfinished steps run, nothing is trained twice.
    trained = _counting(monkeypatch, "train", 2)
    assert paper.run(task, _args(out)) is True
    assert trained == [str(out / "features" / "fold_0"), str(out / "features" / "fold_1")]
    assert {fold: (out / "unet_ce" / f"fold_{fold}" / "model.keras").stat().st_mtime_ns for fold in (0, 1)} == first

    table = json.loads((out / "ladder.json").read_text())
    assert [row["rung"] for row in table["rows"]] == ["unet_ce", "features"]
    assert table["data"]["path"] == str((out / "data").resolve())
    assert table["data"]["labelled_patches"] == paper.QUICK_PATCHES
    counts = table["data"]["examples_per_split"]["fold_0"]  # train (and an inner split), val
    assert counts["val"] == 5 and sum(counts.values()) == paper.QUICK_PATCHES
    for row in table["rows"]:
        assert row["folds_done"] == [0, 1]
        for key in ("precision", "recall", "f1", "miou"):
            assert 0.0 <= row[key]["mean"] <= 1.0 and row[key]["n"] == 2
            values = [row["per_fold"][f"fold_{k}"][key] for k in (0, 1)]
            assert row[key]["mean"] == pytest.approx(np.mean(values))
            assert row[key]["std"] == pytest.approx(np.std(values))
    assert table["rows"][0]["published"]["f1_mean"] == 0.7357 and table["rows"][0]["published"]["miou"] == 0.6727
    assert table["data"]["protocol_name"] == "authors"  # the default: selection on the scored fold
    assert table["rows"][1]["published"] is None  # the paper gives no number for this rung
    markdown = (out / "ladder.md").read_text()
    assert "| `unet_ce` | authors' U-Net, cross-entropy, 14 bands (baseline) | 2/2 |" in markdown
    assert "73.6" in markdown and "67.3" in markdown and "77.19" in markdown

    # The best rung (mean F1) is exported, and its best fold is the one exported.
    best = table["best"]
    means = {row["rung"]: row["f1"]["mean"] for row in table["rows"]}
    # Either rung goes to int8 (the features rung with the authors' front on the host beside it).
    assert set(means) == {"unet_ce", "features"} and best["exported"] is True
    assert means[best["rung"]] == max(means.values())
    from landslide.edge import load_tflite

    tflite = load_tflite(best["path"])
    assert best["tflite_bytes"] == (out / best["rung"] / best["run"].split("/")[-1] / "model_int8.tflite").stat().st_size
    x = np.zeros((1, 128, 128, 14), np.float32)
    probs = tflite.predict(x)
    assert probs.shape == (1, 128, 128, 1) and 0.0 <= probs.min() and probs.max() <= 1.0

    # Table and one run's metrics deleted: the run is scored again, not trained; the table comes back.
    (out / "ladder.json").unlink()
    (out / "ladder.md").unlink()
    (out / "features" / "fold_1" / "metrics.json").unlink()
    evaluated = _counting(monkeypatch, "evaluate", 1)
    # Through the command line this time: a finished ladder exits 0 (`make paper1` checks the code).
    code, said, _ = run_in_process(task, ["ladder", "--quick", "--out", out, "--rungs", RUNGS], capsys)
    assert code == 0 and f"landslide: ladder done -> {out / 'ladder.md'}" in said
    assert trained == [str(out / "features" / "fold_0"), str(out / "features" / "fold_1")]
    assert evaluated == [str(out / "features" / "fold_1")]
    again = json.loads((out / "ladder.json").read_text())
    assert again["rows"][1]["f1"] == pytest.approx(table["rows"][1]["f1"])
    assert (out / "ladder.md").read_text() == markdown


def test_ladder_refuses_bad_options_in_one_line(tmp_path, capsys):
    task = LandslideTask()
    code, _, err = run_in_process(task, ["ladder", "--out", tmp_path / "r"], capsys)
    assert code == 2 and err.strip() == "error: ladder: give --data DIR (the Landslide4Sense folder), or --quick for sample data"
    code, _, err = run_in_process(task, ["ladder", "--quick", "--out", tmp_path / "r", "--rungs", "unet_ce,bogus"], capsys)
    assert code == 2 and "error: --rungs: bogus is not one of unet_ce, features" in err
    assert not (tmp_path / "r").exists()  # nothing was written
    # A folder made with other settings is refused (max_steps=0: settings, sample data, table; no training).
    assert paper.run(task, _args(tmp_path / "r"), max_steps=0) is False
    code, _, err = run_in_process(task, ["ladder", "--quick", "--out", tmp_path / "r", "--set", "train.epochs=3"], capsys)
    assert code == 2
    assert err.strip().startswith(f"error: {tmp_path / 'r' / 'settings.json'}: this folder holds a run of "
                                  "`python -m landslide ladder` with overrides = ")


def test_ladder_table_pairs_each_published_number_with_the_same_definition(tmp_path):
    # One fold of the paper's model scored from a hand-made pooled confusion matrix:
    # background TN 90, FP 2; landslide FN 3, TP 5.
    from landslide.task import segmentation_metrics

    metrics = segmentation_metrics(np.array([[[90, 2], [3, 5]]]))
    assert metrics["f1"] == pytest.approx(10 / 15)  # 2 TP / (2 TP + FP + FN)
    assert metrics["f1_mean"] == pytest.approx((180 / 185 + 10 / 15) / 2)
    assert metrics["miou"] == pytest.approx((90 / 95 + 5 / 10) / 2)
    run = tmp_path / "full" / "fold_0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    content = paper.table(tmp_path, ["unet_ce", "full"], [0], "data", 100, 5, quick=False,
                          protocol="clean")
    assert "clean" in content["data"]["protocol"] and content["data"]["protocol_name"] == "clean"
    markdown = paper.markdown(content)
    header = next(line for line in markdown.splitlines() if line.startswith("| rung"))
    titles = [cell.strip() for cell in header.strip("|").split("|")]
    # Each paper column follows our column of the same (two-class) definition.
    assert titles[titles.index("F1 2-class") + 1] == "paper F1 2-class"
    assert titles[titles.index("mIoU 2-class") + 1] == "paper mIoU 2-class"
    full = next(line for line in markdown.splitlines() if line.startswith("| `full`"))
    cells = [cell.strip() for cell in full.strip("|").split("|")]
    assert cells[titles.index("F1 landslide")] == "66.7 ± 0.0"
    assert cells[titles.index("F1 2-class")] == "82.0 ± 0.0"  # (97.30 + 66.67) / 2 = 81.98
    assert cells[titles.index("paper F1 2-class")] == "84.1"
    assert cells[titles.index("mIoU 2-class")] == "72.4 ± 0.0" and cells[titles.index("paper mIoU 2-class")] == "76.1"
    # The per-fold table: ours beside the authors' logged fold F1 (their fold 1 = our fold 0).
    assert "| `full` | 82.0 / 72.4 | - / 86.8 | - / 87.7 | - / 87.2 | - / 86.3 |" in markdown
