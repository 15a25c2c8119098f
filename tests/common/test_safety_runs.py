"""Abuse tests of run directories, their locks and markers, NaN losses and config values
(common/rundir.py, common/train.py, common/config.py). The folders, the second process and the
diverging run are built here; training runs are the points task's (tests/common/test_fourth_task.py)
or a 4-input logistic model, 1-2 epochs each."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import runner
from common.config import TRAIN_DEFAULTS, load_config
from common.errors import ConfigError, RunDirError
from common.rundir import prepare_run_dir, release_run_dir
from tests.cli_runner import run_in_process
from tests.common.test_fourth_task import PointsTask

ROOT = Path(__file__).resolve().parents[2]


def try_prepare(run):
    """`prepare_run_dir(run)` in a second, TensorFlow-free Python process: (exit code, stderr)."""
    code = ("import sys; from common.cli import run_cli; from common.rundir import prepare_run_dir; "
            "run_cli(lambda argv: prepare_run_dir(argv[0]) and 0, sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, str(run)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.returncode, done.stderr.strip()


def test_a_run_carries_its_marker_and_overwrite_spares_other_folders(tmp_path):
    run = prepare_run_dir(tmp_path / "run", config={"train": {"epochs": 1}}, task="points")
    marker = json.loads((run / "run.json").read_text())
    assert marker["project"] == "edge-rs-audio" and marker["version"] == "0.1.0" and marker["task"] == "points"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", marker["created"]), marker
    (run / "model.keras").write_bytes(b"finished")
    with pytest.raises(RunDirError, match="already holds a run; use --overwrite"):
        prepare_run_dir(run, config={"train": {"epochs": 1}})
    prepare_run_dir(run, config={"train": {"epochs": 2}}, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml", "run.json"]
    release_run_dir(run)

    thesis = tmp_path / "thesis"
    for name in ("chapter1.tex", "chapter2.tex", "notes.txt", "figures/plot.png"):
        (thesis / name).parent.mkdir(parents=True, exist_ok=True)
        (thesis / name).write_text(name)
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunDirError) as refused:
            prepare_run_dir(thesis, config={}, **flags)
        assert str(refused.value) == (f"{thesis}: is not a run directory (no run.json) and holds chapter1.tex, "
                                      "chapter2.tex, figures/ and 1 more; --overwrite replaces only runs; "
                                      "use another --out")
    assert sorted(str(p.relative_to(thesis)) for p in thesis.rglob("*")) == [
        "chapter1.tex", "chapter2.tex", "figures", "figures/plot.png", "notes.txt"]  # untouched, no .lock

    legacy = tmp_path / "legacy"  # a run written before run.json existed
    (legacy / "checkpoints").mkdir(parents=True)
    (legacy / "config.yaml").write_text("train: {}\n")
    (legacy / "model.keras").write_bytes(b"old")
    prepare_run_dir(legacy, config={"train": {}}, overwrite=True)
    assert not (legacy / "model.keras").exists() and (legacy / "run.json").is_file()
    release_run_dir(legacy)
    half = tmp_path / "config_only"  # config.yaml alone is not enough to be taken for a run
    half.mkdir()
    (half / "config.yaml").write_text("{}\n")
    with pytest.raises(RunDirError, match="is not a run directory"):
        prepare_run_dir(half, overwrite=True)
    assert (half / "config.yaml").is_file()


def test_out_stays_apart_from_the_data(tmp_path, capsys):
    data = tmp_path / "data"
    PointsTask().sample(data)
    apart = [("--data", data)]
    for out, where in ((data, "is the --data folder itself"), (data / "runs" / "r1", "lies inside the --data folder"),
                       (tmp_path, "contains the --data folder")):
        with pytest.raises(RunDirError, match=f"^{re.escape(str(out))}: --out {where}"):
            prepare_run_dir(out, overwrite=True, keep_apart=apart)
    assert prepare_run_dir(tmp_path / "beside", keep_apart=apart).is_dir()
    release_run_dir(tmp_path / "beside")
    code, _, err = run_in_process(PointsTask(), ["train", "--data", data, "--out", data, "--overwrite"], capsys)
    assert code == 2 and err.strip() == f"error: {data}: --out is the --data folder itself; use another --out"
    assert sorted(p.name for p in data.iterdir()) == ["points.npz"]


def test_config_values_of_the_wrong_kind_are_refused(tmp_path, capsys):
    defaults = {"train": dict(TRAIN_DEFAULTS)}
    refused = {
        "train.epochs=null": "config key 'train.epochs' must be a number, got null",
        "train.lr=.inf": "config key 'train.lr' must be a finite number, got inf",
        "train.lr=-.inf": "config key 'train.lr' must be a finite number, got -inf",
        "train.lr=.nan": "config key 'train.lr' must be a finite number, got nan",
        "train.weight_decay=.inf": "config key 'train.weight_decay' must be a finite number, got inf",
        "train.epochs=.inf": "config key 'train.epochs' must be int, got float inf",
        "train.optimizer=null": "config key 'train.optimizer' must be str, got null",
        "train.devices=null": "config key 'train.devices' must be list, got null",
        "train.lr=0": "config key 'train.lr' must be > 0, got 0.0",
        "train.lr=-0.1": "config key 'train.lr' must be > 0, got -0.1",
        "train.epochs=0": "config key 'train.epochs' must be > 0, got 0",
        "train.batch_size=-8": "config key 'train.batch_size' must be > 0, got -8",
        "train.steps_per_execution=0": "config key 'train.steps_per_execution' must be > 0, got 0",
        "train.seed=-1": "config key 'train.seed' must be >= 0, got -1",
    }
    for item, message in refused.items():
        with pytest.raises(ConfigError) as error:
            load_config(None, [item], defaults=defaults)
        assert str(error.value).removeprefix("--set: ") == message, item
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(config))}: config key 'train.lr' must be a finite"):
        load_config(config, defaults=defaults)
    assert load_config(None, ["train.lr=0.002", "train.epochs=1"], defaults=defaults)["train"]["lr"] == 0.002
    code, _, err = run_in_process(PointsTask(), ["train", "--data", tmp_path, "--out", tmp_path / "run",
                                                 "--set", "train.epochs=null"], capsys)
    assert code == 2 and err.strip() == "error: --set: config key 'train.epochs' must be a number, got null"


def second_process_probe(run, results):
    """A callback that, once the first epoch is done, lets a second process try the run."""
    import tf_keras as keras

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                results.append(try_prepare(run))

    return Probe()


def test_a_second_process_is_refused_while_the_first_trains(tmp_path):
    """Two processes on one --out: the second exits 2 naming the first's PID; the first finishes
    with a clean history (one row per epoch)."""
    results, run = [], tmp_path / "run"

    class ProbedPoints(PointsTask):
        def callbacks(self, cfg, data, split):
            return [second_process_probe(run, results)]

    task = ProbedPoints()
    task.sample(tmp_path / "data")
    cfg = runner.load_task_config(task, None, ["train.epochs=2"], tmp_path / "data")
    runner.train(task, cfg, run)
    assert results == [(2, f"error: {run}: is in use by process {os.getpid()} (training or resuming it); "
                           "wait for it to finish, or use another --out")]
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and [row.split(",")[0] for row in history[1:]] == ["0", "1"]
    # Finished, the run is free again: a second process now gets the ordinary refusal of a run.
    code, err = try_prepare(run)
    assert code == 2 and err == f"error: {run}: already holds a run; use --overwrite to replace it or another --out"


def test_the_lock_dies_with_its_process(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from common.rundir import prepare_run_dir; "
                               "prepare_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"is in use by process {holder.pid} "):
            prepare_run_dir(run)
    finally:
        holder.kill()
        holder.wait()
    assert prepare_run_dir(run) == run  # killed (SIGKILL): the lock is gone with it, never stale
    release_run_dir(run)


def _logistic(cfg):
    import tf_keras as keras

    from common.train import make_optimizer

    def build():
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
        model.compile(make_optimizer(cfg, 8), "sparse_categorical_crossentropy")
        return model

    return build


def _blobs():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = rng.normal(size=(64, 4)).astype("float32") + (2 * y[:, None] - 1)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def test_a_run_killed_in_its_first_epoch_restarts(tmp_path, capsys):
    import tf_keras as keras

    from common.train import fit, read_history

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise SystemExit("killed in epoch 1")

    cfg = load_config(None, ["train.epochs=2", "train.verbose=0"], defaults={"train": dict(TRAIN_DEFAULTS)})["train"]
    run = prepare_run_dir(tmp_path / "run", config={"train": cfg})
    with pytest.raises(SystemExit):
        fit(_logistic(cfg), _blobs(), None, cfg, run, extra_callbacks=[Kill()])
    assert not (run / "checkpoints" / "backup").exists() and not (run / "model.keras").exists()
    other = {"train": {**cfg, "lr": 0.01}}
    with pytest.raises(RunDirError, match=r"unfinished run with another config .*--resume.*--overwrite"):
        prepare_run_dir(run, config=other)
    capsys.readouterr()
    prepare_run_dir(run, config={"train": cfg}, resume=True)
    assert capsys.readouterr().out == f"restarting the unfinished run in {run} (it stopped before its first epoch finished)\n"
    assert not (run / "history.csv").exists() and not (run / "tb").exists()
    _, history = fit(_logistic(cfg), _blobs(), None, cfg, run)
    assert len(history.history["loss"]) == 2 and read_history(run)["epoch"] == [0, 1]
    with pytest.raises(RunDirError, match="holds a finished run \\(model.keras\\), nothing to resume"):
        prepare_run_dir(run, config={"train": cfg}, resume=True)
    release_run_dir(run)


class DivergingPoints(PointsTask):
    """The points task whose loss becomes NaN when its second epoch begins (a poisoned term)."""

    def label_loss(self, cfg):
        import tensorflow as tf
        import tf_keras as keras

        self.poison = tf.Variable(0.0, trainable=False)
        cross_entropy = keras.losses.SparseCategoricalCrossentropy()
        return lambda y, p: cross_entropy(y, p) + self.poison  # NaN + anything is NaN

    def callbacks(self, cfg, data, split):
        import tf_keras as keras

        task = self

        class Poison(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    task.poison.assign(float("nan"))

        return [Poison()]


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    import tensorflow as tf

    task, run = DivergingPoints(), tmp_path / "run"
    task.sample(tmp_path / "data")
    code, _, err = run_in_process(task, ["train", "--data", tmp_path / "data", "--out", run,
                                         "--set", "train.epochs=3", "--set", "train.precision=float32"], capsys)
    assert code == 2 and err.strip() == (
        f"error: {run}: loss became nan at epoch 2 batch 1; the last good checkpoint is kept in "
        f"{run}/checkpoints/backup (end of epoch 1), the best weights in {run}/checkpoints/best; "
        "lower train.lr or check the data")
    assert not (run / "model.keras").exists() and not (run / "metrics.json").exists()
    rows = (run / "history.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and all(np.isfinite(float(v)) for v in rows[0].split(",")), rows
    for folder in [run / "checkpoints" / "backup", *(run / "checkpoints" / "backup").rglob("*")]:
        latest = tf.train.latest_checkpoint(str(folder)) if folder.is_dir() else None
        if latest:
            reader = tf.train.load_checkpoint(latest)
            floats = [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()]
            floats = [value for value in floats if isinstance(value, np.ndarray) and value.dtype.kind == "f"]
            assert floats and all(np.isfinite(value).all() for value in floats)
            break
    else:
        pytest.fail("no checkpoint in the backup folder")
