"""The command line end to end on sample data with the tiny model (subprocesses), and evaluate's
numbers against scikit-learn."""

import json
import shutil

import h5py
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from common import runner
from landslide import data as D
from landslide.task import METRIC_KEYS, LandslideTask
from tests.cli_runner import off_style_lines, run_in_process
from tests.landslide.conftest import TINY, run_cli

TASK = LandslideTask()


def test_train_writes_the_run(tiny_run):
    # Every line the command printed is in the project's style (a NaN warning included).
    printed = tiny_run.with_suffix(".out").read_text()
    assert off_style_lines(printed) == [] and "warning: " in printed, printed
    for name in ["config.yaml", "model.keras", "split.json", "stats.json", "history.csv", "labels.txt",
                 "metrics.json", "training_curves.png", "examples.png"]:
        assert (tiny_run / name).exists(), name
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["protocol"] == "holdout" and len(split["val"]) == 8
    # The epoch is chosen on 2 of the 24 training patches (data.inner_val_fraction 0.1).
    assert len(split["train"]) == 22 and len(split["inner"]) == 2
    assert split["reported"] == "val" and split["splits"] == ["train", "inner", "val"]
    assert split["select_on"] == "inner" and split["selection_split"] == "inner" and split["task"] == "landslide"
    assert (tiny_run / "labels.txt").read_text() == "background\nlandslide\n"
    assert not set(split["train"]) & set(split["val"])
    assert not set(split["inner"]) & (set(split["train"]) | set(split["val"]))
    stats = json.loads((tiny_run / "stats.json").read_text())
    assert len(stats["mean"]) == 20 and stats["nan_values"] > 0


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    runner.evaluate(TASK, tiny_run)  # in-process: the other commands pay the subprocess start
    return json.loads((tiny_run / "metrics.json").read_text())


def _val_predictions(run):
    cfg, model = runner.run_config(TASK, run), runner.keras_model(TASK, run)
    patches = D.index_folder(D.labelled_folder(cfg["data"]["root"]))
    patches = patches.subset(json.loads((run / "split.json").read_text())["val"])
    images, masks = TASK.examples(cfg, patches, patches.names)
    probs = np.asarray(model.predict(images, verbose=0))[..., 0]
    return probs, masks[..., 0], patches


def test_tiny_model_learns(evaluated, tiny_run):
    assert set(evaluated) == {"precision", "recall", "f1", "iou_landslide", "miou", "miou_per_image", "f1_mean",
                              "split", "data", "examples", "model"}
    assert evaluated["split"] == "val" and evaluated["examples"] == 8
    for picture in ["training_curves.png", "examples.png"]:
        assert (tiny_run / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
    _, masks, _ = _val_predictions(tiny_run)
    share = masks.mean()
    all_landslide_f1 = 2 * share / (1 + share)  # predicting all-background gives F1 0
    assert evaluated["f1"] > max(0.6, 3 * all_landslide_f1), evaluated
    assert 0.5 < evaluated["miou"] <= 1


def test_evaluate_matches_sklearn(evaluated, tiny_run):
    probs, masks, _ = _val_predictions(tiny_run)
    y, p = masks.reshape(-1), (probs > 0.5).reshape(-1).astype(int)
    assert evaluated["precision"] == pytest.approx(precision_score(y, p, zero_division=0), abs=1e-9)
    assert evaluated["recall"] == pytest.approx(recall_score(y, p, zero_division=0), abs=1e-9)
    assert evaluated["f1"] == pytest.approx(f1_score(y, p, zero_division=0), abs=1e-9)
    assert evaluated["miou"] == pytest.approx(jaccard_score(y, p, average="macro"), abs=1e-6)
    assert evaluated["iou_landslide"] == pytest.approx(jaccard_score(y, p), abs=1e-6)
    assert evaluated["f1_mean"] == pytest.approx(f1_score(y, p, average="macro"), abs=1e-6)
    # Per image: sklearn's two-class mean IoU, or 1 for a patch without landslide in mask and prediction.
    per_image = [1.0 if not (m.any() or (q > 0.5).any()) else
                 jaccard_score(m.reshape(-1), (q > 0.5).reshape(-1).astype(int), average="macro")
                 for m, q in zip(masks, probs)]
    assert evaluated["miou_per_image"] == pytest.approx(np.mean(per_image), abs=1e-6)


def test_evaluate_folds_mean_and_std(evaluated, tiny_run, tmp_path):
    for k in (0, 1):
        shutil.copytree(tiny_run, tmp_path / f"fold_{k}")
    mean, std = runner.evaluate_folds(TASK, tmp_path)
    assert mean == pytest.approx({k: evaluated[k] for k in mean}) and all(value == pytest.approx(0) for value in std.values())
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {
        "precision", "recall", "f1", "iou_landslide", "miou", "miou_per_image", "f1_mean"}
    assert json.loads((tmp_path / "metrics_folds.json").read_text())["folds"] == ["fold_0", "fold_1"]


def test_predict_writes_one_mask_per_patch(tiny_run, sample_root, tmp_path):
    run_cli("predict", "--run", tiny_run, "--data", sample_root / "TestData", "--out", tmp_path / "pred")
    written = sorted(p.name for p in (tmp_path / "pred").glob("*.h5"))
    assert written == sorted(f"mask_{i}.h5" for i in range(1, 9))
    with h5py.File(tmp_path / "pred" / "mask_7.h5") as handle:
        mask = handle["mask"][()]
    assert mask.shape == (128, 128) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}


