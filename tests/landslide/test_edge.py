"""The edge runtime (`predict --tflite`): same files as the Keras `predict`, masks that agree with
it, and not one TensorFlow import on the way."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from common.errors import ConfigError, DataError
from tests.landslide.conftest import ROOT

AGREEMENT = 0.95


@pytest.fixture(scope="module")
def tflite_model(tiny_run, tmp_path_factory):
    """The tiny run's int8 TFLite model: the one test_cli exported if it ran first (the conversion
    takes most of this file's time), else exported here by post-training quantization."""
    model = tmp_path_factory.mktemp("edge") / "model_int8.tflite"
    if (tiny_run / "model_int8.tflite").is_file():
        shutil.copy(tiny_run / "model_int8.tflite", model)
        return model
    from common import runner
    from landslide.task import LandslideTask

    run = model.parent / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "tb"))
    report = runner.export(LandslideTask(), run, overrides=["export.mode=ptq", "export.calibration_examples=8"])
    assert report["quantization"] == "ptq"
    shutil.copy(run / "model_int8.tflite", model)
    return model


@pytest.fixture(scope="module")
def scene(sample_root, tmp_path_factory):
    """A 170 x 200 pixel, 14-band GeoTIFF stitched from sample patches, with a NaN (nodata) corner."""
    import rasterio
    from rasterio.transform import from_origin

    from landslide import data as D

    images = [D.read_image(path)[0] for path in sorted((sample_root / "TrainData" / "img").glob("*.h5"))[:4]]
    pixels = np.concatenate([np.concatenate(images[:2], 1), np.concatenate(images[2:], 1)], 0)[:170, :200]
    pixels[:20, :30] = np.nan
    path = tmp_path_factory.mktemp("scene") / "valley.tif"
    profile = {"driver": "GTiff", "width": 200, "height": 170, "count": 14, "dtype": "float32",
               "crs": "EPSG:32645", "transform": from_origin(500000, 3100000, 10, 10)}
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels.transpose(2, 0, 1))
    return path


@pytest.fixture(scope="module")
def edge_output(tflite_model, sample_root, scene, tmp_path_factory):
    """`predict --tflite` in a fresh interpreter, which then reports whether tensorflow was imported;
    then `predict --tflite auto --run RUN` on a run with two exported files (the int8 file twice:
    its timing and choice are what is tested, into OUT/auto)."""
    out = tmp_path_factory.mktemp("edge_pred")
    run = tmp_path_factory.mktemp("edge_auto")
    for name in ("model_int8.tflite", "model_weights8.tflite"):
        shutil.copy(tflite_model, run / name)
    code = (
        "import sys\n"
        "from common.cli import main\n"
        "from landslide.task import LandslideTask\n"
        f"main(LandslideTask(), ['predict', '--tflite', {str(tflite_model)!r}, '--data', {str(sample_root / 'TestData')!r}, "
        f"{str(scene)!r}, '--out', {str(out)!r}, '--geojson'])\n"
        f"main(LandslideTask(), ['predict', '--tflite', 'auto', '--run', {str(run)!r}, "
        f"{str(sample_root / 'TestData')!r}, '--out', {str(out / 'auto')!r}])\n"
        "print('tensorflow modules:', sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')[:3])\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def _masks(folder):
    masks = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path) as handle:
            assert list(handle) == ["mask"]
            masks[path.name] = handle["mask"][()]
    return masks


def test_edge_predict_never_imports_tensorflow(edge_output):
    out, stdout = edge_output
    assert "tensorflow modules: []" in stdout, stdout
    assert "wrote 8 masks and 1 scene maps" in stdout


def test_predict_tflite_auto_picks_one_exported_file(edge_output):
    """Both files are the same model, so either may win; the choice is said, remembered, and its
    masks are the int8 file's masks."""
    import json

    out, stdout = edge_output
    chosen = [line for line in stdout.splitlines() if "the fastest of the run's exported files" in line]
    assert len(chosen) == 1 and "timed now, remembered in" in chosen[0], stdout
    assert "model_int8.tflite" in chosen[0] and "model_weights8.tflite" in chosen[0]
    cache = Path(chosen[0].split("remembered in ", 1)[1].rstrip(")"))
    entry = next(iter(json.loads(cache.read_text())["entries"].values()))
    assert entry["file"] in chosen[0] and entry["batch"] == 8 and sorted(entry["ms_per_example"]) == [
        "model_int8.tflite", "model_weights8.tflite"]
    assert f"wrote 8 masks to {out / 'auto'}" in stdout
    masks, auto = _masks(out), _masks(out / "auto")
    assert list(auto) == list(masks) and all((auto[name] == masks[name]).all() for name in auto)


