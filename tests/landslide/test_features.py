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

# Our engineered bands (the authors' have their own tests below).
OURS = ["ndvi", "nbr", "ndwi", "gray", "gray_gradient", "dem_gradient"]


def numpy_features(image, names, band_scale=OFFICIAL_STD):
    """The engineered bands of one raw patch (H, W, 14) in NumPy, (H, W, k) float32: the reference
    formulas (landslide/features.py's docstring) the layer is held to."""
    image = np.asarray(image, np.float64)
    (h, w), out = image.shape[:2], []
    gray = sum(weight * image[..., i] for i, weight in GRAY_WEIGHTS.items())
    for name in [n for n in OURS if n in names]:
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
    layer = BandFeatures(OURS)
    got = layer(patch[None]).numpy()[0]
    assert got.shape == (32, 32, 14 + 6)
    np.testing.assert_array_equal(got[..., :14], patch)
    np.testing.assert_allclose(got[..., 14:], numpy_features(patch, OURS), rtol=1e-5, atol=1e-5)
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
    outputs = BandFeatures(OURS)(ReplaceNaN()(inputs))
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


AUTHORS = ["rgb_minmax", "ndvi", "nbr", "b8_b11_index", "grey_mean", "grey_box_blur", "grey_median_blur"]


def opencv_blur(levels, size):
    """OpenCV `blur` of a uint8 plane, written out: window rows/cols -size//2 .. size-1-size//2,
    BORDER_REFLECT_101 (numpy's "reflect"), rounded half to even."""
    before, after = size // 2, size - 1 - size // 2
    padded = np.pad(levels.astype(np.float64), ((before, after), (before, after)), mode="reflect")
    h, w = levels.shape
    out = np.array([[padded[r : r + size, c : c + size].mean() for c in range(w)] for r in range(h)])
    return np.round(out)


def opencv_median(levels, size):
    """OpenCV `medianBlur` of a uint8 plane, written out: BORDER_REPLICATE (numpy's "edge")."""
    padded = np.pad(levels, size // 2, mode="edge")
    h, w = levels.shape
    return np.array([[np.median(padded[r : r + size, c : c + size]) for c in range(w)] for r in range(h)])


def test_authors_channels_by_hand():
    image = np.zeros((1, 16, 16, 14), np.float32)
    image[0, 0, 0, [3, 7, 10, 11]] = [0.1, 0.3, 0.5, 0.2]  # B4, B8, B11, B12
    image[0, 0, 1, [3, 7]] = [-0.3, 0.1]  # B8 + B4 = -0.2: clipped to 1e-8 as the authors do
    image[0, 2, 3, 1:4] = [0.2, 0.4, 0.9]  # B2, B3, B4: the only bright pixel
    got = BandFeatures(AUTHORS, ratio="authors", box_blur_size=3, median_blur_size=3)(image).numpy()[0]
    assert got.shape == (16, 16, 14 + 3 + 6)
    red, green, blue, ndvi, nbr, index, grey, box, median = np.moveaxis(got[..., 14:], -1, 0)
    assert red[2, 3] == 1.0 and red[0, 1] == 0.0 and red[0, 0] == pytest.approx(0.4 / 1.2)  # (0.1+0.3)/(0.9+0.3)
    assert green[2, 3] == 1.0 and blue[2, 3] == 1.0 and blue[5, 5] == 0.0
    assert ndvi[0, 0] == pytest.approx(0.2 / 0.4) and ndvi[0, 1] == pytest.approx(0.4 / 1e-8, rel=1e-5)
    assert nbr[0, 0] == pytest.approx(0.1 / 0.5) and index[0, 0] == pytest.approx(-0.2 / 0.8)
    assert grey[2, 3] == pytest.approx(0.5) and grey[0, 1] == pytest.approx(-0.1)
    # 8-bit grey: min -0.1 -> 0, max 0.5 -> 255, zero -> int(255 / 6) = 42. The 3x3 box mean at
    # (2, 3) holds 255 and eight 42s: round(591 / 9) = 66; its median is 42.
    assert box[2, 3] * 255 == pytest.approx(66) and median[2, 3] * 255 == pytest.approx(42)
    # (0, 1): grey -0.1 -> 0, beside (0, 0) = 0.1 / 3 -> int(255 * (0.4 / 3) / 0.6) = 56; the top
    # border mirrors row 1 (all 42): (56 + 0 + 42 + 2 * 3 * 42) / 9 = 38.9 -> 39.
    assert median[5, 5] * 255 == pytest.approx(42) and box[0, 1] * 255 == pytest.approx(39)


@pytest.mark.parametrize("box, median", [(10, 15), (4, 5)])
def test_authors_blurs_follow_opencv(box, median):
    rng = np.random.default_rng(box)
    image = rng.uniform(0.0, 1.0, (1, 24, 20, 14)).astype(np.float32)
    got = BandFeatures(["grey_box_blur", "grey_median_blur"], box_blur_size=box,
                       median_blur_size=median)(image).numpy()[0] * 255
    grey = image[0, ..., 1:4].astype(np.float64).mean(-1)
    levels = ((grey - grey.min()) / (grey.max() - grey.min()) * 255).astype(np.uint8)
    # float32 in the layer vs float64 here: a level may land one apart where 255 * x is within
    # ~1e-5 of an integer; allow that at a few pixels, exact elsewhere.
    for channel, expected in ((0, opencv_blur(levels, box)), (1, opencv_median(levels, median))):
        diff = np.abs(np.round(got[..., 14 + channel]) - expected)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.98


def test_normalization_none_feeds_raw_channels():
    from common.config import load_config
    from landslide.config import DEFAULTS
    from landslide.features import front

    cfg = load_config(None, ["data.normalization=none", "features.grey_mean=true"], defaults=DEFAULTS)
    inputs = keras.Input((16, 16, 14))
    model = keras.Model(inputs, front(inputs, cfg, [5.0] * 15, [2.0] * 15))
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 14)).astype(np.float32)
    got = model(x).numpy()
    np.testing.assert_allclose(got[..., :14], x)
    np.testing.assert_allclose(got[..., 14], x[..., 1:4].mean(-1), rtol=1e-5, atol=1e-6)


