"""Where predictions go, for every task (Keras and LiteRT alike). No TensorFlow.

- `write_class_predictions`: the predictions CSV of every classifier (rsic, asc). Columns:
  `file`, `label` (the predicted class), `probability` (of that class), then one column per class
  with its probability, in class-index order. Written atomically.
- `unique_files`: input files reached twice (a folder and a file in it) are predicted once.
- `mirrored_outputs`: one output file per input file (landslide masks and scene maps), straight
  into the output folder, or, when two inputs in different folders share a name, mirroring the
  inputs' folders below their common folder, so no output overwrites another; a clash that
  mirroring cannot resolve is refused before anything is written.
"""

import csv
import io
import os
from pathlib import Path

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


def unique_files(files):
    """`files` (Paths) in order, each resolved file once (the first spelling given is kept)."""
    seen, result = set(), []
    for path in map(Path, files):
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            result.append(path)
    return result


def mirrored_outputs(files, out, output_name):
    """The output path of each input file, collision-free, checked before anything is written.

    Outputs go straight into `out` (OUT/mask_1.h5) when their names are all different. When two
    inputs in different folders would give the same name, every output mirrors its input's folder
    relative to the common folder of all the inputs' folders instead: `TestData/img/image_1.h5`
    and `ValidData/img/image_1.h5` go to OUT/TestData/img/mask_1.h5 and
    OUT/ValidData/img/mask_1.h5, `A/scene.tif` and `B/scene.tif` to OUT/A/... and OUT/B/....

    Args:
        files: input file Paths (a file given twice counts once, see `unique_files`).
        out: the output folder.
        output_name: input Path -> the output's file name (e.g. image_7.h5 -> mask_7.h5).

    Returns:
        dict input Path -> output Path, in input order; one entry per file actually written.

    Raises:
        DataError: two different inputs would write the same output (a.tif and a.tiff ->
            a_landslide.tif), or an output would replace an input file; names both files.
    """
    files = unique_files(files)
    names = [output_name(path) for path in files]
    if len(set(names)) == len(names):
        targets = [Path(out) / name for name in names]
    else:
        folders = [path.resolve().parent for path in files]
        common = Path(os.path.commonpath(folders))
        targets = [Path(out) / folder.relative_to(common) / name for folder, name in zip(folders, names)]
    outputs, writer = {}, {}
    inputs = {path.resolve(): path for path in files}
    for path, target in zip(files, targets):
        key = target.resolve()
        if key in writer:
            raise DataError(f"{path}: its output {target} would replace that of {writer[key]}; "
                            "rename one of them or predict them into different --out folders")
        if key in inputs:
            raise DataError(f"{path}: its output {target} would replace the input {inputs[key]}; "
                            "choose another --out")
        writer[key], outputs[path] = path, target
    return outputs
