"""The model's front: NaN replacement, engineered bands and normalisation, as Keras layers.

Training, evaluation, prediction and the exported TFLite model all take the raw 14-band patch and
run these layers first, so there is one code path. Indices are computed on the raw (file) values,
then every channel is standardised. All ops are plain TensorFlow ops that TFLite converts
(comparisons, select, arithmetic, mirror pad, convolution, square root).

Engineered bands (0-based input channels B2=1, B3=2, B4=3, B8=7, B12=11, slope=12, DEM=13):
    ndvi            (B8 - B4) / (B8 + B4)
    nbr             (B8 - B12) / (B8 + B12)
    ndwi            (B3 - B8) / (B3 + B8)
    gray            0.299 B4 + 0.587 B3 + 0.114 B2 (ITU-R BT.601 luma of the RGB bands)
    gray_gradient   Sobel gradient magnitude of gray
    dem_gradient    Sobel gradient magnitude of the DEM
A ratio (a - b) / (a + b) is computed as (a - b) / max(|a| + |b|, floor): on physical,
non-negative reflectances that is exactly the index (wherever a + b >= floor); the distributed
Landslide4Sense bands are standardised and often negative, where the plain formula explodes near
a + b = 0, while this form stays in [-1, 1] and never divides by zero. It also keeps the exported
int8 model sound: its divisor never quantises to zero and its output range is [-1, 1]. The floor
is 5% of the two bands' standard deviations (`band_scale`), so it follows the data's units.
Sobel uses reflected borders.
"""

import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError, DataError
from common.io import write_json
from landslide.config import FEATURE_NAMES  # noqa: E402  (the schema owns the names)
from landslide.data import (
    BAND_NAMES,
    NAN_FILL,
    NUM_BANDS,
    OFFICIAL_MEAN,
    OFFICIAL_STD,
    read_dataset,
    reraise_data_errors,
)

B2, B3, B4, B8, B12, SLOPE, DEM = 1, 2, 3, 7, 11, 12, 13
RATIOS = {"ndvi": (B8, B4), "nbr": (B8, B12), "ndwi": (B3, B8)}
GRAY_WEIGHTS = {B4: 0.299, B3: 0.587, B2: 0.114}
FLOOR_FRACTION = 0.05  # ratio divisor floor, as a fraction of std(a) + std(b)
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def enabled_features(features_cfg):
    """The engineered band names switched on in the `features:` config section, in fixed order."""
    return [name for name in FEATURE_NAMES if features_cfg.get(name, False)]


def num_channels(features_cfg):
    """Channels the network sees: the 14 bands plus the engineered ones."""
    return NUM_BANDS + len(enabled_features(features_cfg))


