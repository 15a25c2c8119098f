"""The commands of every task, written once against the Task interface (common/task.py).

    train     config -> data check -> strategy -> run dir -> split.json + labels.txt -> fit
              -> metrics.json (the reported split) -> pictures
    distill   the same, with a frozen teacher run (common.distill.Distiller), on the teacher's split
    evaluate  a run's model (Keras or its int8 TFLite) on its reported split, another split or
              another data set; writes metrics*.json beside the run's own
    export    the files of one export target (common/export/: edge int8, gpu float16, weights8,
              mcu) calibrated on a seeded pick of training examples and checked on a seeded pick
              of reported examples; latency and sizes in the report, written once
    predict   a run's Keras model or an exported .tflite (no TensorFlow) on files and folders
    demo      sample data -> the task's demo plan -> summary.json (one row builder)

Every step prints one short line in one style (`say`); numbers are rounded for people.
"""

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.config import apply_override, load_config, read_saved_config
from common.errors import ConfigError, DataError, ExportError, RunDirError, did_you_mean
from common.io import write_json, write_text
from common.rundir import check_run_task

TFLITE_FILE = "model_int8.tflite"
SPLIT_FILE = "split.json"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
REPORT_FILE = "export_report.json"


def say(text):
    """The one progress style of every command: a plain line on stdout, flushed."""
    print(text, flush=True)


def warn(text):
    """Something the user should know while the command goes on: `warning: TEXT` on stdout, in
    the order of the progress lines (never Python's `WARNING:logger:` format)."""
    say(f"warning: {text}")


@dataclass
class RunResult:
    """What `train` and `distill` return: the run directory and its reported metrics."""

    run: Path
    metrics: dict
    history: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Configs and run directories


def config_path(task, path, default):
    """`path` as given, else the task's config folder's file of that name, else `default`
    (None when the task has no default file: its schema's defaults alone)."""
    if not path:
        return task.config_dir / default if default else None
    path = Path(path)
    if not path.is_file() and (task.config_dir / path).is_file():
        return task.config_dir / path
    return path


def load_task_config(task, path=None, overrides=(), data=None, default=None, announce=False):
    """The resolved config of a YAML file (or of the task's default), `--data` applied.
    `announce`: a command line without `--config` says which config it uses."""
    resolved = config_path(task, path, default or task.train_config)
    if resolved is not None and not resolved.is_file():
        names = sorted(p.name for p in task.config_dir.glob("*.yaml"))
        raise ConfigError(f"{resolved}: config file not found{did_you_mean(resolved.name, names)}; the configs in "
                          f"{task.config_dir} are {', '.join(names)}, or give the path of a YAML file")
    if announce and not path:
        say(f"{task.name}: config {_shown_path(resolved) if resolved else 'the built-in defaults'} "
            "(default; --config to choose)")
    cfg = load_config(resolved, overrides, defaults=task.defaults)
    if data:
        cfg["data"]["root"] = str(Path(data).resolve())
    return task.resolve_config(cfg)


def _shown_path(path):
    """`path` relative to the working directory when it is inside it (configs/TASK/NAME.yaml)."""
    import os

    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(path)


def run_config(task, run, overrides=(), data=None):
    """The config of a run directory (its config.yaml), overrides and `--data` applied."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise RunDirError(f"{run}: not a run directory (no config.yaml); run `python -m {task.name} train` first")
    check_run_task(run, task.name)
    cfg = load_config(run / "config.yaml", overrides, defaults=task.defaults)
    if data:
        cfg["data"]["root"] = str(Path(data).resolve())
    return cfg


def need_data(cfg):
    if not cfg["data"]["root"]:
        raise ConfigError("no data set: give --data DIR (or data.root in the config)")
    return cfg


def write_split(task, run, cfg, data, split, teacher=None, selection=None):
    """RUN/split.json (the task, identifiers of every split, the reported one and the one that chose
    the epoch named) and RUN/labels.txt.

    `teacher`: the teacher run(s) of a distilled run (see `teacher_runs`); split.json then has
    `teacher` (the first, as before ensembles) and `teachers` (all, absolute paths). `selection`:
    the split that chose the epoch when not `task.selection_split(cfg)` ("train": the fallback)."""
    ids = task.split_ids(data, split)
    teachers = [str(path.resolve()) for path in teacher_runs(teacher)] if teacher else []
    content = {
        "task": task.name,
        **task.split_info(cfg, split),
        "data": cfg["data"]["root"],
        "classes": list(task.class_names(data)),
        "reported": task.reported_split,
        "select_on": cfg["train"]["select_on"],
        "selection_split": selection or task.selection_split(cfg),
        "splits": list(ids),
        **({"teacher": teachers[0], "teachers": teachers} if teachers else {}),
        **ids,
    }
    write_json(Path(run) / SPLIT_FILE, content)
    write_labels(Path(run) / LABELS_FILE, task.class_names(data))


def read_split(task, run, data):
    """The split of `data` that RUN/split.json records."""
    path = Path(run) / SPLIT_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: no split file; was this run trained by `python -m {task.name} train`?")
    content = read_json(path)
    names = content.get("splits") or [k for k in ("train", "val", "test", "evaluate") if k in content]
    return task.split_from_ids(data, {name: content[name] for name in names}), content


def read_json(path):
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path}: unreadable JSON ({error})") from None


def write_labels(path, names):
    write_text(path, "".join(f"{name}\n" for name in names))


def read_labels(path):
    """Class names from a labels.txt (no TensorFlow)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# train / distill


