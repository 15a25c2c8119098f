"""rsic.data: listing, validation errors, splits and the tf.data pipeline."""

import json

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from rsic.data import make_split, read_split_file, scan_image_folder
from rsic.features import load_images, make_dataset
from rsic.sample import write_sample
from tests.rsic.conftest import TASK


@pytest.fixture
def small(tmp_path):
    return write_sample(tmp_path / "data", classes=3, per_class=6, size=32, seed=1)


def test_scan_sorted_classes_and_labels(small):
    folder = scan_image_folder(small)
    assert folder.class_names == ["airplane", "airport", "baseball_diamond"]
    assert len(folder.files) == 18
    assert np.bincount(folder.labels).tolist() == [6, 6, 6]
    assert all(folder.files[i].parent.name == folder.class_names[folder.labels[i]] for i in range(18))


def test_truncated_image_named_or_skipped(small):
    bad = small / "airport" / "airport_003.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="airport_003.jpg.*(unreadable|truncated)"):
        scan_image_folder(small)
    lines = []
    folder = scan_image_folder(small, skip_bad=True, log=lines.append)
    assert len(folder.files) == 17 and bad not in folder.files
    assert any("skipped 1" in line and "airport_003.jpg" in line for line in lines)


def test_not_an_image(small):
    (small / "airplane" / "notes.png").write_text("not a png")
    with pytest.raises(DataError, match="notes.png"):
        scan_image_folder(small)


def test_empty_class_folder(small):
    (small / "empty_class").mkdir()
    (small / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="empty_class: class 'empty_class' has no images"):
        scan_image_folder(small)


def test_single_class_and_missing_folder(tmp_path):
    write_sample(tmp_path / "two", classes=2, per_class=2, size=16)
    (tmp_path / "one").mkdir()
    (tmp_path / "two" / "airport").rename(tmp_path / "one" / "airport")
    with pytest.raises(DataError, match="only one class folder"):
        scan_image_folder(tmp_path / "one")
    with pytest.raises(DataError, match="nowhere: data folder not found"):
        scan_image_folder(tmp_path / "nowhere")


def test_greyscale_rgba_and_tiff_converted(small):
    Image.new("L", (20, 20), 200).save(small / "airplane" / "grey.png")
    Image.new("RGBA", (20, 20), (10, 20, 30, 0)).save(small / "airplane" / "alpha.png")
    Image.new("RGB", (24, 24), (250, 0, 0)).save(small / "airport" / "scene.tif")
    lines = []
    folder = scan_image_folder(small, log=lines.append)
    assert any("1 L image" in line and "1 RGBA image" in line for line in lines)
    names = [p.name for p in folder.files]
    x = load_images([folder.files[names.index(n)] for n in ("grey.png", "alpha.png", "scene.tif")], 16)
    assert x.shape == (3, 16, 16, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 200, atol=1)  # grey replicated to R, G and B
    np.testing.assert_allclose(x[1].mean((0, 1)), [10, 20, 30], atol=1)  # alpha dropped
    np.testing.assert_allclose(x[2].mean((0, 1)), [250, 0, 0], atol=2)


def test_split_stratified_seeded():
    labels = np.repeat(np.arange(4), 50)
    split = make_split(labels, 0.2, val_ratio=0.1, seed=3)
    again = make_split(labels, 0.2, val_ratio=0.1, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in ("train", "val", "test"))
    assert not np.array_equal(split["train"], make_split(labels, 0.2, val_ratio=0.1, seed=4)["train"])
    for c in range(4):
        assert np.sum(labels[split["train"]] == c) + np.sum(labels[split["val"]] == c) == 10
        assert np.sum(labels[split["val"]] == c) == 1
        assert np.sum(labels[split["test"]] == c) == 40
    everything = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(everything.tolist()) == list(range(200))
    ten = make_split(labels, 0.1, seed=0)
    assert len(ten["train"]) == 20 and len(ten["val"]) == 0 and len(ten["test"]) == 180
    with pytest.raises(DataError, match="train_ratio"):
        make_split(labels, 1.0)
    with pytest.raises(DataError, match=r"data/b: class 'b' has 1 image"):
        make_split([0, 0, 1], 0.5, class_names=["a", "b"], root="data")


