"""landslide/sample.py: the real layout, deterministic bytes, learnable structure."""

import hashlib

import numpy as np

from landslide import data as D
from landslide.sample import make_patch, write_sample


def digest(root):
    files = sorted(root.rglob("*.h5"))
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_bytes(tmp_path):
    write_sample(tmp_path / "a", n=4, seed=5, scene=False)  # the scene's bytes: the next test
    write_sample(tmp_path / "b", n=4, seed=5, scene=False)
    write_sample(tmp_path / "c", n=4, seed=6, scene=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_layout_and_statistics(sample_root):
    for part, count in [("TrainData", 32), ("ValidData", 8), ("TestData", 8)]:
        assert len(list((sample_root / part / "img").glob("image_*.h5"))) == count
    assert not (sample_root / "TestData" / "mask").exists()
    patches = D.index_folder(sample_root / "TrainData")
    masks = np.stack([D.read_mask(path) for path in patches.masks])
    assert 0.02 <= masks.mean() <= 0.10
    nans = [D.read_image(path)[1] for path in patches.images]
    assert 0 < sum(n > 0 for n in nans) < len(nans)  # some patches carry NaNs, most do not


def test_landslides_change_signature_and_slope():
    rng = np.random.default_rng(0)
    images, masks = zip(*(make_patch(rng, 64) for _ in range(8)))
    image, mask = np.nan_to_num(np.stack(images)), np.stack(masks).astype(bool)
    for band, sign in [(3, 1), (7, -1), (12, 1)]:  # red up, NIR down, slope up
        difference = image[..., band][mask].mean() - image[..., band][~mask].mean()
        assert sign * difference > 0.5, band


def test_sample_scene_is_a_georeferenced_14_band_geotiff(sample_root, tmp_path):
    import rasterio

    from landslide.sample import SCENE_SIZE, write_scene

    with rasterio.open(sample_root / "scene" / "scene.tif") as scene:
        assert (scene.count, scene.height, scene.width) == (14, SCENE_SIZE, SCENE_SIZE)
        assert scene.crs.to_epsg() == 32654 and scene.transform.a == 10.0
        assert scene.descriptions[12:] == ("slope", "DEM")
    small = [write_scene(tmp_path / name / "scene.tif", seed=seed, size=64) for name, seed in
             (("a", 0), ("b", 0), ("c", 1))]
    payload = [(tmp_path / name / "scene.tif").read_bytes() for name in "abc"]
    assert payload[0] == payload[1] != payload[2]  # same seed, same bytes
    assert np.array_equal(small[0], small[1]) and small[0].any()  # it has landslides
