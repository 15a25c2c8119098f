"""common/mcu.py: int8-in/int8-out export checked in TFLite Micro, C array, refusal, board fit.

Tiny models built here (the asc student, the tiny landslide model at 32x32, a model with an op
TFLite Micro lacks), real conversion and a real TFLM run.
"""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import tf_keras as keras

from common.errors import ExportError
from common.mcu import (
    C_HEADER_NAME,
    C_SOURCE_NAME,
    MCU_TFLITE_NAME,
    board_fit,
    layer_of,
    parse_c_array,
    resolver_method,
)
from tests.landslide.conftest import ROOT


@pytest.fixture(scope="module")
def asc_export(tmp_path_factory):
    """A tiny asc student trained a few steps on class-dependent noise, exported for mcu."""
    from asc.models import build_model
    from common.mcu import export_mcu

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.arange(96) % 4
    x = rng.uniform(-1, 1, (96, 32, 24, 3)).astype(np.float32) * 0.3
    for c in range(4):  # class c: a bright band of rows
        x[y == c, c * 8:(c + 1) * 8] += 0.7
    model = build_model((32, 24, 3), 4, {"kind": "student", "widths": [8, 16], "dropout": 0.0,
                                          "bn_momentum": 0.9, "embedding_dim": 0}, ["logmel", "gammatone", "cqt"])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], batch_size=16, epochs=15, verbose=0)
    out = tmp_path_factory.mktemp("mcu_asc")
    (out / "export_report.json").write_text(json.dumps({"tflite_bytes": 1}))  # the edge export's report
    accuracy = lambda labels, probs: float(np.mean(probs.argmax(-1) == labels))  # noqa: E731
    section = export_mcu(model, x[:64], out, heldout=x[64:], heldout_labels=y[64:], metric=accuracy,
                         metric_name="accuracy", labels=["a", "b", "c", "d"])
    return out, section, model


def test_asc_student_runs_in_tflm_and_agrees(asc_export):
    out, section, _ = asc_export
    assert section["input"]["dtype"] == "int8" and section["output"]["dtype"] == "int8"
    assert section["input"]["shape"] == [1, 32, 24, 3] and section["output"]["shape"] == [1, 4]
    assert section["input"]["scale"] > 0 and -128 <= section["input"]["zero_point"] <= 127
    # 32 held-out examples. Measured over seeds 0-3 with oneDNN's AVX-512 and AVX2-only kernels:
    # agreement with Keras 0.969-1.0 (0 or 1 example flips; the old bound 0.95 allowed exactly one),
    # with LiteRT 1.0, max_abs_diff <= 0.017, metrics within one example (0.031). The bounds allow 3.
    assert section["agreement_keras"] >= 0.9, section
    assert section["agreement_litert"] >= 0.9, section
    assert section["max_abs_diff_keras"] < 0.2
    assert section["mcu_metric"] == pytest.approx(section["keras_metric"], abs=0.1)
    assert section["float_ops"] == []  # fully integer
    assert 0 < section["arena_bytes"] <= section["arena_recommended_bytes"]
    assert section["flash_bytes"] == (out / MCU_TFLITE_NAME).stat().st_size
    assert "CONV_2D" in section["ops"] and "DEPTHWISE_CONV_2D" in section["ops"]
    report = json.loads((out / "export_report.json").read_text())
    assert report["tflite_bytes"] == 1 and report["mcu"]["arena_bytes"] == section["arena_bytes"]
    fits = {t["name"]: t["fits"] for t in section["targets"]}
    assert fits == {"cortex-m4": True, "cortex-m7": True, "esp32-s3": True}


def test_c_array_holds_the_model(asc_export):
    out, section, _ = asc_export
    source = (out / C_SOURCE_NAME).read_text()
    header = (out / C_HEADER_NAME).read_text()
    model_bytes = (out / MCU_TFLITE_NAME).read_bytes()
    assert parse_c_array(source) == model_bytes
    assert "alignas(16) const unsigned char g_model_int8[]" in source
    assert f"#define MODEL_INT8_LEN {len(model_bytes)}" in header
    assert f"#define MODEL_INT8_ARENA_SIZE {section['arena_recommended_bytes']}" in header
    assert f"#define MODEL_INT8_INPUT_ZERO_POINT {section['input']['zero_point']}" in header
    scale = float(re.search(r"MODEL_INT8_OUTPUT_SCALE ([0-9.e-]+)f", header).group(1))
    assert scale == pytest.approx(section["output"]["scale"])
    assert '{"a", "b", "c", "d"}' in source
    assert "(resolver).AddDepthwiseConv2D();" in header
    if shutil.which("g++"):  # the generated C++ compiles
        subprocess.run(["g++", "-std=c++11", "-c", str(out / C_SOURCE_NAME), "-o", str(out / "model.o")],
                       check=True, capture_output=True)


