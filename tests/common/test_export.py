"""Tests of common/export/ (quantize, parity, the edge target through `export_tflite`) and
common/tflite_runtime.py: QAT and PTQ to int8 TFLite, parity, size budget, report, and a LiteRT
runtime that never imports TensorFlow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.errors import DataError, ExportError
from common.export import REPORT_KEYS, export_tflite, quantize
from common.export.__main__ import main
from common.layers import attention_block, residual_conv_block
from common.tflite_runtime import TFLiteModel

layers = keras.layers
ROOT = Path(__file__).resolve().parents[2]
RUN_SLOW = os.environ.get("RUN_SLOW_EXPORT") == "1"


def _seed(seed=0):
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _accuracy(labels, probs):
    return float(np.mean(labels == probs.argmax(-1)))


def _classification_data(shape, classes=3, n=96, seed=0):
    """Images whose class is the channel with the brightest mean (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.uniform(0.0, 1.0, (n, *shape)).astype(np.float32)
    x[np.arange(n), :, :, y] += 0.6
    return x, y


def _tiny_unet(shape=(16, 16, 4)):
    inputs = keras.Input(shape)
    e1 = residual_conv_block(inputs, 8, name="enc1")
    e2 = residual_conv_block(layers.MaxPooling2D(name="pool")(e1), 16, name="enc2")
    up = layers.UpSampling2D(interpolation="bilinear", name="up")(e2)
    d1 = residual_conv_block(layers.Concatenate(name="skip")([up, e1]), 8, name="dec1")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="probs")(d1)
    return keras.Model(inputs, outputs)


def _tiny_classifier(shape=(12, 12, 3), classes=3):
    inputs = keras.Input(shape)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Activation("softmax", name="probs")(layers.Dense(classes, name="logits")(x))
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def ptq_export(tmp_path_factory):
    """A tiny trained classifier exported by PTQ (shared by the cheap tests)."""
    _seed()
    x, y = _classification_data((12, 12, 3))
    model = _tiny_classifier()
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    out = tmp_path_factory.mktemp("ptq") / "model_int8.tflite"
    report = export_tflite(model, x[:32], out, mode="ptq", heldout=x[32:], heldout_labels=y[32:],
                           metric=_accuracy, metric_name="accuracy", labels=["r", "g", "b"])
    return model, x, y, out, report


def test_ptq_export_report_labels_and_parity(ptq_export):
    model, x, y, out, report = ptq_export
    assert out.is_file() and report["tflite_bytes"] == out.stat().st_size
    on_disk = json.loads((out.parent / "export_report.json").read_text())
    assert set(REPORT_KEYS) <= set(on_disk) and on_disk["path"] == str(out)
    assert report["quantization"] == "ptq" and report["fallback_reason"] is None
    assert report["params"] == model.count_params() and report["float_keras_bytes"] == 4 * model.count_params()
    assert report["macs"] == 6 * 6 * 8 * 27 + 8 * 3
    assert report["agreement"] >= 0.9 and report["max_abs_diff"] < 0.1
    assert report["keras_metric"] > 0.8 and abs(report["keras_metric"] - report["tflite_metric"]) <= 0.1
    assert report["input_dtype"] == "float32" and report["output_dtype"] == "float32"
    assert "CONV_2D" not in report["float_ops"]  # the convolution runs in int8
    assert (out.parent / "labels.txt").read_text() == "r\ng\nb\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["export_report.json", "labels.txt", "model_int8.onnx",
                                                            "model_int8.tflite"]
    assert report["onnx"]["written"] and report["onnx"]["agreement"] >= report["agreement"] - 0.01


def test_runtime_matches_and_int8_ops(ptq_export):
    model, x, _, out, _ = ptq_export
    runtime = TFLiteModel(out)
    assert runtime.input_shape == (12, 12, 3)
    probs = runtime.predict(x[:10], batch_size=4)
    assert probs.shape == (10, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, model.predict(x[:10], verbose=0), atol=0.1)
    assert runtime.latency_ms(x[0], repeats=2) > 0
    assert ("CONV_2D", "int8") in runtime.op_dtypes()
    with pytest.raises(DataError, match="expects"):
        runtime.predict(np.zeros((1, 5, 5, 3), np.float32))


