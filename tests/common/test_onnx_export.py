"""common/export/to_onnx.py and common/onnx_runtime.py: the edge export's int8 model as ONNX for
ONNX Runtime, operator by operator against LiteRT on the same .tflite, the 7-bit weights, the
edge export writing, refusing and removing model_int8.onnx, and `predict`'s choice among files."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError, DataError, ExportError
from common.export import edge as edge_module
from common.export import export_tflite
from common.export.quantize import convert_int8
from common.export.to_onnx import ONNX_NAME, WEIGHT_LIMIT, NotConvertible, convert_tflite, seven_bit
from common.onnx_runtime import OnnxModel, source_sha256
from common.tflite_choice import choose
from common.tflite_runtime import TFLiteModel, open_model

layers = keras.layers
ROOT = Path(__file__).resolve().parents[2]


def _seed(seed=0):
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _both(model, x, tmp_path, name):
    """The int8 .tflite of `model` (calibrated on x) run by LiteRT, and its ONNX copy run by ONNX
    Runtime, on x: (litert outputs, onnx outputs, the converter's report fields)."""
    tflite, _ = convert_int8(model, x)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tflite)
    onnx_bytes, info = convert_tflite(tflite, "sha")
    (tmp_path / f"{name}.onnx").write_bytes(onnx_bytes)
    litert, onnx = TFLiteModel(path, num_threads=2), OnnxModel(tmp_path / f"{name}.onnx", num_threads=2)
    assert onnx.source_sha256 == "sha" and onnx.input_shape == litert.input_shape
    return litert.predict(x, batch_size=4), onnx.predict(x, batch_size=3), info


def _ops_model(kind, shape=(16, 16, 6)):
    inputs = keras.Input(shape)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    if kind == "strided_valid":
        x = layers.Conv2D(12, 3, strides=2, padding="valid", name="valid")(x)
        x = layers.Activation("relu6")(x)
    elif kind == "depthwise":
        x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw")(x)
    elif kind == "pools":
        a = layers.MaxPooling2D(2, name="max")(x)
        b = layers.AveragePooling2D(2, name="avg")(x)
        x = layers.Concatenate(name="cat")([a, layers.Lambda(lambda t: 3.0 * t, name="wider")(b)])
        x = layers.UpSampling2D(2, interpolation="nearest", name="nearest")(x)
    elif kind == "unet":
        down = layers.Conv2D(16, 3, padding="same", activation="relu")(layers.MaxPooling2D(2)(x))
        up = layers.UpSampling2D(2, interpolation="bilinear")(down)
        x = layers.Concatenate()([x, up])
        x = layers.Add()([layers.Conv2D(8, 1)(x), layers.Conv2D(8, 3, padding="same")(x)])
        x = layers.Multiply()([x, layers.Conv2D(8, 1, activation="sigmoid")(x)])
    x = layers.Conv2D(3, 1, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="probs")(x) if kind != "unet" else
                       layers.Activation("sigmoid", name="probs")(x))


@pytest.mark.parametrize("kind", ["strided_valid", "depthwise", "pools", "unet"])
def test_operators_match_litert(kind, tmp_path):
    _seed()
    model = _ops_model(kind)
    x = np.random.default_rng(1).normal(0.0, 1.0, (24, 16, 16, 6)).astype(np.float32)
    litert, onnx, info = _both(model, x, tmp_path, kind)
    assert onnx.shape == litert.shape == model.predict(x, verbose=0).shape and onnx.dtype == np.float32
    # The same int8 arithmetic but for rounding and the 7-bit weights: a few output steps apart
    # (1/256 for softmax and sigmoid outputs), never a different operator.
    assert np.abs(onnx - litert).mean() < 0.01 and np.abs(onnx - litert).max() < 0.1
    assert np.abs(onnx - model.predict(x, verbose=0)).mean() < 0.03
    assert info["conv_channels"] > 0 and 0 <= info["requantized_channels"] <= info["conv_channels"]


