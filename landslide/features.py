"""The model's front: NaN replacement, engineered bands and normalisation, as Keras layers.

Training, evaluation, prediction and the exported TFLite model all take the raw 14-band patch and
run these layers first, so there is one code path. Indices are computed on the raw (file) values,
then every channel is standardised.

Engineered bands (0-based input channels B2=1, B3=2, B4=3, B8=7, B12=11, slope=12, DEM=13):
    ndvi            (B8 - B4) / (B8 + B4)
    nbr             (B8 - B12) / (B8 + B12)
    ndwi            (B3 - B8) / (B3 + B8)
    gray            0.299 B4 + 0.587 B3 + 0.114 B2 (ITU-R BT.601 luma of the RGB bands)
    gray_gradient   Sobel gradient magnitude of gray (reflected borders)
    dem_gradient    Sobel gradient magnitude of the DEM (reflected borders)
A ratio (a - b) / (a + b) is computed as (a - b) / max(|a| + |b|, floor): the index itself on
non-negative reflectances, but the distributed bands are standardised and often negative, where
the plain formula explodes near a + b = 0; this form stays in [-1, 1] (sound int8 export too).
The floor is 5% of the two bands' standard deviations (`band_scale`), following the data's units.

Paper 1's authors' channels (their code, on the raw stored values; `feature_options.ratio:
authors` divides the ratios as they do, by max(a + b, 1e-8)):
    rgb_minmax       B4, B3, B2 each min-max scaled over the patch (3 channels)
    b8_b11_index     (B8 - B11) / (B8 + B11)
    grey_mean        (B2 + B3 + B4) / 3
    grey_box_blur    grey min-max scaled to 0..255 and truncated to 8 bits, box-blurred over
                     box_blur_size^2 pixels (OpenCV `blur`: mirrored borders without the edge
                     pixel, window from -k//2 to k - 1 - k//2), rounded, / 255
    grey_median_blur the same 8-bit grey, median over median_blur_size^2 pixels (OpenCV
                     `medianBlur`: replicated borders), / 255; computed as the number of grey
                     levels v in 0..254 with fewer than half the window at or below v, so it
                     is made of pooling and comparisons that TFLite runs.
A constant patch (max = min) divides by 1e-8 instead of 0.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError, DataError
from common.io import write_json
from common.runner import warn
from landslide import data as D
from landslide.config import FEATURE_NAMES  # the schema owns the names
from landslide.data import (  # noqa: F401 - band indices stay importable from here
    AUTHORS_EPS,
    B2,
    B3,
    B4,
    B8,
    B11,
    B12,
    DEM,
    FLOOR_FRACTION,
    GRAY_WEIGHTS,
    RATIOS,
    SLOPE,
    SOBEL_X,
    ratio_floor,
)
from landslide.data import FEATURE_CHANNELS as CHANNELS
from landslide.data import FEATURE_OPTION_DEFAULTS as OPTION_DEFAULTS


def enabled_features(features_cfg):
    """The engineered band names switched on in the `features:` config section, in fixed order."""
    return [name for name in FEATURE_NAMES if features_cfg.get(name, False)]


def num_channels(features_cfg):
    """Channels the network sees: the 14 bands plus the engineered ones."""
    return D.NUM_BANDS + sum(CHANNELS.get(name, 1) for name in enabled_features(features_cfg))


def channel_names(features_cfg):
    """Names of the channels the network sees, in order."""
    names = []
    for name in enabled_features(features_cfg):
        names += ["red_minmax", "green_minmax", "blue_minmax"] if name == "rgb_minmax" else [name]
    return D.BAND_NAMES + names


def _per_patch_minmax(plane):
    """(plane - min) / max(max - min, 1e-8), min and max over each patch: (B, H, W, 1)."""
    low = tf.reduce_min(plane, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(plane, axis=(1, 2), keepdims=True)
    return (plane - low) / tf.maximum(high - low, AUTHORS_EPS)


def grey_levels(grey):
    """The authors' 8-bit grey: per-patch min-max to 0..255, truncated (as numpy's astype(uint8)),
    as float (B, H, W, 1)."""
    return tf.floor(_per_patch_minmax(grey) * 255.0)


def box_blur(levels, size):
    """OpenCV's `blur` of 8-bit levels (B, H, W, 1) over size x size (BORDER_REFLECT_101, anchor
    at size // 2), rounded to levels."""
    before, after = size // 2, size - 1 - size // 2
    padded = tf.pad(levels, [[0, 0], [before, after], [before, after], [0, 0]], mode="REFLECT")
    return tf.round(tf.nn.avg_pool2d(padded, size, 1, "VALID"))


def _replicate_pad(x, pad, axis):
    first = tf.gather(x, [0] * pad, axis=axis)
    last = tf.gather(x, [x.shape[axis] - 1] * pad, axis=axis)
    return tf.concat([first, x, last], axis=axis)