def test_runtime_falls_back_when_xnnpack_refuses_the_graph(ptq_export):
    """XNNPACK can refuse a graph only when invoked (EfficientNetB0/NASNetMobile int8)."""
    model, x, _, out, _ = ptq_export
    runtime = TFLiteModel(out)
    expected = runtime.predict(x[:3])
    interpreter = runtime._interpreter

    def refuse():
        raise RuntimeError("failed to create XNNPACK runtime: Node 7 (TfLiteXNNPackDelegate) failed to prepare")

    interpreter.invoke = refuse
    np.testing.assert_allclose(runtime.predict(x[:3]), expected, atol=0.02)
    assert runtime.delegate == "none" and runtime._interpreter is not interpreter


def test_runtime_does_not_import_tensorflow(ptq_export):
    out = ptq_export[3]
    code = (
        "import sys, numpy as np\n"
        "from common.tflite_runtime import TFLiteModel\n"
        f"m = TFLiteModel({str(out)!r})\n"
        "p = m.predict(np.zeros((2, 12, 12, 3), np.float32))\n"
        "assert p.shape == (2, 3), p.shape\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_over_budget_is_refused_and_leaves_nothing(ptq_export, tmp_path):
    model, x, *_ = ptq_export
    out = tmp_path / "model_int8.tflite"
    with pytest.raises(ExportError, match=r"model_int8.tflite: the exported model is .* MB \(\d+ bytes\), over the size budget of 0.001 MB"):
        export_tflite(model, x[:8], out, mode="ptq", size_budget_mb=0.001, labels=["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


def test_qat_failure_falls_back_to_ptq(ptq_export, tmp_path, monkeypatch):
    model, x, y, *_ = ptq_export

    def refuse(model):
        raise RuntimeError("in user code:\n\n    Layer odd:<class 'Odd'> is not supported.")

    monkeypatch.setattr(quantize, "quantize_for_training", refuse)
    report = export_tflite(model, x[:16], tmp_path / "m.tflite", train_data=(x, y), loss="mse")
    assert report["quantization"] == "ptq" and report["agreement"] >= 0.9
    assert report["fallback_reason"] == "QAT failed: RuntimeError: Layer odd:<class 'Odd'> is not supported."
    with pytest.raises(ExportError, match="quantization-aware training failed: RuntimeError: Layer odd"):
        export_tflite(model, x[:16], tmp_path / "q.tflite", mode="qat", train_data=(x, y), loss="mse")
    with pytest.raises(ExportError, match="needs train_data and loss"):
        export_tflite(model, x[:16], tmp_path / "q.tflite", mode="qat", train_data=(x, y))
    with pytest.raises(DataError, match="representative_data"):
        export_tflite(model, x[:0], tmp_path / "e.tflite", mode="ptq")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json", "m.onnx", "m.tflite"]


def test_unfaithful_qat_conversion_falls_back_to_the_closer_ptq(ptq_export, tmp_path, monkeypatch):
    """When the converted QAT model does not follow its fake-quantized Keras model, export also
    converts with PTQ and keeps whichever int8 model is closer to the float one. A learning rate
    of 5 wrecks the QAT copy, so PTQ must win here."""
    model, x, y, *_ = ptq_export
    faithful = export_tflite(model, x[:16], tmp_path / "a" / "m.tflite", train_data=(x, y),
                                    loss="sparse_categorical_crossentropy", qat_steps=2, heldout=x[32:])
    assert faithful["quantization"] == "qat" and faithful["qat_vs_ptq_mean_abs_diff"] is None
    assert faithful["qat_conversion"]["agreement"] >= quantize.FAITHFUL_AGREEMENT
    assert faithful["qat_conversion"]["mean_abs_diff"] <= quantize.FAITHFUL_MEAN_ABS_DIFF

    monkeypatch.setattr(quantize, "conversion_is_faithful", lambda closeness: False)
    out = tmp_path / "b" / "m.tflite"
    report = export_tflite(model, x[:16], out, train_data=(x, y), loss="sparse_categorical_crossentropy",
                                  qat_steps=3, qat_lr=5.0, heldout=x[32:])
    gaps = report["qat_vs_ptq_mean_abs_diff"]
    assert gaps["ptq"] < gaps["qat"] and report["quantization"] == "ptq" and report["float_layers"] == []
    assert report["fallback_reason"].startswith("the QAT int8 model differs from its fake-quantized Keras model")
    assert "PTQ is closer to the float model" in report["fallback_reason"]
    # The file written is the PTQ model the report describes.
    written = TFLiteModel(out).predict(x[32:])
    float_out = model.predict(x[32:], verbose=0)
    assert np.mean(np.abs(written - float_out)) == pytest.approx(gaps["ptq"], abs=1e-6)
    assert report["mean_abs_diff"] == pytest.approx(gaps["ptq"], abs=1e-6)

    # mode="qat" keeps QAT whatever the check says; the report still carries the numbers.
    kept = export_tflite(model, x[:16], tmp_path / "c" / "m.tflite", mode="qat", train_data=(x, y),
                                loss="sparse_categorical_crossentropy", qat_steps=3, qat_lr=5.0, heldout=x[32:])
    assert kept["quantization"] == "qat" and kept["qat_vs_ptq_mean_abs_diff"] is None
    assert set(kept["qat_conversion"]) == {"agreement", "mean_abs_diff", "max_abs_diff"}

def test_command_line(ptq_export, tmp_path, capsys):
    model, x, *_ = ptq_export
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x[:8])
    assert main(["--model", str(tmp_path / "model.keras"), "--representative", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "out" / "m.tflite"), "--mode", "ptq"]) == 0
    assert "agreement" in capsys.readouterr().out and (tmp_path / "out" / "m.tflite").is_file()
    np.save(tmp_path / "bad.npy", np.zeros((4, 7), np.float32))
    with pytest.raises(DataError, match="bad.npy: inputs of shape"):
        main(["--model", str(tmp_path / "model.keras"), "--representative", str(tmp_path / "bad.npy"),
              "--out", str(tmp_path / "b.tflite")])
    result = subprocess.run(
        [sys.executable, "-m", "common.export", "--model", str(tmp_path / "missing.keras"),
         "--representative", str(tmp_path / "x.npy"), "--out", str(tmp_path / "c.tflite")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "missing.keras" in result.stderr


def test_qat_residual_unet_with_attention(tmp_path):
    """One QAT export covers the U-Net layers (Conv/BN/ReLU/Add/bilinear UpSampling2D/Concatenate,
    sigmoid (H, W, 1) output) and the attention block (MultiHeadAttention + LayerNormalization,
    left float by QAT and calibrated to int8 by the converter)."""
    _seed(1)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 16, 16, 4)).astype(np.float32)
    y = (x[..., :1] + x[..., 1:2] > 1.0).astype(np.float32)  # per-pixel landslide mask
    inputs = keras.Input((16, 16, 4))
    e1 = residual_conv_block(inputs, 8, name="enc1")
    e2 = residual_conv_block(layers.MaxPooling2D(name="pool")(e1), 16, name="enc2")
    e2 = attention_block(e2, num_heads=2, key_dim=4, name="attn")
    up = layers.UpSampling2D(interpolation="bilinear", name="up")(e2)
    d1 = residual_conv_block(layers.Concatenate(name="skip")([up, e1]), 8, name="dec1")
    model = keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid", name="probs")(d1))
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    pixel_accuracy = lambda t, p: float(np.mean((p >= 0.5) == (t >= 0.5)))  # noqa: E731
    report = export_tflite(model, train, tmp_path / "unet.tflite", train_data=train,
                           loss="binary_crossentropy", qat_steps=2, heldout=x[48:], heldout_labels=y[48:],
                           metric=pixel_accuracy, metric_name="pixel_accuracy")
    assert report["quantization"] == "qat", report["fallback_reason"]
    assert report["float_layers"] == ["attn_mha", "attn_norm", "attn_pos"]
    assert report["agreement"] >= 0.9  # per pixel, threshold 0.5
    assert report["max_abs_diff"] < 0.2
    assert abs(report["keras_metric"] - report["tflite_metric"]) <= 0.05
    # Calibration quantizes the float-trained attention too: no float op but the output one.
    assert report["float_ops"] == []
    assert TFLiteModel(tmp_path / "unet.tflite").predict(x[:2]).shape == (2, 16, 16, 1)


def test_separable_convolutions_are_quantized(tmp_path):
    """tfmot's registry rejects SeparableConv2D, but its layout transform splits one into a
    depthwise and a 1x1 convolution that it does quantize, BatchNormalization folded. Leaving them
    float (as the registry's answer suggests) put 160 float layers into NASNetMobile's QAT model
    and its int8 file differed from Keras by up to 0.54."""
    _seed(2)
    x, y = _classification_data((12, 12, 3))
    inputs = keras.Input((12, 12, 3))
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    h = layers.Activation("relu", name="stem_relu")(layers.BatchNormalization(name="stem_bn")(h))
    h = layers.ZeroPadding2D(1, name="pad")(h)
    h = layers.SeparableConv2D(8, 3, strides=2, use_bias=False, name="sep")(h)
    h = layers.BatchNormalization(name="sep_bn")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(layers.Activation("relu", name="sep_relu")(h))
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="probs")(h))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)

    qat_model, float_layers = quantize.quantize_for_training(model)
    assert float_layers == []
    assert {"DepthwiseConv2D", "Conv2D"} <= {type(getattr(layer, "layer", layer)).__name__ for layer in qat_model.layers}
    report = export_tflite(model, x[:32], tmp_path / "m.tflite", train_data=(x, y),
                           loss="sparse_categorical_crossentropy", qat_steps=2, heldout=x[32:])
    assert report["quantization"] == "qat" and report["float_layers"] == [] and report["float_ops"] == []
    assert report["delegate"] == "xnnpack"
    assert report["agreement"] >= 0.9 and report["max_abs_diff"] < 0.1, report

