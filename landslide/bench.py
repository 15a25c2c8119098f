"""`make bench` for landslide (rows: benchmarks/run.py), on sample data in benchmarks/tmp/landslide:

* speed rows of `tiny.yaml` and `full.yaml` (the paper's best model at full width; training at the
  config's batch size, at most 8), the tf.data pipeline being read + decode + augment, no cache;
* an accuracy row: the tiny model trained and exported as the demo does, landslide F1 of the float
  and the int8 model and their pixel agreement on the validation split;
* with a real Landslide4Sense folder under `real_data`, a short-training accuracy row there too.
"""

from functools import partial
from pathlib import Path

import numpy as np

from common import bench as harness
from landslide import data as D
from landslide.task import LandslideTask

TASK = LandslideTask()
WORK = Path(__file__).resolve().parents[1] / "benchmarks" / "tmp" / "landslide"
SAMPLE_PATCHES = 48
MAX_TRAIN_BATCH = 8  # keeps a training step of the full-width model bounded on a CPU
MODELS = {
    "tiny": "full model at 1/16 width (tiny.yaml)",
    "full": "paper's best: features+residual+attention+multires, focal+IoU (full.yaml)",
}


def speed_row(name, patches, quick=False):
    """Speed and size of one config's model on `patches` (a PatchFolder of labelled patches)."""
    from landslide.features import compute_stats, feature_options, normalisation
    from landslide.models import build_models
    from landslide.task import f1_metric

    cfg = harness.config(TASK, name)
    size, norm = cfg["data"]["patch_size"], cfg["data"]["normalization"]
    batch = min(cfg["train"]["batch_size"], MAX_TRAIN_BATCH)
    stats = compute_stats(patches, cfg["features"], normalization=norm, patch_size=size,
                          options=feature_options(cfg))
    mean, std = normalisation(stats, norm)
    x, y = TASK.examples(cfg, patches, patches.names)
    y = y.astype(np.float32)
    return harness.speed_row(
        TASK, cfg, name, MODELS[name], f"{size}x{size}x{D.NUM_BANDS}",
        build=lambda: build_models(cfg, mean, std), x=x, y=y, batch=batch,
        calibration=x[: 8 if name == "full" else 16],
        out=WORK / name, unit="patches",
        pipeline=lambda: D.training_dataset(patches, batch_size=batch, seed=0, augment_data=True,
                                            cache=False, patch_size=size),
        pipeline_desc="the tf.data pipeline (read + decode + augment, no cache)",
        heavy=name == "full", quick=quick, heldout=x[-4:], heldout_labels=y[-4:], metric=f1_metric,
        metric_name="f1", size_budget_mb=64.0,  # the paper's model is about 15 MB in int8
    )


def accuracy_row(data, out, label, overrides=(), mode="auto"):
    """The tiny config trained on `data` and exported int8 (`mode`), as the demo does: one row."""
    cfg = harness.config(TASK, "tiny", [*overrides, f"export.mode={mode}"], data)
    return harness.trained_row(TASK, cfg, out, MODELS["tiny"], label)


def run(quick=False, real_data=None):
    """All landslide benchmark rows (see the module docstring). `quick`: tiny only, few repeats."""
    from landslide.sample import write_sample

    data = harness.sample_data(WORK / "sample", f"TrainData/img/image_{SAMPLE_PATCHES}.h5",
                               partial(write_sample, n=SAMPLE_PATCHES, seed=0))
    patches = D.index_folder(D.labelled_folder(data), masks=True)
    rows = [speed_row(name, patches, quick) for name in (["tiny"] if quick else ["tiny", "full"])]
    rows.append(accuracy_row(data, WORK / "accuracy_sample",
                             f"sample ({SAMPLE_PATCHES} patches, 25% validation)",
                             ["train.epochs=2"] if quick else [], mode="ptq" if quick else "auto"))
    names = ("landslide4sense", "Landslide4Sense", "l4s")
    real = harness.find_data(real_data, names, "TrainData/img")
    if real is not None and not quick:
        count = len(list((real / "TrainData" / "img").glob("*.h5")))
        rows.append(accuracy_row(
            real, WORK / "accuracy_real", f"Landslide4Sense TrainData ({count} patches, 25% "
            "validation), short training: 5 epochs x 100 steps",
            ["train.epochs=5", "train.steps_per_epoch=100", "data.cache=none"],
        ))
    return rows