def test_tiny_landslide_runs_in_tflm_per_pixel(tmp_path):
    """The tiny full model (engineered bands, residual blocks, attention, three heads) at 32x32:
    its Sobel-magnitude SQRT stays float (TFLM has no int8 SQRT), the rest is int8."""
    from common.config import load_config
    from common.mcu import export_mcu
    from landslide.config import DEFAULTS
    from landslide.features import num_channels
    from landslide.models import build_models, compile_training_model
    from landslide.sample import make_patch

    keras.utils.set_random_seed(0)
    cfg = load_config(ROOT / "configs" / "landslide" / "tiny.yaml", ["data.patch_size=32"], defaults=DEFAULTS)
    channels = num_channels(cfg["features"])
    training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    compile_training_model(training, cfg, keras.optimizers.Adam(0.01))
    training.run_eagerly = True
    rng = np.random.default_rng(0)
    pairs = [make_patch(rng, 32) for _ in range(16)]
    x = np.stack([p[0] for p in pairs]).astype(np.float32)
    y = np.stack([p[1] for p in pairs])[..., None].astype(np.float32)
    training.fit(np.nan_to_num(x[:8]), y[:8], batch_size=4, epochs=6, verbose=0)
    x[8, :3, :3, 2] = np.nan  # NaNs on the device: quantized as 0.0
    section = export_mcu(inference, x[:8], tmp_path, heldout=x[8:], update_report=False)
    # Shares of the 8 x 32 x 32 held-out pixels. TFLM against LiteRT (one int8 file, two runtimes):
    # measured 0.972-0.993 over seeds 0-3 with oneDNN's AVX-512 kernels, its AVX2-only kernels and
    # oneDNN off. int8 against the float Keras model depends on how the 12 training steps went, which
    # the CPU's float kernels change: at this seed 0.959 (AVX-512), 0.953 (AVX2-only kernels), 0.946
    # (oneDNN off), 0.945 (an AVX2-only EPYC: the old bound 0.95 failed there); over seeds 0-3
    # 0.78-0.96. Both bounds sit below the lowest value measured.
    assert section["agreement_litert"] >= 0.93, section
    assert section["agreement_keras"] >= 0.75, section
    assert section["output"]["shape"] == [1, 32, 32, 1]
    assert "SQRT" in section["float_ops"] and section["float_layers"] == ["band_features"]
    assert {"BATCH_MATMUL", "RESIZE_BILINEAR"} <= set(section["ops"])
    assert not (tmp_path / "export_report.json").exists()


def test_operator_tflm_lacks_is_refused_naming_op_and_layer(tmp_path):
    from common.mcu import export_mcu

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = keras.layers.Activation("gelu", name="gelu_act")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(h)))
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32)
    out = tmp_path / "out"
    with pytest.raises(ExportError) as err:
        export_mcu(model, x, out)
    assert str(err.value) == (f"{out}: TFLite Micro cannot run operator GELU (from Keras layer 'gelu_act'): "
                              "TFLM has no kernel for it; nothing written")
    assert not out.exists()


def test_board_fit_and_helpers():
    rows = {r["name"]: r for r in board_fit(150_000, 1_400_000)}
    assert not rows["cortex-m4"]["fits"] and not rows["cortex-m7"]["fits"]
    assert rows["esp32-s3"]["fits"] and rows["esp32-s3"]["arena_in"] == "psram"
    small = board_fit(100_000, 100_000, [{"name": "tiny", "ram_bytes": 64_000, "flash_bytes": 256_000}])
    assert small[0]["fits_flash"] and small[0]["arena_in"] is None and not small[0]["fits"]
    assert resolver_method("CONV_2D") == "AddConv2D"
    assert resolver_method("MAX_POOL_2D") == "AddMaxPool2D"
    assert resolver_method("BATCH_MATMUL") == "AddBatchMatMul"
    names = {"enc1_conv1", "enc1_act1", "band_features"}
    assert layer_of("unet/enc1_act1/Relu;unet/enc1_conv1/Conv2D", names) == "enc1_act1"
    assert layer_of("unet/band_features/Sqrt", names) == "band_features"
    assert layer_of("tfl.quantize", names) is None