@keras.saving.register_keras_serializable(package="landslide")
class ReplaceNaN(keras.layers.Layer):
    """Replace NaN values by a constant (x != x is true only for NaN).

    Args:
        value: float, the replacement (default data.NAN_FILL = 0).
    """

    def __init__(self, value=NAN_FILL, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, x):
        return tf.where(tf.not_equal(x, x), tf.constant(self.value, x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "value": self.value}


def _ratio(a, b, floor):
    return (a - b) / tf.maximum(tf.abs(a) + tf.abs(b), floor)


def ratio_floor(band_scale, a, b):
    """The divisor floor of the ratio of bands a and b (0-based)."""
    return max(FLOOR_FRACTION * (band_scale[a] + band_scale[b]), 1e-12)


def _sobel_magnitude(band):
    """Sobel gradient magnitude of (B, H, W, 1) with reflected borders."""
    kernel = np.stack([SOBEL_X, SOBEL_X.T], axis=-1)[:, :, None, :]  # (3, 3, 1, 2): d/dx, d/dy
    padded = tf.pad(band, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    grads = tf.nn.conv2d(padded, tf.constant(kernel, band.dtype), strides=1, padding="VALID")
    return tf.sqrt(tf.reduce_sum(tf.square(grads), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package="landslide")
class BandFeatures(keras.layers.Layer):
    """Append engineered bands to the raw 14-band patch: (B, H, W, 14) -> (B, H, W, 14 + k).

    Args:
        features: list of names from FEATURE_NAMES (order is normalised to FEATURE_NAMES).
        band_scale: list of 14 floats, a typical spread (standard deviation) of each input band,
            which sets the ratios' divisor floor. Defaults to the official Landslide4Sense stds.

    Example:
        BandFeatures(["ndvi", "dem_gradient"])(tf.zeros((1, 128, 128, 14))).shape  # (1, 128, 128, 16)
    """

    def __init__(self, features=(), band_scale=None, **kwargs):
        super().__init__(**kwargs)
        self.band_scale = [float(v) for v in (OFFICIAL_STD if band_scale is None else band_scale)]
        unknown = set(features) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"unknown engineered bands {sorted(unknown)}; known: {FEATURE_NAMES}")
        self.features = [name for name in FEATURE_NAMES if name in features]

    def call(self, x):
        if not self.features:
            return x
        band = {i: x[..., i : i + 1] for i in (B2, B3, B4, B8, B12, DEM)}
        gray = sum(weight * band[i] for i, weight in GRAY_WEIGHTS.items())
        extra = []
        for name in self.features:
            if name in RATIOS:
                a, b = RATIOS[name]
                extra.append(_ratio(band[a], band[b], ratio_floor(self.band_scale, a, b)))
            elif name == "gray":
                extra.append(gray)
            elif name == "gray_gradient":
                extra.append(_sobel_magnitude(gray))
            elif name == "dem_gradient":
                extra.append(_sobel_magnitude(band[DEM]))
        return tf.concat([x, *extra], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + len(self.features))

    def get_config(self):
        return {**super().get_config(), "features": list(self.features), "band_scale": self.band_scale}


@keras.saving.register_keras_serializable(package="landslide")
class Standardize(keras.layers.Layer):
    """Per-channel (x - mean) / std with fixed statistics (stored in the layer's config).

    Args:
        mean, std: lists of floats, one per channel; a std of 0 is treated as 1.
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) if float(v) > 0 else 1.0 for v in std]

    def call(self, x):
        mean = tf.constant(self.mean, x.dtype)
        scale = tf.constant([1.0 / s for s in self.std], x.dtype)
        return (x - mean) * scale

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def front(inputs, features_cfg, mean, std, band_scale=None):
    """Apply the model front to the raw input tensor: NaN -> 0, engineered bands, standardise.

    Args:
        inputs: (B, H, W, 14) raw tensor.
        features_cfg: the `features:` config section (name -> bool).
        mean, std: per-channel statistics for the 14 + k channels.
        band_scale: 14 band spreads for the ratio floors (default: the first 14 of `std`).
    """
    # float32 even under a mixed-precision policy: ratios and DEM gradients need the precision.
    x = ReplaceNaN(name="replace_nan", dtype="float32")(inputs)
    x = BandFeatures(enabled_features(features_cfg), band_scale or std[:NUM_BANDS], name="band_features",
                     dtype="float32")(x)
    return Standardize(mean, std, name="standardize", dtype="float32")(x)


# ------------------------------------------------------------------------------------------
# NumPy reference formulas (used by the tests and for reading the code against the paper).


def numpy_features(image, names, band_scale=OFFICIAL_STD):
    """The engineered bands of one raw patch (H, W, 14) in NumPy, (H, W, k) float32."""
    image = np.asarray(image, np.float64)
    out = []
    gray = sum(w * image[..., i] for i, w in GRAY_WEIGHTS.items())
    for name in [n for n in FEATURE_NAMES if n in names]:
        if name in RATIOS:
            a, b = image[..., RATIOS[name][0]], image[..., RATIOS[name][1]]
            floor = ratio_floor(band_scale, *RATIOS[name])
            out.append((a - b) / np.maximum(np.abs(a) + np.abs(b), floor))
        elif name == "gray":
            out.append(gray)
        else:
            plane = np.pad(gray if name == "gray_gradient" else image[..., DEM], 1, mode="reflect")
            gx = sum(SOBEL_X[r, c] * plane[r : r + image.shape[0], c : c + image.shape[1]]
                     for r in range(3) for c in range(3))
            gy = sum(SOBEL_X.T[r, c] * plane[r : r + image.shape[0], c : c + image.shape[1]]
                     for r in range(3) for c in range(3))
            out.append(np.hypot(gx, gy))
    return np.stack(out, axis=-1).astype(np.float32) if out else np.zeros(image.shape[:2] + (0,), np.float32)


# ---------------------------------------------------------------------------------------------
# Per-channel statistics of the training patches (the 14 bands and the engineered bands).
#
# One streaming pass over the training split: it reads every patch (so every value is checked),
# counts the NaNs replaced, and accumulates per-channel sums in float64. The model's normalisation
# layer is built from the result, and `train` saves it as RUN/stats.json.

log = logging.getLogger(__name__)
STATS_FILE = "stats.json"


def _moments(patches, layer, patch_size, batch_size):
    """Per-channel mean and std of layer(patch) over `patches`, plus NaN counts."""
    total = squares = None
    pixels = nan_values = nan_patches = count = 0
    with reraise_data_errors():
        for image, _, nans in read_dataset(patches, patch_size=patch_size).batch(batch_size):
            x = layer(image).numpy().astype(np.float64)
            x = x.reshape(-1, x.shape[-1])
            total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
            squares = np.square(x).sum(axis=0) if squares is None else squares + np.square(x).sum(axis=0)
            pixels += len(x)
            nans = nans.numpy()
            nan_values += int(nans.sum())
            nan_patches += int((nans > 0).sum())
            count += len(nans)
    if not count:
        raise DataError(f"{patches.folder}: no patches to compute statistics on")
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 0.0))
    return mean, std, count, nan_values, nan_patches


def compute_stats(patches, features_cfg, *, normalization="official", patch_size=128, batch_size=16):
    """Mean and standard deviation of every model input channel over `patches`.

    Engineered bands are computed exactly as the model computes them: with the band spreads of
    the chosen normalisation (official stds, or, for "computed", a first pass over the bands).

    Args:
        patches: PatchFolder.
        features_cfg: the `features:` config section (which engineered bands to include).
        normalization: "official" or "computed" (see `normalisation`).

    Returns:
        dict: channels (names), mean, std (lists of floats, 14 + k), band_scale (14 floats),
        patches, nan_values, nan_patches.
    """
    names = enabled_features(features_cfg)
    band_scale = list(OFFICIAL_STD)
    if normalization == "computed" and names:
        band_scale = _moments(patches, BandFeatures([]), patch_size, batch_size)[1].tolist()
    elif normalization not in ("official", "computed"):
        raise ConfigError(f"config key 'data.normalization' must be official or computed, got {normalization!r}")
    mean, std, count, nan_values, nan_patches = _moments(patches, BandFeatures(names, band_scale), patch_size,
                                                         batch_size)
    if nan_values:
        log.warning("%s: replaced %d NaN values in %d of %d patches by 0", patches.folder, nan_values, nan_patches, count)
    return {
        "channels": BAND_NAMES + names,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "band_scale": band_scale,
        "patches": count,
        "nan_values": nan_values,
        "nan_patches": nan_patches,
    }


def normalisation(stats, mode):
    """The (mean, std) lists the model standardises with.

    mode: "official" (the challenge's statistics for the 14 bands, computed ones for the
    engineered bands) or "computed" (all from `stats`).
    """
    mean, std = list(stats["mean"]), list(stats["std"])
    if mode == "official":
        mean[: len(OFFICIAL_MEAN)] = OFFICIAL_MEAN
        std[: len(OFFICIAL_STD)] = OFFICIAL_STD
    elif mode != "computed":
        raise ConfigError(f"config key 'data.normalization' must be official or computed, got {mode!r}")
    return mean, std


def save_stats(stats, path):
    write_json(path, stats)


def load_stats(path):
    return json.loads(Path(path).read_text())