def test_nan_inputs_are_replaced_as_in_litert(tmp_path):
    """The landslide front's NaN -> 0 (NOT_EQUAL + SELECT_V2) in ONNX."""
    _seed()
    inputs = keras.Input((8, 8, 3))
    clean = layers.Lambda(lambda t: tf.where(tf.not_equal(t, t), tf.constant(0.0), t))(inputs)  # as landslide
    outputs = layers.Conv2D(2, 3, padding="same", activation="sigmoid")(clean)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(2).normal(0.0, 1.0, (8, 8, 8, 3)).astype(np.float32)
    x_nan = x.copy()
    x_nan[:, :3, :3, 1] = np.nan
    litert, onnx, _ = _both(model, np.concatenate([x, x_nan]), tmp_path, "nan")
    assert np.isfinite(onnx).all() and np.abs(onnx - litert).max() < 0.05


def test_seven_bit_weights():
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (6, 3, 3, 4)).astype(np.int8)
    weights[0] = np.clip(weights[0], -40, 40)  # already within 7 bits: unchanged
    scales = rng.uniform(0.001, 0.01, 6).astype(np.float32)
    small, new_scales, factor = seven_bit(weights, scales)
    assert small.dtype == np.int8 and np.abs(small.astype(int)).max() <= WEIGHT_LIMIT
    np.testing.assert_array_equal(small[0], weights[0])
    assert factor[0] == 1.0 and np.all(factor[1:] > 1.0)
    # The same real weights, within half a new step.
    real, again = weights * scales[:, None, None, None], small * new_scales[:, None, None, None]
    assert np.all(np.abs(real - again) <= 0.5 * new_scales[:, None, None, None] + 1e-7)


def _unmapped_classifier(shape=(8, 8, 3)):
    """A classifier whose global max pool (REDUCE_MAX) the converter does not map."""
    inputs = keras.Input(shape)
    x = layers.GlobalMaxPooling2D()(layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))


def test_an_operator_without_mapping_is_named(tmp_path):
    tflite, _ = convert_int8(_unmapped_classifier(), np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32))
    with pytest.raises(NotConvertible, match="operator REDUCE_MAX has no ONNX mapping"):
        convert_tflite(tflite)


