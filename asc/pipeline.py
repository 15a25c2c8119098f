"""The steps behind the asc commands: train, distill, evaluate, predict, export, complexity, demo.

Each step takes a resolved config (see asc.config) and paths, prints short progress lines and
returns a dict of what it measured; asc.cli only parses arguments.
"""

import time
from pathlib import Path

import numpy as np

from asc import features as feats
from asc.data import SCENE_GROUPS, SCENES, ClipReport, make_dataset, open_dataset
from common.errors import ConfigError, DataError, RunDirError
from common.io import write_json


def _data_root(cfg):
    root = cfg["data"]["root"]
    if not root:
        raise ConfigError("--data: no data folder given (and the run does not name one)")
    return Path(root)


def load_split(cfg, split, say=print):
    """Features, labels and clips of one split, through the feature cache.

    Returns:
        (x float32 (N, bins, frames, kinds) or a lazy `CachedFeatures` view of it, labels int (N,),
        list of Clip, list of class names).
    """
    root = _data_root(cfg)
    dataset = open_dataset(root, split, cfg["data"]["classes"], cfg["data"]["val_fraction"])
    names = [c.filename for c in dataset.clips]
    cache = feats.default_cache_path(root, cfg["features"])
    x = feats.cached_features(root, names, cfg["features"], cache, say, max_gb=cfg["data"]["in_memory_gb"])
    labels = np.array([c.label for c in dataset.clips], np.int64)
    return x, labels, dataset.clips, dataset.classes


def build_all_features(cfg, out=None, say=print):
    """Compute (or reuse) the cache of every clip of the data set (the `features` command)."""
    root = _data_root(cfg)
    feats.check_config(cfg["features"])
    names = []
    for split in ("train", "evaluate"):
        try:
            names += [c.filename for c in open_dataset(root, split, cfg["data"]["classes"], cfg["data"]["val_fraction"]).clips]
        except DataError:
            if split == "train":
                raise
    if (root / "meta.csv").is_file():
        names += [c.filename for c in open_dataset(root, "all", cfg["data"]["classes"]).clips]
    path = Path(out) if out else feats.default_cache_path(root, cfg["features"])
    path, counts = feats.build_cache(root, names, cfg["features"], path, say)
    say(f"{path}: {counts['computed']} computed, {counts['reused']} reused, shape {feats.input_shape(cfg['features'])}")
    return {"path": str(path), **counts}


def _accuracy_metric(labels, probs):
    return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(labels)))


def _build_student_or_teacher(cfg, num_classes):
    from asc.models import build_model

    return build_model(feats.input_shape(cfg["features"]), num_classes, cfg["model"], cfg["features"]["kinds"])


def recalibrate_batchnorm(model, batches):
    """Set every BatchNormalization's moving mean and variance to the average statistics of `batches`.

    In a short run on little data the moving averages lag far behind weights that still change
    fast, and inference (which uses them) falls to chance while training-mode predictions are
    right. Averaging the batch statistics of the current weights over some training batches
    removes the lag (the "BN re-estimation" of SWA and NAS).

    Args:
        model: keras.Model (for a Distiller, pass its student).
        batches: iterable of input batches (B, bins, frames, kinds).
    """
    import tf_keras as keras

    norms = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization) and m.trainable]
    saved = [n.momentum for n in norms]
    try:
        for k, x in enumerate(batches, start=1):
            for n in norms:
                n.momentum = (k - 1) / k  # running mean of the batch statistics
            model(x, training=True)
    finally:
        for n, momentum in zip(norms, saved):
            n.momentum = momentum


def _recalibration_callback(x_train, batch_size, batches):
    """A callback that re-estimates BN statistics on `batches` plain training batches before each validation."""
    import tf_keras as keras

    class RecalibrateBatchNorm(keras.callbacks.Callback):
        def _recalibrate(self):
            net = getattr(self.model, "student", self.model)
            chunks = (x_train[i : i + batch_size] for i in range(0, min(len(x_train), batches * batch_size), batch_size))
            recalibrate_batchnorm(net, chunks)

        def on_test_begin(self, logs=None):
            self._recalibrate()

        def on_train_end(self, logs=None):
            if self.params.get("do_validation") is False:
                self._recalibrate()

    return [RecalibrateBatchNorm()] if batches > 0 else []


