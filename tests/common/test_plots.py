import numpy as np
from PIL import Image

from common.plots import plot_confusion_matrix, plot_history


def test_history_and_confusion_pngs(tmp_path):
    history = {"epoch": [0, 1, 2], "loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.7, 0.5], "f1": [0.1, 0.4, 0.6]}
    plot_history(history, tmp_path / "curves.png")
    plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["park", "tram"], tmp_path / "cm.png")
    for name in ["curves.png", "cm.png"]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size[0] > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "curves.png"]  # no temp files left


def test_segmentation_examples_and_spectrograms(tmp_path):
    from common.plots import plot_segmentation_examples, plot_spectrograms

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (2, 16, 16))
    plot_segmentation_examples(rng.uniform(size=(2, 16, 16, 3)), truth, 1 - truth, tmp_path / "ex.png")
    plot_spectrograms(rng.normal(size=(32, 20, 3)), ["log-Mel", "Gammatone", "CQT"], tmp_path / "spec.png")
    for name in ["ex.png", "spec.png"]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
