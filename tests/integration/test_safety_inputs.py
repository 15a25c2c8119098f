"""Inputs that used to lose outputs or pass unchecked (issue 22, items 3, 8, 9, 10).

Every bad input is built here. Nothing trains: predict uses a numpy stand-in for the model, and
the validation cases call the commands on bad data and check that they stop (exit 2, one line)
before TensorFlow training starts.
"""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from common import runner
from common.errors import DataError
from landslide import data as D
from landslide import edge

BANDS = 14


class BandZeroModel:
    """A stand-in landslide model on (N, S, S, 14) patches: landslide where band 0 > 0. Its
    masks differ between inputs, so an overwritten output shows."""

    input_shape = (8, 8, BANDS)

    def predict(self, x):
        return (x[..., :1] > 0).astype(np.float32)


def _patch(path, sign):
    image = np.full((8, 8, BANDS), -1.0, np.float32)
    image[:4, :, 0] = sign  # top half landslide (sign +1) or not (-1)
    D.write_h5(path, D.IMAGE_KEY, image)


def _scene(path, value, georeferenced=True):
    data = np.full((BANDS, 20, 24), -1.0, np.float32)
    data[0, 2:7, 3:8] = value  # a 5 x 5 pixel landslide when value > 0
    extra = {"crs": "EPSG:32645", "transform": from_origin(500000.0, 3100000.0, 10.0, 10.0)} if georeferenced else {}
    if not georeferenced:
        extra["transform"] = from_origin(0.0, 0.0, 10.0, -10.0)  # a geotransform, but no CRS
    with rasterio.open(path, "w", driver="GTiff", height=20, width=24, count=BANDS, dtype="float32",
                       **extra) as target:
        target.write(data)
    return path


def test_predict_mirrors_folders_when_names_repeat(tmp_path):
    for folder, value in (("A", 5.0), ("B", -5.0)):
        (tmp_path / folder).mkdir()
        _scene(tmp_path / folder / "scene.tif", value)
    for part, sign in (("TestData", 1.0), ("ValidData", -1.0)):
        _patch(tmp_path / "l4s" / part / "img" / "image_1.h5", sign)
    out = tmp_path / "pred"
    line = edge.predict(BandZeroModel(), [tmp_path / "l4s/TestData", tmp_path / "l4s/ValidData"], out)
    assert line == f"wrote 2 masks to {out} (in sub-folders mirroring the inputs' folders: inputs share file names)"
    test_mask = D.read_h5(out / "TestData/img/mask_1.h5", D.MASK_KEY, 8)
    valid_mask = D.read_h5(out / "ValidData/img/mask_1.h5", D.MASK_KEY, 8)
    assert test_mask.sum() == 32 and valid_mask.sum() == 0  # each input's own mask, none replaced
    # No shared name (one folder of patches and a scene elsewhere): flat, as always.
    line = edge.predict(BandZeroModel(), [tmp_path / "l4s/TestData", tmp_path / "A/scene.tif"], tmp_path / "flat",
                        overlap=2)
    assert line == f"wrote 1 masks and 1 scene maps to {tmp_path / 'flat'}"
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["mask_1.h5", "scene_landslide.tif"]

    line = edge.predict(BandZeroModel(), [tmp_path / "A/scene.tif", tmp_path / "B/scene.tif"], tmp_path / "maps",
                        overlap=2)
    assert line.startswith(f"wrote 2 scene maps to {tmp_path / 'maps'} (in sub-folders")
    with rasterio.open(tmp_path / "maps/A/scene_landslide.tif") as a, \
            rasterio.open(tmp_path / "maps/B/scene_landslide.tif") as b:
        assert (a.read(1) == 1).sum() == 25 and (b.read(1) == 1).sum() == 0


def test_predict_counts_a_file_given_twice_once_and_keeps_one_folder_flat(tmp_path):
    folder = tmp_path / "TestData"
    for index in (1, 2):
        _patch(folder / "img" / f"image_{index}.h5", 1.0)
    out = tmp_path / "pred"
    line = edge.predict(BandZeroModel(), [folder, folder / "img/image_2.h5", folder], out)
    assert line == f"wrote 2 masks to {out}"
    assert sorted(p.name for p in out.rglob("*")) == ["mask_1.h5", "mask_2.h5"]