def train(task, cfg, out, *, resume=False, overwrite=False, teacher=None, unsafe_load=False):
    """Train the model of `cfg` into the run directory `out`; evaluate it on the reported split.

    Args:
        task: a common.task.Task. cfg: resolved config. out: the run directory.
        resume, overwrite: see common.rundir.prepare_run_dir (which also locks `out` while this
            process trains it, and refuses an `out` that is, holds or lies in the data or a teacher).
        teacher: a trained run directory to distill from (common.distill.Distiller), or several
            (a list, or one string "RUN,RUN"): an ensemble of teachers; the student then trains on
            the (first) teacher's split, which every member must share.
        unsafe_load: load teacher model files that are not safe .keras zips (`--unsafe-load`).

    Returns:
        RunResult.
    """
    need_data(cfg)
    data = task.open_data(cfg)  # bad data is reported before TensorFlow starts
    teacher_model = None
    teachers = teacher_runs(teacher) if teacher is not None else []
    if teachers:
        split = _check_teacher(task, cfg, data, teachers)
    else:
        split = task.make_split(cfg, data)
    _check_init_from(task, cfg)  # a missing run or one of another task: one line, before TensorFlow
    selection = task.selection_split(cfg)
    fitting_split = split
    if not len(split.get(selection, [])):
        if selection == task.reported_split:
            raise DataError(f"{cfg['data']['root']}: the '{selection}' split is empty")
        # Too few examples to carve an inner split (a few per class): train anyway, the epoch chosen
        # on the training examples (un-augmented); split.json records selection_split "train".
        warn(f"the '{selection}' split that chooses the epoch is empty (too few examples); the epoch is "
             "chosen on the training examples instead (more data, or --set train.select_on=reported, avoids this)")
        selection = "train"
        fitting_split = {**split, task.inner_split: split["train"]}
    task.check_split(cfg, data, split)  # every split's values, before the run directory and TensorFlow

    from common import train as T

    T.start_strategy(cfg["train"])  # before any TensorFlow op (multi-worker needs it first)
    precision, why = T.resolve_precision(cfg["train"])
    if cfg["train"]["precision"] == "auto":
        say(f"{task.name}: precision {precision} ({why})")
        cfg["train"]["precision"] = precision  # the run's config.yaml says which was used
    from common.weight_gradients import resolve as resolve_weight_gradients

    matmul, why = resolve_weight_gradients(cfg["train"])
    if matmul:
        say(f"{task.name}: convolution weight gradients as matrix products on the layers where that is faster ({why})")
    keep_apart = [("--data", cfg["data"]["root"]), *(("--teacher", path) for path in teachers)]
    run = T.prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite, task=task.name,
                            keep_apart=keep_apart)
    write_split(task, run, cfg, data, split, teacher=teachers, selection=selection)
    train_ds, val_ds, steps = task.datasets(cfg, data, fitting_split)
    sizes = ", ".join(f"{name} {len(items)}" for name, items in split.items())
    say(f"{task.name}: training {task.describe(cfg)} on {sizes} (epoch chosen on {selection}) -> {run}")
    if teachers:
        from common.distill import TeacherEnsemble

        members = [keras_model(task, path, unsafe_load=unsafe_load) for path in teachers]
        # One model scores the teachers (mean probabilities); the Distiller takes the members.
        teacher_model = members[0] if len(members) == 1 else TeacherEnsemble(members)
    models, copied_layers = {}, []

    def build():
        training, models["inference"] = task.build(cfg, data, split, run)
        optimizer = T.make_optimizer(cfg["train"], steps)
        if teacher_model is not None and cfg["distill"].get("init_from_teacher"):
            from common.distill import init_from_teacher

            copied = init_from_teacher(training, members[0])
            say(f"{task.name}: student starts from the teacher's weights in {copied} layers (distill.init_from_teacher)")
        if cfg["train"]["init_from"]:
            copied_layers[:] = _start_from_run(task, cfg, data, training, optimizer)
        if teacher_model is None:
            task.compile(training, cfg, optimizer)
            return training
        from common.distill import Distiller

        d = cfg["distill"]
        distiller = Distiller(training, teacher_model, label_loss=task.label_loss(cfg),
                              label_weight=d["label_weight"], kd_weight=d["kd_weight"],
                              temperature=d["temperature"], embedding_weight=d["embedding_weight"],
                              # rsic's key (paper 3's student); other tasks always project
                              embedding_projection=d.get("embedding_projection", True))
        distiller.compile(optimizer=optimizer, metrics=["accuracy"])
        return distiller

    clock = time.perf_counter()
    with task.error_context():
        model, history = T.fit(build, train_ds, val_ds, cfg["train"], run,
                               final_model_fn=lambda _: models["inference"],
                               extra_callbacks=[*task.callbacks(cfg, data, fitting_split),
                                                *_progress_callbacks(task, cfg, copied_layers)])
    epochs = len(history.epoch)
    say(f"{task.name}: trained {epochs} epoch{'s' if epochs != 1 else ''} in {time.perf_counter() - clock:.0f} s")
    metrics = _evaluate_and_write(task, model, cfg, data, split[task.reported_split], run / METRICS_FILE,
                                  split_name=task.reported_split, teacher=teacher_model)
    if T.is_chief():
        _training_curves(run)
        task.pictures(run, model, cfg, data, split[task.reported_split], metrics)
    T.release_run_dir(run)
    return RunResult(run, metrics, dict(history.history))


