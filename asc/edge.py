"""`predict --tflite` as an edge device runs it: asc.features spectrograms and the int8 model in
`common.tflite_runtime` (ai-edge-litert, numpy, librosa, soundfile, PyYAML; never TensorFlow).

The features config and class names come from the `config.yaml` and `labels.txt` that `export`
writes beside the .tflite file, unless `--config` (a config.yaml or run directory) is given.
"""

from pathlib import Path

import numpy as np

from asc import features as feats
from asc.data import SCENES, ClipReport
from common.errors import DataError, RunDirError
from common.predictions import unique_files


def wav_inputs(inputs):
    """The wav files (a list of Path) named by `inputs`: files, or folders searched recursively."""
    files = []
    for path in map(Path, inputs):
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        found = sorted(path.rglob("*.wav")) if path.is_dir() else [path]
        if not found:
            raise DataError(f"{path}: no .wav files in this folder")
        files += found
    if not files:
        raise DataError("predict: give wav files or folders")
    return unique_files(files)  # a folder and a file in it: predicted once


def edge_config(tflite_path, config=None, overrides=()):
    """The asc config of a .tflite file: `config` (a config.yaml or run directory), else the
    config.yaml beside the model, else the defaults."""
    from asc.config import load

    if config:
        path = Path(config) / "config.yaml" if Path(config).is_dir() else Path(config)
        if not path.is_file():
            raise RunDirError(f"{config}: no config.yaml (give the run the model was exported from)")
        return load(path, overrides)
    beside = Path(tflite_path).with_name("config.yaml")
    return load(beside if beside.is_file() else None, overrides)


def read_labels(model_path, cfg):
    """Class names in index order: `labels.txt` beside the model (None: none), else the config's,
    else the DCASE scenes."""
    path = model_path and Path(model_path).with_name("labels.txt")
    if not (path and path.is_file()):
        return list(cfg["data"]["classes"] or SCENES)
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not labels:
        raise DataError(f"{path}: empty; expected one class name per line")
    return labels


def classify(predict_fn, inputs, out_csv, cfg, classes, *, model_name="model", say=print):
    """Write the predictions CSV (`common.predictions`) of the wav files or folders `inputs`:
    `predict_fn` (a Keras or TFLiteModel predict) maps a batch of `cfg`'s spectrograms to
    probabilities over the C `classes`. Returns (file, predicted label) pairs."""
    from common.predictions import write_class_predictions

    files, report = wav_inputs(inputs), ClipReport()
    parts = [predict_fn(x) for _, x in feats.iter_features([str(f) for f in files], cfg["features"],
                                                           report)]
    for line in report.lines():
        say(line)
    probs = np.concatenate(parts) if parts else np.zeros((0, len(classes)), np.float32)
    if probs.shape[-1] != len(classes):
        raise DataError(f"{model_name}: the model has {probs.shape[-1]} outputs but there are "
                        f"{len(classes)} labels")
    return write_class_predictions(out_csv, files, probs, classes)


def predict(tflite_path, inputs, out_csv, *, cfg=None, say=print):
    """`classify` with an int8 TFLite model; `cfg`: the asc config the model was trained on
    (None: `edge_config(tflite_path)`)."""
    from common.tflite_runtime import open_model

    cfg = cfg if cfg is not None else edge_config(tflite_path)
    feats.check_config(cfg["features"])
    model = open_model(tflite_path, num_threads=cfg["export"]["num_threads"])
    shape = tuple(feats.input_shape(cfg["features"]))
    if model.input_shape != shape:
        raise DataError(f"{tflite_path}: the model takes input {model.input_shape} but the "
                        f"features config gives {shape}; give the run it was exported from with "
                        "--config RUN")
    return classify(model.predict, inputs, out_csv, cfg, read_labels(tflite_path, cfg),
                    model_name=str(tflite_path), say=say)