def test_classifiers_list_a_file_given_twice_once(tmp_path):
    """rsic and asc write one CSV: a row per distinct file, so its count is the files predicted."""
    import soundfile as sf
    from PIL import Image

    from asc.edge import wav_inputs
    from rsic.data import collect_images

    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "img" / name)
        sf.write(tmp_path / f"{name}.wav", np.zeros(16, np.float32), 16000)
    images = collect_images([tmp_path / "img", tmp_path / "img/b.png", tmp_path / "img/../img/a.png"])
    assert images == [tmp_path / "img/a.png", tmp_path / "img/b.png"]
    assert wav_inputs([tmp_path, tmp_path / "b.png.wav"]) == [tmp_path / "a.png.wav", tmp_path / "b.png.wav"]


def test_predict_refuses_a_clash_before_writing_anything(tmp_path):
    _scene(tmp_path / "scene.tif", 5.0)
    _scene(tmp_path / "scene.tiff", -5.0)
    with pytest.raises(DataError) as refused:
        edge.predict(BandZeroModel(), [tmp_path / "scene.tif", tmp_path / "scene.tiff"], tmp_path / "maps")
    assert str(refused.value) == (
        f"{tmp_path / 'scene.tiff'}: its output {tmp_path / 'maps/scene_landslide.tif'} would replace that of "
        f"{tmp_path / 'scene.tif'}; rename one of them or predict them into different --out folders")
    assert not (tmp_path / "maps").exists()
    # An output that would replace an input: `predict p --out p --overwrite` with p holding
    # image_1.h5 and mask_1.h5 (image_1.h5 -> mask_1.h5).
    _patch(tmp_path / "p" / "image_1.h5", 1.0)
    _patch(tmp_path / "p" / "mask_1.h5", 1.0)
    before = (tmp_path / "p/mask_1.h5").read_bytes()
    with pytest.raises(DataError) as refused:
        edge.predict(BandZeroModel(), [tmp_path / "p"], tmp_path / "p")
    assert str(refused.value) == (f"{tmp_path / 'p/image_1.h5'}: its output {tmp_path / 'p/mask_1.h5'} would "
                                  f"replace the input {tmp_path / 'p/mask_1.h5'}; choose another --out")
    assert (tmp_path / "p/mask_1.h5").read_bytes() == before


def test_evaluate_other_data_names_differ_for_folders_of_one_name(tmp_path):
    first, second = tmp_path / "a" / "UCMerced", tmp_path / "b" / "UCMerced"
    names = {runner.other_data_metrics_name(first), runner.other_data_metrics_name(second)}
    assert len(names) == 2 and all(n.startswith("metrics_UCMerced_") and len(n) == 25 for n in names)
    assert runner.other_data_metrics_name(tmp_path / "a/../a/UCMerced") == runner.other_data_metrics_name(first)


def test_scene_without_crs_gives_areas_in_pixels_and_one_warning(tmp_path, capsys):
    scene = _scene(tmp_path / "plain.tif", 5.0, georeferenced=False)
    out = tmp_path / "maps"
    edge.predict(BandZeroModel(), [scene], out, geojson=True, overlap=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"warning: {scene}: has no CRS; the areas in {out / 'plain_landslide.geojson'} are in "
                     "pixels (area_px), not square metres"]
    collection = json.loads((out / "plain_landslide.geojson").read_text())
    assert "crs" not in collection
    assert [f["properties"] for f in collection["features"]] == [{"area_px": 25.0}]  # 5 x 5 pixels
    # The same scene with a CRS: square metres (10 m pixels), no warning.
    edge.predict(BandZeroModel(), [_scene(tmp_path / "geo.tif", 5.0)], out, geojson=True, overlap=2)
    assert capsys.readouterr().out == ""
    collection = json.loads((out / "geo_landslide.geojson").read_text())
    assert [f["properties"] for f in collection["features"]] == [{"area_m2": 2500.0}]


# ---------------------------------------------------------------------------------------------
# Every split checked before training (items 8 and 9): exit 2, one line, no run directory.

LANDSLIDE_TINY = ["--config", "configs/landslide/tiny.yaml", "--set", "data.patch_size=32"]


@pytest.fixture
def landslide_data(tmp_path):
    """8 labelled 32x32 patches and the split tiny.yaml makes of them (holdout: 2 `val`, 1 `inner`)."""
    from common.runner import load_task_config
    from landslide.sample import write_sample
    from landslide.task import LandslideTask

    root = tmp_path / "l4s"
    write_sample(root, n=8, seed=0, patch_size=32)
    task = LandslideTask()
    cfg = load_task_config(task, LANDSLIDE_TINY[1], ["data.patch_size=32"], root)
    return task, root, task.make_split(cfg, task.open_data(cfg))


