"""train.steps_per_execution and train.jit_compile: config keys, applied by common.train."""

import numpy as np
import pytest
import tf_keras as keras

from common.config import TRAIN_DEFAULTS, load_config
from common.errors import ConfigError
from common.train import apply_step_options

DEFAULTS = {"train": dict(TRAIN_DEFAULTS)}


def test_defaults_and_overrides():
    assert load_config(None, [], defaults=DEFAULTS)["train"]["steps_per_execution"] == 1
    assert load_config(None, [], defaults=DEFAULTS)["train"]["jit_compile"] == "auto"
    assert load_config(None, ["train.jit_compile=true"], defaults=DEFAULTS)["train"]["jit_compile"] == "true"
    assert load_config(None, ["train.jit_compile=false"], defaults=DEFAULTS)["train"]["jit_compile"] == "false"
    with pytest.raises(ConfigError, match="train.jit_compile"):
        load_config(None, ["train.jit_compile=maybe"], defaults=DEFAULTS)


def _model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_steps_per_execution_trains_every_batch():
    model = _model()
    apply_step_options(model, {**TRAIN_DEFAULTS, "steps_per_execution": 3})
    assert int(model._steps_per_execution.numpy()) == 3
    assert model.jit_compile is False  # auto: XLA on GPUs only
    x = np.ones((10, 4), np.float32)
    model.fit(x, np.zeros((10, 1), np.float32), batch_size=2, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 5  # 5 batches, 2 calls of up to 3 steps


def test_bad_steps_per_execution():
    with pytest.raises(ConfigError, match="steps_per_execution"):
        apply_step_options(_model(), {**TRAIN_DEFAULTS, "steps_per_execution": 0})
