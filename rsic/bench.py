"""rsic's benchmarks: paper 3's backbone table (`python -m rsic benchmark`) and `make bench`.

`python -m rsic benchmark --config CONFIG --data DIR --out OUT [--backbones A,B]` trains every
backbone of `benchmark.backbones` (by default paper 3's twelve and NASNetMobile, from ImageNet
weights: paper3.yaml) with the same config (data split, input size, training), each in
`OUT/<backbone>/` through common.runner (train, then export), and writes `OUT/benchmark.json` and
`OUT/benchmark.md`: backbone, parameters, test accuracy, int8 TFLite size, int8 accuracy and
latency, and the accuracy paper 3 reports on NWPU-RESISC45; then the best backbone by this run's
validation accuracy (the inner split; the test split is only reported), and the best of paper 4's four compact candidates among those benchmarked (what
`--set model.backbone=best:OUT` picks for attention.yaml). A backbone that already has a finished
run in `OUT` is not trained again (delete its folder, or give --overwrite, to redo it), one killed
mid-training resumes; each finished backbone leaves its row in `OUT/<backbone>/benchmark_row.json`
(what `python -m rsic paper3 / paper4` build their tables from, rsic/paper.py). With
ImageNet weights, every backbone's file is fetched before the first training starts.

`make bench`: speed and size of paper 3's and paper 4's models, float vs int8 accuracy.

Called by `python -m benchmarks.run` (see benchmarks/run.py for the row keys). Everything runs on
sample data written into benchmarks/tmp/rsic/ (git-ignored):

* speed rows at 224x224 with 45 classes (NWPU-RESISC45's shape): MobileNetV2 and EfficientNetB0
  (paper 3's configs) and paper 4's attention model on MobileNetV2 (`attention.yaml`), all
  untrained: training images/s (a few `fit` steps at batch 16), Keras float latency at batch 1,
  int8 TFLite latency at batch 1 with 2 LiteRT threads (post-training quantization calibrated on
  sample images: much faster to make than QAT, and the same graph), sizes, parameters and MACs,
  and the tf.data pipeline alone (JPEG decode + resize + augment at 224, no cache) in images/s;
* an accuracy row: `python -m rsic demo` (tiny teacher, distilled tiny student, int8 export of
  both): accuracy of the float and the int8 model on the test split and their agreement;
* with an NWPU-RESISC45 folder under `real_data`, an accuracy row there too (a short training of
  the tiny model, labelled as such).

* paper 4 (`paper4_rows`): for each of its four compact candidates (MobileNet, MobileNetV2,
  NASNetMobile, EfficientNetB0), the attention model of `attention.yaml` beside its backbone (the
  same config with `model.attention.enabled=false`): MACs, int8 size and int8 latency at 224x224
  (untrained, PTQ, the two models timed in alternation so that a shared machine slows both alike;
  their latency ratio is the number to read), and accuracy on sample data (each trained from
  scratch at 64x64 on 5 classes x 40 images, float and int8).

`quick=True`: the tiny model only (speed at 64x64, and a 2-epoch training with a PTQ export), and
paper 4 for MobileNetV2 alone at alpha 0.35, 64x64.
"""

import json
import logging
from pathlib import Path

from common import bench as harness
from common.config import load_config

log = logging.getLogger("rsic.bench")
ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs" / "rsic"
WORK = ROOT / "benchmarks" / "tmp" / "rsic"
NUM_CLASSES = 45
SAMPLE_PER_CLASS = 2  # 90 JPEGs of 256x256 (NWPU-RESISC45's image size)
SAMPLE_SIZE = 256
TRAIN_BATCH = 16
SIZE_BUDGET_MB = 64.0  # a report, not paper 4's 20 MB check (all three are well under it)
REAL_FOLDERS = ("NWPU-RESISC45", "nwpu-resisc45", "resisc45", "NWPU_RESISC45")
MODELS = {
    "tiny": "MobileNetV2 alpha 0.35, 64px (tiny.yaml)",
    "mobilenetv2": "MobileNetV2 (paper 3, mobilenetv2.yaml)",
    "efficientnetb0": "EfficientNetB0 (paper 3, efficientnetb0.yaml)",
    "attention": "MobileNetV2 + multi-level attention (paper 4, attention.yaml)",
}


def _config(name, overrides=()):
    """configs/rsic/NAME.yaml for `make bench`: untrained models (weights null: nothing downloaded)."""
    from rsic.config import DEFAULTS

    return load_config(CONFIG_DIR / f"{name}.yaml", ["train.verbose=0", "model.weights=null", *overrides],
                       defaults=DEFAULTS)


