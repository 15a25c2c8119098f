"""Whole-scene prediction on small GeoTIFFs made here with rasterio."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from common.errors import DataError
from landslide.scene import MASK_NODATA, PROBABILITY_NODATA, predict_scene, tile_starts

CRS = "EPSG:32645"
TRANSFORM = from_origin(500000.0, 3100000.0, 10.0, 10.0)  # 10 m pixels


def write_scene(path, data, nodata=None):
    bands, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", height=height, width=width, count=bands, dtype="float32",
        crs=CRS, transform=TRANSFORM, nodata=nodata,
    ) as target:
        target.write(data.astype("float32"))
    return path


def pixelwise_model(tiles):
    """A model whose output at a pixel depends only on that pixel: tiles must land in place."""
    return 1.0 / (1.0 + np.exp(-tiles[..., :1]))


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(14, 300, 200)).astype("float32")  # not a multiple of 128
    return write_scene(tmp_path / "scene.tif", data), data


def test_constant_model_gives_constant_map_without_seams(scene, tmp_path):
    path, _ = scene
    info = predict_scene(path, tmp_path / "out.tif", lambda t: np.full(t.shape[:3] + (1,), 0.3, "float32"), progress=False)
    with rasterio.open(tmp_path / "out.tif") as out:
        result = out.read(1)
        assert (out.crs.to_string(), out.transform, out.count) == (CRS, TRANSFORM, 1)
        assert out.nodata == PROBABILITY_NODATA
    assert result.shape == (300, 200)
    np.testing.assert_allclose(result, 0.3, atol=1e-6)
    assert info["tiles"] == len(tile_starts(300, 128, 96)) * len(tile_starts(200, 128, 96))


def test_tiles_land_in_place(scene, tmp_path):
    path, data = scene
    predict_scene(path, tmp_path / "out.tif", pixelwise_model, overlap=40, batch_size=3, progress=False)
    with rasterio.open(tmp_path / "out.tif") as out:
        np.testing.assert_allclose(out.read(1), 1 / (1 + np.exp(-data[0])), atol=1e-5)


def test_scene_smaller_than_a_patch(tmp_path):
    data = np.random.default_rng(1).normal(size=(14, 50, 70))
    path = write_scene(tmp_path / "small.tif", data)
    predict_scene(path, tmp_path / "out.tif", pixelwise_model, progress=False)
    with rasterio.open(tmp_path / "out.tif") as out:
        np.testing.assert_allclose(out.read(1), 1 / (1 + np.exp(-data[0])), atol=1e-5)


def test_nodata_stays_nodata(tmp_path):
    data = np.ones((14, 140, 130), "float32")
    data[:, 10:20, 30:40] = -9999.0
    data[3, 100, 100] = np.nan
    path = write_scene(tmp_path / "scene.tif", data, nodata=-9999.0)
    predict_scene(path, tmp_path / "mask.tif", pixelwise_model, threshold=0.5, progress=False)
    with rasterio.open(tmp_path / "mask.tif") as out:
        mask = out.read(1)
        assert out.nodata == MASK_NODATA and mask.dtype == np.uint8
    assert (mask[10:20, 30:40] == MASK_NODATA).all() and mask[100, 100] == MASK_NODATA
    assert (mask == 1).sum() == 140 * 130 - 100 - 1


def test_polygons_with_area_in_square_metres(tmp_path):
    data = np.full((14, 160, 150), -5.0, "float32")
    data[0, 20:30, 40:60] = 5.0  # one 10 x 20 pixel landslide = 200 pixels of 100 m2
    data[0, 100:104, 100:103] = 5.0  # 12 pixels
    path = write_scene(tmp_path / "scene.tif", data)
    info = predict_scene(
        path, tmp_path / "mask.tif", pixelwise_model, threshold=0.5, geojson_path=tmp_path / "slides.geojson", progress=False
    )
    assert info["landslide_pixels"] == 212 and info["polygons"] == 2
    features = json.loads((tmp_path / "slides.geojson").read_text())["features"]
    assert sorted(f["properties"]["area_m2"] for f in features) == [1200.0, 20000.0]


def test_wrong_band_count_and_unreadable_file(tmp_path):
    path = write_scene(tmp_path / "rgb.tif", np.zeros((3, 64, 64)))
    with pytest.raises(DataError, match=r"rgb.tif: has 3 bands; the model needs 14"):
        predict_scene(path, tmp_path / "out.tif", pixelwise_model, progress=False)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="junk.tif: cannot read as a GeoTIFF"):
        predict_scene(tmp_path / "junk.tif", tmp_path / "out.tif", pixelwise_model, progress=False)
    assert not (tmp_path / "out.tif").exists()
