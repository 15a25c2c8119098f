"""Evaluation (accuracy, per-class accuracy, confusion matrix) and prediction on image files.

`evaluate` writes into its output folder (the run directory by default):

    metrics.json            accuracy (top level, a fraction), per_class_accuracy, num_images, ...
    confusion_matrix.csv    rows: true class, columns: predicted class (counts)
    confusion_matrix.png    the same, row-normalised, as a picture
"""

import csv
import io
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.io import write_json, write_text
from rsic.data import IMAGE_SUFFIXES, check_image, make_dataset

# TensorFlow is imported only inside the functions that need it: the edge runtime (rsic/edge.py)
# reuses collect_images and write_predictions on a device without TensorFlow.


def predict_probs(model, files, image_size, batch_size=32):
    """Class probabilities of a Keras model (or anything with `predict(x)`) for image files.

    Returns:
        float32 array (N, num_classes).
    """
    ds = make_dataset(files, np.zeros(len(files), np.int64), image_size=image_size, batch_size=batch_size)
    if hasattr(model, "layers"):  # a Keras model: one predict call over the whole pipeline
        return np.asarray(model.predict(ds.map(lambda x, _: x), verbose=0), np.float32)
    outputs = [np.asarray(model.predict(x.numpy())) for x, _ in ds]  # e.g. common.tflite_runtime
    return np.concatenate(outputs).astype(np.float32)


def classification_metrics(labels, probs, class_names):
    """Accuracy, per-class accuracy (recall) and the confusion matrix.

    Args:
        labels: int array (N,). probs: float array (N, C). class_names: list of C names.

    Returns:
        (metrics dict, (C, C) int64 confusion matrix).
    """
    from common.metrics import ConfusionMatrix, accuracy, per_class_scores  # imports TensorFlow

    cm = ConfusionMatrix(len(class_names))
    cm.update(np.asarray(labels), np.argmax(probs, axis=1))
    recall = per_class_scores(cm)["recall"]
    metrics = {
        "accuracy": accuracy(cm),
        "per_class_accuracy": {name: float(r) for name, r in zip(class_names, recall)},
        "num_images": int(len(labels)),
    }
    return metrics, cm.matrix


def write_evaluation(out_dir, metrics, matrix, class_names, *, extra=None):
    """Write metrics.json, confusion_matrix.csv and confusion_matrix.png into `out_dir`."""
    from common.plots import plot_confusion_matrix

    out_dir = Path(out_dir)
    metrics = {**metrics, **(extra or {})}
    write_json(out_dir / "metrics.json", metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *[int(v) for v in row]])
    write_text(out_dir / "confusion_matrix.csv", buffer.getvalue())
    plot_confusion_matrix(matrix, class_names, out_dir / "confusion_matrix.png",
                          title=f"accuracy {metrics['accuracy']:.3f}")
    return metrics


def evaluate_split(model, folder, indices, out_dir, cfg, *, log=print, teacher=None, split_name="test"):
    """Evaluate `model` on the images `folder.files[indices]` and write the results to `out_dir`.

    Args:
        model: keras.Model (raw RGB in, probabilities out). folder: ImageFolder.
        indices: int array of the images to use. out_dir: folder for the outputs.
        cfg: resolved config (input size, batch size).
        teacher: optional keras.Model; adds `teacher_accuracy` and `teacher_agreement` (share of
            images where student and teacher predict the same class).

    Returns:
        The metrics dict (also in metrics.json).
    """
    files = [folder.files[i] for i in indices]
    labels = folder.labels[indices]
    size = int(cfg["model"]["input_size"])
    probs = predict_probs(model, files, size, int(cfg["train"]["batch_size"]))
    metrics, matrix = classification_metrics(labels, probs, folder.class_names)
    extra = {"split": split_name, "data": str(folder.root)}
    if teacher is not None:
        teacher_probs = predict_probs(teacher, files, size, int(cfg["train"]["batch_size"]))
        extra["teacher_accuracy"] = float(np.mean(np.argmax(teacher_probs, 1) == labels))
        extra["teacher_agreement"] = float(np.mean(np.argmax(teacher_probs, 1) == np.argmax(probs, 1)))
    metrics = write_evaluation(out_dir, metrics, matrix, folder.class_names, extra=extra)
    log(f"{split_name} accuracy {metrics['accuracy']:.4f} on {len(files)} images -> {Path(out_dir) / 'metrics.json'}")
    return metrics


def collect_images(inputs, *, skip_bad=False, log=print):
    """Image files from a list of files and folders (folders searched recursively), validated.

    Returns:
        list of Path, sorted within each folder, in the order given.
    """
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    usable = []
    for path in files:
        try:
            check_image(path)
            usable.append(path)
        except DataError:
            if not skip_bad:
                raise
            log(f"skipping unreadable image {path} (--skip-bad)")
    if not usable:
        raise DataError("no readable images to predict")
    return usable


def write_predictions(path, files, probs, class_names):
    """CSV with columns file, label, probability (of the predicted class), written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "label", "probability"])
    for file, row in zip(files, probs):
        best = int(np.argmax(row))
        writer.writerow([str(file), class_names[best], f"{float(row[best]):.6f}"])
    write_text(path, buffer.getvalue())