def _check_init_from(task, cfg):
    """`train.init_from` (`--init-from RUN`): a trained run of this task, recorded as an absolute
    path in the run's config; `train.freeze_epochs` only with it (common/retrain.py)."""
    from common.retrain import check_freeze, check_source

    if cfg["train"]["init_from"]:
        cfg["train"]["init_from"] = str(check_source(task, cfg["train"]["init_from"]))
    check_freeze(cfg["train"])


def _start_from_run(task, cfg, data, model, optimizer):
    """Copy the `train.init_from` run's weights into `model`; say what was copied. Returns the
    copied layers (frozen for `train.freeze_epochs` epochs, the optimizer built for all)."""
    from common.retrain import init_from_run, prepare_optimizer

    copied, new, line = init_from_run(task, model, cfg["train"]["init_from"], list(task.class_names(data)))
    say(f"{task.name}: {line}")
    if int(cfg["train"]["freeze_epochs"]):
        if not new:
            raise ConfigError(f"config key 'train.freeze_epochs': every layer was copied from "
                              f"{cfg['train']['init_from']}, so no new layer can train first; set it to 0")
        prepare_optimizer(optimizer, model)
        epochs = int(cfg["train"]["freeze_epochs"])
        say(f"{task.name}: only the new layers train for the first {epochs} epoch{'s' if epochs != 1 else ''} "
            "(train.freeze_epochs)")
    return copied


def _progress_callbacks(task, cfg, copied_layers):
    """The epoch lines of `train` (common/progress.py) and, when retraining, the freezing."""
    from common.progress import EpochLog

    t = cfg["train"]
    callbacks = [EpochLog(task.name, t["epochs"], t["monitor"])]
    if t["init_from"] and int(t["freeze_epochs"]):
        from common.retrain import freeze_callback

        callbacks.append(freeze_callback(copied_layers, int(t["freeze_epochs"])))
    return callbacks