def test_edge_masks_match_keras_predict(edge_output, tiny_run, sample_root, tmp_path):
    out, _ = edge_output
    _keras_predict(tiny_run, [sample_root / "TestData"], tmp_path)
    edge, keras = _masks(out), _masks(tmp_path)
    assert list(edge) == list(keras) == [f"mask_{i}.h5" for i in range(1, 9)]
    for name in keras:
        assert edge[name].shape == keras[name].shape == (128, 128) and edge[name].dtype == keras[name].dtype == np.uint8
    agreement = np.mean(np.stack(list(edge.values())) == np.stack(list(keras.values())))
    assert agreement >= AGREEMENT, agreement
    assert 0 < np.mean(np.stack(list(edge.values()))) < 0.5  # the model finds landslides, not everything


def test_edge_scene_map_matches_keras(edge_output, tiny_run, scene, tmp_path):
    import json

    import rasterio

    out, _ = edge_output
    _keras_predict(tiny_run, [scene], tmp_path, "--geojson")
    with rasterio.open(out / "valley_landslide.tif") as edge, rasterio.open(tmp_path / "valley_landslide.tif") as keras:
        assert edge.crs == keras.crs and edge.transform == keras.transform and edge.nodata == 255
        edge_map, keras_map = edge.read(1), keras.read(1)
    assert (edge_map[:20, :30] == 255).all() and (edge_map == 255).sum() == 20 * 30  # nodata stays nodata
    assert np.mean(edge_map == keras_map) >= AGREEMENT
    polygons = json.loads((out / "valley_landslide.geojson").read_text())
    assert polygons["type"] == "FeatureCollection" and polygons["features"]
    assert all(feature["properties"]["area_m2"] >= 100 for feature in polygons["features"])  # 10 m pixels


def _keras_predict(run, inputs, out, *flags):
    from common.cli import main
    from landslide.task import LandslideTask

    main(LandslideTask(), ["predict", "--run", str(run), *map(str, inputs), "--out", str(out), "--overwrite", *flags])


