"""Acoustic scene classification (DCASE 2023 Task 1, paper 2) as a common.task.Task.

Items of a split are `asc.data.Clip`s, named in split.json by their root-relative file names. The
reported split is the data set's own `evaluate`; under `train.select_on: inner` (the default) the
epoch is chosen on `val`, a seeded `data.inner_val_fraction` of each class's recordings of the
training part (`asc.data.recording_id`: one recording's segments and devices stay together).
Model inputs come from the feature cache (asc.features), computed once.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asc import features as feats
from asc.config import DEFAULTS
from asc.data import SCENE_GROUPS, SCENES, open_dataset, recording_id
from common.errors import ConfigError, DataError
from common.runner import say
from common.task import Command, DemoRun, Task, carve_inner

SPECTROGRAM_TITLES = {"logmel": "log-Mel", "gammatone": "Gammatone", "cqt": "CQT"}
# The demo's student trains briefly, is quantized after training (QAT takes minutes more) and is
# exported for microcontrollers too; the demo command's own `--set` options win.
DEMO_STUDENT_OVERRIDES = ["train.epochs=12", "train.batch_size=16", "export.mode=ptq",
                          "export.target=mcu"]


@dataclass
class AscData:
    """An opened data set: its root, class names (index order) and the clips of its two splits."""
    root: Path
    classes: list
    train: list
    evaluate: list


def _say(line):
    say(f"asc: {line}")


def accuracy(labels, probs):
    return float(np.mean(np.argmax(np.asarray(probs), axis=-1) == np.asarray(labels)))


def scores(labels, probs, clips, classes):
    """metrics.json of labels (N,), probabilities (N, C) and their clips: accuracy and log loss
    overall, `per_device` and `per_class` (with examples), `groups` (the 3-class grouping; None
    unless the classes are the DCASE scenes), `confusion_matrix` and `classes`."""
    from common.metrics import ConfusionMatrix, log_loss

    labels, probs = np.asarray(labels), np.asarray(probs, np.float64)

    def part(mask, labels=labels, probs=probs):
        return {"accuracy": accuracy(labels[mask], probs[mask]),
                "log_loss": log_loss(labels[mask], probs[mask]), "examples": int(mask.sum())}

    cm = ConfusionMatrix(len(classes))
    cm.update(labels, probs.argmax(axis=1))
    devices = np.array([c.device for c in clips])
    result = {**part(np.ones(len(labels), bool)),
              "per_device": {str(d): part(devices == d) for d in sorted(set(devices))},
              "per_class": {name: part(labels == i) for i, name in enumerate(classes)
                            if np.any(labels == i)},
              "confusion_matrix": cm.matrix.tolist(), "classes": list(classes), "groups": None}
    del result["examples"]
    if sorted(classes) == sorted(SCENES):
        names = list(SCENE_GROUPS)
        group = np.array([next(i for i, g in enumerate(names) if c in SCENE_GROUPS[g])
                          for c in classes])
        group_probs = np.stack([probs[:, group == i].sum(axis=1) for i in range(len(names))], 1)
        result["groups"] = {**part(np.ones(len(labels), bool), group[labels], group_probs),
                            "groups": SCENE_GROUPS}
        del result["groups"]["examples"]
    return result


build_all_features = feats.build_data_cache  # the `features` command, as asc/bench.py imports it


def _complexity_arguments(parser):
    from common.model_files import add_unsafe_load_arg

    parser.add_argument("--run", help="a run directory (its model and exported size) instead of --config")
    add_unsafe_load_arg(parser)


def complexity_report(model, tflite=None, say=_say):
    """`asc.models.complexity` of `model` and the `tflite` file, said in four lines."""
    from asc.models import complexity

    c = complexity(model, tflite)
    say(f"parameters: {c['params']:,} (limit {c['max_params']:,})")
    say(f"MACs per clip: {c['macs']:,} ({c['macs'] / 1e6:.2f} M, limit {c['max_macs'] / 1e6:.0f} M)")
    say(f"int8 bytes: {c['int8_bytes']:,} ({c['int8_bytes_source']})")
    say(f"{'within' if c['within_limits'] else 'OVER'} the DCASE 2023 Task 1 limits")
    return c


def build_model(cfg, num_classes):
    """The teacher or student of `cfg` (not compiled)."""
    from asc.models import build_model as build

    return build(feats.input_shape(cfg["features"]), num_classes, cfg["model"], cfg["features"]["kinds"])


class AscTask(Task):
    name = "asc"
    defaults = DEFAULTS
    description = "Acoustic scene classification, DCASE 2023 Task 1 (multi-spectrogram teacher -> student)"
    config_dir = Path(__file__).resolve().parents[1] / "configs" / "asc"
    train_config = "teacher.yaml"
    distill_config = "student.yaml"
    metric_name = "accuracy"
    reported_split = "evaluate"
    classifier = True

    def describe(self, cfg):
        m, kinds = cfg["model"], cfg["features"]["kinds"]
        block = "residual" if m["kind"] == "teacher" else "depthwise-separable"
        return f"{m['kind']}, {len(kinds)} x {block} CNN ({'+'.join(kinds)})"

    # -- data --------------------------------------------------------------------------------

    def open_data(self, cfg):
        """Both splits of the data set; `data.classes` is set to its classes (the run keeps them)."""
        d = cfg["data"]
        feats.check_config(cfg["features"])
        train, evaluate = (open_dataset(d["root"], split, d["classes"], d["val_fraction"])
                           for split in ("train", "evaluate"))
        d["classes"] = list(train.classes)
        return AscData(Path(d["root"]), list(train.classes), train.clips, evaluate.clips)

    def class_names(self, data):
        return data.classes

    def make_split(self, cfg, data):
        if cfg["train"]["select_on"] == "reported":
            return {"train": list(data.train), "evaluate": list(data.evaluate)}
        d = cfg["data"]
        train, inner = carve_inner(list(data.train), d["inner_val_fraction"], d["split_seed"],
                                   groups=[recording_id(clip.filename) for clip in data.train],
                                   labels=[clip.label for clip in data.train])
        return {"train": train, "val": inner, "evaluate": list(data.evaluate)}

    def check_split(self, cfg, data, split):
        """The feature cache of every clip of every split (`datasets` then finds it complete):
        each clip is read by `read_wav`, so a bad one (unreadable, NaN/Inf samples, wrong rate)
        stops here, before the run directory exists."""
        names = [clip.filename for clips in split.values() for clip in clips]
        feats.build_cache(data.root, names, cfg["features"], None, _say)

    def split_info(self, cfg, split):
        return {"inner_val_fraction": cfg["data"]["inner_val_fraction"],
                "seed": cfg["data"]["split_seed"]}

    def split_ids(self, data, split):
        return {name: [clip.filename for clip in clips] for name, clips in split.items()}

    def split_from_ids(self, data, ids):
        known = {clip.filename: clip for clip in [*data.train, *data.evaluate]}
        missing = [name for names in ids.values() for name in names if name not in known]
        if missing:
            raise DataError(f"{data.root / missing[0]}: in the run's split.json but not in the "
                            "data set")
        return {split: [known[name] for name in names] for split, names in ids.items()}

    def all_items(self, data):
        if (data.root / "meta.csv").is_file():
            return open_dataset(data.root, "all", data.classes).clips
        return [*data.train, *data.evaluate]

    # -- training ----------------------------------------------------------------------------

    def register_layers(self):
        import asc.models  # noqa: F401

    def check_teacher(self, cfg, teacher_cfg, teacher_run):
        if feats.feature_hash(teacher_cfg.get("features", {})) != feats.feature_hash(cfg["features"]):
            raise ConfigError(f"{teacher_run}: the teacher was trained on other features than this "
                              "config's 'features'")
        if cfg["model"]["kind"] != "student":
            _say("note: model.kind is not 'student'; distilling into it anyway")

    def datasets(self, cfg, data, split):
        from asc.data import make_dataset

        self.register_layers()  # a teacher run loaded next holds asc layers
        names = [clip.filename for clips in split.values() for clip in clips]
        feats.build_cache(data.root, names, cfg["features"], None, _say)
        x_train, y_train = self.examples(cfg, data, split["train"])
        x_val, y_val = self.examples(cfg, data, split[self.selection_split(cfg)])
        t, n = cfg["train"], len(data.classes)
        train_ds = make_dataset(x_train, y_train, n, t["batch_size"], shuffle=True,
                                mixup_alpha=cfg["augment"]["mixup_alpha"], seed=t["seed"])
        steps = t["steps_per_epoch"] or -(-len(y_train) // t["batch_size"])
        return train_ds, make_dataset(x_val, y_val, n, t["batch_size"]), steps

    def callbacks(self, cfg, data, split):
        """BatchNorm re-estimation on a seeded pick of `train.bn_recalibration_batches` batches."""
        from asc.models import RecalibrateBatchNorm
        from common.runner import seeded_pick

        t = cfg["train"]
        if t["bn_recalibration_batches"] <= 0:
            return []
        some = seeded_pick(split["train"], t["bn_recalibration_batches"] * t["batch_size"],
                           t["seed"])
        return [RecalibrateBatchNorm(np.asarray(self.examples(cfg, data, some)[0]),
                                     t["batch_size"])]

    def build(self, cfg, data, split, run_dir):
        model = build_model(cfg, len(data.classes))
        return model, model

    def label_loss(self, cfg):
        import tf_keras as keras

        return keras.losses.CategoricalCrossentropy()  # one-hot (and mixup) labels

    # -- evaluation --------------------------------------------------------------------------

    def examples(self, cfg, data, items):
        """Cached spectrograms (a lazy view beyond `data.in_memory_gb`) and integer labels."""
        x = feats.cached_features(data.root, [clip.filename for clip in items], cfg["features"],
                                  None, _say, max_gb=cfg["data"]["in_memory_gb"])
        return x, np.array([clip.label for clip in items], np.int64)

    def metric(self, labels, outputs):
        return accuracy(labels, outputs)

    def evaluate(self, model, cfg, data, items):
        from common.runner import outputs

        x, labels = self.examples(cfg, data, items)
        return scores(labels, outputs(model, x, batch_size=64), items, data.classes)

    def score_line(self, metrics):
        line = f"accuracy {metrics['accuracy']:.3f}  log loss {metrics['log_loss']:.3f}"
        if metrics.get("groups"):
            line += f"  3-class accuracy {metrics['groups']['accuracy']:.3f}"
        return line

    def pictures(self, out_dir, model, cfg, data, items, metrics):
        """OUT/confusion_matrix.png (of the evaluation `metrics`) and OUT/spectrograms.png (the
        first clip's spectrograms)."""
        from common.plots import plot_confusion_matrix, plot_spectrograms

        plot_confusion_matrix(np.array(metrics["confusion_matrix"]), data.classes, Path(out_dir) / "confusion_matrix.png")
        if items:
            x, _ = self.examples(cfg, data, items[:1])
            names = [SPECTROGRAM_TITLES[kind] for kind in cfg["features"]["kinds"]]
            title = f"{items[0].filename} ({data.classes[items[0].label]})"
            plot_spectrograms(np.asarray(x[0]), names, Path(out_dir) / "spectrograms.png",
                              title=title)

    def write_frontend(self, cfg, run_dir, mcu_section):
        """The spectrogram front end for a firmware (asc.features.write_frontend)."""
        written = feats.write_frontend(cfg["features"], run_dir, model_input=mcu_section["input"])
        return {"inside_model": False, "files": [Path(f).name for f in written["files"]]}

    # -- command line and prediction -----------------------------------------------------------

    def add_arguments(self, command, parser):
        if command == "predict":
            parser.add_argument("--config", help="with --tflite: the config.yaml (or run "
                                "directory) the model was exported from; default the config.yaml "
                                "beside the model")

    def predict(self, model, cfg, inputs, out, *, run=None):
        """`run`: the run directory of `model` (its labels and the name in the CSV); None:
        the config's class names."""
        from asc.edge import classify, read_labels

        classes = read_labels(Path(run) / "model.keras", cfg) if run else read_labels(None, cfg)
        result = classify(lambda x: model.predict(x, batch_size=64, verbose=0), inputs, out, cfg,
                          classes, model_name=str(run or "model"), say=_say)
        return f"{out}: {len(result)} predictions (Keras model)"

    def edge_predict(self, tflite_path, inputs, out, *, config=None, overrides=()):
        """`config`: the config.yaml (or run directory) the model was exported from, None = the
        one beside the model; `overrides`: list of "KEY=VALUE" applied to it."""
        from asc import edge

        cfg = edge.edge_config(tflite_path, config, overrides)
        result = edge.predict(tflite_path, inputs, out, cfg=cfg, say=_say)
        return f"{out}: {len(result)} predictions ({Path(tflite_path).name}, LiteRT int8)"

    # -- sample, download, demo, extra commands ----------------------------------------------------

    def add_sample_arguments(self, parser):
        parser.add_argument("--per-class", type=int, default=30, help="clips per scene (default 30)")
        parser.add_argument("--seed", type=int, default=0)

    def sample(self, out, per_class=20, seed=0):
        """`per_class` clips per scene (the command line's default is 30), seeded."""
        from asc.sample import write_sample

        if per_class < 2:
            raise DataError(f"--per-class: need at least 2 clips per scene, got {per_class}")
        write_sample(out, per_class=per_class, seed=seed)
        return (f"wrote {out}: {10 * per_class} clips (10 scenes x {per_class}) in the TAU 2022 "
                "Mobile layout")

    def add_download_arguments(self, parser):
        from asc.download import RECORD, ZENODO_API

        parser.add_argument("--record", default=RECORD, help=f"Zenodo record id (default {RECORD})")
        parser.add_argument("--api", default=ZENODO_API,
                            help=f"Zenodo REST API (default {ZENODO_API})")

    def download(self, dest, *, record=None, api=None, quiet=False):
        """`record`: the Zenodo record id, `api`: the Zenodo REST API; None = asc.download's."""
        from asc.download import RECORD, ZENODO_API, download

        data = download(dest, record=record or RECORD, api=api or ZENODO_API, quiet=quiet, say=_say)
        clips = sum(1 for _ in (data / "audio").glob("*.wav"))
        return (f"TAU Urban Acoustic Scenes 2022 Mobile is in {data}: {clips} clips; use it with "
                f"--data {data}")

    def demo_plan(self):
        """teacher_tiny, then the student distilled from it, exported (LiteRT and mcu)."""
        return [DemoRun("teacher", "teacher_tiny.yaml"),
                DemoRun("student", "student.yaml", teacher="teacher", export=True,
                        overrides=DEMO_STUDENT_OVERRIDES)]

    def commands(self):
        from asc import paper

        return [
            Command("features", "compute the spectrogram cache of a data set (no TensorFlow)",
                    lambda p: p.add_argument("--out", help="cache file (.h5); default "
                                             "<data>/features.h5"),
                    self._features, tensorflow=False, common_args=True),
            Command("complexity", "parameters, MACs and int8 bytes; exit code 1 when over the "
                    "DCASE limits",
                    _complexity_arguments, self._complexity, common_args=True),
            # `summary`, as landslide and rsic name it: the same command.
            Command("summary", "the same as complexity (parameters, MACs and int8 bytes)",
                    _complexity_arguments, self._complexity, common_args=True),
            Command("paper2", "paper 2's table: teacher -> distilled student -> complexity -> int8 "
                              "-> OUT/paper2.md, paper2.json (resumable)",
                    paper.add_arguments, lambda args: paper.run(self, args))]

    def _features(self, args):
        from common.runner import load_task_config, need_data

        cfg = need_data(load_task_config(self, args.config, args.overrides, args.data, announce=True))
        feats.build_data_cache(cfg, args.out, _say)

    def _complexity(self, args):
        from common.runner import TFLITE_FILE, keras_model, load_task_config, run_config

        if args.run:
            run_config(self, args.run)  # RunDirError when it is not a run
            model, tflite = keras_model(self, args.run, unsafe_load=args.unsafe_load), Path(args.run) / TFLITE_FILE
        else:
            cfg = load_task_config(self, args.config, args.overrides, default=self.distill_config, announce=True)
            feats.check_config(cfg["features"])
            model, tflite = build_model(cfg, len(cfg["data"]["classes"]) or len(SCENES)), None
        return 0 if complexity_report(model, tflite)["within_limits"] else 1