def teacher_runs(teacher):
    """The teacher run directories of `--teacher`: a path, a list of paths, or "RUN,RUN,..."."""
    items = [teacher] if isinstance(teacher, (str, Path)) else list(teacher)
    runs = []
    for item in items:
        parts = str(item).split(",") if isinstance(item, str) else [item]
        if any(not str(part).strip() for part in parts):
            raise ConfigError(f"--teacher: an empty run directory in {str(item)!r}; give RUN or RUN,RUN,...")
        runs += [Path(str(part).strip()) for part in parts]
    seen = set()
    for run in runs:
        if run.resolve() in seen:
            raise ConfigError(f"--teacher: {run} is given twice; an ensemble lists each teacher run once")
        seen.add(run.resolve())
    return runs


def _check_teacher(task, cfg, data, teachers):
    """The teachers' split of `data`, after checking that every teacher run fits this student:
    a trained run, inputs the student takes (`task.check_teacher`), the data's classes, and (for an
    ensemble) the first teacher's split."""
    if not task.distill_config:
        raise ConfigError(f"{task.name}: this task has no distillation")
    first = None
    for teacher in teachers:
        check_run_task(teacher, task.name)
        teacher_cfg = read_saved_config(teacher / "config.yaml") if (teacher / "config.yaml").is_file() else None
        if teacher_cfg is None or not (teacher / "model.keras").is_file():
            raise RunDirError(f"{teacher}: not a trained run directory (no config.yaml and model.keras); "
                              "train a teacher first")
        task.check_teacher(cfg, teacher_cfg, teacher)
        teacher_labels = read_labels(teacher / LABELS_FILE)
        if teacher_labels != list(task.class_names(data)):
            raise DataError(f"{cfg['data']['root']}: classes differ from the teacher's {teacher / LABELS_FILE}")
        split, content = read_split(task, teacher, data)
        _check_teacher_selection(task, cfg, split, content, teacher)
        ids = {name: content[name] for name in content.get("splits") or split}
        if first is None:
            first = (teacher, split, ids)
        elif ids != first[2]:
            raise RunDirError(f"{teacher / SPLIT_FILE}: its split differs from the first teacher's "
                              f"{first[0] / SPLIT_FILE}; ensemble teachers must be trained on one split")
    return first[1]


def _check_teacher_selection(task, cfg, split, content, teacher):
    """The student chooses its epoch the way its teacher did (`train.select_on`), on the same
    inner split: the teacher never trained on it. A run written before `select_on` existed chose
    on its inner split when it has a non-empty one, else on the reported split."""
    used = content.get("select_on") or ("inner" if len(split.get(task.inner_split, [])) else "reported")
    if used != cfg["train"]["select_on"]:
        raise ConfigError(f"config key 'train.select_on': the teacher {teacher} chose its epoch on the {used} split "
                          f"({Path(teacher) / SPLIT_FILE}); distill with --set train.select_on={used}")


def distill(task, cfg, out, teacher, *, resume=False, overwrite=False, unsafe_load=False):
    """Train the student of `cfg` from the teacher run `teacher`, or from an ensemble of teacher
    runs (a list, or "RUN,RUN"; see `train`). Without a data root: the first teacher's."""
    teachers = teacher_runs(teacher)
    if not cfg["data"]["root"]:
        first = teachers[0] / "config.yaml"
        saved = read_saved_config(first) if first.is_file() else {}
        cfg["data"]["root"] = saved.get("data", {}).get("root", "")
    return train(task, cfg, out, resume=resume, overwrite=overwrite, teacher=teachers, unsafe_load=unsafe_load)


def _training_curves(run):
    from common.plots import plot_history
    from common.train import read_history

    history = read_history(run)
    if history:
        plot_history(history, Path(run) / "training_curves.png", title=f"training: {Path(run).name}")


# ---------------------------------------------------------------------------------------------
# evaluate


def outputs(model, x, batch_size=32, chunk=1024):
    """Model outputs for an array of inputs, from a Keras model or a TFLiteModel alike (a lazy
    view of inputs, such as asc's `CachedFeatures`, is read `chunk` examples at a time).

    Returns:
        float32 array (N, *output_shape).
    """
    if not isinstance(x, np.ndarray):  # a lazy view (e.g. asc features streamed from a cache)
        parts = [outputs(model, np.asarray(x[i:i + chunk]), batch_size) for i in range(0, len(x), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)
    if hasattr(model, "layers"):  # Keras: no progress bar
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float32)
    return np.asarray(model.predict(x), np.float32)


