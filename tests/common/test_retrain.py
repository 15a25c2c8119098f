"""common/retrain.py (train --init-from RUN) and common/progress.py (the epoch lines), on tiny
Keras models; each task's end-to-end retraining test is in tests/TASK/test_retrain.py."""

import io

import numpy as np
import pytest
import tf_keras as keras

from common.errors import ConfigError, RunDirError
from common.progress import EpochLog, epoch_line
from common.retrain import (
    check_freeze,
    check_source,
    copy_matching_weights,
    freeze_callback,
    init_from_run,
    prepare_optimizer,
)


class _Task:
    """The little of a Task that check_source and init_from_run need."""

    name = "points"
    classifier = True

    defaults = {"data": {"root": ""}, "train": {"epochs": 1}}

    def register_layers(self):
        pass


def classifier(classes, seed, width=8):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


def test_copies_layers_of_the_same_name_and_shape_and_skips_the_classifier():
    source, model = classifier(3, seed=0), classifier(3, seed=1)
    copied, new = copy_matching_weights(model, source, skip={"logits"})
    assert [layer.name for layer in copied] == ["hidden", "bn"] and [layer.name for layer in new] == ["logits"]
    for name in ("hidden", "bn"):  # kernels, biases and the BatchNorm statistics
        for mine, theirs in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(model.get_layer("logits").get_weights()[0], source.get_layer("logits").get_weights()[0])
    other_shape = classifier(5, seed=2, width=6)  # every shape differs: nothing copied
    assert copy_matching_weights(other_shape, source)[0] == []


def test_freeze_trains_only_new_layers_then_all():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = classifier(2, seed=0)
    copied = [model.get_layer("hidden"), model.get_layer("bn")]
    before = [w.copy() for w in model.get_layer("hidden").get_weights()]
    statistics = [w.copy() for w in model.get_layer("bn").get_weights()]
    classifier_before = model.get_layer("logits").get_weights()[0].copy()
    optimizer = keras.optimizers.Adam(0.05)
    prepare_optimizer(optimizer, model)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[freeze_callback(copied, 1)])
    for old, new in zip(before, model.get_layer("hidden").get_weights()):
        np.testing.assert_array_equal(old, new)  # frozen during epoch 1 of 1
    for old, new in zip(statistics, model.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(old, new)  # a frozen BatchNorm keeps its moving statistics
    assert not np.array_equal(classifier_before, model.get_layer("logits").get_weights()[0])  # the new layer trains
    assert all(layer.trainable for layer in copied)  # unfrozen at the end: model.keras records none
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[freeze_callback(copied, 1)])
    assert not np.array_equal(before[0], model.get_layer("hidden").get_weights()[0])  # epoch 2 trains all


def test_refusals_in_one_line(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        check_source(_Task(), tmp_path / "missing")
    (tmp_path / "untrained").mkdir()
    with pytest.raises(RunDirError, match="not a trained run"):
        check_source(_Task(), tmp_path / "untrained")
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.keras").write_bytes(b"")
    (other / "config.yaml").write_text("data: {root: ''}\nmodel: {kind: student}\n")
    with pytest.raises(RunDirError, match="a run of another task .* give a points run"):
        check_source(_Task(), other)
    (other / "run.json").write_text('{"task": "asc"}')
    with pytest.raises(RunDirError, match="--init-from: this run is for asc, not points"):
        check_source(_Task(), other)
    with pytest.raises(ConfigError, match="train.freeze_epochs"):
        check_freeze({"init_from": "", "freeze_epochs": 2})


def test_epoch_lines_and_no_bar_off_a_terminal(monkeypatch):
    assert epoch_line("rsic", 3, 12, 41.2, {"loss": 0.5123, "val_accuracy": 0.7311}, "val_accuracy") == \
        "rsic: epoch 3/12  41 s  loss 0.512  val_accuracy 0.731"
    assert epoch_line("asc", 1, 2, 0.42, {"loss": 1.0}, "loss") == "asc: epoch 1/2  0.4 s  loss 1.000"
    stream = io.StringIO()  # not a terminal: never a progress bar
    model = classifier(2, seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.zeros((8, 4), "float32")
    model.fit(x, np.zeros(8, "int64"), epochs=2, verbose=0, callbacks=[EpochLog("points", 2, "loss", stream=stream)])
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["points: epoch 1/2", "points: epoch 2/2"]
    assert "\r" not in stream.getvalue()
    import common.progress

    monkeypatch.setattr(common.progress, "BAR_AFTER_S", 0.0)  # every epoch counts as long
    monkeypatch.setattr(common.progress, "BAR_EVERY_S", 0.0)
    terminal = io.StringIO()
    model.fit(x, np.zeros(8, "int64"), epochs=1, batch_size=4, verbose=0,
              callbacks=[EpochLog("points", 1, "loss", stream=terminal, bar=True)])
    text = terminal.getvalue()
    assert text.startswith("\rpoints: [############............] 1/2") and "2/2" in text
    assert text.split("\r\033[K")[-1].startswith("points: epoch 1/1  ")  # the bar erased, then the line


def test_init_from_a_saved_run_and_nothing_matching(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    classifier(3, seed=0).save(run / "model.keras")
    (run / "labels.txt").write_text("a\nb\nc\n")
    same_classes = classifier(3, seed=1)
    copied, new, line = init_from_run(_Task(), same_classes, run, ["a", "b", "c"])
    assert len(copied) == 3 and not new and line.endswith("3 layers copied (100.0% of the weights), 0 new")
    renamed = classifier(3, seed=1)  # as many classes, other names: the classifier is new
    copied, new, line = init_from_run(_Task(), renamed, run, ["a", "b", "d"])
    assert [layer.name for layer in new] == ["logits"] and line.endswith("so the classifier is new")
    with pytest.raises(RunDirError, match="no layer of its model matches"):
        init_from_run(_Task(), classifier(5, seed=2, width=6), run, ["a", "b", "c", "d", "e"])


def test_a_resumed_run_may_differ_in_verbosity_and_predate_the_retraining_keys():
    from common.config import same_run_settings

    now = {"train": {"epochs": 3, "verbose": 1, "init_from": "", "freeze_epochs": 0}}
    assert same_run_settings({"train": {"epochs": 3, "verbose": 0}}, now)  # saved before init_from
    assert not same_run_settings({"train": {"epochs": 3}}, {"train": {"epochs": 3, "init_from": "/runs/a"}})
    assert not same_run_settings({"train": {"epochs": 2, "verbose": 1}}, now)
