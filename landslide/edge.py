"""Landslide prediction on an edge device: the int8 TFLite model through LiteRT, no TensorFlow.

`python -m landslide predict --tflite RUN/model_int8.tflite ...` runs this module. The exported
model holds the NaN replacement, the engineered bands and the normalisation as its first layers,
so it takes the raw 14-band patch exactly as stored: the preprocessing is the training model's by
construction, and this side only reads files (numpy + h5py) and writes masks.

What the device needs: `ai-edge-litert`, `numpy`, `h5py` (and `rasterio` for GeoTIFF scenes).
Nothing here, nor anything it imports, imports tensorflow (a test checks `sys.modules`).

Outputs are those of the Keras `predict`: `OUT/mask_N.h5` (dataset "mask", uint8 (H, W), 0/1)
per `image_N.h5`, and `OUT/<scene>_landslide.tif` (+ `.geojson`) per GeoTIFF scene.
"""

from pathlib import Path

import numpy as np

from common.errors import DataError
from common.io import atomic_path
from landslide import data as D

SCENE_SUFFIXES = (".tif", ".tiff")
PREDICT_BATCH = 8  # patches per interpreter call: XNNPACK's int8 kernels run about 1.5x faster per patch at 8 than at 1


def output_name(image_path):
    """image_7.h5 -> mask_7.h5 (other names keep theirs with a mask_ prefix)."""
    name = Path(image_path).name
    return D.mask_name(name) if name.startswith("image_") else f"mask_{name}"


def write_mask(path, mask):
    """Write a uint8 (H, W) mask as dataset 'mask' (the Landslide4Sense format), atomically."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset(D.MASK_KEY, data=mask.astype(np.uint8), track_times=False)


def split_inputs(inputs):
    """(GeoTIFF scenes, everything else) of a list of input paths."""
    scenes = [path for path in inputs if Path(path).suffix.lower() in SCENE_SUFFIXES]
    return scenes, [path for path in inputs if path not in scenes]


def load_model(path, num_threads=2):
    """The TFLite landslide model at `path`, checked to take (S, S, 14) raw patches.

    Returns:
        common.tflite_runtime.TFLiteModel; its `input_shape[0]` is the patch size S in pixels.
    """
    from common.tflite_runtime import TFLiteModel

    model = TFLiteModel(path, num_threads=num_threads)
    shape = model.input_shape
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != D.NUM_BANDS:
        raise DataError(f"{path}: model input is {shape}, expected a landslide model taking (S, S, {D.NUM_BANDS})")
    return model


def predict(model, inputs, out, *, threshold=0.5, overlap=32, geojson=False):
    """Landslide masks of patches and maps of GeoTIFF scenes; the one predict path.

    Args:
        model: anything with `predict(x (N, S, S, 14)) -> (N, S, S, 1)` probabilities and
            `input_shape` (S, S, 14): a `TFLiteModel` (`load_model`) or the Keras adapter of
            landslide/task.py.
        inputs: .h5 patches, folders of them (or holding img/), .tif scenes.
        out: output folder: OUT/mask_N.h5 per image_N.h5 (dataset "mask", uint8 0/1) and
            OUT/<scene>_landslide.tif (+ .geojson with `geojson`) per scene.
        threshold: landslide probability above which a pixel is 1.
        overlap: scenes: pixels shared by neighbouring tiles.

    Returns:
        One line saying what was written.
    """
    scenes, patches = split_inputs(inputs)
    size = model.input_shape[0]
    files = D.image_files(patches) if patches else []
    for path in files:  # every header is checked before any mask is written
        D.check_image_header(path, size)
    for start in range(0, len(files), PREDICT_BATCH):
        chunk = files[start : start + PREDICT_BATCH]
        probs = model.predict(np.stack([D.read_image(path, size)[0] for path in chunk]))[..., 0]
        for path, prob in zip(chunk, probs):
            write_mask(Path(out) / output_name(path), (prob > threshold).astype(np.uint8))
    if scenes:
        from landslide.scene import predict_scene

        for scene in map(Path, scenes):
            target = Path(out) / f"{scene.stem}_landslide.tif"
            predict_scene(scene, target, model.predict, bands=D.NUM_BANDS, patch=size, overlap=overlap,
                          threshold=threshold, geojson_path=target.with_suffix(".geojson") if geojson else None,
                          progress=False)
    parts = [f"{len(files)} masks"] if files else []
    parts += [f"{len(scenes)} scene maps"] if scenes else []
    return f"wrote {' and '.join(parts)} to {out}"
