"""Landslide prediction on an edge device: the int8 TFLite model through LiteRT, no TensorFlow.

`python -m landslide predict --tflite RUN/model_int8.tflite ...` runs this module. The exported
model holds the NaN replacement, the engineered bands and the normalisation as its first layers,
so it takes the raw 14-band patch exactly as stored: this side only reads files (numpy + h5py)
and writes masks. What the device needs: `ai-edge-litert`, `numpy`, `h5py` (and `rasterio` for
GeoTIFF scenes). Nothing here, nor anything it imports, imports tensorflow (a test checks).

A model whose front int8 kernels cannot run (the authors' channels of paper 1: ratios divided by
max(a + b, 1e-8), which int8 DIV refuses and which reach +-1e8 where a + b <= 0; 8-bit grey blurs)
is exported without its front: `model_int8.tflite` takes the front's output, and
`model_int8.front.json` beside it (common.tflite_runtime.front_path) holds the front's settings, which `numpy_front` computes here
exactly as the Keras layers (landslide.features) do (a parity test checks).
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from common.errors import DataError
from landslide import data as D
from landslide.config import FEATURE_NAMES

SCENE_SUFFIXES = (".tif", ".tiff")
# Patches per file read and per interpreter call (a TFLite model loaded by load_tflite runs them
# in one invoke).
PREDICT_BATCH = 8


def int8_front(cfg):
    """Whether LiteRT's int8 kernels run a config's input front inside the exported model: not
    with the authors' channels (their 1e-8-clipped ratios quantize the divisor to zero, which int8
    DIV refuses, and reach +-1e8 where a + b <= 0; their 8-bit grey blurs and per-patch min-max
    lose their levels), which the host then computes (`numpy_front`)."""
    authors = ("rgb_minmax", "b8_b11_index", "grey_mean", "grey_box_blur", "grey_median_blur")
    features = cfg["features"]
    return not (any(features.get(name) for name in authors) or (
        cfg["feature_options"]["ratio"] == "authors" and any(features.get(name) for name in D.RATIOS)))


def load_tflite(path, num_threads=None):
    """The TFLite landslide model at `path`, taking (S, S, 14) raw patches (its `input_shape[0]`
    is the patch size S in pixels), running PREDICT_BATCH patches per invoke on `num_threads`
    threads (None: every core). A common.tflite_runtime.TFLiteModel (an OnnxModel for the
    export's model_int8.onnx: common.tflite_runtime.open_model), or, when a front file
    (common.tflite_runtime.front_path) lies beside it, a FrontedModel that computes that front
    in numpy first."""
    from common.tflite_runtime import FrontedModel, front_path, open_model

    model = open_model(path, num_threads=num_threads, batch_size=PREDICT_BATCH)
    shape, front_file = model.input_shape, front_path(path)
    if front_file.is_file():
        spec = read_front(front_file, path)
        if len(shape) != 3 or shape[2] != front_channels(spec):
            raise DataError(f"{path}: model input is {shape}, but {front_file.name} makes "
                            f"{front_channels(spec)} channels")
        shape = (*shape[:2], D.NUM_BANDS)
        model = FrontedModel(lambda x: numpy_front(x, spec), model, shape)
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != D.NUM_BANDS:
        raise DataError(f"{path}: model input is {shape}, expected a landslide model taking "
                        f"(S, S, {D.NUM_BANDS})")
    return model


def read_front(front_file, tflite_path):
    """The front settings in `front_file`, checked to belong to the model file `tflite_path`."""
    try:
        spec = json.loads(Path(front_file).read_text())
        features, digest = list(spec["features"]), spec["model_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{front_file}: not a landslide front file ({type(error).__name__}: {error})") from None
    unknown = sorted(set(features) - set(FEATURE_NAMES))
    if unknown:
        raise DataError(f"{front_file}: unknown engineered bands {unknown}")
    if hashlib.sha256(Path(tflite_path).read_bytes()).hexdigest() != digest:
        raise DataError(f"{front_file}: belongs to another export than {Path(tflite_path).name} "
                        "(model_sha256 differs); export the run again")
    return spec


def front_channels(spec):
    """Channels the numpy front of `spec` makes: the 14 bands plus the engineered ones."""
    return D.NUM_BANDS + sum(D.FEATURE_CHANNELS.get(name, 1) for name in spec["features"])


def front_spec(features, band_scale, options, mean=None, std=None):
    """The JSON-able settings of a model front: engineered band names (`features`, FEATURE_NAMES
    order), the 14 band spreads of the ratio floors, the feature options (ratio, blur sizes), and
    the per-channel standardisation (`mean`, `std`; None: raw values, `data.normalization: none`)."""
    return {"features": [name for name in FEATURE_NAMES if name in features],
            "band_scale": [float(v) for v in band_scale],
            "options": {**D.FEATURE_OPTION_DEFAULTS, **options},
            "mean": None if mean is None else [float(v) for v in mean],
            "std": None if std is None else [float(v) if float(v) > 0 else 1.0 for v in std]}


def numpy_front(x, spec):
    """The model front of `spec` (`front_spec`) in numpy, as landslide.features' layers compute
    it: NaN -> 0, the engineered bands appended, then standardised unless `spec["mean"]` is None.

    Args:
        x: float array (N, S, S, 14), raw patches as stored.
    Returns:
        float32 array (N, S, S, front_channels(spec)).
    """
    x = np.asarray(x, np.float32)
    x = np.where(np.isnan(x), np.float32(D.NAN_FILL), x)
    options, scale = spec["options"], spec["band_scale"]
    band = {i: x[..., i : i + 1] for i in range(D.NUM_BANDS)}
    gray = np.float32(0.0)
    for i, weight in D.GRAY_WEIGHTS.items():
        gray = gray + np.float32(weight) * band[i]
    grey = (band[D.B2] + band[D.B3] + band[D.B4]) / np.float32(3.0)
    extra = []
    for name in spec["features"]:
        if name in D.RATIOS:
            a, b = (band[i] for i in D.RATIOS[name])
            if options["ratio"] == "authors":
                extra.append((a - b) / np.maximum(a + b, np.float32(D.AUTHORS_EPS)))
            else:
                floor = np.float32(D.ratio_floor(scale, *D.RATIOS[name]))
                extra.append((a - b) / np.maximum(np.abs(a) + np.abs(b), floor))
        elif name == "rgb_minmax":
            extra += [_minmax(band[i]) for i in (D.B4, D.B3, D.B2)]
        elif name == "grey_mean":
            extra.append(grey)
        elif name == "grey_box_blur":
            extra.append(_box_blur(_grey_levels(grey), int(options["box_blur_size"])) / np.float32(255.0))
        elif name == "grey_median_blur":
            extra.append(_median_blur(_grey_levels(grey), int(options["median_blur_size"])) / np.float32(255.0))
        elif name == "gray":
            extra.append(gray)
        else:  # gray_gradient, dem_gradient: Sobel gradient magnitude, reflected borders
            extra.append(_sobel_magnitude(band[D.DEM] if name == "dem_gradient" else gray))
    x = np.concatenate([x, *extra], axis=-1).astype(np.float32)
    if spec.get("mean") is not None:
        x = (x - np.float32(spec["mean"])) * (np.float32(1.0) / np.float32(spec["std"]))
    return x


def _minmax(plane):
    """(plane - min) / max(max - min, 1e-8), min and max over each patch: (N, S, S, 1)."""
    low = plane.min(axis=(1, 2), keepdims=True)
    high = plane.max(axis=(1, 2), keepdims=True)
    return (plane - low) / np.maximum(high - low, np.float32(D.AUTHORS_EPS))


def _grey_levels(grey):
    """The authors' 8-bit grey: per-patch min-max to 0..255, truncated, as float32."""
    return np.floor(_minmax(grey) * np.float32(255.0))


def _windows(levels, before, after, mode):
    """Every size x size window of the (N, S, S, 1) levels, padded: (N, S, S, size, size)."""
    padded = np.pad(levels[..., 0], [(0, 0), (before, after), (before, after)], mode=mode)
    size = before + after + 1
    return np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))


