"""Remote-sensing scene classification (papers 3 and 4) as a common.task.Task.

    python -m rsic download --dest data/                   # NWPU-RESISC45 (about 0.4 GB)
    python -m rsic download --weights all                  # ImageNet weights into ~/.keras/models
    python -m rsic sample --out data/rsic_sample --classes 5 --per-class 40 --size 64
    python -m rsic train --config tiny.yaml --data data/rsic_sample --out runs/rsic_teacher
    python -m rsic distill --teacher runs/rsic_teacher --config tiny_student.yaml --out runs/rsic_student
    python -m rsic evaluate --run runs/rsic_student         # metrics.json, confusion_matrix.csv/.png
    python -m rsic export --run runs/rsic_student           # model_int8.tflite, labels.txt
    python -m rsic predict --run runs/rsic_student photos/ --out predictions.csv
    python -m rsic predict --tflite runs/rsic_student/model_int8.tflite photos/ --out predictions.csv
    python -m rsic benchmark --config tiny.yaml --data data/rsic_sample --out runs/bench
    python -m rsic train --config attention.yaml --set model.backbone=best:runs/bench --data D --out runs/att
    python -m rsic paper3 --data D --out runs/paper3     # paper 3's table (rsic/paper.py); --quick: sample data
    python -m rsic paper4 --data D --out runs/paper4     # paper 4's table
    python -m rsic demo --out runs/demo/rsic

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
from common.task import Command, DemoRun, Task
from rsic import data as D
from rsic.config import DEFAULTS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "rsic"
BEST_PREFIX = "best:"  # model.backbone=best:BENCH_DIR (see RsicTask.resolve_config)


def accuracy_metric(labels, probs):
    """Share of `labels` (N,) equal to the arg-max of `probs` (N, C)."""
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(labels).reshape(-1)))


def classification_metrics(labels, probs, class_names):
    """Accuracy, per-class accuracy (recall) and the confusion matrix.

    Returns:
        (metrics dict, (C, C) int64 confusion matrix: rows true class, columns predicted).
    """
    from common.metrics import ConfusionMatrix, accuracy, per_class_scores

    cm = ConfusionMatrix(len(class_names))
    cm.update(np.asarray(labels), np.argmax(probs, axis=1))
    recall = per_class_scores(cm)["recall"]
    metrics = {"accuracy": accuracy(cm),
               "per_class_accuracy": {name: float(r) for name, r in zip(class_names, recall)}}
    return metrics, cm.matrix


def write_confusion_matrix(out_dir, matrix, class_names, accuracy):
    """OUT/confusion_matrix.csv (counts) and OUT/confusion_matrix.png (row-normalised)."""
    import csv
    import io

    from common.io import write_text
    from common.plots import plot_confusion_matrix

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *[int(v) for v in row]])
    write_text(Path(out_dir) / "confusion_matrix.csv", buffer.getvalue())
    plot_confusion_matrix(matrix, class_names, Path(out_dir) / "confusion_matrix.png",
                          title=f"accuracy {accuracy:.3f}")


class RsicTask(Task):
    name = "rsic"
    description = "Remote-sensing scene classification (NWPU-RESISC45 or any folder-per-class images)"
    config_dir = CONFIG_DIR
    train_config = "mobilenetv2.yaml"
    distill_config = "student.yaml"
    metric_name = "accuracy"
    reported_split = "test"
    classifier = True

    def __init__(self):
        self._folders = {}  # (root, skip_bad) -> ImageFolder, while a benchmark reuses one listing
        self._last = None  # (model id, items count, matrix) of the latest `evaluate`, for `pictures`

    def defaults(self):
        return DEFAULTS

    def resolve_config(self, cfg):
        """`model.backbone: best:BENCH_DIR` -> the best of paper 4's candidates in that benchmark run."""
        backbone = str(cfg["model"]["backbone"])
        if backbone.startswith(BEST_PREFIX):
            from common.runner import say
            from rsic.paper import PAPER4_BACKBONES, best_benchmarked

            row = best_benchmarked(backbone[len(BEST_PREFIX):], PAPER4_BACKBONES, key="model.backbone")
            say(f"rsic: model.backbone={backbone}: {row['backbone']}, the best of paper 4's candidates there "
                f"({100 * row['accuracy']:.1f}% test accuracy)")
            cfg["model"]["backbone"] = row["backbone"]
        return cfg

    def describe(self, cfg):
        m = cfg["model"]
        alpha = f" alpha {m['alpha']:g}" if m["alpha"] != 1.0 else ""
        attention = " + attention" if m["attention"]["enabled"] else ""
        return f"{m['backbone']}{alpha}{attention} {m['input_size']}px"

    # -- data --------------------------------------------------------------------------------

    def open_data(self, cfg):
        from common.runner import say

        d = cfg["data"]
        key = (str(Path(d["root"]).resolve()), bool(d["skip_bad"]))
        if key in self._folders:
            return self._folders[key]
        return D.scan_image_folder(d["root"], skip_bad=d["skip_bad"], log=lambda line: say(f"rsic: {line}"))

    def class_names(self, data):
        return data.class_names

    def make_split(self, cfg, data):
        d, inner = cfg["data"], cfg["train"]["select_on"] == "inner"
        if d["split_file"]:
            split = D.read_split_file(d["split_file"], data)
            if inner and not len(split["val"]):
                raise ConfigError(f"{d['split_file']}: no 'val' list to choose the epoch on (train.select_on=inner); "
                                  "add one carved from the training images, or set train.select_on=reported")
            return split
        if inner and d["val_ratio"] <= 0:
            raise ConfigError("config key 'data.val_ratio' is 0: train.select_on=inner chooses the epoch on a share of "
                              "the training images; set data.val_ratio (e.g. 0.1) or train.select_on=reported")
        return D.make_split(data.labels, d["train_ratio"], val_ratio=d["val_ratio"] if inner else 0.0, seed=d["seed"],
                            class_names=data.class_names, root=data.root)

    def split_info(self, cfg, split):
        d = cfg["data"]
        return {"train_ratio": d["train_ratio"], "val_ratio": d["val_ratio"], "seed": d["seed"],
                **({"split_file": d["split_file"]} if d["split_file"] else {})}

    def split_ids(self, data, split):
        return {name: data.relative(items) for name, items in split.items()}

    def split_from_ids(self, data, ids):
        from common.runner import SPLIT_FILE

        split = D.split_from_ids(data, ids, SPLIT_FILE)
        split.setdefault("val", np.zeros(0, np.int64))
        return split

    def all_items(self, data):
        return np.arange(len(data.files))

    def align_classes(self, data, run_classes):
        """Give another folder the class indices of the run (its classes are among the run's)."""
        mapping = np.array([run_classes.index(name) for name in data.class_names])
        data.labels = mapping[data.labels]
        data.class_names = list(run_classes)

    # -- training ----------------------------------------------------------------------------

    def check_teacher(self, cfg, teacher_cfg, teacher_run):
        size = int(teacher_cfg.get("model", {}).get("input_size", 0))
        if size != int(cfg["model"]["input_size"]):
            raise ConfigError(f"config key 'model.input_size': the student's {cfg['model']['input_size']} "
                              f"differs from the teacher's {size} ({Path(teacher_run) / 'config.yaml'})")

    def datasets(self, cfg, data, split):
        from rsic.features import make_dataset

        size, batch, d = int(cfg["model"]["input_size"]), int(cfg["train"]["batch_size"]), cfg["data"]
        files = np.asarray(data.files, dtype=object)
        train, val = split["train"], split[self.selection_split(cfg)]
        train_ds = make_dataset(list(files[train]), data.labels[train], image_size=size, batch_size=batch,
                                training=True, augment=d["augment"], seed=int(cfg["train"]["seed"]),
                                cache=d["cache"], shuffle_buffer=d["shuffle_buffer"])
        val_ds = make_dataset(list(files[val]), data.labels[val], image_size=size, batch_size=batch, cache=d["cache"])
        steps = int(cfg["train"]["steps_per_epoch"]) or -(-len(train) // batch)
        return train_ds, val_ds, steps

    def build(self, cfg, data, split, run_dir):
        from rsic.models import build_model

        model = build_model(cfg["model"], len(data.class_names))
        return model, model

    def label_loss(self, cfg):
        import tf_keras as keras

        return keras.losses.SparseCategoricalCrossentropy()

    # -- evaluation --------------------------------------------------------------------------

    def examples(self, cfg, data, items):
        from rsic.features import load_images

        items = np.asarray(items, np.int64)
        return load_images([data.files[i] for i in items], int(cfg["model"]["input_size"])), data.labels[items]

    def metric(self, labels, outputs):
        return accuracy_metric(labels, outputs)

    def evaluate(self, model, cfg, data, items):
        """accuracy, per_class_accuracy (recall of each class); the confusion matrix goes to `pictures`."""
        from rsic.features import predict_probs

        items = np.asarray(items, np.int64)
        probs = predict_probs(model, [data.files[i] for i in items], int(cfg["model"]["input_size"]),
                              int(cfg["train"]["batch_size"]))
        metrics, matrix = classification_metrics(data.labels[items], probs, data.class_names)
        self._last = (id(model), len(items), matrix)
        return metrics

    def pictures(self, out_dir, model, cfg, data, items):
        """OUT/confusion_matrix.csv and .png of the evaluation just made."""
        if self._last is None or self._last[:2] != (id(model), len(items)):
            self.evaluate(model, cfg, data, items)
        matrix = self._last[2]
        write_confusion_matrix(out_dir, matrix, data.class_names, np.trace(matrix) / max(matrix.sum(), 1))

    # -- command line and prediction -----------------------------------------------------------

    def add_arguments(self, command, parser):
        if command in ("train", "distill", "evaluate", "predict"):
            add_shorthand(parser, "--skip-bad", "data.skip_bad", nargs=0,
                          help="skip unreadable images (listed in one line) instead of stopping")

    def predict(self, model, cfg, inputs, out, args):
        from common.predictions import write_class_predictions
        from common.runner import LABELS_FILE, read_labels, say
        from rsic.features import predict_probs

        files = D.collect_images(inputs, skip_bad=cfg["data"]["skip_bad"], log=lambda line: say(f"rsic: {line}"))
        probs = predict_probs(model, files, int(cfg["model"]["input_size"]), int(cfg["train"]["batch_size"]))
        write_class_predictions(out, files, probs, read_labels(Path(args.run) / LABELS_FILE))
        return f"{len(files)} predictions -> {out}"

    def edge_predict(self, tflite_path, inputs, out, args):
        from rsic.edge import predict

        files, _ = predict(tflite_path, inputs, out, skip_bad=bool(getattr(args, "skip_bad", None)))
        return f"{len(files)} predictions -> {out}"

    # -- sample, download, demo, extra commands ----------------------------------------------------

    def add_sample_arguments(self, parser):
        parser.add_argument("--classes", type=int, default=5, help="number of classes (default 5)")
        parser.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
        parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
        parser.add_argument("--seed", type=int, default=0)

    def sample(self, out, args):
        from rsic.sample import write_sample

        classes, per_class, size, seed = (args.classes, args.per_class, args.size, args.seed) if args else (5, 40, 64, 0)
        write_sample(out, classes=classes, per_class=per_class, size=size, seed=seed)
        return f"wrote {out}: {classes} classes x {per_class} images of {size}x{size}"

    def add_download_arguments(self, parser):
        from rsic.download import SHA256, URL

        parser.add_argument("--url", default=URL, help="archive URL (default: the pinned torchgeo mirror)")
        parser.add_argument("--sha256", default=SHA256, help="expected SHA-256 of the archive")
        parser.add_argument("--weights", metavar="BACKBONE[,BACKBONE...]|all",
                            help="fetch these backbones' no-top ImageNet weights into the Keras cache "
                                 "(~/.keras/models) for offline training; --dest is then optional")
        parser.add_argument("--alpha", type=float, default=1.0,
                            help="MobileNet/MobileNetV2 width multiplier of --weights (default 1.0)")
        parser.add_argument("--input-size", type=int, default=224,
                            help="MobileNet/MobileNetV2 input side of --weights (default 224)")

    def download_needs_dest(self, args):
        return not args.weights

    def download(self, dest, args):
        from rsic.download import download, download_weights, weights_backbones

        lines = []
        if args.weights:
            names = weights_backbones(args.weights)  # every name checked before any download
            paths = download_weights(names, alpha=args.alpha, size=args.input_size)
            lines.append(f"ImageNet weights of {len(paths)} backbone(s) in {paths[0].parent}: "
                         + ", ".join(path.name for path in paths))
        if dest:
            root, classes, images = download(dest, url=args.url, sha256=args.sha256, quiet=args.quiet)
            lines.append(f"NWPU-RESISC45 is in {root}: {classes} classes, {images} images; use it with --data {root}")
        return "; ".join(lines)

    def demo_plan(self):
        """A tiny MobileNetV2 teacher, then a student distilled from it; both exported."""
        return [DemoRun("teacher", "tiny.yaml", export=True),
                DemoRun("student", "tiny_student.yaml", teacher="teacher", export=True)]

    def commands(self):
        def arguments(parser):
            parser.add_argument("--out", required=True, help="folder for OUT/<backbone>/ runs and benchmark.json/.md")
            parser.add_argument("--backbones", help="comma-separated backbone names (default: benchmark.backbones)")
            parser.add_argument("--overwrite", action="store_true", help="train and export again over finished runs")
            add_shorthand(parser, "--skip-bad", "data.skip_bad", nargs=0,
                          help="skip unreadable images (listed in one line) instead of stopping")

        from rsic import paper

        return [Command("benchmark", "train, evaluate and export a list of backbones -> OUT/benchmark.json/.md",
                        arguments, self._benchmark, common_args=True),
                Command("paper3", "paper 3's table: benchmark -> best run(s) as teacher(s) -> distilled student "
                                  "-> int8 -> OUT/paper3.md, paper3.json (resumable)",
                        lambda parser: paper.add_arguments(parser, 3), lambda args: paper.run_paper3(self, args)),
                Command("paper4", "paper 4's table: benchmark of its candidates -> attention model on the best "
                                  "-> int8 within 20 MB -> OUT/paper4.md, paper4.json (resumable)",
                        lambda parser: paper.add_arguments(parser, 4), lambda args: paper.run_paper4(self, args))]

    def _benchmark(self, args):
        from common.runner import load_task_config
        from rsic.paper import run_benchmark

        cfg = load_task_config(self, args.config, args.overrides, args.data)
        if args.backbones:
            cfg["benchmark"]["backbones"] = [b.strip() for b in args.backbones.split(",") if b.strip()]
        run_benchmark(self, cfg, args.out, overwrite=args.overwrite)