def test_split_written_and_read_back(small, tmp_path):
    from common.runner import read_split, write_split

    folder = scan_image_folder(small)
    cfg = {"data": {"root": str(small), "train_ratio": 0.5, "val_ratio": 0.0, "seed": 0, "split_file": ""},
           "train": {"select_on": "reported"}}
    split = make_split(folder.labels, 0.5, seed=0)
    (tmp_path / "run").mkdir()
    write_split(TASK, tmp_path / "run", cfg, folder, split)
    content = json.loads((tmp_path / "run" / "split.json").read_text())
    assert content["classes"] == folder.class_names and len(content["train"]) == 9
    assert content["train"][0].startswith("airplane/airplane_")  # root-relative paths
    assert (tmp_path / "run" / "labels.txt").read_text().split() == folder.class_names
    again, _ = read_split(TASK, tmp_path / "run", folder)
    assert all(np.array_equal(again[k], split[k]) for k in ("train", "val", "test"))
    assert all(np.array_equal(read_split_file(tmp_path / "run" / "split.json", folder)[k], split[k])
               for k in ("train", "val", "test"))
    content["test"].append("airplane/missing.jpg")
    (tmp_path / "bad.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match="airplane/missing.jpg"):
        read_split_file(tmp_path / "bad.json", folder)


def test_dataset_shapes_range_and_deterministic_augmentation(small):
    folder = scan_image_folder(small)
    augment = {"flip": True, "rot90": True, "crop": 0.7}

    def first_epoch(seed):
        ds = make_dataset(folder.files, folder.labels, image_size=24, batch_size=8, training=True,
                          augment=augment, seed=seed, cache=True)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    a, b, c = first_epoch(5), first_epoch(5), first_epoch(6)
    assert [x.shape for x, _ in a] == [(8, 24, 24, 3), (8, 24, 24, 3), (2, 24, 24, 3)]
    assert all(x.dtype == np.float32 and x.min() >= 0 and x.max() <= 255 for x, _ in a)
    assert all(np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    assert sorted(np.concatenate([y for _, y in a]).tolist()) == sorted(folder.labels.tolist())
    plain = make_dataset(folder.files, folder.labels, image_size=24, batch_size=32)
    x, y = next(iter(plain))
    assert np.array_equal(y.numpy(), folder.labels)  # evaluation keeps the file order


def test_inner_split_comes_from_the_training_share(small):
    """train.select_on=inner (the default): `val` is carved from each class's training share, so it
    never meets the test split; `reported` trains on the whole share and monitors the test split."""
    from common.errors import ConfigError
    from tests.rsic.conftest import tiny_config

    folder = scan_image_folder(small)
    cfg = tiny_config(small, overrides=["data.train_ratio=0.5", "data.val_ratio=0.4"])
    split = TASK.make_split(cfg, folder)
    assert [len(split[k]) for k in ("train", "val", "test")] == [6, 3, 9]  # per class: 2 train, 1 val, 3 test
    assert np.bincount(folder.labels[split["val"]]).tolist() == [1, 1, 1]
    assert not set(split["val"]) & (set(split["train"]) | set(split["test"]))
    share = make_split(folder.labels, 0.5, seed=0)["train"]  # the training share alone, no carving
    assert set(split["val"]) | set(split["train"]) == set(share)
    _, val, _ = TASK.datasets(cfg, folder, split)
    assert sum(int(y.shape[0]) for _, y in val) == 3 and TASK.selection_split(cfg) == "val"

    reported = tiny_config(small, overrides=["data.train_ratio=0.5", "train.select_on=reported"])
    split = TASK.make_split(reported, folder)
    assert len(split["val"]) == 0 and set(split["train"]) == set(share)
    _, val, _ = TASK.datasets(reported, folder, split)
    assert sum(int(y.shape[0]) for _, y in val) == 9  # the test split chooses the epoch

    with pytest.raises(ConfigError, match=r"^config key 'data.val_ratio' is 0: train.select_on=inner .*"
                                          r"set data.val_ratio \(e.g. 0.1\) or train.select_on=reported$"):
        TASK.make_split(tiny_config(small, overrides=["data.val_ratio=0"]), folder)
