"""`make bench` for asc (rows: benchmarks/run.py), on sample data in benchmarks/tmp/asc/: speed
rows of `teacher.yaml` (batch 16 at most) and `student.yaml` (the pipeline: cached features +
mixup), the student's with the feature extraction speed per spectrogram kind (warm: after numba has
compiled librosa's kernels), the part of the edge pipeline that is not the model; an accuracy row
of the demo (teacher_tiny, distilled student, PTQ); with a TAU 2022 Mobile folder under
`real_data`, a short run on a subset of fold1 (the student alone for a few epochs, so labelled).
`quick=True`: the student only, few repeats, and a 3-epoch student alone (under a minute).
"""

import logging
import random
import time
from functools import partial
from pathlib import Path

import numpy as np

from asc import features as feats
from asc.task import AscTask
from common import bench as harness

TASK = AscTask()
log = logging.getLogger("asc.bench")
WORK = Path(__file__).resolve().parents[1] / "benchmarks" / "tmp" / "asc"
MAX_TRAIN_BATCH = {"teacher": 16, "student": 32}  # the teacher's step is ~1.5 G MACs per clip x 3
REAL_CLIPS = {"train": 2000, "evaluate": 1000}  # the short run's subset of the fold1 split
MODELS = {
    "teacher": "teacher: 3 x residual CNN (teacher.yaml)",
    "student": "student: 3 x depthwise-separable CNN, DCASE limits (student.yaml)",
}


def feature_speed(data, clips=20, quick=False):
    """Clips/s of feature extraction (read + spectrogram + dB), warm: kind -> spread of clips/s."""
    cfg = harness.config(TASK, "student", data=data)["features"]
    paths = sorted(str(p) for p in (data / "audio").glob("*.wav"))[:clips]
    result = {}
    for kind in feats.KINDS:
        call = partial(feats.compute_many, paths, {**cfg, "kinds": [kind]})
        s = harness.spread(harness.timings(call, 2 if quick else 3, 1))  # seconds per call
        result[kind] = {"median": len(paths) / s["median"], "min": len(paths) / s["max"],
                        "max": len(paths) / s["min"]}
    return result


def speed_row(name, data, quick=False):
    """Speed and size of one config's model, on the sample data's cached features."""
    from asc.data import make_dataset, one_hot
    from asc.task import accuracy, build_model

    cfg = harness.config(TASK, name, data=data)
    dataset = TASK.open_data(cfg)
    classes = dataset.classes
    x, y = TASK.examples(cfg, dataset, dataset.train)
    x_eval, y_eval = TASK.examples(cfg, dataset, dataset.evaluate)
    x, x_eval = np.asarray(x), np.asarray(x_eval)
    batch = min(cfg["train"]["batch_size"], MAX_TRAIN_BATCH[name])
    shape = "x".join(str(d) for d in feats.input_shape(cfg["features"]))
    return harness.speed_row(
        TASK, cfg, name, MODELS[name], f"{shape} (1-s clip)", x=x, y=one_hot(y, len(classes)),
        build=lambda: build_model(cfg, len(classes)), batch=batch, out=WORK / name, unit="clips",
        calibration=x[: 16 if name == "teacher" else 64], heavy=name == "teacher", quick=quick,
        pipeline=lambda: make_dataset(x, y, len(classes), batch, shuffle=True, seed=0,
                                      mixup_alpha=cfg["augment"]["mixup_alpha"]),
        pipeline_desc="the tf.data pipeline (cached features + mixup)", heldout=x_eval[:32],
        heldout_labels=y_eval[:32], metric=accuracy, metric_name="accuracy", labels=classes,
    )


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
        write_text(out / "evaluation_setup" / f"fold1_{split}.csv",
                   "\n".join([lines[0], *chosen]) + "\n")
    meta = (folder / "meta.csv").read_text().splitlines()
    kept = (line for line in meta[1:] if line.split("\t")[0] in keep)
    write_text(out / "meta.csv", "\n".join([meta[0], *kept]) + "\n")
    return out


def run(quick=False, real_data=None):
    """All asc benchmark rows (see the module docstring); `quick`: the student only, < 1 minute."""
    from asc.sample import write_sample
    from asc.task import build_all_features

    start = time.perf_counter()
    per_class = 10 if quick else 20
    data = harness.sample_data(WORK / f"sample{per_class}", "meta.csv",
                               partial(write_sample, per_class=per_class, seed=0))
    build_all_features(harness.config(TASK, "student", data=data), say=log.info)
    configs = ["student"] if quick else ["teacher", "student"]
    rows = [speed_row(name, data, quick) for name in configs]
    speeds = feature_speed(data, clips=10 if quick else 20, quick=quick)
    rows[-1]["features_clips_per_s"] = speeds
    rows[-1]["note"] += "; features (1-s clip, 128 bins, 2 threads, warm): " + ", ".join(
        f"{kind} {s['median']:.0f} clips/s" for kind, s in speeds.items()
    )
    if quick:  # a 3-epoch student trained alone (no teacher), exported with PTQ
        out = WORK / "quick_student"
        cfg = harness.config(TASK, "student", ["train.epochs=3", "train.batch_size=16",
                                               "export.mode=ptq"], data)
        rows.append(harness.trained_row(TASK, cfg, out, "student alone, 3 epochs (quick)",
                                        "sample data", run=str(out)))
    else:  # the demo (20 sample clips per scene): the distilled student
        ((summary, report),) = harness.demo_reports(TASK, WORK / "demo")
        rows.append(harness.accuracy_row(
            TASK, "student distilled from teacher_tiny (the demo, 12 epochs)",
            "sample data, 50 evaluate clips", summary["float_metric"], report,
            run=str(WORK / "demo" / "student")))
    names = ("tau2022", "TAU-urban-acoustic-scenes-2022-mobile-development")
    folder = harness.find_data(real_data, names, "meta.csv", "evaluation_setup/fold1_train.csv")
    if folder is not None and not quick:  # a seeded subset of fold1, the student trained alone
        out, subset = WORK / "tau_student", _subset(folder, WORK / "tau_subset")
        cfg = harness.config(TASK, "student", ["train.epochs=10", "export.mode=ptq"], subset)
        build_all_features(cfg, say=log.info)
        label = (f"TAU 2022 Mobile dev, fold1 subset ({REAL_CLIPS['train']} train / "
                 f"{REAL_CLIPS['evaluate']} evaluate clips): a short run, not the paper's setup")
        rows.append(harness.trained_row(TASK, cfg, out, "student alone (no teacher), 10 epochs",
                                        label, run=str(out)))
    log.info("bench asc: %.0f s", time.perf_counter() - start)
    return rows