def _box_blur(levels, size):
    """OpenCV's `blur` (mirrored borders without the edge pixel, anchor at size // 2), rounded."""
    before, after = size // 2, size - 1 - size // 2
    padded = np.pad(levels[..., 0].astype(np.float64), [(0, 0), (before, after), (before, after)], mode="reflect")
    total = np.pad(padded.cumsum(1).cumsum(2), [(0, 0), (1, 0), (1, 0)])  # integral image: exact sums
    sums = total[:, size:, size:] - total[:, :-size, size:] - total[:, size:, :-size] + total[:, :-size, :-size]
    return np.round(sums / (size * size)).astype(np.float32)[..., None]


def _median_blur(levels, size):
    """OpenCV's `medianBlur` (odd size, replicated borders) of 8-bit levels."""
    if size % 2 == 0:
        raise DataError(f"median blur size must be odd, got {size}")
    middle, medians = size * size // 2, []
    for patch in levels:  # one patch at a time: its windows (S * S * size^2 values) stay in cache
        windows = _windows(patch[None], size // 2, size // 2, "edge")[0]
        flat = windows.reshape(*windows.shape[:2], size * size)
        medians.append(np.partition(flat, middle, axis=-1)[..., middle])
    return np.stack(medians)[..., None]


def _sobel_magnitude(plane):
    """Sobel gradient magnitude of (N, S, S, 1), reflected borders (as the Keras front)."""
    windows = _windows(plane, 1, 1, "reflect").astype(np.float32)
    dx = np.einsum("nhwij,ij->nhw", windows, D.SOBEL_X)
    dy = np.einsum("nhwij,ij->nhw", windows, D.SOBEL_X.T)
    return np.sqrt(dx * dx + dy * dy)[..., None]


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