def test_predict_needs_exactly_one_model(tflite_model, sample_root, tmp_path):
    from common.cli import main
    from landslide.task import LandslideTask

    with pytest.raises(ConfigError, match="either --run"):
        main(LandslideTask(), ["predict", "--data", str(sample_root / "TestData"), "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="--tflite auto: give --run RUN"):
        main(LandslideTask(), ["predict", "--tflite", "auto", str(sample_root / "TestData"), "--out", str(tmp_path)])
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match="bad.tflite"):
        main(LandslideTask(), ["predict", "--tflite", str(bad), "--data", str(sample_root / "TestData"),
                               "--out", str(tmp_path / "new")])


def test_profile_tflite_times_every_op_and_names_xnnpack_ones(tflite_model, tiny_run, tmp_path):
    import json

    from benchmarks.profile_tflite import main

    assert main([str(tflite_model), "--batch", "2", "--threads", "1", "--repeats", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "model_int8_b2_t1.json").read_text())
    ops = report["ops"]
    assert [op["index"] for op in ops] == list(range(len(ops))) and len(ops) > 10
    assert all(op["ms"] > 0 and op["builtin_ms"] > 0 for op in ops)
    assert all(op["output_shape"][0] == 2 for op in ops if op["op"] == "CONV_2D")  # the batch asked for
    by_type = report["by_type"]
    # The int8 U-Net runs in XNNPACK; the front's NaN replacement (x != x, then a select) is float
    # and boolean, which XNNPACK does not take.
    assert all(by_type[name]["xnnpack"] == by_type[name]["count"] > 0 for name in ("CONV_2D", "RESIZE_BILINEAR"))
    assert by_type["NOT_EQUAL"]["xnnpack"] == by_type["SELECT_V2"]["xnnpack"] == 0
    assert sum(entry["count"] for entry in by_type.values()) == len(ops)
    assert abs(sum(entry["share"] for entry in by_type.values()) - 1) < 1e-6
    assert report["whole_ms"] > 0 and report["machine"]["cores"] >= 1
    text = (tmp_path / "model_int8_b2_t1.md").read_text()
    assert "\nCPU: " in text and "| CONV_2D |" in text
    # The multiply-accumulates it reads off the weight tensors are Keras' count, times the batch
    # (exactly, 10,098,835,456 per patch, for unet_ce at width 1; this tiny model's attention
    # projections are counted a little differently by the two).
    from common.config import load_config
    from landslide.config import DEFAULTS
    from landslide.task import model_summary

    keras_macs = model_summary(load_config(tiny_run / "config.yaml", [], defaults=DEFAULTS))["macs"]
    assert abs(sum(entry["macs"] for entry in by_type.values()) / (2 * keras_macs) - 1) < 0.02


@pytest.mark.slow  # 1-1.5 min on 2 shared cores: make test-all (the asc run and the points task cover make test)
def test_gpu_and_weights8_targets_follow_keras(tiny_run, tmp_path):
    from landslide.task import LandslideTask
    from tests.export_checks import check_float_targets

    reports = check_float_targets(LandslideTask(), tiny_run, tmp_path)
    assert reports["gpu"]["quantization"] == "float16 weights"


def test_authors_front_runs_on_the_host_beside_the_int8_model(tmp_path):
    """A tiny RAU-Net (4 filters, squeeze-excitation, the 1x head) with every engineered channel,
    the authors' ratio form and raw values, exported to int8 the way `export` does it: the front
    is cut off (split_at), computed in numpy beside the .tflite (model_int8.front.json), and
    `load_tflite` puts it back, so the edge model takes the raw 14 bands. About 20 s on an idle
    2-core machine, most of it the converter on the RAU-Net graph (twice)."""
    import tensorflow as tf

    from common.config import load_config
    from common.export import ExportJob, ExportReport, run_export
    from common.export.edge import EDGE
    from common.export.graph import split_at
    from common.tflite_runtime import FrontedModel, TFLiteModel
    from landslide import edge
    from landslide.config import DEFAULTS, FEATURE_NAMES
    from landslide.features import num_channels
    from landslide.models import build_models
    from landslide.sample import make_patch
    from landslide.task import LandslideTask

    cfg = load_config(ROOT / "configs" / "landslide" / "paper1" / "authors_logs.yaml",
                      ["model.filters=4", "data.patch_size=32", "model.head_scales=[1.0]", "model.head_weights=[1.0]",
                       *(f"features.{n}=true" for n in FEATURE_NAMES)],
                      defaults=DEFAULTS)
    channels = num_channels(cfg["features"])
    assert channels == 14 + 3 + 10 and not edge.int8_front(cfg)
    _, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    rng = np.random.default_rng(0)
    x = np.stack([make_patch(rng, 32)[0] for _ in range(8)])
    x[0, 3, 4, 5] = np.nan  # a missing value: 0 on both sides
    expected = inference(np.nan_to_num(x)).numpy()

    layer, spec = LandslideTask().host_front(cfg, inference)
    assert layer == "band_features" and spec["mean"] is None and spec["options"]["ratio"] == "authors"
    front, body = split_at(inference, layer)
    np.testing.assert_allclose(body(front(np.nan_to_num(x))).numpy(), expected, atol=1e-5)
    z = edge.numpy_front(x, spec)
    # Float parity of the whole edge path: numpy front + the body as a float .tflite = Keras.
    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "body.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(body).convert())
    floated = FrontedModel(lambda raw: edge.numpy_front(raw, spec), TFLiteModel(tmp_path / "float" / "body.tflite"),
                           (32, 32, 14))
    # float32 on both sides, different kernels: an 8-bit grey level may differ by one where 255 x
    # lands within float rounding of an integer, moving a probability by far less than 0.01.
    assert np.abs(floated.predict(x) - expected).max() < 0.01
    shutil.rmtree(tmp_path / "float")
    job = ExportJob(model=body, out_dir=tmp_path, calibration=z, heldout=z, settings={"mode": "ptq"},
                    host_front=spec)
    report = run_export(EDGE, job, ExportReport(tmp_path / "export_report.json"))
    path = tmp_path / "model_int8.tflite"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json", "model_int8.front.json",
                                                          "model_int8.tflite"]
    # int8 inside but for SELU's ELU, which the converter leaves float (between QUANTIZE ops).
    assert report["input_dtype"] == "float32" and report["float_ops"] == ["ELU"]

    model = edge.load_tflite(path)
    assert isinstance(model, FrontedModel) and model.input_shape == (32, 32, 14)
    got = model.predict(x)
    np.testing.assert_array_equal(got, TFLiteModel(path).predict(z))
    assert np.isfinite(got).all() and 0.0 <= got.min() and got.max() <= 1.0
    # (How closely int8 follows Keras is a trained model's question: the slow test below.)

    (tmp_path / "model_int8.tflite").write_bytes(path.read_bytes() + b"\0")  # another model file
    with pytest.raises(DataError, match="model_int8.front.json: belongs to another export"):
        edge.load_tflite(path)
    # Exported again without a host front (a one-layer model: the conversion is what costs): the
    # old front file goes with the old model.
    import tf_keras as keras

    inputs = keras.Input((32, 32, 14))
    plain = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    clean = np.nan_to_num(x)
    job = ExportJob(model=plain, out_dir=tmp_path, calibration=clean, heldout=clean, settings={"mode": "ptq"})
    run_export(EDGE, job, ExportReport(tmp_path / "export_report.json"))
    assert not (tmp_path / "model_int8.front.json").exists()
    assert not isinstance(edge.load_tflite(path), FrontedModel)


