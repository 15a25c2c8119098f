"""landslide/features.py: the front layers against the NumPy formulas."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from landslide.data import OFFICIAL_STD
from landslide.features import (
    DEM,
    FEATURE_NAMES,
    GRAY_WEIGHTS,
    RATIOS,
    SOBEL_X,
    BandFeatures,
    ReplaceNaN,
    Standardize,
    enabled_features,
    ratio_floor,
)
from landslide.sample import make_patch


def numpy_features(image, names, band_scale=OFFICIAL_STD):
    """The engineered bands of one raw patch (H, W, 14) in NumPy, (H, W, k) float32: the reference
    formulas (landslide/features.py's docstring) the layer is held to."""
    image = np.asarray(image, np.float64)
    (h, w), out = image.shape[:2], []
    gray = sum(weight * image[..., i] for i, weight in GRAY_WEIGHTS.items())
    for name in [n for n in FEATURE_NAMES if n in names]:
        if name in RATIOS:
            a, b = image[..., RATIOS[name][0]], image[..., RATIOS[name][1]]
            floor = ratio_floor(band_scale, *RATIOS[name])
            out.append((a - b) / np.maximum(np.abs(a) + np.abs(b), floor))
        elif name == "gray":
            out.append(gray)
        else:
            plane = np.pad(gray if name == "gray_gradient" else image[..., DEM], 1, mode="reflect")
            windows = [plane[r : r + h, c : c + w] for r in range(3) for c in range(3)]
            gx = sum(k * window for k, window in zip(SOBEL_X.ravel(), windows))
            gy = sum(k * window for k, window in zip(SOBEL_X.T.ravel(), windows))
            out.append(np.hypot(gx, gy))
    return np.stack(out, axis=-1).astype(np.float32) if out else np.zeros((h, w, 0), np.float32)


@pytest.fixture(scope="module")
def patch():
    image, _ = make_patch(np.random.default_rng(1), 32)
    image = np.nan_to_num(image)
    image[0, 0, [3, 7]] = [0.02, -0.02]  # B8 + B4 = 0 exactly: the guarded ratio
    image[0, 1, [3, 7]] = [0.0, 0.0]
    return image


def test_features_match_numpy(patch):
    layer = BandFeatures(FEATURE_NAMES)
    got = layer(patch[None]).numpy()[0]
    assert got.shape == (32, 32, 14 + 6)
    np.testing.assert_array_equal(got[..., :14], patch)
    np.testing.assert_allclose(got[..., 14:], numpy_features(patch, FEATURE_NAMES), rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all()
    ndvi = got[..., 14]
    assert np.abs(ndvi).max() <= 1.0 + 1e-6
    assert ndvi[0, 0] == pytest.approx(-0.04 / ratio_floor(OFFICIAL_STD, 7, 3), rel=1e-5)  # (B8-B4) / floor
    assert ndvi[0, 1] == 0.0


def test_numpy_formulas_on_positive_reflectances():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.1, 1.0, (8, 8, 14))
    got = numpy_features(image, ["ndvi", "nbr", "ndwi", "gray"])
    b2, b3, b4, b8, b12 = (image[..., i] for i in (1, 2, 3, 7, 11))
    np.testing.assert_allclose(got[..., 0], (b8 - b4) / (b8 + b4), rtol=1e-5)
    np.testing.assert_allclose(got[..., 1], (b8 - b12) / (b8 + b12), rtol=1e-5)
    np.testing.assert_allclose(got[..., 2], (b3 - b8) / (b3 + b8), rtol=1e-5)
    np.testing.assert_allclose(got[..., 3], 0.299 * b4 + 0.587 * b3 + 0.114 * b2, rtol=1e-5)


def test_sobel_of_a_ramp():
    image = np.zeros((16, 16, 14))
    image[..., 13] = np.arange(16)[None, :] * 2.0  # DEM rising 2 per pixel along x
    grad = BandFeatures(["dem_gradient"])(image[None].astype(np.float32)).numpy()[0, ..., 14]
    np.testing.assert_allclose(grad[1:-1, 1:-1], 16.0)  # Sobel gain 8 x slope 2
    np.testing.assert_allclose(grad, numpy_features(image, ["dem_gradient"])[..., 0], rtol=1e-5)


def test_switches_and_order():
    cfg = {name: False for name in FEATURE_NAMES} | {"dem_gradient": True, "ndvi": True}
    assert enabled_features(cfg) == ["ndvi", "dem_gradient"]
    assert BandFeatures(["dem_gradient", "ndvi"]).features == ["ndvi", "dem_gradient"]
    with pytest.raises(ValueError, match="unknown engineered bands"):
        BandFeatures(["evi"])


def test_nan_and_standardize_layers_round_trip(tmp_path, patch):
    raw = patch.copy()
    raw[5, 5, :] = np.nan
    inputs = keras.Input((32, 32, 14))
    x = ReplaceNaN()(inputs)
    x = BandFeatures(["ndvi", "gray_gradient"], band_scale=[2.0] * 14)(x)
    outputs = Standardize(mean=[1.0] * 16, std=[2.0] * 15 + [0.0])(x)
    model = keras.Model(inputs, outputs)
    got = model(raw[None]).numpy()[0]
    assert np.isfinite(got).all()
    filled = np.nan_to_num(raw, nan=0.0)
    expected = np.concatenate([filled, numpy_features(filled, ["ndvi", "gray_gradient"], [2.0] * 14)], -1)
    scale = np.array([2.0] * 15 + [1.0])  # a zero std counts as 1
    np.testing.assert_allclose(got, (expected - 1.0) / scale, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "front.keras")
    loaded = keras.models.load_model(tmp_path / "front.keras")
    np.testing.assert_allclose(loaded(raw[None]).numpy(), got[None], rtol=1e-6)


def test_front_converts_to_tflite_and_handles_nan(patch):
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((32, 32, 14))
    outputs = BandFeatures(FEATURE_NAMES)(ReplaceNaN()(inputs))
    model = keras.Model(inputs, outputs)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    raw = patch.copy()
    raw[3, 4, 2] = np.nan
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], raw[None])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(raw[None]).numpy(), rtol=1e-4, atol=1e-4)
    assert np.isfinite(got).all()


def test_stats_says_the_nan_warning_in_the_project_style(sample_root, tmp_path, capsys):
    """The sample's training patches carry NaNs: `stats` warns once, as `warning: ...` beside its
    progress line (before, Python's logging printed `WARNING:landslide.features:...`)."""
    from landslide.task import LandslideTask
    from tests.cli_runner import off_style_lines, run_in_process

    code, out, err = run_in_process(LandslideTask(), ["stats", "--config", "tiny.yaml", "--data", sample_root,
                                                      "--out", tmp_path], capsys)
    assert code == 0 and off_style_lines(out, err) == [], (out, err)
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "NaN values in" in warnings[0] and "patches by 0" in warnings[0], out