def _evaluate_and_write(task, model, cfg, data, items, path, *, split_name, teacher=None, extra=None):
    """Score `model` on `items`, write `path` (metrics JSON), print one line; return the metrics."""
    if not len(items):
        raise DataError(f"{cfg['data']['root']}: the '{split_name}' split is empty")
    with task.error_context():
        metrics = task.evaluate(model, cfg, data, items)
        if teacher is not None:
            metrics.update(_teacher_scores(task, teacher, model, cfg, data, items))
    metrics = {**metrics, "split": split_name, "data": cfg["data"]["root"], "examples": len(items), **(extra or {})}
    write_json(path, metrics)
    say(f"{task.name}: {task.score_line(metrics)} on {len(items)} {split_name} examples -> {path}")
    return metrics


def _teacher_scores(task, teacher, student, cfg, data, items):
    """The teacher's metric and the share of examples where student and teacher agree."""
    from common.export import prediction_agreement

    x, labels = task.examples(cfg, data, items)
    teacher_out, student_out = outputs(teacher, x), outputs(student, x)
    return {f"teacher_{task.metric_name}": float(task.metric(labels, teacher_out)),
            "teacher_agreement": prediction_agreement(teacher_out, student_out)}


def evaluate(task, run, *, data=None, split=None, tflite=False, out=None, overrides=(), unsafe_load=False):
    """Evaluate a run (its Keras model, or with `tflite` its exported int8 model).

    Without `data`: the run's own data and split.json, split `split` (default the reported one),
    written to RUN/metrics.json (other splits: metrics_SPLIT.json; the int8 model: *_int8.json).
    With `data` naming another data set: every labelled example there, written beside the run's
    own metrics as metrics_<folder name>_<hash>.json (`other_data_metrics_name`), so the run's own
    scores are never replaced and two folders never share a file.

    Returns:
        (metrics dict, path written).
    """
    run = Path(run)
    cfg = run_config(task, run, overrides)
    own_root = cfg["data"]["root"]
    other = data is not None and Path(data).resolve() != Path(own_root or "/nonexistent").resolve()
    if data:
        cfg["data"]["root"] = str(Path(data).resolve())
    need_data(cfg)
    dataset = task.open_data(cfg)
    if other:
        items, split_name = task.all_items(dataset), "all"
        check_labels(task, run, dataset)
        name = other_data_metrics_name(data)
    else:
        parts, _ = read_split(task, run, dataset)
        split_name = split or task.reported_split
        if split_name not in parts:
            raise ConfigError(f"--split {split_name}: the run's split.json has {', '.join(parts)}")
        items = parts[split_name]
        name = "metrics" if split_name == task.reported_split else f"metrics_{split_name}"
    model = _tflite_of(task, run) if tflite else keras_model(task, run, unsafe_load=unsafe_load)
    name += "_int8" if tflite else ""
    path = Path(out) / f"{name}.json" if out else run / f"{name}.json"
    metrics = _evaluate_and_write(task, model, cfg, dataset, items, path, split_name=split_name,
                                  extra={"model": "int8 tflite" if tflite else "keras"})
    if not tflite and not other and split_name == task.reported_split:  # pictures show the reported split
        _training_curves(run)
        task.pictures(path.parent, model, cfg, dataset, items, metrics)
    return metrics, path


def check_labels(task, run, dataset):
    """Another data set's classes must be among the run's (same index order is the task's job)."""
    if not task.classifier:
        return
    known = read_labels(Path(run) / LABELS_FILE)
    unknown = [name for name in task.class_names(dataset) if name not in known]
    if unknown:
        raise DataError(f"{unknown[0]}: class '{unknown[0]}' is not one the model of {run} knows ({', '.join(known)})")
    task.align_classes(dataset, known)


def evaluate_folds(task, parent, *, data=None, overrides=(), unsafe_load=False):
    """Evaluate every PARENT/fold_K run; write PARENT/metrics.json (means) and metrics_folds.json."""
    runs = sorted((r for r in Path(parent).glob("fold_*") if (r / "model.keras").is_file()),
                  key=lambda r: int(re.sub(r"\D", "", r.name) or 0))
    if not runs:
        raise RunDirError(f"{parent}: no trained fold_K runs (train with --fold all)")
    per_fold = [evaluate(task, run, data=data, overrides=overrides, unsafe_load=unsafe_load)[0] for run in runs]
    keys = [k for k, v in per_fold[0].items() if isinstance(v, float)]
    mean = {k: float(np.mean([m[k] for m in per_fold])) for k in keys}
    std = {k: float(np.std([m[k] for m in per_fold])) for k in keys}
    write_json(Path(parent) / METRICS_FILE, mean)
    write_json(Path(parent) / "metrics_folds.json",
               {"folds": [r.name for r in runs], "per_fold": per_fold, "mean": mean, "std": std})
    say(f"{task.name}: {len(runs)} folds: " + "  ".join(f"{k} {mean[k]:.3f} +- {std[k]:.3f}" for k in keys))
    return mean, std