@pytest.mark.slow  # about 1.5 min on 2 shared cores: make test-all
def test_trained_model_with_the_authors_front_follows_keras_in_int8(sample_root, tmp_path):
    """The whole path a user takes: train a tiny RAU-Net on the authors' 23 channels, export it
    (front on the host), `predict --tflite` on raw patches."""
    import json

    from tests.landslide.conftest import run_cli

    run = tmp_path / "run"
    run_cli("train", "--config", ROOT / "configs" / "landslide" / "paper1" / "authors_logs.yaml", "--data", sample_root,
            "--out", run, *(f"--set={s}" for s in (
                "model.filters=4", "data.split=holdout", "data.val_fraction=0.25", "train.epochs=4",
                "train.batch_size=4", "train.schedule=constant", "train.lr=0.01", "train.verbose=0")))
    said = run_cli("export", "--run", run, "--set", "export.mode=ptq", "--set", "export.calibration_examples=16").stdout
    assert "runs on the host (numpy), beside the .tflite" in said
    report = json.loads((run / "export_report.json").read_text())
    # Measured: agreement 0.956 on the 43-patch sample and 0.859 on this 24-patch one (a tiny model
    # four epochs in, many probabilities near 0.5; the 40-filter model: 0.979). The bounds say
    # int8 follows Keras, with room for other CPUs.
    assert report["agreement"] >= 0.8 and abs(report["keras_metric"] - report["tflite_metric"]) <= 0.1, report
    run_cli("predict", "--tflite", run / "model_int8.tflite", "--data", sample_root / "TestData", "--out", tmp_path / "edge")
    assert len(list((tmp_path / "edge").glob("mask_*.h5"))) == 8


def test_unet_ce_onnx_copy_masks_follow_the_int8_tflite(sample_root, tmp_path):
    """unet_ce (convolutions, pooling, bilinear up-sampling, concatenation, the NaN and
    standardisation front) converts whole: the export writes model_int8.onnx, it agrees with
    Keras like the .tflite, and `predict --tflite RUN/model_int8.onnx` writes masks that agree with the .tflite's
    (a tiny model trained for 4 epochs: many pixels lie near 0.5)."""
    import json

    from tests.landslide.conftest import run_cli

    run = tmp_path / "run"
    run_cli("train", "--config", ROOT / "configs" / "landslide" / "unet_ce.yaml", "--data", sample_root, "--out", run,
            "--set", "model.width=0.0625", "--set", "train.epochs=4")
    stdout = run_cli("export", "--run", run, "--mode", "ptq").stdout
    assert f"{run / 'model_int8.onnx'}: the int8 model for ONNX Runtime" in stdout, stdout
    report = json.loads((run / "export_report.json").read_text())
    assert report["onnx"]["written"] and report["onnx"]["agreement"] >= report["agreement"] - 0.01, report
    images = sample_root / "TestData" / "img"
    run_cli("predict", "--tflite", run / "model_int8.tflite", images, "--out", tmp_path / "tflite")
    run_cli("predict", "--tflite", run / "model_int8.onnx", images, "--out", tmp_path / "onnx")
    tflite, onnx = _masks(tmp_path / "tflite"), _masks(tmp_path / "onnx")
    assert list(onnx) == list(tflite) and len(onnx) == 8
    assert np.mean(np.stack(list(onnx.values())) == np.stack(list(tflite.values()))) >= AGREEMENT