def median_blur(levels, size):
    """OpenCV's `medianBlur` of 8-bit levels (B, H, W, 1) over size x size (odd; replicated
    borders): the count of levels v in 0..254 below which (at or below v) lie fewer than half of
    the window's pixels."""
    if size % 2 == 0:
        raise ConfigError(f"config key 'feature_options.median_blur_size' must be odd, got {size}")
    pad = size // 2
    below = tf.cast(levels <= tf.range(255, dtype=levels.dtype), levels.dtype)  # (B, H, W, 255)
    below = _replicate_pad(_replicate_pad(below, pad, 1), pad, 2)
    share = tf.nn.avg_pool2d(tf.nn.avg_pool2d(below, [size, 1], 1, "VALID"), [1, size], 1, "VALID")
    return tf.reduce_sum(tf.cast(share < 0.5, levels.dtype), axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="landslide")
class ReplaceNaN(keras.layers.Layer):
    """Replace NaN values by a constant `value` (default data.NAN_FILL = 0); x != x only for NaN."""

    def __init__(self, value=D.NAN_FILL, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, x):
        return tf.where(tf.not_equal(x, x), tf.constant(self.value, x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.saving.register_keras_serializable(package="landslide")
class BandFeatures(keras.layers.Layer):
    """Append engineered bands to the raw 14-band patch: (B, H, W, 14) -> (B, H, W, 14 + k).
    `features`: names from FEATURE_NAMES (any order; output in FEATURE_NAMES order); `band_scale`:
    14 band spreads (stds) setting the ratios' divisor floor (default: the official stds);
    `ratio`: "floor" or "authors" (module docstring); the authors' blur sizes in pixels."""

    def __init__(self, features=(), band_scale=None, ratio="floor", box_blur_size=10,
                 median_blur_size=15, **kwargs):
        super().__init__(**kwargs)
        self.band_scale = [float(v) for v in (D.OFFICIAL_STD if band_scale is None else band_scale)]
        unknown = set(features) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"unknown engineered bands {sorted(unknown)}; known: {FEATURE_NAMES}")
        if ratio not in ("floor", "authors"):
            raise ConfigError(f"config key 'feature_options.ratio' must be floor or authors, "
                              f"got {ratio!r}")
        self.features = [name for name in FEATURE_NAMES if name in features]
        self.ratio, self.box_blur_size = ratio, int(box_blur_size)
        self.median_blur_size = int(median_blur_size)
        if self.box_blur_size < 1 or self.median_blur_size < 1:
            raise ConfigError("config keys 'feature_options.*_blur_size' must be >= 1")

    def call(self, x):
        if not self.features:
            return x
        band = {i: x[..., i : i + 1] for i in (B2, B3, B4, B8, B11, B12, DEM)}
        gray = sum(weight * band[i] for i, weight in GRAY_WEIGHTS.items())
        grey = (band[B2] + band[B3] + band[B4]) / 3.0
        extra = []
        for name in self.features:
            if name in RATIOS and self.ratio == "authors":
                a, b = RATIOS[name]
                extra.append((band[a] - band[b]) / tf.maximum(band[a] + band[b], AUTHORS_EPS))
            elif name in RATIOS:
                a, b = RATIOS[name]
                floor, diff = ratio_floor(self.band_scale, a, b), band[a] - band[b]
                extra.append(diff / tf.maximum(tf.abs(band[a]) + tf.abs(band[b]), floor))
            elif name == "rgb_minmax":
                extra += [_per_patch_minmax(band[i]) for i in (B4, B3, B2)]
            elif name == "grey_mean":
                extra.append(grey)
            elif name == "grey_box_blur":
                extra.append(box_blur(grey_levels(grey), self.box_blur_size) / 255.0)
            elif name == "grey_median_blur":
                extra.append(median_blur(grey_levels(grey), self.median_blur_size) / 255.0)
            elif name == "gray":
                extra.append(gray)
            else:  # Sobel gradient magnitude, reflected borders; kernel (3, 3, 1, 2): d/dx, d/dy
                kernel = tf.constant(np.stack([SOBEL_X, SOBEL_X.T], -1)[:, :, None], x.dtype)
                plane = band[DEM] if name == "dem_gradient" else gray
                plane = tf.pad(plane, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
                grads = tf.nn.conv2d(plane, kernel, strides=1, padding="VALID")
                extra.append(tf.sqrt(tf.reduce_sum(tf.square(grads), axis=-1, keepdims=True)))
        return tf.concat([x, *extra], axis=-1)

    def compute_output_shape(self, input_shape):
        added = sum(CHANNELS.get(name, 1) for name in self.features)
        return (*input_shape[:-1], input_shape[-1] + added)

    def get_config(self):
        return {**super().get_config(), "features": list(self.features),
                "band_scale": self.band_scale, "ratio": self.ratio,
                "box_blur_size": self.box_blur_size, "median_blur_size": self.median_blur_size}


@keras.saving.register_keras_serializable(package="landslide")
class Standardize(keras.layers.Layer):
    """Per-channel (x - mean) / std with fixed statistics (lists of floats, one per channel, kept
    in the layer's config); a std of 0 is treated as 1."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) if float(v) > 0 else 1.0 for v in std]

    def call(self, x):
        scale = tf.constant([1.0 / s for s in self.std], x.dtype)
        return (x - tf.constant(self.mean, x.dtype)) * scale

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def feature_options(cfg):
    """BandFeatures' keyword arguments from a config's `feature_options:` section."""
    return {**OPTION_DEFAULTS, **cfg.get("feature_options", {})}


def front(inputs, cfg, mean, std, band_scale=None):
    """The model front on the raw (B, H, W, 14) input: NaN -> 0, the engineered bands of the
    config's `features:` (and `feature_options:`), standardised with `mean`, `std` (14 + k
    channels) unless `data.normalization` is none (raw values, the authors'); `band_scale`: 14
    band spreads for the ratio floors (default: the first 14 of `std`)."""
    # float32 even under a mixed-precision policy: ratios and DEM gradients need the precision.
    x = ReplaceNaN(name="replace_nan", dtype="float32")(inputs)
    x = BandFeatures(enabled_features(cfg["features"]), band_scale or std[:D.NUM_BANDS],
                     **feature_options(cfg), name="band_features", dtype="float32")(x)
    if cfg["data"]["normalization"] == "none":
        return x
    return Standardize(mean, std, name="standardize", dtype="float32")(x)


# ---------------------------------------------------------------------------------------------
# Per-channel statistics of the training patches (14 bands + engineered bands) for the model's
# normalisation: a streaming float64 pass that reads (so checks) every patch and counts NaNs.

STATS_FILE = "stats.json"


def _moments(patches, layer, patch_size, batch_size):
    """Per-channel mean and std of layer(patch) over `patches`, and the NaN count of each patch."""
    total, squares, pixels, nans = 0.0, 0.0, 0, []
    with D.reraise_data_errors():
        for image, _, nans_of in D.read_dataset(patches, patch_size=patch_size).batch(batch_size):
            x = layer(image).numpy().astype(np.float64)
            x = x.reshape(-1, x.shape[-1])
            total, squares = total + x.sum(axis=0), squares + np.square(x).sum(axis=0)
            pixels += len(x)
            nans.append(nans_of.numpy())
    if not nans:
        raise DataError(f"{patches.folder}: no patches to compute statistics on")
    mean = total / pixels
    return mean, np.sqrt(np.maximum(squares / pixels - mean**2, 0.0)), np.concatenate(nans)


def compute_stats(patches, features_cfg, *, normalization="official", patch_size=128,
                  batch_size=16, options=None):
    """Mean and std of every model input channel over `patches` (a PatchFolder): a dict of
    channels (names), mean, std (14 + k floats), band_scale (14 floats), patches, nan_values,
    nan_patches. Engineered bands (`features_cfg`) are computed as the model computes them, with
    the band spreads of the normalisation (official stds, or for "computed" a first pass);
    `options`: BandFeatures' feature options (`feature_options`). With "none" the statistics are
    still computed (and every patch read, so checked) but the model does not use them."""
    if normalization not in ("official", "computed", "none"):
        raise ConfigError("config key 'data.normalization' must be official, computed or none, "
                          f"got {normalization!r}")
    names, band_scale = enabled_features(features_cfg), list(D.OFFICIAL_STD)
    options = {**OPTION_DEFAULTS, **(options or {})}
    if normalization == "computed" and names:  # the ratio floors follow the computed spreads
        band_scale = _moments(patches, BandFeatures([]), patch_size, batch_size)[1].tolist()
    mean, std, nans = _moments(patches, BandFeatures(names, band_scale, **options), patch_size,
                               batch_size)
    nan_values, nan_patches = int(nans.sum()), int((nans > 0).sum())
    if nan_values:
        warn(f"{patches.folder}: replaced {nan_values} NaN values in {nan_patches} of {len(nans)} patches by 0")
    return {"channels": channel_names(features_cfg), "mean": mean.tolist(), "std": std.tolist(),
            "band_scale": band_scale, "patches": len(nans), "nan_values": nan_values,
            "nan_patches": nan_patches}


def training_stats(cfg, patches, folder):
    """`compute_stats` of the training patches with the config's settings, written to
    FOLDER/stats.json (by the chief worker only); returns the stats."""
    from common.train import is_chief

    stats = compute_stats(patches, cfg["features"], normalization=cfg["data"]["normalization"],
                          patch_size=cfg["data"]["patch_size"], options=feature_options(cfg))
    if is_chief():
        write_json(Path(folder) / STATS_FILE, stats)
    return stats


def normalisation(stats, mode):
    """The (mean, std) lists the model standardises with: "official" (the challenge's statistics
    for the 14 bands, computed ones for the engineered bands) or "computed" and "none" (all from
    `stats`; the model ignores them under "none"; `compute_stats` has checked `mode`)."""
    mean, std = list(stats["mean"]), list(stats["std"])
    if mode == "official":
        mean[:D.NUM_BANDS], std[:D.NUM_BANDS] = D.OFFICIAL_MEAN, D.OFFICIAL_STD
    return mean, std
