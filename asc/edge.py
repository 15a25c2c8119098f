"""Scene prediction as an edge device runs it: the int8 TFLite model through LiteRT, no TensorFlow.

`python -m asc predict --tflite MODEL.tflite FILES_OR_FOLDERS --out preds.csv` lands here. The
spectrograms come from the same `asc.features` code as training (numpy, librosa, soundfile) and
the model runs in `common.tflite_runtime.TFLiteModel` (ai-edge-litert), so a device needs only
ai-edge-litert, numpy, librosa, soundfile and PyYAML. Nothing imported here may import
TensorFlow (a test checks `sys.modules`).

What the model was trained on is read from beside the .tflite file, where `python -m asc export`
writes it: `config.yaml` of the run (its `features:` section) and `labels.txt` (class names in
index order). A run directory given with `--run` takes precedence for the config.
"""

from pathlib import Path

import numpy as np

from asc import features as feats
from asc.data import SCENES, ClipReport
from common.errors import DataError, RunDirError
from common.io import write_text


def wav_inputs(inputs):
    """The wav files named by `inputs` (files, or folders searched recursively), in order.

    Returns:
        list of Path.
    """
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.rglob("*.wav"))
            if not found:
                raise DataError(f"{path}: no .wav files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not files:
        raise DataError("predict: give wav files or folders")
    return files


def edge_config(tflite_path, run_dir=None, overrides=()):
    """The resolved asc config that goes with a .tflite file.

    From `run_dir/config.yaml` when `run_dir` is given, else the `config.yaml` beside the model
    (an exported run directory), else the defaults (the paper's three 128-bin spectrograms).
    """
    from asc.config import load

    if run_dir is not None:
        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
        return load(path, overrides)
    beside = Path(tflite_path).with_name("config.yaml")
    return load(beside if beside.is_file() else None, overrides)


def read_labels(tflite_path, cfg=None):
    """Class names in index order: `labels.txt` beside the model, else the config's, else the DCASE scenes."""
    labels_path = Path(tflite_path).with_name("labels.txt")
    if labels_path.is_file():
        labels = [line.strip() for line in labels_path.read_text().splitlines() if line.strip()]
        if not labels:
            raise DataError(f"{labels_path}: empty; expected one class name per line")
        return labels
    if cfg is not None and cfg["data"]["classes"]:
        return list(cfg["data"]["classes"])
    return list(SCENES)


def write_predictions(out_csv, files, probs, classes):
    """Write the predictions CSV: filename, scene_label, then one probability column per class.

    Args:
        files: list of N paths; probs: float (N, C); classes: list of C names.

    Returns:
        list of (filename, predicted label) pairs.
    """
    rows = ["filename,scene_label," + ",".join(classes)]
    result = []
    for path, p in zip(files, probs):
        label = classes[int(np.argmax(p))]
        result.append((str(path), label))
        rows.append(f"{path},{label}," + ",".join(f"{v:.5f}" for v in p))
    write_text(out_csv, "\n".join(rows) + "\n")
    return result


def predict(tflite_path, inputs, out_csv, *, cfg=None, num_threads=2, say=print):
    """Predict the scene of wav files with an int8 TFLite model; writes the same CSV as the Keras predict.

    Args:
        tflite_path: the exported model (e.g. RUN/model_int8.tflite).
        inputs: wav files or folders.
        out_csv: output CSV path.
        cfg: resolved asc config (its `features:` section must be the one the model was trained
            on); None: `edge_config(tflite_path)`.
        num_threads: LiteRT CPU threads.

    Returns:
        list of (filename, predicted label) pairs.
    """
    from common.tflite_runtime import TFLiteModel

    tflite_path = Path(tflite_path)
    cfg = cfg if cfg is not None else edge_config(tflite_path)
    feats.check_config(cfg["features"])
    model = TFLiteModel(tflite_path, num_threads=num_threads)
    shape = tuple(feats.input_shape(cfg["features"]))
    if model.input_shape != shape:
        raise DataError(
            f"{tflite_path}: the model takes input {model.input_shape} but the features config gives {shape}; "
            "pass the run it was exported from with --run"
        )
    classes = read_labels(tflite_path, cfg)
    files = wav_inputs(inputs)
    report = ClipReport()
    x = feats.compute_many([str(f) for f in files], cfg["features"], report)
    for line in report.lines():
        say(line)
    probs = model.predict(x)
    if probs.shape[-1] != len(classes):
        raise DataError(f"{tflite_path}: the model has {probs.shape[-1]} outputs but there are {len(classes)} labels")
    result = write_predictions(out_csv, files, probs, classes)
    say(f"{out_csv}: {len(files)} predictions ({tflite_path.name}, LiteRT int8)")
    return result
