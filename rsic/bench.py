"""rsic's `make bench` rows (the `python -m rsic benchmark` command is in rsic/paper.py).

`make bench` (rows: benchmarks/run.py), on sample data in benchmarks/tmp/rsic/: speed rows of
untrained MobileNetV2 and EfficientNetB0 (paper 3) and paper 4's attention model on MobileNetV2 at
224x224 with 45 classes (NWPU-RESISC45's shape), the pipeline being JPEG decode + resize + augment;
accuracy rows of `python -m rsic demo` (and of a short training on NWPU-RESISC45 under
`real_data`); paper 4's rows (`paper4_rows`): each compact candidate beside the attention model on
it, int8 at 224x224 timed in alternation, and both trained from scratch on 5 classes x 40 images.
`quick=True`: the tiny model only (64x64, 2 epochs, PTQ); paper 4 for MobileNetV2 alpha 0.35 at 64.
`paper4_network_row` (not in `make bench`; `python -m benchmarks.paper4_network`): the authors'
tri-plane network at 246 px beside its backbone and the token form, int8 size and latency.
"""

import logging
from functools import partial
from pathlib import Path

from common import bench as harness
from rsic.task import RsicTask

TASK = RsicTask()
log = logging.getLogger("rsic.bench")
WORK = Path(__file__).resolve().parents[1] / "benchmarks" / "tmp" / "rsic"
NUM_CLASSES = 45
SIZE_BUDGET_MB = 64.0  # a report, not paper 4's 20 MB check (all three are well under it)
MODELS = {
    "tiny": "MobileNetV2 alpha 0.35, 64px (tiny.yaml)",
    "mobilenetv2": "MobileNetV2 (paper 3, mobilenetv2.yaml)",
    "efficientnetb0": "EfficientNetB0 (paper 3, efficientnetb0.yaml)",
    "attention": "MobileNetV2 + multi-level token attention (paper 4, attention_tokens.yaml)",
}
PAPER4_BACKBONES = ("MobileNet", "MobileNetV2", "NASNetMobile", "EfficientNetB0")
SMALL = 64  # the small sample's image side (5 classes x 40 images): quick runs, paper 4's accuracy
PAPER4_KINDS = ("backbone", "attention")


def _config(name, overrides=(), data=None):
    """configs/rsic/NAME.yaml for `make bench`: untrained (weights null: nothing downloaded)."""
    return harness.config(TASK, name, ["model.weights=null", *overrides], data)


def small_sample(work=WORK):
    """5 classes x 40 JPEGs of 64x64 (written once) under `work`."""
    from rsic.sample import write_sample

    return harness.sample_data(Path(work) / "sample_paper4", "beach/beach_040.jpg",
                               partial(write_sample, classes=5, per_class=40, size=SMALL, seed=0))


def _paper4_configs(backbone, size, overrides=()):
    """attention_tokens.yaml on `backbone` at `size` px: {"backbone": without attention,
    "attention"}."""
    common = [f"model.backbone={backbone}", f"model.input_size={size}", *overrides]
    return {"backbone": _config("attention_tokens", [*common, "model.attention.enabled=false"]),
            "attention": _config("attention_tokens", common)}


def speed_row(name, folder, quick=False):
    """Speed and size of one config's (untrained) model on the images of an ImageFolder."""
    from rsic.features import load_images, make_dataset
    from rsic.models import build_model

    # The attention row is the token form on MobileNetV2 (attention_tokens.yaml defaults to
    # EfficientNetB0), so that it compares with the committed results and the MobileNetV2 row.
    cfg = (_config("attention_tokens", ["model.backbone=MobileNetV2"]) if name == "attention"
           else _config(name))
    size = int(cfg["model"]["input_size"])
    classes = len(folder.class_names)
    batch = min(int(cfg["train"]["batch_size"]), 16)
    x = load_images(folder.files, size)
    return harness.speed_row(
        TASK, cfg, name, MODELS[name], f"{size}x{size}x3, {classes} classes",
        build=lambda: build_model(cfg["model"], classes), x=x, y=folder.labels, batch=batch,
        calibration=x[:32], out=WORK / name, unit="images", heavy=size >= 224, quick=quick,
        pipeline=lambda: make_dataset(folder.files, folder.labels, image_size=size, training=True,
                                      batch_size=batch, augment=cfg["data"]["augment"], seed=0,
                                      cache=False, num_classes=classes),  # one-hot: mixup
        pipeline_desc=f"the tf.data pipeline (JPEG decode + resize + augment at {size}, no cache)",
        heldout=x[-16:], size_budget_mb=SIZE_BUDGET_MB,
    )