def _backbone_classifier(backbone, shape, x, classes=5):
    """A keras.applications backbone nested as one layer, under a 5-class head.

    An untrained backbone with BatchNormalization at its initial statistics (mean 0, variance 1)
    shrinks activations to ~1e-11, and every prediction would be a tie. One forward pass with
    momentum 0 sets each BatchNormalization's statistics to those of `x`, so the outputs differ
    from example to example and the agreement test means something.
    """
    inputs = keras.Input(shape)
    h = layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    h = layers.GlobalAveragePooling2D(name="pool")(backbone(h))
    # Wide enough a head that the untrained model has clear winners (top class ~0.5-0.9).
    init = keras.initializers.RandomNormal(stddev=0.15, seed=0)
    logits = layers.Dense(classes, kernel_initializer=init, name="logits")(h)
    model = keras.Model(inputs, layers.Activation("softmax", name="probs")(logits))
    norms = [m for m in model.submodules if isinstance(m, layers.BatchNormalization)]
    for norm in norms:
        norm.momentum = 0.0
    model(x, training=True)
    for norm in norms:
        norm.momentum = 0.99
    return model


def _export_backbone(backbone, shape, tmp_path, **kwargs):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (48, *shape)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 5, 48), 5)
    model = _backbone_classifier(backbone, shape, x)
    predicted = model.predict(x[8:], verbose=0).argmax(-1)
    assert len(set(predicted.tolist())) > 1, "degenerate test model: one class for every input"
    return export_tflite(model, x[:8], tmp_path / "m.tflite", train_data=(x, y),
                         loss="categorical_crossentropy", qat_steps=1, heldout=x[8:], **kwargs)