def _classifier(kind, shape=(16, 16, 6), classes=5):
    inputs = keras.Input(shape)
    if kind == "bands":  # asc's shape: channels sliced apart, one head each, heads joined
        heads = []
        for i in range(2):
            band = layers.Lambda(lambda t, i=i: t[..., i:i + 1])(inputs)
            x = layers.Conv2D(8, 3, padding="same", activation="relu")(band)
            heads.append(layers.GlobalAveragePooling2D()(layers.MaxPooling2D(2)(x)))
        joined = layers.Concatenate()(heads)
        x = layers.Multiply()([joined, layers.Dense(16, activation="sigmoid")(joined)])
        x = layers.Lambda(lambda t: t[:, 4:12])(x)
    else:  # rsic's shape: a small MobileNet block, standalone ReLU6, padding
        x = layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
        x = layers.ReLU(6.0)(x)
        x = layers.ZeroPadding2D(1)(x)
        y = layers.DepthwiseConv2D(3, activation="relu")(x)
        x = layers.Add()([layers.Conv2D(8, 1)(y), layers.Cropping2D(1)(x)])
        x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(layers.Dense(12, activation="relu")(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("kind", ["bands", "mobile"])
def test_classifiers_match_litert(kind, tmp_path):
    _seed()
    model = _classifier(kind)
    x = np.random.default_rng(4).uniform(0.0, 1.0, (24, 16, 16, 6)).astype(np.float32)
    litert, onnx, _ = _both(model, x, tmp_path, kind)
    assert onnx.shape == litert.shape == (24, 5)
    assert np.abs(onnx - litert).max() < 0.05 and np.mean(onnx.argmax(-1) == litert.argmax(-1)) >= 0.9


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small trained segmentation model exported by PTQ: model_int8.tflite and .onnx."""
    _seed()
    model = _ops_model("unet")
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (96, 16, 16, 6)).astype(np.float32)
    y = (x[..., :3] > 0.3).astype(np.float32)  # learnable per pixel
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    out = tmp_path_factory.mktemp("onnx") / "model_int8.tflite"
    report = export_tflite(model, x[:48], out, mode="ptq", heldout=x[48:])
    return model, x, out, report


def test_edge_export_writes_the_onnx_copy(exported):
    model, x, out, report = exported
    onnx_path = out.with_name(ONNX_NAME)
    section = report["onnx"]
    assert section["written"] and section["path"] == str(onnx_path) and section["bytes"] == onnx_path.stat().st_size
    assert section["agreement"] >= report["agreement"] - edge_module.ONNX_AGREEMENT_MARGIN
    assert section["agreement"] > 0.95 and section["latency_ms"] > 0 and section["opset"] == 17
    assert json.loads(out.with_name("export_report.json").read_text())["onnx"]["sha256"] == section["sha256"]
    import hashlib

    assert source_sha256(onnx_path) == hashlib.sha256(out.read_bytes()).hexdigest()
    onnx, litert = open_model(onnx_path), open_model(out)
    assert isinstance(onnx, OnnxModel) and isinstance(litert, TFLiteModel)
    diff = np.abs(onnx.predict(x[:5]) - litert.predict(x[:5]))
    assert diff.mean() < 0.01 and diff.max() < 0.25  # a logit step apart at most, where sigmoid is steep


def test_onnx_runtime_does_not_import_tensorflow(exported):
    onnx_path = exported[2].with_name(ONNX_NAME)
    code = ("import sys, numpy as np\n"
            "from common.tflite_runtime import open_model\n"
            f"m = open_model({str(onnx_path)!r}, num_threads=1)\n"
            "p = m.predict(np.zeros((2, 16, 16, 6), np.float32))\n"
            "assert p.shape == (2, 16, 16, 3), p.shape\n"
            "assert 'tensorflow' not in sys.modules and 'onnx' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_onnx_model_errors(exported, tmp_path):
    with pytest.raises(DataError, match="ONNX model file not found"):
        OnnxModel(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(DataError, match=r"bad.onnx: not a readable ONNX model"):
        OnnxModel(tmp_path / "bad.onnx")
    with pytest.raises(DataError, match=r"input of shape \(8, 8, 6\) given, model expects \(16, 16, 6\)"):
        OnnxModel(exported[2].with_name(ONNX_NAME)).predict(np.zeros((1, 8, 8, 6), np.float32))


def test_choice_takes_the_onnx_copy_only_beside_its_tflite(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported[2].parent, run)
    timed = []

    def timer(path, num_threads, batch):
        timed.append(path.name)
        return {"model_int8.tflite": 30.0, ONNX_NAME: 20.0}[path.name]

    path, line = choose(run, batch=8, timer=timer)
    assert path.name == ONNX_NAME and timed == ["model_int8.tflite", ONNX_NAME] and "timed now" in line
    shutil.copy(exported[2].with_name("export_report.json"), run / "model_int8.tflite")  # another export
    timed.clear()
    path, line = choose(run, batch=8, timer=timer)
    assert path.name == "model_int8.tflite" and timed == ["model_int8.tflite"]
    assert f"{ONNX_NAME} left out (converted from another model_int8.tflite)" in line
    (run / "model_int8.tflite").unlink()
    with pytest.raises(DataError, match=f"{ONNX_NAME} is of another export"):
        choose(run, batch=8, timer=timer)


def test_onnx_setting_false_removes_an_earlier_copy_and_true_refuses(exported, tmp_path):
    model, x, out, _ = exported
    target = tmp_path / "model_int8.tflite"
    shutil.copy(out.with_name(ONNX_NAME), tmp_path / ONNX_NAME)
    report = _export(model, x, target, onnx="false")
    assert report["onnx"] == {"written": False, "why": "export.onnx is false"} and not (tmp_path / ONNX_NAME).exists()

    classifier = _unmapped_classifier((16, 16, 6))
    before = target.read_bytes()
    with pytest.raises(ExportError, match=r"model_int8.onnx: not written \(operator .* has no ONNX mapping"):
        _export(classifier, x, target, onnx="true")
    assert target.read_bytes() == before  # a refused export leaves the earlier files
    report = _export(classifier, x, target, onnx="auto")
    assert not report["onnx"]["written"] and "has no ONNX mapping" in report["onnx"]["why"]
    with pytest.raises(ConfigError, match="export.onnx"):
        edge_module.onnx_setting({"onnx": "sometimes"})


def test_a_copy_that_agrees_less_is_not_kept(exported, tmp_path, monkeypatch):
    model, x, *_ = exported
    monkeypatch.setattr(edge_module, "ONNX_AGREEMENT_MARGIN", -1.0)  # no copy could agree enough
    report = _export(model, x, tmp_path / "model_int8.tflite", onnx="auto")
    assert not report["onnx"]["written"] and "agreement with Keras" in report["onnx"]["why"]
    assert report["onnx"]["agreement"] > 0.9 and not (tmp_path / ONNX_NAME).exists()


def _export(model, x, out, onnx):
    """export_tflite with `export.onnx` set (the runner passes the config's export section)."""
    from common.export import ExportJob, ExportReport, run_export
    from common.export.edge import EDGE
    from common.export.parity import Scorer

    job = ExportJob(model=model, out_dir=out.parent, calibration=x[:32], heldout=x[48:], scorer=Scorer(),
                    settings={"mode": "ptq", "onnx": onnx}, file_names={"edge": out.name})
    return run_export(EDGE, job, ExportReport(out.with_name("export_report.json")))


def test_a_file_naming_external_data_is_refused(tmp_path):
    """ONNX Runtime gets the bytes, so a tensor "stored" in another file is never read."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    weights = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    set_external_data(weights, location="secret.bin")
    weights.ClearField("raw_data")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(DataError, match="model.onnx: not a readable ONNX model"):
        OnnxModel(tmp_path / "model.onnx")


def test_profile_onnx_times_every_node(exported, tmp_path):
    from benchmarks.profile_onnx import main

    model = exported[0]
    main([str(exported[2].with_name(ONNX_NAME)), "--batch", "2", "--threads", "1", "--repeats", "2",
          "--out", str(tmp_path)])
    report = json.loads((tmp_path / "model_int8_onnx_b2_t1.json").read_text())
    convolutions = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    conv = report["by_type"]["QLinearConv"]
    assert conv["count"] == len(convolutions) and report["whole_ms"] > 0
    # Multiply-adds from the weights ONNX Runtime packed away: the Keras layers' own count.
    expected = sum(2 * int(np.prod(layer.output_shape[1:])) * int(np.prod(layer.kernel.shape[:-1]))
                   for layer in convolutions)
    assert conv["macs"] == expected
    assert sum(entry["count"] for entry in report["by_type"].values()) == len(report["nodes"])
    assert "| QLinearConv |" in (tmp_path / "model_int8_onnx_b2_t1.md").read_text()


def test_a_converter_fault_costs_only_the_onnx_copy(exported, tmp_path, monkeypatch):
    from common.export import to_onnx

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(to_onnx, "convert_tflite", broken)
    model, x, *_ = exported
    report = _export(model, x, tmp_path / "model_int8.tflite", onnx="auto")
    assert report["onnx"] == {"written": False, "why": "the conversion failed (RuntimeError: boom)"}
    assert (tmp_path / "model_int8.tflite").is_file() and not (tmp_path / ONNX_NAME).exists()
