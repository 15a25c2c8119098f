"""A small sample data set in the real Landslide4Sense layout, with structure a model can learn.

Each patch has smooth, spatially correlated band fields around the official per-band means and
standard deviations, a smooth terrain (DEM) with its slope, and 0-3 landslide blobs. Inside a blob
the slope rises and the spectral signature changes like fresh bare soil: red (B4), SWIR (B11, B12)
and visible brightness up, near-infrared (B8) down. About 2-10% of the pixels are landslide, and a
few patches carry NaNs like the real data. Same seed, same bytes
(`python -m landslide sample --out data/landslide_sample --n 64 --seed 0`).

Layout written (the real one, plus a scene to try whole-scene mapping on)::

    <out>/TrainData/img/image_N.h5, mask/mask_N.h5   n labelled patches (128 x 128 x 14)
    <out>/ValidData/img/image_N.h5                   n // 4 patches without masks
    <out>/TestData/img/image_N.h5                    n // 4 patches without masks
    <out>/scene/scene.tif                            a 320 x 320 pixel GeoTIFF scene: 14 float32
                                                     bands in the patches' order and units, 10 m
                                                     pixels in UTM zone 54N (EPSG:32654), with
                                                     landslide blobs like the patches' (about 12)

`python -m landslide predict <out>/scene/scene.tif --run RUN --out MAPS` maps the scene
(landslide/scene.py). The scene has its own random stream, so the patches' bytes do not depend
on it.
"""

from pathlib import Path

import numpy as np
from scipy import ndimage

from landslide import data as D

# Change inside a landslide, in units of the band's standard deviation (0-based band index).
SIGNATURE = {1: 0.6, 2: 0.6, 3: 1.2, 7: -1.2, 10: 0.8, 11: 0.8, 12: 1.5}
SLOPE, DEM = 12, 13


def _smooth_field(rng, size, sigma):
    """Gaussian-smoothed white noise with unit standard deviation, shape (size, size)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


SCENE_SIZE = 320  # pixels a side of the sample scene
SCENE_BLOBS = 12
SCENE_CRS = "EPSG:32654"  # UTM zone 54N (Hokkaido, one of Landslide4Sense's regions)
SCENE_ORIGIN = (500000.0, 4750000.0)  # west, north, metres
PIXEL_METRES = 10.0


def _blobs(rng, size, count=None):
    """A 0/1 mask of `count` irregular ellipses (default 0-3, at random), shape (size, size)."""
    mask = np.zeros((size, size), bool)
    rows, cols = np.mgrid[0:size, 0:size]
    for _ in range(rng.choice([0, 1, 2, 2, 3]) if count is None else count):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(6, 16, 2)
        angle = rng.uniform(0, np.pi)
        dy, dx = rows - cy, cols - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        # A noisy edge makes the shapes irregular, like real scars.
        mask |= u**2 + v**2 + 0.3 * _smooth_field(rng, size, 3) < 1.0
    return mask


def make_patch(rng, size=D.PATCH_SIZE, blobs=None, nans=True):
    """One synthetic patch: (image float32 (size, size, 14) in Landslide4Sense units, mask uint8
    (size, size)). `blobs`: the number of landslides (default 0-3 at random); `nans`: a few
    patches get NaNs like the real data."""
    shared = _smooth_field(rng, size, 8)
    image = np.empty((size, size, D.NUM_BANDS), np.float32)
    for band in range(D.NUM_BANDS):
        own = _smooth_field(rng, size, 4)
        image[..., band] = 0.5 * shared + 0.4 * own + 0.25 * rng.standard_normal((size, size))
    image[..., DEM] = terrain = _smooth_field(rng, size, 16)
    slope = np.hypot(*np.gradient(terrain))
    slope = (slope - slope.mean()) / (slope.std() + 1e-12)
    image[..., SLOPE] = slope + 0.25 * rng.standard_normal((size, size))
    mask = _blobs(rng, size, blobs)
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 1.0)
    for band, change in SIGNATURE.items():
        image[..., band] += change * soft
    image = np.asarray(D.OFFICIAL_MEAN, np.float32) + np.asarray(D.OFFICIAL_STD, np.float32) * image
    if nans and rng.uniform() < 0.15:  # some real patches have NaNs: a few pixels of a few bands
        bands = rng.choice(D.NUM_BANDS, size=rng.integers(1, 4), replace=False)
        holes = rng.uniform(size=(size, size)) < rng.uniform(0.002, 0.02)
        image[holes[..., None] & np.isin(np.arange(D.NUM_BANDS), bands)] = np.nan
    return image.astype(np.float32), mask.astype(np.uint8)


def write_sample(out, n=64, seed=0, patch_size=D.PATCH_SIZE, scene=True):
    """Write a sample data set into `out`: TrainData (n patches with masks), ValidData and TestData
    (max(2, n // 4) each) and, with `scene`, scene/scene.tif (`write_scene`); the same seed
    writes the same bytes.

    Returns:
        dict with counts per part, the landslide pixel fraction of TrainData, patches_with_nan.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    counts = {"TrainData": n, "ValidData": max(2, n // 4), "TestData": max(2, n // 4)}
    landslide = total = nan_patches = 0
    for part, count in counts.items():
        for index in range(1, count + 1):
            image, mask = make_patch(rng, patch_size)
            nan_patches += bool(np.isnan(image).any())
            D.write_h5(out / part / "img" / f"image_{index}.h5", D.IMAGE_KEY, image)
            if part == "TrainData":
                D.write_h5(out / part / "mask" / f"mask_{index}.h5", D.MASK_KEY, mask)
                landslide += int(mask.sum())
                total += mask.size
    info = {**counts, "landslide_fraction": landslide / total, "patches_with_nan": nan_patches}
    if scene:
        scene_mask = write_scene(out / "scene" / "scene.tif", seed)
        info.update(scene=out / "scene" / "scene.tif", scene_size=SCENE_SIZE,
                    scene_landslide_fraction=float(scene_mask.mean()))
    return info


def write_scene(path, seed=0, size=SCENE_SIZE):
    """Write a GeoTIFF scene like the patches (14 float32 bands, SCENE_BLOBS landslides, no NaNs)
    with a CRS and a 10 m transform, atomically; the same seed writes the same bytes.

    Returns:
        The scene's landslide mask, uint8 (size, size).
    """
    import rasterio
    from rasterio.transform import from_origin

    from common.io import atomic_path

    rng = np.random.default_rng([seed, 1])  # apart from the patches' stream
    image, mask = make_patch(rng, size, blobs=SCENE_BLOBS, nans=False)
    profile = dict(driver="GTiff", width=size, height=size, count=D.NUM_BANDS, dtype="float32",
                   crs=SCENE_CRS, transform=from_origin(*SCENE_ORIGIN, PIXEL_METRES, PIXEL_METRES),
                   compress="deflate", interleave="band")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as target:
        target.write(np.moveaxis(image, -1, 0))
        for band, name in enumerate(D.BAND_NAMES, start=1):
            target.set_band_description(band, name)
    return mask
