"""Scene prediction as an edge device runs it: the int8 TFLite model through LiteRT, no TensorFlow.

`python -m asc predict --tflite MODEL.tflite FILES_OR_FOLDERS --out preds.csv` lands here. The
spectrograms come from the same `asc.features` code as training and the model runs in
`common.tflite_runtime.TFLiteModel`, so a device needs only ai-edge-litert, numpy, librosa,
soundfile and PyYAML. Nothing imported here may import TensorFlow (a test checks `sys.modules`).

What the model was trained on is read from beside the .tflite file, where `python -m asc export`
writes it: the run's `config.yaml` (its `features:` section) and `labels.txt` (class names in
index order). A config given with `--config` (a config.yaml or a run directory) takes precedence.
"""

from pathlib import Path

import numpy as np

from asc import features as feats
from asc.data import SCENES, ClipReport
from common.errors import DataError, RunDirError


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
    return files


def edge_config(tflite_path, config=None, overrides=()):
    """The resolved asc config that goes with a .tflite file: from `config` when given (a
    config.yaml, or a run directory holding one), else the `config.yaml` beside the model (an
    exported run directory), else the defaults (the paper's three 128-bin spectrograms)."""
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
    """Spectrograms of the wav files of `inputs`, their scene probabilities, the predictions CSV.

    Args:
        predict_fn: callable(x float32 (N, bins, frames, kinds)) -> probabilities (N, C); a Keras
            model's or a TFLiteModel's predict.
        inputs: wav files or folders. out_csv: the CSV to write (`common.predictions`: file,
            label, probability, one column per class). cfg: resolved asc config (its `features:`).
        classes: list of C class names. model_name: names the model in errors.

    Returns:
        list of (file, predicted label) pairs.
    """
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
    """Predict the scene of wav files (`inputs`: files or folders) with an int8 TFLite model into
    the same CSV as the Keras predict; `cfg`: the resolved asc config whose `features:` the model
    was trained on (None: `edge_config(tflite_path)`). Returns (file, predicted label) pairs."""
    from common.tflite_runtime import TFLiteModel

    cfg = cfg if cfg is not None else edge_config(tflite_path)
    feats.check_config(cfg["features"])
    model = TFLiteModel(tflite_path, num_threads=cfg["export"]["num_threads"])
    shape = tuple(feats.input_shape(cfg["features"]))
    if model.input_shape != shape:
        raise DataError(f"{tflite_path}: the model takes input {model.input_shape} but the features "
                        f"config gives {shape}; give the run it was exported from with --config RUN")
    return classify(model.predict, inputs, out_csv, cfg, read_labels(tflite_path, cfg),
                    model_name=str(tflite_path), say=say)