@pytest.mark.slow  # about 2 minutes on 2 cores: make test-all
def test_qat_mobilenetv2_nested(tmp_path):
    _seed(3)
    backbone = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    report = _export_backbone(backbone, (96, 96, 3), tmp_path, labels=list("abcde"))
    assert report["quantization"] == "qat", report["fallback_reason"]
    assert report["float_layers"] == ["scale"]  # only the Rescaling; every BN folds into its conv
    # An untrained 53-layer backbone under a random head amplifies int8 noise more than a trained
    # one; measured here: agreement 0.85 on 40 inputs (0.44 before the ranges were calibrated).
    assert report["agreement"] >= 0.8 and report["mean_abs_diff"] < 0.1
    assert report["tflite_bytes"] < report["float_keras_bytes"] / 2
    assert (tmp_path / "labels.txt").read_text().split() == list("abcde")


@pytest.mark.slow
@pytest.mark.skipif(not RUN_SLOW, reason="several minutes on 2 cores; set RUN_SLOW_EXPORT=1")
@pytest.mark.parametrize("name", ["EfficientNetB0", "NASNetMobile"])
def test_qat_or_ptq_other_backbones(name, tmp_path):
    _seed(4)
    backbone = getattr(keras.applications, name)(input_shape=(64, 64, 3), include_top=False, weights=None)
    report = _export_backbone(backbone, (64, 64, 3), tmp_path)
    assert report["quantization"] == "qat" or report["fallback_reason"]
    assert report["agreement"] >= 0.8 and report["mean_abs_diff"] < 0.1