def demo_rows(out):
    """The demo's tiny teacher and distilled student (`python -m rsic demo`): accuracy rows."""
    rows = []
    for row, report in harness.demo_reports(TASK, out):
        student = " (distilled)" if row["model"].startswith("student:") else ""
        data = f"sample (5 classes x 40 images of 64x64, test split of {report['parity_examples']})"
        rows.append(harness.accuracy_row(TASK, row["model"] + student, data, report["keras_metric"],
                                         report))
    return rows


def accuracy_row(data, out, label, overrides=(), mode="ptq"):
    """The tiny config trained on `data` and exported int8 (`mode`): one row."""
    cfg = _config("tiny", [f"export.mode={mode}", *overrides], data)
    with reuse_listing(TASK, cfg):  # one listing (every image decoded once) for both steps
        return harness.trained_row(TASK, cfg, out, MODELS["tiny"], label, float_from_export=True)


def _interleaved_latency_ms(paths, example, rounds=5, per_round=10):
    """Batch-1 int8 latency (2 LiteRT threads) of several TFLite files: the spread of each one's
    round medians, every round timing `per_round` calls of each model in turn. Alternating makes a
    busy machine slow every model alike, so ratios between them hold better than absolute ms."""
    from common.tflite_runtime import TFLiteModel

    calls = {name: TFLiteModel(path, num_threads=2).predict for name, path in paths.items()}
    for call in calls.values():
        harness.timings(lambda c=call: c(example), 0, warmup=3)
    medians = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times = harness.timings(lambda c=call: c(example), per_round, scale=1000)
            medians[name].append(sorted(times)[per_round // 2])
    return {name: harness.spread(values) for name, values in medians.items()}


def sample_accuracy(cfg, images, labels, split, out_dir, *, epochs=6, seed=0, batch=16, lr=3e-3):
    """Train `cfg["model"]` from scratch on in-memory images, float32 (N, S, S, 3) raw RGB at the
    model's input size, labels int (N,), `split`: "train" and "test" index arrays; export int8
    into `out_dir`. Returns float_metric, int8_metric (test accuracy), agreement (Keras vs int8
    decisions), quantization, train_s."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from common.train import set_seed
    from common.weight_gradients import weight_gradients
    from rsic.models import build_model, compile_classifier

    set_seed(seed)
    train, test = split["train"], split["test"]
    model = build_model(cfg["model"], int(labels.max()) + 1)
    steps = epochs * int(np.ceil(len(train) / batch))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
    compile_classifier(model, keras.optimizers.Adam(schedule))

    def augment(image, label):  # aerial scenes: flips and quarter turns
        turns = tf.random.uniform((), 0, 4, tf.int32, seed=seed)
        return tf.image.rot90(tf.image.random_flip_left_right(image, seed=seed), turns), label

    data = tf.data.Dataset.from_tensor_slices((images[train], labels[train]))
    data = data.shuffle(len(train), seed=seed).map(augment).batch(batch)
    with weight_gradients(cfg.get("train") or {}):  # as `train` computes them
        (train_s,) = harness.timings(lambda: model.fit(data, epochs=epochs, verbose=0), 1)
    report = harness.int8_export(
        model, images[train][:64], Path(out_dir) / "model_int8.tflite", heldout=images[test],
        heldout_labels=labels[test], metric=TASK.metric, metric_name="accuracy",
        size_budget_mb=SIZE_BUDGET_MB)
    return {"float_metric": report["keras_metric"], "int8_metric": report["tflite_metric"],
            "agreement": report["agreement"], "quantization": report["quantization"],
            "train_s": train_s}


def paper4_rows(quick=False, backbones=PAPER4_BACKBONES, epochs=6, work=WORK, log=log.info):
    """Paper 4's attention model beside its backbone, one row (kind "paper4") per candidate:
    backbone, input, attention (the `model.attention` formulation), then for "backbone" and
    "attention": KIND_macs, KIND_int8_bytes, KIND_int8_ms (`harness.spread`), latency_ratio
    (attention / backbone median), KIND_accuracy (`sample_accuracy`). Files go under `work`."""
    import numpy as np

    from common.train import set_seed
    from rsic.data import make_split, scan_image_folder
    from rsic.features import load_images
    from rsic.models import build_model

    size = 64 if quick else 224  # of the speed measurements
    tiny = ["model.alpha=0.35", "model.embedding_dim=64", "model.attention.reduce_channels=32"]
    tiny = tiny if quick else []
    folder = scan_image_folder(small_sample(work), log=log)
    images, labels = load_images(folder.files, SMALL), np.asarray(folder.labels)
    split = make_split(labels, 0.5, seed=0)
    calibration = np.random.default_rng(0).uniform(0, 255, (16, size, size, 3)).astype(np.float32)
    rows = []
    for backbone in backbones:
        speed_cfgs, reports = _paper4_configs(backbone, size, tiny), {}
        for kind, cfg in speed_cfgs.items():
            log(f"bench paper4 {backbone} {kind}: int8 export (PTQ) at {size}")
            set_seed(0)
            reports[kind] = harness.int8_export(
                build_model(cfg["model"], NUM_CLASSES), calibration,
                Path(work) / "paper4" / f"{backbone}_{kind}" / "model_int8.tflite",
                heldout=calibration[:4], size_budget_mb=SIZE_BUDGET_MB)
        paths = {kind: report["path"] for kind, report in reports.items()}
        latency = _interleaved_latency_ms(paths, calibration[:1], rounds=3 if quick else 7)
        accuracy = {}
        more = [*tiny, "model.bn_momentum=0.5", "model.embedding_dim=128"]
        for kind, cfg in _paper4_configs(backbone, SMALL, more).items():
            log(f"bench paper4 {backbone} {kind}: sample-data training ({epochs} epochs)")
            out = Path(work) / "paper4_acc" / f"{backbone}_{kind}"
            accuracy[kind] = sample_accuracy(cfg, images, labels, split, out, epochs=epochs)
        att = speed_cfgs["attention"]["model"]["attention"]
        rows.append({
            "kind": "paper4",
            "task": "rsic",
            "backbone": backbone + (" alpha 0.35" if quick else ""),
            "input": f"{size}x{size}x3, {NUM_CLASSES} classes",
            "attention": {key: att[key] for key in ("kv_stride", "query_stride", "norm",
                                                     "reduce_channels", "num_heads", "key_dim")},
            **{f"{kind}_macs": reports[kind]["macs"] for kind in PAPER4_KINDS},
            **{f"{kind}_int8_bytes": reports[kind]["tflite_bytes"] for kind in PAPER4_KINDS},
            **{f"{kind}_int8_ms": latency[kind] for kind in PAPER4_KINDS},
            "latency_ratio": latency["attention"]["median"] / latency["backbone"]["median"],
            "accuracy_data": f"sample, 5 classes x 40 images at {SMALL}x{SMALL}, "
                             f"half for training, {epochs} epochs from scratch",
            **{f"{kind}_accuracy": accuracy[kind] for kind in PAPER4_KINDS},
        })
    return rows


PAPER4_NETWORK_KINDS = ("backbone", "triplane", "tokens")


def paper4_network_row(work=WORK, size=246, rounds=7, log=log.info):
    """Paper 4's network as its authors built it (attention.yaml: tri-plane attention on
    EfficientNetB0's blocks 5-7) beside its backbone alone (EfficientNetB0 + the same head) and
    beside our token form (attention_tokens.yaml on EfficientNetB0), untrained, at `size` px with
    45 classes: one row (kind "paper4_network") with, per KIND of PAPER4_NETWORK_KINDS,
    KIND_params, KIND_macs, KIND_int8_bytes (PTQ), KIND_float_ops (ops LiteRT runs in float) and
    KIND_int8_ms (batch 1, 2 threads, `_interleaved_latency_ms`), plus the latency ratios to the
    backbone. Untrained: the sizes and times are those of the trained models (same graph), the
    Keras/int8 agreement is not measured here (tests/rsic/test_export.py does it on sample data)."""
    import numpy as np

    from common.complexity import model_complexity
    from common.train import set_seed
    from rsic.models import build_model

    common = [f"model.input_size={size}", "model.backbone=EfficientNetB0"]
    cfgs = {"backbone": _config("attention", [*common, "model.attention.enabled=false"]),
            "triplane": _config("attention", common),
            "tokens": _config("attention_tokens", common)}
    calibration = np.random.default_rng(0).uniform(0, 255, (16, size, size, 3)).astype(np.float32)
    row, paths = {"kind": "paper4_network", "task": "rsic",
                  "input": f"{size}x{size}x3, {NUM_CLASSES} classes"}, {}
    for kind, cfg in cfgs.items():
        log(f"bench paper4 network {kind}: int8 export (PTQ) at {size}")
        set_seed(0)
        model = build_model(cfg["model"], NUM_CLASSES)
        report = harness.int8_export(model, calibration, Path(work) / "paper4_network" / kind / "model_int8.tflite",
                                     heldout=calibration[:4], size_budget_mb=SIZE_BUDGET_MB)
        paths[kind] = report["path"]
        row.update({f"{kind}_params": model.count_params(), f"{kind}_macs": model_complexity(model)["macs"],
                    f"{kind}_int8_bytes": report["tflite_bytes"], f"{kind}_float_ops": report["float_ops"]})
    latency = _interleaved_latency_ms(paths, calibration[:1], rounds=rounds)
    for kind in PAPER4_NETWORK_KINDS:
        row[f"{kind}_int8_ms"] = latency[kind]
        row[f"{kind}_latency_ratio"] = latency[kind]["median"] / latency["backbone"]["median"]
    row["attention"] = {kind: {key: cfgs[kind]["model"]["attention"][key] for key in
                               ("form", "layers", "num_heads", "key_dim", "channels", "pooling", "fusion")}
                        for kind in ("triplane", "tokens")}
    return row


def run(quick=False, real_data=None):
    """All rsic benchmark rows (see the module docstring). `quick`: tiny only, few repeats."""
    from rsic.data import scan_image_folder
    from rsic.download import find_data_root
    from rsic.sample import write_sample

    if quick:
        small = small_sample()
        label = "sample (5 classes x 40 images of 64x64), 2 epochs"
        return [speed_row("tiny", scan_image_folder(small, log=log.info), quick=True),
                accuracy_row(small, WORK / "accuracy_quick", label, ["train.epochs=2"]),
                *paper4_rows(quick=True, backbones=("MobileNetV2",), epochs=2)]
    # 45 classes x 2 JPEGs of 256x256 (NWPU-RESISC45's image size)
    sample = harness.sample_data(WORK / "sample", "wetland/wetland_002.jpg",
                                 partial(write_sample, classes=NUM_CLASSES, per_class=2, size=256))
    folder = scan_image_folder(sample, log=log.info)
    rows = [speed_row(name, folder) for name in ("mobilenetv2", "efficientnetb0", "attention")]
    rows += demo_rows(WORK / "demo") + paper4_rows()
    names = ("NWPU-RESISC45", "nwpu-resisc45", "resisc45", "NWPU_RESISC45")
    real = harness.find_data(real_data, names, root=find_data_root)
    if real is not None:
        rows.append(accuracy_row(
            real, WORK / "accuracy_real",
            f"NWPU-RESISC45 ({real}), 20% train split, short training: 3 epochs x 100 steps at "
            "64x64",
            ["train.epochs=3", "train.steps_per_epoch=100", "data.train_ratio=0.2",
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