def test_authors_front_runs_the_same_in_litert(patch):
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((32, 32, 14))
    model = keras.Model(inputs, BandFeatures(FEATURE_NAMES, ratio="authors")(ReplaceNaN()(inputs)))
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], patch[None])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    expected = model(patch[None]).numpy()[0]
    assert got.shape == (32, 32, 14 + 3 + 10)
    # Ratios clipped at 1e-8 reach ~1e8 here (sample bands are often negative): relative bound.
    # The 8-bit blurs may land one level (1/255) apart where float rounding differs.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1 / 255 + 1e-4)


@pytest.mark.parametrize("ratio, normalization", [("authors", "none"), ("floor", "official")])
def test_numpy_front_beside_the_tflite_matches_the_keras_front(patch, ratio, normalization):
    """landslide.edge.numpy_front (what the host computes beside a .tflite without its front)
    against the model's own front layers, every engineered band, a NaN and a constant patch."""
    from common.config import load_config
    from landslide.config import DEFAULTS
    from landslide.edge import front_spec, numpy_front
    from landslide.features import feature_options, front

    cfg = load_config(None, [f"feature_options.ratio={ratio}", f"data.normalization={normalization}",
                             "feature_options.box_blur_size=4", "feature_options.median_blur_size=5",
                             *(f"features.{name}=true" for name in FEATURE_NAMES)], defaults=DEFAULTS)
    channels = 14 + 3 + 10
    mean = np.linspace(-0.5, 0.5, channels).tolist()
    std = np.linspace(0.5, 2.0, channels).tolist()
    inputs = keras.Input((32, 32, 14))
    model = keras.Model(inputs, front(inputs, cfg, mean, std))
    x = np.stack([patch, patch, np.full_like(patch, 0.25)]).astype(np.float32)
    x[1, 5, 6, 2] = np.nan
    options = {key: feature_options(cfg)[key] for key in ("ratio", "box_blur_size", "median_blur_size")}
    spec = front_spec(FEATURE_NAMES, std[:14], options,
                      *((mean, std) if normalization != "none" else (None, None)))
    got, expected = numpy_front(x, spec), model(np.nan_to_num(x)).numpy()
    assert got.shape == expected.shape == (3, 32, 32, channels) and got.dtype == np.float32
    # Same float32 formulas, except that an 8-bit grey level may land one apart (1/255, over the
    # std under standardisation) where 255 x is within float rounding of an integer; the
    # 1e-8-clipped ratios reach ~1e8 here, hence the relative bound.
    blur = [14 + 3 + 7, 14 + 3 + 8]
    np.testing.assert_allclose(np.delete(got, blur, -1), np.delete(expected, blur, -1), rtol=2e-5, atol=2e-5)
    levels = np.abs(got[..., blur] - expected[..., blur]) * (1 if normalization == "none" else np.array(std)[blur])
    assert levels.max() <= 1 / 255 + 1e-5 and (levels < 1e-5).mean() >= 0.98
