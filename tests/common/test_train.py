import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.config import load_config
from common.errors import ConfigError, RunDirError
from common.train import (
    TRAIN_DEFAULTS,
    fit,
    load_run_model,
    make_optimizer,
    prepare_run_dir,
    read_history,
)

DEFAULTS = {"train": dict(TRAIN_DEFAULTS)}


def blobs(n=256, seed=0):
    """Two Gaussian blobs in 4-D: a problem a logistic model solves in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4)).astype("float32") + 1.5 * (2 * y[:, None] - 1)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def train_cfg(**overrides):
    items = [f"train.{k}={v}" for k, v in {"verbose": 0, "epochs": 4, **overrides}.items()]
    return load_config(None, items, defaults=DEFAULTS)["train"]


def build(cfg):
    def build_fn():
        inputs = keras.Input((4,))
        outputs = keras.layers.Dense(2, activation="softmax")(inputs)
        model = keras.Model(inputs, outputs)
        model.compile(make_optimizer(cfg, 8), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    return build_fn


class _Crash(keras.callbacks.Callback):
    """Simulates a killed process after `epoch` finished epochs."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise SystemExit("simulated crash")


def test_fit_writes_run_dir_and_learns(tmp_path):
    cfg = train_cfg(lr=0.05)
    run = prepare_run_dir(tmp_path / "run", config={"train": cfg})
    model, history = fit(build(cfg), blobs(), blobs(seed=1), cfg, run)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert history.history["val_accuracy"][-1] > 0.9
    for name in ["config.yaml", "model.keras", "history.csv", "checkpoints/best.index", "tb"]:
        assert (run / name).exists(), name
    assert not (run / "checkpoints/backup").exists()  # removed once the run finished
    assert len(read_history(run)["loss"]) == 4
    x = np.ones((3, 4), "float32")
    np.testing.assert_allclose(load_run_model(run).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = train_cfg(epochs=1)
    run = prepare_run_dir(tmp_path / "run", config={"train": cfg})
    fit(build(cfg), blobs(), None, cfg, run)
    with pytest.raises(RunDirError, match="already holds a run; use --overwrite"):
        prepare_run_dir(run, config={"train": cfg})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a run directory"):
        prepare_run_dir(tmp_path / "other", config={"train": cfg})
    prepare_run_dir(run, config={"train": cfg}, overwrite=True)
    assert not (run / "model.keras").exists()


def test_crashed_run_resumes_with_the_same_command(tmp_path):
    cfg = train_cfg(epochs=5, lr=0.05)
    run = prepare_run_dir(tmp_path / "run", config={"train": cfg})
    with pytest.raises(SystemExit):
        fit(build(cfg), blobs(), blobs(seed=1), cfg, run, extra_callbacks=[_Crash(3)])
    assert (run / "checkpoints/backup").is_dir() and not (run / "model.keras").exists()
    assert len(read_history(run)["loss"]) == 3
    # The same command again: the unfinished run with the same config resumes at epoch 4.
    prepare_run_dir(run, config={"train": cfg})
    _, history = fit(build(cfg), blobs(), blobs(seed=1), cfg, run)
    assert len(history.history["loss"]) == 2
    assert read_history(run)["epoch"] == [0, 1, 2, 3, 4]
    other = train_cfg(epochs=6)
    with pytest.raises(RunDirError, match="already holds a run"):
        prepare_run_dir(run, config={"train": other})


def test_damaged_resume_state_is_refused(tmp_path):
    cfg = train_cfg(epochs=4)
    run = prepare_run_dir(tmp_path / "run", config={"train": cfg})
    with pytest.raises(SystemExit):
        fit(build(cfg), blobs(), None, cfg, run, extra_callbacks=[_Crash(2)])
    data_files = list((run / "checkpoints/backup").rglob("*.data-*"))
    assert data_files
    for path in data_files:
        path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(RunDirError, match="resume state is damaged.*--overwrite"):
        fit(build(cfg), blobs(), None, cfg, run)


def test_bad_optimizer_and_schedule():
    with pytest.raises(ConfigError, match="train.optimizer"):
        make_optimizer(train_cfg(optimizer="lion"), 1)
    with pytest.raises(ConfigError, match="train.schedule"):
        make_optimizer(train_cfg(schedule="step"), 1)
    assert make_optimizer(train_cfg(schedule="cosine"), 10) is not None
