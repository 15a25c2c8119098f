"""Pictures people would rather look at than read: training curves and confusion matrices.

matplotlib with the non-interactive Agg backend; every figure is written atomically as PNG.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.io import atomic_path  # noqa: E402


def save_figure(figure, path, dpi=110):
    """Write a matplotlib figure to `path` atomically and close it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(figure)


def plot_history(history, path, title="training"):
    """Loss and every other metric per epoch, training beside validation.

    Args:
        history: dict of column -> list of values (`common.train.read_history`), Keras names
            (`loss`, `val_loss`, `f1`, `val_f1`, ...).
        path: output PNG.
    """
    names = [k for k in history if k != "epoch" and not k.startswith("val_") and not k.endswith("_lr")]
    names = [n for n in names if n != "lr"] or ["loss"]
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history.get(name, [])) + 1)
        axis.plot(epochs, history.get(name, []), marker="o", label="train")
        if f"val_{name}" in history:
            axis.plot(np.arange(1, len(history[f"val_{name}"]) + 1), history[f"val_{name}"], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    save_figure(figure, path)


def plot_confusion_matrix(matrix, labels, path, title="confusion matrix"):
    """A row-normalised confusion matrix (rows: true class, columns: predicted) with counts.

    Args:
        matrix: (C, C) integer array, rows true, columns predicted.
        labels: C class names.
        path: output PNG.
    """
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    size = max(4.0, 0.45 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    axis.set_title(f"{title} (accuracy {accuracy:.1%})")
    save_figure(figure, path)


def plot_segmentation_examples(rgb, truth, prediction, path, title="examples"):
    """Rows of patches: RGB composite, ground truth, prediction, and errors over the RGB.

    Args:
        rgb: (N, H, W, 3) floats in [0, 1] (a display composite, already stretched).
        truth, prediction: (N, H, W) 0/1 masks.
        path: output PNG. In the error overlay, false positives are red and misses are blue.
    """
    rgb, truth, prediction = np.asarray(rgb), np.asarray(truth).astype(bool), np.asarray(prediction).astype(bool)
    count = len(rgb)
    figure, axes = plt.subplots(count, 4, figsize=(10, 2.6 * count), squeeze=False)
    for row in range(count):
        overlay = rgb[row].copy()
        overlay[prediction[row] & ~truth[row]] = (1.0, 0.1, 0.1)
        overlay[truth[row] & ~prediction[row]] = (0.1, 0.3, 1.0)
        overlay[truth[row] & prediction[row]] = (1.0, 1.0, 0.2)
        panels = [
            (rgb[row], "RGB (B4, B3, B2)"),
            (truth[row], "ground truth"),
            (prediction[row], "prediction"),
            (overlay, "yellow hit, red false alarm, blue miss"),
        ]
        for axis, (image, label) in zip(axes[row], panels):
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(label, fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_spectrograms(stack, names, path, title="spectrograms"):
    """Spectrograms of one clip side by side.

    Args:
        stack: (bins, frames, K) array, one spectrogram per channel.
        names: K titles (for example "log-Mel", "Gammatone", "CQT").
        path: output PNG.
    """
    stack = np.asarray(stack)
    figure, axes = plt.subplots(1, stack.shape[-1], figsize=(4 * stack.shape[-1], 3.2), squeeze=False)
    for index, axis in enumerate(axes[0]):
        axis.imshow(stack[..., index], origin="lower", aspect="auto", cmap="magma")
        axis.set_title(names[index])
        axis.set_xlabel("frame")
        axis.set_ylabel("bin")
    figure.suptitle(title)
    save_figure(figure, path)
