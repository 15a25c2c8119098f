"""Remote-sensing scene classification (papers 3 and 4) as a common.task.Task (README: commands).

The data is a folder per class (rsic/data.py). Items of a split are int indices into the listed
files; split.json stores them as root-relative paths (`class/name.jpg`). The reported split is
`test`. Under `train.select_on: inner` (the default) the epoch is chosen on `val`, a share
`data.val_ratio` of each class's training images; `reported` trains on the whole training share
and chooses on `test` (the papers' practice).
"""

from pathlib import Path

import numpy as np

from common.cli import add_shorthand
from common.errors import ConfigError
from common.predictions import write_class_predictions
from common.runner import LABELS_FILE, SPLIT_FILE, load_task_config, read_labels, say
from common.task import Command, DemoRun, Task
from rsic import data as D
from rsic import download as downloads
from rsic import edge
from rsic.config import DEFAULTS
from rsic.features import image_side, load_images, make_dataset, predict_probs
from rsic.sample import write_sample

BEST_PREFIX = "best:"  # model.backbone=best:BENCH_DIR (see RsicTask.resolve_config)


def classification_metrics(labels, probs, class_names):
    """(metrics: accuracy and per-class accuracy (recall), the (C, C) int64 confusion matrix:
    rows true class, columns predicted)."""
    from common.metrics import ConfusionMatrix, accuracy, per_class_scores

    cm = ConfusionMatrix(len(class_names))
    cm.update(np.asarray(labels), np.argmax(probs, axis=1))
    recall = per_class_scores(cm)["recall"]
    per_class = {name: float(r) for name, r in zip(class_names, recall)}
    return {"accuracy": accuracy(cm), "per_class_accuracy": per_class}, cm.matrix


def _skip_bad(parser):
    add_shorthand(parser, "--skip-bad", "data.skip_bad", nargs=0,
                  help="skip unreadable images (listed in one line) instead of stopping")


def _say(line):
    say(f"rsic: {line}")


LOSSES = ("crossentropy", "kl")


def check_recipe(cfg):
    """The training-recipe keys of a config (losses, crops, mixup, off_last_epochs) checked before
    TensorFlow starts (ConfigError naming the key); returns `cfg`."""
    from common.augment import TEST_CROPS, check_mixup

    d, m = cfg["data"], cfg["model"]
    if cfg["train"]["loss"] not in LOSSES:
        raise ConfigError(f"config key 'train.loss' must be one of {', '.join(LOSSES)}, "
                          f"got {cfg['train']['loss']!r}")
    if d["image_size"] and int(d["image_size"]) < int(m["input_size"]):
        raise ConfigError(f"config key 'data.image_size': {d['image_size']} is smaller than the "
                          f"model's input model.input_size={m['input_size']} cropped out of it")
    if d["test_crop"] not in TEST_CROPS:
        raise ConfigError(f"config key 'data.test_crop' must be one of {', '.join(TEST_CROPS)}, "
                          f"got {d['test_crop']!r}")
    if int(d["augment"]["off_last_epochs"]) < 0:
        raise ConfigError("config key 'data.augment.off_last_epochs' must be >= 0, got "
                          f"{d['augment']['off_last_epochs']}")
    check_mixup(d["augment"]["mixup"])
    return cfg


def soft_labels(cfg):
    """Whether training takes one-hot (soft under mixup) labels: under mixup or the kl loss."""
    return bool(cfg["data"]["augment"]["mixup"]["enabled"]) or cfg["train"]["loss"] == "kl"


