"""`make bench` for landslide: speed and size of the tiny and the paper's model, float vs int8 F1.

Called by `python -m benchmarks.run` (see benchmarks/run.py for the row keys). Everything runs on
sample data written into benchmarks/tmp/landslide/ (git-ignored):

* speed rows (`configs/landslide/tiny.yaml` and `full.yaml`, the paper's best model at full
  width): training patches/s (a few `fit` steps at the config's batch size, at most 8), Keras
  float latency at batch 1, int8 TFLite (post-training quantization calibrated on sample
  patches) latency at batch 1 with 2 LiteRT threads, sizes, parameters and MACs, and the tf.data
  pipeline alone (read + decode + augment, no cache) in patches/s;
* an accuracy row: the tiny model trained on the sample data the way the demo trains it
  (train -> evaluate -> export), landslide F1 of the float model and of the int8 TFLite model and
  their pixel agreement on the validation split;
* with a real Landslide4Sense folder under `real_data`, an accuracy row there too (a short
  training of the tiny model, labelled as such).
"""

import logging
from pathlib import Path

import numpy as np

from common import bench as harness
from common.config import load_config
from landslide import data as D

log = logging.getLogger("landslide.bench")
ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs" / "landslide"
WORK = ROOT / "benchmarks" / "tmp" / "landslide"
SAMPLE_PATCHES = 48
MAX_TRAIN_BATCH = 8  # keeps a training step of the full-width model bounded on a CPU
FULL_SIZE_BUDGET_MB = 64.0  # the paper's model is about 15 MB in int8
REAL_FOLDERS = ("landslide4sense", "Landslide4Sense", "l4s")
MODELS = {
    "tiny": "full model at 1/16 width (tiny.yaml)",
    "full": "paper's best: features+residual+attention+multires, focal+IoU (full.yaml)",
}


def _config(name, overrides=()):
    from landslide.config import DEFAULTS

    return load_config(CONFIG_DIR / f"{name}.yaml", ["train.verbose=0", *overrides], defaults=DEFAULTS)


def _sample_data():
    """The bench's sample data set (written once): 48 labelled patches in the real layout."""
    from landslide.sample import write_sample

    data = WORK / "sample"
    if not (data / "TrainData" / "img" / f"image_{SAMPLE_PATCHES}.h5").is_file():
        write_sample(data, n=SAMPLE_PATCHES, seed=0)
    return data


def speed_row(name, patches, quick=False):
    """Speed and size of one config's model on `patches` (a PatchFolder of labelled sample patches)."""
    from common.train import make_optimizer, set_seed
    from landslide.features import compute_stats, normalisation
    from landslide.models import build_models, compile_training_model
    from landslide.task import LandslideTask, f1_metric

    cfg = _config(name)
    set_seed(0)
    size = cfg["data"]["patch_size"]
    batch = min(cfg["train"]["batch_size"], MAX_TRAIN_BATCH)
    heavy = name == "full"
    stats = compute_stats(patches, cfg["features"], normalization=cfg["data"]["normalization"], patch_size=size)
    mean, std = normalisation(stats, cfg["data"]["normalization"])
    x, y = LandslideTask().examples(cfg, patches, patches.names)
    y = y.astype(np.float32)

    def build():
        training, inference = build_models(cfg, mean, std)
        compile_training_model(training, cfg, make_optimizer(cfg["train"], 100))
        return training, inference

    calibration = 8 if heavy else 16
    speed = harness.model_speed(
        build=build, train_cfg=cfg["train"], x=x, y=y, batch=batch, calibration=x[:calibration],
        path=WORK / name / "model_int8.tflite", heavy=heavy, quick=quick, log=log.info, name=name,
        heldout=x[-4:], heldout_labels=y[-4:], metric=f1_metric, metric_name="f1", size_budget_mb=FULL_SIZE_BUDGET_MB,
    )  # fmt: skip
    log.info("bench %s: input pipeline", name)
    pipeline = harness.pipeline_examples_per_s(
        lambda: D.training_dataset(patches, batch_size=batch, seed=0, augment_data=True, cache=False, patch_size=size),
        batches=len(patches.images) // batch, repeats=1 if quick else 3,
    )
    return harness.speed_row(
        task="landslide", model=MODELS[name], input=f"{size}x{size}x{D.NUM_BANDS}", speed=speed,
        pipeline=pipeline, batch=batch, pipeline_desc="the tf.data pipeline (read + decode + augment, no cache)",
        unit="patches",
    )


def accuracy_row(data, out, label, overrides=(), mode="auto"):
    """Train the tiny config on `data`, evaluate on its validation split, export int8: one row.

    The same steps as `python -m landslide demo` (common.runner train and export).
    """
    from common import runner
    from landslide.task import LandslideTask

    task = LandslideTask()
    cfg = _config("tiny", [*overrides, f"export.mode={mode}"])
    cfg["data"]["root"] = str(Path(data).resolve())
    log.info("bench accuracy: training tiny on %s", label)
    result = runner.train(task, cfg, out, overwrite=True)
    metrics = result.metrics
    report = runner.export(task, result.run)
    return {
        "kind": "accuracy",
        "task": "landslide",
        "model": MODELS["tiny"] + f", int8 {report['quantization']}",
        "data": label,
        "metric_name": "f1",
        "float_metric": metrics["f1"],
        "int8_metric": report["tflite_metric"],
        "agreement": report["agreement"],
    }


def find_real_data(real_data):
    """A Landslide4Sense folder (with TrainData/img) under `real_data`, or None."""
    if not real_data:
        return None
    for name in REAL_FOLDERS:
        folder = Path(real_data) / name
        if (folder / "TrainData" / "img").is_dir():
            return folder
    return None


def run(quick=False, real_data=None):
    """All landslide benchmark rows (see the module docstring). `quick`: tiny only, few repeats."""
    data = _sample_data()
    patches = D.index_folder(D.labelled_folder(data), masks=True)
    rows = [speed_row("tiny", patches, quick)]
    if not quick:
        rows.append(speed_row("full", patches))
    epochs = ["train.epochs=2"] if quick else []
    rows.append(accuracy_row(data, WORK / "accuracy_sample", f"sample ({SAMPLE_PATCHES} patches, 25% validation)",
                             epochs, mode="ptq" if quick else "auto"))
    real = find_real_data(real_data)
    if real is not None and not quick:
        steps, epochs = 100, 5
        count = len(list((real / "TrainData" / "img").glob("*.h5")))
        rows.append(accuracy_row(
            real, WORK / "accuracy_real",
            f"Landslide4Sense TrainData ({count} patches, 25% validation), short training: {epochs} epochs x {steps} steps",
            [f"train.epochs={epochs}", f"train.steps_per_epoch={steps}", "data.cache=none"],
        ))
    return rows
