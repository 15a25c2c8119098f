"""The predictions CSV of every classifier (rsic, asc; Keras and LiteRT alike). No TensorFlow.

Columns: `file`, `label` (the predicted class), `probability` (of that class), then one column
per class with its probability, in class-index order. Written atomically.
"""

import csv
import io

import numpy as np

from common.errors import DataError
from common.io import write_text


def write_class_predictions(path, files, probs, class_names):
    """Write the predictions CSV.

    Args:
        path: str or Path of the CSV file.
        files: list of N input paths (written as given).
        probs: float array (N, C) of class probabilities.
        class_names: list of C class names.

    Returns:
        list of (file, predicted label) pairs.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise DataError(f"{path}: {len(class_names)} class names for model outputs of shape {probs.shape}")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "label", "probability", *class_names])
    result = []
    for file, row in zip(files, probs):
        best = int(np.argmax(row))
        writer.writerow([str(file), class_names[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])
        result.append((str(file), class_names[best]))
    write_text(path, buffer.getvalue())
    return result