def _sample_data():
    """The bench's sample images (written once): 45 classes x 2 JPEGs of 256x256."""
    from rsic.sample import write_sample

    data = WORK / "sample"
    if not (data / "wetland" / f"wetland_{SAMPLE_PER_CLASS:03d}.jpg").is_file():
        write_sample(data, classes=NUM_CLASSES, per_class=SAMPLE_PER_CLASS, size=SAMPLE_SIZE, seed=0)
    return data


def speed_row(name, folder, quick=False):
    """Speed and size of one config's (untrained) model on the images of `folder` (an ImageFolder)."""
    from common.train import make_optimizer, set_seed
    from rsic.features import load_images, make_dataset
    from rsic.models import build_model, compile_classifier

    # The attention row stays on MobileNetV2 (attention.yaml now defaults to EfficientNetB0), so that
    # it compares with the committed results and the MobileNetV2 row.
    cfg = _config(name, ["model.backbone=MobileNetV2"] if name == "attention" else [])
    set_seed(0)
    size = int(cfg["model"]["input_size"])
    classes = len(folder.class_names)
    batch = min(int(cfg["train"]["batch_size"]), TRAIN_BATCH)
    x = load_images(folder.files, size)

    def build():
        model = build_model(cfg["model"], classes)
        compile_classifier(model, make_optimizer(cfg["train"], 100))
        return model, model

    speed = harness.model_speed(
        build=build, train_cfg=cfg["train"], x=x, y=folder.labels, batch=batch, calibration=x[:32],
        path=WORK / name / "model_int8.tflite", heavy=size >= 224, quick=quick, log=log.info, name=name,
        heldout=x[-16:], size_budget_mb=SIZE_BUDGET_MB,
    )  # fmt: skip
    log.info("bench %s: input pipeline", name)
    pipeline = harness.pipeline_examples_per_s(
        lambda: make_dataset(folder.files, folder.labels, image_size=size, batch_size=batch, training=True,
                             augment=cfg["data"]["augment"], seed=0, cache=False),
        batches=len(folder.files) // batch, repeats=1 if quick else 3,
    )
    return harness.speed_row(
        task="rsic", model=MODELS[name], input=f"{size}x{size}x3, {classes} classes", speed=speed,
        pipeline=pipeline, batch=batch, unit="images",
        pipeline_desc=f"the tf.data pipeline (JPEG decode + resize + augment at {size}, no cache)",
    )


def demo_rows(out):
    """The demo's tiny teacher and distilled student (`python -m rsic demo`): float vs int8 accuracy rows."""
    from common import runner
    from rsic.task import RsicTask

    rows = []
    for row in runner.demo(RsicTask(), out):
        name = row["model"].split(":")[0]
        report = json.loads((Path(out) / name / runner.REPORT_FILE).read_text())
        rows.append({
            "kind": "accuracy",
            "task": "rsic",
            "model": f"{row['model']}{' (distilled)' if name == 'student' else ''}, int8 {report['quantization']}",
            "data": f"sample (5 classes x 40 images of 64x64, test split of {report['parity_examples']})",
            "metric_name": "accuracy",
            "float_metric": report["keras_metric"],
            "int8_metric": report["tflite_metric"],
            "agreement": report["agreement"],
        })
    return rows


def accuracy_row(data, out, label, overrides=(), mode="ptq"):
    """Train the tiny config on `data`, export it int8 (`mode`) and compare float with int8: one row."""
    from common import runner
    from rsic.task import RsicTask

    task = RsicTask()
    cfg = _config("tiny", [f"export.mode={mode}", *overrides])
    cfg["data"]["root"] = str(Path(data).resolve())
    log.info("bench accuracy: training tiny on %s", label)
    with reuse_listing(task, cfg):  # one listing (every image decoded once) for both steps
        runner.train(task, cfg, out, overwrite=True)
        report = runner.export(task, out)
    return {
        "kind": "accuracy",
        "task": "rsic",
        "model": MODELS["tiny"] + f", int8 {report['quantization']}",
        "data": label,
        "metric_name": "accuracy",
        "float_metric": report["keras_metric"],
        "int8_metric": report["tflite_metric"],
        "agreement": report["agreement"],
    }


def find_real_data(real_data):
    """The NWPU-RESISC45 folder (the one holding the 45 class folders) under `real_data`, or None."""
    from common.errors import DataError
    from rsic.download import find_data_root

    if not real_data:
        return None
    for name in REAL_FOLDERS:
        folder = Path(real_data) / name
        if folder.is_dir():
            try:
                return find_data_root(folder)
            except DataError:
                continue
    return None


PAPER4_BACKBONES = ("MobileNet", "MobileNetV2", "NASNetMobile", "EfficientNetB0")
PAPER4_ACCURACY_SIZE = 64  # sample-data training input side (5 classes x 40 images)