def _datasets(cfg, say):
    x_train, y_train, _, classes = load_split(cfg, "train", say)
    x_val, y_val, _, _ = load_split(cfg, "evaluate", say)
    cfg["data"]["classes"] = list(classes)
    t = cfg["train"]
    train_ds = make_dataset(
        x_train, y_train, len(classes), t["batch_size"], shuffle=True,
        mixup_alpha=cfg["augment"]["mixup_alpha"], seed=t["seed"],
    )  # fmt: skip
    val_ds = make_dataset(x_val, y_val, len(classes), t["batch_size"])
    steps = t["steps_per_epoch"] or int(np.ceil(len(y_train) / t["batch_size"]))
    order = np.random.default_rng(t["seed"]).permutation(len(y_train))
    some = np.sort(order[: t["bn_recalibration_batches"] * t["batch_size"]])
    callbacks = _recalibration_callback(x_train[some], t["batch_size"], t["bn_recalibration_batches"])
    return train_ds, val_ds, classes, steps, callbacks


def train(cfg, out, *, resume=False, overwrite=False, say=print):
    """Train the teacher or student of `cfg` on `data.root`; writes a run directory at `out`.

    Returns:
        dict: run, params, macs, val_accuracy (best epoch).
    """
    import tf_keras as keras

    from common.train import fit, make_optimizer, prepare_run_dir

    feats.check_config(cfg["features"])
    train_ds, val_ds, classes, steps, callbacks = _datasets(cfg, say)
    run_dir = prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite)

    def build():
        model = _build_student_or_teacher(cfg, len(classes))
        model.compile(
            optimizer=make_optimizer(cfg["train"], steps),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        return model

    say(f"training the {cfg['model']['kind']} ({cfg['features']['kinds']}) -> {run_dir}")
    model, history = fit(build, train_ds, val_ds, cfg["train"], run_dir, extra_callbacks=callbacks)
    return _finish_training(model, history, run_dir, say)


def _finish_training(model, history, run_dir, say):
    from asc.models import complexity

    c = complexity(model)
    best = max(history.history.get("val_accuracy", [float("nan")]))
    result = {"run": str(run_dir), "params": c["params"], "macs": c["macs"], "val_accuracy": float(best)}
    say(f"{run_dir}: {c['params']:,} params, {c['macs'] / 1e6:.2f} M MACs, best val accuracy {best:.3f}")
    return result


def distill(cfg, out, teacher_run, *, resume=False, overwrite=False, say=print):
    """Train the student of `cfg` with labels plus the teacher's embeddings (and optionally KD).

    The teacher run must use the same features (same input). Writes a run directory at `out`
    whose model.keras is the student alone.
    """
    import tf_keras as keras

    import asc.models  # noqa: F401  (the student's layers)
    from common.config import read_saved_config
    from common.distill import Distiller
    from common.train import fit, load_run_model, make_optimizer, prepare_run_dir

    teacher_run = Path(teacher_run)
    teacher_cfg = read_saved_config(teacher_run / "config.yaml")
    if feats.feature_hash(teacher_cfg.get("features", {})) != feats.feature_hash(cfg["features"]):
        raise ConfigError(f"{teacher_run}: the teacher was trained on other features than this config's 'features'")
    if cfg["model"]["kind"] != "student":
        say("note: model.kind is not 'student'; distilling into it anyway")
    feats.check_config(cfg["features"])
    train_ds, val_ds, classes, steps, callbacks = _datasets(cfg, say)
    if list(teacher_cfg.get("data", {}).get("classes", classes)) != list(classes):
        raise ConfigError(f"{teacher_run}: the teacher was trained on other classes than the data in --data")
    run_dir = prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite)
    d = cfg["distill"]

    def build():
        teacher = load_run_model(teacher_run)
        student = _build_student_or_teacher(cfg, len(classes))
        distiller = Distiller(
            student, teacher, label_loss=keras.losses.CategoricalCrossentropy(),
            label_weight=d["label_weight"], kd_weight=d["kd_weight"], temperature=d["temperature"],
            embedding_weight=d["embedding_weight"],
        )  # fmt: skip
        distiller.compile(optimizer=make_optimizer(cfg["train"], steps), metrics=["accuracy"])
        return distiller

    write_json(run_dir / "teacher.json", {"teacher_run": str(teacher_run.resolve())})
    say(f"distilling {teacher_run} into the student (lambda={d['embedding_weight']}) -> {run_dir}")
    model, history = fit(
        build, train_ds, val_ds, cfg["train"], run_dir, final_model_fn=lambda m: m.student, extra_callbacks=callbacks
    )
    return _finish_training(model, history, run_dir, say)