def test_export_int8_agrees_with_keras(tiny_run):
    from common.tflite_runtime import TFLiteModel

    result = run_cli("export", "--run", tiny_run, "--mode", "ptq", "--set", "export.calibration_examples=8")
    assert "I0000" not in result.stderr and "cuda" not in result.stderr.lower()  # no TensorFlow start-up lines
    report = json.loads((tiny_run / "export_report.json").read_text())
    assert report["agreement"] >= 0.95 and report["metric_name"] == "f1"
    assert report["tflite_metric"] == pytest.approx(report["keras_metric"], abs=0.1)
    assert set(report["tflite_metrics"]) == set(report["keras_metrics"]) == set(METRIC_KEYS)
    assert report["keras_metrics"]["f1"] == report["keras_metric"]
    assert "iou_landslide" in result.stdout and "miou_per_image" in result.stdout
    probs, _, patches = _val_predictions(tiny_run)
    raw = np.stack([D.read_image(path)[0] for path in patches.images])
    runtime = TFLiteModel(tiny_run / "model_int8.tflite")
    tflite = runtime.predict(raw)[..., 0]
    assert np.mean((tflite > 0.5) == (probs > 0.5)) >= 0.95
    holes = raw.copy()
    holes[:, ::7, ::5, 3] = np.nan  # raw patches with NaNs work through the exported model
    with_nan = runtime.predict(holes)[..., 0]
    assert np.isfinite(with_nan).all()
    filled = np.nan_to_num(holes)
    assert np.mean((with_nan > 0.5) == (runtime.predict(filled)[..., 0] > 0.5)) >= 0.99


