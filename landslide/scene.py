"""Landslide mapping of whole scenes: a multi-band GeoTIFF of any size in, a georeferenced map out.

The scene is read one row of tiles at a time (rasterio windows), so a scene larger than memory
works. Tiles of `patch` x `patch` pixels overlap by `overlap` pixels; their predictions are
averaged with weights falling towards the tile border, so tile borders leave no seams (a constant
model gives exactly that constant map). Input: the model's bands in its order (Landslide4Sense:
B1-B12, slope, DEM); a pixel that is nodata in any band (nodata value or mask, NaN) is given to
the model as 0 and is nodata in the output. Output: a single-band GeoTIFF with the input's CRS
and transform: probability (float32, nodata -1) or with a threshold a 0/1 mask (uint8, nodata
255); optionally a GeoJSON file of the landslide polygons with their area in square metres
(`area_m2`), or, for a scene without a CRS, in pixels (`area_px`, with a warning line).
"""

import json
import math
import sys
import warnings

import numpy as np

from common.errors import DataError
from common.io import atomic_path, write_text

PROBABILITY_NODATA = -1.0
MASK_NODATA = 255


def tile_starts(length, patch, stride):
    """Start offsets of tiles covering [0, length): a regular grid, the last tile flush with the
    end."""
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch + 1, stride))
    return starts if starts[-1] == length - patch else starts + [length - patch]


def predict_scene(scene_path, out_path, predict_fn, *, bands=14, patch=128, overlap=32,
                  batch_size=8, threshold=None, geojson_path=None, progress=True, warn=None):
    """Predict the landslide map of a GeoTIFF scene with `bands` bands into `out_path`.

    `predict_fn` maps up to `batch_size` tiles, float32 (N, patch, patch, bands) raw values, to
    probabilities (N, patch, patch[, 1]). `threshold`: None for a probability map, else the
    probability above which a pixel is 1; `geojson_path` (needs `threshold`): also the landslide
    polygons; `warn` takes the warning line of a scene without a CRS (default: printed).
    Returns a dict of `height`, `width`, `tiles`, `landslide_pixels` (None without threshold) and
    `polygons` (None without geojson_path).
    """
    import rasterio

    # rasterio warns (several lines) about a scene without a geotransform; the one line that
    # matters for the user, about the GeoJSON areas, is said below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return _predict_scene(scene_path, out_path, predict_fn, bands=bands, patch=patch,
                              overlap=overlap, batch_size=batch_size, threshold=threshold,
                              geojson_path=geojson_path, progress=progress, warn=warn)


def _predict_scene(scene_path, out_path, predict_fn, *, bands, patch, overlap, batch_size,
                   threshold, geojson_path, progress, warn):
    import rasterio
    from rasterio.windows import Window

    if not 0 <= overlap < patch:
        raise DataError(f"overlap must be between 0 and {patch - 1} pixels, got {overlap}")
    if geojson_path is not None and threshold is None:
        raise DataError(f"{geojson_path}: GeoJSON polygons need a threshold (--threshold)")
    try:
        source = rasterio.open(scene_path)
    except rasterio.errors.RasterioIOError as error:
        why = str(error).splitlines()[0]
        raise DataError(f"{scene_path}: cannot read as a GeoTIFF ({why})") from None
    with source:
        if source.count != bands:
            raise DataError(f"{scene_path}: has {source.count} bands; the model needs {bands}, "
                            "in the config's band order")
        height, width, crs = source.height, source.width, source.crs
        rows, cols = (tile_starts(length, patch, patch - overlap) for length in (height, width))
        dtype, nodata = (("float32", PROBABILITY_NODATA) if threshold is None
                         else ("uint8", MASK_NODATA))
        profile = {k: v for k, v in source.profile.items() if k not in ("blockxsize", "blockysize")}
        profile.update(count=1, compress="deflate", tiled=False, interleave="band", dtype=dtype,
                       nodata=nodata)
        # A tile row reads `strip` scene rows into the accumulators (weighted probabilities,
        # weights); rows above the next tile row are final, written, dropped. Tile weights: 1 in
        # the centre falling linearly to 0.05 at the border.
        strip, cut = min(patch, height), min(patch, width)  # cut: columns of a tile in the scene
        ramp = np.minimum(np.arange(patch) + 0.5, patch - np.arange(patch) - 0.5) / (patch / 2)
        weights = np.outer(*[np.clip(ramp, 0.05, 1.0)] * 2).astype("float32")[:strip, :cut]
        sums, landslide_pixels = np.zeros((2, strip, width)), 0
        with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as target:
            for index, top in enumerate(rows):
                pixels, valid = _read_strip(source, Window(0, top, width, strip), scene_path)
                padded = np.zeros((patch, max(width, patch), bands), "float32")  # scene < patch
                padded[:strip, :width] = pixels
                tiles = np.stack([padded[:, col : col + patch] for col in cols])
                probs = np.concatenate([np.asarray(predict_fn(tiles[i : i + batch_size]), "float32")
                                        for i in range(0, len(tiles), batch_size)])
                probs = probs[..., 0] if probs.ndim == 4 else probs
                if probs.shape != (len(tiles), patch, patch):
                    raise DataError(f"{scene_path}: the model returned {probs.shape}, expected "
                                    f"({len(tiles)}, {patch}, {patch})")
                for col, p in zip(cols, probs[:, :strip, :cut]):
                    sums[:, :, col : col + cut] += p * weights, weights
                done = (rows[index + 1] if index + 1 < len(rows) else height) - top
                result = sums[0, :done] / np.maximum(sums[1, :done], 1e-12)
                block = np.where(valid[:done], result if threshold is None else result > threshold,
                                 nodata).astype(dtype)
                target.write(block[None], window=Window(0, top, width, done))
                landslide_pixels += int((block == 1).sum())
                sums = np.concatenate([sums[:, done:], np.zeros((2, done, width))], axis=1)
                if progress:
                    print(f"\rscene {scene_path}: tile row {index + 1}/{len(rows)}", end="",
                          file=sys.stderr)
            if progress:
                print(file=sys.stderr)
    polygons = None
    if geojson_path is not None:
        polygons = write_polygons(out_path, geojson_path)
        if not crs:
            (warn or _print_warning)(f"warning: {scene_path}: has no CRS; the areas in {geojson_path} "
                                     "are in pixels (area_px), not square metres")
    return {"height": height, "width": width, "tiles": len(rows) * len(cols),
            "landslide_pixels": None if threshold is None else landslide_pixels,
            "polygons": polygons}


