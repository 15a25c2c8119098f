"""common/export/tflm.py (the mcu target's TFLite Micro side): int8-in/int8-out export checked in TFLite Micro, C array, refusal, board fit.

Tiny models built here (the tiny landslide model at 32x32, a model with an op TFLite Micro lacks),
real conversion and a real TFLM run. The asc student's mcu export through the command line, its C
array and front end: tests/asc/test_edge.py.
"""


import numpy as np
import pytest
import tf_keras as keras

from common.errors import ExportError
from common.export.tflm import (
    board_fit,
    layer_of,
    resolver_method,
)
from tests.landslide.conftest import ROOT


def test_tiny_landslide_runs_in_tflm_per_pixel(tmp_path):
    """The tiny full model (engineered bands, residual blocks, attention, three heads) at 32x32:
    its Sobel-magnitude SQRT stays float (TFLM has no int8 SQRT), the rest is int8."""
    from common.config import load_config
    from common.export.tflm import export_mcu
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
    section = export_mcu(inference, x[:8], tmp_path, heldout=x[8:])
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
    from common.export.tflm import export_mcu

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