def test_bad_file_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad"
    for folder, key, array in [("img", "img", np.zeros((128, 128, 13), np.float32)),
                               ("mask", "mask", np.zeros((128, 128), np.uint8))]:
        (bad / folder).mkdir(parents=True)
        with h5py.File(bad / folder / f"{folder.replace('img', 'image')}_1.h5", "w") as handle:
            handle.create_dataset(key, data=array)
    result = run_cli("train", "--data", bad, "--out", tmp_path / "run", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {bad / 'img' / 'image_1.h5'}: 'img' has 13 bands, expected 14")


def run_main(argv, capsys):
    return run_in_process(TASK, argv, capsys)


def test_bad_input_in_process(capsys, tmp_path, sample_root):
    code, _, err = run_main(["train", "--config", str(TINY), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err == "error: no data set: give --data DIR (or data.root in the config)\n"
    code, _, err = run_main(["train", "--config", str(TINY), "--data", str(sample_root), "--fold", "9",
                             "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "data.split is 'holdout'" in err  # --fold never turns a holdout config into k-fold
    code, _, err = run_main(["train", "--config", str(TINY), "--data", str(sample_root), "--fold", "9",
                             "--set", "data.split=kfold", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "--fold 9: must be in 0..4" in err
    code, _, err = run_main(["train", "--config", str(TINY), "--set", "model.widht=2", "--out", str(tmp_path / "r")],
                            capsys)
    assert code == 2 and "model.widht" in err
    code, _, err = run_main(["evaluate", "--run", str(tmp_path)], capsys)
    assert code == 2 and "not a run directory" in err


def test_summary_and_stats(capsys, tmp_path, sample_root):
    code, out, _ = run_main(["summary", "--config", str(TINY)], capsys)
    assert code == 0 and "60,739 parameters" in out and "3 output head(s)" in out
    code, out, _ = run_main(["stats", "--config", str(TINY), "--data", str(sample_root), "--out", str(tmp_path)], capsys)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert code == 0 and stats["patches"] == 22 and len(stats["channels"]) == 20  # 24 less the 2 inner patches


def test_predict_geotiff_scene(tiny_run, tmp_path, capsys):
    import rasterio
    from rasterio.transform import from_origin

    from landslide.sample import make_patch

    image, _ = make_patch(np.random.default_rng(3), 128)
    scene = np.concatenate([image, image[:40]], axis=0)  # 168 x 128: not a multiple of the patch
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", height=168, width=128, count=14, dtype="float32",
                       crs="EPSG:32645", transform=from_origin(500000.0, 3100000.0, 10.0, 10.0)) as target:
        target.write(scene.transpose(2, 0, 1))
    code, out, _ = run_main(["predict", "--run", str(tiny_run), str(path), "--out", str(tmp_path / "maps")], capsys)
    assert code == 0 and "1 scene maps" in out
    with rasterio.open(tmp_path / "maps" / "scene_landslide.tif") as result:
        assert (result.height, result.width, result.crs.to_epsg()) == (168, 128, 32645)
        assert set(np.unique(result.read(1))) <= {0, 1, 255}


def test_predict_the_sample_scene(tiny_run, sample_root, tmp_path, capsys):
    import rasterio

    scene = sample_root / "scene" / "scene.tif"  # written by `landslide sample`
    code, out, _ = run_main(["predict", "--run", str(tiny_run), str(scene), "--out", str(tmp_path / "maps")], capsys)
    assert code == 0 and "1 scene maps" in out
    with rasterio.open(tmp_path / "maps" / "scene_landslide.tif") as result, rasterio.open(scene) as source:
        assert (result.height, result.width, result.crs, result.transform) == \
            (source.height, source.width, source.crs, source.transform)
        assert set(np.unique(result.read(1))) <= {0, 1}  # no nodata in the sample scene


def test_demo_ladder_rungs_keep_their_switches_at_tiny_size():
    from landslide.task import LADDER, tiny_rung_config

    tiny = tiny_rung_config("full")
    for rung in LADDER:
        cfg = tiny_rung_config(rung)
        assert cfg["model"]["width"] == tiny["model"]["width"] == 0.0625
        assert cfg["train"]["epochs"] == tiny["train"]["epochs"] and cfg["data"]["split"] == "holdout"
    assert tiny_rung_config("unet_ce")["loss"]["name"] == "ce"
    assert not any(tiny_rung_config("unet_ce")["model"][key] for key in ("residual", "attention", "multires"))
    assert tiny_rung_config("attention")["model"]["attention"] and not tiny_rung_config("attention")["model"]["multires"]
