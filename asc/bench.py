"""`make bench` for asc: speed and size of the teacher and the student, float vs int8 accuracy.

Called by `python -m benchmarks.run` (see benchmarks/run.py for the row keys). Everything runs on
sample data written into benchmarks/tmp/asc/ (git-ignored):

* speed rows (`configs/asc/teacher.yaml` and `student.yaml`): training clips/s (a few `fit`
  steps; the teacher at batch 16 at most), Keras float latency and int8 TFLite latency (PTQ
  calibrated on sample clips; LiteRT, 2 threads) at batch 1, sizes, parameters and MACs, and the
  tf.data pipeline alone (cached features + mixup) in clips/s with its ratio to training;
  the student row also carries the feature extraction speed per spectrogram (warm: after numba
  has compiled librosa's kernels), the part of the edge pipeline that is not the model;
* an accuracy row: the demo (`python -m asc demo`: teacher_tiny, distilled student, PTQ) on the
  sample data, float vs int8 accuracy and agreement on the evaluate split;
* with a real TAU 2022 Mobile folder under `real_data`, a short-run row there (a subset of the
  folds, the student trained alone for a few epochs, labelled as such).

`quick=True`: the student only, few repeats, and a 3-epoch student without a teacher for the
accuracy row (under a minute).
"""

import copy
import logging
import random
from pathlib import Path

import numpy as np

from asc import features as feats
from asc.config import load
from common import bench as harness

log = logging.getLogger("asc.bench")
ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs" / "asc"
WORK = ROOT / "benchmarks" / "tmp" / "asc"
MAX_TRAIN_BATCH = {"teacher": 16, "student": 32}  # the teacher's step is ~1.5 G MACs per clip x 3
REAL_FOLDERS = ("tau2022", "TAU-urban-acoustic-scenes-2022-mobile-development")
REAL_CLIPS = {"train": 2000, "evaluate": 1000}  # the short run's subset of the fold1 split
MODELS = {
    "teacher": "teacher: 3 x residual CNN (teacher.yaml)",
    "student": "student: 3 x depthwise-separable CNN, DCASE limits (student.yaml)",
}
QUIET = ["train.verbose=0"]


def _say(line):
    log.info("%s", line)


def _sample_data(per_class):
    """The bench's sample data set in the TAU layout (written once) with its feature cache."""
    from asc.sample import write_sample
    from asc.task import build_all_features

    data = WORK / f"sample{per_class}"
    if not (data / "meta.csv").is_file():
        write_sample(data, per_class=per_class, seed=0)
    build_all_features(load(CONFIG_DIR / "student.yaml", QUIET, data), say=_say)
    return data


def feature_speed(data, clips=20, quick=False):
    """Clips/s of feature extraction per spectrogram kind (read + spectrogram + dB), warm.

    Returns:
        dict kind -> harness spread of clips/s.
    """
    cfg = load(CONFIG_DIR / "student.yaml", QUIET, data)["features"]
    paths = sorted(str(p) for p in (data / "audio").glob("*.wav"))[:clips]
    result = {}
    for kind in feats.KINDS:
        one = copy.deepcopy(cfg)
        one["kinds"] = [kind]
        timing = harness.measure(lambda c=one: feats.compute_many(paths, c), repeats=2 if quick else 3, warmup=1)
        rate = harness.rate(timing, len(paths))
        result[kind] = {"median": rate["per_s"], "min": rate["per_s_min"], "max": rate["per_s_max"]}
    return result