def other_data_metrics_name(data):
    """The metrics file stem of `evaluate --data DATA`: metrics_<folder>_<8 hex digits of the
    resolved path's SHA-1>, so two different folders of the same name never share a file and the
    same folder always gets the same one."""
    resolved = Path(data).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    return f"metrics_{_slug(resolved.name)}_{digest}"


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "data"


def keras_model(task, run, *, unsafe_load=False):
    """The Keras model of a run directory (model.keras), the task's custom layers registered;
    only a safe .keras zip unless `unsafe_load` (see common.model_files)."""
    from common.train import load_run_model

    task.register_layers()
    return load_run_model(run, unsafe_load=unsafe_load)


def _tflite_of(task, run):
    path = Path(run) / TFLITE_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: not found; run `python -m {task.name} export --run {run}` first")
    return task.load_tflite(path)


# ---------------------------------------------------------------------------------------------
# export


def seeded_pick(items, count, seed):
    """Up to `count` of `items`, a seeded random choice kept in the items' order."""
    order = np.random.default_rng(seed).permutation(len(items))[: int(count)]
    return [items[i] for i in np.sort(order)]


def check_export(task, run, *, data=None, overrides=()):
    """The config and target of an export, checked before any work (no TensorFlow): returns
    (cfg, target). ConfigError for an unknown `export.target` (listing the targets) or settings
    the target refuses."""
    from common.export import get_target

    cfg = need_data(run_config(task, run, overrides, data))
    target = get_target(cfg["export"]["target"])
    target.check(cfg["export"])
    return cfg, target


def export(task, run, *, data=None, overrides=(), unsafe_load=False):
    """Export a run's model for `export.target` (common/export/: edge, gpu, weights8, mcu, or a
    registered one) into the run directory, with export_report.json (written once).

    QAT fine-tunes on the run's training split (`export.mode`: auto, qat, ptq); every one of a
    seeded pick of `export.calibration_examples` training examples calibrates; parity, the
    metric and latency are measured on a seeded pick of `PARITY_EXAMPLES` reported-split
    examples. A failed export leaves the earlier export's files as they were.

    Returns:
        The export report (common.export.report.REPORT_KEYS and the target's details).
    """
    from common.export import ExportReport, run_export

    run = Path(run)
    cfg, target = check_export(task, run, data=data, overrides=overrides)
    dataset = task.open_data(cfg)
    split, _ = read_split(task, run, dataset)
    job = _export_job(task, cfg, run, dataset, split, target, unsafe_load=unsafe_load)
    say(f"{task.name}: exporting {run} for target {target.name} (mode {cfg['export']['mode']})")
    with task.error_context():
        report = run_export(target, job, ExportReport(run / target.report_name()))
    if report.get("edge_reused"):
        say(f"{task.name}: reusing the current edge export {run / TFLITE_FILE} (same model and export settings)")
    say(f"{task.name}: {export_line(task, report)}")
    if report.get("mcu"):
        say(f"{task.name}: {_mcu_line(report['mcu'])}")
    if report.get("onnx") and not report.get("edge_reused"):
        say(f"{task.name}: {_onnx_line(report['onnx'])}")
    for warning in export_warnings(report):
        warn(warning)
    return report