def _paper4_configs(backbone, size, overrides=()):
    """(backbone-only config, attention config): attention.yaml on `backbone` at `size` pixels."""
    common = [f"model.backbone={backbone}", f"model.input_size={size}", *overrides]
    return (_config("attention", [*common, "model.attention.enabled=false"]), _config("attention", common))


def _interleaved_latency_ms(paths, example, rounds=5, per_round=10, num_threads=2):
    """Batch-1 int8 latency of several TFLite files, timed in alternation.

    Each round times `per_round` calls of every model in turn and keeps the round's median; the
    result per model is the `harness.spread` of the round medians. Alternating makes a busy
    (shared) machine slow every model alike, so ratios between them hold better than absolute ms.
    """
    import time

    from common.tflite_runtime import TFLiteModel

    models = {name: TFLiteModel(path, num_threads=num_threads) for name, path in paths.items()}
    for model in models.values():
        for _ in range(3):
            model.predict(example)
    medians = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times = []
            for _ in range(per_round):
                start = time.perf_counter()
                model.predict(example)
                times.append(1000 * (time.perf_counter() - start))
            medians[name].append(sorted(times)[len(times) // 2])
    return {name: harness.spread(values) for name, values in medians.items()}


def sample_accuracy(cfg, images, labels, split, out_dir, *, epochs=6, seed=0, batch=16, lr=3e-3):
    """Train `cfg["model"]` from scratch on in-memory sample images; float and int8 accuracy.

    Args:
        cfg: a full rsic config (its `model:` section is used).
        images: float32 (N, S, S, 3) raw RGB at the model's input size; labels: int (N,).
        split: dict of index arrays "train" and "test" (`rsic.data.make_split`).
        out_dir: where the int8 TFLite file and its report go.

    Returns:
        dict: float_metric, int8_metric (test accuracy), agreement (Keras vs int8 decisions),
        quantization, train_s.
    """
    import time

    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from common.train import set_seed
    from rsic.models import build_model, compile_classifier

    set_seed(seed)
    train, test = split["train"], split["test"]
    model = build_model(cfg["model"], int(labels.max()) + 1)
    steps = epochs * int(np.ceil(len(train) / batch))
    compile_classifier(model, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)))

    def augment(image, label):  # aerial scenes: flips and quarter turns
        turns = tf.random.uniform((), 0, 4, tf.int32, seed=seed)
        return tf.image.rot90(tf.image.random_flip_left_right(image, seed=seed), turns), label

    data = (tf.data.Dataset.from_tensor_slices((images[train], labels[train])).shuffle(len(train), seed=seed)
            .map(augment).batch(batch))
    start = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0)
    train_s = time.perf_counter() - start
    report = harness.int8_export(
        model, images[train][:64], Path(out_dir) / "model_int8.tflite", heldout=images[test],
        heldout_labels=labels[test], metric=lambda y, p: float(np.mean(p.argmax(-1) == y)),
        metric_name="accuracy", size_budget_mb=SIZE_BUDGET_MB,
    )
    return {"float_metric": report["keras_metric"], "int8_metric": report["tflite_metric"],
            "agreement": report["agreement"], "quantization": report["quantization"], "train_s": train_s}