class RsicTask(Task):
    name = "rsic"
    defaults = DEFAULTS
    description = ("Remote-sensing scene classification (NWPU-RESISC45 or any folder-per-class "
                   "images)")
    config_dir = Path(__file__).resolve().parents[1] / "configs" / "rsic"
    train_config = "mobilenetv2.yaml"
    distill_config = "student.yaml"
    metric_name = "accuracy"
    reported_split = "test"
    classifier = True

    def __init__(self):
        self._folders = {}  # (root, skip_bad) -> ImageFolder, while a benchmark reuses one listing

    def resolve_config(self, cfg):
        """`model.backbone: best:BENCH_DIR` -> the best of paper 4's candidates in that run; the
        recipe keys checked (`check_recipe`)."""
        check_recipe(cfg)
        backbone = str(cfg["model"]["backbone"])
        if backbone.startswith(BEST_PREFIX):
            from rsic.paper import PAPER4_BACKBONES, best_benchmarked

            row = best_benchmarked(backbone[len(BEST_PREFIX):], PAPER4_BACKBONES,
                                   key="model.backbone")
            _say(f"model.backbone={backbone}: {row['backbone']}, the best of paper 4's candidates "
                 f"there ({100 * row['accuracy']:.1f}% test accuracy)")
            cfg["model"]["backbone"] = row["backbone"]
        return cfg

    def describe(self, cfg):
        m = cfg["model"]
        alpha = f" alpha {m['alpha']:g}" if m["alpha"] != 1.0 else ""
        att = m["attention"]
        attention = f" + {att.get('form', 'tokens')} attention" if att["enabled"] else ""
        cut = f" cut after {m['cut_after']}" if m.get("cut_after") else ""
        crop = f" (crops of {image_side(cfg)}px)" if image_side(cfg) != m["input_size"] else ""
        return f"{m['backbone']}{alpha}{cut}{attention} {m['input_size']}px{crop}"

    # -- data --------------------------------------------------------------------------------

    def open_data(self, cfg):
        d = cfg["data"]
        key = (str(Path(d["root"]).resolve()), bool(d["skip_bad"]))
        return self._folders.get(key) or D.scan_image_folder(d["root"], skip_bad=d["skip_bad"],
                                                             log=_say)

    def class_names(self, data):
        return data.class_names

    def make_split(self, cfg, data):
        d, inner = cfg["data"], cfg["train"]["select_on"] == "inner"
        if d["split_file"]:
            split = D.read_split_file(d["split_file"], data)
            if inner and not len(split["val"]):
                raise ConfigError(f"{d['split_file']}: no 'val' list to choose the epoch on "
                                  "(train.select_on=inner); add one carved from the training "
                                  "images, or set train.select_on=reported")
            return split
        if inner and d["val_ratio"] <= 0:
            raise ConfigError("config key 'data.val_ratio' is 0: train.select_on=inner chooses the "
                              "epoch on a share of the training images; set data.val_ratio "
                              "(e.g. 0.1) or train.select_on=reported")
        val_ratio = d["val_ratio"] if inner else 0.0
        return D.make_split(data.labels, d["train_ratio"], val_ratio=val_ratio, seed=d["seed"],
                            class_names=data.class_names, root=data.root)

    def split_info(self, cfg, split):
        d = cfg["data"]
        return {"train_ratio": d["train_ratio"], "val_ratio": d["val_ratio"], "seed": d["seed"],
                **({"split_file": d["split_file"]} if d["split_file"] else {})}

    def split_ids(self, data, split):
        return {name: data.relative(items) for name, items in split.items()}

    def split_from_ids(self, data, ids):
        return D.split_from_ids(data, ids, SPLIT_FILE)

    def all_items(self, data):
        return np.arange(len(data.files))

    def align_classes(self, data, run_classes):
        """Give another folder the class indices of the run (its classes are among the run's)."""
        data.labels = np.array([run_classes.index(name) for name in data.class_names])[data.labels]
        data.class_names = list(run_classes)

    # -- training ----------------------------------------------------------------------------

    def check_teacher(self, cfg, teacher_cfg, teacher_run):
        size = int(teacher_cfg.get("model", {}).get("input_size", 0))
        image = int(teacher_cfg.get("data", {}).get("image_size", 0) or size)
        for key, ours, theirs in (("model.input_size", cfg["model"]["input_size"], size),
                                  ("data.image_size", image_side(cfg), image)):
            if int(ours) != theirs:
                raise ConfigError(f"config key '{key}': the student's {ours} differs from the "
                                  f"teacher's {theirs} ({Path(teacher_run) / 'config.yaml'})")

    def datasets(self, cfg, data, split):
        d, t = cfg["data"], cfg["train"]
        size, batch, train = image_side(cfg), int(t["batch_size"]), split["train"]
        classes = len(data.class_names) if soft_labels(cfg) else 0
        self._augment_switch = None
        if d["augment"]["off_last_epochs"] > 0:
            import tensorflow as tf

            self._augment_switch = tf.Variable(1, dtype=tf.int32, trainable=False,
                                               name="augment_switch")

        def dataset(items, **training):
            return make_dataset([data.files[i] for i in items], data.labels[items], image_size=size,
                                batch_size=batch, cache=d["cache"], num_classes=classes, **training)

        train_ds = dataset(train, training=True, augment=d["augment"], seed=int(t["seed"]),
                           shuffle_buffer=d["shuffle_buffer"], switch=self._augment_switch)
        # rot90_all: an epoch is every training image in its four rotations
        examples = len(train) * (4 if d["augment"]["rot90_all"] else 1)
        steps = int(t["steps_per_epoch"]) or -(-examples // batch)
        return train_ds, dataset(split[self.selection_split(cfg)]), steps

    def build(self, cfg, data, split, run_dir):
        from rsic.models import build_model

        model = build_model(cfg["model"], len(data.class_names), image_size=image_side(cfg),
                            test_crop=cfg["data"]["test_crop"])
        return model, model

    def register_layers(self):
        import rsic.models  # noqa: F401  (common.augment.SquareCrop)

    def label_loss(self, cfg):
        """Sparse cross-entropy on class ids; on one-hot or mixed labels (`soft_labels`) the
        cross-entropy or the KL divergence to them (`train.loss`). "accuracy" then compares the
        argmax of labels and outputs (Keras picks categorical accuracy for (B, C) labels)."""
        import tf_keras as keras

        if not soft_labels(cfg):
            return keras.losses.SparseCategoricalCrossentropy()
        if cfg["train"]["loss"] == "kl":
            return keras.losses.KLDivergence()
        return keras.losses.CategoricalCrossentropy()

    def callbacks(self, cfg, data, split):
        switch = getattr(self, "_augment_switch", None)
        if switch is None:
            return []
        from common.augment import AugmentOff

        return [AugmentOff(switch, cfg["train"]["epochs"], cfg["data"]["augment"]["off_last_epochs"])]

    # -- evaluation --------------------------------------------------------------------------

    def examples(self, cfg, data, items):
        items = np.asarray(items, np.int64)
        size = image_side(cfg)
        return load_images([data.files[i] for i in items], size), data.labels[items]

    def labels(self, cfg, data, items):
        return data.labels[np.asarray(items, np.int64)]

    def embed(self, model, cfg, data, items, batch_size):
        """Streamed from the image files (rsic.features.predict_probs), never all in memory."""
        from rsic.features import predict_probs

        return predict_probs(model, [data.files[i] for i in items], image_side(cfg), batch_size)

    def metric(self, labels, outputs):
        return float(np.mean(np.argmax(outputs, axis=1) == np.asarray(labels).reshape(-1)))

    def evaluate(self, model, cfg, data, items):
        """accuracy, per_class_accuracy (recall of each class); the confusion matrix: `pictures`."""
        items = np.asarray(items, np.int64)
        probs = predict_probs(model, [data.files[i] for i in items], image_side(cfg),
                              int(cfg["train"]["batch_size"]))
        metrics, matrix = classification_metrics(data.labels[items], probs, data.class_names)
        return {**metrics, "confusion_matrix": np.asarray(matrix).tolist()}

    def pictures(self, out_dir, model, cfg, data, items, metrics):
        """OUT/confusion_matrix.csv (counts) and .png (row-normalised) of the evaluation `metrics`."""
        import csv
        import io

        from common.io import write_text
        from common.plots import plot_confusion_matrix

        matrix, names = np.asarray(metrics["confusion_matrix"]), data.class_names
        buffer = io.StringIO()
        rows = ([name, *map(int, row)] for name, row in zip(names, matrix))
        csv.writer(buffer).writerows([["true\\predicted", *names], *rows])
        write_text(Path(out_dir) / "confusion_matrix.csv", buffer.getvalue())
        plot_confusion_matrix(matrix, names, Path(out_dir) / "confusion_matrix.png",
                              title=f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f}")

    # -- command line and prediction -----------------------------------------------------------

    def add_arguments(self, command, parser):
        if command in ("train", "distill", "evaluate", "predict"):
            _skip_bad(parser)

    def predict(self, model, cfg, inputs, out, *, run=None):
        """`run`: the run directory of `model`, whose labels.txt names the classes (required)."""
        if run is None:
            raise ConfigError("predict: rsic needs the run directory (--run) for its labels.txt")
        files = D.collect_images(inputs, skip_bad=cfg["data"]["skip_bad"], log=_say)
        probs = predict_probs(model, files, image_side(cfg), int(cfg["train"]["batch_size"]))
        write_class_predictions(out, files, probs, read_labels(Path(run) / LABELS_FILE))
        return f"{len(files)} predictions -> {out}"

    def edge_predict(self, tflite_path, inputs, out, *, skip_bad=False):
        """`skip_bad`: skip unreadable images (listed in one line) instead of stopping; the
        command line's `--skip-bad` gives the string "true"."""
        skip_bad = skip_bad in (True, "true")
        files, _ = edge.predict(tflite_path, inputs, out, skip_bad=skip_bad)
        return f"{len(files)} predictions -> {out}"

    # -- sample, download, demo, extra commands ----------------------------------------------------

    def add_sample_arguments(self, parser):
        for flag, default, what in (("--classes", 5, "number of classes"),
                                    ("--per-class", 40, "images per class"),
                                    ("--size", 64, "image side in pixels")):
            parser.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
        parser.add_argument("--seed", type=int, default=0)

    def sample(self, out, classes=5, per_class=40, size=64, seed=0):
        """`classes` x `per_class` images of `size` x `size` pixels, seeded."""
        write_sample(out, classes=classes, per_class=per_class, size=size, seed=seed)
        return f"wrote {out}: {classes} classes x {per_class} images of {size}x{size}"

    def add_download_arguments(self, parser):
        parser.add_argument("--url", default=downloads.URL,
                            help="archive URL (default: the pinned torchgeo mirror)")
        parser.add_argument("--sha256", default=downloads.SHA256,
                            help="expected SHA-256 of the archive")
        parser.add_argument("--weights", metavar="BACKBONE[,BACKBONE...]|all",
                            help="fetch these backbones' no-top ImageNet weights into the Keras "
                                 "cache (~/.keras/models) for offline training; --dest is then "
                                 "optional")
        for flag, kind, default, what in (("--alpha", float, 1.0, "width multiplier"),
                                          ("--input-size", int, 224, "input side")):
            parser.add_argument(flag, type=kind, default=default,
                                help=f"MobileNet/MobileNetV2 {what} of --weights "
                                     f"(default {default})")

    def download_needs_dest(self, *, weights=None):
        return not weights

    def download(self, dest, *, url=downloads.URL, sha256=downloads.SHA256, weights=None, alpha=1.0,
                 input_size=224, quiet=False):
        """`weights`: comma-separated backbone names or "all", whose no-top ImageNet weights
        (MobileNet width multiplier `alpha`, input side `input_size` pixels) go into the Keras
        cache; `url`/`sha256`: the NWPU-RESISC45 archive and its checksum, fetched into `dest`."""
        lines = []
        if weights:
            names = downloads.weights_backbones(weights)  # all checked before any download
            paths = downloads.download_weights(names, alpha=alpha, size=input_size)
            lines.append(f"ImageNet weights of {len(paths)} backbone(s) in {paths[0].parent}: "
                         + ", ".join(path.name for path in paths))
        if dest:
            root, classes, images = downloads.download(dest, url=url, sha256=sha256, quiet=quiet)
            lines.append(f"NWPU-RESISC45 is in {root}: {classes} classes, {images} images; "
                         f"use it with --data {root}")
        return "; ".join(lines)

    def demo_plan(self):
        """A tiny MobileNetV2 teacher, then a student distilled from it; both exported."""
        return [DemoRun("teacher", "tiny.yaml", export=True),
                DemoRun("student", "tiny_student.yaml", teacher="teacher", export=True)]

    def commands(self):
        from common import teacher
        from rsic import paper

        def arguments(parser):
            parser.add_argument("--out", required=True,
                                help="folder for OUT/<backbone>/ runs and benchmark.json/.md")
            parser.add_argument("--backbones", help="comma-separated backbone names "
                                                    "(default: benchmark.backbones)")
            parser.add_argument("--overwrite", action="store_true",
                                help="train and export again over finished runs")
            _skip_bad(parser)

        def summary_arguments(parser):
            parser.add_argument("--classes", type=int, default=downloads.NUM_CLASSES,
                                help=f"classes of the output layer (default "
                                     f"{downloads.NUM_CLASSES}, NWPU-RESISC45's)")

        return [Command("summary", "parameters, MACs, input and output shape of a config's model "
                                   "(built without downloading weights)", summary_arguments,
                        self._summary, common_args=True),
                Command("benchmark", "train, evaluate and export a list of backbones -> "
                                     "OUT/benchmark.json/.md", arguments, self._benchmark,
                        common_args=True),
                Command("teacher", "paper 3's combined teacher: fuse the embeddings of finished "
                                   "runs (--members RUN,RUN,RUN) by trained element-wise weights "
                                   "-> an ordinary run", teacher.add_arguments,
                        lambda args: teacher.run_command(self, args), common_args=True),
                Command("paper3", "paper 3's table: benchmark -> best run(s) as teacher(s) -> "
                                  "distilled student -> int8 -> OUT/paper3.md, paper3.json "
                                  "(resumable)",
                        lambda parser: paper.add_arguments(parser, 3),
                        lambda args: paper.run_paper3(self, args)),
                Command("paper4", "paper 4's tables: its candidates (Table 1), the attention "
                                  "form (Table 2), which blocks (Table 3), the best row in int8 "
                                  "within 20 MB -> OUT/paper4.md, paper4.json (resumable)",
                        lambda parser: paper.add_arguments(parser, 4),
                        lambda args: paper.run_paper4(self, args))]

    def _summary(self, args):
        from common.complexity import model_summary, summary_line
        from rsic.models import build_model

        if args.classes < 2:
            raise ConfigError(f"--classes: a classifier needs at least 2 classes, got {args.classes}")
        # Weights do not change the counts: never download them (the last --set wins).
        cfg = load_task_config(self, args.config, [*args.overrides, "model.weights=null"],
                               announce=True)
        info = model_summary(build_model(cfg["model"], args.classes))
        say(f"rsic: {args.config or self.train_config}: {self.describe(cfg)}: "
            f"{summary_line(info, 'image')}")

    def _benchmark(self, args):
        from rsic.paper import run_benchmark

        cfg = load_task_config(self, args.config, args.overrides, args.data, announce=True)
        if args.backbones:
            names = [name.strip() for name in args.backbones.split(",")]
            cfg["benchmark"]["backbones"] = [name for name in names if name]
        run_benchmark(self, cfg, args.out, overwrite=args.overwrite)