def _export_job(task, cfg, run, dataset, split, target, *, unsafe_load=False):
    """The ExportJob of a run: its model, the seeded parity pick and, for a target that
    calibrates, the seeded calibration pick and the QAT data. For the edge target a front the
    task computes on the host (`Task.host_front`) is cut off the model, and the examples go
    through it."""
    from common.export import PARITY_EXAMPLES, ExportJob, Scorer
    from common.export.graph import split_at
    from common.export.quantize import QATSettings
    from common.export.report import file_sha256, read_report

    e, seed = cfg["export"], int(cfg["train"]["seed"])
    model = keras_model(task, run, unsafe_load=unsafe_load)
    hosted = task.host_front(cfg, model) if target.name in ("edge", "mcu") else None
    front = None
    if hosted and target.name == "mcu":
        raise ExportError(f"{run}: the model's input front ({hosted[0]}) has no int8 form a microcontroller "
                          "runs; export --target edge computes it on the host, beside the .tflite")
    if hosted:
        front, model = split_at(model, hosted[0])
        say(f"{task.name}: the input front up to layer {hosted[0]} runs on the host (numpy), beside the .tflite")
    heldout, heldout_labels = task.examples(cfg, dataset,
                                            seeded_pick(split[task.reported_split], PARITY_EXAMPLES, seed + 1))
    calibration, qat = None, None
    if target.calibrates:
        calibration, _ = task.examples(cfg, dataset, seeded_pick(split["train"], int(e["calibration_examples"]), seed))
    if front is not None:
        heldout, calibration = (None if x is None else outputs(front, x) for x in (heldout, calibration))
    if target.calibrates and e["mode"] != "ptq":
        train_data, _, _ = task.datasets(cfg, dataset, split)
        if front is not None:
            train_data = train_data.map(lambda x, *rest: (front(x, training=False), *rest))
        steps = int(e["qat_steps"]) or None
        qat = QATSettings(train_data.repeat() if steps else train_data, task.label_loss(cfg), int(e["qat_epochs"]),
                          steps, float(e["qat_lr"]), cfg["train"].get("weight_gradients", "auto"))
    fingerprint = {"model_sha256": file_sha256(run / "model.keras"), "seed": seed, "data": cfg["data"]["root"],
                   "settings": {key: value for key, value in e.items() if key != "target"}}
    return ExportJob(model=model, out_dir=run, calibration=calibration, heldout=heldout,
                     heldout_labels=heldout_labels, scorer=Scorer(task.metric, task.metric_name, task.metrics),
                     settings=e, labels=list(task.class_names(dataset)), qat=qat, fingerprint=fingerprint,
                     previous=read_report(run / REPORT_FILE),
                     frontend=lambda folder, section: task.write_frontend(cfg, folder, section),
                     host_front=hosted[1] if hosted else None)


def _mcu_line(section):
    fits = [target["name"] for target in section["targets"] if target["fits"]]
    return (f"microcontroller model {_size(section['flash_bytes'])} flash, {_size(section['arena_bytes'])} "
            f"arena, agreement with Keras {section['agreement_keras']:.3f}; fits {', '.join(fits) or 'none of the targets'}")


def _onnx_line(section):
    if not section.get("written"):
        return f"no ONNX Runtime copy of the int8 model: {section['why']}"
    return (f"{section['path']}: the int8 model for ONNX Runtime, {_size(section['bytes'])}; agreement "
            f"{section['agreement']:.3f}; {section['latency_ms']:.1f} ms per example (`predict --tflite RUN` "
            "runs it where it is the fastest file)")


def export_line(task, report):
    """One line for an export: file, size, quantization, metrics, agreement, latency."""
    keras_more, tflite_more = report.get("keras_metrics") or {}, report.get("tflite_metrics") or {}
    more = "".join(f", {key} {_num(keras_more.get(key))}/{_num(tflite_more.get(key))}"
                   for key in task.secondary_metrics if key in keras_more)
    return (f"{report['path']}: {_size(report['tflite_bytes'])} ({report['quantization']}); "
            f"{report['metric_name']} float {_num(report['keras_metric'])}, exported {_num(report['tflite_metric'])}"
            f"{more}; "
            f"agreement {report['agreement']:.3f} on {report['parity_examples']} examples; "
            f"{report['latency_ms']:.1f} ms per example")


def export_warnings(report):
    """Lines saying how far the exported model departs from Keras, when it does."""
    from common.export.parity import warnings

    return warnings(report)


def _size(nbytes):
    return f"{nbytes / 1e3:.0f} KB" if nbytes < 1e6 else f"{nbytes / 1e6:.2f} MB"


def _num(value):
    return "-" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------------------------------------
# predict


def check_output(out, overwrite):
    """Refuse to write predictions over an existing file or into a non-empty folder."""
    out = Path(out)
    if overwrite or not out.exists():
        return
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise RunDirError(f"{out}: exists and holds earlier output; use --overwrite or another --out")


