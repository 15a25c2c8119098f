"""Training a scene classifier (`train`) and distilling a student from a teacher run (`distill`).

Both write a run directory (see `common.train`) plus `split.json` and `labels.txt`, then
evaluate the final model on the test split (`metrics.json`, see `rsic.evaluate`).
"""

import math
from pathlib import Path

import numpy as np

from common.config import read_saved_config
from common.errors import ConfigError, DataError, RunDirError
from common.train import fit, load_run_model, make_optimizer, prepare_run_dir
from rsic.data import (
    make_dataset,
    make_split,
    read_labels,
    read_split_file,
    scan_image_folder,
    write_split,
)
from rsic.models import build_model, compile_classifier


def load_data(cfg, *, split_from=None, log=print):
    """List and validate the data set of `cfg["data"]` and split it.

    Args:
        cfg: resolved config. split_from: a run directory whose `split.json` to reuse (distill).
        log: callable(str).

    Returns:
        (ImageFolder, split dict of index arrays "train", "val", "test").
    """
    data_cfg = cfg["data"]
    if not data_cfg["root"]:
        raise ConfigError("no data set: give --data DIR (or data.root in the config)")
    folder = scan_image_folder(data_cfg["root"], skip_bad=data_cfg["skip_bad"], log=log)
    if split_from is not None:
        split = read_split_file(Path(split_from) / "split.json", folder)
    elif data_cfg["split_file"]:
        split = read_split_file(data_cfg["split_file"], folder)
    else:
        split = make_split(folder.labels, data_cfg["train_ratio"], val_ratio=data_cfg["val_ratio"],
                           seed=data_cfg["seed"])
    log(f"{folder.root}: {len(folder.class_names)} classes, {len(folder.files)} images; "
        f"train {len(split['train'])}, val {len(split['val'])}, test {len(split['test'])}")
    return folder, split


def make_datasets(cfg, folder, split, *, log=print):
    """The training and validation tf.data pipelines (validation: the test split when `val` is empty)."""
    size = int(cfg["model"]["input_size"])
    batch = int(cfg["train"]["batch_size"])
    data_cfg = cfg["data"]
    files = np.asarray(folder.files, dtype=object)
    train_idx = split["train"]
    val_idx = split["val"]
    if len(val_idx) == 0:
        log("no validation split (data.val_ratio=0): monitoring the test split")
        val_idx = split["test"]
    train_ds = make_dataset(list(files[train_idx]), folder.labels[train_idx], image_size=size,
                            batch_size=batch, training=True, augment=data_cfg["augment"],
                            seed=int(cfg["train"]["seed"]), cache=data_cfg["cache"],
                            shuffle_buffer=data_cfg["shuffle_buffer"])
    val_ds = make_dataset(list(files[val_idx]), folder.labels[val_idx], image_size=size,
                          batch_size=batch, cache=data_cfg["cache"])
    steps = int(cfg["train"]["steps_per_epoch"]) or math.ceil(len(train_idx) / batch)
    return train_ds, val_ds, steps


def train(cfg, out, *, overwrite=False, resume=False, data=None, log=print):
    """Train the classifier of `cfg` into the run directory `out` and evaluate it on the test split.

    Args:
        cfg: resolved config. out: run directory. overwrite, resume: see `prepare_run_dir`.
        data: (ImageFolder, split) already loaded with `load_data` (e.g. one split shared by every
            backbone of a benchmark); None: load `cfg["data"]`.

    Returns:
        (run directory Path, metrics dict of the test split).
    """
    from rsic.evaluate import evaluate_split

    folder, split = data if data is not None else load_data(cfg, log=log)
    run_dir = prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite)
    write_split(run_dir, folder, split, train_ratio=cfg["data"]["train_ratio"],
                seed=cfg["data"]["seed"])
    train_ds, val_ds, steps = make_datasets(cfg, folder, split, log=log)

    def build():
        model = build_model(cfg["model"], len(folder.class_names))
        return compile_classifier(model, make_optimizer(cfg["train"], steps))

    model, _ = fit(build, train_ds, val_ds, cfg["train"], run_dir)
    metrics = evaluate_split(model, folder, split["test"], run_dir, cfg, log=log)
    return run_dir, metrics


def distill(cfg, teacher_run, out, *, overwrite=False, resume=False, log=print):
    """Train the student of `cfg` from the teacher in `teacher_run` (paper 3), on the teacher's split.

    The student learns from the labels and the teacher's softened outputs (`distill.kd_weight`,
    `distill.temperature`) and/or its embedding (`distill.embedding_weight`), through
    `common.distill.Distiller`. The data set is the teacher's (`--data` may point elsewhere if the
    same files are there) and the split is the teacher's `split.json`, so the student never trains
    on the teacher's test images.

    Returns:
        (run directory Path, metrics dict of the test split).
    """
    import tf_keras as keras

    from common.distill import Distiller
    from rsic.evaluate import evaluate_split

    teacher_run = Path(teacher_run)
    if not (teacher_run / "split.json").is_file():
        raise RunDirError(f"{teacher_run}: not an rsic run directory (no split.json); train a teacher first")
    teacher_cfg = read_saved_config(teacher_run / "config.yaml")
    if not cfg["data"]["root"]:
        cfg["data"]["root"] = teacher_cfg.get("data", {}).get("root", "")
    teacher_size = int(teacher_cfg.get("model", {}).get("input_size", 0))
    if teacher_size != int(cfg["model"]["input_size"]):
        raise ConfigError(f"config key 'model.input_size': the student's {cfg['model']['input_size']} "
                          f"differs from the teacher's {teacher_size} ({teacher_run}/config.yaml)")
    folder, split = load_data(cfg, split_from=teacher_run, log=log)
    teacher_labels = read_labels(teacher_run / "labels.txt")
    if teacher_labels != folder.class_names:
        raise DataError(f"{folder.root}: classes differ from the teacher's {teacher_run / 'labels.txt'}")
    teacher = load_run_model(teacher_run)
    run_dir = prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite)
    write_split(run_dir, folder, split, teacher=str(teacher_run))
    train_ds, val_ds, steps = make_datasets(cfg, folder, split, log=log)
    dcfg = cfg["distill"]

    def build():
        student = build_model(cfg["model"], len(folder.class_names))
        distiller = Distiller(student, teacher, label_loss=keras.losses.SparseCategoricalCrossentropy(),
                              label_weight=dcfg["label_weight"], kd_weight=dcfg["kd_weight"],
                              temperature=dcfg["temperature"], embedding_weight=dcfg["embedding_weight"])
        distiller.compile(optimizer=make_optimizer(cfg["train"], steps), metrics=["accuracy"])
        return distiller

    student, _ = fit(build, train_ds, val_ds, cfg["train"], run_dir, final_model_fn=lambda d: d.student)
    metrics = evaluate_split(student, folder, split["test"], run_dir, cfg, log=log,
                             teacher=teacher)
    return run_dir, metrics
