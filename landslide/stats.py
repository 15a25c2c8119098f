"""Per-channel statistics of the training patches (the 14 bands and the engineered bands).

One streaming pass over the training split: it reads every patch (so every value is checked),
counts the NaNs replaced, and accumulates per-channel sums in float64. The model's normalisation
layer is built from the result, and `train` saves it as RUN/stats.json.
"""

import json
import logging
from pathlib import Path

import numpy as np

from common.errors import ConfigError, DataError
from common.io import write_json
from landslide.data import (
    BAND_NAMES,
    OFFICIAL_MEAN,
    OFFICIAL_STD,
    read_dataset,
    reraise_data_errors,
)
from landslide.features import BandFeatures, enabled_features

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