def predict(task, inputs, out, *, run=None, tflite=None, overwrite=False, overrides=(), options=None,
            unsafe_load=False):
    """Predict files and folders with a run's Keras model or an exported .tflite; returns the line said.

    `tflite`: a .tflite file, a run directory (its fastest exported file on this CPU:
    common.tflite_choice), or "auto" with `run` (the same for that run). `options`: dict of the
    task's typed `predict` (with `run`) or `edge_predict` (with `tflite`) options by name
    (common.cli.method_options); None = their defaults."""
    if tflite == "auto":
        if not run:
            raise ConfigError("predict --tflite auto: give --run RUN, the run whose exported files to choose from")
        tflite, run = run, None
    if bool(run) == bool(tflite):
        raise ConfigError("predict: give either --run RUN (the Keras model) or --tflite MODEL.tflite (LiteRT)")
    if not inputs:
        raise ConfigError("predict: give the files or folders to predict")
    if not out:
        raise ConfigError("predict: --out is required")
    check_output(out, overwrite)
    if tflite:
        if Path(tflite).is_dir():  # a run: the fastest of its exported files here
            from common.tflite_choice import choose, time_file

            check_run_task(Path(tflite), task.name)
            tflite, chosen = choose(tflite, batch=task.edge_batch,
                                    timer=lambda path, threads, batch: time_file(path, threads, batch, task.load_tflite))
            say(f"{task.name}: {chosen}")
        check_run_task(Path(tflite).parent, task.name)  # an exported model sits in its run directory
        line = task.edge_predict(tflite, inputs, out, **(options or {}))
    else:
        cfg = run_config(task, run, overrides)
        line = task.predict(keras_model(task, run, unsafe_load=unsafe_load), cfg, inputs, out, **(options or {}))
    say(f"{task.name}: {line}")
    return line


# ---------------------------------------------------------------------------------------------
# demo


def summary_row(task, model_name, metrics, report=None, complexity=None):
    """One row of a demo's summary.json (see scripts/demo.py for the table). `more_metrics`: the
    task's secondary metrics of the float model (landslide's IoUs), absent for other tasks."""
    source = report or complexity or {}
    more = {key: metrics[key] for key in task.secondary_metrics if key in metrics}
    return {
        "task": task.name,
        "model": model_name,
        "params": source.get("params"),
        "macs": source.get("macs"),
        "metric_name": task.metric_name,
        "float_metric": metrics.get(task.metric_name),
        "int8_metric": report.get("tflite_metric") if report else None,
        "tflite_bytes": report.get("tflite_bytes") if report else None,
        "latency_ms": report.get("latency_ms") if report else None,
        "target": report.get("target") if report else None,
        "mcu_flash_bytes": report["mcu"]["flash_bytes"] if report and report.get("mcu") else None,
        "mcu_arena_bytes": report["mcu"]["arena_bytes"] if report and report.get("mcu") else None,
        **({"more_metrics": more} if more else {}),
    }


def _own_run(path):
    """True when `path` holds an earlier run (the demo replaces it); a foreign folder is refused."""
    path = Path(path)
    if not path.exists() or not any(path.iterdir()):
        return False
    from common.rundir import is_run_dir

    if not is_run_dir(path):
        raise RunDirError(f"{path}: exists and is not a run directory; use another --out for the demo")
    return True


def demo(task, out, overrides=()):
    """Sample data -> every run of `task.demo_plan()` (train or distill, evaluate, export) ->
    OUT/summary.json. Returns the summary rows."""
    from common.complexity import model_complexity

    out = Path(out)
    started = time.perf_counter()
    data = out / "data"
    if not data.is_dir() or not any(data.iterdir()):
        say(f"{task.name}: {task.sample(data)}")
    rows = []
    for step in task.demo_plan():
        config = step.config
        run_overrides = ["train.verbose=0", *step.overrides, *overrides]
        if isinstance(config, dict):
            cfg = config
            for item in run_overrides:
                cfg = apply_override(cfg, item, task.defaults)
        else:
            cfg = load_task_config(task, config, run_overrides)
        cfg["data"]["root"] = str(data.resolve())
        target = out / step.name
        teacher = out / step.teacher if step.teacher else None
        result = train(task, cfg, target, overwrite=_own_run(target), teacher=teacher)
        report = export(task, target) if step.export else None
        complexity = None if report else model_complexity(keras_model(task, target))
        rows.append(summary_row(task, f"{step.name}: {task.describe(cfg)}", result.metrics, report, complexity))
    write_json(out / "summary.json", rows)
    say(f"{task.name}: demo done in {time.perf_counter() - started:.0f} s -> {out / 'summary.json'}")
    from common.tables import markdown_table

    say(markdown_table(rows))
    return rows