def paper4_rows(quick=False, backbones=PAPER4_BACKBONES, epochs=6, work=WORK, log=log.info):
    """Paper 4's attention model beside its backbone, one row per candidate backbone.

    Returns:
        list of dicts (kind "paper4"): backbone, input, backbone_macs, attention_macs,
        backbone_int8_bytes, attention_int8_bytes, backbone_int8_ms, attention_int8_ms
        (`harness.spread` dicts), latency_ratio (attention / backbone median), attention (the
        `model.attention` formulation), and the sample-data accuracy of both
        (`backbone_accuracy`, `attention_accuracy`: `sample_accuracy` dicts). Files go under `work`.
    """
    import numpy as np

    from common.train import set_seed
    from rsic.data import make_split, scan_image_folder
    from rsic.features import load_images
    from rsic.models import build_model
    from rsic.sample import write_sample

    speed_size = 64 if quick else 224
    tiny = ["model.alpha=0.35", "model.embedding_dim=64", "model.attention.reduce_channels=32"] if quick else []
    small = Path(work) / "sample_paper4"
    if not (small / "beach" / "beach_040.jpg").is_file():
        write_sample(small, classes=5, per_class=40, size=PAPER4_ACCURACY_SIZE, seed=0)
    folder = scan_image_folder(small, log=log)
    images = load_images(folder.files, PAPER4_ACCURACY_SIZE)
    labels = np.asarray(folder.labels)
    split = make_split(labels, 0.5, seed=0)
    calibration = np.random.default_rng(0).uniform(0, 255, (16, speed_size, speed_size, 3)).astype(np.float32)
    rows = []
    for backbone in backbones:
        plain_cfg, attention_cfg = _paper4_configs(backbone, speed_size, tiny)
        paths, macs, sizes = {}, {}, {}
        for kind, cfg in (("backbone", plain_cfg), ("attention", attention_cfg)):
            log(f"bench paper4 {backbone} {kind}: int8 export (PTQ) at {speed_size}")
            set_seed(0)
            model = build_model(cfg["model"], NUM_CLASSES)
            report = harness.int8_export(model, calibration, Path(work) / "paper4" / f"{backbone}_{kind}" / "model_int8.tflite",
                                         heldout=calibration[:4], size_budget_mb=SIZE_BUDGET_MB)
            paths[kind], macs[kind], sizes[kind] = report["path"], report["macs"], report["tflite_bytes"]
        latency = _interleaved_latency_ms(paths, calibration[:1], rounds=3 if quick else 7)
        accuracy = {}
        for kind, cfg in zip(("backbone", "attention"), _paper4_configs(
                backbone, PAPER4_ACCURACY_SIZE, [*tiny, "model.bn_momentum=0.5", "model.embedding_dim=128"])):
            log(f"bench paper4 {backbone} {kind}: sample-data training ({epochs} epochs)")
            accuracy[kind] = sample_accuracy(cfg, images, labels, split, Path(work) / "paper4_acc" / f"{backbone}_{kind}",
                                             epochs=epochs)
        att = attention_cfg["model"]["attention"]
        rows.append({
            "kind": "paper4",
            "task": "rsic",
            "backbone": backbone + (" alpha 0.35" if quick else ""),
            "input": f"{speed_size}x{speed_size}x3, {NUM_CLASSES} classes",
            "attention": {key: att[key] for key in ("kv_stride", "query_stride", "norm", "reduce_channels",
                                                     "num_heads", "key_dim")},
            "backbone_macs": macs["backbone"],
            "attention_macs": macs["attention"],
            "backbone_int8_bytes": sizes["backbone"],
            "attention_int8_bytes": sizes["attention"],
            "backbone_int8_ms": latency["backbone"],
            "attention_int8_ms": latency["attention"],
            "latency_ratio": latency["attention"]["median"] / latency["backbone"]["median"],
            "accuracy_data": f"sample, 5 classes x 40 images at {PAPER4_ACCURACY_SIZE}x{PAPER4_ACCURACY_SIZE}, "
                             f"half for training, {epochs} epochs from scratch",
            "backbone_accuracy": accuracy["backbone"],
            "attention_accuracy": accuracy["attention"],
        })
    return rows


def run(quick=False, real_data=None):
    """All rsic benchmark rows (see the module docstring). `quick`: tiny only, few repeats."""
    from rsic.data import scan_image_folder

    if quick:
        from rsic.sample import write_sample

        small = WORK / "sample_tiny"
        if not (small / "beach" / "beach_040.jpg").is_file():
            write_sample(small, classes=5, per_class=40, size=64, seed=0)
        rows = [speed_row("tiny", scan_image_folder(small, log=log.info), quick=True)]
        rows.append(accuracy_row(small, WORK / "accuracy_quick", "sample (5 classes x 40 images of 64x64), "
                                 "2 epochs", ["train.epochs=2"]))
        rows += paper4_rows(quick=True, backbones=("MobileNetV2",), epochs=2)
        return rows
    folder = scan_image_folder(_sample_data(), log=log.info)
    rows = [speed_row(name, folder) for name in ("mobilenetv2", "efficientnetb0", "attention")]
    rows += demo_rows(WORK / "demo")
    rows += paper4_rows()
    real = find_real_data(real_data)
    if real is not None:
        steps, epochs = 100, 3
        rows.append(accuracy_row(
            real, WORK / "accuracy_real",
            f"NWPU-RESISC45 ({real}), 20% train split, short training: {epochs} epochs x {steps} steps at 64x64",
            [f"train.epochs={epochs}", f"train.steps_per_epoch={steps}", "data.train_ratio=0.2",
             "data.val_ratio=0.1", "data.cache=false"],
        ))
    return rows


class reuse_listing:
    """Within the block, `task.open_data` returns one listing of `cfg`'s data set (every image is
    checked once, not once per run: `accuracy_row` and the rsic/paper.py plans)."""

    def __init__(self, task, cfg):
        d = cfg["data"]
        self.task, self.cfg, self.key = task, cfg, (str(Path(d["root"]).resolve()), bool(d["skip_bad"]))

    def __enter__(self):
        self.task._folders[self.key] = self.task.open_data(self.cfg)
        return self.task._folders[self.key]

    def __exit__(self, *exc):
        self.task._folders.pop(self.key, None)