def run_config(run_dir, overrides=(), data=None):
    """The resolved config of a run directory, with overrides and `--data` applied."""
    from asc.config import load

    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
    return load(path, overrides, data)


def _load_model(run_dir):
    import asc.models  # noqa: F401
    from common.train import load_run_model

    return load_run_model(run_dir)


def scores(labels, probs, clips, classes):
    """Accuracy and log loss overall, per device, per class, and for the 3-class grouping.

    Args:
        labels: int (N,); probs: float (N, C); clips: list of Clip; classes: list of C names.

    Returns:
        dict with accuracy, log_loss, per_device, per_class, groups (None unless the classes are
        the DCASE scenes), confusion_matrix, classes, clips.
    """
    from common.metrics import ConfusionMatrix, log_loss

    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    pred = probs.argmax(axis=1)

    def part(mask):
        return {
            "accuracy": float(np.mean(pred[mask] == labels[mask])),
            "log_loss": log_loss(labels[mask], probs[mask]),
            "clips": int(mask.sum()),
        }

    cm = ConfusionMatrix(len(classes))
    cm.update(labels, pred)
    devices = np.array([c.device for c in clips])
    result = {
        **part(np.ones(len(labels), bool)),
        "per_device": {str(d): part(devices == d) for d in sorted(set(devices))},
        "per_class": {name: part(labels == i) for i, name in enumerate(classes) if np.any(labels == i)},
        "confusion_matrix": cm.matrix.tolist(),
        "classes": list(classes),
        "groups": None,
    }
    if sorted(classes) == sorted(SCENES):
        names = list(SCENE_GROUPS)
        group_of = np.array([next(g for g in names if c in SCENE_GROUPS[g]) for c in classes])
        group_probs = np.stack([probs[:, group_of == g].sum(axis=1) for g in names], axis=1)
        group_labels = np.array([names.index(group_of[i]) for i in labels])
        group_pred = group_probs.argmax(axis=1)
        result["groups"] = {
            "accuracy": float(np.mean(group_pred == group_labels)),
            "log_loss": log_loss(group_labels, group_probs),
            "groups": SCENE_GROUPS,
        }
    return result