def write_polygons(mask_path, geojson_path):
    """Write the landslide areas (value 1) of a mask GeoTIFF as GeoJSON polygons with their area.

    With a CRS the property is `area_m2`: computed in the raster's CRS, and for a geographic CRS
    (degrees) converted to square metres at each polygon's latitude. Without a CRS the units of
    the coordinates are unknown, so the property is `area_px`: the area in pixels (the area in
    transform units divided by the area of one pixel). Returns the number of polygons.
    """
    import rasterio
    from rasterio import features

    with rasterio.open(mask_path) as source:
        mask, crs, transform = source.read(1), source.crs, source.transform
        pixel_area = abs(transform.a * transform.e - transform.b * transform.d) or 1.0

        def area(geometry):
            if crs:
                return {"area_m2": round(_polygon_area(geometry, crs), 2)}
            return {"area_px": round(_polygon_area(geometry, None) / pixel_area, 2)}

        polygons = [{"type": "Feature", "geometry": geometry, "properties": area(geometry)}
                    for geometry, value in features.shapes(mask, mask=mask == 1,
                                                           transform=source.transform)
                    if value == 1]
    collection = {"type": "FeatureCollection", "features": polygons}
    if crs:
        collection["crs"] = {"type": "name", "properties": {"name": crs.to_string()}}
    write_text(geojson_path, json.dumps(collection) + "\n")
    return len(polygons)


def _read_strip(source, window, scene_path):
    """Raw bands (rows, width, bands) as float32, invalid pixels set to 0, and the valid mask."""
    pixels = source.read(window=window, out_dtype="float32")
    valid = (source.read_masks(window=window) > 0).all(axis=0) & np.isfinite(pixels).all(axis=0)
    if np.isinf(pixels).any() and not (source.nodata is not None and np.isinf(source.nodata)):
        raise DataError(f"{scene_path}: contains infinite values in rows "
                        f"{window.row_off}-{window.row_off + window.height}")
    return np.where(valid[None], pixels, 0.0).transpose(1, 2, 0), valid


def _polygon_area(geometry, crs):
    """Shoelace area of a polygon (outer ring minus holes) in the square units of its
    coordinates; converted to square metres for a geographic CRS (degrees)."""
    rings = [np.asarray(ring, "float64").T for ring in geometry["coordinates"]]
    areas = [abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2 for x, y in rings]
    area = areas[0] - sum(areas[1:])
    if crs is not None and crs.is_geographic:
        area *= 111_320.0 * 110_540.0 * math.cos(math.radians(float(np.mean(rings[0][1]))))
    return area


def _print_warning(line):
    print(line, flush=True)