def speed_row(name, data, quick=False):
    """Speed and size of one config's model, on the sample data's cached features."""
    import tf_keras as keras

    from asc.data import make_dataset, one_hot
    from asc.task import AscTask, accuracy, build_model
    from common.train import make_optimizer, set_seed

    cfg = load(CONFIG_DIR / f"{name}.yaml", QUIET, data)
    set_seed(0)
    task = AscTask()
    dataset = task.open_data(cfg)
    classes = dataset.classes
    x, y = task.examples(cfg, dataset, dataset.train)
    x_eval, y_eval = task.examples(cfg, dataset, dataset.evaluate)
    x, x_eval = np.asarray(x), np.asarray(x_eval)
    batch = min(cfg["train"]["batch_size"], MAX_TRAIN_BATCH[name])
    heavy = name == "teacher"

    def build():
        model = build_model(cfg, len(classes))
        model.compile(optimizer=make_optimizer(cfg["train"], 100), loss=keras.losses.CategoricalCrossentropy())
        return model, model

    speed = harness.model_speed(
        build=build, train_cfg=cfg["train"], x=x, y=one_hot(y, len(classes)), batch=batch,
        calibration=x[: 16 if heavy else 64], path=WORK / name / "model_int8.tflite", heavy=heavy, quick=quick,
        log=log.info, name=name, heldout=x_eval[:32], heldout_labels=y_eval[:32], metric=accuracy,
        metric_name="accuracy", labels=classes,
    )  # fmt: skip
    log.info("bench %s: input pipeline", name)
    pipeline = harness.pipeline_examples_per_s(
        lambda: make_dataset(x, y, len(classes), batch, shuffle=True, mixup_alpha=cfg["augment"]["mixup_alpha"], seed=0),
        batches=max(1, len(y) // batch), repeats=1 if quick else 3,
    )  # fmt: skip
    shape = "x".join(str(d) for d in feats.input_shape(cfg["features"]))
    return harness.speed_row(
        task="asc", model=MODELS[name], input=f"{shape} (1-s clip)", speed=speed, pipeline=pipeline, batch=batch,
        pipeline_desc="the tf.data pipeline (cached features + mixup)", unit="clips",
    )


def _accuracy_row(model, data, run, metrics_accuracy, report):
    return {
        "kind": "accuracy",
        "task": "asc",
        "model": f"{model}, int8 {report['quantization']}",
        "data": data,
        "metric_name": "accuracy",
        "float_metric": metrics_accuracy,
        "int8_metric": report["tflite_metric"],
        "agreement": report["agreement"],
        "run": str(run),
    }


def demo_accuracy_row():
    """The demo (`python -m asc demo`, 20 sample clips per scene): the distilled student, float vs int8."""
    from asc.task import AscTask
    from common.runner import demo

    out = WORK / "demo"
    rows = demo(AscTask(), out)
    report = _read_json(out / "student" / "export_report.json")
    return _accuracy_row("student distilled from teacher_tiny (the demo, 12 epochs)",
                         "sample data, 50 evaluate clips", out / "student", rows[1]["float_metric"], report)  # fmt: skip


def quick_accuracy_row(data):
    """A 3-epoch student trained alone (no teacher) on the sample data, exported with PTQ."""
    from asc.task import AscTask
    from common import runner

    cfg = load(CONFIG_DIR / "student.yaml", [*QUIET, "train.epochs=3", "train.batch_size=16", "export.mode=ptq"], data)
    run = WORK / "quick_student"
    result = runner.train(AscTask(), cfg, run, overwrite=run.exists())
    report = runner.export(AscTask(), run)
    return _accuracy_row("student alone, 3 epochs (quick)", "sample data", run, result.metrics["accuracy"], report)


def real_accuracy_row(folder, epochs=10):
    """A short run on real TAU 2022 Mobile data: a seeded subset of fold1, the student trained alone."""
    from asc.task import AscTask, build_all_features
    from common import runner

    subset = _subset(folder, WORK / "tau_subset")
    cfg = load(CONFIG_DIR / "student.yaml", [*QUIET, f"train.epochs={epochs}", "export.mode=ptq"], subset)
    run = WORK / "tau_student"
    build_all_features(cfg, say=_say)
    result = runner.train(AscTask(), cfg, run, overwrite=run.exists())
    report = runner.export(AscTask(), run)
    label = (f"TAU 2022 Mobile dev, fold1 subset ({REAL_CLIPS['train']} train / {REAL_CLIPS['evaluate']} "
             f"evaluate clips): a short run, not the paper's setup")  # fmt: skip
    return _accuracy_row(f"student alone (no teacher), {epochs} epochs", label, run, result.metrics["accuracy"], report)


def _subset(folder, out):
    """A TAU-layout folder at `out` listing a seeded random subset of `folder`'s fold1 clips.

    The audio is not copied: `out/audio` links to `folder/audio`.
    """
    from common.io import write_text

    out.mkdir(parents=True, exist_ok=True)
    if not (out / "audio").exists():
        (out / "audio").symlink_to((folder / "audio").resolve(), target_is_directory=True)
    keep = set()
    for split, count in REAL_CLIPS.items():
        lines = (folder / "evaluation_setup" / f"fold1_{split}.csv").read_text().splitlines()
        body = [line for line in lines[1:] if line.strip()]
        chosen = sorted(random.Random(0).sample(body, min(count, len(body))))
        keep |= {line.split("\t")[0] for line in chosen}
        write_text(out / "evaluation_setup" / f"fold1_{split}.csv", "\n".join([lines[0], *chosen]) + "\n")
    meta = (folder / "meta.csv").read_text().splitlines()
    write_text(out / "meta.csv", "\n".join([meta[0], *(m for m in meta[1:] if m.split("\t")[0] in keep)]) + "\n")
    return out


def _read_json(path):
    import json

    return json.loads(Path(path).read_text())


def find_real_data(real_data):
    """A TAU 2022 Mobile development folder (with meta.csv and evaluation_setup/) under `real_data`, or None."""
    if not real_data:
        return None
    for name in REAL_FOLDERS:
        folder = Path(real_data) / name
        if (folder / "meta.csv").is_file() and (folder / "evaluation_setup" / "fold1_train.csv").is_file():
            return folder
    return None


def run(quick=False, real_data=None):
    """All asc benchmark rows (see the module docstring); `quick`: the student only, < 1 minute."""
    import time

    start = time.perf_counter()
    data = _sample_data(10 if quick else 20)
    rows = []
    for name in ["student"] if quick else ["teacher", "student"]:
        log.info("bench asc: %s speed", name)
        rows.append(speed_row(name, data, quick=quick))
    speeds = feature_speed(data, clips=10 if quick else 20, quick=quick)
    student = rows[-1]
    student["features_clips_per_s"] = speeds
    student["note"] += "; features (1-s clip, 128 bins, 2 threads, warm): " + ", ".join(
        f"{kind} {s['median']:.0f} clips/s" for kind, s in speeds.items()
    )
    rows.append(quick_accuracy_row(data) if quick else demo_accuracy_row())
    folder = find_real_data(real_data)
    if folder is not None and not quick:
        rows.append(real_accuracy_row(folder))
    log.info("bench asc: %.0f s", time.perf_counter() - start)
    return rows