def _train_refused(task, data, out, capsys, extra=()):
    from tests.cli_runner import run_in_process

    code, _, err = run_in_process(task, ["train", *extra, "--data", data, "--out", out], capsys)
    assert not out.exists()  # refused before the run directory (and TensorFlow training) exists
    return code, err.strip().splitlines()


def test_landslide_infinite_value_in_the_reported_split_stops_before_training(landslide_data, tmp_path, capsys):
    task, root, split = landslide_data
    bad = root / "TrainData/img" / split["val"][-1]
    image = D.read_h5(bad, D.IMAGE_KEY, 32).copy()
    image[3, 4, 5] = np.inf
    D.write_h5(bad, D.IMAGE_KEY, image)
    code, lines = _train_refused(task, root, tmp_path / "run", capsys, LANDSLIDE_TINY)
    assert (code, lines) == (2, [f"error: {bad}: 'img' holds 1 infinite values"])


def test_landslide_mask_255_in_the_inner_split_stops_before_training(landslide_data, tmp_path, capsys):
    task, root, split = landslide_data
    bad = root / "TrainData/mask" / D.mask_name(split["inner"][0])
    mask = D.read_h5(bad, D.MASK_KEY, 32).copy()
    mask[0, 0] = 255
    D.write_h5(bad, D.MASK_KEY, mask)
    code, lines = _train_refused(task, root, tmp_path / "run", capsys, LANDSLIDE_TINY)
    assert (code, lines) == (2, [f"error: {bad}: mask values must be 0 or 1, found 255"])


def test_landslide_complex_patch_is_refused(landslide_data, tmp_path, capsys):
    task, root, split = landslide_data
    bad = root / "TrainData/img" / split["train"][0]
    D.write_h5(bad, D.IMAGE_KEY, D.read_h5(bad, D.IMAGE_KEY, 32).astype(np.complex64))
    code, lines = _train_refused(task, root, tmp_path / "run", capsys, LANDSLIDE_TINY)
    assert (code, lines) == (2, [f"error: {bad}: dataset 'img' holds complex numbers (complex64), "
                                 "expected real ones"])


def test_asc_nan_samples_in_the_evaluation_split_stop_before_training(tmp_path, capsys):
    import soundfile as sf

    from asc.sample import write_sample
    from asc.task import AscTask

    root = write_sample(tmp_path / "asc", per_class=2, seed=0)
    name = (root / "evaluation_setup/fold1_evaluate.csv").read_text().splitlines()[-1].split("\t")[0]
    audio, rate = sf.read(root / name, dtype="float32")
    audio[100], audio[200] = np.nan, np.inf
    sf.write(root / name, audio, rate, subtype="FLOAT", format="WAV")  # a float wav holds them as written
    code, lines = _train_refused(AscTask(), root, tmp_path / "run", capsys,
                                 ["--config", "configs/asc/teacher_tiny.yaml"])
    assert (code, lines) == (2, [f"error: {root / name}: 2 samples are NaN or infinite"])
    assert not (root / "features.h5").exists()  # no half-built cache left behind


def test_rsic_tiff_named_png_and_cmyk_jpeg_are_decoded_like_training(tmp_path):
    from PIL import Image

    from rsic.data import scan_image_folder, tf_decodable
    from rsic.features import load_images

    rng = np.random.default_rng(0)
    pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    for name in ("fields", "forest"):
        (tmp_path / name).mkdir()
        Image.fromarray(pixels).save(tmp_path / name / "plain.jpg", quality=95)
    Image.fromarray(pixels).save(tmp_path / "fields" / "tiff_inside.png", format="TIFF")
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "forest" / "print.jpg", quality=95)
    lines = []
    folder = scan_image_folder(tmp_path, log=lines.append)
    assert lines == ["converting to RGB: 1 CMYK image(s) (alpha dropped, grey replicated)"]
    assert not tf_decodable(tmp_path / "fields/tiff_inside.png") and tf_decodable(tmp_path / "forest/print.jpg")
    # The training pipeline (TensorFlow's decoder for JPEG, PIL for the TIFF) at the native size.
    images = dict(zip((p.name for p in folder.files), load_images(folder.files, 16)))
    np.testing.assert_array_equal(images["tiff_inside.png"], pixels)  # lossless: exact
    # CMYK JPEG: TensorFlow's conversion to RGB, close to the original colours. Bound: JPEG at
    # quality 95 plus the CMYK round trip give a mean error of about 2 of 255 here; 6 leaves a margin
    # for other libjpeg builds.
    assert np.abs(images["print.jpg"] - pixels).mean() < 6
