"""A small synthetic scene data set in the NWPU-RESISC45 layout (`<out>/<class>/<name>.jpg`).

Each class has its own colour, texture (stripes, checks, dots or rings at a class-specific
orientation and frequency) and shapes (rectangles or discs of a class-specific size), with
per-image jitter in phase, position, brightness and noise, so a small network learns it in a few
epochs but not from a single pixel. Same seed, same bytes.
"""

import colorsys
import io
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.io import write_bytes

# The first NWPU-RESISC45 class names, so the sample reads like the real data set.
NWPU_CLASSES = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
    "church", "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert",
    "forest", "freeway", "golf_course", "ground_track_field", "harbor", "industrial_area",
    "intersection", "island", "lake", "meadow", "medium_residential", "mobile_home_park",
    "mountain", "overpass", "palace", "parking_lot", "railway", "railway_station",
    "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship", "snowberg",
    "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
    "thermal_power_station", "wetland",
)


def class_names(num_classes):
    """The sample's class names: NWPU-RESISC45 names, then `class_46`, ... beyond 45."""
    return [NWPU_CLASSES[i] if i < len(NWPU_CLASSES) else f"class_{i + 1:02d}"
            for i in range(num_classes)]


def scene(class_id, num_classes, size, rng):
    """One synthetic scene of class `class_id` in [0, num_classes): uint8 (size, size, 3);
    `rng` (a numpy Generator) gives the per-image jitter."""
    hue = (class_id / num_classes + rng.normal(0, 0.015)) % 1.0
    base = np.array(colorsys.hsv_to_rgb(hue, 0.55, 0.75))
    accent = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.35, 0.95))
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = np.pi * ((class_id * 0.381966) % 1.0) + rng.normal(0, 0.08)
    freq = 3 + (class_id % 5) * 2
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    phase = rng.uniform(0, 2 * np.pi)
    kind = class_id % 4
    if kind == 0:  # stripes
        texture = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + phase)
    elif kind == 1:  # checks
        texture = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * u + phase)
                                      * np.sin(2 * np.pi * freq * v))
    elif kind == 2:  # dots
        texture = (np.sin(2 * np.pi * freq * u + phase)
                   * np.sin(2 * np.pi * freq * v + phase) > 0.6) * 1.0
    else:  # rings around a random centre
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        texture = 0.5 + 0.5 * np.cos(2 * np.pi * freq * np.hypot(yy - cy, xx - cx) + phase)
    image = base * (0.6 + 0.4 * texture[..., None]) * rng.uniform(0.85, 1.15)

    # Class-specific shapes: rectangles for even classes, discs for odd, sized by class.
    shape_size = 0.08 + 0.04 * ((class_id // 2) % 4)
    for _ in range(1 + class_id % 3):
        cy, cx = rng.uniform(shape_size, 1 - shape_size, size=2)
        if class_id % 2 == 0:
            mask = (np.abs(yy - cy) < shape_size) & (np.abs(xx - cx) < shape_size * 0.6)
        else:
            mask = np.hypot(yy - cy, xx - cx) < shape_size
        image[mask] = accent
    image = image + rng.normal(0, 0.04, image.shape)
    return np.clip(image * 255.0, 0, 255).astype(np.uint8)


def write_sample(out, *, classes=5, per_class=40, size=64, seed=0, quality=92):
    """Write `<out>/<class>/<class>_NNN.jpg` (atomically): `classes` >= 2 classes of `per_class`
    >= 2 JPEG images (`quality`) of `size` >= 8 pixels a side. Returns `out` as a Path."""
    from PIL import Image

    if classes < 2:
        raise DataError(f"--classes must be at least 2, got {classes}")
    if per_class < 2:
        raise DataError(f"--per-class must be at least 2, got {per_class}")
    if size < 8:
        raise DataError(f"--size must be at least 8 pixels, got {size}")
    out = Path(out)
    names = class_names(classes)
    for class_id, name in enumerate(names):
        # One generator per class: a class's images do not depend on how many classes there are
        # beyond it (only through the hue spacing).
        rng = np.random.default_rng([seed, class_id])
        for index in range(per_class):
            buffer = io.BytesIO()
            Image.fromarray(scene(class_id, classes, size, rng)).save(buffer, format="JPEG",
                                                                      quality=quality)
            write_bytes(out / name / f"{name}_{index + 1:03d}.jpg", buffer.getvalue())
    return out
