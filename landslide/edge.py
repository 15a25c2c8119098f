"""Landslide prediction on an edge device: the int8 TFLite model through LiteRT, no TensorFlow.

`python -m landslide predict --tflite RUN/model_int8.tflite ...` runs this module. The exported
model holds the NaN replacement, the engineered bands and the normalisation as its first layers,
so it takes the raw 14-band patch exactly as stored: this side only reads files (numpy + h5py)
and writes masks. What the device needs: `ai-edge-litert`, `numpy`, `h5py` (and `rasterio` for
GeoTIFF scenes). Nothing here, nor anything it imports, imports tensorflow (a test checks).
"""

from pathlib import Path

import numpy as np

from common.errors import DataError
from landslide import data as D

SCENE_SUFFIXES = (".tif", ".tiff")
# Patches per file read and per interpreter call (a TFLite model loaded by load_tflite runs them
# in one invoke).
PREDICT_BATCH = 8


def load_tflite(path, num_threads=None):
    """The TFLite landslide model at `path` (a common.tflite_runtime.TFLiteModel running
    PREDICT_BATCH patches per invoke on `num_threads` threads, None: every core), checked to take
    (S, S, 14) raw patches; its `input_shape[0]` is the patch size S in pixels."""
    from common.tflite_runtime import TFLiteModel

    model = TFLiteModel(path, num_threads=num_threads, batch_size=PREDICT_BATCH)
    shape = model.input_shape
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != D.NUM_BANDS:
        raise DataError(f"{path}: model input is {shape}, expected a landslide model taking "
                        f"(S, S, {D.NUM_BANDS})")
    return model


def predict(model, inputs, out, *, threshold=0.5, overlap=32, geojson=False):
    """The one predict path of a `TFLiteModel` (`load_tflite`) or a Keras model (raw (N, S, S, 14)
    -> (N, S, S, 1) probabilities): `inputs` are .h5 patches, folders of them (or holding img/)
    and .tif scenes; writes mask_N.h5 per image_N.h5 (dataset "mask", uint8 0/1) and
    <scene>_landslide.tif (+ .geojson) per scene into OUT, or, when inputs in different folders
    share a name, below OUT mirroring their folders (`common.predictions.mirrored_outputs`).
    Every header and output name is checked before anything is written. Returns one line saying
    what was written (files really written: an input given twice counts once).
    """
    from common.predictions import mirrored_outputs
    from common.runner import outputs

    scenes = [Path(path) for path in inputs if Path(path).suffix.lower() in SCENE_SUFFIXES]
    patches = [path for path in inputs if Path(path).suffix.lower() not in SCENE_SUFFIXES]
    size = model.input_shape[-3]
    files = D.image_files(patches) if patches else []
    targets = mirrored_outputs(files + scenes, out, _output_name)  # each input once
    files = [path for path in targets if path.suffix.lower() not in SCENE_SUFFIXES]
    scenes = [path for path in targets if path.suffix.lower() in SCENE_SUFFIXES]
    for path in files:  # every header is checked before any mask is written
        D.read_h5(path, D.IMAGE_KEY, size, header_only=True)
    for start in range(0, len(files), PREDICT_BATCH):
        chunk = files[start : start + PREDICT_BATCH]
        probs = outputs(model, np.stack([D.read_image(path, size)[0] for path in chunk]))[..., 0]
        for path, prob in zip(chunk, probs):
            D.write_h5(targets[path], D.MASK_KEY, (prob > threshold).astype(np.uint8))
    if scenes:
        from landslide.scene import predict_scene

        for scene in scenes:
            target = targets[scene]
            predict_scene(scene, target, lambda x: outputs(model, x), bands=D.NUM_BANDS, patch=size,
                          overlap=overlap, threshold=threshold, progress=False,
                          geojson_path=target.with_suffix(".geojson") if geojson else None)
    parts = [f"{len(files)} masks"] if files else []
    parts += [f"{len(scenes)} scene maps"] if scenes else []
    mirrored = any(target.parent != Path(out) for target in targets.values())
    return (f"wrote {' and '.join(parts)} to {out}"
            + (" (in sub-folders mirroring the inputs' folders: inputs share file names)" if mirrored else ""))


def _output_name(path):
    """image_7.h5 -> mask_7.h5; other patches keep their name with a mask_ prefix; a scene
    a.tif -> a_landslide.tif."""
    if path.suffix.lower() in SCENE_SUFFIXES:
        return f"{path.stem}_landslide.tif"
    return D.mask_name(path.name) if path.name.startswith("image_") else f"mask_{path.name}"
