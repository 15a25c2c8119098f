"""`predict --tflite` on an edge device: the int8 TFLite model through LiteRT, no TensorFlow.

The exported model holds its backbone's preprocessing, so it takes raw RGB (float, 0-255) of its
input size; this side decodes and resizes with PIL and writes the CSV of the Keras `predict`
(common.predictions), class names from `labels.txt` beside the model. The device needs
`ai-edge-litert`, `numpy` and `pillow`; nothing here imports tensorflow (a test checks).

PIL's BILINEAR resize widens its filter when shrinking, as training's `tf.image.resize(...,
antialias=True)` does, so the two agree to a few grey levels (the JPEG decoders differ by ~1).
"""

from pathlib import Path

import numpy as np

from common.errors import DataError
from common.predictions import write_class_predictions
from common.runner import read_labels
from rsic.data import collect_images, load_rgb


def load_image(path, size):
    """One image as the model takes it: float32 (size, size, 3) RGB 0-255, resized bilinear."""
    from PIL import Image

    rgb = load_rgb(path)
    return np.asarray(rgb if rgb.size == (size, size) else rgb.resize((size, size), Image.BILINEAR),
                      np.float32)


def load_tflite(path, num_threads=2):
    """(common.tflite_runtime.open_model's model taking (S, S, 3), the class names of labels.txt
    beside it)."""
    from common.tflite_runtime import open_model

    model = open_model(Path(path), num_threads=num_threads)
    shape = model.input_shape
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3:
        raise DataError(f"{path}: model input is {shape}, expected a scene classifier taking "
                        "(S, S, 3)")
    labels = Path(path).with_name("labels.txt")
    if not labels.is_file():
        raise DataError(f"{labels}: labels file not found beside the model "
                        "(`python -m rsic export` writes it; copy it with the .tflite file)")
    return model, read_labels(labels)


def predict(model_path, inputs, out, *, skip_bad=False, num_threads=2, log=None):
    """Classify image files and folders (searched recursively) with the `.tflite` model at
    `model_path`; write the predictions CSV `out`. `log` takes the lines about skipped images
    (default common.runner.say).

    Returns:
        (list of image Paths, float32 array (N, C) of class probabilities).
    """
    from common.runner import say

    model, class_names = load_tflite(model_path, num_threads)
    files = collect_images(inputs, skip_bad=skip_bad, log=log or say)
    size = model.input_shape[0]
    probs = np.concatenate([model.predict(load_image(path, size)[None]) for path in files])
    if probs.shape[1] != len(class_names):
        raise DataError(f"{Path(model_path).with_name('labels.txt')}: {len(class_names)} class "
                        f"names, the model has {probs.shape[1]} outputs")
    write_class_predictions(out, files, probs, class_names)
    return files, probs