def test_qat_efficientnet_layers(tmp_path):
    """EfficientNet's layers that tfmot has no registry entry for, in a model small enough for the
    default suite: Rescaling + Normalization in the stem, swish, a depthwise convolution and the
    squeeze-excite Multiply. The full EfficientNetB0 export (tests/rsic/test_export.py) takes
    about 2 minutes on 2 cores and runs with `make test-all`."""
    _seed(5)
    x, y = _classification_data((16, 16, 3))
    x = x * 255.0  # raw RGB, as EfficientNet's stem expects
    inputs = keras.Input((16, 16, 3))
    h = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    norm = layers.Normalization(axis=-1, name="normalize")
    norm.adapt(x / 255.0)
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(norm(h))
    h = layers.Activation("swish", name="stem_swish")(layers.BatchNormalization(name="stem_bn")(h))
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.Activation("swish", name="dw_swish")(layers.BatchNormalization(name="dw_bn")(h))
    se = layers.GlobalAveragePooling2D(keepdims=True, name="se_squeeze")(h)
    se = layers.Conv2D(2, 1, activation="swish", name="se_reduce")(se)
    se = layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    h = layers.Multiply(name="se_excite")([h, se])
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="probs")(h))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)

    report = export_tflite(model, x[:32], tmp_path / "m.tflite", train_data=(x, y),
                           loss="sparse_categorical_crossentropy", qat_steps=2, heldout=x[32:])
    assert report["quantization"] == "qat" or report["fallback_reason"], report
    assert report["float_ops"] == []
    assert report["agreement"] >= 0.9 and report["max_abs_diff"] < 0.1, report


def test_triplane_and_cbam_run_in_int8(tmp_path):
    """Paper 4's gates in int8 LiteRT: TriPlaneAttention with mean + max pooling (REDUCE_MAX,
    MEAN, batch matmuls of its attention) and CBAM (channel max/mean, shared MLP, 7x7 gate) convert
    with every op int8 and agree with Keras. The bounds are the other exports' here (agreement
    0.9 of argmaxes, probabilities within 0.2): int8 rounding, not a float difference between CPUs,
    sets them."""
    from common.layers import TriPlaneAttention, cbam_block

    _seed(2)
    rng = np.random.default_rng(2)
    small = rng.uniform(0, 255, (96, 2, 2, 3))
    x = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2).astype(np.float32)  # smooth 8x8 scenes
    y = x.mean(axis=(1, 2)).argmax(axis=1)  # the dominant colour: learnable
    inputs = keras.Input((8, 8, 3))
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(layers.Rescaling(1 / 255.0)(inputs))
    h = cbam_block(h, ratio=0.25, kernel_size=3, name="cbam")
    h = TriPlaneAttention(num_heads=2, key_dim=4, pooling="mean_max", name="tri")(h)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(h)))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], epochs=10, batch_size=16, verbose=0)
    report = export_tflite(model, x[:64], tmp_path / "gates.tflite", mode="ptq", heldout=x[64:])
    assert report["float_ops"] == [], report["float_ops"]
    assert report["agreement"] >= 0.9 and report["max_abs_diff"] < 0.2, report