def _predict(model, x, chunk=1024):
    """Probabilities (N, C) for an array or a lazy `CachedFeatures`, `chunk` clips at a time."""
    if isinstance(x, np.ndarray):
        return model.predict(x, batch_size=64, verbose=0)
    parts = [model.predict(x[i : i + chunk], batch_size=64, verbose=0) for i in range(0, len(x), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def evaluate(cfg, run_dir, say=print):
    """Evaluate the run's model on the evaluate split; writes metrics.json and confusion_matrix.png."""
    from common.plots import plot_confusion_matrix

    run_dir = Path(run_dir)
    model = _load_model(run_dir)
    x, labels, clips, classes = load_split(cfg, "evaluate", say)
    probs = _predict(model, x)
    result = scores(labels, probs, clips, classes)
    write_json(run_dir / "metrics.json", result)
    plot_confusion_matrix(np.array(result["confusion_matrix"]), classes, run_dir / "confusion_matrix.png")
    _write_pictures(run_dir, cfg, x, clips, classes)
    say(f"{run_dir}: accuracy {result['accuracy']:.3f}, log loss {result['log_loss']:.3f} on {len(labels)} clips")
    if result["groups"]:
        say(f"  3-class (indoor/outdoor/transportation) accuracy {result['groups']['accuracy']:.3f}")
    return result


SPECTROGRAM_TITLES = {"logmel": "log-Mel", "gammatone": "Gammatone", "cqt": "CQT"}


def _write_pictures(run_dir, cfg, x, clips, classes):
    """RUN/training_curves.png and RUN/spectrograms.png (the first evaluate clip's spectrograms)."""
    from common.plots import plot_history, plot_spectrograms
    from common.train import read_history

    history = read_history(run_dir)
    if history:
        plot_history(history, run_dir / "training_curves.png", title=f"training: {run_dir.name}")
    if len(clips):
        names = [SPECTROGRAM_TITLES[kind] for kind in cfg["features"]["kinds"]]
        title = f"{clips[0].filename} ({classes[clips[0].label]})"
        plot_spectrograms(np.asarray(x[0]), names, run_dir / "spectrograms.png", title=title)


def predict(cfg, run_dir, inputs, out_csv, say=print, tflite=False):
    """Predict the scene of wav files (or every wav under folders); writes a CSV.

    CSV columns: filename, scene_label, then one probability column per class. With `tflite`,
    the run's exported model_int8.tflite runs (LiteRT, as on a device; `asc.edge.predict`)
    instead of model.keras.

    Returns:
        list of (filename, predicted label) pairs.
    """
    from asc import edge

    run_dir = Path(run_dir)
    if tflite:
        path = run_dir / "model_int8.tflite"
        if not path.is_file():
            raise RunDirError(f"{path}: not found; run `python -m asc export --run {run_dir}` first")
        return edge.predict(path, inputs, out_csv, cfg=cfg, say=say)
    files = edge.wav_inputs(inputs)
    model = _load_model(run_dir)
    classes = cfg["data"]["classes"] or SCENES
    report = ClipReport()
    x = feats.compute_many([str(f) for f in files], cfg["features"], report)
    for line in report.lines():
        say(line)
    probs = model.predict(x, batch_size=64, verbose=0)
    result = edge.write_predictions(out_csv, files, probs, classes)
    say(f"{out_csv}: {len(files)} predictions")
    return result


def export(cfg, run_dir, say=print):
    """Export the run's model as int8 TFLite (common.export.export_tflite); returns its report.

    Writes model_int8.tflite, labels.txt and export_report.json (with float and int8 accuracy on
    the evaluate split) into the run directory.
    """
    from common.export import export_tflite

    run_dir = Path(run_dir)
    model = _load_model(run_dir)
    x_train, y_train, _, classes = load_split(cfg, "train", say)
    x_eval, y_eval, _, _ = load_split(cfg, "evaluate", say)
    e = cfg["export"]
    rng = np.random.default_rng(cfg["train"]["seed"])
    calib = x_train[np.sort(rng.permutation(len(x_train))[: e["calibration_clips"]])]
    # export_tflite checks parity and accuracy on (at most) the first 256 held-out clips: take a
    # random 256 so that they cover every class and device (the fold files are sorted by scene).
    order = np.sort(rng.permutation(len(y_eval))[:256])
    x_eval, y_eval = x_eval[order], y_eval[order]
    qat = e["mode"] != "ptq"
    say(f"exporting {run_dir / 'model_int8.tflite'} ({e['mode']})")
    report = export_tflite(
        model, calib, run_dir / "model_int8.tflite", mode=e["mode"],
        train_data=make_dataset(x_train, y_train, len(classes), cfg["train"]["batch_size"], shuffle=True) if qat else None,
        loss="categorical_crossentropy" if qat else None,
        qat_epochs=e["qat_epochs"], qat_lr=e["qat_lr"], heldout=x_eval, heldout_labels=y_eval,
        metric=_accuracy_metric, metric_name="accuracy", size_budget_mb=e["size_budget_mb"], labels=classes,
    )  # fmt: skip
    say(
        f"{report['path']}: {report['tflite_bytes']:,} bytes ({report['quantization']}), accuracy float "
        f"{report['keras_metric']:.3f} / int8 {report['tflite_metric']:.3f}, agreement {report['agreement']:.3f}"
    )
    return report


def complexity_report(cfg, run_dir=None, say=print):
    """Parameters, MACs and int8 bytes of the model of `cfg` (or of `run_dir`'s model).

    The int8 size is the exported model's size when `run_dir` holds model_int8.tflite, else the
    estimate of one byte per parameter.

    Returns:
        dict: params, macs, int8_bytes, int8_bytes_source, within_limits, max_params, max_macs.
    """
    from asc.models import complexity

    feats.check_config(cfg["features"])
    if run_dir is not None:
        model = _load_model(run_dir)
    else:
        num_classes = len(cfg["data"]["classes"]) or len(SCENES)
        model = _build_student_or_teacher(cfg, num_classes)
    c = complexity(model)
    tflite = Path(run_dir) / "model_int8.tflite" if run_dir is not None else None
    if tflite is not None and tflite.is_file():
        c["int8_bytes"], c["int8_bytes_source"] = tflite.stat().st_size, str(tflite)
    else:
        c["int8_bytes"], c["int8_bytes_source"] = c["int8_bytes_estimate"], "estimate: 1 byte per parameter"
    verdict = "within" if c["within_limits"] else "OVER"
    say(f"parameters: {c['params']:,} (limit {c['max_params']:,})")
    say(f"MACs per clip: {c['macs']:,} ({c['macs'] / 1e6:.2f} M, limit {c['max_macs'] / 1e6:.0f} M)")
    say(f"int8 bytes: {c['int8_bytes']:,} ({c['int8_bytes_source']})")
    say(f"{verdict} the DCASE 2023 Task 1 limits")
    return c


# The demo's student trains briefly and is quantized after training (QAT takes minutes more);
# `--set` options of the demo command come after these and win.
DEMO_STUDENT_OVERRIDES = ["train.epochs=12", "train.batch_size=16", "train.verbose=0", "export.mode=ptq"]


def demo(out, *, per_class=20, overrides=(), config_dir=None, say=print):
    """sample -> features -> teacher_tiny -> distilled student -> evaluate -> export; summary.json.

    Args:
        out: str or Path, the demo folder (data/, teacher/, student/, summary.json).
        per_class: int, sample clips per scene.
        overrides: `--set` strings applied to both configs (e.g. "train.epochs=2").
        config_dir: folder of teacher_tiny.yaml and student.yaml; default configs/asc of the repo.

    Returns:
        the summary rows (list of dicts, see docs/ARCHITECTURE.md).
    """
    from asc.config import load
    from asc.sample import write_sample
    from common.tflite_runtime import TFLiteModel

    out = Path(out)
    config_dir = Path(config_dir) if config_dir else Path(__file__).resolve().parent.parent / "configs" / "asc"
    started = time.time()
    data = out / "data"
    if not (data / "meta.csv").is_file():
        say(f"writing sample data ({per_class} clips per scene) -> {data}")
        write_sample(data, per_class=per_class, seed=0)
    teacher_cfg = load(config_dir / "teacher_tiny.yaml", overrides, data)
    student_cfg = load(config_dir / "student.yaml", [*DEMO_STUDENT_OVERRIDES, *overrides], data)
    build_all_features(teacher_cfg, say=say)
    teacher = train(teacher_cfg, out / "teacher", overwrite=True, say=say)
    student = distill(student_cfg, out / "student", out / "teacher", overwrite=True, say=say)
    teacher_metrics = evaluate(teacher_cfg, out / "teacher", say)
    student_metrics = evaluate(student_cfg, out / "student", say)
    report = export(student_cfg, out / "student", say)
    x_eval = load_split(student_cfg, "evaluate", say=lambda _: None)[0]
    latency = TFLiteModel(report["path"]).latency_ms(x_eval[0])
    rows = [
        {
            "task": "asc", "model": "teacher_tiny", "params": teacher["params"], "macs": teacher["macs"],
            "metric_name": "accuracy", "float_metric": teacher_metrics["accuracy"], "int8_metric": None,
            "tflite_bytes": None, "latency_ms": None,
        },
        {
            "task": "asc", "model": "student", "params": student["params"], "macs": student["macs"],
            "metric_name": "accuracy", "float_metric": student_metrics["accuracy"],
            "int8_metric": report["tflite_metric"], "tflite_bytes": report["tflite_bytes"],
            "latency_ms": round(latency, 3),
        },
    ]  # fmt: skip
    write_json(out / "summary.json", rows)
    say(f"{out / 'summary.json'}: demo done in {time.time() - started:.0f} s")
    for row in rows:
        say("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    return rows
