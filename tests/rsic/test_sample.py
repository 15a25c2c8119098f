"""rsic.sample: the synthetic data set's layout and determinism."""

import hashlib

import numpy as np
from PIL import Image

from rsic.sample import class_names, write_sample


def _digest(root):
    files = sorted(p for p in root.rglob("*.jpg"))
    return [(p.relative_to(root).as_posix(), hashlib.md5(p.read_bytes()).hexdigest()) for p in files]


def test_layout_and_determinism(tmp_path):
    a = write_sample(tmp_path / "a", classes=3, per_class=4, size=32, seed=7)
    b = write_sample(tmp_path / "b", classes=3, per_class=4, size=32, seed=7)
    c = write_sample(tmp_path / "c", classes=3, per_class=4, size=32, seed=8)
    assert sorted(p.name for p in a.iterdir()) == class_names(3) == ["airplane", "airport", "baseball_diamond"]
    assert len(_digest(a)) == 12
    assert _digest(a) == _digest(b)  # same seed, same bytes
    assert _digest(a) != _digest(c)
    with Image.open(a / "airplane" / "airplane_001.jpg") as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_classes_differ_in_colour(tmp_path):
    root = write_sample(tmp_path, classes=4, per_class=3, size=32)
    means = [np.mean([np.asarray(Image.open(p), float).mean((0, 1)) for p in sorted((root / n).iterdir())], 0)
             for n in class_names(4)]
    distances = [np.linalg.norm(means[i] - means[j]) for i in range(4) for j in range(i + 1, 4)]
    assert min(distances) > 10  # class colours are far apart on the 0-255 scale


def test_names_beyond_nwpu():
    names = class_names(47)
    assert names[44] == "wetland" and names[45:] == ["class_46", "class_47"]
