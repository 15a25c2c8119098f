"""Scene classification on an edge device: the int8 TFLite model through LiteRT, no TensorFlow.

`python -m rsic predict --tflite MODEL.tflite FILES_OR_FOLDERS --out preds.csv` lands here. The
exported model holds its backbone's preprocessing as its first layer, so it takes raw RGB images
(float, 0-255) of its input size; this side only decodes and resizes the images with PIL and
writes the same CSV as the Keras `predict` (common.predictions: file, label, probability, then one
column per class). Class names come from
`labels.txt` beside the model, where `python -m rsic export` writes it.

What the device needs: `ai-edge-litert`, `numpy`, `pillow`. Nothing here, nor anything it
imports, imports tensorflow (a test checks `sys.modules`).

Resizing: training resizes with `tf.image.resize(..., antialias=True)` (bilinear, widened to an
area filter when shrinking) and rounds to 0-255 integers; PIL's BILINEAR resize also widens its
filter when shrinking, so the two agree to a few grey levels (PIL's and TensorFlow's JPEG decoders
alone differ by about one).
"""

from pathlib import Path

import numpy as np

from common.errors import DataError
from common.predictions import write_class_predictions
from common.runner import read_labels
from rsic.data import collect_images


def load_image(path, size):
    """One image as the model takes it: RGB, resized to (size, size) bilinear, float32 0-255.

    Returns:
        float32 array (size, size, 3).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except Exception as error:  # PIL raises many types for a broken file
        raise DataError(f"{path}: unreadable or truncated image ({error})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, np.float32)


def load_model(path, num_threads=2):
    """The TFLite scene classifier at `path` and its class names (labels.txt beside it).

    Returns:
        (common.tflite_runtime.TFLiteModel taking (S, S, 3), list of class names).
    """
    from common.tflite_runtime import TFLiteModel

    path = Path(path)
    model = TFLiteModel(path, num_threads=num_threads)
    shape = model.input_shape
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3:
        raise DataError(f"{path}: model input is {shape}, expected a scene classifier taking (S, S, 3)")
    labels_path = path.with_name("labels.txt")
    if not labels_path.is_file():
        raise DataError(f"{labels_path}: labels file not found beside the model "
                        "(`python -m rsic export` writes it; copy it with the .tflite file)")
    class_names = read_labels(labels_path)
    return model, class_names


def predict(model_path, inputs, out, *, skip_bad=False, num_threads=2, log=None):
    """Classify image files and folders with a TFLite model; write the predictions CSV.

    Args:
        model_path: the exported `.tflite` file (labels.txt beside it).
        inputs: list of image files or folders (searched recursively).
        out: CSV path (common.predictions.write_class_predictions).
        skip_bad: skip unreadable images instead of stopping.
        num_threads: LiteRT interpreter threads.
        log: callable(str) for lines about skipped images (default common.runner.say).

    Returns:
        (list of image Paths, float32 array (N, C) of class probabilities).
    """
    from common.runner import say

    model, class_names = load_model(model_path, num_threads)
    files = collect_images(inputs, skip_bad=skip_bad, log=log or say)
    size = model.input_shape[0]
    probs = np.concatenate([model.predict(load_image(path, size)[None]) for path in files])
    if probs.shape[1] != len(class_names):
        raise DataError(f"{Path(model_path).with_name('labels.txt')}: {len(class_names)} class names, "
                        f"the model has {probs.shape[1]} outputs")
    write_class_predictions(out, files, probs, class_names)
    return files, probs
