"""Tests of common/complexity.py: parameters as Keras counts them, MACs counted by hand."""

import numpy as np
import pytest
import tf_keras as keras

from common.complexity import model_complexity, tflite_bytes
from common.errors import DataError

layers = keras.layers


def _small_conv_net():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    x = layers.Conv2DTranspose(2, 2, strides=2, name="up")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs)


# Counted by hand, per example:
#   conv  8x8 outputs * 4 channels * (3*3*3)      = 6912
#   dw    4x4 outputs * 4 channels * 3*3          =  576
#   sep   depthwise 4x4*4*9 = 576 + pointwise 4x4*4*8 = 512 -> 1088
#   up    4x4 inputs * 8 channels * 2*2 * 2 out   = 1024
#   dense 2 * 5                                   =   10
HAND_MACS = {"conv": 6912, "bn": 0, "relu": 0, "dw": 576, "sep": 1088, "up": 1024, "gap": 0, "logits": 10}


def test_small_conv_net_counted_by_hand():
    model = _small_conv_net()
    result = model_complexity(model)
    assert result["params"] == model.count_params()
    assert result["trainable_params"] == model.count_params() - 8  # BN moving mean/variance
    per_layer = {row["name"]: row["macs"] for row in result["layers"]}
    assert per_layer == HAND_MACS
    assert result["macs"] == sum(HAND_MACS.values()) == 9610
    assert result["macs_complete"] is True
    assert {row["name"]: row["type"] for row in result["layers"]}["sep"] == "SeparableConv2D"
    assert sum(row["params"] for row in result["layers"]) == model.count_params()


def test_dense_on_sequence_and_attention():
    tokens = keras.Input((10, 8))
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(tokens, tokens)
    outputs = layers.Dense(3, name="proj")(layers.LayerNormalization(name="norm")(attended))
    model = keras.Model(tokens, outputs)
    per_layer = {row["name"]: row["macs"] for row in model_complexity(model)["layers"]}
    # Q, K, V projections 10*8*2*4 each, output 10*(2*4)*8, QK^T and AV 2*10*10*4 each.
    assert per_layer["mha"] == 3 * 640 + 640 + 800 + 800
    assert per_layer["proj"] == 10 * 8 * 3  # Dense on every one of the 10 positions
    assert per_layer["norm"] == 0
    assert model_complexity(model)["params"] == model.count_params()


def test_nested_backbone_is_expanded():
    backbone = _small_conv_net()
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Dense(2, name="head")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    result = model_complexity(model)
    assert result["params"] == model.count_params()
    assert result["macs"] == 9610 + 5 * 2
    names = [row["name"] for row in result["layers"]]
    assert f"{backbone.name}/conv" in names and names[-1] == "head"


def test_unknown_spatial_size_is_flagged():
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    result = model_complexity(keras.Model(inputs, outputs))
    assert result["macs_complete"] is False
    assert result["macs"] == 4 * 2  # only the dense layer is known


def test_tflite_bytes(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(np.zeros(1234, np.uint8).tobytes())
    assert tflite_bytes(path) == 1234
    with pytest.raises(DataError, match="missing.tflite"):
        tflite_bytes(tmp_path / "missing.tflite")
