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


def _two_steps(optimizer, w0, grads):
    """Apply `grads` (a list of arrays) one step each to a variable starting at w0; its final value."""
    var = tf.Variable(np.array(w0, np.float32))
    for grad in grads:
        optimizer.apply_gradients([(tf.constant(np.array(grad, np.float32)), var)])
    return var.numpy()


def _keras_adam(w, grads, lr, beta1=0.9, beta2=0.999, eps=1e-7, l2=0.0, decoupled=0.0):
    """Keras' Adam by hand (float64): w -= lr_t * m / (sqrt(v) + eps), lr_t bias-corrected, the
    gradient plus l2 * w (coupled decay); decoupled decay shrinks w by lr * decay * w first."""
    w, m, v = np.array(w, np.float64), 0.0, 0.0
    for t, grad in enumerate(grads, start=1):
        w = w - lr * decoupled * w
        g = np.array(grad, np.float64) + l2 * w
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        w = w - lr * np.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (np.sqrt(v) + eps)
    return w


def test_coupled_l2_weight_decay_adds_wd_times_w_to_the_gradient():
    w0, grads, lr, wd = [1.0, -2.0, 0.5], [[0.1, 0.2, -0.3], [0.3, -0.1, 0.2]], 0.01, 0.5
    coupled = _two_steps(make_optimizer(train_cfg(lr=lr, weight_decay=wd, weight_decay_mode="l2"), 1), w0, grads)
    np.testing.assert_allclose(coupled, _keras_adam(w0, grads, lr, l2=wd), rtol=1e-6)
    # auto is l2 for adam; without decay the step is plain Adam's, a different value.
    auto = _two_steps(make_optimizer(train_cfg(lr=lr, weight_decay=wd), 1), w0, grads)
    np.testing.assert_allclose(auto, coupled, rtol=1e-7)
    plain = _two_steps(make_optimizer(train_cfg(lr=lr), 1), w0, grads)
    np.testing.assert_allclose(plain, _keras_adam(w0, grads, lr), rtol=1e-6)
    assert np.abs(plain - coupled).max() > 1e-3
    decoupled = _two_steps(make_optimizer(train_cfg(lr=lr, weight_decay=wd, weight_decay_mode="decoupled"), 1),
                           w0, grads)
    np.testing.assert_allclose(decoupled, _keras_adam(w0, grads, lr, decoupled=wd), rtol=1e-6)
    # SGD (momentum 0.9, Nesterov): the first step is -lr * 1.9 * (g + wd * w).
    sgd = _two_steps(make_optimizer(train_cfg(optimizer="sgd", lr=lr, weight_decay=wd), 1), w0, grads[:1])
    np.testing.assert_allclose(sgd, np.array(w0) - lr * 1.9 * (np.array(grads[0]) + wd * np.array(w0)), rtol=1e-6)
    with pytest.raises(ConfigError, match="weight_decay_mode"):
        make_optimizer(train_cfg(optimizer="adamw", weight_decay=wd, weight_decay_mode="l2"), 1)
    with pytest.raises(ConfigError, match="weight_decay_mode"):
        make_optimizer(train_cfg(weight_decay_mode="coupled"), 1)


def test_coupled_l2_inside_fit_and_saved_model(tmp_path):
    """In model.fit (a traced train step) the decay alone moves the weights, by Adam's step on the
    gradient wd * w; a model saved with the optimizer loads back with it."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, bias_initializer="ones")(inputs))
    model.compile(make_optimizer(train_cfg(lr=0.01, weight_decay=5e-4), 1), loss=lambda y, p: 0.0 * p)
    before = [w.copy() for w in model.get_weights()]
    model.fit(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32), batch_size=4, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_allclose(new, _keras_adam(old, [np.zeros_like(old)], 0.01, l2=5e-4), atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=True, safe_mode=False)
    assert type(loaded.optimizer).__name__ == "AdamL2" and loaded.optimizer.l2_decay == pytest.approx(5e-4)


def test_step_schedule_switches_at_the_first_step_of_each_epoch():
    from common.train import make_optimizer, step_schedule

    schedule = step_schedule([[0, 1e-4], [2, 5e-5], [3, 1e-5]], steps_per_epoch=4)
    rates = [float(schedule(step)) for step in range(14)]
    assert rates == pytest.approx([1e-4] * 8 + [5e-5] * 4 + [1e-5] * 2)  # epochs 0-1, 2, 3+
    from common.config import TRAIN_DEFAULTS

    cfg = load_config(None, ["train.schedule=steps", "train.lr_steps=[[0, 0.001], [1, 0.0001]]"],
                      defaults={"train": TRAIN_DEFAULTS})
    schedule = make_optimizer(cfg["train"], steps_per_epoch=10).get_config()["learning_rate"]
    assert schedule["config"]["boundaries"] == [9] and schedule["config"]["values"] == [1e-3, 1e-4]
    for bad in ([], [[1, 1e-4]], [[0, 1e-4], [0, 1e-5]], [[0, -1.0]], [["x"]]):
        with pytest.raises(ConfigError, match="train.lr_steps"):
            step_schedule(bad, 4)


def test_precision_follows_a_onednn_cap(monkeypatch):
    """Under ONEDNN_MAX_CPU_ISA=AVX2 (how an AVX2-only CPU is imitated here) auto trains in float32
    and an explicit mixed_bfloat16 is one ConfigError: oneDNN has no bfloat16 convolution there."""
    from common.train import resolve_precision

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    policy, why = resolve_precision({"precision": "auto"})
    assert policy == "float32" and ("ONEDNN_MAX_CPU_ISA=AVX2" in why or "without AVX-512 BF16" in why), why
    with pytest.raises(ConfigError, match="mixed_bfloat16 cannot run on"):
        resolve_precision({"precision": "mixed_bfloat16"})
    assert resolve_precision({"precision": "float32"}) == ("float32", "set in the config")
